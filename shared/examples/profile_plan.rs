//! Loops the orchestrator's CPU path on the medium batch, for `perf record`.
use shared::config::Env;
use shared::rawzone::{plan, RawZoneConfig};
use shared::record::decode_kinesis_event;
use shared::sample::{kinesis_event, order_event, Rng};

fn main() {
    let format = std::env::args().nth(1).unwrap_or_else(|| "csv".into());
    let mut rng = Rng::new(42);
    let orders: Vec<String> = (0..6_000).map(|n| order_event(&mut rng, n)).collect();
    let event = kinesis_event(
        "orders",
        "shardId-000000000000",
        1,
        1_732_200_000.0,
        &orders,
    );
    let cols = r#"[{"name":"event_id","path":"/event_id"},{"name":"event_type","path":"/event_type"},{"name":"event_timestamp","path":"/event_timestamp"},{"name":"customer_id","path":"/customer/id"},{"name":"customer_name","path":"/customer/name"},{"name":"city","path":"/customer/city"},{"name":"total","path":"/order/total"},{"name":"currency","path":"/order/currency"},{"name":"items","path":"/order/items"}]"#;
    let vars = [
        ("RAW_BUCKET", "b"),
        ("TABLE", "events"),
        ("FORMAT", format.as_str()),
        ("CSV_COLUMNS", cols),
    ];
    let config = RawZoneConfig::from_env(&Env::new(&vars)).unwrap();
    let started = std::time::Instant::now();
    let mut n = 0;
    while started.elapsed().as_secs() < 6 {
        let records = decode_kinesis_event(&event).unwrap();
        std::hint::black_box(plan(&config, &records).unwrap());
        n += 1;
    }
    println!(
        "{:.0} records/s",
        (n * 6000) as f64 / started.elapsed().as_secs_f64()
    );
}
