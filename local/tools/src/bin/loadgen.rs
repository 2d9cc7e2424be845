//! Puts generated records to a Kinesis stream (AWS, or the local stack via AWS_ENDPOINT_URL).
//!
//! loadgen --stream NAME [--template sensor|order|cdc] [--count 1000] [--rate 0] [--keys 50]
//!         [--seed 1] [--create --shards 2]

use std::io::Write as _;
use std::time::Instant;

use tools::args::Args;
use tools::loadgen::{run, Generator, Template};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), String> {
    let args = Args::parse(&["create"])?;
    let stream = args
        .get("stream")
        .ok_or("--stream is required")?
        .to_string();
    let template: Template = args.get("template").unwrap_or("sensor").parse()?;
    let count = args.parse_or("count", 1000u64)?;
    let rate = args.parse_or("rate", 0u64)?;
    let mut generator = Generator::new(
        template,
        args.parse_or("seed", 1u64)?,
        args.parse_or("keys", 50u64)?,
    );
    let aws = shared::aws::load_config().await;
    let client = aws_sdk_kinesis::Client::new(&aws);
    if args.flag("create") {
        tools::esm::ensure_stream(&client, &stream, args.parse_or("shards", 2i32)?)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut last_print = Instant::now();
    let report = run(&client, &stream, &mut generator, count, rate, |r| {
        if last_print.elapsed().as_secs_f64() >= 1.0 {
            last_print = Instant::now();
            eprint!(
                "\r{:>9} / {count} records  {:>9.0} records/s",
                r.records,
                r.records_per_sec()
            );
            let _ = std::io::stderr().flush();
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    eprintln!();
    println!(
        "put {} records ({:.1} MB) to {stream} in {:.2} s: {:.0} records/s, {} PutRecords requests, {} entries retried",
        report.records,
        report.bytes as f64 / 1e6,
        report.elapsed.as_secs_f64(),
        report.records_per_sec(),
        report.requests,
        report.retried_entries
    );
    Ok(())
}
