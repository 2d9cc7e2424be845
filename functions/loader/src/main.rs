//! The loader Lambda's binary: S3 object-created notifications become `COPY INTO` the raw
//! tables (see the `loader` crate). Configuration is read once at init; a bad one fails the init.

use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let loader = match loader::Loader::from_env().await {
        Ok(f) => f,
        Err(e) => shared::runtime::init_failed(e).await,
    };
    let loader = &loader;
    lambda_runtime::run(service_fn(move |event| async move {
        loader.handle(event).await
    }))
    .await
}
