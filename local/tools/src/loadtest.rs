//! `make loadtest`: the upsert in `merge` and in `streaming` mode against streams of 1, 4, 16 and
//! 32 shards, one invocation per shard at a time as Lambda runs them, on the local stack. The
//! point is the contrast the local service makes visible: MERGEs on one table queue behind its
//! lock and are aborted past 20 waiters (`000625`), Snowpipe Streaming appends take no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::snowflake::{SnowflakeClient, Statement};
use upsert::changes::{change_table_ddl, latest_ddl, ChangeObjects};

use crate::demo::{bootstrapped_database, upsert_config, LocalSnowflake, SENSOR_TABLES};
use crate::esm::{self, Counters, KinesisInvoke, KinesisSettings, KinesisSource};
use crate::loadgen::{self, Generator, Template};

/// What the load test runs: the shard counts, the load per run, and the local stack.
#[derive(Debug, Clone)]
pub struct LoadTestOptions {
    /// The shard counts to try; each gets a merge run and a streaming run on a new stream.
    pub shards: Vec<i32>,
    /// Sensor readings put per run.
    pub records: u64,
    /// Distinct sensors, i.e. rows the target ends with.
    pub keys: u64,
    /// Most records per invocation, as the mapping's `BatchSize`.
    pub batch_size: usize,
    /// The local Snowflake emulator's SQL API; its `/admin/stats` counts the lock aborts.
    pub snowflake_url: String,
    /// The key the Snowflake client signs its JWTs with.
    pub key_file: String,
    /// The AWS region of the local stack.
    pub region: String,
    /// The `sql/` folder applied to each run's new database.
    pub sql_dir: std::path::PathBuf,
}

/// One run's numbers.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The stream's shard count.
    pub shards: i32,
    /// The upsert's write mode: `merge` or `streaming`.
    pub mode: &'static str,
    /// Records put to the stream.
    pub records: u64,
    /// From the mapping's start until every record was finished (or it gave up).
    pub seconds: f64,
    /// Arrival in Kinesis → the invocation that landed it returned, per record.
    pub p50_ms: u64,
    /// The 99th percentile of the same latency.
    pub p99_ms: u64,
    /// Statements (MERGEs, or streaming appends) the invocations ran.
    pub statements: u64,
    /// MERGEs the local service aborted for queueing behind a table lock (`000625`).
    pub lock_aborts: u64,
    /// Batches the mapping resent after a failed invocation.
    pub retries: u64,
    /// Rows in the target (merge) or the latest-state view (streaming) at the end.
    pub rows: u64,
}

