//! The loader handler end to end: files in moto S3 → moto's S3 → SQS notifications (or direct S3
//! and EventBridge events) → COPY INTO the raw tables of the local Snowflake service, asserting
//! the exact rows.

use std::io::Write as _;
use std::time::{Duration, Instant};

use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use loader::{Config, FileOutcome, Loader};
use serde_json::{json, Value};
use shared::config::Env;
use shared::rawzone::encode::Compression;

use crate::support::{self, create_bucket, kinesis_event};

const SHARD: &str = "shardId-000000000000";
/// 2024-03-05T07:30:00Z, so keys land under 2024/03/05/07.
const ARRIVAL: f64 = 1_709_623_800.0;

struct Stack {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    bucket: String,
    queue_url: String,
    queue_arn: String,
    db: String,
    loader: Loader,
    sf: shared::snowflake::SnowflakeClient,
}

/// A bucket with S3 → SQS notifications, a bootstrapped database and a loader for both.
async fn stack(name: &str) -> Stack {
    let s3 = support::s3().await;
    let sqs = aws_sdk_sqs::Client::new(&support::sdk_config().await);
    let bucket = support::unique(name);
    create_bucket(&s3, &bucket).await;
    let queue_url = sqs
        .create_queue()
        .queue_name(&bucket)
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes")
        .attributes()
        .and_then(|a| {
            a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn)
                .cloned()
        })
        .expect("queue arn");
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .id("raw-zone-created")
                        .queue_arn(&queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .build()
                        .expect("queue configuration"),
                )
                .build(),
        )
        .send()
        .await
        .expect("notification configuration");
    let db = support::bootstrapped_database("LOADER", &format!("s3://{bucket}/raw/")).await;
    let loader = loader_for(&bucket, &db, &[]).await;
    let sf = support::snowflake_client(&db, "S").await;
    Stack {
        s3,
        sqs,
        bucket,
        queue_url,
        queue_arn,
        db,
        loader,
        sf,
    }
}

async fn loader_for(bucket: &str, db: &str, extra: &[(&str, &str)]) -> Loader {
    let vars = support::snowflake_vars(db, "S");
    let mut pairs = support::as_pairs(&vars);
    pairs.push(("RAW_BUCKET", bucket));
    pairs.extend_from_slice(extra);
    let mut config = Config::from_env(&Env::new(&pairs)).expect("loader configuration");
    config.snowflake.retry = support::fast_retries();
    let client = shared::snowflake::SnowflakeClient::new(config.snowflake.clone(), None)
        .await
        .expect("snowflake client");
    Loader::new(config, client).with_row_counts(Some(support::s3().await))
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

async fn orchestrator(bucket: &str, vars: &[(&str, &str)]) -> orchestrator::Orchestrator {
    let mut all = vec![("RAW_BUCKET", bucket)];
    all.extend_from_slice(vars);
    let config = orchestrator::Config::from_env(&Env::new(&all)).expect("orchestrator config");
    orchestrator::Orchestrator::new(config, support::s3().await)
}

/// Receives messages until `objects` object-created notifications (plus any test events) have
/// arrived; returns them as Lambda's SQS event records, in arrival order.
async fn receive(stack: &Stack, objects: usize) -> Vec<Value> {
    let mut records = Vec::new();
    let mut seen = 0;
    let give_up = Instant::now() + Duration::from_secs(20);
    while seen < objects {
        assert!(
            Instant::now() < give_up,
            "only {seen} of {objects} notifications arrived: {records:#?}"
        );
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        for m in out.messages() {
            let body = m.body().unwrap_or_default().to_string();
            if !body.contains("s3:TestEvent") {
                seen += 1;
            }
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            records.push(json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": body,
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": stack.queue_arn,
                "awsRegion": "us-east-1",
            }));
        }
    }
    records
}

fn sqs_event(records: &[Value]) -> String {
    json!({ "Records": records }).to_string()
}

fn failed_ids(response: &Value) -> Vec<String> {
    response["batchItemFailures"]
        .as_array()
        .expect("SqsBatchResponse")
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect()
}

fn message_id_of(records: &[Value], key_fragment: &str) -> String {
    records
        .iter()
        .find(|r| r["body"].as_str().unwrap().contains(key_fragment))
        .unwrap_or_else(|| panic!("no message for {key_fragment}"))["messageId"]
        .as_str()
        .unwrap()
        .to_string()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut w = Compression::Gzip { level: 1 }.writer(text.len()).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap()
}

/// One NDJSON line as the orchestrator writes it.
fn ndjson_line(sensor: u32, key: &str, row: u32) -> String {
    json!({"payload": {"sensorId": sensor, "currentTemperature": 60 + sensor, "status": "OK"},
           "metadata": {"stream": "sensors", "shard_id": SHARD, "sequence_number": sensor.to_string(),
                        "partition_key": sensor.to_string(), "arrival_time": "2024-03-05T07:30:00.000Z",
                        "file": key, "row": row}})
    .to_string()
}

