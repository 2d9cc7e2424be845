//! The orchestrator handler against moto S3: exact keys and decompressed contents.

use std::time::{Duration, Instant};

use orchestrator::{Config, Orchestrator};
use shared::config::Env;
use shared::rawzone::encode::{decompress, Compression};

use crate::support::{self, create_bucket, get_bytes, get_object, kinesis_event, list_keys};

const SHARD: &str = "shardId-000000000000";
/// 2024-03-05T07:30:00Z, so keys land under 2024/03/05/07.
const ARRIVAL: f64 = 1_709_623_800.0;

async fn orchestrator(bucket: &str, vars: &[(&str, &str)]) -> Orchestrator {
    let mut all = vec![("RAW_BUCKET", bucket)];
    all.extend_from_slice(vars);
    let config = Config::from_env(&Env::new(&all)).expect("valid configuration");
    Orchestrator::new(config, support::s3().await)
}

/// A deadline no test reaches.
fn soon() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

fn lines(bytes: &[u8], compression: Compression) -> Vec<serde_json::Value> {
    let text = String::from_utf8(decompress(compression, bytes).unwrap()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sensor(id: u32, temp: u32, status: &str) -> Vec<u8> {
    format!(r#"{{"sensorId": {id}, "currentTemperature": {temp}, "status": "{status}"}}"#)
        .into_bytes()
}

#[tokio::test]
async fn ndjson_gzip_batch_lands_under_deterministic_keys() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-ndjson");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(&bucket, &[("TABLE", "sensor_readings")]).await;

    let (a, b, c) = (
        sensor(6, 64, "OK"),
        sensor(7, 90, "WARN"),
        sensor(6, 65, "OK"),
    );
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[("101", "6", &a), ("102", "7", &b), ("103", "6", &c)],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();

    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            outcome.records,
            outcome.quarantined,
            outcome.objects_written
        ),
        (3, 0, 1)
    );
    let key = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz";
    assert_eq!(list_keys(&s3, &bucket).await, vec![key.to_string()]);

    let object = get_object(&s3, &bucket, key).await;
    assert_eq!(object.content_type(), Some("application/x-ndjson"));
    assert_eq!(object.content_encoding(), Some("gzip"));
    assert_eq!(
        object.metadata().and_then(|m| m.get("row-count")),
        Some(&"3".to_string()),
        "the row count the loader reconciles against"
    );
    let rows = lines(
        &get_bytes(&s3, &bucket, key).await,
        Compression::Gzip { level: 0 },
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(
        rows[0]["payload"],
        serde_json::json!({"sensorId": 6, "currentTemperature": 64, "status": "OK"})
    );
    assert_eq!(rows[1]["payload"]["status"], "WARN");
    assert_eq!(
        rows[2]["metadata"],
        serde_json::json!({"stream": "sensors", "shard_id": SHARD, "sequence_number": "103", "partition_key": "6",
            "arrival_time": "2024-03-05T07:30:00.000Z", "file": key, "row": 3})
    );
}

#[tokio::test]
async fn same_batch_twice_leaves_exactly_the_same_objects() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-replay");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(
        &bucket,
        &[
            ("TABLE", "sensor_readings"),
            ("PARTITION_FIELD", "/sensorId"),
            ("COMPRESSION", "zstd"),
        ],
    )
    .await;
    let (a, b) = (sensor(6, 64, "OK"), sensor(7, 90, "WARN"));
    let event = kinesis_event("sensors", SHARD, &[("5", "6", &a), ("6", "7", &b)], ARRIVAL);

    o.handle_body(&event, soon()).await.unwrap();
    let first: Vec<(String, Vec<u8>)> = {
        let mut v = Vec::new();
        for k in list_keys(&s3, &bucket).await {
            let body = get_bytes(&s3, &bucket, &k).await;
            v.push((k, body));
        }
        v
    };
    o.handle_body(&event, soon()).await.unwrap();
    let keys = list_keys(&s3, &bucket).await;
    assert_eq!(
        keys,
        vec![
            "raw/sensor_readings/2024/03/05/07/sensorId=6/shardId-000000000000-5-5.ndjson.zst"
                .to_string(),
            "raw/sensor_readings/2024/03/05/07/sensorId=7/shardId-000000000000-6-6.ndjson.zst"
                .to_string(),
        ]
    );
    for (k, body) in &first {
        assert_eq!(
            &get_bytes(&s3, &bucket, k).await,
            body,
            "{k} rewritten identically"
        );
    }
    let rows = lines(&first[1].1, Compression::Zstd { level: 0 });
    assert_eq!(rows[0]["payload"]["sensorId"], 7);
}

