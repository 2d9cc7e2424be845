//! The upsert handler against the local Snowflake service: exact table contents after normal,
//! duplicate, replayed, out-of-order, CDC, hostile and faulty batches.

use std::time::{Duration, Instant};

use shared::config::Env;
use upsert::{Config, Upsert};

use crate::support::{self, kinesis_event, rows};

const SHARD: &str = "shardId-000000000000";
const ARRIVAL: f64 = 1_732_200_000.0;

const SENSORS: &str = r#"{"sensor_readings":{"table":"SENSOR_READINGS","keys":["sensorid"],"columns":[
    {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
    {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
    {"name":"status","path":"/status","type":"TEXT"}]}}"#;

pub(crate) const ORDERS: &str = r#"{"orders":{"table":"ORDERS","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},
    {"name":"status","path":"/status","type":"TEXT"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},
    {"name":"customer","path":"/customer","type":"TEXT"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at","delete":{"path":"/op","value":"d"},"payload_column":"payload"}}"#;

struct Fixture {
    upsert: Upsert,
    db: String,
    bucket: String,
}

async fn fixture(prefix: &str, vars: &[(&str, &str)]) -> Fixture {
    let db = support::bootstrapped_database(prefix, "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let upsert = upsert_for(&db, &bucket, vars, None).await;
    Fixture { upsert, db, bucket }
}

/// The upsert's configuration as Lambda would read it: the `SNOWFLAKE_*` variables of `db`
/// (schema `S`), `ERROR_BUCKET`, then `vars`.
pub(crate) fn upsert_config(db: &str, bucket: &str, vars: &[(&str, &str)]) -> Config {
    let mut all = support::snowflake_vars(db, "S");
    all.push(("ERROR_BUCKET".into(), bucket.into()));
    all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Config::from_env(&Env::new(&support::as_pairs(&all))).expect("valid configuration")
}

pub(crate) async fn upsert_for(
    db: &str,
    bucket: &str,
    vars: &[(&str, &str)],
    url: Option<&str>,
) -> Upsert {
    let mut vars = vars.to_vec();
    vars.extend(url.map(|url| ("SNOWFLAKE_URL", url)));
    let mut config = upsert_config(db, bucket, &vars);
    config.snowflake.retry = support::fast_retries();
    let client = shared::snowflake::SnowflakeClient::new(config.snowflake.clone(), None)
        .await
        .expect("client");
    Upsert::new(config, client, support::s3().await)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

fn sensor(id: i64, temp: f64, status: &str) -> Vec<u8> {
    format!(r#"{{"sensorId": {id}, "currentTemperature": {temp}, "status": "{status}"}}"#)
        .into_bytes()
}

async fn sensor_rows(f: &Fixture) -> Vec<Vec<Option<String>>> {
    let client = support::snowflake_client(&f.db, "S").await;
    rows(&client, "SELECT SENSORID, CURRENTTEMPERATURE, STATUS, KINESIS_SEQUENCE_NUMBER FROM SENSOR_READINGS ORDER BY SENSORID").await
}

fn r(cells: &[&str]) -> Vec<Option<String>> {
    cells
        .iter()
        .map(|c| {
            if *c == "NULL" {
                None
            } else {
                Some(c.to_string())
            }
        })
        .collect()
}

#[tokio::test]
async fn normal_batch_with_duplicate_keys_lands_newest_per_key() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_NORMAL",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let (a, b, c, d) = (
        sensor(6, 64.0, "OK"),
        sensor(7, 90.5, "WARN"),
        sensor(6, 65.0, "OK"),
        sensor(6, 70.0, "FAIL"),
    );
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("1", "6", &a),
            ("2", "7", &b),
            ("3", "6", &c),
            ("10", "6", &d),
        ],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let t = &outcome.tables["sensor_readings"];
    assert_eq!(
        (t.rows, t.duplicates, t.inserted, t.statements),
        (2, 2, 2, 1),
        "{t:?}"
    );
    assert_eq!(
        sensor_rows(&f).await,
        vec![
            r(&["6", "70.0", "FAIL", "10"]),
            r(&["7", "90.5", "WARN", "2"])
        ]
    );
}

#[tokio::test]
async fn same_batch_twice_and_an_older_replay_change_nothing() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_REPLAY",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let old = kinesis_event(
        "sensors",
        SHARD,
        &[("5", "6", &sensor(6, 50.0, "OLD"))],
        ARRIVAL,
    );
    let new = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("9", "6", &sensor(6, 99.0, "NEW")),
            ("10", "8", &sensor(8, 1.0, "OK")),
        ],
        ARRIVAL,
    );

    f.upsert.handle_body(&new, soon()).await.unwrap();
    let expected = vec![r(&["6", "99.0", "NEW", "9"]), r(&["8", "1.0", "OK", "10"])];
    assert_eq!(sensor_rows(&f).await, expected);

    let (_, again) = f.upsert.handle_body(&new, soon()).await.unwrap();
    assert_eq!(sensor_rows(&f).await, expected, "the same batch twice");
    let t = &again.tables["sensor_readings"];
    assert_eq!(
        (t.inserted, t.updated),
        (2, 0),
        "the repeated request id returns the first outcome without executing"
    );

    let (_, replay) = f.upsert.handle_body(&old, soon()).await.unwrap();
    assert_eq!(
        sensor_rows(&f).await,
        expected,
        "an older batch never rolls a row back"
    );
    assert_eq!(replay.tables["sensor_readings"].updated, 0);
}