async fn put(stack: &Stack, key: &str, body: Vec<u8>) {
    stack
        .s3
        .put_object()
        .bucket(&stack.bucket)
        .key(key)
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// Puts `body` with the row count its writer recorded (`x-amz-meta-row-count`), as the
/// orchestrator does.
async fn put_counted(stack: &Stack, key: &str, body: Vec<u8>, recorded: &str) {
    stack
        .s3
        .put_object()
        .bucket(&stack.bucket)
        .key(key)
        .metadata("row-count", recorded)
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// (sensorId, file, row) of every raw sensor reading, sorted.
async fn sensor_rows(stack: &Stack) -> Vec<(String, String, String)> {
    support::rows(
        &stack.sf,
        "SELECT RECORD:payload:sensorId::STRING, RECORD:metadata:file::STRING, RECORD:metadata:row::STRING \
         FROM SENSOR_READINGS_RAW ORDER BY 2, 3",
    )
    .await
    .into_iter()
    .map(|r| {
        (
            r[0].clone().unwrap_or_default(),
            r[1].clone().unwrap_or_default(),
            r[2].clone().unwrap_or_default(),
        )
    })
    .collect()
}

fn owned(rows: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

#[tokio::test]
async fn orchestrator_files_arrive_by_sqs_and_load_exactly_once_with_lineage() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-e2e").await;

    // orchestrator → NDJSON sensor readings and CSV order events in the raw zone
    let sensors = orchestrator(&stack.bucket, &[("TABLE", "sensor_readings")]).await;
    let readings: Vec<Vec<u8>> = [(6, 64, "OK"), (7, 90, "WARN"), (6, 65, "OK")]
        .iter()
        .map(|(id, t, s)| {
            format!(r#"{{"sensorId": {id}, "currentTemperature": {t}, "status": "{s}"}}"#)
                .into_bytes()
        })
        .collect();
    let (r, _) = sensors
        .handle_body(
            &kinesis_event(
                "sensors",
                SHARD,
                &[
                    ("101", "6", &readings[0]),
                    ("102", "7", &readings[1]),
                    ("103", "6", &readings[2]),
                ],
                ARRIVAL,
            ),
            deadline(),
        )
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let columns = r#"[{"name":"event_id","path":"/event_id","required":true},{"name":"event_type","path":"/event_type"},
        {"name":"event_timestamp","path":"/event_timestamp"},{"name":"customer_id","path":"/customer/id"},
        {"name":"customer_name","path":"/customer/name"},{"name":"city","path":"/customer/city"},
        {"name":"total","path":"/order/total"},{"name":"currency","path":"/order/currency"},{"name":"items","path":"/order/items"}]"#;
    let orders = orchestrator(
        &stack.bucket,
        &[
            ("TABLE", "order_events"),
            ("FORMAT", "csv"),
            ("CSV_COLUMNS", columns),
        ],
    )
    .await;
    let o1 = br#"{"event_id":"o-1","event_type":"order_created","event_timestamp":"2024-03-05T07:29:00Z","customer":{"id":"c9","name":"O'Brien, \"Bob\"","city":"Z\u00fcrich"},"order":{"total":12.5,"currency":"CHF","items":[{"sku":"a","qty":2}]}}"#;
    let o2 = br#"{"event_id":"o-2","event_type":"order_paid","customer":{"id":"c9"},"order":{"total":3}}"#;
    let (r, _) = orders
        .handle_body(
            &kinesis_event(
                "orders",
                "shardId-000000000001",
                &[("7", "c9", o1), ("8", "c9", o2)],
                ARRIVAL,
            ),
            deadline(),
        )
        .await
        .unwrap();
    assert!(r.batch_item_failures.is_empty());
    let sensor_key = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz";
    let order_key = "raw/order_events/2024/03/05/07/shardId-000000000001-7-8.csv.gz";

    // moto: a test event, then one notification per object (keys with %2F for '/')
    let records = receive(&stack, 2).await;
    assert!(
        records
            .iter()
            .any(|r| r["body"].as_str().unwrap().contains("s3:TestEvent")),
        "moto sends s3:TestEvent first"
    );
    let event = sqs_event(&records);
    let (response, outcome) = stack.loader.handle_body(&event, deadline()).await.unwrap();
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(
        (
            outcome.files,
            outcome.loaded,
            outcome.failed,
            outcome.test_events,
            outcome.statements
        ),
        (2, 2, 0, 1, 2)
    );
    assert_eq!(outcome.rows_loaded, 5);
    let emf = outcome.metrics("Test");
    assert_eq!(
        (
            emf.get("FilesLoaded"),
            emf.get("RowsLoaded"),
            emf.get("FilesFailed"),
            emf.get("ReconciliationMismatches")
        ),
        (Some(2.0), Some(5.0), Some(0.0), Some(0.0))
    );
    assert_eq!(
        outcome.file_outcomes[sensor_key],
        FileOutcome::Loaded { rows: 3 }
    );

    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[
            ("6", sensor_key, "1"),
            ("7", sensor_key, "2"),
            ("6", sensor_key, "3")
        ])
    );
    let order_rows = support::rows(
        &stack.sf,
        "SELECT EVENT_ID, EVENT_TYPE, CUSTOMER_NAME, CITY, TOTAL::STRING, CURRENCY, ITEMS, STREAM, SHARD_ID, \
         SEQUENCE_NUMBER, PARTITION_KEY, SOURCE_FILE, SOURCE_ROW::STRING FROM ORDER_EVENTS_RAW ORDER BY SOURCE_ROW",
    )
    .await;
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        order_rows,
        vec![
            vec![
                s("o-1"),
                s("order_created"),
                s("O'Brien, \"Bob\""),
                s("Zürich"),
                s("12.50"),
                s("CHF"),
                s(r#"[{"sku":"a","qty":2}]"#),
                s("orders"),
                s("shardId-000000000001"),
                s("7"),
                s("c9"),
                s(order_key),
                s("1")
            ],
            vec![
                s("o-2"),
                s("order_paid"),
                None,
                None,
                s("3.00"),
                None,
                None,
                s("orders"),
                s("shardId-000000000001"),
                s("8"),
                s("c9"),
                s(order_key),
                s("2")
            ],
        ]
    );

    // the same notifications again (SQS at-least-once): no duplicate rows
    let (response, _) = stack.loader.handle_body(&event, deadline()).await.unwrap();
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    // ... and one message per invocation (the same COPY statements: their requestIds return the
    // stored outcome instead of running again)
    for record in &records {
        let (response, outcome) = stack
            .loader
            .handle_body(&sqs_event(std::slice::from_ref(record)), deadline())
            .await
            .unwrap();
        assert_eq!(failed_ids(&response), Vec::<String>::new());
        assert_eq!(outcome.loaded + outcome.already_loaded, outcome.files);
    }
    assert_eq!(sensor_rows(&stack).await.len(), 3);

    // a new file notified together with an old one: another file set, so a new COPY, and
    // Snowflake's load metadata skips the file loaded before
    let more = br#"{"sensorId": 8, "currentTemperature": 70, "status": "OK"}"#;
    sensors
        .handle_body(
            &kinesis_event("sensors", SHARD, &[("104", "8", more)], ARRIVAL),
            deadline(),
        )
        .await
        .unwrap();
    let new_key = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-104-104.ndjson.gz";
    let mut mixed = receive(&stack, 1).await;
    mixed.push(
        records
            .iter()
            .find(|r| r["body"].as_str().unwrap().contains("101-103"))
            .unwrap()
            .clone(),
    );
    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_event(&mixed), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), Vec::<String>::new());
    assert_eq!(
        (outcome.loaded, outcome.already_loaded, outcome.rows_loaded),
        (1, 1, 1)
    );
    assert_eq!(
        outcome.file_outcomes[sensor_key],
        FileOutcome::AlreadyLoaded
    );
    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[
            ("6", sensor_key, "1"),
            ("7", sensor_key, "2"),
            ("6", sensor_key, "3"),
            ("8", new_key, "1")
        ])
    );
    assert_eq!(
        support::rows(&stack.sf, "SELECT COUNT(*) FROM ORDER_EVENTS_RAW").await,
        vec![vec![s("2")]]
    );
}

