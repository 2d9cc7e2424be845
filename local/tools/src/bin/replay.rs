//! Replays the batches on the Kinesis on-failure queue through the function (see
//! `tools::replay` and the README runbook), with the function's configuration from the
//! environment.
//!
//! replay --function upsert|orchestrator --queue-url URL [--max 100] [--dry-run]

use tools::args::{Args, LocalStack};
use tools::redrive::Target;

#[tokio::main]
async fn main() -> Result<(), String> {
    shared::logging::init();
    let args = Args::parse(&["dry-run"])?;
    let function = args
        .get("function")
        .ok_or("--function upsert|orchestrator is required")?;
    let queue_url = args
        .get("queue-url")
        .ok_or("--queue-url (the on-failure queue) is required")?;
    let target = Target::from_env(function).await?;
    let aws = shared::aws::load_config().await;
    let report = tools::replay::run(
        &aws_sdk_sqs::Client::new(&aws),
        &aws_sdk_kinesis::Client::new(&aws),
        queue_url,
        &target,
        &LocalStack::from_env().region,
        args.parse_or("max", 100usize)?,
        args.get("dry-run").is_some(),
    )
    .await?;
    println!(
        "\n{} message(s): {} batch(es) recovered ({} records), {} expired, {} not accepted",
        report.messages, report.batches_recovered, report.records, report.expired, report.failed
    );
    if report.expired + report.failed > 0 {
        return Err("some ranges were not recovered; their messages stay on the queue".into());
    }
    Ok(())
}
