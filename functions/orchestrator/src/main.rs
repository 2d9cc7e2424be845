//! The orchestrator Lambda's binary: Kinesis batches become objects in the S3 raw zone (see the
//! `orchestrator` crate). Configuration is read once at init; a bad one fails the init.

use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::logging::init();
    let orchestrator = match orchestrator::Orchestrator::from_env().await {
        Ok(f) => f,
        Err(e) => shared::runtime::init_failed(e).await,
    };
    let orchestrator = &orchestrator;
    lambda_runtime::run(service_fn(move |event| async move {
        orchestrator.handle(event).await
    }))
    .await
}
