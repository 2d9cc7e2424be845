//! The table-equality run of the change-data-capture path, for `make demo-cdc` and the
//! end-to-end test: a seeded workload on a real MariaDB, its binlog captured into DMS- and
//! Debezium-shaped records on Kinesis (`local/tools/cdc.py`, the stand-in for DMS and Debezium
//! Server), the local event source mapping invoking the upsert with forced resends, and at the
//! end every Snowflake target compared with its MariaDB table row for row.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::{KinesisBatchItemFailure, KinesisEventResponse};
use shared::snowflake::Statement;

use crate::demo::{bootstrapped_database, upsert_config, LocalSnowflake};
use crate::esm::{self, Counters, KinesisInvoke, KinesisSettings, KinesisSource};

/// The source tables and their Snowflake targets (`sql/40_upsert_tables.sql`), columns in the
/// order `cdc.py dump` prints them.
const TABLES: [(&str, &str, &str); 2] = [
    (
        "orders",
        "SHOP_ORDERS",
        // CHANNEL is added to the source mid-workload; schema evolution adds it here.
        "TENANT_ID, ORDER_ID, STATUS, CUSTOMER, AMOUNT, PLACED_AT, ATTRS, CHANNEL",
    ),
    (
        "customers",
        "SHOP_CUSTOMERS",
        "CODE, NAME, BALANCE, UPDATED_AT, NOTE",
    ),
];

/// The upsert mapping of both tables for one envelope (column paths are relative to the row
/// image the envelope names). Debezium sends DATETIME(6) as microseconds since the epoch
/// (`MicroTimestamp`), DMS as text. Both tables evolve with their source (`cdc.py workload`
/// adds a column to `orders` half-way through).
fn mapping(envelope: &str) -> String {
    let epoch = if envelope == "debezium" {
        r#","epoch":"microseconds""#
    } else {
        ""
    };
    format!(
        r#"{{"orders":{{"table":"SHOP_ORDERS","envelope":"{envelope}","schema_evolution":true,"keys":["TENANT_ID","ORDER_ID"],"columns":[
  {{"name":"TENANT_ID","path":"/tenant_id","type":"NUMBER"}},
  {{"name":"ORDER_ID","path":"/order_id","type":"NUMBER"}},
  {{"name":"STATUS","path":"/status"}},
  {{"name":"CUSTOMER","path":"/customer"}},
  {{"name":"AMOUNT","path":"/amount","type":"NUMBER(38,9)"}},
  {{"name":"PLACED_AT","path":"/placed_at","type":"TIMESTAMP_NTZ"{epoch}}},
  {{"name":"ATTRS","path":"/attrs"}}]}},
"customers":{{"table":"SHOP_CUSTOMERS","envelope":"{envelope}","schema_evolution":true,"keys":["CODE"],"columns":[
  {{"name":"CODE","path":"/code"}},
  {{"name":"NAME","path":"/name"}},
  {{"name":"BALANCE","path":"/balance","type":"NUMBER(38,9)"}},
  {{"name":"UPDATED_AT","path":"/updated_at","type":"TIMESTAMP_NTZ"{epoch}}},
  {{"name":"NOTE","path":"/note"}}]}}}}"#
    )
}

const ROUTES: &str = r#"{"orders":"orders","customers":"customers"}"#;

/// What a CDC run does and where: the workload's size and faults, the capture script, the stack.
#[derive(Debug, Clone)]
pub struct CdcOptions {
    /// Row changes after the initial rows (each insert, update, delete is one).
    pub ops: u64,
    /// Rows inserted before the capture's snapshot.
    pub seed_rows: u64,
    /// Seed of the workload's and the capture's random choices, so a run can be repeated.
    pub seed: u64,
    /// Every this many changes the capture puts its last few records again (0: never).
    pub redeliver_every: u64,
    /// Every this many invocations, the mapping reports the whole batch failed after the
    /// function applied it (a lost response), and half-way through the next one.
    pub resend_every: u64,
    /// The Python that runs the capture script (the repository's `.venv` by default).
    pub python: PathBuf,
    /// The capture script, `local/tools/cdc.py`: schema, workload, binlog capture and dumps.
    pub script: PathBuf,
    /// The Snowflake setup applied to each target database (`sql/`).
    pub sql_dir: PathBuf,
    /// The local Snowflake emulator's SQL API (see [`crate::args::LocalStack`]).
    pub snowflake_url: String,
    /// The key the Snowflake client signs its JWTs with.
    pub key_file: String,
    /// The AWS region of the local stack.
    pub region: String,
    /// Prefix of the MariaDB database, streams and Snowflake database made for the run.
    pub name: String,
}

