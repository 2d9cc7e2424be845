//! `make loadtest`: merge mode against streaming mode at 1, 4, 16 and 32 shards (see
//! `tools::loadtest`). Not part of `make test`.
//!
//! loadtest [--shards 1,4,16,32] [--records 6000] [--keys 2000] [--batch-size 100]

use tools::args::{Args, LocalStack};
use tools::loadtest::{print_header, run, LoadTestOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let local = LocalStack::from_env();
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
        snowflake_url: local.snowflake_url,
        key_file: local.key_file,
        region: local.region,
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
