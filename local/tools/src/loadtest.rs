//! `make loadtest`: the upsert in `merge` and in `streaming` mode against streams of 1, 4, 16 and
//! 32 shards, one invocation per shard at a time as Lambda runs them, on the local stack with its
//! Snowflake timing model on (`LOCAL_SF_TIMING_MODEL=snowflake`, local/warehouse_timing.py). What
//! it shows: MERGEs on one table queue behind its lock (and are aborted past 20 waiters,
//! `000625`), so merge mode's throughput is capped whatever the shard count; Snowpipe Streaming
//! appends take no lock and commit in parallel per channel, so streaming mode's throughput grows
//! with shards, each batch waiting out the ingest latency. Every record is checked to land
//! exactly once, and the numbers are drawn as an SVG.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::lineage::table::{SEQUENCE_NUMBER, SHARD_ID};
use shared::snowflake::{SnowflakeClient, Statement};
use upsert::changes::ChangeObjects;

use crate::ceiling::Ceiling;
use crate::demo::{bootstrapped_database, upsert_config, LocalSnowflake, SENSOR_TABLES};
use crate::esm::{self, Counters, KinesisInvoke, KinesisSettings, KinesisSource};
use crate::loadgen::{self, Generator, Template};
use crate::svg::{side_by_side, Chart, Series};
use crate::visibility::{PutRecord, Watch};

/// What the load test runs: the shard counts, the load per run, and the local stack.
#[derive(Debug, Clone)]
pub struct LoadTestOptions {
    /// The shard counts to try; each gets a streaming run and a merge run on a new stream.
    pub shards: Vec<i32>,
    /// Records put per shard in a run...
    pub records_per_shard: u64,
    /// ...but at most this many per run.
    pub max_records: u64,
    /// Distinct sensors the records are spread over.
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

impl LoadTestOptions {
    /// Records put in a run on `shards` shards.
    pub fn records(&self, shards: i32) -> u64 {
        (self.records_per_shard * shards.max(1) as u64).min(self.max_records)
    }
}

/// Put → visible latency percentiles in one table, ms (None when nothing showed).
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    /// Median.
    pub p50_ms: Option<u64>,
    /// 99th percentile.
    pub p99_ms: Option<u64>,
}