#[tokio::test]
async fn a_corrupt_object_fails_only_its_message() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-corrupt").await;
    let good_a = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-1-2.ndjson.gz";
    let good_b = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-3-3.ndjson.gz";
    let bad = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-4-4.ndjson.gz";
    put(
        &stack,
        good_a,
        gzip(&format!(
            "{}\n{}\n",
            ndjson_line(1, good_a, 1),
            ndjson_line(2, good_a, 2)
        )),
    )
    .await;
    put(&stack, bad, b"this is not gzip at all".to_vec()).await;
    put(
        &stack,
        good_b,
        gzip(&format!("{}\n", ndjson_line(3, good_b, 1))),
    )
    .await;
    let records = receive(&stack, 3).await;
    let bad_id = message_id_of(&records, "shardId-000000000000-4-4");

    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_event(&records), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec![bad_id.clone()]);
    assert_eq!(
        (outcome.loaded, outcome.failed, outcome.messages_failed),
        (2, 1, 1)
    );
    assert!(
        matches!(&outcome.file_outcomes[bad], FileOutcome::Failed { .. }),
        "{:?}",
        outcome.file_outcomes
    );
    // one COPY for the chunk, then one per file to isolate the failing one
    assert_eq!(outcome.statements, 4);
    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[("1", good_a, "1"), ("2", good_a, "2"), ("3", good_b, "1")])
    );

    // Lambda retries the failed message: it fails again, nothing is duplicated
    let retry: Vec<Value> = records
        .iter()
        .filter(|r| r["messageId"] == bad_id.as_str())
        .cloned()
        .collect();
    let (response, _) = stack
        .loader
        .handle_body(&sqs_event(&retry), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec![bad_id]);
    assert_eq!(sensor_rows(&stack).await.len(), 3);

    // a direct invocation with the corrupt file fails as a whole (Lambda retries it)
    let direct = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": stack.bucket}, "object": {"key": bad}}}]});
    let err = stack
        .loader
        .handle_body(&direct.to_string(), deadline())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(bad), "{err}");
}

#[tokio::test]
async fn keys_outside_the_prefix_are_skipped_and_odd_names_load() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-keys").await;
    let spaced = "raw/sensor_readings/2024/01/01/00/my file é.ndjson.gz";
    let plus = "raw/sensor_readings/2024/01/01/00/a+b (1).ndjson.gz";
    let outside = "other/sensor_readings/2024/01/01/00/x.ndjson.gz";
    let not_raw = "raw/README.txt";
    put(
        &stack,
        spaced,
        gzip(&format!("{}\n", ndjson_line(11, spaced, 1))),
    )
    .await;
    put(
        &stack,
        plus,
        gzip(&format!("{}\n", ndjson_line(12, plus, 1))),
    )
    .await;
    put(
        &stack,
        outside,
        gzip(&format!("{}\n", ndjson_line(13, outside, 1))),
    )
    .await;
    put(&stack, not_raw, b"hello".to_vec()).await;
    let mut records = receive(&stack, 4).await;
    // a message nobody can read goes back (and on to the DLQ); the others are processed
    let mut garbage = records[0].clone();
    garbage["messageId"] = json!("garbage-1");
    garbage["body"] = json!("{not json");
    records.push(garbage);

    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_event(&records), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec!["garbage-1".to_string()]);
    assert_eq!(
        (outcome.files, outcome.loaded, outcome.skipped),
        (2, 2, 2),
        "{outcome:?}"
    );
    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[("12", plus, "1"), ("11", spaced, "1")])
    );

    // another bucket's object never loads, even under the prefix
    let foreign = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "someone-elses-bucket"}, "object": {"key": "raw/sensor_readings/2024/01/01/00/y.ndjson.gz"}}}]});
    let (_, outcome) = stack
        .loader
        .handle_body(&foreign.to_string(), deadline())
        .await
        .unwrap();
    assert_eq!(
        (outcome.files, outcome.skipped, outcome.statements),
        (0, 1, 0)
    );
    // a key that would break out of the string literal is refused, not loaded
    let hostile =
        "raw/sensor_readings/2024/01/01/00/x'); DROP TABLE SENSOR_READINGS_RAW; --.ndjson.gz";
    put(
        &stack,
        hostile,
        gzip(&format!("{}\n", ndjson_line(14, hostile, 1))),
    )
    .await;
    let ev = json!({"detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": stack.bucket}, "object": {"key": hostile}}});
    assert!(stack
        .loader
        .handle_body(&ev.to_string(), deadline())
        .await
        .is_err());
    assert_eq!(sensor_rows(&stack).await.len(), 2);
}

/// A file whose writer recorded 5 rows loads 3: the load stands (the rows are there), the
/// difference is a reconciliation mismatch in the outcome and the metric (and an error log).
#[tokio::test]
async fn a_file_with_fewer_rows_than_its_writer_recorded_is_a_reconciliation_mismatch() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-rowcount").await;
    let short = "raw/sensor_readings/2024/03/05/07/short.ndjson.gz";
    let whole = "raw/sensor_readings/2024/03/05/07/whole.ndjson.gz";
    for (key, rows, recorded) in [(short, 3u32, "5"), (whole, 1, "1")] {
        let lines: String = (1..=rows)
            .map(|i| format!("{}\n", ndjson_line(30 + i, key, i)))
            .collect();
        put_counted(&stack, key, gzip(&lines), recorded).await;
    }
    let records: Vec<Value> = [short, whole]
        .iter()
        .map(|k| {
            json!({"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "x"},
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stack.bucket, "arn": format!("arn:aws:s3:::{}", stack.bucket)},
                       "object": {"key": k, "size": 100}}})
        })
        .collect();
    let event = json!({ "Records": records });
    let (_, outcome) = stack
        .loader
        .handle_body(&event.to_string(), deadline())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.loaded,
            outcome.rows_loaded,
            outcome.row_count_mismatches
        ),
        (2, 4, 1)
    );
    assert_eq!(
        outcome.metrics("Test").get("ReconciliationMismatches"),
        Some(1.0)
    );
}