/// One target compared with its source.
#[derive(Debug, Clone)]
pub struct TableCheck {
    /// The envelope whose target this is (`dms` or `debezium`).
    pub envelope: &'static str,
    /// The Snowflake target table (`SHOP_ORDERS`, `SHOP_CUSTOMERS`).
    pub table: &'static str,
    /// Rows in the MariaDB source table at the end of the run.
    pub source_rows: usize,
    /// Rows in the Snowflake target table at the end of the run.
    pub target_rows: usize,
    /// Rows in one and not the other (source rows first, marked `-`; target rows `+`), at most 10.
    pub differences: Vec<String>,
}

impl TableCheck {
    /// Whether the target holds exactly the source's rows.
    pub fn equal(&self) -> bool {
        self.differences.is_empty() && self.source_rows == self.target_rows
    }
}

/// What a CDC run did, and whether every target ended equal to its source.
#[derive(Debug, Clone)]
pub struct CdcReport {
    /// The workload's JSON summary from `cdc.py workload` (`ops`, `seed_ops`, `seconds`).
    pub workload: serde_json::Value,
    /// The capture's JSON summary from `cdc.py capture` (records per envelope, `redelivered`).
    pub capture: serde_json::Value,
    /// Invocations of the upsert by both mappings, resends included.
    pub invocations: u64,
    /// Resends the mappings forced after the function had applied a batch.
    pub forced_resends: u64,
    /// Every target of both envelopes compared with its source.
    pub tables: Vec<TableCheck>,
    /// Wall-clock time of the whole run, in seconds.
    pub seconds: f64,
}

/// Runs the workload through both envelopes and compares every table.
pub async fn run(opts: CdcOptions) -> Result<CdcReport, String> {
    let started = Instant::now();
    let name = opts.name.to_lowercase();
    let (dms_stream, dbz_stream) = (format!("{name}-dms"), format!("{name}-debezium"));
    let bucket = format!("{name}-errors");
    let (kinesis, sqs, s3) = local_aws([&dms_stream, &dbz_stream], &bucket).await?;
    let targets = bootstrap_targets(&opts, &bucket, &s3).await?;
    println!("streams {dms_stream} (DMS) and {dbz_stream} (Debezium), 2 shards each; targets {} and {} (schema SHOP)", targets[0].database, targets[1].database);

    let stop = Arc::new(AtomicBool::new(false));
    let forced = Arc::new(AtomicU64::new(0));
    let source = |stream: &String| KinesisSource {
        kinesis: kinesis.clone(),
        sqs: sqs.clone(),
        region: opts.region.clone(),
        stream: stream.clone(),
    };
    let (mappings, counters): (Vec<_>, Vec<_>) = [&dms_stream, &dbz_stream]
        .into_iter()
        .zip(&targets)
        .map(|(stream, target)| {
            let invoke = resending(target.upsert.clone(), opts.resend_every, forced.clone());
            start_mapping(source(stream), invoke, stop.clone())
        })
        .unzip();

    let script = Script {
        python: &opts.python,
        script: &opts.script,
    };
    let db = name.replace('-', "_");
    let streams = [dms_stream.as_str(), dbz_stream.as_str()];
    let (workload, capture) = run_capture(&script, &opts, &name, &db, streams).await?;

    // Everything is on the streams: drain them.
    stop.store(true, Ordering::SeqCst);
    for m in mappings {
        m.await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    let invocations = counters
        .iter()
        .map(|c| c.invocations.load(Ordering::SeqCst))
        .sum();
    Ok(CdcReport {
        workload,
        capture,
        invocations,
        forced_resends: forced.load(Ordering::SeqCst),
        tables: compare_targets(&script, &db, &targets).await?,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The Kinesis, SQS and S3 clients of the local stack, with both streams and the error bucket
/// made.
async fn local_aws(
    streams: [&str; 2],
    bucket: &str,
) -> Result<
    (
        aws_sdk_kinesis::Client,
        aws_sdk_sqs::Client,
        aws_sdk_s3::Client,
    ),
    String,
> {
    let aws = shared::aws::load_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let s3 = shared::aws::s3_client(&aws);
    for stream in streams {
        esm::ensure_stream(&kinesis, stream, 2)
            .await
            .map_err(|e| e.to_string())?;
    }
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| format!("create bucket {bucket}: {e}"))?;
    Ok((kinesis, sqs, s3))
}

/// One envelope's Snowflake database, and the upsert writing to it.
struct Target {
    envelope: &'static str,
    database: String,
    client: shared::snowflake::SnowflakeClient,
    upsert: Arc<upsert::Upsert>,
}

/// A database per envelope with `sql/` applied, and the upsert configured for it as Lambda
/// would be (routes by the envelope's table field).
async fn bootstrap_targets(
    opts: &CdcOptions,
    bucket: &str,
    s3: &aws_sdk_s3::Client,
) -> Result<Vec<Target>, String> {
    let mut targets = Vec::new();
    for envelope in ["dms", "debezium"] {
        let database = format!("{}_{}", opts.name.replace('-', "_"), envelope).to_uppercase();
        let (client, snowflake_vars, _) = bootstrapped_database(
            &LocalSnowflake {
                url: &opts.snowflake_url,
                key_file: &opts.key_file,
                sql_dir: &opts.sql_dir,
            },
            &database,
            "SHOP",
            &format!("s3://{bucket}/raw/"),
        )
        .await?;
        let route_field = if envelope == "dms" {
            "/metadata/table-name"
        } else {
            "/source/table"
        };
        let config = upsert_config(
            &snowflake_vars,
            &[
                ("ROUTE_FIELD", route_field),
                ("ROUTE_MAP", ROUTES),
                ("UPSERT_TABLES", &mapping(envelope)),
                ("ERROR_BUCKET", bucket),
            ],
        )?;
        let upsert = Arc::new(upsert::Upsert::new(config, client.clone(), s3.clone()));
        targets.push(Target {
            envelope,
            database,
            client,
            upsert,
        });
    }
    Ok(targets)
}

/// Starts the local event source mapping of one stream; returns its task and counters.
fn start_mapping(
    source: KinesisSource,
    invoke: KinesisInvoke,
    stop: Arc<AtomicBool>,
) -> (
    tokio::task::JoinHandle<Result<(), esm::EsmError>>,
    Arc<Counters>,
) {
    let counters = Arc::new(Counters::default());
    let settings = KinesisSettings {
        function: format!("upsert-{}", source.stream),
        batch_size: 500,
        batching_window: Duration::from_millis(500),
        // Forced resends are not the function's failures: never let them discard a batch.
        max_retries: 10_000,
        on_failure_queue: None,
    };
    let task = tokio::spawn(esm::run_kinesis(
        source,
        settings,
        invoke,
        counters.clone(),
        stop,
    ));
    (task, counters)
}

/// `cdc.py`, run with the configured Python.
struct Script<'a> {
    python: &'a PathBuf,
    script: &'a PathBuf,
}

impl Script<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.python);
        cmd.arg(self.script).args(args).stdin(Stdio::null());
        cmd
    }
}