fn change(op: &str, id: i64, status: &str, at: &str) -> Vec<u8> {
    format!(r#"{{"op":"{op}","order_id":{id},"status":"{status}","amount":12.50,"customer":"c{id}","updated_at":"{at}"}}"#).into_bytes()
}

async fn order_rows(f: &Fixture) -> Vec<Vec<Option<String>>> {
    let client = support::snowflake_client(&f.db, "S").await;
    rows(&client, "SELECT ORDER_ID, STATUS, AMOUNT, CUSTOMER, KINESIS_SEQUENCE_NUMBER FROM ORDERS ORDER BY ORDER_ID").await
}

#[tokio::test]
async fn cdc_inserts_updates_and_deletes() {
    let _g = support::snowflake_shared().await;
    let f = fixture("UPS_CDC", &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)]).await;
    let first = kinesis_event(
        "orders",
        SHARD,
        &[
            ("1", "1", &change("c", 1, "NEW", "2024-11-21T10:00:00Z")),
            ("2", "2", &change("c", 2, "NEW", "2024-11-21T10:00:00Z")),
            ("3", "3", &change("c", 3, "NEW", "2024-11-21T10:00:00Z")),
        ],
        ARRIVAL,
    );
    f.upsert.handle_body(&first, soon()).await.unwrap();
    let second = kinesis_event(
        "orders",
        SHARD,
        &[
            // 1: updated; 2: deleted then re-inserted in the same batch; 3: updated then deleted.
            ("4", "1", &change("u", 1, "PAID", "2024-11-21T10:05:00Z")),
            ("5", "2", &change("d", 2, "NEW", "2024-11-21T10:06:00Z")),
            (
                "6",
                "2",
                &change("c", 2, "REOPENED", "2024-11-21T10:07:00Z"),
            ),
            ("7", "3", &change("u", 3, "PAID", "2024-11-21T10:05:00Z")),
            (
                "8",
                "3",
                br#"{"op":"d","order_id":3,"updated_at":"2024-11-21T10:08:00Z"}"#,
            ),
            // 4: deleted before it ever existed: nothing happens.
            (
                "9",
                "4",
                br#"{"op":"d","order_id":4,"updated_at":"2024-11-21T10:08:00Z"}"#,
            ),
        ],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&second, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let t = &outcome.tables["orders"];
    assert_eq!(
        (t.rows, t.duplicates, t.updated, t.deleted, t.inserted),
        (4, 2, 2, 1, 0),
        "{t:?}"
    );
    // The EMF document carries the same counts, for the orders table, with the lag from the
    // newest arrival.
    let emf = outcome.metrics("Test", (ARRIVAL * 1000.0) as i64 + 2_500);
    let line: serde_json::Value = serde_json::from_str(&emf.to_line(1_732_200_002_500)).unwrap();
    assert_eq!(line["Table"], "orders");
    assert_eq!(
        (
            emf.get("Records"),
            emf.get("RowsUpdated"),
            emf.get("RowsDeleted"),
            emf.get("DuplicatesCollapsed"),
            emf.get("LagMs"),
            emf.get("ReconciliationMismatches")
        ),
        (
            Some(6.0),
            Some(2.0),
            Some(1.0),
            Some(2.0),
            Some(2500.0),
            Some(0.0)
        )
    );
    assert_eq!(
        order_rows(&f).await,
        vec![
            r(&["1", "PAID", "12.50", "c1", "4"]),
            r(&["2", "REOPENED", "12.50", "c2", "6"])
        ]
    );
    let client = support::snowflake_client(&f.db, "S").await;
    let payload = rows(
        &client,
        "SELECT PAYLOAD:status::VARCHAR FROM ORDERS WHERE ORDER_ID = 2",
    )
    .await;
    assert_eq!(
        payload,
        vec![r(&["REOPENED"])],
        "the whole payload is kept as VARIANT"
    );

    // An update with an older event time than the row's loses, even with a newer sequence number.
    let stale = kinesis_event(
        "orders",
        SHARD,
        &[("20", "1", &change("u", 1, "STALE", "2024-11-21T09:00:00Z"))],
        ARRIVAL,
    );
    f.upsert.handle_body(&stale, soon()).await.unwrap();
    assert_eq!(
        order_rows(&f).await[0],
        r(&["1", "PAID", "12.50", "c1", "4"])
    );
}