/// `backfill` loads an hour of the raw zone through the loader's COPY path in chunks; run again
/// it loads nothing (every file already loaded) and another hour is left alone.
#[tokio::test]
async fn backfill_loads_a_prefix_once_in_chunks() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-backfill").await;
    let hour = "raw/sensor_readings/2024/03/05/07/";
    for (i, name) in ["a.ndjson.gz", "b c.ndjson.gz", "d.ndjson.gz"]
        .iter()
        .enumerate()
    {
        let key = format!("{hour}{name}");
        let lines: String = (1..=2)
            .map(|row| format!("{}\n", ndjson_line(40 + 2 * i as u32 + row, &key, row)))
            .collect();
        put(&stack, &key, gzip(&lines)).await;
    }
    let other = "raw/sensor_readings/2024/03/05/08/e.ndjson.gz";
    put(
        &stack,
        other,
        gzip(&format!("{}\n", ndjson_line(99, other, 1))),
    )
    .await;

    let dry = tools::backfill::run(&stack.s3, &stack.loader, &stack.bucket, hour, 2, true)
        .await
        .unwrap();
    assert_eq!((dry.objects, dry.loaded), (3, 0));
    assert!(sensor_rows(&stack).await.is_empty());
    let first = tools::backfill::run(&stack.s3, &stack.loader, &stack.bucket, hour, 2, false)
        .await
        .unwrap();
    assert_eq!(
        (
            first.objects,
            first.loaded,
            first.already_loaded,
            first.failed,
            first.rows_loaded
        ),
        (3, 3, 0, 0, 6)
    );
    let again = tools::backfill::run(&stack.s3, &stack.loader, &stack.bucket, hour, 2, false)
        .await
        .unwrap();
    // The same chunks make the same COPY statements with the same request ids, which Snowflake
    // answers with the first execution's result within its retry window: the counts may repeat
    // the first run's, the table never does.
    assert_eq!(again.loaded + again.already_loaded, 3);
    assert_eq!(again.failed, 0);
    // Other chunks are other statements: Snowflake's load metadata skips every file.
    let other_chunks =
        tools::backfill::run(&stack.s3, &stack.loader, &stack.bucket, hour, 3, false)
            .await
            .unwrap();
    assert_eq!(
        (
            other_chunks.loaded,
            other_chunks.already_loaded,
            other_chunks.rows_loaded
        ),
        (0, 3, 0)
    );
    let rows = sensor_rows(&stack).await;
    assert_eq!(rows.len(), 6);
    assert!(
        rows.iter().all(|(_, file, _)| file.starts_with(hour)),
        "{rows:?}"
    );
}

/// Runs `body` with the local service's clock `days` ahead, and puts it back however `body` ends.
/// The clock is global: callers hold [`support::snowflake_exclusive`].
async fn with_clock_offset<T>(days: f64, body: impl std::future::Future<Output = T>) -> T {
    use futures_util::FutureExt as _;
    support::snowflake_admin("/admin/config", json!({ "clock_offset_days": days })).await;
    let result = std::panic::AssertUnwindSafe(body).catch_unwind().await;
    support::snowflake_admin("/admin/config", json!({ "clock_offset_days": 0 })).await;
    result.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Backfill after Snowflake's own records of a load have expired: 20 days on `LOAD_HISTORY` no
/// longer shows a load (14 days) while COPY still skips the file (load metadata, 64 days); 70 days
/// on the load metadata has expired too and COPY with LOAD_UNCERTAIN_FILES would load the file
/// again. The target table's lineage says what landed: nothing loads twice, nothing is reported
/// failed, and a file never loaded (uncertain status at 70 days) is loaded.
#[tokio::test]
async fn backfill_never_loads_twice_after_load_history_and_load_metadata_expire() {
    let _g = support::snowflake_exclusive().await;
    let stack = stack("loader-backfill-aged").await;
    let day = "raw/sensor_readings/2024/03/05/";
    let (a, b) = (
        format!("{day}07/a.ndjson.gz"),
        format!("{day}07/b.ndjson.gz"),
    );
    let (c, d) = (
        format!("{day}07/c.ndjson.gz"),
        format!("{day}08/d.ndjson.gz"),
    );
    for (i, key) in [&a, &b, &c, &d].into_iter().enumerate() {
        let lines: String = (1..=2)
            .map(|row| format!("{}\n", ndjson_line(10 * (i as u32 + 1) + row, key, row)))
            .collect();
        put(&stack, key, gzip(&lines)).await;
    }
    // one file per COPY: the backfill's statements are others, so no request id replays a result
    for key in [&a, &b] {
        let (_, outcome) = stack
            .loader
            .handle_body(&sqs_notifications(&stack.bucket, &[key]), deadline())
            .await
            .unwrap();
        assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 2));
    }
    let backfill = |prefix: String| {
        let stack = &stack;
        async move {
            tools::backfill::run(&stack.s3, &stack.loader, &stack.bucket, &prefix, 2, false)
                .await
                .unwrap()
        }
    };
    let report =
        |r: &tools::backfill::BackfillReport| (r.loaded, r.already_loaded, r.failed, r.rows_loaded);

    // 20 days on: a and b are in the table (LOAD_HISTORY no longer shows them), c is new
    let hour = with_clock_offset(20.0, backfill(format!("{day}07/"))).await;
    assert_eq!(report(&hour), (1, 2, 0, 2), "{hour:?}");
    // 70 days on: every load record has expired; d's status is uncertain and it loads
    let whole = with_clock_offset(70.0, backfill(day.to_string())).await;
    assert_eq!(report(&whole), (1, 3, 0, 2), "{whole:?}");
    let again = with_clock_offset(70.0, backfill(day.to_string())).await;
    assert_eq!(report(&again), (0, 4, 0, 0), "{again:?}");

    let rows = sensor_rows(&stack).await;
    assert_eq!(rows.len(), 8, "each file's 2 rows exactly once: {rows:?}");
    for key in [&a, &b, &c, &d] {
        assert_eq!(rows.iter().filter(|(_, f, _)| f == key).count(), 2, "{key}");
    }
}

