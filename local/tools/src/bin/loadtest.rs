//! `make loadtest`: merge mode against streaming mode at 1, 4, 16 and 32 shards (see
//! `tools::loadtest`). Not part of `make test`.
//!
//! loadtest [--shards 1,4,16,32] [--records 6000] [--keys 2000] [--batch-size 100]

use tools::args::Args;
use tools::loadtest::{print_header, run, LoadTestOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let shards = args
        .get("shards")
        .unwrap_or("1,4,16,32")
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<i32>()
                .map_err(|e| format!("--shards: {e}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let opts = LoadTestOptions {
        shards,
        records: args.parse_or("records", 6_000)?,
        keys: args.parse_or("keys", 2_000)?,
        batch_size: args.parse_or("batch-size", 100)?,
        snowflake_url: std::env::var("LOCAL_SF_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8787".into()),
        key_file: std::env::var("SNOWFLAKE_PRIVATE_KEY_FILE")
            .unwrap_or_else(|_| "local/keys/snowflake_test_key.p8".into()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
    };
    println!(
        "{} records of {} sensors per run, batches of {}, one invocation per shard at a time\n",
        opts.records, opts.keys, opts.batch_size
    );
    print_header();
    let reports = run(opts).await?;
    for r in &reports {
        if r.rows == 0 {
            return Err(format!("{} shards, {}: nothing landed", r.shards, r.mode));
        }
    }
    Ok(())
}
