//! The upsert handler's CPU path: decode → route/coerce → de-duplicate → MERGE request body.
//! 10,000 sensor readings over 50 keys (also KPL-aggregated, 100 per Kinesis record), 6,000 CDC
//! order changes flat and in Debezium envelopes; prints records/s and the HTTP requests a batch
//! needs (one per table below the split size).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use shared::config::Env;
use shared::kinesis::kpl::aggregate;
use shared::kinesis::record::{decode_kinesis_event, PayloadBuffer};
use shared::sample::{cdc_change, debezium_change, kinesis_event, sensor_reading, Rng};
use shared::snowflake::SnowflakeClient;
use upsert::{map_records, plan_table, Config};

const SENSORS: &str = r#"{"sensor_readings":{"keys":["sensorid"],"columns":[
    {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
    {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
    {"name":"status","path":"/status"}]}}"#;
const ORDERS: &str = r#"{"orders":{"keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at","delete":{"path":"/op","value":"d"},"payload_column":"payload"}}"#;
const DEBEZIUM_ORDERS: &str = r#"{"orders":{"envelope":"debezium","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}]}}"#;

fn config(table: &str, tables: &str) -> Config {
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "bench"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN", "unused"),
        ("ERROR_BUCKET", "unused"),
        ("TABLE", table),
        ("UPSERT_TABLES", tables),
    ];
    Config::from_env(&Env::new(&vars)).expect("bench configuration")
}

/// Returns (statements, request body bytes).
fn run(config: &Config, client: &SnowflakeClient, event: &str) -> (usize, usize) {
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(event, &mut payloads).expect("decodes");
    let mapping = map_records(config, &records);
    // every case measures the full path: a record quarantined here would flatter the number
    assert!(
        mapping.rejected.is_empty(),
        "{:?}",
        mapping.rejected.first()
    );
    let by_table = mapping.by_table;
    let mut statements = 0;
    let mut bytes = 0;
    for (table, candidates) in by_table {
        for statement in plan_table(config, &table, candidates).statements() {
            statements += 1;
            bytes += serde_json::to_vec(&client.request_body(&statement))
                .expect("serialises")
                .len();
        }
    }
    (statements, bytes)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let cases = cases(&Records::generate());
    let mut criterion = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .configure_from_args();
    let summary: Vec<String> = cases
        .iter()
        .map(|case| bench(&mut criterion, &runtime, case))
        .collect();
    criterion.final_summary();
    print_summary(&summary);
}

/// The records the cases are made of, drawn in this order from one seeded generator so that
/// every run measures the same records.
struct Records {
    sensors: Vec<String>,
    orders: Vec<String>,
    debezium: Vec<String>,
    /// The sensor readings as the KPL packs them.
    kpl: Vec<Vec<u8>>,
}

impl Records {
    fn generate() -> Self {
        let mut rng = Rng::new(7);
        let sensors: Vec<String> = (0..10_000).map(|_| sensor_reading(&mut rng, 50)).collect();
        let orders: Vec<String> = (0..6_000).map(|n| cdc_change(&mut rng, 1_000, n)).collect();
        let debezium: Vec<String> = (0..6_000)
            .map(|n| debezium_change(&mut rng, 1_000, n))
            .collect();
        let kpl = kpl_aggregated(&sensors);
        Self {
            sensors,
            orders,
            debezium,
            kpl,
        }
    }
}

/// As the KPL packs them: 100 user records per Kinesis record, partition keys kept.
fn kpl_aggregated(records: &[String]) -> Vec<Vec<u8>> {
    records
        .chunks(100)
        .map(|chunk| {
            let keys: Vec<String> = (0..chunk.len()).map(|i| format!("pk-{i}")).collect();
            let records: Vec<(&str, &[u8])> = keys
                .iter()
                .zip(chunk)
                .map(|(k, s)| (k.as_str(), s.as_bytes()))
                .collect();
            aggregate(&records)
        })
        .collect()
}

/// One benchmark: the Kinesis event a batch arrives in, the configuration it runs with, and how
/// many user records it holds (the throughput counted).
struct Case {
    name: &'static str,
    event: String,
    config: Config,
    records: usize,
}

/// Every benchmark, in the order they run and are summarised.
fn cases(r: &Records) -> [Case; 4] {
    [
        Case {
            name: "sensor_10000_50_keys",
            event: kinesis_event("s", "shardId-000000000000", 1, 1.7e9, &r.sensors),
            config: config("sensor_readings", SENSORS),
            records: r.sensors.len(),
        },
        Case {
            name: "orders_cdc_6000",
            event: kinesis_event("o", "shardId-000000000000", 1, 1.7e9, &r.orders),
            config: config("orders", ORDERS),
            records: r.orders.len(),
        },
        Case {
            name: "orders_debezium_6000",
            event: kinesis_event("d", "shardId-000000000000", 1, 1.7e9, &r.debezium),
            config: config("orders", DEBEZIUM_ORDERS),
            records: r.debezium.len(),
        },
        Case {
            name: "sensor_kpl_10000",
            event: kinesis_event("k", "shardId-000000000000", 1, 1.7e9, &r.kpl),
            config: config("sensor_readings", SENSORS),
            records: r.sensors.len(),
        },
    ]
}

/// Benchmarks the case as `upsert/<name>` (the id earlier numbers are matched by); returns its
/// summary line: records/s over ten plain runs, the statements (HTTP requests) and body bytes.
fn bench(criterion: &mut Criterion, runtime: &tokio::runtime::Runtime, case: &Case) -> String {
    let Case {
        name,
        event,
        config,
        records,
    } = case;
    let client = runtime
        .block_on(SnowflakeClient::new(config.snowflake.clone(), None))
        .expect("client");
    let mut group = criterion.benchmark_group("upsert");
    group.throughput(Throughput::Elements(*records as u64));
    group.bench_function(*name, |b| {
        b.iter(|| black_box(run(config, &client, black_box(event))))
    });
    group.finish();
    let (statements, bytes) = run(config, &client, event);
    let started = Instant::now();
    for _ in 0..10 {
        black_box(run(config, &client, event));
    }
    let secs = started.elapsed().as_secs_f64() / 10.0;
    format!(
        "{name:<22} {:>12.0} {:>14} {:>14}",
        *records as f64 / secs,
        statements,
        bytes
    )
}

fn print_summary(lines: &[String]) {
    println!(
        "\n{:<22} {:>12} {:>14} {:>14}",
        "batch", "records/s", "HTTP requests", "body bytes"
    );
    for line in lines {
        println!("{line}");
    }
}