#[tokio::test]
async fn direct_s3_and_eventbridge_events_each_load_their_file() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-direct").await;
    let via_s3 = "raw/sensor_readings/2024/03/05/07/direct put é.ndjson.gz";
    let via_eb = "raw/sensor_readings/2024/03/05/07/event bridge+.ndjson.gz";
    put(
        &stack,
        via_s3,
        gzip(&format!(
            "{}\n{}\n",
            ndjson_line(21, via_s3, 1),
            ndjson_line(22, via_s3, 2)
        )),
    )
    .await;
    put(
        &stack,
        via_eb,
        gzip(&format!("{}\n", ndjson_line(23, via_eb, 1))),
    )
    .await;

    // as S3 sends it: URL-encoded, '+' for a space
    let direct = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventName": "ObjectCreated:Put", "userIdentity": {"principalId": "x"},
        "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stack.bucket, "arn": format!("arn:aws:s3:::{}", stack.bucket)},
               "object": {"key": "raw/sensor_readings/2024/03/05/07/direct+put+%C3%A9.ndjson.gz", "size": 100}}}]});
    let (response, outcome) = stack
        .loader
        .handle_body(&direct.to_string(), deadline())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.trigger.as_str(),
            outcome.loaded,
            outcome.rows_loaded
        ),
        ("s3", 1, 2)
    );
    assert_eq!(response["loaded"], 1);

    // as EventBridge sends it: not encoded
    let eb = json!({"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2024-03-05T07:31:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{}", stack.bucket)],
        "detail": {"version": "0", "bucket": {"name": stack.bucket}, "object": {"key": via_eb, "size": 50},
                   "reason": "PutObject"}});
    let (_, outcome) = stack
        .loader
        .handle_body(&eb.to_string(), deadline())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.trigger.as_str(),
            outcome.loaded,
            outcome.rows_loaded
        ),
        ("eventbridge", 1, 1)
    );

    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[
            ("21", via_s3, "1"),
            ("22", via_s3, "2"),
            ("23", via_eb, "1")
        ])
    );
    let _ = &stack.db;
}

/// The duplicate-key rule end to end: the raw zone keeps the record as it arrived, and COPY keeps
/// the last value of a repeated key (the JSON file format has ALLOW_DUPLICATE = TRUE), as the
/// upsert does. Without it, Snowflake fails the whole file on that one line.
#[tokio::test]
async fn a_payload_with_a_repeated_key_loads_with_the_last_value() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-dupkey").await;
    let key = "raw/sensor_readings/2024/03/05/07/dup.ndjson.gz";
    let line = format!(
        r#"{{"payload": {{"sensorId": 31, "status": "FIRST", "status": "LAST"}}, "metadata": {{"file": "{key}", "row": 1}}}}"#
    );
    put(
        &stack,
        key,
        gzip(&format!("{line}\n{}\n", ndjson_line(32, key, 2))),
    )
    .await;
    let (_, outcome) = stack
        .loader
        .handle_body(&sqs_notifications(&stack.bucket, &[key]), deadline())
        .await
        .unwrap();
    assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 2), "{outcome:?}");
    assert_eq!(
        support::rows(
            &stack.sf,
            "SELECT RECORD:payload:sensorId::STRING, RECORD:payload:status::STRING FROM SENSOR_READINGS_RAW ORDER BY 1",
        )
        .await,
        vec![
            vec![Some("31".to_string()), Some("LAST".to_string())],
            vec![Some("32".to_string()), Some("OK".to_string())]
        ]
    );
}

/// An SQS event of one message per key, each carrying the S3 notification of its object.
fn sqs_notifications(bucket: &str, keys: &[&str]) -> String {
    let records: Vec<Value> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let body = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
                "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                       "object": {"key": key, "size": 100}}}]});
            json!({"messageId": format!("m{i}"), "receiptHandle": "rh", "body": body.to_string(),
                "attributes": {}, "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"})
        })
        .collect();
    sqs_event(&records)
}

/// Snowflake's semantics: a file loaded before is left out of COPY's result, and the loader
/// finds its load in LOAD_HISTORY (the local service keeps load metadata as Snowflake does).
#[tokio::test]
async fn a_file_copy_leaves_out_counts_as_loaded_through_its_load_history() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-history").await;
    let old = "raw/sensor_readings/2024/03/05/07/old.ndjson.gz";
    let new = "raw/sensor_readings/2024/03/05/07/new.ndjson.gz";
    put(&stack, old, gzip(&format!("{}\n", ndjson_line(31, old, 1)))).await;
    put(&stack, new, gzip(&format!("{}\n", ndjson_line(32, new, 1)))).await;

    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_notifications(&stack.bucket, &[old]), deadline())
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty());
    assert_eq!((outcome.loaded, outcome.history_queries), (1, 0));

    // Both files in one COPY: the new one is loaded, the old one is left out of the result,
    // and LOAD_HISTORY shows its earlier load.
    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_notifications(&stack.bucket, &[old, new]), deadline())
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty(), "{response}");
    assert_eq!(
        (
            outcome.loaded,
            outcome.already_loaded,
            outcome.failed,
            outcome.history_queries
        ),
        (1, 1, 0, 1)
    );
    assert_eq!(outcome.file_outcomes[old], FileOutcome::AlreadyLoaded);
    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[("32", new, "1"), ("31", old, "1")])
    );
}

