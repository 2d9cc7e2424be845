//! The demo: the whole pipeline, event-driven, on the local stack.
//!
//! Load generator → Kinesis → (orchestrator, upsert) → S3 → S3 notification → SQS → loader →
//! local Snowflake, every hop through the same handlers and event JSON as on AWS, driven by the
//! local event source mapping. Prints what landed and how long it took.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::config::Env;
use shared::snowflake::{SnowflakeClient, SnowflakeConfig, Statement};

use crate::esm::{
    self, Counters, KinesisInvoke, KinesisSettings, KinesisSource, SqsInvoke, SqsSettings,
};
use crate::loadgen::{self, Generator, Template};

mod evolution;

/// The upsert mapping of the sensor stream: latest reading per sensor (also the load test's).
pub(crate) const SENSOR_TABLES: &str = r#"{"sensor_readings":{"table":"SENSOR_READINGS","keys":["sensorid"],"columns":[
    {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
    {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
    {"name":"status","path":"/status","type":"TEXT"}]}}"#;

/// The upsert mapping of the CDC stream: latest state per order, versioned, `op = d` deletes.
pub(crate) const ORDER_TABLES: &str = r#"{"orders":{"table":"ORDERS","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},
    {"name":"status","path":"/status","type":"TEXT"},
    {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},
    {"name":"customer","path":"/customer","type":"TEXT"},
    {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
    "version":"updated_at","delete":{"path":"/op","value":"d"},"payload_column":"payload"}}"#;

/// The orchestrator's `CSV_COLUMNS` for the order events, loaded as CSV into the raw table.
pub(crate) const ORDER_EVENT_COLUMNS: &str = r#"[{"name":"event_id","path":"/event_id","required":true},
    {"name":"event_type","path":"/event_type"},{"name":"event_timestamp","path":"/event_timestamp"},
    {"name":"customer_id","path":"/customer/id"},{"name":"customer_name","path":"/customer/name"},
    {"name":"city","path":"/customer/city"},{"name":"total","path":"/order/total"},
    {"name":"currency","path":"/order/currency"},{"name":"items","path":"/order/items"}]"#;

/// What the demo runs with.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Sensor readings put to the sensor stream (read by both the orchestrator and the upsert).
    pub sensors: u64,
    /// Order events put to the order stream (the orchestrator's CSV path).
    pub orders: u64,
    /// Order change records put to the CDC stream (the upsert's versioned, deleting path).
    pub changes: u64,
    /// Malformed records mixed into the sensor stream, for the functions to quarantine.
    pub bad_records: u64,
    /// The local Snowflake emulator's SQL API (see [`crate::args::LocalStack`]).
    pub snowflake_url: String,
    /// The key the Snowflake client signs its JWTs with.
    pub key_file: String,
    /// The AWS region of the local stack.
    pub region: String,
    /// The `sql/` folder applied to a fresh database.
    pub sql_dir: std::path::PathBuf,
    /// The loader's `LOAD_MODE`: `copy` (COPY INTO through the SQL API) or `snowpipe` (the
    /// pipes of `sql/35_pipes.sql` through the Snowpipe REST API).
    pub load_mode: String,
}

pub(crate) type Vars = Vec<(String, String)>;

pub(crate) fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub(crate) fn env_of(vars: &Vars) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `base`, then `extra`.
pub(crate) fn with_vars(base: &Vars, extra: &[(&str, &str)]) -> Vars {
    let mut all = base.clone();
    all.extend(vars(extra));
    all
}

/// The upsert configured as Lambda would: the `SNOWFLAKE_*` variables, then its own.
pub(crate) fn upsert_config(
    snowflake_vars: &Vars,
    extra: &[(&str, &str)],
) -> Result<upsert::Config, String> {
    upsert::Config::from_env(&Env::new(&env_of(&with_vars(snowflake_vars, extra))))
        .map_err(|e| e.to_string())
}

/// Where the local Snowflake service is and what to apply to a new database.
pub(crate) struct LocalSnowflake<'a> {
    pub url: &'a str,
    pub key_file: &'a str,
    pub sql_dir: &'a std::path::Path,
}

