use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let loader = loader::Loader::from_env().await?;
    let loader = &loader;
    lambda_runtime::run(service_fn(move |event| async move {
        loader.handle(event).await
    }))
    .await
}
