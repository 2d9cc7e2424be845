use std::collections::BTreeMap;

use shared::config::Env;
use shared::kinesis::record::{decode_kinesis_event, PayloadBuffer};

use super::*;
use shared::snowflake::Binding;

const ORDERS: &str = r#"{"orders":{"keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at","delete":{"path":"/op","value":"d"}}}"#;
const SENSORS: &str = r#"{"sensor_readings":{"keys":["sensorid"],"columns":[
    {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
    {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
    {"name":"status","path":"/status"}]}}"#;

/// A configuration of one table, `tables` as `UPSERT_TABLES`.
pub(crate) fn config(table: &str, tables: &str) -> Config {
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "acct"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("ERROR_BUCKET", "b"),
        ("TABLE", table),
        ("UPSERT_TABLES", tables),
    ];
    Config::from_env(&Env::new(&vars)).unwrap()
}

fn rows_of(statement: &Statement) -> serde_json::Value {
    match &statement.bindings[..] {
        [Binding::Text(Some(json))] => serde_json::from_str(json).unwrap(),
        other => panic!("one TEXT binding expected, got {other:?}"),
    }
}

#[test]
fn sample_cdc_event_becomes_one_merge_of_the_newest_changes() {
    let config = config("orders", ORDERS);
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(
        include_str!("../../../../events/kinesis-cdc-orders.json"),
        &mut payloads,
    )
    .unwrap();
    let MappedBatch {
        by_table, rejected, ..
    } = map_records(&config, &records);
    assert!(rejected.is_empty());
    let plan = plan_table(&config, "orders", by_table.into_values().next().unwrap());
    assert_eq!((plan.rows.len(), plan.duplicates), (3, 3));
    let statements = plan.statements();
    assert_eq!(statements.len(), 1);
    let rows = rows_of(&statements[0]);
    let summary: Vec<(String, String, bool)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["c0"].as_str().unwrap().to_string(),
                r["c1"].as_str().unwrap_or("NULL").to_string(),
                r["d"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("1003".into(), "NEW".into(), false),
            ("1002".into(), "NULL".into(), true),
            ("1001".into(), "SHIPPED".into(), false)
        ]
    );
    assert!(statements[0]
        .sql
        .starts_with(r#"MERGE INTO "DB"."S"."ORDERS""#));
    assert!(statements[0].request_id.is_some());
}

#[test]
fn sample_sensor_event_repeats_keys_and_keeps_the_newest() {
    let config = config("sensor_readings", SENSORS);
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(
        include_str!("../../../../events/kinesis-sensors.json"),
        &mut payloads,
    )
    .unwrap();
    let by_table = map_records(&config, &records).by_table;
    let plan = plan_table(
        &config,
        "sensor_readings",
        by_table.into_values().next().unwrap(),
    );
    assert_eq!((plan.rows.len(), plan.duplicates), (3, 3));
    let statements = plan.statements();
    let rows = rows_of(&statements[0]);
    let temps: Vec<(&str, &str)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["c0"].as_str().unwrap(), r["c1"].as_str().unwrap()))
        .collect();
    assert_eq!(temps, [("8", "40"), ("7", "95"), ("6", "66")]);
    // The same batch plans the same request ids: a re-invoked Lambda is not executed twice.
    let again = map_records(&config, &records).by_table;
    let replan = plan_table(
        &config,
        "sensor_readings",
        again.into_values().next().unwrap(),
    );
    assert_eq!(replan.statements()[0].request_id, statements[0].request_id);
}

#[test]
fn request_ids_name_the_stream() {
    let config = config("sensor_readings", SENSORS);
    let body = include_str!("../../../../events/kinesis-sensors.json");
    let other_stream = body.replace(":stream/", ":stream/other-");
    assert_ne!(
        body, other_stream,
        "the fixture names its stream in eventSourceARN"
    );
    let ids = |event: &str| {
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(event, &mut payloads).unwrap();
        let by_table = map_records(&config, &records).by_table;
        let candidates = by_table.into_values().next().unwrap();
        plan_table(&config, "sensor_readings", candidates)
            .statements()
            .into_iter()
            .map(|s| s.request_id)
            .collect::<Vec<_>>()
    };
    // two streams with the same shard ids and sequence numbers are different statements
    assert_ne!(ids(body), ids(&other_stream));
    assert_eq!(ids(body), ids(body));
}

const DEBEZIUM: &str = r#"{"orders":{"envelope":"debezium","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}]}}"#;