impl Latency {
    fn of(mut ms: Vec<u64>) -> Self {
        ms.sort_unstable();
        let pct = |p: f64| {
            ms.get(((ms.len() as f64 * p) as usize).min(ms.len().saturating_sub(1)))
                .copied()
        };
        Self {
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    }
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
    /// From the mapping's start until every record was visible in the target (merge) or the
    /// change table (streaming).
    pub seconds: f64,
    /// Put → visible in the target (merge) or the change table (streaming).
    pub visible: Latency,
    /// Put → visible in the latest-state Dynamic Table (streaming only).
    pub latest: Option<Latency>,
    /// MERGEs the local service aborted for queueing behind a table lock (`000625`).
    pub lock_aborts: u64,
    /// Batches the mapping resent after a failed invocation.
    pub retries: u64,
    /// Invocations' durations as Lambda bills them (each rounded up to 1 ms), per record.
    pub billed_ms_per_record: f64,
}

impl RunReport {
    /// The run's throughput, mapping start to the last record visible.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }
}

/// Runs streaming mode, then merge mode, at every shard count; returns the runs' numbers once
/// every streaming run's latest-state table has shown its records (each waits out its refresh
/// in the background while the next runs go on). Fails when a record did not land exactly once.
pub async fn run(opts: LoadTestOptions) -> Result<Vec<RunReport>, String> {
    let mut reports = Vec::new();
    let mut latest_checks = Vec::new();
    for &shards in &opts.shards {
        for mode in ["streaming", "merge"] {
            let (report, latest) = run_one(&opts, shards, mode).await?;
            eprintln!(
                "  {shards:>2} shards {mode:>9}: {:.0} records/s",
                report.records_per_sec()
            );
            if let Some(check) = latest {
                latest_checks.push((reports.len(), check));
            }
            reports.push(report);
        }
    }
    for (i, check) in latest_checks {
        let latency = check.await.map_err(|e| e.to_string())??;
        reports[i].latest = Some(latency);
    }
    Ok(reports)
}

/// The column headings of [`print_report`]'s lines.
pub fn print_header() {
    println!(
        "{:>6} {:>9} {:>7} {:>9} {:>15} {:>15} {:>15} {:>6} {:>7} {:>10}",
        "shards",
        "mode",
        "records",
        "records/s",
        "visible p50/p99",
        "changes p50/p99",
        "latest p50/p99",
        "aborts",
        "retries",
        "billed ms/rec"
    );
}

/// One line of the report table (latencies in seconds).
pub fn print_report(r: &RunReport) {
    let secs = |l: &Latency| {
        let s = |v: Option<u64>| v.map_or("-".into(), |ms| format!("{:.1}", ms as f64 / 1000.0));
        format!("{}/{} s", s(l.p50_ms), s(l.p99_ms))
    };
    let (target, changes) = if r.mode == "merge" {
        (secs(&r.visible), "-".to_string())
    } else {
        ("-".to_string(), secs(&r.visible))
    };
    println!(
        "{:>6} {:>9} {:>7} {:>9.0} {:>15} {:>15} {:>15} {:>6} {:>7} {:>10.1}",
        r.shards,
        r.mode,
        r.records,
        r.records_per_sec(),
        target,
        changes,
        r.latest.as_ref().map_or("-".into(), secs),
        r.lock_aborts,
        r.retries,
        r.billed_ms_per_record
    );
}

/// The latest-state table's check, finishing in the background: its latency, or why a record
/// did not land exactly once.
type LatestCheck = tokio::task::JoinHandle<Result<Latency, String>>;

async fn run_one(
    opts: &LoadTestOptions,
    shards: i32,
    mode: &'static str,
) -> Result<(RunReport, Option<LatestCheck>), String> {
    let records = opts.records(shards);
    let setup = RunSetup::new(opts, shards, mode).await?;
    let primary = Watch::start(setup.client.clone(), setup.visible_in.clone());
    let latest = setup
        .latest
        .clone()
        .map(|t| (Watch::start(setup.client.clone(), t.clone()), t));
    put_sensor_records(&setup.source, shards, opts.keys, records).await?;
    let keys = distinct_keys(shards as u64, opts.keys, records);

    let aborts_before = lock_aborts(&opts.snowflake_url).await;
    let measured = Arc::new(Measured::default());
    let invoke = measuring(setup.upsert.clone(), measured.clone());
    let started = Instant::now();
    let counters = drain(setup.source, opts, records, mode, invoke).await?;
    let put = measured.records();
    if put.len() as u64 != records {
        return Err(format!(
            "{shards} shards, {mode}: {} of {records} records reached the function",
            put.len()
        ));
    }
    let visible = primary.finish(&put, Duration::from_secs(120)).await;
    let seconds = started.elapsed().as_secs_f64();
    let expected = if mode == "merge" { keys } else { records };
    exactly_once(&setup.client, &setup.visible_in, &setup.unique_by, expected).await?;
    let report = RunReport {
        shards,
        mode,
        records,
        seconds,
        visible: Latency::of(visible),
        latest: None,
        lock_aborts: lock_aborts(&opts.snowflake_url)
            .await
            .saturating_sub(aborts_before),
        retries: counters.retries.load(Ordering::SeqCst),
        billed_ms_per_record: measured.billed_ms.load(Ordering::Relaxed) as f64 / records as f64,
    };
    let check = latest.map(|(watch, table)| {
        let (client, key) = (setup.client.clone(), setup.key_column.clone());
        tokio::spawn(async move {
            // A 1-minute target lag: the next refresh is at most a minute (and its run) away.
            let ms = watch.finish(&put, Duration::from_secs(150)).await;
            exactly_once(&client, &table, &key, keys).await?;
            Ok(Latency::of(ms))
        })
    });
    Ok((report, check))
}

/// Puts `records` sensor readings of `keys` sensors to the run's stream before the mapping
/// starts (so the latencies are those of clearing a burst).
async fn put_sensor_records(
    source: &KinesisSource,
    shards: i32,
    keys: u64,
    records: u64,
) -> Result<(), String> {
    let mut generator = Generator::new(Template::Sensor, shards as u64, keys);
    loadgen::run(
        &source.kinesis,
        &source.stream,
        &mut generator,
        records,
        0,
        |_| {},
    )
    .await
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// The distinct partition keys (sensors) among the first `records` records of the generator
/// seeded `seed`: the rows a latest-state table ends with.
fn distinct_keys(seed: u64, keys: u64, records: u64) -> u64 {
    let mut generator = Generator::new(Template::Sensor, seed, keys);
    let distinct: HashSet<String> = (0..records).map(|_| generator.next_record().0).collect();
    distinct.len() as u64
}

/// Fails unless `table` holds exactly `expected` rows, all distinct by `unique_by`.
async fn exactly_once(
    client: &SnowflakeClient,
    table: &str,
    unique_by: &str,
    expected: u64,
) -> Result<(), String> {
    let sql = format!("SELECT COUNT(*), COUNT(DISTINCT {unique_by}) FROM {table}");
    let answer = client
        .execute(
            &Statement::new(sql),
            Instant::now() + Duration::from_secs(60),
        )
        .await
        .map_err(|e| e.to_string())?;
    let cell = |i: usize| {
        answer
            .rows
            .first()
            .and_then(|r| r.get(i).cloned().flatten())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (rows, distinct) = (cell(0), cell(1));
    if rows != expected || distinct != expected {
        return Err(format!(
            "NOT EXACTLY ONCE: {table} holds {rows} rows ({distinct} distinct by {unique_by}), expected {expected}"
        ));
    }
    Ok(())
}

/// One run's own resources on the local stack, named by mode, shard count and start time.
struct RunSetup {
    /// A new stream of the run's shard count.
    source: KinesisSource,
    /// A new database with `sql/` applied.
    client: SnowflakeClient,
    /// Configured for the run's mode, quarantining to a new bucket.
    upsert: Arc<upsert::Upsert>,
    /// Where a record first shows: the target (merge) or the change table (streaming).
    visible_in: String,
    /// What is unique per row there: the key (merge) or the record's position (streaming).
    unique_by: String,
    /// The latest-state Dynamic Table (streaming only).
    latest: Option<String>,
    /// The target's key column, unique in the latest-state table.
    key_column: String,
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
        let (client, config) = run_database(opts, &database, &bucket, mode).await?;
        let tables = prepare_tables(&client, &config, mode).await?;
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
            visible_in: tables.visible_in,
            unique_by: tables.unique_by,
            latest: tables.latest,
            key_column: tables.key_column,
        })
    }
}