#[tokio::test]
async fn empty_partition_values_land_in_one_object() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-empty-part");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(
        &bucket,
        &[("TABLE", "visits"), ("PARTITION_FIELD", "/city")],
    )
    .await;
    let event = kinesis_event(
        "visits",
        SHARD,
        &[
            ("11", "k", br#"{"city": "", "n": 1}"#),
            ("12", "k", br#"{"city": "Oslo", "n": 2}"#),
            ("13", "k", br#"{"city": "", "n": 3}"#),
            ("14", "k", br#"{"n": 4}"#),
            ("15", "k", br#"{"city": "", "n": 5}"#),
        ],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            outcome.records,
            outcome.quarantined,
            outcome.objects_written
        ),
        (5, 1, 3)
    );
    let empty_key = "raw/visits/2024/03/05/07/city=_empty/shardId-000000000000-11-15.ndjson.gz";
    let oslo_key = "raw/visits/2024/03/05/07/city=Oslo/shardId-000000000000-12-12.ndjson.gz";
    let quarantine_key = "errors/orchestrator/2024/03/05/07/shardId-000000000000-14-14.ndjson.gz";
    assert_eq!(
        list_keys(&s3, &bucket).await,
        vec![
            quarantine_key.to_string(),
            oslo_key.to_string(),
            empty_key.to_string()
        ]
    );
    let count = |rows: &[serde_json::Value]| {
        rows.iter()
            .map(|r| r["payload"]["n"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let gz = Compression::Gzip { level: 0 };
    assert_eq!(
        count(&lines(&get_bytes(&s3, &bucket, empty_key).await, gz)),
        [1, 3, 5]
    );
    assert_eq!(
        count(&lines(&get_bytes(&s3, &bucket, oslo_key).await, gz)),
        [2]
    );
    let rejected = lines(&get_bytes(&s3, &bucket, quarantine_key).await, gz);
    assert_eq!(
        rejected[0]["reason"],
        "partition field /city is missing or null"
    );
}

#[tokio::test]
async fn csv_routes_by_field_and_quotes_hostile_values() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-csv");
    create_bucket(&s3, &bucket).await;
    let columns = r#"{"orders":[{"name":"event_id","path":"/event_id","required":true},{"name":"customer_name","path":"/customer/name"},{"name":"total","path":"/order/total"}],
                     "clicks":[{"name":"event_id","path":"/event_id"},{"name":"page","path":"/session/page"}]}"#;
    let o = orchestrator(
        &bucket,
        &[
            ("ROUTE_FIELD", "/event_type"),
            (
                "ROUTE_MAP",
                r#"{"order_created":"orders","page_view":"clicks"}"#,
            ),
            ("FORMAT", "csv"),
            ("CSV_COLUMNS", columns),
        ],
    )
    .await;
    let order = br#"{"event_id":"e1","event_type":"order_created","customer":{"name":"O'Brien, \"Bob\"\nJr. \u00e9\u2713"},"order":{"total":12.5}}"#;
    let click = br#"{"event_id":"e2","event_type":"page_view","session":{"page":"/home"}}"#;
    let event = kinesis_event(
        "orders",
        SHARD,
        &[("10", "a", order), ("11", "b", click)],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.objects_written, 2);

    let orders_key = "raw/orders/2024/03/05/07/shardId-000000000000-10-10.csv.gz";
    let clicks_key = "raw/clicks/2024/03/05/07/shardId-000000000000-11-11.csv.gz";
    assert_eq!(
        list_keys(&s3, &bucket).await,
        vec![clicks_key.to_string(), orders_key.to_string()]
    );
    let text = String::from_utf8(
        decompress(
            Compression::Gzip { level: 0 },
            &get_bytes(&s3, &bucket, orders_key).await,
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        text,
        format!(
            "event_id,customer_name,total,stream,shard_id,sequence_number,partition_key,arrival_time,source_file,source_row\n\
             e1,\"O'Brien, \"\"Bob\"\"\nJr. é✓\",12.5,orders,{SHARD},10,a,2024-03-05T07:30:00.000Z,{orders_key},1\n"
        )
    );
}

#[tokio::test]
async fn bad_records_are_quarantined_while_good_ones_land() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-bad");
    create_bucket(&s3, &bucket).await;
    let columns = r#"[{"name":"sensorid","path":"/sensorId","required":true},{"name":"status","path":"/status"}]"#;
    let o = orchestrator(
        &bucket,
        &[
            ("TABLE", "sensor_readings"),
            ("FORMAT", "csv"),
            ("CSV_COLUMNS", columns),
        ],
    )
    .await;
    let good = sensor(6, 64, "OK");
    let binary: &[u8] = &[0xff, 0xfe, 0x00];
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("1", "k", b"not json"),
            ("2", "k", &good),
            ("3", "k", binary),
            ("4", "k", b"[1,2]"),
            ("5", "k", br#"{"status":"no id"}"#),
        ],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert!(
        response.batch_item_failures.is_empty(),
        "bad records never fail the batch"
    );
    assert_eq!((outcome.records, outcome.quarantined), (5, 4));
    // The invocation's EMF document counts what landed: 1 record in the data object, 4
    // quarantined, everything accounted for.
    let emf = outcome.metrics("Test", 1_709_623_000_000);
    assert_eq!(
        (
            emf.get("Records"),
            emf.get("RecordsInObjects"),
            emf.get("Quarantined"),
            emf.get("ObjectsWritten"),
            emf.get("ReconciliationMismatches")
        ),
        (Some(5.0), Some(1.0), Some(4.0), Some(2.0), Some(0.0))
    );

    let keys = list_keys(&s3, &bucket).await;
    let quarantine_key = "errors/orchestrator/2024/03/05/07/shardId-000000000000-1-5.ndjson.gz";
    assert_eq!(
        keys,
        vec![
            quarantine_key.to_string(),
            "raw/sensor_readings/2024/03/05/07/shardId-000000000000-2-2.csv.gz".to_string()
        ]
    );
    let rejected = lines(
        &get_bytes(&s3, &bucket, quarantine_key).await,
        Compression::Gzip { level: 0 },
    );
    let summary: Vec<(String, String)> = rejected
        .iter()
        .map(|r| {
            (
                r["metadata"]["sequence_number"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(summary[0].0, "1");
    assert!(
        summary[0].1.starts_with("payload is not valid JSON"),
        "{}",
        summary[0].1
    );
    assert_eq!(summary[1], ("3".into(), "payload is not UTF-8".into()));
    assert_eq!(
        summary[2],
        ("4".into(), "payload is JSON but not an object".into())
    );
    assert_eq!(
        summary[3],
        (
            "5".into(),
            "required field /sensorId for column sensorid is missing or null".into()
        )
    );
    assert_eq!(rejected[0]["payload"], "not json");
    assert_eq!(rejected[1]["payload_base64"], "//4A");
}

#[tokio::test]
async fn missing_bucket_reports_the_lowest_failed_sequence_number() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-missing");
    s3.list_buckets()
        .send()
        .await
        .expect("moto answers, so only the bucket is missing");
    // The bucket is never created: every put fails after the SDK's retries.
    let o = orchestrator(
        &bucket,
        &[
            ("ROUTE_FIELD", "/kind"),
            ("ROUTE_MAP", r#"{"a":"table_a","b":"table_b"}"#),
        ],
    )
    .await;
    let event = kinesis_event(
        "s",
        SHARD,
        &[
            ("900", "k", br#"{"kind":"b"}"#),
            ("901", "k", br#"{"kind":"a"}"#),
            ("1000", "k", br#"{"kind":"b"}"#),
        ],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert_eq!(outcome.objects_failed, 2);
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failures, vec!["900".to_string()]);
    assert!(s3.head_bucket().bucket(&bucket).send().await.is_err());
}

#[tokio::test]
async fn unreachable_s3_reports_a_batch_item_failure() {
    support::aws_env();
    let config = aws_sdk_s3::config::Builder::from(&support::sdk_config().await)
        .endpoint_url("http://127.0.0.1:9")
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    let env = [("RAW_BUCKET", "nowhere"), ("TABLE", "t")];
    let o = Orchestrator::new(Config::from_env(&Env::new(&env)).unwrap(), s3);
    let event = kinesis_event(
        "s",
        SHARD,
        &[("7", "k", br#"{"x":1}"#), ("8", "k", br#"{"x":2}"#)],
        ARRIVAL,
    );
    let (response, _) = o.handle_body(&event, soon()).await.unwrap();
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("7")
    );
}

#[tokio::test]
async fn a_passed_deadline_reports_the_lowest_sequence_number_and_the_retry_writes_the_same_keys() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-deadline");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(
        &bucket,
        &[
            ("ROUTE_FIELD", "/kind"),
            ("ROUTE_MAP", r#"{"a":"table_a","b":"table_b"}"#),
        ],
    )
    .await;
    let event = kinesis_event(
        "s",
        SHARD,
        &[
            ("900", "k", br#"{"kind":"b"}"#),
            ("901", "k", br#"{"kind":"a"}"#),
            ("950", "k", b"not json"),
            ("1000", "k", br#"{"kind":"b"}"#),
        ],
        ARRIVAL,
    );

    // The invocation's deadline (less the margin) has passed: nothing is put, nothing waits, and
    // Lambda is told to resend from the lowest sequence number of the unconfirmed objects.
    let started = Instant::now();
    let (response, outcome) = o.handle_body(&event, Instant::now()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    let failures: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone().unwrap())
        .collect();
    assert_eq!(failures, vec!["900".to_string()]);
    assert_eq!(
        (
            outcome.objects_written,
            outcome.objects_failed,
            outcome.objects_unconfirmed
        ),
        (0, 3, 3)
    );
    assert!(list_keys(&s3, &bucket).await.is_empty());

    // Lambda resends the batch from 900, i.e. all of it: the same keys as any other run.
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((outcome.objects_written, outcome.objects_failed), (3, 0));
    let expected = vec![
        "errors/orchestrator/2024/03/05/07/shardId-000000000000-950-950.ndjson.gz".to_string(),
        "raw/table_a/2024/03/05/07/shardId-000000000000-901-901.ndjson.gz".to_string(),
        "raw/table_b/2024/03/05/07/shardId-000000000000-900-1000.ndjson.gz".to_string(),
    ];
    assert_eq!(list_keys(&s3, &bucket).await, expected);
    let rows = lines(
        &get_bytes(&s3, &bucket, &expected[2]).await,
        Compression::Gzip { level: 0 },
    );
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn puts_that_hang_are_abandoned_at_the_deadline_and_reported() {
    // An S3 endpoint that accepts connections and never answers: without the deadline the puts
    // would wait for the SDK's timeouts and the invocation would run into Lambda's.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    support::aws_env();
    let config = aws_sdk_s3::config::Builder::from(&support::sdk_config().await)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(config);
    let env = [
        ("RAW_BUCKET", "hanging"),
        ("ROUTE_FIELD", "/kind"),
        ("ROUTE_MAP", r#"{"a":"table_a","b":"table_b"}"#),
        ("PUT_CONCURRENCY", "1"),
    ];
    let o = Orchestrator::new(Config::from_env(&Env::new(&env)).unwrap(), s3);
    let event = kinesis_event(
        "s",
        SHARD,
        &[
            ("31", "k", br#"{"kind":"b"}"#),
            ("30", "k", br#"{"kind":"a"}"#),
        ],
        ARRIVAL,
    );
    let started = Instant::now();
    let (response, outcome) = o
        .handle_body(&event, started + Duration::from_millis(500))
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // one put hung in flight, the other never started: both unconfirmed, 30 the lowest
    assert_eq!(
        (outcome.objects_failed, outcome.objects_unconfirmed),
        (2, 2)
    );
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("30")
    );
}

#[tokio::test]
async fn lambda_context_deadline_is_used_less_the_margin() {
    // DEADLINE_MARGIN_MS larger than the time left: the handler Lambda calls reports the batch
    // instead of putting anything.
    let s3 = support::s3().await;
    let bucket = support::unique("orch-ctx-deadline");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(&bucket, &[("TABLE", "t"), ("DEADLINE_MARGIN_MS", "60000")]).await;
    let body = kinesis_event("s", SHARD, &[("5", "k", br#"{"x":1}"#)], ARRIVAL);
    let mut context = lambda_runtime::Context::default();
    context.deadline = (chrono::Utc::now().timestamp_millis() + 30_000) as u64;
    let payload = serde_json::value::RawValue::from_string(body).unwrap();
    let response = o
        .handle(lambda_runtime::LambdaEvent::new(payload, context))
        .await
        .unwrap();
    assert_eq!(
        response.batch_item_failures[0].item_identifier.as_deref(),
        Some("5")
    );
    assert!(list_keys(&s3, &bucket).await.is_empty());
}

#[tokio::test]
async fn kpl_aggregates_land_as_their_records_and_a_corrupt_one_is_quarantined_whole() {
    let s3 = support::s3().await;
    let bucket = support::unique("orch-kpl");
    create_bucket(&s3, &bucket).await;
    let o = orchestrator(&bucket, &[("TABLE", "sensor_readings")]).await;
    let (a, b, c) = (
        sensor(6, 64, "OK"),
        sensor(7, 90, "WARN"),
        sensor(6, 65, "OK"),
    );
    let aggregate = shared::kinesis::kpl::aggregate(&[("6", &a[..]), ("7", &b[..]), ("6", &c[..])]);
    let mut corrupt = aggregate.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xFF;
    let d = sensor(8, 1, "OK");
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[
            ("201", "outer", &aggregate),
            ("202", "outer", &corrupt),
            ("203", "8", &d),
        ],
        ARRIVAL,
    );
    let (response, outcome) = o.handle_body(&event, soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!((outcome.records, outcome.quarantined), (5, 1));

    let data_key = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-201-203.ndjson.gz";
    let quarantine_key = "errors/orchestrator/2024/03/05/07/shardId-000000000000-202-202.ndjson.gz";
    assert_eq!(
        list_keys(&s3, &bucket).await,
        vec![quarantine_key.to_string(), data_key.to_string()]
    );
    let rows = lines(
        &get_bytes(&s3, &bucket, data_key).await,
        Compression::Gzip { level: 0 },
    );
    let lineage: Vec<(i64, &str, &str, Option<u64>)> = rows
        .iter()
        .map(|r| {
            (
                r["payload"]["sensorId"].as_i64().unwrap(),
                r["metadata"]["sequence_number"].as_str().unwrap(),
                r["metadata"]["partition_key"].as_str().unwrap(),
                r["metadata"]["sub_sequence"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        lineage,
        [
            (6, "201", "6", Some(0)),
            (7, "201", "7", Some(1)),
            (6, "201", "6", Some(2)),
            (8, "203", "8", None)
        ]
    );
    let rejected = lines(
        &get_bytes(&s3, &bucket, quarantine_key).await,
        Compression::Gzip { level: 0 },
    );
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0]["reason"],
        "KPL aggregated record fails its MD5 check"
    );
    use base64::Engine as _;
    assert_eq!(
        rejected[0]["payload_base64"],
        base64::engine::general_purpose::STANDARD.encode(&corrupt)
    );
}
