//! Replays the batches on the Kinesis on-failure queue through the function (see
//! `tools::replay` and the README runbook), with the function's configuration from the
//! environment.
//!
//! replay --function upsert|orchestrator --function-name NAME --queue-url URL [--max 100] [--dry-run]

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
    // The deployed function whose batches these are (the stack's UpsertFunctionName or
    // OrchestratorFunctionName output): both share the on-failure queue.
    let function_name = args
        .get("function-name")
        .ok_or("--function-name (the deployed function whose batches to replay) is required")?;
    let target = Target::from_env(function).await?;
    let aws = shared::aws::load_config().await;
    let (sqs, kinesis) = (
        aws_sdk_sqs::Client::new(&aws),
        aws_sdk_kinesis::Client::new(&aws),
    );
    let region = LocalStack::from_env().region;
    let source = tools::replay::ReplaySource {
        sqs: &sqs,
        kinesis: &kinesis,
        queue_url,
        region: &region,
    };
    let options = tools::replay::ReplayOptions {
        function_name,
        max: args.parse_or("max", 100usize)?,
        dry_run: args.get("dry-run").is_some(),
    };
    let report = tools::replay::run(&source, &target, &options).await?;
    println!(
        "\n{} message(s): {} batch(es) recovered ({} records), {} expired or incomplete, {} not accepted; {} of other functions left on the queue",
        report.messages, report.batches_recovered, report.records, report.expired, report.failed, report.other_function
    );
    if report.expired + report.failed > 0 {
        return Err("some ranges were not recovered; their messages stay on the queue".into());
    }
    Ok(())
}