#[tokio::test]
async fn hostile_strings_and_nulls_are_bound_not_spliced() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_HOSTILE",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let hostile = [
        r#"x'); DROP TABLE SENSOR_READINGS; --"#,
        "quote ' double \" backslash \\ end",
        "line\nbreak\ttab",
        "ünïcödé ✓ 温度 🚀",
        "",
    ];
    let payloads: Vec<Vec<u8>> = hostile
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"sensorId": i + 1, "currentTemperature": null, "status": s})
                .to_string()
                .into_bytes()
        })
        .chain([br#"{"sensorId": 99}"#.to_vec()])
        .collect();
    let seqs: Vec<String> = (1..=payloads.len()).map(|i| i.to_string()).collect();
    let records: Vec<(&str, &str, &[u8])> = seqs
        .iter()
        .zip(&payloads)
        .map(|(s, p)| (s.as_str(), "k", p.as_slice()))
        .collect();
    let (response, _) = f
        .upsert
        .handle_body(&kinesis_event("s", SHARD, &records, ARRIVAL), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    let got = sensor_rows(&f).await;
    let mut expected: Vec<Vec<Option<String>>> = hostile
        .iter()
        .enumerate()
        .map(|(i, s)| {
            vec![
                Some((i + 1).to_string()),
                None,
                Some(s.to_string()),
                Some((i + 1).to_string()),
            ]
        })
        .collect();
    expected.push(r(&["99", "NULL", "NULL", "6"]));
    assert_eq!(got, expected);
}

#[tokio::test]
async fn one_batch_spanning_two_tables() {
    let _g = support::snowflake_shared().await;
    let tables = format!(
        "{{{},{}}}",
        &SENSORS[1..SENSORS.len() - 1],
        &ORDERS[1..ORDERS.len() - 1]
    );
    let f = fixture(
        "UPS_TWO",
        &[
            ("ROUTE_FIELD", "/kind"),
            (
                "ROUTE_MAP",
                r#"{"sensor":"sensor_readings","order":"orders"}"#,
            ),
            ("UPSERT_TABLES", &tables),
        ],
    )
    .await;
    let event = kinesis_event(
        "mixed",
        SHARD,
        &[
            ("1", "a", br#"{"kind":"sensor","sensorId":1,"currentTemperature":20,"status":"OK"}"#),
            ("2", "b", br#"{"kind":"order","op":"c","order_id":5,"status":"NEW","amount":1,"customer":"x","updated_at":"2024-11-21T10:00:00Z"}"#),
            ("3", "a", br#"{"kind":"sensor","sensorId":2,"currentTemperature":21,"status":"OK"}"#),
        ],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        outcome.tables.keys().collect::<Vec<_>>(),
        ["orders", "sensor_readings"]
    );
    assert_eq!(
        sensor_rows(&f).await,
        vec![r(&["1", "20.0", "OK", "1"]), r(&["2", "21.0", "OK", "3"])]
    );
    assert_eq!(
        order_rows(&f).await,
        vec![r(&["5", "NEW", "1.00", "x", "2"])]
    );
}

#[tokio::test]
async fn a_record_that_cannot_be_coerced_is_quarantined_and_the_rest_land() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_COERCE",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("1", "k", &sensor(1, 10.0, "OK")),
            ("2", "k", br#"{"sensorId":"six","status":"OK"}"#),
            ("3", "k", &sensor(3, 30.0, "OK")),
        ],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.quarantined, 1);
    assert_eq!(
        sensor_rows(&f).await,
        vec![r(&["1", "10.0", "OK", "1"]), r(&["3", "30.0", "OK", "3"])]
    );
    let s3 = support::s3().await;
    let keys = support::list_keys(&s3, &f.bucket).await;
    assert_eq!(
        keys,
        vec!["errors/upsert/2024/11/21/14/shardId-000000000000-2-2.ndjson.gz".to_string()]
    );
    let lines = support::rejected_lines(&s3, &f.bucket, &keys[0]).await;
    let [line] = &lines[..] else {
        panic!("one rejected record expected: {lines:?}")
    };
    assert_eq!(
        line["reason"],
        "column \"SENSORID\": expected a number, got \"six\""
    );
    assert_eq!(line["payload"], r#"{"sensorId":"six","status":"OK"}"#);
}

#[tokio::test]
async fn three_throttled_answers_are_retried_and_every_row_lands_once() {
    let _g = support::snowflake_exclusive().await;
    let f = fixture(
        "UPS_FAULTS",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    // The service keeps one armed fault of a kind, so three answers of one status.
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"status": 429, "count": 3}),
    )
    .await;
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("1", "k", &sensor(1, 10.0, "OK")),
            ("2", "k", &sensor(2, 20.0, "OK")),
        ],
        ARRIVAL,
    );
    let result = f.upsert.handle_body(&event, soon()).await;
    support::clear_faults().await;
    let (response, outcome) = result.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let t = &outcome.tables["sensor_readings"];
    assert_eq!((t.inserted, t.statements), (2, 1));
    assert!(
        t.http_requests >= 4,
        "three refused attempts then success: {t:?}"
    );
    assert_eq!(
        sensor_rows(&f).await,
        vec![r(&["1", "10.0", "OK", "1"]), r(&["2", "20.0", "OK", "2"])]
    );
}

