//! `make demo-cdc`: MariaDB → DMS- and Debezium-shaped change records → Kinesis → upsert →
//! Snowflake, then every target compared with its source table (see `tools::cdc`).
//!
//! demo_cdc [--ops 20000] [--seed-rows 500] [--seed 7] [--redeliver-every 400] [--resend-every 7]

use tools::args::Args;
use tools::cdc::{print_report, run, CdcOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let opts = CdcOptions {
        ops: args.parse_or("ops", 20_000)?,
        seed_rows: args.parse_or("seed-rows", 500)?,
        seed: args.parse_or("seed", 7)?,
        redeliver_every: args.parse_or("redeliver-every", 400)?,
        resend_every: args.parse_or("resend-every", 7)?,
        python: args.get("python").unwrap_or(".venv/bin/python").into(),
        script: "local/tools/cdc.py".into(),
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
        snowflake_url: std::env::var("LOCAL_SF_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8787".into()),
        key_file: std::env::var("SNOWFLAKE_PRIVATE_KEY_FILE")
            .unwrap_or_else(|_| "local/keys/snowflake_test_key.p8".into()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        name: format!("cdc-demo-{seconds}"),
    };
    let report = run(opts).await?;
    print_report(&report);
    if report.tables.iter().all(|t| t.equal()) {
        println!("every Snowflake table equals its MariaDB table");
        Ok(())
    } else {
        Err("a Snowflake table differs from its MariaDB table".into())
    }
}
