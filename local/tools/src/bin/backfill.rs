//! Loads an existing raw-zone prefix through the loader's COPY path (see `tools::backfill` and
//! the README runbook), with the loader's configuration from the environment.
//!
//! ```text
//! backfill --prefix raw/<table>/[YYYY/MM/DD/HH/] [--chunk 100] [--dry-run]
//! ```

use tools::args::Args;

#[tokio::main]
async fn main() -> Result<(), String> {
    shared::logging::init();
    let args = Args::parse(&["dry-run"])?;
    let prefix = args
        .get("prefix")
        .ok_or("--prefix raw/<table>/... is required")?;
    let chunk = args.parse_or("chunk", 100usize)?;
    let loader = loader::Loader::from_env()
        .await
        .map_err(|e| e.to_string())?;
    let bucket = loader.config().bucket.clone();
    let aws = shared::aws::load_config().await;
    let s3 = shared::aws::s3_client(&aws);
    let report = tools::backfill::run(
        &s3,
        &loader,
        &bucket,
        prefix,
        chunk,
        args.get("dry-run").is_some(),
    )
    .await?;
    println!(
        "\n{} object(s): {} loaded ({} rows), {} already loaded, {} not in the stage, {} failed",
        report.objects,
        report.loaded,
        report.rows_loaded,
        report.already_loaded,
        report.not_in_stage,
        report.failed
    );
    if report.failed > 0 {
        return Err("some files failed to load; the log names them".into());
    }
    Ok(())
}