/// `(key, status, delete)` of every row the event's one MERGE sends, with the batch's
/// rejection reasons and skip counts.
#[allow(clippy::type_complexity)]
fn merged(
    config: &Config,
    event: &str,
) -> (
    Vec<(String, String, bool)>,
    Vec<String>,
    BTreeMap<&'static str, usize>,
) {
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(event, &mut payloads).unwrap();
    let MappedBatch {
        by_table,
        rejected,
        skipped,
        ..
    } = map_records(config, &records);
    let mut rows = Vec::new();
    for (table, candidates) in by_table {
        for statement in plan_table(config, &table, candidates).statements() {
            for r in rows_of(&statement).as_array().unwrap() {
                rows.push((
                    r["c0"].as_str().unwrap().to_string(),
                    r["c1"].as_str().unwrap_or("NULL").to_string(),
                    r["d"].as_bool().unwrap(),
                ));
            }
        }
    }
    let reasons = rejected.into_iter().map(|r| r.reason).collect();
    (rows, reasons, skipped)
}

fn row(key: &str, status: &str, delete: bool) -> (String, String, bool) {
    (key.into(), status.into(), delete)
}

#[test]
fn sample_debezium_event_applies_creates_updates_deletes_and_a_key_change() {
    let config = config("orders", DEBEZIUM);
    let (rows, rejected, skipped) = merged(
        &config,
        include_str!("../../../../events/kinesis-debezium-orders.json"),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    // 1002 created then deleted; 1003 re-keyed to 1005 (delete + create), then 1005 paid.
    assert_eq!(
        rows,
        [
            row("1001", "SHIPPED", false),
            row("1002", "NEW", true),
            row("1003", "NEW", true),
            row("1005", "PAID", false),
        ]
    );
    assert_eq!(
        skipped,
        BTreeMap::from([("debezium tombstone", 2), ("debezium truncate", 1)])
    );
}

#[test]
fn debezium_tombstones_are_counted_before_routing() {
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "acct"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("ERROR_BUCKET", "b"),
        ("ROUTE_FIELD", "/source/table"),
        ("ROUTE_MAP", r#"{"orders":"orders"}"#),
        ("UPSERT_TABLES", DEBEZIUM),
    ];
    let config = Config::from_env(&Env::new(&vars)).unwrap();
    let (rows, rejected, skipped) = merged(
        &config,
        include_str!("../../../../events/kinesis-debezium-orders.json"),
    );
    // A tombstone has no table to route by: it is counted, not quarantined. The one record
    // wrapped in `payload` routes by `/payload/source/table`, not this field.
    assert_eq!(
        skipped,
        BTreeMap::from([("debezium tombstone", 2), ("debezium truncate", 1)])
    );
    assert_eq!(rejected, ["routing field /source/table is missing or null"]);
    assert_eq!(rows.len(), 4);
}

#[test]
fn debezium_versions_order_by_source_position_not_arrival() {
    let config = config("orders", DEBEZIUM);
    let body = include_str!("../../../../events/kinesis-debezium-orders.json");
    let mut payloads = PayloadBuffer::default();
    let mut records = decode_kinesis_event(body, &mut payloads).unwrap();
    // The update of 1001 arrives before its snapshot read: the newer source position wins.
    records.swap(0, 3);
    let by_table = map_records(&config, &records).by_table;
    let plan = plan_table(&config, "orders", by_table.into_values().next().unwrap());
    let rows = rows_of(&plan.statements()[0]);
    let r1001 = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["c0"] == "1001")
        .unwrap();
    assert_eq!(r1001["c1"], "SHIPPED");
    // file / pos / row, then ts_ms
    assert!(r1001["c5"]
        .as_str()
        .unwrap()
        .ends_with("/00000001732201500000"));
}

#[test]
fn sample_dms_event_applies_changes_and_counts_control_records() {
    let dms = DEBEZIUM.replace("\"debezium\"", "\"dms\"");
    let config = config("orders", &dms);
    let (rows, rejected, skipped) = merged(
        &config,
        include_str!("../../../../events/kinesis-dms-orders.json"),
    );
    assert!(rejected.is_empty(), "{rejected:?}");
    // The update to key 1005 carries before-image 1003: the old key is deleted.
    assert_eq!(
        rows,
        [
            row("1001", "SHIPPED", false),
            row("1002", "NULL", true),
            row("1003", "NULL", true),
            row("1005", "PAID", false),
        ]
    );
    assert_eq!(skipped, BTreeMap::from([("dms control record", 1)]));
}