/// A database on the local service with `sql/` applied (profile local): its client, the
/// `SNOWFLAKE_*` variables a function needs to reach it, and how many statements were applied.
pub(crate) async fn bootstrapped_database(
    local: &LocalSnowflake<'_>,
    database: &str,
    schema: &str,
    stage_url: &str,
) -> Result<(SnowflakeClient, Vars, usize), String> {
    let snowflake_vars = vars(&[
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", local.url),
        ("SNOWFLAKE_DATABASE", database),
        ("SNOWFLAKE_SCHEMA", schema),
        ("SNOWFLAKE_PRIVATE_KEY_FILE", local.key_file),
    ]);
    let config = SnowflakeConfig::from_env(&Env::new(&env_of(&snowflake_vars)))
        .map_err(|e| e.to_string())?;
    let client = SnowflakeClient::new(config, None)
        .await
        .map_err(|e| e.to_string())?;
    let sql_vars: HashMap<String, String> = [
        ("DATABASE", database),
        ("SCHEMA", schema),
        ("STAGE_URL", stage_url),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let outcomes = crate::bootstrap::apply_dir(
        &client,
        local.sql_dir,
        crate::bootstrap::Profile::Local,
        &crate::bootstrap::with_defaults(&sql_vars),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok((client, snowflake_vars, outcomes.len()))
}

/// EMF values per (function, metric): sums, and the maximum for `LagMs`.
#[derive(Default)]
struct MetricTotals(std::sync::Mutex<std::collections::BTreeMap<(String, &'static str), f64>>);

impl MetricTotals {
    fn add(&self, emf: &shared::metrics::Emf) {
        let function = emf.function().to_string();
        let mut totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for name in emf.names() {
            let v = emf.get(name).unwrap_or(0.0);
            let slot = totals.entry((function.clone(), name)).or_insert(0.0);
            *slot = if name == "LagMs" {
                slot.max(v)
            } else {
                *slot + v
            };
        }
    }

    fn print(&self) {
        let totals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut function = "";
        for ((f, name), v) in totals.iter() {
            if f != function {
                function = f;
                print!("\n{f:<13}");
            }
            print!(" {name}={v}");
        }
        println!();
        let mismatches: f64 = totals
            .iter()
            .filter(|((_, n), _)| *n == "ReconciliationMismatches")
            .map(|(_, v)| v)
            .sum();
        println!(
            "reconciliation: {} (read = landed + quarantined + skipped in every batch; no partially loaded file)",
            if mismatches == 0.0 { "every record accounted for".to_string() } else { format!("{mismatches} MISMATCHES") }
        );
    }
}

fn step(name: &str) {
    println!("\n== {name}");
}

/// What landed, for the caller to check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landed {
    /// Rows in `SENSOR_READINGS` (the upsert: latest state per sensor).
    pub sensor_readings: u64,
    /// Rows in `ORDERS` (the upsert from the CDC stream: latest state per order).
    pub orders: u64,
    /// Rows in `SENSOR_READINGS_RAW` (the loader: every sensor reading, NDJSON).
    pub sensor_readings_raw: u64,
    /// Rows in `ORDER_EVENTS_RAW` (the loader: every order event, CSV).
    pub order_events_raw: u64,
    /// Sensors whose streaming row is exactly the newest raw reading.
    pub sensors_matching_raw: u64,
    /// Records quarantined under `errors/orchestrator/`.
    pub rejected_by_orchestrator: u64,
    /// Records quarantined under `errors/upsert/`.
    pub rejected_by_upsert: u64,
    /// Columns the upsert added to `SENSOR_READINGS` when readings gained fields.
    pub columns_added: Vec<String>,
    /// Batches the Kinesis mappings gave up on and sent to the on-failure queue (0 in a good run).
    pub discarded_batches: u64,
}

/// The names of one demo run's resources, unique per run (seconds since the epoch).
struct DemoNames {
    suffix: String,
    bucket: String,
    sensor_stream: String,
    order_stream: String,
    cdc_stream: String,
    database: String,
}

impl DemoNames {
    fn new() -> Self {
        let suffix = format!(
            "{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
        );
        Self {
            bucket: format!("demo-raw-{suffix}"),
            sensor_stream: format!("demo-sensors-{suffix}"),
            order_stream: format!("demo-orders-{suffix}"),
            cdc_stream: format!("demo-cdc-{suffix}"),
            database: format!("DEMO_{suffix}"),
            suffix,
        }
    }
}

const DEMO_SCHEMA: &str = "PIPELINE";

/// The local AWS side: clients, and the queues the mappings use.
struct LocalAws {
    kinesis: aws_sdk_kinesis::Client,
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    /// Where the bucket's object-created notifications arrive (the loader's queue).
    queue_url: String,
    /// The Kinesis mappings' on-failure destination.
    on_failure: String,
}

/// Runs the demo on the local stack and reports what landed.
pub async fn run(opts: DemoOptions) -> Result<Landed, String> {
    let started = Instant::now();
    let names = DemoNames::new();
    let aws = local_aws(&names).await?;

    let (snowflake, snowflake_vars) = bootstrap_step(&opts, &names).await?;
    let functions = Functions::new(
        &names.bucket,
        &snowflake,
        &snowflake_vars,
        &aws.s3,
        &opts.load_mode,
    )?;
    let mut mappings = Mappings::start(&aws, &names, functions, &opts.region);
    let load_started = Instant::now();
    let total_put = generate_load(&aws.kinesis, &names, &opts).await?;

    step("waiting for both paths");
    let wait_until = Instant::now() + Duration::from_secs(300);
    let kinesis_elapsed = mappings
        .wait_for_kinesis(&total_put, load_started, wait_until)
        .await?;
    // The loader is done when every raw-zone object has been loaded (or reported).
    let objects = count_objects(&aws.s3, &names.bucket, "raw/").await?;
    let orchestrator_rejected = quarantined_in(&aws.s3, &names.bucket, "errors/orchestrator/")
        .await?
        .1 as u64;
    let expected_rows = opts.sensors + opts.bad_records + opts.orders - orchestrator_rejected;
    let batch_done = wait_for_raw_rows(&snowflake, expected_rows, load_started, wait_until).await?;
    mappings.stop_loader().await?;
    let batch_elapsed = batch_done.ok_or("the raw tables did not fill within 300 s")?;

    let (counts, matching) = report_snowflake(&snowflake).await?;
    let (rejected_o, rejected_u) = report_quarantine(&aws.s3, &names.bucket).await?;
    mappings.report(objects);
    let columns_added =
        evolution::show(&snowflake, &snowflake_vars, &names.bucket, &aws.s3).await?;

    step("metrics the functions emitted (EMF, summed over invocations; lag is the maximum)");
    mappings.metrics.print();
    print_timings(&total_put, kinesis_elapsed, batch_elapsed, started);
    Ok(Landed {
        sensor_readings: counts[0],
        orders: counts[1],
        sensor_readings_raw: counts[2],
        order_events_raw: counts[3],
        sensors_matching_raw: matching,
        rejected_by_orchestrator: rejected_o as u64,
        rejected_by_upsert: rejected_u as u64,
        discarded_batches: mappings.discarded_batches(),
        columns_added,
    })
}

/// The run's database made by `bootstrap` from `sql/`: its client and the variables it used.
async fn bootstrap_step(
    opts: &DemoOptions,
    names: &DemoNames,
) -> Result<(SnowflakeClient, Vars), String> {
    step("local Snowflake: apply sql/ (bootstrap)");
    let (snowflake, snowflake_vars, applied) = bootstrapped_database(
        &LocalSnowflake {
            url: &opts.snowflake_url,
            key_file: &opts.key_file,
            sql_dir: &opts.sql_dir,
        },
        &names.database,
        DEMO_SCHEMA,
        &format!("s3://{}/raw/", names.bucket),
    )
    .await?;
    println!(
        "{applied} statements applied to {}.{DEMO_SCHEMA}",
        names.database
    );
    Ok((snowflake, snowflake_vars))
}

/// The streams, bucket and queues of the run on the local AWS stand-in, the bucket notifying the
/// loader's queue of every object under `raw`.
async fn local_aws(names: &DemoNames) -> Result<LocalAws, String> {
    step("local AWS: stream, bucket, notification queue (moto)");
    let aws = shared::aws::load_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let s3 = shared::aws::s3_client(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let (sensor_stream, order_stream, cdc_stream) =
        (&names.sensor_stream, &names.order_stream, &names.cdc_stream);
    for stream in [sensor_stream, order_stream, cdc_stream] {
        esm::ensure_stream(&kinesis, stream, 2)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (bucket, suffix) = (&names.bucket, &names.suffix);
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| format!("create bucket: {e}"))?;
    let queue_url =
        esm::ensure_queue_with_dlq(&sqs, &format!("demo-raw-notifications-{suffix}"), 5, 5)
            .await
            .map_err(|e| e.to_string())?;
    let on_failure = esm::ensure_queue_with_dlq(&sqs, &format!("demo-on-failure-{suffix}"), 30, 5)
        .await
        .map_err(|e| e.to_string())?;
    let queue_arn = esm::queue_arn(&sqs, &queue_url)
        .await
        .map_err(|e| e.to_string())?;
    esm::notify_queue_on_create(&s3, bucket, "raw", &queue_arn)
        .await
        .map_err(|e| e.to_string())?;
    println!("streams {sensor_stream}, {order_stream}, {cdc_stream} (2 shards each); bucket {bucket}; queue {queue_url}");
    Ok(LocalAws {
        kinesis,
        s3,
        sqs,
        queue_url,
        on_failure,
    })
}

/// The demo's function instances, configured as Lambda would configure them.
struct Functions {
    orch_sensors: Arc<orchestrator::Orchestrator>,
    orch_orders: Arc<orchestrator::Orchestrator>,
    up_sensors: Arc<upsert::Upsert>,
    up_orders: Arc<upsert::Upsert>,
    loader: Arc<loader::Loader>,
}

impl Functions {
    fn new(
        bucket: &str,
        snowflake: &SnowflakeClient,
        snowflake_vars: &Vars,
        s3: &aws_sdk_s3::Client,
        load_mode: &str,
    ) -> Result<Self, String> {
        step("functions, as Lambda would configure them");
        let orchestrator = |extra: &[(&str, &str)]| orchestrator_writing_to(bucket, s3, extra);
        let upsert = |table: &str, tables: &str| -> Result<_, String> {
            let config = upsert_config(
                snowflake_vars,
                &[
                    ("TABLE", table),
                    ("UPSERT_TABLES", tables),
                    ("ERROR_BUCKET", bucket),
                ],
            )?;
            Ok(Arc::new(upsert::Upsert::new(
                config,
                snowflake.clone(),
                s3.clone(),
            )))
        };
        let functions = Self {
            orch_sensors: orchestrator(&[("TABLE", "sensor_readings")])?,
            orch_orders: orchestrator(&[
                ("TABLE", "order_events"),
                ("FORMAT", "csv"),
                ("CSV_COLUMNS", ORDER_EVENT_COLUMNS),
                ("COMPRESSION", "zstd"),
            ])?,
            up_sensors: upsert("sensor_readings", SENSOR_TABLES)?,
            up_orders: upsert("orders", ORDER_TABLES)?,
            loader: Arc::new(loader_of(bucket, snowflake, snowflake_vars, s3, load_mode)?),
        };
        println!("orchestrator: sensors → NDJSON+gzip, orders → CSV+zstd; upsert: SENSOR_READINGS, ORDERS (CDC); loader ({load_mode}): raw zone → *_RAW");
        Ok(functions)
    }
}

/// An orchestrator writing to `bucket`, configured by `extra`.
fn orchestrator_writing_to(
    bucket: &str,
    s3: &aws_sdk_s3::Client,
    extra: &[(&str, &str)],
) -> Result<Arc<orchestrator::Orchestrator>, String> {
    let mut all = vec![("RAW_BUCKET", bucket)];
    all.extend_from_slice(extra);
    let config = orchestrator::Config::from_env(&Env::new(&all)).map_err(|e| e.to_string())?;
    Ok(Arc::new(orchestrator::Orchestrator::new(
        config,
        s3.clone(),
    )))
}

/// The loader of the raw zone in `bucket` in `load_mode`, counting the rows of what it loads
/// (snowpipe: polling the local pipes' reports every half second).
fn loader_of(
    bucket: &str,
    snowflake: &SnowflakeClient,
    snowflake_vars: &Vars,
    s3: &aws_sdk_s3::Client,
    load_mode: &str,
) -> Result<loader::Loader, String> {
    let config = loader::Config::from_env(&Env::new(&env_of(&with_vars(
        snowflake_vars,
        &[
            ("RAW_BUCKET", bucket),
            ("RAW_PREFIX", "raw"),
            ("LOAD_MODE", load_mode),
            ("PIPE_POLL_MS", "500"),
        ],
    ))))
    .map_err(|e| e.to_string())?;
    Ok(loader::Loader::new(config, snowflake.clone()).with_row_counts(Some(s3.clone())))
}

/// The deadline each local invocation runs with.
fn invocation_deadline() -> Instant {
    Instant::now() + Duration::from_secs(60)
}

// Each invocation's EMF document, as the functions print it in Lambda, is added up per function.

fn orchestrator_invoke(
    o: Arc<orchestrator::Orchestrator>,
    metrics: Arc<MetricTotals>,
) -> KinesisInvoke {
    Arc::new(move |body: String| {
        let (o, metrics) = (o.clone(), metrics.clone());
        Box::pin(async move {
            let (r, outcome) = o
                .handle_body(&body, invocation_deadline())
                .await
                .map_err(|e| e.to_string())?;
            metrics.add(&outcome.metrics("KinesisSnowflake", shared::metrics::now_ms()));
            Ok(r)
        })
    })
}

fn upsert_invoke(u: Arc<upsert::Upsert>, metrics: Arc<MetricTotals>) -> KinesisInvoke {
    Arc::new(move |body: String| {
        let (u, metrics) = (u.clone(), metrics.clone());
        Box::pin(async move {
            let (r, outcome) = u
                .handle_body(&body, invocation_deadline())
                .await
                .map_err(|e| e.to_string())?;
            metrics.add(&outcome.metrics("KinesisSnowflake", shared::metrics::now_ms()));
            Ok(r)
        })
    })
}

fn loader_invoke(l: Arc<loader::Loader>, metrics: Arc<MetricTotals>) -> SqsInvoke {
    Arc::new(move |event| {
        let (l, metrics) = (l.clone(), metrics.clone());
        Box::pin(async move {
            let (r, outcome) = l
                .handle_value(&event, invocation_deadline())
                .await
                .map_err(|e| e.to_string())?;
            metrics.add(&outcome.metrics("KinesisSnowflake"));
            Ok(r)
        })
    })
}

/// The four Kinesis mappings: (function, stream, handler).
fn kinesis_invokes(
    names: &DemoNames,
    functions: &Functions,
    metrics: &Arc<MetricTotals>,
) -> Vec<(&'static str, String, KinesisInvoke)> {
    let m = || metrics.clone();
    vec![
        (
            "orchestrator",
            names.sensor_stream.clone(),
            orchestrator_invoke(functions.orch_sensors.clone(), m()),
        ),
        (
            "upsert",
            names.sensor_stream.clone(),
            upsert_invoke(functions.up_sensors.clone(), m()),
        ),
        (
            "orchestrator",
            names.order_stream.clone(),
            orchestrator_invoke(functions.orch_orders.clone(), m()),
        ),
        (
            "upsert",
            names.cdc_stream.clone(),
            upsert_invoke(functions.up_orders.clone(), m()),
        ),
    ]
}

/// The running event source mappings: four Kinesis ones and the loader's SQS one.
struct Mappings {
    stop_kinesis: Arc<AtomicBool>,
    stop_sqs: Arc<AtomicBool>,
    kinesis_tasks: Vec<tokio::task::JoinHandle<Result<(), esm::EsmError>>>,
    /// (function, stream, counters) of each Kinesis mapping.
    kinesis_counters: Vec<(&'static str, String, Arc<Counters>)>,
    sqs_task: tokio::task::JoinHandle<Result<(), esm::EsmError>>,
    loader_counters: Arc<Counters>,
    metrics: Arc<MetricTotals>,
}

impl Mappings {
    fn start(aws: &LocalAws, names: &DemoNames, functions: Functions, region: &str) -> Self {
        step("event source mappings (batch 500, window 1 s, 3 retries, on-failure queue)");
        let stop_kinesis = Arc::new(AtomicBool::new(false));
        let stop_sqs = Arc::new(AtomicBool::new(false));
        let settings = |function: &str| KinesisSettings {
            function: function.into(),
            batch_size: 500,
            batching_window: Duration::from_secs(1),
            max_retries: 3,
            on_failure_queue: Some(aws.on_failure.clone()),
        };
        let metrics = Arc::new(MetricTotals::default());
        let mappings = kinesis_invokes(names, &functions, &metrics);
        let mut kinesis_tasks = Vec::new();
        let mut kinesis_counters = Vec::new();
        for (function, stream, invoke) in mappings {
            let counters = Arc::new(Counters::default());
            kinesis_counters.push((function, stream.clone(), counters.clone()));
            let source = KinesisSource {
                kinesis: aws.kinesis.clone(),
                sqs: aws.sqs.clone(),
                region: region.to_string(),
                stream,
            };
            kinesis_tasks.push(tokio::spawn(esm::run_kinesis(
                source,
                settings(function),
                invoke,
                counters,
                stop_kinesis.clone(),
            )));
        }
        let loader_counters = Arc::new(Counters::default());
        let sqs_task = tokio::spawn(esm::run_sqs(
            aws.sqs.clone(),
            region.to_string(),
            aws.queue_url.clone(),
            SqsSettings {
                function: "loader".into(),
                batch_size: 10,
            },
            loader_invoke(functions.loader, metrics.clone()),
            loader_counters.clone(),
            stop_sqs.clone(),
        ));
        Self {
            stop_kinesis,
            stop_sqs,
            kinesis_tasks,
            kinesis_counters,
            sqs_task,
            loader_counters,
            metrics,
        }
    }

    /// Waits until every Kinesis mapping has finished the records put on its stream, then stops
    /// them; returns how long that took from `load_started`.
    async fn wait_for_kinesis(
        &mut self,
        total_put: &HashMap<String, u64>,
        load_started: Instant,
        wait_until: Instant,
    ) -> Result<Duration, String> {
        let mut streaming_done = None;
        while Instant::now() < wait_until {
            let all = self
                .kinesis_counters
                .iter()
                .all(|(_, stream, c)| c.done.load(Ordering::SeqCst) >= total_put[stream]);
            if all {
                streaming_done.get_or_insert(load_started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let kinesis_elapsed =
            streaming_done.ok_or("the Kinesis mappings did not finish within 300 s")?;
        self.stop_kinesis.store(true, Ordering::SeqCst);
        for t in std::mem::take(&mut self.kinesis_tasks) {
            t.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
        }
        Ok(kinesis_elapsed)
    }

    /// Stops the loader's mapping and waits for it.
    async fn stop_loader(&mut self) -> Result<(), String> {
        self.stop_sqs.store(true, Ordering::SeqCst);
        (&mut self.sqs_task)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }

    /// Prints what each mapping did.
    fn report(&self, objects: usize) {
        println!(
            "raw-zone objects: {objects}; loader invocations: {}, messages retried: {}",
            self.loader_counters.invocations.load(Ordering::SeqCst),
            self.loader_counters.retries.load(Ordering::SeqCst)
        );
        for (function, stream, c) in &self.kinesis_counters {
            println!(
                "{function:<13} {stream:<28} {} invocations, {} records delivered, {} retries",
                c.invocations.load(Ordering::SeqCst),
                c.records.load(Ordering::SeqCst),
                c.retries.load(Ordering::SeqCst)
            );
        }
    }

    fn discarded_batches(&self) -> u64 {
        self.kinesis_counters
            .iter()
            .map(|(_, _, c)| c.discarded_batches.load(Ordering::SeqCst))
            .sum()
    }
}

/// Puts the generated records on the three streams, then the malformed ones on the sensor
/// stream; returns how many records each stream received.
async fn generate_load(
    kinesis: &aws_sdk_kinesis::Client,
    names: &DemoNames,
    opts: &DemoOptions,
) -> Result<HashMap<String, u64>, String> {
    step("load generator → Kinesis");
    let mut total_put = HashMap::new();
    for (stream, template, count, keys) in [
        (&names.sensor_stream, Template::Sensor, opts.sensors, 50),
        (&names.order_stream, Template::Order, opts.orders, 500),
        (&names.cdc_stream, Template::Cdc, opts.changes, 200),
    ] {
        let mut generator = Generator::new(template, 42, keys);
        let report = loadgen::run(kinesis, stream, &mut generator, count, 0, |_| {})
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "{stream}: {} records in {:.2} s ({:.0} records/s)",
            report.records,
            report.elapsed.as_secs_f64(),
            report.records_per_sec()
        );
        total_put.insert(stream.clone(), report.records);
    }
    let sensor_stream = &names.sensor_stream;
    put_bad_records(kinesis, sensor_stream, opts.bad_records).await?;
    *total_put.entry(sensor_stream.clone()).or_insert(0) += opts.bad_records;
    println!(
        "{} malformed records mixed into {sensor_stream}",
        opts.bad_records
    );
    Ok(total_put)
}

/// Puts `count` records the orchestrator must quarantine: alternately not JSON, and JSON whose
/// sensor id is not a number.
async fn put_bad_records(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    count: u64,
) -> Result<(), String> {
    for i in 0..count {
        let data: &[u8] = if i % 2 == 0 {
            b"{not json"
        } else {
            br#"{"sensorId":"six","status":"OK"}"#
        };
        kinesis
            .put_record()
            .stream_name(stream)
            .partition_key("bad")
            .data(aws_sdk_kinesis::primitives::Blob::new(data))
            .send()
            .await
            .map_err(|e| format!("put bad record: {e}"))?;
    }
    Ok(())
}

/// Waits until the raw tables hold `expected_rows`; returns how long that took from
/// `load_started`, or `None` when `wait_until` came first.
async fn wait_for_raw_rows(
    snowflake: &SnowflakeClient,
    expected_rows: u64,
    load_started: Instant,
    wait_until: Instant,
) -> Result<Option<Duration>, String> {
    while Instant::now() < wait_until {
        let loaded = count(snowflake, "SELECT COUNT(*) AS N FROM SENSOR_READINGS_RAW").await?
            + count(snowflake, "SELECT COUNT(*) AS N FROM ORDER_EVENTS_RAW").await?;
        if loaded >= expected_rows {
            return Ok(Some(load_started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(None)
}

/// Prints what landed in Snowflake; returns the row counts of SENSOR_READINGS, ORDERS,
/// SENSOR_READINGS_RAW and ORDER_EVENTS_RAW, and how many sensors match their newest raw reading.
async fn report_snowflake(snowflake: &SnowflakeClient) -> Result<(Vec<u64>, u64), String> {
    step("what landed in Snowflake");
    let mut counts = Vec::new();
    for (table, what) in [
        ("SENSOR_READINGS", "upsert: latest state per sensor"),
        ("ORDERS", "upsert: CDC, latest state per order"),
        (
            "SENSOR_READINGS_RAW",
            "loader: every sensor reading (NDJSON)",
        ),
        ("ORDER_EVENTS_RAW", "loader: every order event (CSV)"),
    ] {
        let n = count(snowflake, &format!("SELECT COUNT(*) AS N FROM {table}")).await?;
        counts.push(n);
        println!("{table:<22} {n:>7} rows   {what}");
    }
    print_samples(snowflake).await?;
    // Both paths carry the same sensor records: the streaming table must equal the newest
    // reading per sensor in the raw table.
    let newest_first = shared::kinesis::sequence::SequenceNumber::sql_order("SEQUENCE_NUMBER");
    let matching = count(
        snowflake,
        &format!("SELECT COUNT(*) AS N FROM SENSOR_READINGS s JOIN (SELECT SENSORID, CURRENTTEMPERATURE, STATUS, SEQUENCE_NUMBER FROM SENSOR_READINGS_RAW_V \
         QUALIFY ROW_NUMBER() OVER (PARTITION BY SHARD_ID, SENSORID ORDER BY {newest_first} DESC) = 1) r \
         ON s.SENSORID = r.SENSORID AND s.KINESIS_SEQUENCE_NUMBER = r.SEQUENCE_NUMBER AND s.STATUS = r.STATUS"),
    )
    .await?;
    let sensors_total = count(snowflake, "SELECT COUNT(*) AS N FROM SENSOR_READINGS").await?;
    println!("\nstreaming table vs raw table: {matching} of {sensors_total} sensors hold exactly the newest raw reading");
    Ok((counts, matching))
}

/// The first rows of each table the demo fills.
async fn print_samples(snowflake: &SnowflakeClient) -> Result<(), String> {
    println!("\nSENSOR_READINGS (first 5):");
    print_rows(snowflake, "SELECT SENSORID, CURRENTTEMPERATURE, STATUS, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER FROM SENSOR_READINGS ORDER BY SENSORID LIMIT 5").await?;
    println!("\nSENSOR_READINGS_RAW_V (first 3, with lineage):");
    print_rows(snowflake, "SELECT SENSORID, CURRENTTEMPERATURE, STATUS, SOURCE_FILE, SOURCE_ROW FROM SENSOR_READINGS_RAW_V ORDER BY SOURCE_FILE, SOURCE_ROW LIMIT 3").await?;
    println!("\nORDERS (first 3):");
    print_rows(snowflake, "SELECT ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT::VARCHAR AS UPDATED_AT FROM ORDERS ORDER BY ORDER_ID LIMIT 3").await?;
    println!("\nORDER_EVENTS_RAW (first 3):");
    print_rows(snowflake, "SELECT EVENT_ID, EVENT_TYPE, CUSTOMER_NAME, TOTAL, SOURCE_ROW FROM ORDER_EVENTS_RAW ORDER BY EVENT_ID LIMIT 3").await?;
    Ok(())
}

/// Prints the records each function quarantined; returns (orchestrator, upsert) record counts.
async fn report_quarantine(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
) -> Result<(usize, usize), String> {
    let (objects_o, rejected_o) = quarantined_in(s3, bucket, "errors/orchestrator/").await?;
    let (objects_u, rejected_u) = quarantined_in(s3, bucket, "errors/upsert/").await?;
    println!("quarantined records: orchestrator {rejected_o} (in {objects_o} object(s) under errors/orchestrator/), upsert {rejected_u} (in {objects_u} under errors/upsert/), each with its reason");
    Ok((rejected_o, rejected_u))
}

fn print_timings(
    total_put: &HashMap<String, u64>,
    kinesis_elapsed: Duration,
    batch_elapsed: Duration,
    started: Instant,
) {
    step("timings");
    let records: u64 = total_put.values().sum();
    println!("records put: {records}");
    println!(
        "streaming path (Kinesis → upsert/orchestrator done): {:.2} s, {:.0} records/s end to end",
        kinesis_elapsed.as_secs_f64(),
        records as f64 / kinesis_elapsed.as_secs_f64()
    );
    println!(
        "micro-batch path (Kinesis → S3 → SQS → COPY done):   {:.2} s",
        batch_elapsed.as_secs_f64()
    );
    println!("demo total: {:.1} s", started.elapsed().as_secs_f64());
}

async fn count(client: &SnowflakeClient, sql: &str) -> Result<u64, String> {
    let r = client
        .execute(
            &Statement::new(sql),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(r.rows
        .first()
        .and_then(|row| row.first())
        .and_then(|v| v.as_deref())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn print_rows(client: &SnowflakeClient, sql: &str) -> Result<(), String> {
    let r = client
        .execute(
            &Statement::new(sql),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    let names: Vec<&str> = r.columns.iter().map(|c| c.name.as_str()).collect();
    println!("  {}", names.join(" | "));
    for row in &r.rows {
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
            .collect();
        println!("  {}", cells.join(" | "));
    }
    Ok(())
}

/// Every key under `prefix`, following continuation tokens.
pub(crate) async fn list(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "list {bucket}/{prefix}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(&e)
                )
            })?;
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        match page.next_continuation_token() {
            Some(t) => token = Some(t.to_string()),
            None => return Ok(keys),
        }
    }
}

async fn count_objects(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<usize, String> {
    Ok(list(s3, bucket, prefix).await?.len())
}

/// (objects, records) of the quarantine objects under `prefix` but not under `except`.
async fn quarantined_in(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<(usize, usize), String> {
    let keys: Vec<String> = list(s3, bucket, prefix).await?;
    let mut records = 0;
    for key in &keys {
        let body = s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("get {key}: {e}"))?
            .body
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .into_bytes();
        let text = shared::rawzone::encode::decompress(
            shared::rawzone::encode::Compression::Gzip { level: 0 },
            &body,
        )
        .map_err(|e| e.to_string())?;
        records += text.iter().filter(|b| **b == b'\n').count();
    }
    Ok((keys.len(), records))
}
