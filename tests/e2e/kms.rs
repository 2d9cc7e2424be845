//! Objects the functions put are encrypted with the customer-managed key `KMS_KEY_ID` names
//! (`ServerSideEncryption=aws:kms`, `SSEKMSKeyId`, bucket key on), and with the bucket's default
//! without it. moto records the headers but, unlike S3, does not check that the key exists.

use std::time::{Duration, Instant};

use orchestrator::{Config, Orchestrator};
use shared::config::Env;

use crate::support::{self, create_bucket, kinesis_event, list_keys};

const KEY: &str = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";

/// Puts one good and one bad record through the orchestrator; returns the bucket's keys.
async fn write_batch(bucket: &str, kms: Option<&str>) -> Vec<String> {
    let s3 = support::s3().await;
    create_bucket(&s3, bucket).await;
    let mut vars = vec![("RAW_BUCKET", bucket), ("TABLE", "sensor_readings")];
    vars.extend(kms.map(|k| ("KMS_KEY_ID", k)));
    let config = Config::from_env(&Env::new(&vars)).expect("valid configuration");
    let o = Orchestrator::new(config, s3.clone());
    let good = br#"{"sensorId": 6, "status": "OK"}"#;
    let event = kinesis_event(
        "sensors",
        "shardId-000000000000",
        &[("1", "k", good), ("2", "k", b"not json")],
        1_709_623_800.0,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let (response, outcome) = o.handle_body(&event, deadline).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!((outcome.records, outcome.quarantined), (2, 1));
    list_keys(&s3, bucket).await
}

#[tokio::test]
async fn raw_zone_and_quarantine_objects_are_encrypted_with_the_configured_key() {
    let s3 = support::s3().await;
    let bucket = support::unique("kms-on");
    let keys = write_batch(&bucket, Some(KEY)).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(
        keys.iter().any(|k| k.starts_with("raw/"))
            && keys.iter().any(|k| k.starts_with("errors/orchestrator/"))
    );
    for key in &keys {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
        assert_eq!(head.ssekms_key_id(), Some(KEY), "{key}");
        assert_eq!(head.bucket_key_enabled(), Some(true), "{key}");
    }
}

#[tokio::test]
async fn without_a_key_objects_take_the_bucket_default() {
    let s3 = support::s3().await;
    let bucket = support::unique("kms-off");
    for key in write_batch(&bucket, None).await {
        let head = s3
            .head_object()
            .bucket(&bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(head.ssekms_key_id(), None, "{key}");
        assert_ne!(
            head.server_side_encryption(),
            Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
            "{key}"
        );
    }
}