/// Creates the MariaDB schema, starts the capture of its binlog onto `streams` (DMS, Debezium),
/// runs the workload, and waits for the capture; returns both summaries (and prints them).
async fn run_capture(
    script: &Script<'_>,
    opts: &CdcOptions,
    name: &str,
    db: &str,
    [dms_stream, dbz_stream]: [&str; 2],
) -> Result<(serde_json::Value, serde_json::Value), String> {
    run_json(script.command(&["schema", "--db", db])).await?;
    let marker = std::env::temp_dir().join(format!("{name}.snapshot"));
    let _ = std::fs::remove_file(&marker);
    let marker_arg = marker.to_string_lossy().to_string();
    let (seed, ops, seed_rows, redeliver) = (
        opts.seed.to_string(),
        opts.ops.to_string(),
        opts.seed_rows.to_string(),
        opts.redeliver_every.to_string(),
    );
    let capture = script
        .command(&[
            "capture",
            "--db",
            db,
            "--dms-stream",
            dms_stream,
            "--debezium-stream",
            dbz_stream,
            "--seed",
            &seed,
            "--redeliver-every",
            &redeliver,
            "--wait-for",
            &marker_arg,
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start the capture: {e}"))?;
    let workload = run_json(script.command(&[
        "workload",
        "--db",
        db,
        "--ops",
        &ops,
        "--seed",
        &seed,
        "--seed-rows",
        &seed_rows,
        "--after-snapshot",
        &marker_arg,
    ]))
    .await?;
    println!("workload: {workload}");
    let capture = finish_json(capture, "capture").await?;
    println!("capture: {capture}");
    let _ = std::fs::remove_file(&marker);
    Ok((workload, capture))
}

/// Every target table of every envelope compared with its MariaDB source.
async fn compare_targets(
    script: &Script<'_>,
    db: &str,
    targets: &[Target],
) -> Result<Vec<TableCheck>, String> {
    let mut tables = Vec::new();
    for target_db in targets {
        for (source, target, columns) in TABLES {
            let expected = dump(script.command(&["dump", "--db", db, "--table", source])).await?;
            let landed = target_db
                .client
                .execute(
                    &Statement::new(format!("SELECT {columns} FROM {target}")),
                    Instant::now() + Duration::from_secs(60),
                )
                .await
                .map_err(|e| format!("{target}: {e}"))?
                .rows;
            tables.push(compare(target_db.envelope, target, expected, landed));
        }
    }
    Ok(tables)
}

/// The upsert as the mapping invokes it, with Lambda's two resend paths forced every
/// `every` invocations *after* the function applied the batch: the whole batch (a timeout or a
/// lost response) and from its middle record (a `batchItemFailures` entry).
fn resending(upsert: Arc<upsert::Upsert>, every: u64, forced: Arc<AtomicU64>) -> KinesisInvoke {
    let calls = Arc::new(AtomicU64::new(0));
    Arc::new(move |body: String| {
        let (upsert, calls, forced) = (upsert.clone(), calls.clone(), forced.clone());
        Box::pin(async move {
            let (response, _) = upsert
                .handle_body(&body, Instant::now() + Duration::from_secs(120))
                .await
                .map_err(|e| e.to_string())?;
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            if every == 0 || !response.batch_item_failures.is_empty() {
                return Ok(response);
            }
            if n % every == 0 {
                forced.fetch_add(1, Ordering::SeqCst);
                return Err("forced resend: the response was lost".into());
            }
            if n % every == 1 && n > 1 {
                if let Some(middle) = middle_sequence_number(&body) {
                    forced.fetch_add(1, Ordering::SeqCst);
                    let mut failure = KinesisBatchItemFailure::default();
                    failure.item_identifier = Some(middle);
                    let mut partial = KinesisEventResponse::default();
                    partial.batch_item_failures.push(failure);
                    return Ok(partial);
                }
            }
            Ok(response)
        })
    })
}

fn middle_sequence_number(body: &str) -> Option<String> {
    let event: serde_json::Value = serde_json::from_str(body).ok()?;
    let records = event["Records"].as_array()?;
    records
        .get(records.len() / 2)?
        .pointer("/kinesis/sequenceNumber")?
        .as_str()
        .map(String::from)
}

fn compare(
    envelope: &'static str,
    table: &'static str,
    expected: Vec<Vec<Option<String>>>,
    landed: Vec<Vec<Option<String>>>,
) -> TableCheck {
    let (source_rows, target_rows) = (expected.len(), landed.len());
    let mut expected = expected;
    let mut landed = landed;
    expected.sort();
    landed.sort();
    let mut differences = Vec::new();
    let (mut i, mut j) = (0, 0);
    while (i < expected.len() || j < landed.len()) && differences.len() < 10 {
        match (expected.get(i), landed.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                differences.push(format!("- {a:?}"));
                i += 1;
            }
            (Some(a), None) => {
                differences.push(format!("- {a:?}"));
                i += 1;
            }
            (_, Some(b)) => {
                differences.push(format!("+ {b:?}"));
                j += 1;
            }
            (None, None) => break,
        }
    }
    TableCheck {
        envelope,
        table,
        source_rows,
        target_rows,
        differences,
    }
}

async fn run_json(mut cmd: Command) -> Result<serde_json::Value, String> {
    let child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start {cmd:?}: {e}"))?;
    finish_json(child, "local/tools/cdc.py").await
}

/// Waits (off the runtime's threads: the mappings keep polling) for a `cdc.py` step and parses
/// the JSON summary it prints last.
async fn finish_json(child: Child, what: &str) -> Result<serde_json::Value, String> {
    let out = wait(child).await.map_err(|e| format!("{what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({})", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null))
}

async fn wait(child: Child) -> std::io::Result<std::process::Output> {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .map_err(std::io::Error::other)?
}

async fn dump(mut cmd: Command) -> Result<Vec<Vec<Option<String>>>, String> {
    let child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("dump: {e}"))?;
    let out = wait(child).await.map_err(|e| format!("dump: {e}"))?;
    if !out.status.success() {
        return Err(format!("dump failed ({})", out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).map_err(|e| format!("dump line {l:?}: {e}")))
        .collect()
}

/// The run as a person reads it.
pub fn print_report(report: &CdcReport) {
    println!(
        "\n{:<9} {:<15} {:>11} {:>11}  equal",
        "envelope", "table", "MariaDB", "Snowflake"
    );
    for t in &report.tables {
        println!(
            "{:<9} {:<15} {:>11} {:>11}  {}",
            t.envelope,
            t.table,
            t.source_rows,
            t.target_rows,
            if t.equal() { "yes" } else { "NO" }
        );
        for d in &t.differences {
            println!("    {d}");
        }
    }
    println!(
        "\n{} operations ({} initial rows) → {} records on the streams ({} redelivered); {} upsert invocations, {} forced resends; {:.1} s",
        report.workload["ops"],
        report.workload["seed_ops"],
        report.capture["dms"].as_u64().unwrap_or(0) + report.capture["debezium"].as_u64().unwrap_or(0),
        report.capture["redelivered"],
        report.invocations,
        report.forced_resends,
        report.seconds
    );
}
