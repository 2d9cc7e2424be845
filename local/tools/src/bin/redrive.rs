//! Re-processes quarantined records with the function's current configuration (see
//! `tools::redrive` and the README runbook). The function's variables come from the
//! environment, as Lambda gives them; AWS as usual (`AWS_ENDPOINT_URL` for the local stack).
//!
//! ```text
//! redrive --function upsert|orchestrator --bucket BUCKET [--prefix errors/<function>/] [--dry-run]
//! ```

use tools::args::{Args, LocalStack};
use tools::redrive::{run, Target};

#[tokio::main]
async fn main() -> Result<(), String> {
    shared::logging::init();
    let args = Args::parse(&["dry-run"])?;
    let function = args
        .get("function")
        .ok_or("--function upsert|orchestrator is required")?;
    let bucket = args.get("bucket").ok_or("--bucket is required")?;
    let prefix = args
        .get("prefix")
        .map(String::from)
        .unwrap_or_else(|| format!("errors/{function}/"));
    let target = Target::from_env(function).await?;
    let aws = shared::aws::load_config().await;
    let s3 = shared::aws::s3_client(&aws);
    let dry_run = args.get("dry-run").is_some();
    let report = run(
        &s3,
        bucket,
        &prefix,
        &target,
        &LocalStack::from_env().region,
        dry_run,
    )
    .await?;
    println!(
        "\n{} object(s), {} record(s): {} quarantined again, {} object(s) removed, {} not accepted; {} of another function left as they are",
        report.objects, report.records, report.still_quarantined, report.deleted, report.failed, report.other_function
    );
    if report.failed > 0 {
        return Err(
            "some batches were not accepted; run again after fixing what the log says".into(),
        );
    }
    Ok(())
}
