//! Deterministic sample records: the reference system's sensor readings, e-commerce order
//! events and CDC rows. Used by the demo, the load generator and the benchmarks, so every one of
//! them exercises the same shapes.

use base64::Engine as _;

/// A small deterministic generator (SplitMix64), so runs are reproducible without seeding.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose sequence `seed` alone decides: the same seed, the same records.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0); the modulo bias is irrelevant for sample data.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// `{"sensorId": 6, "currentTemperature": 64, "status": "OK"}` with `sensors` distinct ids.
pub fn sensor_reading(rng: &mut Rng, sensors: u64) -> String {
    let status = *rng.pick(&["OK", "OK", "OK", "WARN", "FAIL"]);
    format!(
        r#"{{"sensorId": {}, "currentTemperature": {}, "status": "{}"}}"#,
        rng.below(sensors) + 1,
        40 + rng.below(60),
        status
    )
}

const NAMES: [&str; 6] = [
    "Ada Lovelace",
    "O'Brien, \"Bob\"",
    "Zoë Müller",
    "Li, Wei",
    "Grace Hopper",
    "José \"Pepe\" Núñez",
];
const CITIES: [&str; 5] = ["Berlin", "São Paulo", "New York, NY", "Zürich", "東京"];

/// A nested e-commerce event of about 340 bytes whose strings need CSV quoting.
pub fn order_event(rng: &mut Rng, n: u64) -> String {
    let event_type = *rng.pick(&[
        "order_created",
        "order_created",
        "order_shipped",
        "page_view",
    ]);
    let customer = rng.below(500);
    let total = (rng.below(50_000) as f64) / 100.0;
    format!(
        concat!(
            r#"{{"event_id":"evt-{n:08}","event_timestamp":"2024-11-21T14:{m:02}:{s:02}.{ms:03}Z","event_type":"{t}","#,
            r#""customer":{{"id":"c-{c}","name":"{name}","email":"c{c}@example.com","city":"{city}"}},"#,
            r#""order":{{"id":"ord-{n}","currency":"EUR","total":{total},"items":[{{"sku":"SKU-{sku}","qty":{qty},"note":"gift, wrapped"}}]}},"#,
            r#""session":{{"id":"s-{sess}","device":"mobile"}}}}"#
        ),
        n = n,
        m = (n / 60) % 60,
        s = n % 60,
        ms = n % 1000,
        t = event_type,
        c = customer,
        name = NAMES[(customer % NAMES.len() as u64) as usize].replace('"', "\\\""),
        city = rng.pick(&CITIES),
        total = total,
        sku = rng.below(100),
        qty = 1 + rng.below(4),
        sess = rng.below(10_000),
    )
}

/// A CDC row change for an `orders` table keyed by `order_id`: insert, update or delete.
pub fn cdc_change(rng: &mut Rng, keys: u64, n: u64) -> String {
    let op = *rng.pick(&["c", "u", "u", "u", "d"]);
    format!(
        r#"{{"op":"{op}","order_id":{},"status":"{}","amount":{},"customer":"{}","updated_at":"2024-11-21T15:{:02}:{:02}Z"}}"#,
        rng.below(keys) + 1,
        rng.pick(&["NEW", "PAID", "SHIPPED", "CANCELLED"]),
        (rng.below(100_000) as f64) / 100.0,
        NAMES[(n % NAMES.len() as u64) as usize].replace('"', "\\\""),
        (n / 60) % 60,
        n % 60,
    )
}