/// A notification naming a file the stage does not have (deleted or expired before the
/// notification was handled; AWS's sample S3 put event names such a key): Snowflake's COPY leaves
/// it out of its result, the loader finds no load in LOAD_HISTORY and no object in S3, reports it
/// as not in the stage (not retried) and loads the other file of the notification.
#[tokio::test]
async fn a_notified_file_that_is_not_in_the_stage_is_reported_and_the_rest_loads() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-missing").await;
    let here = "raw/sensor_readings/2024/03/05/07/here.ndjson.gz";
    let gone = "raw/sensor_readings/2024/03/05/07/gone.ndjson.gz";
    put(
        &stack,
        here,
        gzip(&format!("{}\n", ndjson_line(41, here, 1))),
    )
    .await;
    // one direct S3 event naming both: the invocation succeeds
    let records: Vec<Value> = [here, gone]
        .iter()
        .map(|key| {
            json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": stack.bucket}, "object": {"key": key}}})
        })
        .collect();
    let event = json!({ "Records": records });
    let (response, outcome) = stack
        .loader
        .handle_body(&event.to_string(), deadline())
        .await
        .expect("the invocation does not fail");
    assert_eq!(outcome.file_outcomes[here], FileOutcome::Loaded { rows: 1 });
    let FileOutcome::NotInStage { reason } = &outcome.file_outcomes[gone] else {
        panic!("{:?}", outcome.file_outcomes[gone]);
    };
    assert!(
        reason.contains("LOAD_HISTORY shows no load")
            && reason.contains(&format!("S3 has no object s3://{}/{gone}", stack.bucket)),
        "{reason}"
    );
    assert_eq!(
        (outcome.loaded, outcome.not_in_stage, outcome.failed),
        (1, 1, 0)
    );
    assert_eq!(response["not_in_stage"], 1);
    assert_eq!(response["file_outcomes"][gone]["status"], "not_in_stage");
    assert_eq!(outcome.metrics("Test").get("FilesNotInStage"), Some(1.0));
    assert_eq!(outcome.metrics("Test").get("FilesFailed"), Some(0.0));
    assert_eq!(sensor_rows(&stack).await, owned(&[("41", here, "1")]));

    // through SQS: no message is retried for it
    let (response, outcome) = stack
        .loader
        .handle_body(&sqs_notifications(&stack.bucket, &[gone]), deadline())
        .await
        .unwrap();
    assert!(failed_ids(&response).is_empty(), "{response}");
    assert_eq!((outcome.not_in_stage, outcome.failed), (1, 0));
}

/// A scripted SQL API for answers the local service cannot give on demand: `reply(statement)`
/// answers each POST; returns the base URL and the statements received.
fn scripted_snowflake(
    reply: impl Fn(&str) -> (u16, Value) + Send + Sync + 'static,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead as _, BufReader, Read as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let (seen2, reply) = (seen.clone(), std::sync::Arc::new(reply));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (seen, reply) = (seen2.clone(), reply.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut out = stream;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut length = 0;
                    loop {
                        let mut h = String::new();
                        reader.read_line(&mut h).unwrap();
                        if h.trim().is_empty() {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
                    let statement = request["statement"].as_str().unwrap_or("").to_string();
                    seen.lock().unwrap().push(statement.clone());
                    let (status, answer) = reply(&statement);
                    let answer = answer.to_string();
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    if std::io::Write::write_all(&mut out, head.as_bytes())
                        .and_then(|_| std::io::Write::write_all(&mut out, answer.as_bytes()))
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A 200 result set as the SQL API sends it.
fn result_set(columns: &[&str], rows: Vec<Vec<Value>>) -> (u16, Value) {
    let row_type: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c, "type": "TEXT"}))
        .collect();
    (
        200,
        json!({"statementHandle": "01b2c3d4-0000-4000-8000-000000000001",
            "resultSetMetaData": {"numRows": rows.len(), "rowType": row_type,
                                  "partitionInfo": [{"rowCount": rows.len()}]},
            "data": rows}),
    )
}

async fn scripted_loader(url: &str) -> Loader {
    let vars = [
        ("RAW_BUCKET", "b"),
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_URL", url),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_SCHEMA", "S"),
    ];
    let mut config = Config::from_env(&Env::new(&vars)).unwrap();
    config.snowflake.retry = support::fast_retries();
    let client = shared::snowflake::SnowflakeClient::new(config.snowflake.clone(), None)
        .await
        .unwrap();
    Loader::new(config, client)
}

const A: &str = "raw/t/2024/03/05/07/a.csv";
const B: &str = "raw/t/2024/03/05/07/b.csv";

#[tokio::test]
async fn zero_files_processed_is_loaded_only_for_files_the_history_shows() {
    let (url, seen) = scripted_snowflake(|sql| {
        if sql.starts_with("COPY INTO") {
            result_set(
                &["status"],
                vec![vec![json!("Copy executed with 0 files processed.")]],
            )
        } else {
            // a was loaded (and failed once before that); b never was
            result_set(
                &["FILE_NAME", "STATUS"],
                vec![
                    vec![
                        json!("s3://b/raw/t/2024/03/05/07/a.csv"),
                        json!("LOAD FAILED"),
                    ],
                    vec![json!("s3://b/raw/t/2024/03/05/07/a.csv"), json!("LOADED")],
                ],
            )
        }
    });
    let loader = scripted_loader(&url).await;
    let (response, outcome) = loader
        .handle_body(&sqs_notifications("b", &[A, B]), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec!["m1".to_string()]);
    assert_eq!(outcome.file_outcomes[A], FileOutcome::AlreadyLoaded);
    assert!(
        matches!(&outcome.file_outcomes[B], FileOutcome::Failed { error } if error.contains("LOAD_HISTORY shows no load")),
        "{:?}",
        outcome.file_outcomes[B]
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[0].ends_with("ON_ERROR = ABORT_STATEMENT LOAD_UNCERTAIN_FILES = TRUE"),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].starts_with("SELECT FILE_NAME, STATUS FROM \"DB\".INFORMATION_SCHEMA.LOAD_HISTORY"),
        "{}",
        seen[1]
    );
}

#[tokio::test]
async fn a_left_out_file_fails_when_the_history_cannot_be_read_or_the_result_is_not_understood() {
    // a loaded, b left out, and the history query fails: b is not assumed loaded
    let (url, _) = scripted_snowflake(|sql| {
        if sql.starts_with("COPY INTO") {
            result_set(
                &["file", "status", "rows_parsed", "rows_loaded"],
                vec![vec![
                    json!("s3://b/raw/t/2024/03/05/07/a.csv"),
                    json!("LOADED"),
                    json!("2"),
                    json!("2"),
                ]],
            )
        } else {
            (
                422,
                json!({"code": "002003", "sqlState": "42S02", "message": "does not exist or not authorized",
                       "statementHandle": "01b2c3d4-0000-4000-8000-000000000002"}),
            )
        }
    });
    let loader = scripted_loader(&url).await;
    let (response, outcome) = loader
        .handle_body(&sqs_notifications("b", &[A, B]), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response), vec!["m1".to_string()]);
    assert_eq!(outcome.file_outcomes[A], FileOutcome::Loaded { rows: 2 });
    assert!(
        matches!(&outcome.file_outcomes[B], FileOutcome::Failed { error } if error.contains("could not be read")),
        "{:?}",
        outcome.file_outcomes[B]
    );

    // a result of neither known shape: nothing is concluded, every file fails
    let (url, seen) = scripted_snowflake(|_| result_set(&["rows_loaded"], vec![vec![json!("3")]]));
    let loader = scripted_loader(&url).await;
    let (response, outcome) = loader
        .handle_body(&sqs_notifications("b", &[A, B]), deadline())
        .await
        .unwrap();
    assert_eq!(
        failed_ids(&response),
        vec!["m0".to_string(), "m1".to_string()]
    );
    assert_eq!(outcome.failed, 2);
    assert_eq!(seen.lock().unwrap().len(), 1, "no history query");
}

