//! `make loadtest`: streaming mode against merge mode at 1, 4, 16 and 32 shards, on the local
//! stack with its Snowflake timing model on (see `tools::loadtest`). Not part of `make test`.
//!
//! loadtest [--shards 1,4,16,32] [--records-per-shard 250] [--max-records 3000] [--keys 2000]
//!          [--batch-size 100] [--ceiling-seconds 2] [--svg local/loadtest/loadtest.svg]

use std::time::Instant;

use tools::args::{Args, LocalStack};
use tools::ceiling;
use tools::loadtest::{chart, print_header, print_report, run, LoadTestOptions};

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
        records_per_shard: args.parse_or("records-per-shard", 250)?,
        max_records: args.parse_or("max-records", 3_000)?,
        keys: args.parse_or("keys", 2_000)?,
        batch_size: args.parse_or("batch-size", 100)?,
        snowflake_url: local.snowflake_url,
        key_file: local.key_file,
        region: local.region,
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
    };
    let svg_path = args
        .get("svg")
        .unwrap_or("local/loadtest/loadtest.svg")
        .to_string();
    print_ceiling(&opts, args.parse_or("ceiling-seconds", 2)?).await?;
    let model = ceiling::timing_model(&opts.snowflake_url).await?;
    println!(
        "\nTiming model: {model}. {} records per shard (at most {}) of {} sensors per run, batches of {}, one invocation per shard at a time",
        opts.records_per_shard, opts.max_records, opts.keys, opts.batch_size
    );
    let started = Instant::now();
    let reports = run(opts).await?;
    println!(
        "\nLatencies are put → visible, p50/p99 in seconds; every record landed exactly once."
    );
    print_header();
    reports.iter().for_each(print_report);
    std::fs::create_dir_all(
        std::path::Path::new(&svg_path)
            .parent()
            .unwrap_or(".".as_ref()),
    )
    .map_err(|e| format!("{svg_path}: {e}"))?;
    std::fs::write(&svg_path, chart(&reports)).map_err(|e| format!("{svg_path}: {e}"))?;
    println!(
        "\n{svg_path} written; the runs took {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The service's own ceiling (model off) in a database of its own, printed first.
async fn print_ceiling(opts: &LoadTestOptions, seconds: u64) -> Result<(), String> {
    if seconds == 0 {
        return Ok(());
    }
    let c = tools::loadtest::ceiling(opts, seconds).await?;
    println!(
        "Local service ceiling (timing model off, {seconds} s each): {:.0} statements/s ({} clients of one-row INSERTs), {:.0} appends/s ({} channels, {} rows each: {:.0} rows/s)",
        c.statements_per_sec,
        ceiling::STATEMENT_CLIENTS,
        c.appends_per_sec,
        ceiling::CHANNELS,
        ceiling::ROWS_PER_APPEND,
        c.appends_per_sec * ceiling::ROWS_PER_APPEND as f64
    );
    Ok(())
}