/// The same change as Debezium's MySQL connector writes it (JSON converter without schemas):
/// `after` for creates and updates, keys in `before` for deletes, `source` with the binlog position.
pub fn debezium_change(rng: &mut Rng, keys: u64, n: u64) -> String {
    let flat = cdc_change(rng, keys, n);
    let (op, image) = match flat
        .strip_prefix(r#"{"op":""#)
        .and_then(|r| r.split_once('"'))
    {
        Some((op, rest)) => (op.to_string(), format!("{{{}", &rest[1..])),
        None => ("c".to_string(), flat.clone()),
    };
    let (before, after) = if op == "d" {
        (image.as_str(), "null")
    } else {
        ("null", image.as_str())
    };
    format!(
        r#"{{"before":{before},"after":{after},"source":{{"version":"2.5.4.Final","connector":"mysql","name":"shop","ts_ms":{ts},"snapshot":"false","db":"shop","table":"orders","server_id":1,"file":"mysql-bin.000003","pos":{pos},"row":0}},"op":"{op}","ts_ms":{ts}}}"#,
        ts = 1_732_201_200_000 + n,
        pos = 154 + n * 311,
    )
}

/// A Lambda Kinesis event body for these payloads, one shard, sequence numbers from `first_seq`.
pub fn kinesis_event(
    stream: &str,
    shard: &str,
    first_seq: u128,
    arrival_secs: f64,
    payloads: &[impl AsRef<[u8]>],
) -> String {
    let mut out = String::with_capacity(
        payloads
            .iter()
            .map(|p| p.as_ref().len() * 4 / 3 + 420)
            .sum::<usize>()
            + 16,
    );
    out.push_str("{\"Records\":[");
    for (i, payload) in payloads.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let seq = first_seq + i as u128;
        out.push_str(&format!(
            concat!(
                r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"pk-{pk}","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":{ts}}},"#,
                r#""eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"{shard}:{seq}","eventName":"aws:kinesis:record","#,
                r#""invokeIdentityArn":"arn:aws:iam::123456789012:role/lambda","awsRegion":"us-east-1","#,
                r#""eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"}}"#
            ),
            pk = i % 64,
            seq = seq,
            data = base64::engine::general_purpose::STANDARD.encode(payload.as_ref()),
            ts = arrival_secs,
            shard = shard,
            stream = stream,
        ));
    }
    out.push_str("]}");
    out
}

/// Standard base64, for writing event fixtures (the functions only decode).
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A Lambda Kinesis event body with every `group` records packed into one KPL aggregate, as the
/// KPL sends them: each aggregate keeps its first record's metadata (sequence number, arrival).
pub fn kpl_aggregated_event(body: &str, group: usize) -> String {
    use base64::Engine as _;
    let mut event: serde_json::Value = serde_json::from_str(body).expect("an event body");
    let records = event["Records"].as_array().expect("Records").clone();
    let aggregated: Vec<serde_json::Value> = records
        .chunks(group.max(1))
        .map(|chunk| {
            let subs: Vec<(&str, Vec<u8>)> = chunk
                .iter()
                .map(|r| {
                    let k = &r["kinesis"];
                    let data = base64::engine::general_purpose::STANDARD
                        .decode(k["data"].as_str().expect("data"))
                        .expect("base64 data");
                    (k["partitionKey"].as_str().expect("partitionKey"), data)
                })
                .collect();
            let refs: Vec<(&str, &[u8])> = subs.iter().map(|(k, d)| (*k, &d[..])).collect();
            let mut outer = chunk[0].clone();
            outer["kinesis"]["data"] = base64_encode(&crate::kinesis::kpl::aggregate(&refs)).into();
            outer
        })
        .collect();
    event["Records"] = aggregated.into();
    event.to_string()
}

/// CSV columns of the order events, for the benchmarks.
pub(crate) const ORDER_CSV_COLUMNS: &str = r#"[{"name":"event_id","path":"/event_id"},{"name":"event_type","path":"/event_type"},
 {"name":"event_timestamp","path":"/event_timestamp"},{"name":"customer_id","path":"/customer/id"},
 {"name":"customer_name","path":"/customer/name"},{"name":"city","path":"/customer/city"},
 {"name":"total","path":"/order/total"},{"name":"currency","path":"/order/currency"},{"name":"items","path":"/order/items"}]"#;
/// CSV columns of the sensor readings, for the benchmarks.
pub(crate) const SENSOR_CSV_COLUMNS: &str = r#"[{"name":"sensorid","path":"/sensorId"},{"name":"currenttemperature","path":"/currentTemperature"},{"name":"status","path":"/status"}]"#;

/// One benchmark batch: a whole Lambda event body.
pub struct BenchBatch {
    /// The benchmark group's name (`medium_6000`, `sensor_10000`).
    pub name: &'static str,
    /// The Kinesis event body, as Lambda would send it.
    pub event: String,
    /// Records in the event, for throughput in records per second.
    pub records: usize,
    /// `CSV_COLUMNS` for the records' shape, for the CSV cases.
    pub columns: &'static str,
}