#[test]
fn bad_envelopes_are_quarantined_with_reasons() {
    let config = config("orders", DEBEZIUM);
    let body = include_str!("../../../../events/kinesis-debezium-orders.json");
    let mut event: serde_json::Value = serde_json::from_str(body).unwrap();
    let bad = [
        r#"{"op":"x","after":{"order_id":1}}"#,
        r#"{"op":"d","before":null,"after":null,"source":{"ts_ms":1}}"#,
        r#"{"op":"d","before":{"status":"NEW"},"after":null,"source":{"ts_ms":1}}"#,
        r#"{"after":{"order_id":1}}"#,
    ];
    for (i, data) in bad.iter().enumerate() {
        event["Records"][i]["kinesis"]["data"] =
            shared::sample::base64_encode(data.as_bytes()).into();
    }
    let (_, rejected, _) = merged(&config, &event.to_string());
    assert_eq!(
        rejected,
        [
            "debezium envelope: unknown operation \"x\"",
            "debezium envelope: operation \"d\" has no before row image",
            "debezium column \"ORDER_ID\": key field /before/order_id is missing or null",
            "debezium envelope: op is missing",
        ]
    );
}

/// Every MERGE row of an event without its Kinesis lineage.
fn merged_values(config: &Config, event: &str) -> Vec<serde_json::Value> {
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(event, &mut payloads).unwrap();
    let mapping = map_records(config, &records);
    assert!(mapping.rejected.is_empty());
    let mut out = Vec::new();
    for (table, candidates) in mapping.by_table {
        for statement in plan_table(config, &table, candidates).statements() {
            for mut row in rows_of(&statement).as_array().unwrap().clone() {
                for lineage in ["s", "h", "a"] {
                    row.as_object_mut().unwrap().remove(lineage);
                }
                out.push(row);
            }
        }
    }
    out.sort_by_key(|r| r.to_string());
    out
}

#[test]
fn kpl_aggregated_batches_merge_the_same_rows_as_plain_ones() {
    for (config, body) in [
        (
            config("orders", ORDERS),
            include_str!("../../../../events/kinesis-cdc-orders.json"),
        ),
        (
            config("orders", DEBEZIUM),
            include_str!("../../../../events/kinesis-debezium-orders.json"),
        ),
        (
            config("sensor_readings", SENSORS),
            include_str!("../../../../events/kinesis-sensors.json"),
        ),
    ] {
        let plain = merged_values(&config, body);
        assert!(!plain.is_empty());
        for group in [1, 2, 3, 100] {
            let aggregated = shared::sample::kpl_aggregated_event(body, group);
            assert_eq!(
                merged_values(&config, &aggregated),
                plain,
                "groups of {group}"
            );
        }
    }
}

#[test]
fn kpl_sub_records_of_one_aggregate_keep_distinct_request_ids_and_order() {
    let config = Config {
        max_rows: 1,
        ..config("sensor_readings", SENSORS)
    };
    let body = shared::sample::kpl_aggregated_event(
        include_str!("../../../../events/kinesis-sensors.json"),
        100,
    );
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(&body, &mut payloads).unwrap();
    assert!(records.len() > 1);
    assert!(records
        .iter()
        .all(|r| r.meta.sequence_number == records[0].meta.sequence_number));
    let by_table = map_records(&config, &records).by_table;
    let statements = plan_table(
        &config,
        "sensor_readings",
        by_table.into_values().next().unwrap(),
    )
    .statements();
    let mut ids: Vec<_> = statements.iter().map(|s| s.request_id).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "one request id per statement");
}

#[test]
fn a_corrupt_kpl_aggregate_is_quarantined_whole() {
    let config = config("sensor_readings", SENSORS);
    let body = shared::sample::kpl_aggregated_event(
        include_str!("../../../../events/kinesis-sensors.json"),
        100,
    );
    let mut event: serde_json::Value = serde_json::from_str(&body).unwrap();
    let data = event["Records"][0]["kinesis"]["data"]
        .as_str()
        .unwrap()
        .to_string();
    // Flip a character in the middle of the protobuf body: the MD5 trailer no longer fits.
    let mut bytes = data.into_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
    event["Records"][0]["kinesis"]["data"] = String::from_utf8(bytes).unwrap().into();
    let (rows, rejected, _) = merged(&config, &event.to_string());
    assert!(rows.is_empty());
    assert_eq!(rejected, ["KPL aggregated record fails its MD5 check"]);
}

#[test]
fn sample_bad_records_are_rejected_with_reasons() {
    let config = config("sensor_readings", SENSORS);
    let mut payloads = PayloadBuffer::default();
    let records = decode_kinesis_event(
        include_str!("../../../../events/kinesis-bad-records.json"),
        &mut payloads,
    )
    .unwrap();
    let MappedBatch {
        by_table, rejected, ..
    } = map_records(&config, &records);
    assert_eq!(by_table["sensor_readings"].len(), 2);
    let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4);
    assert_eq!(reasons[3], "data is not valid base64");
}
