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

/// The local Snowflake service's fault injection and settings are global: a test that arms a
/// fault holds this exclusively, every other test that talks to the service holds it shared, so
/// no test ever consumes another's fault.
static SNOWFLAKE_STATE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

pub async fn snowflake_shared() -> tokio::sync::RwLockReadGuard<'static, ()> {
    SNOWFLAKE_STATE.read().await
}

pub async fn snowflake_exclusive() -> tokio::sync::RwLockWriteGuard<'static, ()> {
    SNOWFLAKE_STATE.write().await
}

/// The fixture private key the local service trusts (account LOCALTEST, user LOADER).
pub fn snowflake_key_file() -> String {
    repo_root()
        .join("local/keys/snowflake_test_key.p8")
        .display()
        .to_string()
}

/// The Snowflake variables a function reads, for the local service, `database` and `schema`.
pub fn snowflake_vars(database: &str, schema: &str) -> Vec<(String, String)> {
    [
        ("SNOWFLAKE_ACCOUNT", "localtest".to_string()),
        ("SNOWFLAKE_USER", "loader".to_string()),
        ("SNOWFLAKE_URL", snowflake_url()),
        ("SNOWFLAKE_DATABASE", database.to_string()),
        ("SNOWFLAKE_SCHEMA", schema.to_string()),
        ("SNOWFLAKE_PRIVATE_KEY_FILE", snowflake_key_file()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Borrowed view of owned variables, for `Env::new`.
pub fn as_pairs(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// A client for the local service in `database`.`schema`, with fast retries for tests.
pub async fn snowflake_client(database: &str, schema: &str) -> shared::snowflake::SnowflakeClient {
    let vars = snowflake_vars(database, schema);
    let mut config =
        shared::snowflake::SnowflakeConfig::from_env(&shared::config::Env::new(&as_pairs(&vars)))
            .expect("snowflake config");
    config.retry = fast_retries();
    shared::snowflake::SnowflakeClient::new(config, None)
        .await
        .expect("client")
}

pub fn fast_retries() -> shared::snowflake::RetryPolicy {
    use std::time::Duration;
    shared::snowflake::RetryPolicy {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
        poll_initial: Duration::from_millis(20),
        poll_max: Duration::from_millis(200),
        ..shared::snowflake::RetryPolicy::default()
    }
}

/// A new database with schema `S` on the local service; returns its name.
pub async fn fresh_database(prefix: &str) -> String {
    let db = format!(
        "{prefix}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
    .to_uppercase();
    let boot = snowflake_client(&db, "PUBLIC").await;
    sql(&boot, &format!("CREATE DATABASE IF NOT EXISTS {db}")).await;
    sql(&boot, &format!("CREATE SCHEMA IF NOT EXISTS {db}.S")).await;
    db
}

/// The change tables and latest-state Dynamic Tables of a streaming-mode `config`, made with the
/// statements `bootstrap --streaming` applies.
pub async fn streaming_objects(
    client: &shared::snowflake::SnowflakeClient,
    config: &upsert::Config,
) {
    for (_, statement) in tools::bootstrap::streaming_statements(config).expect("streaming mode") {
        sql(client, &statement).await;
    }
}

/// Runs one statement, panicking with the SQL on failure.
pub async fn sql(
    client: &shared::snowflake::SnowflakeClient,
    text: &str,
) -> shared::snowflake::QueryResult {
    client
        .execute(
            &shared::snowflake::Statement::new(text),
            std::time::Instant::now() + std::time::Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Rows of a query as strings (NULL as `None`).
pub async fn rows(
    client: &shared::snowflake::SnowflakeClient,
    text: &str,
) -> Vec<Vec<Option<String>>> {
    sql(client, text).await.rows
}

pub async fn snowflake_admin(path: &str, body: serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", snowflake_url()))
        .json(&body)
        .send()
        .await
        .expect("admin request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

pub async fn snowflake_stats() -> serde_json::Value {
    reqwest::get(format!("{}/admin/stats", snowflake_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON")
}

/// Disarms every fault (a count of 0 clears all kinds).
pub async fn clear_faults() {
    snowflake_admin(
        "/admin/faults",
        serde_json::json!({"status": 503, "delay_ms": 0, "drop_connection": true, "count": 0}),
    )
    .await;
    // The streaming referee's armed faults, every scope.
    snowflake_admin(
        "/admin/faults",
        serde_json::json!({"streaming_status": 503, "streaming_drop_connection": true, "count": 0}),
    )
    .await;
}

/// A fresh database (schema `S`) on the local service with `sql/` applied (profile local), its
/// stage `RAW_STAGE` pointing at `stage_url` (e.g. `s3://bucket/raw/`); returns the database
/// name. Callers hold [`snowflake_shared`] (do not take it again here: the lock is fair, so a
/// second read could wait behind a queued writer forever).
pub async fn bootstrapped_database(prefix: &str, stage_url: &str) -> String {
    let db = fresh_database(prefix).await;
    let client = snowflake_client(&db, "S").await;
    let vars: std::collections::HashMap<String, String> = [
        ("DATABASE", db.as_str()),
        ("SCHEMA", "S"),
        ("STAGE_URL", stage_url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    tools::bootstrap::apply_dir(
        &client,
        &repo_root().join("sql"),
        tools::bootstrap::Profile::Local,
        &vars,
    )
    .await
    .unwrap_or_else(|e| panic!("bootstrap of {db}: {e}"));
    db
}

/// The lines of a quarantine object (gzip NDJSON), parsed.
pub async fn rejected_lines(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Vec<serde_json::Value> {
    use shared::rawzone::encode::{decompress, Compression};
    let body = get_bytes(s3, bucket, key).await;
    let text =
        String::from_utf8(decompress(Compression::Gzip { level: 0 }, &body).unwrap()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
