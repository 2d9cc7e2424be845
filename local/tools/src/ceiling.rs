//! The local Snowflake service's own ceiling, with its timing model off: how many SQL statements
//! and Snowpipe Streaming appends a second it sustains on this machine. The load test prints it
//! first, so its numbers can be read against it: a run far below the ceiling measures the modelled
//! Snowflake, not the stand-in.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::snowflake::streaming::StreamingClient;
use shared::snowflake::{Binding, SnowflakeClient, Statement};

/// What the service sustained.
#[derive(Debug, Clone, Copy)]
pub struct Ceiling {
    /// Single-row INSERT statements a second, from [`STATEMENT_CLIENTS`] clients at once.
    pub statements_per_sec: f64,
    /// Streaming appends (of [`ROWS_PER_APPEND`] rows) a second, accepted and committed, from
    /// [`CHANNELS`] channels at once, each within Snowflake's 10 requests a second per channel.
    pub appends_per_sec: f64,
}

/// Concurrent SQL clients.
pub const STATEMENT_CLIENTS: usize = 16;
/// Concurrent channels.
pub const CHANNELS: usize = 16;
/// Rows per append, as the upsert's batches of 100.
pub const ROWS_PER_APPEND: usize = 100;
const TABLE: &str = "CEILING";

/// Measures for `seconds` each, with the service's timing model switched off meanwhile (and
/// back to what it was after).
pub async fn measure(
    client: &SnowflakeClient,
    service_url: &str,
    (database, schema): (&str, &str),
    seconds: u64,
) -> Result<Ceiling, String> {
    let was = timing_model(service_url).await?;
    set_timing_model(service_url, "off").await?;
    let result = measure_both(
        client,
        service_url,
        (database, schema),
        Duration::from_secs(seconds),
    )
    .await;
    set_timing_model(service_url, &was).await?;
    result
}

async fn measure_both(
    client: &SnowflakeClient,
    service_url: &str,
    (database, schema): (&str, &str),
    span: Duration,
) -> Result<Ceiling, String> {
    let create = format!("CREATE TABLE IF NOT EXISTS {TABLE} (ID NUMBER, NOTE VARCHAR)");
    crate::loadtest::execute_each(client, [create]).await?;
    let statements = insert_rate(client, span).await?;
    let appends = append_rate(client, service_url, (database, schema), span).await?;
    Ok(Ceiling {
        statements_per_sec: statements,
        appends_per_sec: appends,
    })
}

/// INSERTs a second, [`STATEMENT_CLIENTS`] clients inserting one row per statement.
async fn insert_rate(client: &SnowflakeClient, span: Duration) -> Result<f64, String> {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..STATEMENT_CLIENTS)
        .map(|i| {
            let (client, done) = (client.clone(), done.clone());
            tokio::spawn(async move {
                let sql = format!("INSERT INTO {TABLE} (ID, NOTE) VALUES (?, 'ceiling')");
                while started.elapsed() < span {
                    let st = Statement::new(sql.clone()).bind(Binding::int(i as i64));
                    client
                        .execute(&st, Instant::now() + Duration::from_secs(60))
                        .await
                        .map_err(|e| e.to_string())?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// Appends a second, [`CHANNELS`] channels of the table's default pipe appending in turn.
async fn append_rate(
    client: &SnowflakeClient,
    service_url: &str,
    (database, schema): (&str, &str),
    span: Duration,
) -> Result<f64, String> {
    let committed_before = committed(service_url).await?;
    let streaming = Arc::new(StreamingClient::new(client));
    let rows: Arc<Vec<u8>> = Arc::new(
        (0..ROWS_PER_APPEND)
            .map(|i| format!("{{\"ID\":{i},\"NOTE\":\"ceiling\"}}\n"))
            .collect::<String>()
            .into_bytes(),
    );
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let pipe = format!("{TABLE}-STREAMING");
    let tasks: Vec<_> = (0..CHANNELS)
        .map(|i| {
            let (streaming, rows, done) = (streaming.clone(), rows.clone(), done.clone());
            let (database, schema, pipe) = (database.to_string(), schema.to_string(), pipe.clone());
            tokio::spawn(async move {
                let deadline = || Instant::now() + Duration::from_secs(60);
                let name = format!("CEILING_{i}");
                let mut channel = streaming
                    .open_channel(&database, &schema, &pipe, &name, deadline())
                    .await
                    .map_err(|e| e.to_string())?;
                let mut n = 0u64;
                while started.elapsed() < span {
                    let turn = Instant::now();
                    let (start, end) = ((n * 2).to_string(), (n * 2 + 1).to_string());
                    streaming
                        .append(&mut channel, &rows, (&start, &end), deadline())
                        .await
                        .map_err(|e| e.to_string())?;
                    done.fetch_add(1, Ordering::Relaxed);
                    n += 1;
                    // Snowflake's limit: 10 requests a second per channel.
                    tokio::time::sleep(Duration::from_millis(101).saturating_sub(turn.elapsed()))
                        .await;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let appended = done.load(Ordering::Relaxed);
    // Accepted is not committed: the rate counts until the last append committed (or 120 s).
    while committed(service_url).await? < committed_before + appended
        && started.elapsed() < span + Duration::from_secs(120)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(appended as f64 / started.elapsed().as_secs_f64())
}

/// Appends the service has committed so far (`/admin/stats`).
async fn committed(service_url: &str) -> Result<u64, String> {
    Ok(stats(service_url).await?["streaming"]["appends_committed"]
        .as_u64()
        .unwrap_or(0))
}

/// The local service's `/admin/stats`.
pub(crate) async fn stats(service_url: &str) -> Result<serde_json::Value, String> {
    let body = reqwest::get(format!("{service_url}/admin/stats"))
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// The service's timing model now (`off` or `snowflake`), from `/admin/stats`.
pub async fn timing_model(service_url: &str) -> Result<String, String> {
    Ok(stats(service_url).await?["timing"]["model"]
        .as_str()
        .unwrap_or("off")
        .to_string())
}

async fn set_timing_model(service_url: &str, model: &str) -> Result<(), String> {
    let resp = reqwest::Client::new()
        .post(format!("{service_url}/admin/config"))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "timing_model": model }).to_string())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!(
            "/admin/config timing_model={model}: {}",
            resp.status()
        ));
    }
    Ok(())
}