/// The local service's ceiling ([`crate::ceiling`]), measured for `seconds` each in a database
/// of its own.
pub async fn ceiling(opts: &LoadTestOptions, seconds: u64) -> Result<Ceiling, String> {
    let name = format!("LOADTEST_CEILING_{}", std::process::id());
    let (client, _) = database(opts, &name).await?;
    crate::ceiling::measure(&client, &opts.snowflake_url, (&name, "LOAD"), seconds).await
}

/// A new database (schema `LOAD`) with `sql/` applied: its client and the `SNOWFLAKE_*`
/// variables a function needs to reach it.
async fn database(
    opts: &LoadTestOptions,
    database: &str,
) -> Result<(SnowflakeClient, crate::demo::Vars), String> {
    let (client, vars, _) = bootstrapped_database(
        &LocalSnowflake {
            url: &opts.snowflake_url,
            key_file: &opts.key_file,
            sql_dir: &opts.sql_dir,
        },
        database,
        "LOAD",
        "s3://loadtest/raw/",
    )
    .await?;
    Ok((client, vars))
}

/// A new database with `sql/` applied, and the upsert's configuration for it in `mode`.
async fn run_database(
    opts: &LoadTestOptions,
    database_name: &str,
    bucket: &str,
    mode: &str,
) -> Result<(SnowflakeClient, upsert::Config), String> {
    let (client, snowflake_vars) = database(opts, database_name).await?;
    let config = upsert_config(
        &snowflake_vars,
        &[
            ("TABLE", "sensor_readings"),
            ("UPSERT_TABLES", SENSOR_TABLES),
            ("ERROR_BUCKET", bucket),
            ("WRITE_MODE", mode),
        ],
    )?;
    Ok((client, config))
}

/// The tables a run reads: see [`RunSetup`].
struct RunTables {
    visible_in: String,
    unique_by: String,
    latest: Option<String>,
    key_column: String,
}

/// Creates what streaming mode writes through as `bootstrap --streaming` does (the change table
/// and the latest-state Dynamic Table, the function's default 1-minute target lag, Snowflake's
/// least); returns where the run's rows show.
async fn prepare_tables(
    client: &SnowflakeClient,
    config: &upsert::Config,
    mode: &str,
) -> Result<RunTables, String> {
    let mapping = config
        .tables
        .get("sensor_readings")
        .ok_or("no sensor_readings mapping")?;
    let key_column = mapping.columns[mapping.keys[0]].ident.clone();
    if mode == "merge" {
        return Ok(RunTables {
            visible_in: mapping.target.clone(),
            unique_by: key_column.clone(),
            latest: None,
            key_column,
        });
    }
    let upsert::WriteMode::Streaming(settings) = &config.write_mode else {
        return Err(format!("{mode}: neither merge nor streaming"));
    };
    let objects = ChangeObjects::of(mapping, &settings.change_suffix, &settings.latest_suffix);
    let statements = crate::bootstrap::streaming_statements(config)?;
    execute_each(client, statements.into_iter().map(|(_, sql)| sql)).await?;
    Ok(RunTables {
        visible_in: objects.change_table.clone(),
        unique_by: format!("\"{SHARD_ID}\" || '/' || \"{SEQUENCE_NUMBER}\""),
        latest: Some(objects.latest.clone()),
        key_column,
    })
}

