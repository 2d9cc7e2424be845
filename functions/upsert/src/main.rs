//! The upsert Lambda's binary: Kinesis batches become MERGEs into Snowflake (see the `upsert`
//! crate). Configuration is read once at init; a bad one fails the init.

use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let upsert = match upsert::Upsert::from_env().await {
        Ok(f) => f,
        Err(e) => shared::runtime::init_failed(e).await,
    };
    let upsert = &upsert;
    lambda_runtime::run(service_fn(move |event| async move {
        upsert.handle(event).await
    }))
    .await
}
