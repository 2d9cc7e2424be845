//! One orchestrator benchmark case, timed run by run: for comparing builds and for profilers.
//!
//! `cargo run --profile bench -p shared --example throughput -- sensor_10000 csv gzip 200`
//! prints the minimum and median of single runs; `make bench` is the reference measurement.
//! The format `envelope` times only the decoding of the event body into records.

use std::time::Instant;

use shared::kinesis::record::{decode_kinesis_event, PayloadBuffer};
use shared::sample::{bench_batches, bench_config, run_bench_case};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.into());
    let (name, format, compression) = (arg(0, "sensor_10000"), arg(1, "csv"), arg(2, "gzip"));
    let iterations: usize = arg(3, "100").parse().expect("iterations is a number");
    let Some(batch) = bench_batches().into_iter().find(|b| b.name == name) else {
        eprintln!("no batch {name}: medium_6000 or sensor_10000");
        std::process::exit(2);
    };
    let config = (format != "envelope").then(|| bench_config(&format, &compression, batch.columns));
    let mut runs: Vec<f64> = (0..iterations.max(1))
        .map(|_| {
            let event = std::hint::black_box(batch.event.as_str());
            let started = Instant::now();
            match &config {
                Some(config) => drop(std::hint::black_box(run_bench_case(config, event))),
                None => {
                    let mut payloads = PayloadBuffer::default();
                    drop(std::hint::black_box(decode_kinesis_event(
                        event,
                        &mut payloads,
                    )))
                }
            }
            started.elapsed().as_secs_f64()
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    let rate = |secs: f64| batch.records as f64 / secs;
    let mb_s = |secs: f64| batch.event.len() as f64 / secs / 1e6;
    let (min, median) = (runs[0], runs[runs.len() / 2]);
    println!(
        "{name} {format}+{compression}-1: min {:.3} ms ({:.0} rec/s, {:.0} MB/s), median {:.3} ms ({:.0} rec/s, {:.0} MB/s)",
        min * 1e3,
        rate(min),
        mb_s(min),
        median * 1e3,
        rate(median),
        mb_s(median),
    );
}
