use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let upsert = upsert::Upsert::from_env().await?;
    let upsert = &upsert;
    lambda_runtime::run(service_fn(move |event| async move {
        upsert.handle(event).await
    }))
    .await
}