impl RunReport {
    /// The run's throughput, put to finished.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// Runs merge mode, then streaming mode, at every shard count, printing a line per run under
/// [`print_header`]; returns the runs' numbers.
pub async fn run(opts: LoadTestOptions) -> Result<Vec<RunReport>, String> {
    let mut reports = Vec::new();
    for &shards in &opts.shards {
        for mode in ["merge", "streaming"] {
            let report = run_one(&opts, shards, mode).await?;
            println!(
                "{:>6} {:>9} {:>10.0} {:>8} {:>8} {:>10} {:>11} {:>7}",
                report.shards,
                report.mode,
                report.records_per_sec(),
                report.p50_ms,
                report.p99_ms,
                report.statements,
                report.lock_aborts,
                report.retries
            );
            reports.push(report);
        }
    }
    Ok(reports)
}

/// The column headings of the lines [`run`] prints.
pub fn print_header() {
    println!(
        "{:>6} {:>9} {:>10} {:>8} {:>8} {:>10} {:>11} {:>7}",
        "shards", "mode", "records/s", "p50 ms", "p99 ms", "statements", "lock aborts", "retries"
    );
}

async fn run_one(
    opts: &LoadTestOptions,
    shards: i32,
    mode: &'static str,
) -> Result<RunReport, String> {
    let setup = RunSetup::new(opts, shards, mode).await?;
    let mut generator = Generator::new(Template::Sensor, shards as u64, opts.keys);
    loadgen::run(
        &setup.source.kinesis,
        &setup.source.stream,
        &mut generator,
        opts.records,
        0,
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;

    let aborts_before = lock_aborts(&opts.snowflake_url).await;
    let latencies = Arc::new(Mutex::new(Vec::<u64>::with_capacity(opts.records as usize)));
    let statements = Arc::new(AtomicU64::new(0));
    let invoke = measuring(setup.upsert, latencies.clone(), statements.clone());
    let (seconds, counters) = drain(setup.source, opts, mode, invoke).await?;
    if mode != "merge" {
        // The Dynamic Table refreshes on Snowflake's schedule (within TARGET_LAG); the count
        // wants every change that landed, so refresh it now as a user would.
        let refresh = format!("ALTER DYNAMIC TABLE {} REFRESH", setup.rows_in);
        execute_each(&setup.client, [refresh]).await?;
    }
    let rows = count_rows(&setup.client, &setup.rows_in).await?;
    let mut l = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    l.sort_unstable();
    let pct = |p: f64| percentile(&l, p);
    Ok(RunReport {
        shards,
        mode,
        records: opts.records,
        seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        statements: statements.load(Ordering::Relaxed),
        lock_aborts: lock_aborts(&opts.snowflake_url)
            .await
            .saturating_sub(aborts_before),
        retries: counters.retries.load(Ordering::SeqCst),
        rows,
    })
}

/// One run's own resources on the local stack, named by mode, shard count and start time.
struct RunSetup {
    /// A new stream of the run's shard count.
    source: KinesisSource,
    /// A new database with `sql/` applied.
    client: SnowflakeClient,
    /// Configured for the run's mode, quarantining to a new bucket.
    upsert: Arc<upsert::Upsert>,
    /// Where the rows are counted at the end.
    rows_in: String,
}

impl RunSetup {
    async fn new(opts: &LoadTestOptions, shards: i32, mode: &str) -> Result<Self, String> {
        let suffix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let stream = format!("loadtest-{mode}-{shards}-{suffix}");
        let database = format!("LOADTEST_{}_{shards}_{suffix}", mode.to_uppercase());
        let bucket = format!("loadtest-errors-{suffix}");
        let aws = shared::aws::load_config().await;
        let kinesis = aws_sdk_kinesis::Client::new(&aws);
        let sqs = aws_sdk_sqs::Client::new(&aws);
        let s3 = shared::aws::s3_client(&aws);
        esm::ensure_stream(&kinesis, &stream, shards)
            .await
            .map_err(|e| e.to_string())?;
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| format!("create bucket: {e}"))?;

        let (client, snowflake_vars, _) = bootstrapped_database(
            &LocalSnowflake {
                url: &opts.snowflake_url,
                key_file: &opts.key_file,
                sql_dir: &opts.sql_dir,
            },
            &database,
            "LOAD",
            &format!("s3://{bucket}/raw/"),
        )
        .await?;
        let config = upsert_config(
            &snowflake_vars,
            &[
                ("TABLE", "sensor_readings"),
                ("UPSERT_TABLES", SENSOR_TABLES),
                ("ERROR_BUCKET", &bucket),
                ("WRITE_MODE", mode),
            ],
        )?;
        let rows_in = prepare_tables(&client, &config, "sensor_readings", mode).await?;
        let upsert = Arc::new(upsert::Upsert::new(config, client.clone(), s3));
        Ok(Self {
            source: KinesisSource {
                kinesis,
                sqs,
                region: opts.region.clone(),
                stream,
            },
            client,
            upsert,
            rows_in,
        })
    }
}

/// Creates what streaming mode writes through for `table`'s mapping; returns where the run's rows end up: the target
/// table (merge) or the latest-state view (streaming).
pub(crate) async fn prepare_tables(
    client: &SnowflakeClient,
    config: &upsert::Config,
    table: &str,
    mode: &str,
) -> Result<String, String> {
    let mapping = config
        .tables
        .get(table)
        .ok_or_else(|| format!("no {table} mapping"))?;
    let objects = ChangeObjects::of(mapping, "_CHANGES", "_LATEST");
    if mode == "streaming" {
        // The change table and the latest-state Dynamic Table streaming mode writes through.
        execute_each(
            client,
            [
                change_table_ddl(mapping, &objects),
                latest_ddl(mapping, &objects, "1 minute", "COMPUTE_WH"),
            ],
        )
        .await?;
    }
    Ok(if mode == "merge" {
        mapping.target.clone()
    } else {
        objects.latest
    })
}

/// Runs the mapping until it has finished `opts.records` records (or stopped, or 600 s passed);
/// returns the seconds that took and the mapping's counters.
async fn drain(
    source: KinesisSource,
    opts: &LoadTestOptions,
    mode: &str,
    invoke: KinesisInvoke,
) -> Result<(f64, Arc<Counters>), String> {
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let task = tokio::spawn(esm::run_kinesis(
        source,
        KinesisSettings {
            function: format!("upsert-{mode}"),
            batch_size: opts.batch_size,
            batching_window: Duration::from_millis(200),
            max_retries: 1_000,
            on_failure_queue: None,
        },
        invoke,
        counters.clone(),
        stop.clone(),
    ));
    while counters.done.load(Ordering::SeqCst) < opts.records {
        if task.is_finished() || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    task.await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok((seconds, counters))
}

/// The upsert as the mapping invokes it, recording each delivered record's latency (from its
/// arrival on the stream) and the statements each invocation ran.
fn measuring(
    upsert: Arc<upsert::Upsert>,
    latencies: Arc<Mutex<Vec<u64>>>,
    statements: Arc<AtomicU64>,
) -> KinesisInvoke {
    Arc::new(move |body: String| {
        let (upsert, latencies, statements) =
            (upsert.clone(), latencies.clone(), statements.clone());
        Box::pin(async move {
            let result = upsert
                .handle_body(&body, Instant::now() + Duration::from_secs(120))
                .await
                .map_err(|e| e.to_string())?;
            let (response, outcome) = result;
            statements.fetch_add(
                outcome.tables.values().map(|t| t.statements as u64).sum(),
                Ordering::Relaxed,
            );
            if response.batch_item_failures.is_empty() {
                record_latencies(&body, &latencies);
            }
            Ok(response)
        })
    })
}

/// Adds the latency of every record of the event `body`, arrival to now.
fn record_latencies(body: &str, latencies: &Mutex<Vec<u64>>) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as f64)
        .unwrap_or(0.0);
    let event: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner());
    for r in event["Records"].as_array().into_iter().flatten() {
        let arrival = r["kinesis"]["approximateArrivalTimestamp"]
            .as_f64()
            .unwrap_or(0.0);
        l.push((now_ms - arrival * 1000.0).max(0.0) as u64);
    }
}

/// Runs `statements` in order, stopping at the first failure.
async fn execute_each(
    client: &SnowflakeClient,
    statements: impl IntoIterator<Item = String>,
) -> Result<(), String> {
    for sql in statements {
        client
            .execute(
                &Statement::new(sql),
                Instant::now() + Duration::from_secs(60),
            )
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

async fn count_rows(client: &SnowflakeClient, target: &str) -> Result<u64, String> {
    Ok(client
        .execute(
            &Statement::new(format!("SELECT COUNT(*) FROM {target}")),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())?
        .rows
        .first()
        .and_then(|r| r[0].as_deref().and_then(|v| v.parse().ok()))
        .unwrap_or(0))
}

/// The `p` quantile of `sorted` (0 when empty).
fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

async fn lock_aborts(snowflake_url: &str) -> u64 {
    let Ok(resp) = reqwest_get(&format!("{snowflake_url}/admin/stats")).await else {
        return 0;
    };
    resp["table_locks"]["aborts"].as_u64().unwrap_or(0)
}

async fn reqwest_get(url: &str) -> Result<serde_json::Value, String> {
    let body = reqwest::get(url)
        .await
        .map_err(|e| e.to_string())?
        .text()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&body).map_err(|e| e.to_string())
}
