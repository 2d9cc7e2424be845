//! Shared set-up for the end-to-end tests: endpoints of the local stack, AWS clients, fixtures.

#![allow(dead_code)]

use std::sync::Once;

pub fn moto_url() -> String {
    std::env::var("MOTO_URL").unwrap_or_else(|_| "http://127.0.0.1:4566".into())
}

pub fn snowflake_url() -> String {
    std::env::var("LOCAL_SF_URL").unwrap_or_else(|_| "http://127.0.0.1:8787".into())
}

/// The repository root, for fixtures such as the test key pair.
pub fn repo_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

static AWS_ENV: Once = Once::new();

/// Points the AWS SDK at moto for this test process, as `make test` and the Lambda would.
pub fn aws_env() {
    AWS_ENV.call_once(|| {
        // Set once before any client is built; the SDK reads these itself.
        std::env::set_var("AWS_ENDPOINT_URL", moto_url());
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::remove_var("AWS_PROFILE");
    });
}

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_env();
    shared::aws::load_config().await
}

pub async fn s3() -> aws_sdk_s3::Client {
    shared::aws::s3_client(&sdk_config().await)
}

/// A bucket name unique to one test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) {
    s3.create_bucket()
        .bucket(name)
        .send()
        .await
        .expect("create bucket on moto");
}

/// Every key in a bucket, sorted.
pub async fn list_keys(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    keys.sort();
    keys
}

pub async fn get_object(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> aws_sdk_s3::operation::get_object::GetObjectOutput {
    s3.get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("get object")
}

pub async fn get_bytes(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    get_object(s3, bucket, key)
        .await
        .body
        .collect()
        .await
        .expect("read body")
        .into_bytes()
        .to_vec()
}

/// A Kinesis event as Lambda delivers it, for records `(sequence number, partition key, payload)`.
pub fn kinesis_event(
    stream: &str,
    shard: &str,
    records: &[(&str, &str, &[u8])],
    arrival_secs: f64,
) -> String {
    use base64::Engine as _;
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|(seq, pk, data)| {
            serde_json::json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": pk,
                    "sequenceNumber": seq,
                    "data": base64::engine::general_purpose::STANDARD.encode(data),
                    "approximateArrivalTimestamp": arrival_secs,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard}:{seq}"),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/lambda-role",
                "awsRegion": "us-east-1",
                "eventSourceARN": format!("arn:aws:kinesis:us-east-1:123456789012:stream/{stream}"),
            })
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}
