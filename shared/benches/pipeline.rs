//! Raw event bytes → compressed object bytes: the orchestrator's CPU path.
//!
//! Two batches: ~6,000 medium order events (~340-byte JSON with strings that need CSV quoting,
//! ~5 MB of Lambda event JSON) and 10,000 sensor readings; NDJSON (nested, and flat for tables
//! loaded by column name) and CSV × gzip-1 and zstd.
//! Criterion prints its statistics; a summary table of records/s and MB/s of event JSON follows.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shared::sample::{bench_batches, bench_config, run_bench_case};

const CASES: [(&str, &str); 6] = [
    ("ndjson", "gzip"),
    ("ndjson-flat", "gzip"),
    ("ndjson", "zstd"),
    ("ndjson-flat", "zstd"),
    ("csv", "gzip"),
    ("csv", "zstd"),
];

fn main() {
    let batches = bench_batches();
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    for batch in &batches {
        let mut group = criterion.benchmark_group(batch.name);
        group.throughput(Throughput::Elements(batch.records as u64));
        for (format, compression) in CASES {
            let cfg = bench_config(format, compression, batch.columns);
            group.bench_function(format!("{format}+{compression}-1"), |b| {
                b.iter(|| black_box(run_bench_case(&cfg, black_box(&batch.event))))
            });
        }
        group.finish();
    }
    criterion.final_summary();

    println!("\nsummary (one core, event JSON in → compressed object bytes out):");
    println!(
        "{:<14} {:<14} {:>12} {:>10} {:>12}",
        "batch", "case", "records/s", "MB/s", "ratio"
    );
    // The same filter criterion takes (`cargo bench ... -- sensor_10000/csv`), so one case can be
    // profiled or compared on its own.
    let filter = positional_filter().unwrap_or_default();
    for batch in &batches {
        for (format, compression) in CASES {
            let case = format!("{}/{format}+{compression}-1", batch.name);
            if !case.contains(filter.as_str()) {
                continue;
            }
            let cfg = bench_config(format, compression, batch.columns);
            let out = run_bench_case(&cfg, &batch.event);
            // The median of single runs: this 2-core VM has noisy neighbours, and a mean over a
            // loop folds their bursts into the number.
            let mut runs: Vec<f64> = (0..21)
                .map(|_| {
                    let started = Instant::now();
                    black_box(run_bench_case(&cfg, black_box(&batch.event)));
                    started.elapsed().as_secs_f64()
                })
                .collect();
            runs.sort_by(f64::total_cmp);
            let secs = runs[runs.len() / 2];
            println!(
                "{:<14} {:<14} {:>12.0} {:>10.1} {:>11.1}x",
                batch.name,
                format!("{format}+{compression}-1"),
                batch.records as f64 / secs,
                batch.event.len() as f64 / secs / 1e6,
                batch.event.len() as f64 / out as f64
            );
        }
    }
}

/// Criterion's positional filter argument: the first argument that is neither a flag nor the
/// value of one of criterion's flags that take a value.
fn positional_filter() -> Option<String> {
    const TAKES_VALUE: [&str; 14] = [
        "--measurement-time",
        "--warm-up-time",
        "--profile-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--output-format",
        "--color",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter()
        .enumerate()
        .find(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !TAKES_VALUE.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a.clone())
}