#[tokio::test]
async fn unreachable_snowflake_reports_the_tables_lowest_sequence_number() {
    let _g = support::snowflake_shared().await;
    let db = support::fresh_database("UPS_DOWN").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let tables = format!(
        "{{{},{}}}",
        &SENSORS[1..SENSORS.len() - 1],
        &ORDERS[1..ORDERS.len() - 1]
    );
    let vars = [
        ("ROUTE_FIELD", "/kind"),
        (
            "ROUTE_MAP",
            r#"{"sensor":"sensor_readings","order":"orders"}"#,
        ),
        ("UPSERT_TABLES", tables.as_str()),
    ];
    let upsert = upsert_for(&db, &bucket, &vars, Some("http://127.0.0.1:9")).await;
    let event = kinesis_event(
        "mixed",
        SHARD,
        &[
            (
                "41",
                "a",
                br#"{"kind":"sensor","sensorId":1,"currentTemperature":20,"status":"OK"}"#,
            ),
            (
                "40",
                "b",
                br#"{"kind":"order","op":"c","order_id":5,"updated_at":"2024-11-21T10:00:00Z"}"#,
            ),
            (
                "42",
                "a",
                br#"{"kind":"sensor","sensorId":2,"currentTemperature":21,"status":"OK"}"#,
            ),
            ("39", "b", br#"not json"#),
            ("43", "b", br#"not json either"#),
        ],
        ARRIVAL,
    );
    let (response, outcome) = upsert
        .handle_body(&event, Instant::now() + Duration::from_millis(1500))
        .await
        .unwrap();
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .filter_map(|f| f.item_identifier.clone())
        .collect();
    assert_eq!(
        failures,
        vec!["40".to_string()],
        "Lambda resends from the lowest failed record"
    );
    assert!(outcome.tables.values().all(|t| t.error.is_some()));
    // 43 is resent with everything from 40 on, and quarantined by the invocation that gets it
    // again: only 39 is quarantined now, so no record is ever in two quarantine objects.
    assert_eq!(outcome.quarantined, 1);
    let keys = support::list_keys(&s3, &bucket).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let lines = support::rejected_lines(&s3, &bucket, &keys[0]).await;
    let seqs: Vec<&str> = lines
        .iter()
        .map(|l| l["metadata"]["sequence_number"].as_str().unwrap())
        .collect();
    assert_eq!(seqs, ["39"]);
}

#[tokio::test]
async fn wrong_credentials_fail_the_invocation() {
    let _g = support::snowflake_shared().await;
    let db = support::fresh_database("UPS_AUTH").await;
    let mut vars = support::snowflake_vars(&db, "S");
    vars.retain(|(k, _)| k != "SNOWFLAKE_PRIVATE_KEY_FILE");
    vars.extend([
        ("SNOWFLAKE_AUTH".to_string(), "pat".to_string()),
        ("SNOWFLAKE_TOKEN".to_string(), "not-the-token".to_string()),
        ("ERROR_BUCKET".to_string(), "unused".to_string()),
        ("TABLE".to_string(), "sensor_readings".to_string()),
        ("UPSERT_TABLES".to_string(), SENSORS.to_string()),
    ]);
    let config = Config::from_env(&Env::new(&support::as_pairs(&vars))).unwrap();
    let client = shared::snowflake::SnowflakeClient::new(config.snowflake.clone(), None)
        .await
        .unwrap();
    let upsert = Upsert::new(config, client, support::s3().await);
    let event = kinesis_event("s", SHARD, &[("1", "k", &sensor(1, 1.0, "OK"))], ARRIVAL);
    let err = upsert.handle_body(&event, soon()).await.unwrap_err();
    assert!(
        matches!(
            err,
            upsert::HandlerError::Snowflake(shared::snowflake::SnowflakeError::Unauthorized(_))
        ),
        "{err}"
    );
}

#[test]
fn configuration_errors_name_the_variable() {
    let base = support::snowflake_vars("DB", "S");
    let err = |extra: &[(&str, &str)]| {
        let mut vars = base.clone();
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Config::from_env(&Env::new(&support::as_pairs(&vars)))
            .unwrap_err()
            .var
    };
    assert_eq!(
        err(&[("TABLE", "t"), ("ERROR_BUCKET", "b")]),
        "UPSERT_TABLES"
    );
    assert_eq!(
        err(&[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)]),
        "ERROR_BUCKET"
    );
    assert_eq!(
        err(&[
            ("TABLE", "other"),
            ("UPSERT_TABLES", SENSORS),
            ("ERROR_BUCKET", "b")
        ]),
        "UPSERT_TABLES"
    );
    assert_eq!(
        err(&[
            ("TABLE", "sensor_readings"),
            ("UPSERT_TABLES", SENSORS),
            ("ERROR_BUCKET", "b"),
            ("MAX_ROWS_PER_STATEMENT", "0")
        ]),
        "MAX_ROWS_PER_STATEMENT"
    );
}

// ---- judged by the strict local Snowflake (issue: strict referee) ----------------------------

fn order(id: &str, status: &str, at: &str) -> Vec<u8> {
    format!(r#"{{"op":"u","order_id":{id},"status":"{status}","amount":1,"customer":"c","updated_at":"{at}"}}"#)
        .into_bytes()
}

#[tokio::test]
async fn an_older_change_later_in_the_batch_does_not_overwrite_the_newer_one() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_VERORD",
        &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)],
    )
    .await;
    let (newer, older) = (
        order("1", "SHIPPED", "2024-11-21T10:00:00Z"),
        order("1", "NEW", "2024-11-21T09:00:00Z"),
    );
    let event = kinesis_event(
        "orders",
        SHARD,
        &[("1", "1", &newer), ("2", "1", &older)],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.tables["orders"].duplicates, 1);
    // as two separate batches would: the newer version stays
    assert_eq!(
        order_rows(&f).await,
        vec![r(&["1", "SHIPPED", "1.00", "c", "1"])]
    );
}

#[tokio::test]
async fn spellings_of_one_number_key_are_one_row() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_NUMKEY",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let records: Vec<(String, Vec<u8>)> = [r#"6"#, r#"6.0"#, r#"6e0"#, r#""6""#, r#""0006""#]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let body =
                format!(r#"{{"sensorId": {id}, "currentTemperature": {i}, "status": "S{i}"}}"#);
            ((i + 1).to_string(), body.into_bytes())
        })
        .collect();
    let refs: Vec<(&str, &str, &[u8])> = records
        .iter()
        .map(|(seq, body)| (seq.as_str(), "6", body.as_slice()))
        .collect();
    let event = kinesis_event("sensors", SHARD, &refs, ARRIVAL);
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    // in Snowflake, five source rows for one key would fail the MERGE (100090) or insert five
    assert_eq!(sensor_rows(&f).await, vec![r(&["6", "4.0", "S4", "5"])]);
}

#[tokio::test]
async fn a_delete_without_the_version_column_deletes_the_row() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_DELNOVER",
        &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)],
    )
    .await;
    let create = order("7", "NEW", "2024-11-21T10:00:00Z");
    let first = kinesis_event("orders", SHARD, &[("1", "7", &create)], ARRIVAL);
    f.upsert.handle_body(&first, soon()).await.unwrap();
    assert_eq!(order_rows(&f).await.len(), 1);
    let delete = br#"{"op":"d","order_id":7}"#;
    let second = kinesis_event("orders", SHARD, &[("2", "7", delete)], ARRIVAL);
    let (response, outcome) = f.upsert.handle_body(&second, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.quarantined, 0);
    assert_eq!(outcome.tables["orders"].deleted, 1);
    assert!(order_rows(&f).await.is_empty());
}

#[tokio::test]
async fn values_snowflake_cannot_cast_are_quarantined_before_the_merge() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_RANGE",
        &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)],
    )
    .await;
    let big = br#"{"op":"u","order_id":1,"status":"X","amount":12345678901.5,"customer":"c","updated_at":"2024-11-21T10:00:00Z"}"#;
    let far = br#"{"op":"u","order_id":2,"status":"X","amount":1,"customer":"c","updated_at":"0000-06-01T00:00:00Z"}"#;
    let fine = order("3", "OK", "2024-11-21T10:00:00Z");
    let event = kinesis_event(
        "orders",
        SHARD,
        &[("1", "1", big), ("2", "2", far), ("3", "3", &fine)],
        ARRIVAL,
    );
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.quarantined, 2);
    assert_eq!(
        order_rows(&f).await,
        vec![r(&["3", "OK", "1.00", "c", "3"])]
    );
}