/// Runs the mapping until it has finished `records` records (or stopped, or 600 s passed);
/// returns the mapping's counters.
async fn drain(
    source: KinesisSource,
    opts: &LoadTestOptions,
    records: u64,
    mode: &str,
    invoke: KinesisInvoke,
) -> Result<Arc<Counters>, String> {
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
    while counters.done.load(Ordering::SeqCst) < records {
        if task.is_finished() || started.elapsed() > Duration::from_secs(600) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    task.await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(counters)
}

/// What the invocations saw: every record delivered (once, however often it was resent) and
/// the billed milliseconds.
#[derive(Default)]
struct Measured {
    records: Mutex<HashMap<(String, String), u64>>,
    billed_ms: AtomicU64,
}

impl Measured {
    fn records(&self) -> Vec<PutRecord> {
        let records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        records
            .iter()
            .map(|((shard, sequence), &put_ms)| PutRecord {
                shard: shard.clone(),
                sequence: sequence.clone(),
                put_ms,
            })
            .collect()
    }

    /// Notes the records of the event `body`: shard, sequence number, arrival time.
    fn note(&self, body: &str) {
        let event: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let mut records = self.records.lock().unwrap_or_else(|e| e.into_inner());
        for r in event["Records"].as_array().into_iter().flatten() {
            let shard = r["eventID"]
                .as_str()
                .and_then(|id| id.split_once(':'))
                .map(|(s, _)| s);
            let sequence = r["kinesis"]["sequenceNumber"].as_str();
            let arrival = r["kinesis"]["approximateArrivalTimestamp"]
                .as_f64()
                .unwrap_or(0.0);
            if let (Some(shard), Some(sequence)) = (shard, sequence) {
                records.insert(
                    (shard.to_string(), sequence.to_string()),
                    (arrival * 1000.0) as u64,
                );
            }
        }
    }
}

/// The upsert as the mapping invokes it, noting each delivered record and the invocation's
/// billed duration (Lambda rounds every invocation up to the next millisecond).
fn measuring(upsert: Arc<upsert::Upsert>, measured: Arc<Measured>) -> KinesisInvoke {
    Arc::new(move |body: String| {
        let (upsert, measured) = (upsert.clone(), measured.clone());
        Box::pin(async move {
            measured.note(&body);
            let started = Instant::now();
            let result = upsert
                .handle_body(&body, Instant::now() + Duration::from_secs(120))
                .await;
            let billed = started.elapsed().as_micros().div_ceil(1000) as u64;
            measured.billed_ms.fetch_add(billed, Ordering::Relaxed);
            Ok(result.map_err(|e| e.to_string())?.0)
        })
    })
}

/// Runs `statements` in order, stopping at the first failure.
pub(crate) async fn execute_each(
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

async fn lock_aborts(snowflake_url: &str) -> u64 {
    let Ok(resp) = crate::ceiling::stats(snowflake_url).await else {
        return 0;
    };
    resp["table_locks"]["aborts"].as_u64().unwrap_or(0)
}

/// The records/s and p99 charts of `reports`, one line per mode (p99 in the target for merge,
/// in the change table and the latest-state table for streaming).
pub fn chart(reports: &[RunReport]) -> String {
    let shards: std::collections::BTreeSet<i32> = reports.iter().map(|r| r.shards).collect();
    let ticks: Vec<f64> = shards.into_iter().map(f64::from).collect();
    let line = |name: &str,
                colour: &'static str,
                mode: &str,
                y: &dyn Fn(&RunReport) -> Option<f64>| Series {
        name: name.into(),
        colour,
        points: reports
            .iter()
            .filter(|r| r.mode == mode)
            .filter_map(|r| y(r).map(|v| (f64::from(r.shards), v)))
            .collect(),
    };
    let p99 = |l: &Latency| l.p99_ms.map(|ms| ms as f64 / 1000.0);
    let throughput = Chart {
        title: "Throughput".into(),
        x_label: "shards".into(),
        y_label: "records/s".into(),
        x_ticks: ticks.clone(),
        log_x: true,
        log_y: false,
        series: vec![
            line("merge", "#d62728", "merge", &|r| Some(r.records_per_sec())),
            line("streaming", "#1f77b4", "streaming", &|r| {
                Some(r.records_per_sec())
            }),
        ],
    };
    let latency = Chart {
        title: "Put → visible, p99".into(),
        x_label: "shards".into(),
        y_label: "seconds".into(),
        x_ticks: ticks,
        log_x: true,
        log_y: false,
        series: vec![
            line("merge: target", "#d62728", "merge", &|r| p99(&r.visible)),
            line("streaming: change table", "#1f77b4", "streaming", &|r| {
                p99(&r.visible)
            }),
            line("streaming: latest state", "#9467bd", "streaming", &|r| {
                r.latest.as_ref().and_then(p99)
            }),
        ],
    };
    side_by_side(&[throughput, latency])
}
