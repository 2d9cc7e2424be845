//! Raw event bytes → compressed object bytes: the orchestrator's CPU path.
//!
//! Two batches: ~6,000 medium order events (~340-byte JSON with strings that need CSV quoting,
//! ~5 MB of Lambda event JSON) and 10,000 sensor readings; NDJSON and CSV × gzip-1 and zstd.
//! Criterion prints its statistics; a summary table of records/s and MB/s of event JSON follows.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shared::config::Env;
use shared::rawzone::{plan, RawZoneConfig};
use shared::record::decode_kinesis_event;
use shared::sample::{kinesis_event, order_event, sensor_reading, Rng};

const ORDER_COLUMNS: &str = r#"[{"name":"event_id","path":"/event_id"},{"name":"event_type","path":"/event_type"},
 {"name":"event_timestamp","path":"/event_timestamp"},{"name":"customer_id","path":"/customer/id"},
 {"name":"customer_name","path":"/customer/name"},{"name":"city","path":"/customer/city"},
 {"name":"total","path":"/order/total"},{"name":"currency","path":"/order/currency"},{"name":"items","path":"/order/items"}]"#;
const SENSOR_COLUMNS: &str = r#"[{"name":"sensorid","path":"/sensorId"},{"name":"currenttemperature","path":"/currentTemperature"},{"name":"status","path":"/status"}]"#;

struct Batch {
    name: &'static str,
    event: String,
    records: usize,
    columns: &'static str,
}

fn batches() -> Vec<Batch> {
    let mut rng = Rng::new(42);
    let orders: Vec<String> = (0..6_000).map(|n| order_event(&mut rng, n)).collect();
    let sensors: Vec<String> = (0..10_000).map(|_| sensor_reading(&mut rng, 50)).collect();
    let first_seq = 49_590_338_271_490_256_608_559_692_538_361_571u128;
    vec![
        Batch {
            name: "medium_6000",
            event: kinesis_event(
                "orders",
                "shardId-000000000000",
                first_seq,
                1_732_200_000.0,
                &orders,
            ),
            records: orders.len(),
            columns: ORDER_COLUMNS,
        },
        Batch {
            name: "sensor_10000",
            event: kinesis_event(
                "sensors",
                "shardId-000000000000",
                first_seq,
                1_732_200_000.0,
                &sensors,
            ),
            records: sensors.len(),
            columns: SENSOR_COLUMNS,
        },
    ]
}

fn config(format: &str, compression: &str, columns: &str) -> RawZoneConfig {
    let vars = [
        ("RAW_BUCKET", "bench"),
        ("TABLE", "events"),
        ("FORMAT", format),
        ("COMPRESSION", compression),
        ("COMPRESSION_LEVEL", "1"),
        ("CSV_COLUMNS", columns),
    ];
    RawZoneConfig::from_env(&Env::new(&vars)).expect("bench configuration")
}

fn run(config: &RawZoneConfig, event: &str) -> usize {
    let records = decode_kinesis_event(event).expect("decodes");
    let plan = plan(config, &records).expect("plans");
    plan.bytes_out()
}

const CASES: [(&str, &str); 4] = [
    ("ndjson", "gzip"),
    ("ndjson", "zstd"),
    ("csv", "gzip"),
    ("csv", "zstd"),
];

fn main() {
    let batches = batches();
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    for batch in &batches {
        let mut group = criterion.benchmark_group(batch.name);
        group.throughput(Throughput::Elements(batch.records as u64));
        for (format, compression) in CASES {
            let cfg = config(format, compression, batch.columns);
            group.bench_function(format!("{format}+{compression}-1"), |b| {
                b.iter(|| black_box(run(&cfg, black_box(&batch.event))))
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
    for batch in &batches {
        for (format, compression) in CASES {
            let cfg = config(format, compression, batch.columns);
            let out = run(&cfg, &batch.event);
            let iterations = 15;
            let started = Instant::now();
            for _ in 0..iterations {
                black_box(run(&cfg, black_box(&batch.event)));
            }
            let secs = started.elapsed().as_secs_f64() / iterations as f64;
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
