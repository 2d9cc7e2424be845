use super::*;
use crate::notify::NotifyError;
use shared::config::Env;

const NDJSON: &str = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-1-3.ndjson.gz";
const CSV: &str = "raw/order_events/2024/03/05/07/shardId-000000000001-7-9.csv.gz";

fn config(extra: &[(&'static str, &'static str)]) -> Config {
    let mut vars = vec![
        ("RAW_BUCKET", "raw-bucket"),
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("SNOWFLAKE_AUTH", "pat"),
    ];
    vars.extend_from_slice(extra);
    Config::from_env(&Env::new(&vars)).unwrap()
}

fn object(bucket: &str, key: &str) -> ObjectRef {
    ObjectRef {
        bucket: bucket.into(),
        key: key.into(),
        size: None,
        etag: Some(format!("etag-{key}")),
    }
}

fn item(notification: Result<Notification, NotifyError>) -> Item {
    Item {
        receipt: None,
        message_id: Some("m".into()),
        notification,
    }
}

fn invocation(items: Vec<Item>) -> Invocation {
    Invocation {
        trigger: crate::notify::Trigger::Sqs,
        items,
    }
}

#[test]
fn groups_by_table_and_format_and_fails_or_skips_before_any_sql() {
    let bad = "raw/sensor_readings/2024/03/05/07/it's.ndjson.gz";
    let inv = invocation(vec![
        item(Ok(Notification::Objects(vec![
            object("raw-bucket", NDJSON),
            object("raw-bucket", CSV),
            object("other-bucket", NDJSON),
        ]))),
        item(Ok(Notification::Objects(vec![
            object("raw-bucket", NDJSON),
            object("raw-bucket", bad),
            object("raw-bucket", "elsewhere/x.csv"),
        ]))),
        item(Ok(Notification::TestEvent)),
        item(Err(NotifyError::Json("x".into()))),
    ]);
    let plan = plan(&inv, &config(&[]));
    let out = &plan.outcome;
    assert_eq!(out.trigger, "sqs");
    assert_eq!((out.messages, out.test_events, out.skipped), (4, 1, 2));
    assert_eq!((out.files, out.failed), (1, 1));
    assert!(matches!(out.file_outcomes[bad], FileOutcome::Failed { .. }));
    assert!(plan.item_failed[1].as_deref().unwrap().contains("it's"));
    assert_eq!(plan.item_failed[3].as_deref(), Some("not JSON: x"));
    assert!(plan.item_failed[0].is_none() && plan.item_failed[2].is_none());
    let tables: Vec<&str> = plan.groups.iter().map(|g| g.table.as_str()).collect();
    assert_eq!(
        tables,
        [
            "\"DB\".\"S\".\"ORDER_EVENTS_RAW\"",
            "\"DB\".\"S\".\"SENSOR_READINGS_RAW\""
        ]
    );
    let sensors = &plan.groups[1];
    let file = &sensors.files["sensor_readings/2024/03/05/07/shardId-000000000000-1-3.ndjson.gz"];
    assert_eq!(file.key, NDJSON);
    assert_eq!(file.items.iter().copied().collect::<Vec<_>>(), [0, 1]);
    let target = sensors.target.as_ref().unwrap();
    assert_eq!(
        (target.format, target.file_format.as_str()),
        (Format::Ndjson, "NDJSON_FMT")
    );
    assert_eq!(
        plan.groups[0].target.as_ref().unwrap().file_format,
        "CSV_FMT"
    );
}

#[test]
fn metadata_lineage_needs_the_csv_field_count() {
    let inv = invocation(vec![item(Ok(Notification::Objects(vec![
        object("raw-bucket", CSV),
        object("raw-bucket", NDJSON),
    ])))]);
    let plan = plan(&inv, &config(&[("LINEAGE", "metadata")]));
    let error = plan.groups[0].target.as_ref().unwrap_err();
    assert!(error.contains("LINEAGE_CSV_FIELDS"), "{error}");
    assert!(plan.groups[1].target.is_ok());
    let with_fields = [
        ("LINEAGE", "metadata"),
        ("LINEAGE_CSV_FIELDS", r#"{"order_events": 4}"#),
    ];
    let plan = super::plan(&inv, &config(&with_fields));
    assert_eq!(plan.groups[0].target.as_ref().unwrap().csv_fields, Some(4));
}

#[test]
fn match_by_name_tables_choose_the_typed_copy_per_table() {
    let c = config(&[("MATCH_BY_NAME_TABLES", r#"["sensor_readings"]"#)]);
    let typed = target(&c, "\"DB\".\"S\".\"T\"", "sensor_readings", Format::Ndjson).unwrap();
    let other = target(&c, "\"DB\".\"S\".\"T\"", "order_events", Format::Ndjson).unwrap();
    assert!(typed.match_by_name && !other.match_by_name);
    let bad = [
        ("RAW_BUCKET", "b"),
        ("SNOWFLAKE_ACCOUNT", "a"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("MATCH_BY_NAME_TABLES", "{}"),
    ];
    let err = Config::from_env(&Env::new(&bad)).unwrap_err();
    assert!(err.to_string().contains("MATCH_BY_NAME_TABLES"), "{err}");
}