/// `INFORMATION_SCHEMA.COLUMNS` of the typed sensor table: (name, type, scale), in order.
async fn typed_columns(stack: &Stack) -> Vec<Vec<Option<String>>> {
    support::rows(
        &stack.sf,
        "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_SCALE::STRING FROM INFORMATION_SCHEMA.COLUMNS \
         WHERE TABLE_NAME = 'SENSOR_READINGS_TYPED' ORDER BY ORDINAL_POSITION",
    )
    .await
}

fn col(name: &str, ty: &str, scale: Option<&str>) -> Vec<Option<String>> {
    vec![Some(name.into()), Some(ty.into()), scale.map(String::from)]
}

/// The columns `sql/` creates the typed sensor table with, as `INFORMATION_SCHEMA` reports them.
fn typed_lineage_columns() -> Vec<Vec<Option<String>>> {
    vec![
        col("SOURCE_FILE", "TEXT", None),
        col("SOURCE_ROW", "NUMBER", Some("0")),
        // sql/ says TIMESTAMP_LTZ; fakesnow reports it as TIMESTAMP_TZ
        col("LOADED_AT", "TIMESTAMP_TZ", None),
        col("KINESIS_STREAM", "TEXT", None),
        col("KINESIS_SHARD_ID", "TEXT", None),
        col("KINESIS_SEQUENCE_NUMBER", "TEXT", None),
        col("KINESIS_PARTITION_KEY", "TEXT", None),
        col("KINESIS_SUB_SEQUENCE", "NUMBER", Some("0")),
        col("KINESIS_ARRIVAL_TIME", "TIMESTAMP_NTZ", None),
    ]
}

