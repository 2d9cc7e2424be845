//! Quarantine objects of the two Kinesis functions: fed the same batch, as both are on the same
//! stream, and configured with the same error prefix, as template.yaml deploys them, they leave
//! one quarantine object each instead of overwriting each other's.

use std::time::{Duration, Instant};

use shared::config::Env;

use crate::support::{self, kinesis_event, list_keys};

const SHARD: &str = "shardId-000000000000";
/// 2024-11-21T14:40:00Z.
const ARRIVAL: f64 = 1_732_200_000.0;

const SENSORS: &str = r#"{"sensor_readings":{"table":"SENSOR_READINGS","keys":["sensorid"],"columns":[
    {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
    {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
    {"name":"status","path":"/status","type":"TEXT"}]}}"#;

#[tokio::test]
async fn orchestrator_and_upsert_keep_separate_quarantine_objects_for_the_same_batch() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("QUARANTINE", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("quarantine-both");
    support::create_bucket(&s3, &bucket).await;

    let good = br#"{"sensorId": 6, "currentTemperature": 64, "status": "OK"}"#;
    let event = kinesis_event(
        "sensors",
        SHARD,
        &[("1", "k", good), ("2", "k", b"not json")],
        ARRIVAL,
    );

    let orchestrator_vars = [
        ("RAW_BUCKET", bucket.as_str()),
        ("ERROR_PREFIX", "errors"),
        ("TABLE", "sensor_readings"),
    ];
    let orchestrator = orchestrator::Orchestrator::new(
        orchestrator::Config::from_env(&Env::new(&orchestrator_vars)).unwrap(),
        s3.clone(),
    );
    let (response, outcome) = orchestrator
        .handle_body(&event, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((outcome.records, outcome.quarantined), (2, 1));

    let mut upsert_vars = support::snowflake_vars(&db, "S");
    for (k, v) in [
        ("ERROR_BUCKET", bucket.as_str()),
        ("ERROR_PREFIX", "errors"),
        ("TABLE", "sensor_readings"),
        ("UPSERT_TABLES", SENSORS),
    ] {
        upsert_vars.push((k.into(), v.into()));
    }
    let mut config = upsert::Config::from_env(&Env::new(&support::as_pairs(&upsert_vars))).unwrap();
    config.snowflake.retry = support::fast_retries();
    let client = shared::snowflake::SnowflakeClient::new(config.snowflake.clone(), None)
        .await
        .unwrap();
    let upsert = upsert::Upsert::new(config, client, s3.clone());
    let (response, outcome) = upsert
        .handle_body(&event, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((outcome.records, outcome.quarantined), (2, 1));

    let orchestrator_key = "errors/orchestrator/2024/11/21/14/shardId-000000000000-2-2.ndjson.gz";
    let upsert_key = "errors/upsert/2024/11/21/14/shardId-000000000000-2-2.ndjson.gz";
    assert_eq!(
        list_keys(&s3, &bucket).await,
        vec![
            orchestrator_key.to_string(),
            upsert_key.to_string(),
            "raw/sensor_readings/2024/11/21/14/shardId-000000000000-1-1.ndjson.gz".to_string(),
        ]
    );
    for key in [orchestrator_key, upsert_key] {
        let lines = support::rejected_lines(&s3, &bucket, key).await;
        assert_eq!(lines.len(), 1, "{key}");
        assert_eq!(lines[0]["payload"], "not json", "{key}");
        assert_eq!(lines[0]["metadata"]["sequence_number"], "2", "{key}");
        assert!(
            lines[0]["reason"]
                .as_str()
                .unwrap()
                .starts_with("payload is not valid JSON"),
            "{key}: {}",
            lines[0]["reason"]
        );
    }
}
