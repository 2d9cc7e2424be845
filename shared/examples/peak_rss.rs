//! Peak memory of the orchestrator's CPU path for one ~6 MB batch: prints VmHWM from /proc.
//! Run by `make bench`; Lambda bills memory by the configured size, so this sets the floor.

use shared::config::Env;
use shared::kinesis::record::{decode_kinesis_event, PayloadBuffer};
use shared::rawzone::{plan, RawZoneConfig};
use shared::sample::{kinesis_event, order_event, Rng};

fn main() {
    let mut rng = Rng::new(42);
    let orders: Vec<String> = (0..6_000).map(|n| order_event(&mut rng, n)).collect();
    let event = kinesis_event(
        "orders",
        "shardId-000000000000",
        1,
        1_732_200_000.0,
        &orders,
    );
    drop(orders);
    let vars = [
        ("RAW_BUCKET", "bench"),
        ("TABLE", "events"),
        ("FORMAT", "csv"),
        (
            "CSV_COLUMNS",
            r#"[{"name":"event_id","path":"/event_id"},{"name":"customer_name","path":"/customer/name"},{"name":"total","path":"/order/total"},{"name":"items","path":"/order/items"}]"#,
        ),
    ];
    let config = RawZoneConfig::from_env(&Env::new(&vars)).expect("configuration");
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(&event, &mut payloads).expect("decodes");
    let plan = plan(&config, &records).expect("plans");
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or("VmHWM: unknown");
    println!(
        "batch {:.1} MB event JSON, {} records → {} objects, {:.2} MB out; peak RSS {}",
        event.len() as f64 / 1e6,
        plan.records,
        plan.objects.len(),
        plan.bytes_out() as f64 / 1e6,
        hwm.trim_start_matches("VmHWM:").trim()
    );
}