#[tokio::test]
async fn ndjson_into_a_typed_table_evolves_it_and_a_drifting_value_fails_its_file() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-evolve").await;
    let typed = [
        ("TABLE_MAP", r#"{"sensor_typed": "SENSOR_READINGS_TYPED"}"#),
        ("MATCH_BY_NAME_TABLES", r#"["sensor_typed"]"#),
        ("LINEAGE", "metadata"),
    ];
    let loader = loader_for(&stack.bucket, &stack.db, &typed).await;
    let lines =
        |records: &[Value]| gzip(&records.iter().map(|r| format!("{r}\n")).collect::<String>());
    let a = "raw/sensor_typed/2024/03/05/07/a.ndjson.gz";
    let b = "raw/sensor_typed/2024/03/05/08/b.ndjson.gz";
    let c = "raw/sensor_typed/2024/03/05/09/c.ndjson.gz";
    put(
        &stack,
        a,
        lines(&[
            json!({"sensorId": 1, "temp": 20.5, "status": "OK"}),
            json!({"sensorId": 2, "temp": 21, "status": "OK"}),
        ]),
    )
    .await;
    let (_, outcome) = loader
        .handle_body(&sqs_notifications(&stack.bucket, &[a]), deadline())
        .await
        .unwrap();
    assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 2), "{outcome:?}");
    let lineage = typed_lineage_columns();
    let first = [
        // in the order of the file's keys (serde_json writes them sorted)
        col("SENSORID", "NUMBER", Some("0")),
        col("STATUS", "TEXT", None),
        col("TEMP", "NUMBER", Some("1")),
    ];
    assert_eq!(
        typed_columns(&stack).await,
        [&lineage[..], &first[..]].concat()
    );

    // a field appears: the table gains its column; earlier rows have NULL there
    put(
        &stack,
        b,
        lines(&[json!({"sensorId": 3, "temp": 22.5, "status": "OK", "humidity": 40})]),
    )
    .await;
    let (_, outcome) = loader
        .handle_body(&sqs_notifications(&stack.bucket, &[b]), deadline())
        .await
        .unwrap();
    assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 1), "{outcome:?}");
    let evolved = [
        &lineage[..],
        &first[..],
        &[col("HUMIDITY", "NUMBER", Some("0"))][..],
    ]
    .concat();
    assert_eq!(typed_columns(&stack).await, evolved);
    let rows = support::rows(
        &stack.sf,
        "SELECT SENSORID::STRING, TEMP::STRING, HUMIDITY::STRING, SOURCE_FILE, SOURCE_ROW::STRING \
         FROM SENSOR_READINGS_TYPED ORDER BY SENSORID",
    )
    .await;
    let path = |k: &str| Some(k.trim_start_matches("raw/").to_string());
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        rows,
        vec![
            vec![s("1"), s("20.5"), None, path(a), s("1")],
            vec![s("2"), s("21.0"), None, path(a), s("2")],
            vec![s("3"), s("22.5"), s("40"), path(b), s("1")],
        ]
    );

    // a value that does not fit its evolved column: COPY (ON_ERROR = ABORT_STATEMENT) fails the file,
    // which the loader reports as any failed file; nothing of it lands, the table keeps its columns
    put(
        &stack,
        c,
        lines(&[
            json!({"sensorId": 4, "humidity": 41}),
            json!({"sensorId": 5, "humidity": "high"}),
        ]),
    )
    .await;
    let (response, outcome) = loader
        .handle_body(&sqs_notifications(&stack.bucket, &[c]), deadline())
        .await
        .unwrap();
    assert_eq!(failed_ids(&response).len(), 1);
    assert_eq!((outcome.loaded, outcome.failed), (0, 1), "{outcome:?}");
    match &outcome.file_outcomes[c] {
        FileOutcome::Failed { error } => assert!(
            error.contains("Numeric value 'high' is not recognized"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(typed_columns(&stack).await, evolved);
    assert_eq!(
        support::rows(
            &stack.sf,
            "SELECT COUNT(*)::STRING FROM SENSOR_READINGS_TYPED"
        )
        .await,
        vec![vec![s("3")]]
    );
}

/// Runs `records` through `orchestrator` (one batch on [`SHARD`]), then `loader` on the object
/// `key` the batch must have written; the loader's outcome.
async fn orchestrate_then_load(
    stack: &Stack,
    orchestrator: &orchestrator::Orchestrator,
    loader: &Loader,
    records: &[(&str, &str, &[u8])],
    key: &str,
) -> loader::Outcome {
    let event = kinesis_event("sensors", SHARD, records, ARRIVAL);
    let (r, _) = orchestrator.handle_body(&event, deadline()).await.unwrap();
    assert!(r.batch_item_failures.is_empty());
    let (_, outcome) = loader
        .handle_body(&sqs_notifications(&stack.bucket, &[key]), deadline())
        .await
        .unwrap();
    outcome
}

/// The lines of the orchestrator's quarantine objects in the stack's bucket.
async fn orchestrator_rejections(stack: &Stack) -> Vec<Value> {
    let mut lines = Vec::new();
    for key in support::list_keys(&stack.s3, &stack.bucket).await {
        if key.starts_with("errors/orchestrator/") {
            lines.extend(support::rejected_lines(&stack.s3, &stack.bucket, &key).await);
        }
    }
    lines
}

/// The micro-batch path into a typed table: the orchestrator writes flat lines for a table in
/// `MATCH_BY_NAME_TABLES`, the loader COPYs them by column name, and Snowflake evolves the table
/// when a batch's records gain a field. A record whose key is a lineage key is quarantined.
#[tokio::test]
async fn orchestrator_flat_lines_load_by_name_and_evolve_the_typed_table() {
    let _g = support::snowflake_shared().await;
    let stack = stack("loader-flat").await;
    let by_name = ("MATCH_BY_NAME_TABLES", r#"["sensor_typed"]"#);
    let sensors = orchestrator(&stack.bucket, &[("TABLE", "sensor_typed"), by_name]).await;
    let typed = [
        ("TABLE_MAP", r#"{"sensor_typed": "SENSOR_READINGS_TYPED"}"#),
        by_name,
        ("LINEAGE", "metadata"),
    ];
    let loader = loader_for(&stack.bucket, &stack.db, &typed).await;

    let a = "raw/sensor_typed/2024/03/05/07/shardId-000000000000-201-203.ndjson.gz";
    let first: [(&str, &str, &[u8]); 3] = [
        (
            "201",
            "p1",
            br#"{"sensorId": 1, "temp": 20.5, "status": "OK"}"#,
        ),
        ("202", "p2", br#"{"sensorId":9,"kinesis_Shard_Id":"mine"}"#),
        ("203", "p3", br#"{"sensorId":2,"temp":21,"status":"OK" }"#),
    ];
    let outcome = orchestrate_then_load(&stack, &sensors, &loader, &first, a).await;
    assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 2), "{outcome:?}");
    let fields = [
        // in the order of the record's keys, which the flat line keeps
        col("SENSORID", "NUMBER", Some("0")),
        col("TEMP", "NUMBER", Some("1")),
        col("STATUS", "TEXT", None),
    ];
    let lineage = typed_lineage_columns();
    assert_eq!(
        typed_columns(&stack).await,
        [&lineage[..], &fields[..]].concat()
    );

    // the next batch's records gain a field: the table gains its column
    let b = "raw/sensor_typed/2024/03/05/07/shardId-000000000000-301-301.ndjson.gz";
    let second: [(&str, &str, &[u8]); 1] = [(
        "301",
        "p1",
        br#"{"sensorId": 3, "temp": 22.5, "status": "OK", "humidity": 40}"#,
    )];
    let outcome = orchestrate_then_load(&stack, &sensors, &loader, &second, b).await;
    assert_eq!((outcome.loaded, outcome.rows_loaded), (1, 1), "{outcome:?}");
    let humidity = [col("HUMIDITY", "NUMBER", Some("0"))];
    assert_eq!(
        typed_columns(&stack).await,
        [&lineage[..], &fields[..], &humidity[..]].concat()
    );
    assert_flat_rows(&stack, a, b).await;

    // the record with a lineage key was quarantined, its reason naming the key
    let rejected = orchestrator_rejections(&stack).await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    let reason = rejected[0]["reason"].as_str().unwrap();
    assert!(
        reason.contains("\"kinesis_Shard_Id\"") && reason.contains("KINESIS_SHARD_ID"),
        "{reason}"
    );
    assert_eq!(rejected[0]["metadata"]["sequence_number"], "202");
}

/// The typed table holds exactly the three accepted records of files `a` and `b`, with their
/// Kinesis lineage (from the lines) and file lineage (from `INCLUDE_METADATA`).
async fn assert_flat_rows(stack: &Stack, a: &str, b: &str) {
    let rows = support::rows(
        &stack.sf,
        "SELECT SENSORID::STRING, TEMP::STRING, STATUS, HUMIDITY::STRING, KINESIS_STREAM, \
         KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER, KINESIS_PARTITION_KEY, \
         KINESIS_SUB_SEQUENCE::STRING, KINESIS_ARRIVAL_TIME::STRING, SOURCE_FILE, SOURCE_ROW::STRING \
         FROM SENSOR_READINGS_TYPED ORDER BY SENSORID",
    )
    .await;
    let s = |v: &str| Some(v.to_string());
    let row = |id, temp, humidity: Option<&str>, seq, pk, file: &str, n| {
        let file = file.trim_start_matches("raw/");
        let (ok, stream, arrival) = (s("OK"), s("sensors"), s("2024-03-05 07:30:00"));
        let humidity = humidity.map(String::from);
        vec![
            s(id),
            s(temp),
            ok,
            humidity,
            stream,
            s(SHARD),
            s(seq),
            s(pk),
            None,
            arrival,
            s(file),
            s(n),
        ]
    };
    assert_eq!(
        rows,
        vec![
            row("1", "20.5", None, "201", "p1", a, "1"),
            row("2", "21.0", None, "203", "p3", a, "2"),
            row("3", "22.5", Some("40"), "301", "p1", b, "1"),
        ]
    );
}

mod snowpipe;