#[tokio::test]
async fn duplicate_object_keys_in_a_payload_keep_the_last_value() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_DUPKEY",
        &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)],
    )
    .await;
    let dup = br#"{"op":"u","order_id":4,"status":"FIRST","status":"LAST","amount":1,"customer":"c","updated_at":"2024-11-21T10:00:00Z"}"#;
    let event = kinesis_event("orders", SHARD, &[("1", "4", dup)], ARRIVAL);
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let client = support::snowflake_client(&f.db, "S").await;
    assert_eq!(
        rows(
            &client,
            "SELECT STATUS, PAYLOAD:status::VARCHAR FROM ORDERS"
        )
        .await,
        vec![r(&["LAST", "LAST"])]
    );
}

#[tokio::test]
async fn a_row_snowflake_refuses_is_isolated_and_quarantined_and_the_rest_land() {
    let _g = support::snowflake_shared().await;
    // The mapping says TEXT but the table says NUMBER: Rust cannot know, Snowflake refuses the
    // cast of one value (100038, SQL state 22018) and would refuse it on every retry.
    let tables = r#"{"poison":{"table":"POISON","keys":["id"],"columns":[
        {"name":"id","path":"/id","type":"NUMBER"},{"name":"qty","path":"/qty","type":"TEXT"}]}}"#;
    let f = fixture(
        "UPS_POISON",
        &[("TABLE", "poison"), ("UPSERT_TABLES", tables)],
    )
    .await;
    let client = support::snowflake_client(&f.db, "S").await;
    support::sql(
        &client,
        "CREATE TABLE POISON (ID NUMBER(38,0), QTY NUMBER(38,0), KINESIS_SHARD_ID VARCHAR, \
         KINESIS_SEQUENCE_NUMBER VARCHAR, KINESIS_ARRIVAL_TIME TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ)",
    )
    .await;
    let bodies: Vec<(String, Vec<u8>)> = (1..=8)
        .map(|i| {
            let qty = if i == 6 {
                r#""six""#.to_string()
            } else {
                i.to_string()
            };
            (
                i.to_string(),
                format!(r#"{{"id": {i}, "qty": {qty}}}"#).into_bytes(),
            )
        })
        .collect();
    let refs: Vec<(&str, &str, &[u8])> = bodies
        .iter()
        .map(|(seq, b)| (seq.as_str(), seq.as_str(), b.as_slice()))
        .collect();
    let event = kinesis_event("poison", SHARD, &refs, ARRIVAL);
    let (response, outcome) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let t = &outcome.tables["poison"];
    assert_eq!(
        (t.refused, t.inserted, outcome.quarantined),
        (1, 7, 1),
        "{t:?}"
    );
    assert_eq!(
        rows(&client, "SELECT ID, QTY FROM POISON ORDER BY ID").await,
        [1, 2, 3, 4, 5, 7, 8]
            .iter()
            .map(|i| r(&[&i.to_string(), &i.to_string()]))
            .collect::<Vec<_>>()
    );
    let s3 = support::s3().await;
    let keys = support::list_keys(&s3, &f.bucket).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let lines = support::rejected_lines(&s3, &f.bucket, &keys[0]).await;
    let [line] = &lines[..] else {
        panic!("one rejected record expected: {lines:?}")
    };
    assert!(
        line["reason"]
            .as_str()
            .unwrap()
            .starts_with("Snowflake refused the row: 100038 (22018)"),
        "{line}"
    );
    assert_eq!(line["payload"], r#"{"id": 6, "qty": "six"}"#);
    assert_eq!(line["metadata"]["sequence_number"], "6");
    // the same batch again: the same statements (request ids), the same outcome, no new rows
    let (again, _) = f.upsert.handle_body(&event, soon()).await.unwrap();
    assert!(again.batch_item_failures.is_empty());
    assert_eq!(
        rows(&client, "SELECT COUNT(*) FROM POISON").await,
        vec![r(&["7"])]
    );
}

#[tokio::test]
async fn sequence_numbers_longer_than_64_digits_still_order() {
    let _g = support::snowflake_shared().await;
    let f = fixture(
        "UPS_LONGSEQ",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    // equal in their first 64 digits: a 64-digit LPAD would see them as equal
    let older = format!("1{}1", "0".repeat(64));
    let newer = format!("1{}2", "0".repeat(64));
    let first = kinesis_event(
        "sensors",
        SHARD,
        &[(&older, "6", &sensor(6, 1.0, "OLD"))],
        ARRIVAL,
    );
    let second = kinesis_event(
        "sensors",
        SHARD,
        &[(&newer, "6", &sensor(6, 2.0, "NEW"))],
        ARRIVAL,
    );
    f.upsert.handle_body(&first, soon()).await.unwrap();
    f.upsert.handle_body(&second, soon()).await.unwrap();
    assert_eq!(sensor_rows(&f).await, vec![r(&["6", "2.0", "NEW", &newer])]);
}

/// Many shards MERGE into one table while a statement holds its lock: Snowflake aborts the 21st
/// waiter with 000625, and the client submits it again with backoff until the queue drains, so
/// every row lands and no shard reports a failure.
#[tokio::test]
async fn statements_aborted_by_the_lock_queue_are_retried_until_they_land() {
    let _g = support::snowflake_exclusive().await;
    let f = fixture(
        "UPS_LOCKQ",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", SENSORS)],
    )
    .await;
    let aborts_before = support::snowflake_stats().await["table_locks"]["aborts"]
        .as_u64()
        .unwrap();
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"hold_table_lock_ms": 1500, "count": 1}),
    )
    .await;
    let events: Vec<String> = (0..25)
        .map(|i| {
            kinesis_event(
                "sensors",
                &format!("shardId-{i:012}"),
                &[("1", "k", &sensor(i, f64::from(i as i32), "OK"))],
                ARRIVAL,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(40);
    let runs = events.iter().map(|e| f.upsert.handle_body(e, deadline));
    let results = futures_util::future::join_all(runs).await;
    for (response, outcome) in results.into_iter().map(Result::unwrap) {
        assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    }
    let aborts = support::snowflake_stats().await["table_locks"]["aborts"]
        .as_u64()
        .unwrap()
        - aborts_before;
    assert!(
        aborts >= 4,
        "25 statements behind one held lock: at least 4 past the 20 waiters, got {aborts}"
    );
    let client = support::snowflake_client(&f.db, "S").await;
    assert_eq!(
        rows(
            &client,
            "SELECT COUNT(*), COUNT(DISTINCT SENSORID) FROM SENSOR_READINGS"
        )
        .await,
        vec![r(&["25", "25"])]
    );
}

/// The sample change streams' orders table, with the envelope's version column.
const CDC_ORDERS_DDL: &str =
    "CREATE TABLE CDC_ORDERS (ORDER_ID NUMBER(38,0) NOT NULL PRIMARY KEY, \
    STATUS VARCHAR, AMOUNT NUMBER(12,2), CUSTOMER VARCHAR, UPDATED_AT TIMESTAMP_NTZ, \
    CDC_VERSION VARCHAR, KINESIS_SHARD_ID VARCHAR, KINESIS_SEQUENCE_NUMBER VARCHAR, \
    KINESIS_ARRIVAL_TIME TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ)";

fn cdc_orders(envelope: &str) -> String {
    format!(
        r#"{{"orders":{{"table":"CDC_ORDERS","envelope":"{envelope}","keys":["order_id"],"columns":[
    {{"name":"order_id","path":"/order_id","type":"NUMBER"}},
    {{"name":"status","path":"/status","type":"TEXT"}},
    {{"name":"amount","path":"/amount","type":"NUMBER(12,2)"}},
    {{"name":"customer","path":"/customer","type":"TEXT"}},
    {{"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}}]}}}}"#
    )
}

/// The records `range` of a sample event, as an event of their own.
fn records_of(body: &str, range: std::ops::Range<usize>) -> String {
    let mut event: serde_json::Value = serde_json::from_str(body).unwrap();
    let records = event["Records"].as_array().unwrap()[range].to_vec();
    event["Records"] = records.into();
    event.to_string()
}

async fn cdc_order_rows(f: &Fixture) -> Vec<Vec<Option<String>>> {
    let client = support::snowflake_client(&f.db, "S").await;
    rows(
        &client,
        "SELECT ORDER_ID, STATUS, AMOUNT, CUSTOMER FROM CDC_ORDERS ORDER BY ORDER_ID",
    )
    .await
}

async fn cdc_fixture(prefix: &str, envelope: &str) -> Fixture {
    let tables = cdc_orders(envelope);
    let f = fixture(prefix, &[("TABLE", "orders"), ("UPSERT_TABLES", &tables)]).await;
    let client = support::snowflake_client(&f.db, "S").await;
    support::sql(&client, CDC_ORDERS_DDL).await;
    f
}

fn sample(name: &str) -> String {
    std::fs::read_to_string(support::repo_root().join("events").join(name)).unwrap()
}

/// What both sample streams leave: 1002 created and deleted, 1003 re-keyed to 1005 and paid.
fn final_orders() -> Vec<Vec<Option<String>>> {
    vec![
        r(&["1001", "SHIPPED", "42.50", "Ada Lovelace"]),
        r(&["1005", "PAID", "7.00", "Grace Hopper"]),
    ]
}

#[tokio::test]
async fn debezium_stream_in_two_batches_then_replayed_ends_as_the_source_table() {
    let _g = support::snowflake_shared().await;
    let f = cdc_fixture("UPS_DBZ", "debezium").await;
    let body = sample("kinesis-debezium-orders.json");
    let (first, second) = (records_of(&body, 0..5), records_of(&body, 5..11));
    let (response, outcome) = f.upsert.handle_body(&first, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let (response, outcome) = f.upsert.handle_body(&second, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.quarantined, 0);
    assert_eq!(
        outcome.skipped,
        std::collections::BTreeMap::from([("debezium tombstone", 2), ("debezium truncate", 1)])
    );
    assert_eq!(cdc_order_rows(&f).await, final_orders());
    // A replay of the newest batch (the same request ids) changes nothing; Lambda's retry from the first batch re-sends
    // both, in order, and ends the same (a replay of only the older batch would re-insert the
    // re-keyed 1003: a hard delete keeps no version, see the README's known limits).
    f.upsert.handle_body(&second, soon()).await.unwrap();
    assert_eq!(cdc_order_rows(&f).await, final_orders());
    for batch in [&first, &second] {
        f.upsert.handle_body(batch, soon()).await.unwrap();
    }
    assert_eq!(cdc_order_rows(&f).await, final_orders());
}

#[tokio::test]
async fn dms_stream_plain_and_kpl_aggregated_end_as_the_source_table() {
    let _g = support::snowflake_shared().await;
    let body = sample("kinesis-dms-orders.json");
    let plain = cdc_fixture("UPS_DMS", "dms").await;
    let (response, outcome) = plain.upsert.handle_body(&body, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(
        (
            outcome.quarantined,
            outcome.skipped.get("dms control record")
        ),
        (0, Some(&1))
    );
    assert_eq!(cdc_order_rows(&plain).await, final_orders());

    let aggregated = cdc_fixture("UPS_DMS_KPL", "dms").await;
    let (response, outcome) = aggregated
        .upsert
        .handle_body(
            &shared::sample::kpl_aggregated_event(&body, usize::MAX),
            soon(),
        )
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.quarantined, 0);
    assert_eq!(cdc_order_rows(&aggregated).await, final_orders());
}

/// SENSORS with `"schema_evolution": true` (and `extra` settings spliced into the mapping).
fn evolving_sensors(extra: &str) -> String {
    SENSORS.replacen(
        r#""keys":["sensorid"],"#,
        &format!(r#""keys":["sensorid"],"schema_evolution":true,{extra}"#),
        1,
    )
}

/// A table's columns from beyond its mapped and lineage ones, as INFORMATION_SCHEMA reports
/// them: name, type, precision, scale, length.
async fn evolved_columns(
    client: &shared::snowflake::SnowflakeClient,
    table: &str,
) -> Vec<Vec<Option<String>>> {
    rows(
        client,
        &format!(
            "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE, CHARACTER_MAXIMUM_LENGTH FROM INFORMATION_SCHEMA.COLUMNS \
             WHERE TABLE_SCHEMA = 'S' AND TABLE_NAME = '{table}' AND ORDINAL_POSITION > 7 ORDER BY ORDINAL_POSITION"
        ),
    )
    .await
}

fn reading(id: i64, extra: &str) -> Vec<u8> {
    format!(r#"{{"sensorId":{id},"currentTemperature":20.5,"status":"OK"{extra}}}"#).into_bytes()
}

fn events(records: &[(&str, Vec<u8>)]) -> String {
    let records: Vec<(&str, &str, &[u8])> = records
        .iter()
        .map(|(s, d)| (*s, "k", d.as_slice()))
        .collect();
    kinesis_event("sensors", SHARD, &records, ARRIVAL)
}

#[tokio::test]
async fn schema_evolution_adds_a_new_field_as_a_column_once_and_rows_carry_its_values() {
    let _g = support::snowflake_shared().await;
    let mapping = evolving_sensors("");
    let f = fixture(
        "UPS_EVOLVE",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", &mapping)],
    )
    .await;
    let client = support::snowflake_client(&f.db, "S").await;
    let (_, outcome) = f
        .upsert
        .handle_body(
            &events(&[("1", reading(1, "")), ("2", reading(2, ""))]),
            soon(),
        )
        .await
        .unwrap();
    assert_eq!(outcome.tables["sensor_readings"].columns_added, 0);
    assert!(evolved_columns(&client, "SENSOR_READINGS").await.is_empty());

    let batch = events(&[
        (
            "3",
            reading(1, r#","battery":87,"firmware":"v2","note":null"#),
        ),
        ("4", reading(3, r#","Battery":12,"tags":["a","b"]"#)),
    ]);
    let (response, outcome) = f.upsert.handle_body(&batch, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let t = &outcome.tables["sensor_readings"];
    assert_eq!(
        (t.columns_added, t.inserted, t.updated, outcome.quarantined),
        (3, 1, 1, 0)
    );
    assert_eq!(
        evolved_columns(&client, "SENSOR_READINGS").await,
        vec![
            r(&["BATTERY", "NUMBER", "38", "0", "NULL"]),
            r(&["FIRMWARE", "TEXT", "NULL", "NULL", "16777216"]),
            r(&["TAGS", "VARIANT", "NULL", "NULL", "NULL"]),
        ]
    );
    // The column is cached: the same field again adds nothing and lands.
    let (_, outcome) = f
        .upsert
        .handle_body(&events(&[("5", reading(2, r#","battery":50"#))]), soon())
        .await
        .unwrap();
    assert_eq!(outcome.tables["sensor_readings"].columns_added, 0);
    let emf = outcome.metrics("ns", 0);
    assert_eq!(
        (emf.get("ColumnsAdded"), emf.get("SchemaDriftQuarantined")),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(
        rows(&client, "SELECT SENSORID, BATTERY, FIRMWARE, TAGS[1]::VARCHAR FROM SENSOR_READINGS ORDER BY SENSORID").await,
        vec![
            r(&["1", "87", "v2", "NULL"]),
            r(&["2", "50", "NULL", "NULL"]),
            r(&["3", "12", "NULL", "b"]),
        ]
    );
}

#[tokio::test]
async fn two_containers_adding_the_same_column_at_once_add_it_once_and_both_land() {
    let _g = support::snowflake_shared().await;
    let mapping = evolving_sensors("");
    let vars = [
        ("TABLE", "sensor_readings"),
        ("UPSERT_TABLES", mapping.as_str()),
    ];
    let f = fixture("UPS_EVOLVE_RACE", &vars).await;
    let other = upsert_for(&f.db, &f.bucket, &vars, None).await;
    // Both containers know the table without the column.
    for (upsert, seq) in [(&f.upsert, "1"), (&other, "2")] {
        upsert
            .handle_body(&events(&[(seq, reading(seq.parse().unwrap(), ""))]), soon())
            .await
            .unwrap();
    }
    let a = events(&[("3", reading(1, r#","battery":87"#))]);
    let b = events(&[("4", reading(2, r#","battery":64"#))]);
    let (ra, rb) = tokio::join!(
        f.upsert.handle_body(&a, soon()),
        other.handle_body(&b, soon())
    );
    for (response, outcome) in [ra.unwrap(), rb.unwrap()] {
        assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
        assert_eq!(outcome.tables["sensor_readings"].columns_added, 1);
    }
    let client = support::snowflake_client(&f.db, "S").await;
    assert_eq!(
        evolved_columns(&client, "SENSOR_READINGS").await,
        vec![r(&["BATTERY", "NUMBER", "38", "0", "NULL"])]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT SENSORID, BATTERY FROM SENSOR_READINGS ORDER BY SENSORID"
        )
        .await,
        vec![r(&["1", "87"]), r(&["2", "64"])]
    );
}

#[tokio::test]
async fn schema_drift_is_quarantined_with_its_reason_widening_is_not_and_the_rest_lands() {
    let _g = support::snowflake_shared().await;
    let mapping = evolving_sensors("");
    let f = fixture(
        "UPS_EVOLVE_DRIFT",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", &mapping)],
    )
    .await;
    let client = support::snowflake_client(&f.db, "S").await;
    f.upsert
        .handle_body(&events(&[("1", reading(1, ""))]), soon())
        .await
        .unwrap();
    // Columns added by hand, after this container read the table: NOTE and LEVEL are narrow
    // (widened), and another writer's BATTERY is a NUMBER where this batch first sees a string.
    for sql in [
        "ALTER TABLE SENSOR_READINGS ADD COLUMN NOTE VARCHAR(3)",
        "ALTER TABLE SENSOR_READINGS ADD COLUMN LEVEL NUMBER(3,0)",
        "ALTER TABLE SENSOR_READINGS ADD COLUMN BATTERY NUMBER(38,0)",
    ] {
        support::sql(&client, sql).await;
    }
    let batch = events(&[
        ("2", reading(2, r#","battery":"high""#)),
        (
            "3",
            reading(3, r#","battery":40,"note":"abcdef","level":12345"#),
        ),
        ("4", reading(4, r#","battery":41,"note":"ab""#)),
    ]);
    let (response, outcome) = f.upsert.handle_body(&batch, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let t = &outcome.tables["sensor_readings"];
    assert_eq!(
        (
            t.columns_added,
            t.columns_widened,
            t.drift_quarantined,
            t.inserted,
            outcome.quarantined
        ),
        (0, 2, 1, 2, 1)
    );
    assert_eq!(
        evolved_columns(&client, "SENSOR_READINGS").await,
        vec![
            r(&["NOTE", "TEXT", "NULL", "NULL", "6"]),
            r(&["LEVEL", "NUMBER", "5", "0", "NULL"]),
            r(&["BATTERY", "NUMBER", "38", "0", "NULL"]),
        ]
    );
    assert_eq!(
        rows(
            &client,
            "SELECT SENSORID, NOTE, LEVEL, BATTERY FROM SENSOR_READINGS ORDER BY SENSORID"
        )
        .await,
        vec![
            r(&["1", "NULL", "NULL", "NULL"]),
            r(&["3", "abcdef", "12345", "40"]),
            r(&["4", "ab", "NULL", "41"]),
        ]
    );
    let s3 = support::s3().await;
    let keys = support::list_keys(&s3, &f.bucket).await;
    let lines = support::rejected_lines(&s3, &f.bucket, &keys[0]).await;
    let [line] = &lines[..] else {
        panic!("one rejected record expected: {lines:?}")
    };
    assert_eq!(
        line["reason"],
        format!(
            r#"schema drift: table "{}"."S"."SENSOR_READINGS" column "BATTERY": NUMBER(38,0) cannot hold a VARCHAR value: expected a number, got "high""#,
            f.db
        )
    );
}

#[tokio::test]
async fn records_over_the_cap_of_new_columns_are_quarantined_and_land_when_redriven() {
    let _g = support::snowflake_shared().await;
    let mapping = evolving_sensors(r#""max_new_columns":2,"#);
    let f = fixture(
        "UPS_EVOLVE_CAP",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", &mapping)],
    )
    .await;
    let client = support::snowflake_client(&f.db, "S").await;
    let over = reading(2, r#","c":3"#);
    let batch = events(&[
        ("1", reading(1, r#","a":1,"b":2"#)),
        ("2", over.clone()),
        ("3", reading(3, "")),
    ]);
    let (response, outcome) = f.upsert.handle_body(&batch, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    let t = &outcome.tables["sensor_readings"];
    assert_eq!(
        (t.columns_added, t.drift_quarantined, t.inserted),
        (2, 1, 2)
    );
    let columns: Vec<Option<String>> = evolved_columns(&client, "SENSOR_READINGS")
        .await
        .into_iter()
        .map(|c| c[0].clone())
        .collect();
    assert_eq!(columns, [Some("A".into()), Some("B".into())]);
    let s3 = support::s3().await;
    let keys = support::list_keys(&s3, &f.bucket).await;
    let lines = support::rejected_lines(&s3, &f.bucket, &keys[0]).await;
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("over its cap of 2"),
        "{lines:?}"
    );
    // Redriven alone, the record has room for its column.
    let (_, outcome) = f
        .upsert
        .handle_body(&events(&[("2", over)]), soon())
        .await
        .unwrap();
    assert_eq!(outcome.tables["sensor_readings"].columns_added, 1);
    assert_eq!(
        rows(
            &client,
            "SELECT SENSORID, A, B, C FROM SENSOR_READINGS ORDER BY SENSORID"
        )
        .await,
        vec![
            r(&["1", "1", "2", "NULL"]),
            r(&["2", "NULL", "NULL", "3"]),
            r(&["3", "NULL", "NULL", "NULL"])
        ]
    );
}

#[tokio::test]
async fn a_column_dropped_under_the_container_is_read_again_and_the_resend_lands() {
    let _g = support::snowflake_shared().await;
    let mapping = evolving_sensors("");
    let f = fixture(
        "UPS_EVOLVE_STALE",
        &[("TABLE", "sensor_readings"), ("UPSERT_TABLES", &mapping)],
    )
    .await;
    let client = support::snowflake_client(&f.db, "S").await;
    f.upsert
        .handle_body(&events(&[("1", reading(1, r#","battery":1"#))]), soon())
        .await
        .unwrap();
    support::sql(&client, "ALTER TABLE SENSOR_READINGS DROP COLUMN BATTERY").await;
    // The cached column is gone: Snowflake answers 000904, Lambda resends the batch.
    let batch = events(&[("2", reading(2, r#","battery":2"#))]);
    let (response, outcome) = f.upsert.handle_body(&batch, soon()).await.unwrap();
    assert_eq!(response.batch_item_failures.len(), 1, "{outcome:?}");
    let t = &outcome.tables["sensor_readings"];
    assert!(
        t.columns_changed && t.error.as_deref().unwrap().contains("000904"),
        "{t:?}"
    );
    let (response, outcome) = f.upsert.handle_body(&batch, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.tables["sensor_readings"].columns_added, 1);
    assert_eq!(
        rows(
            &client,
            "SELECT SENSORID, BATTERY FROM SENSOR_READINGS ORDER BY SENSORID"
        )
        .await,
        vec![r(&["1", "NULL"]), r(&["2", "2"])]
    );
}