/// The orchestrator benchmark's batches: ~6,000 medium order events (~5 MB of event JSON) and
/// 10,000 sensor readings, with 56-digit sequence numbers as AWS sends them.
pub fn bench_batches() -> Vec<BenchBatch> {
    let mut rng = Rng::new(42);
    let orders: Vec<String> = (0..6_000).map(|n| order_event(&mut rng, n)).collect();
    let sensors: Vec<String> = (0..10_000).map(|_| sensor_reading(&mut rng, 50)).collect();
    let first_seq = 49_590_338_271_490_256_608_559_692_538_361_571u128;
    let shard = "shardId-000000000000";
    vec![
        BenchBatch {
            name: "medium_6000",
            event: kinesis_event("orders", shard, first_seq, 1_732_200_000.0, &orders),
            records: orders.len(),
            columns: ORDER_CSV_COLUMNS,
        },
        BenchBatch {
            name: "sensor_10000",
            event: kinesis_event("sensors", shard, first_seq, 1_732_200_000.0, &sensors),
            records: sensors.len(),
            columns: SENSOR_CSV_COLUMNS,
        },
    ]
}

/// The raw-zone configuration of one benchmark case (level 1 compression). `ndjson-flat` is
/// NDJSON with the table in `MATCH_BY_NAME_TABLES`: flat lines instead of nested ones.
pub fn bench_config(
    format: &str,
    compression: &str,
    columns: &str,
) -> crate::rawzone::RawZoneConfig {
    let (format, by_name) = match format {
        "ndjson-flat" => ("ndjson", r#"["events"]"#),
        other => (other, "[]"),
    };
    let vars = [
        ("RAW_BUCKET", "bench"),
        ("TABLE", "events"),
        ("FORMAT", format),
        ("COMPRESSION", compression),
        ("COMPRESSION_LEVEL", "1"),
        ("CSV_COLUMNS", columns),
        ("MATCH_BY_NAME_TABLES", by_name),
    ];
    crate::rawzone::RawZoneConfig::from_env(&crate::config::Env::new(&vars))
        .expect("benchmark configuration is valid")
}

/// The orchestrator's CPU path: event body → planned objects; returns the bytes out.
pub fn run_bench_case(config: &crate::rawzone::RawZoneConfig, event: &str) -> usize {
    let mut payloads = crate::kinesis::record::PayloadBuffer::default();
    let records = crate::kinesis::record::decode_kinesis_event(event, &mut payloads)
        .expect("benchmark event decodes");
    crate::rawzone::plan(config, &records)
        .expect("benchmark batch plans")
        .bytes_out()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::payload::Extractor;

    #[test]
    fn debezium_changes_carry_the_flat_change_as_their_image() {
        let (mut flat_rng, mut dbz_rng) = (Rng::new(3), Rng::new(3));
        for n in 0..50 {
            let flat: serde_json::Value =
                serde_json::from_str(&cdc_change(&mut flat_rng, 10, n)).unwrap();
            let dbz: serde_json::Value =
                serde_json::from_str(&debezium_change(&mut dbz_rng, 10, n)).unwrap();
            let op = flat["op"].as_str().unwrap();
            assert_eq!(dbz["op"], op);
            let image = if op == "d" {
                &dbz["before"]
            } else {
                &dbz["after"]
            };
            assert_eq!(image["order_id"], flat["order_id"]);
            assert_eq!(image["updated_at"], flat["updated_at"]);
            assert!(dbz["source"]["ts_ms"].is_u64());
        }
    }

    #[test]
    fn samples_are_json_objects_of_the_expected_size() {
        let mut rng = Rng::new(7);
        for n in 0..200 {
            let order = order_event(&mut rng, n);
            assert!(Extractor::new().parse(order.as_bytes()).is_ok(), "{order}");
            assert!(
                (280..420).contains(&order.len()),
                "{} bytes: {order}",
                order.len()
            );
            assert!(Extractor::new()
                .parse(sensor_reading(&mut rng, 50).as_bytes())
                .is_ok());
            assert!(Extractor::new()
                .parse(cdc_change(&mut rng, 100, n).as_bytes())
                .is_ok());
        }
        let event = kinesis_event(
            "s",
            "shardId-000000000000",
            1,
            1.0,
            &[sensor_reading(&mut rng, 5)],
        );
        assert_eq!(
            crate::kinesis::record::decode_kinesis_event(&event, &mut Default::default())
                .unwrap()
                .len(),
            1
        );
    }
}
