//! `make demo-cdc`: MariaDB → DMS- and Debezium-shaped change records → Kinesis → upsert →
//! Snowflake, then every target compared with its source table (see `tools::cdc`).
//!
//! demo_cdc [--ops 20000] [--seed-rows 500] [--seed 7] [--redeliver-every 400] [--resend-every 7]

use tools::args::{Args, LocalStack};
use tools::cdc::{print_report, run, CdcOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let local = LocalStack::from_env();
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
        snowflake_url: local.snowflake_url,
        key_file: local.key_file,
        region: local.region,
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
