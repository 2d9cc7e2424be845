//! The measuring run: each real function binary behind the Runtime API stand-in
//! (`local/tools/invoke.py`, which reports the duration Lambda would bill) on the local stack,
//! for representative batches of each workload, in each mode. AWS requests are counted in the
//! local AWS stand-in's request log (`$RUN_DIR/moto.log`) over each case. The local Snowflake runs
//! under its Snowflake timing model (`local/warehouse_timing.py`): a MERGE or COPY takes about a
//! second, a streaming append commits after 5–10 s, as on Snowflake.

use std::io::Read as _;
use std::path::{Path as FsPath, PathBuf};
use std::process::Command;

use aws_sdk_s3::Client as S3;
use serde_json::{json, Value};
use shared::sample::{cdc_change, kinesis_event, Rng};

use super::measured::{Batch, Case, Measurements, Requests, Workload};
use crate::demo::{
    bootstrapped_database, env_of, with_vars, LocalSnowflake, Vars, ORDER_TABLES, SENSOR_TABLES,
};
use crate::loadgen::{Generator, Template};

/// Where the binaries, the stand-in and the local stack are.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// The functions' binaries (`target/release`: built as Lambda runs them).
    pub bin_dir: PathBuf,
    /// The tools' binaries (`bootstrap`).
    pub tools_dir: PathBuf,
    /// The Python that runs `invoke.py` (the project's `.venv`).
    pub python: PathBuf,
    /// `local/tools/invoke.py`.
    pub invoke_py: PathBuf,
    /// The local stack's run directory: its `moto.log` is read, the events are written below.
    pub run_dir: PathBuf,
    /// The local Snowflake service.
    pub snowflake_url: String,
    /// The key the Snowflake client signs its JWTs with.
    pub key_file: String,
    /// `sql/`, applied to the run's database.
    pub sql_dir: PathBuf,
    /// Warm invocations per batch size.
    pub repeats: usize,
}

/// One measured workload's generator and the batch sizes it is measured at.
struct Spec {
    name: &'static str,
    /// Records per orchestrator batch (small, large).
    orchestrator: [usize; 2],
    /// Records per upsert batch (the template's BatchSize is 1,000).
    upsert: [usize; 2],
    /// The upsert's logical table and mapping.
    table: &'static str,
    mapping: &'static str,
}

const SPECS: [Spec; 3] = [
    Spec {
        name: "sensor",
        orchestrator: [1_000, 10_000],
        upsert: [100, 1_000],
        table: "sensor_readings",
        mapping: SENSOR_TABLES,
    },
    Spec {
        name: "event5k",
        orchestrator: [100, 800],
        upsert: [100, 800],
        table: "orders",
        mapping: ORDER_TABLES,
    },
    Spec {
        name: "cdc",
        orchestrator: [1_000, 10_000],
        upsert: [100, 1_000],
        table: "orders",
        mapping: ORDER_TABLES,
    },
];

/// Loader batches, in files (notifications) per invocation.
const LOADER_FILES: [usize; 2] = [1, 5];

/// A CDC change padded with a `note` field to about 5 KB: a wide event with a key, so the
/// upsert can take it too.
fn event_5k(rng: &mut Rng, n: u64) -> String {
    let change = cdc_change(rng, 1_000, n);
    let pad = 5_000usize.saturating_sub(change.len() + 11);
    let note: String = "lorem ipsum dolor sit amet "
        .chars()
        .cycle()
        .take(pad)
        .collect();
    format!("{},\"note\":\"{note}\"}}", &change[..change.len() - 1])
}

/// `count` payloads of the workload `name`, numbered from `start`.
fn payloads(name: &str, start: u64, count: usize) -> Vec<String> {
    let mut generator = match name {
        "sensor" => Some(Generator::new(Template::Sensor, start, 2_000)),
        "cdc" => Some(Generator::new(Template::Cdc, start, 1_000)),
        _ => None,
    };
    let mut rng = Rng::new(start);
    (0..count as u64)
        .map(|i| match generator.as_mut() {
            Some(g) => g.next_record().1,
            None => event_5k(&mut rng, start + i),
        })
        .collect()
}

/// The run's own resources on the local stack.
struct World {
    s3: S3,
    bucket: String,
    snowflake: Vars,
    dir: PathBuf,
    /// Sequence numbers keep rising across batches, so no two batches are the same.
    next_seq: u128,
}

impl World {
    async fn new(opts: &MeasureOptions) -> Result<Self, String> {
        let suffix = chrono::Utc::now().format("%Y%m%d%H%M%S").to_string();
        let bucket = format!("cost-{suffix}");
        let aws = shared::aws::load_config().await;
        let s3 = shared::aws::s3_client(&aws);
        s3.create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .map_err(|e| format!("create bucket: {e}"))?;
        let local = LocalSnowflake {
            url: &opts.snowflake_url,
            key_file: &opts.key_file,
            sql_dir: &opts.sql_dir,
        };
        let database = format!("COST_{suffix}");
        let stage = format!("s3://{bucket}/raw/");
        let (_, snowflake, _) = bootstrapped_database(&local, &database, "RAW", &stage).await?;
        for spec in &SPECS[..2] {
            // The change table and latest-state Dynamic Table, as a user makes them.
            let env = with_vars(
                &snowflake,
                &[
                    ("TABLE", spec.table),
                    ("UPSERT_TABLES", spec.mapping),
                    ("ERROR_BUCKET", &bucket),
                    ("WRITE_MODE", "streaming"),
                    ("STAGE_URL", &stage),
                ],
            );
            bootstrap_streaming(opts, &env)?;
        }
        let dir = opts.run_dir.join(format!("cost-{suffix}"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self {
            s3,
            bucket,
            snowflake,
            dir,
            next_seq: 1_000,
        })
    }

    /// A Kinesis event of `records` payloads of `workload`, written to a file.
    fn kinesis_file(&mut self, workload: &str, records: usize) -> Result<(PathBuf, u64), String> {
        let batch = payloads(workload, self.next_seq as u64, records);
        let bytes = batch.iter().map(|p| p.len() as u64).sum();
        let body = kinesis_event("cost", "shardId-000000000000", self.next_seq, 1.7e9, &batch);
        self.next_seq += records as u128;
        Ok((self.write(&body)?, bytes))
    }

    fn write(&self, body: &str) -> Result<PathBuf, String> {
        let path = self
            .dir
            .join(format!("event-{}.json", self.next_seq_file()));
        std::fs::write(&path, body).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(path)
    }

    fn next_seq_file(&self) -> String {
        let n = std::fs::read_dir(&self.dir).map(|d| d.count()).unwrap_or(0);
        format!("{n:05}")
    }
}

/// `bootstrap --streaming` with the upsert's configuration `env`.
fn bootstrap_streaming(opts: &MeasureOptions, env: &Vars) -> Result<(), String> {
    let bootstrap = opts.tools_dir.join("bootstrap");
    let out = Command::new(&bootstrap)
        .args(["--profile", "local", "--streaming", "--sql-dir"])
        .arg(&opts.sql_dir)
        .envs(env_of(env))
        .output()
        .map_err(|e| format!("{}: {e}", bootstrap.display()))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        return Err(format!("bootstrap --streaming: {said}"));
    }
    Ok(())
}

/// What `invoke.py` printed for one invocation.
struct Invocation {
    billed_ms: u64,
    init_ms: Option<f64>,
}

/// Runs `binary` behind the stand-in on `events` (one process: the first is the cold one);
/// returns each invocation's billed time and the AWS requests the stand-in served meanwhile.
fn invoke(
    opts: &MeasureOptions,
    binary: &str,
    env: &Vars,
    events: &[PathBuf],
) -> Result<(Vec<Invocation>, Requests), String> {
    let log = opts.run_dir.join("moto.log");
    let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let out = Command::new(&opts.python)
        .arg(&opts.invoke_py)
        .arg("--binary")
        .arg(opts.bin_dir.join(binary))
        .args(["--timeout", "120", "--event"])
        .args(events)
        .envs(env_of(env))
        .env("RUST_LOG", "warn")
        .output()
        .map_err(|e| format!("{}: {e}", opts.invoke_py.display()))?;
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed = lines.iter().find(|l| l.get("response").is_none());
    if !out.status.success() || lines.len() != events.len() || failed.is_some() {
        let tail: String = String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n");
        return Err(format!(
            "{binary}: {} (log tail:\n{tail})",
            failed.map_or("no answer".into(), Value::to_string)
        ));
    }
    let requests = requests_in(&log, before)?;
    let invocations = lines
        .iter()
        .map(|l| Invocation {
            billed_ms: l["billed_ms"].as_u64().unwrap_or(0),
            init_ms: l["init_ms"].as_f64(),
        })
        .collect();
    Ok((invocations, requests))
}

/// `line` without the terminal colour codes werkzeug puts around some requests (`ESC[35m`).
fn strip_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().take_while(|&c| c != 'm').for_each(drop);
        } else {
            out.push(c);
        }
    }
    out
}

/// Counts the requests the AWS stand-in logged after byte `from` of its log (werkzeug's
/// `"METHOD /path HTTP/1.1"` lines): S3 by path, the JSON-protocol services at `/`.
pub fn requests_in(log: &FsPath, from: u64) -> Result<Requests, String> {
    let mut text = String::new();
    let mut file = std::fs::File::open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(from)).map_err(|e| e.to_string())?;
    file.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let mut r = Requests::default();
    for line in text.lines().map(strip_colours) {
        let Some(request) = line.split('"').nth(1) else {
            continue;
        };
        let mut parts = request.split(' ');
        let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
            continue;
        };
        let object = path
            .trim_start_matches('/')
            .split('?')
            .next()
            .unwrap_or("")
            .contains('/');
        match (method, path) {
            (_, p) if p.starts_with("/moto-api") => {}
            (_, "/") | (_, "/?") => r.other += 1,
            ("GET" | "HEAD", _) if object => r.s3_get += 1,
            _ => r.s3_put += 1,
        }
    }
    Ok(r)
}

/// A case's events: one cold invocation, then `repeats` warm ones of each size.
struct Plan {
    events: Vec<PathBuf>,
    /// (units, records, bytes) of each event.
    sizes: Vec<(u64, u64, u64)>,
}

impl Plan {
    fn push(&mut self, event: PathBuf, units: u64, records: u64, bytes: u64) {
        self.events.push(event);
        self.sizes.push((units, records, bytes));
    }

    /// The case from what `invoke` returned for these events (the cold one's init kept apart).
    fn case(
        &self,
        function: &str,
        mode: &str,
        workload: &str,
        unit: &str,
        ran: (Vec<Invocation>, Requests),
    ) -> Case {
        let (invocations, mut requests) = ran;
        let mut batches: Vec<Batch> = Vec::new();
        for (inv, &(units, records, bytes)) in invocations.iter().zip(&self.sizes).skip(1) {
            match batches.iter_mut().find(|b| b.units == units) {
                Some(b) => b.billed_ms.push(inv.billed_ms),
                None => batches.push(Batch {
                    units,
                    records,
                    bytes,
                    billed_ms: vec![inv.billed_ms],
                }),
            }
        }
        requests.invocations = self.sizes.len() as u64;
        requests.units = self.sizes.iter().map(|s| s.0).sum();
        Case {
            function: function.into(),
            mode: mode.into(),
            workload: workload.into(),
            unit: unit.into(),
            init_ms: invocations.first().and_then(|i| i.init_ms).unwrap_or(0.0),
            batches,
            requests,
        }
    }
}

/// Kinesis batches of `spec`'s workload at `sizes` records: a cold one, then `repeats` of each.
fn kinesis_plan(
    world: &mut World,
    workload: &str,
    sizes: [usize; 2],
    repeats: usize,
) -> Result<Plan, String> {
    let mut plan = Plan {
        events: Vec::new(),
        sizes: Vec::new(),
    };
    let order = std::iter::once(sizes[0])
        .chain(std::iter::repeat_n(sizes[0], repeats))
        .chain(std::iter::repeat_n(sizes[1], repeats));
    for records in order {
        let (event, bytes) = world.kinesis_file(workload, records)?;
        plan.push(event, records as u64, records as u64, bytes);
    }
    Ok(plan)
}

async fn raw_keys(world: &World) -> Result<Vec<(String, i64)>, String> {
    let out = world
        .s3
        .list_objects_v2()
        .bucket(&world.bucket)
        .prefix("raw/sensor_readings/")
        .send()
        .await
        .map_err(|e| format!("list: {e}"))?;
    Ok(out
        .contents()
        .iter()
        .filter_map(|o| Some((o.key()?.to_string(), o.size()?)))
        .collect())
}

/// Uncompressed bytes per line of a gzip NDJSON object.
async fn bytes_per_line(world: &World, key: &str) -> Result<f64, String> {
    let object = world
        .s3
        .get_object()
        .bucket(&world.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("get {key}: {e}"))?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .into_bytes();
    let mut text = Vec::new();
    flate2::read::GzDecoder::new(&body[..])
        .read_to_end(&mut text)
        .map_err(|e| format!("{key}: {e}"))?;
    let lines = text.iter().filter(|&&b| b == b'\n').count().max(1);
    Ok(text.len() as f64 / lines as f64)
}

/// The orchestrator on `spec`'s workload; returns its case, the workload's sizes and the largest
/// object it wrote (what the loader cases load copies of).
async fn orchestrator(
    world: &mut World,
    opts: &MeasureOptions,
    spec: &Spec,
) -> Result<(Case, Workload, (String, i64)), String> {
    let before: Vec<String> = raw_keys(world).await?.into_iter().map(|k| k.0).collect();
    let plan = kinesis_plan(world, spec.name, spec.orchestrator, opts.repeats)?;
    let env = crate::demo::vars(&[("RAW_BUCKET", &world.bucket), ("TABLE", "sensor_readings")]);
    let ran = invoke(opts, "orchestrator", &env, &plan.events)?;
    let case = plan.case("orchestrator", "-", spec.name, "record", ran);
    let written: Vec<(String, i64)> = raw_keys(world)
        .await?
        .into_iter()
        .filter(|k| !before.contains(&k.0))
        .collect();
    let largest = written
        .into_iter()
        .max_by_key(|k| k.1)
        .ok_or("the orchestrator wrote no object")?;
    let (records, bytes): (u64, u64) = plan
        .sizes
        .iter()
        .fold((0, 0), |a, s| (a.0 + s.1, a.1 + s.2));
    let workload = Workload {
        name: spec.name.into(),
        record_bytes: bytes as f64 / records.max(1) as f64,
        file_bytes_per_record: bytes_per_line(world, &largest.0).await?,
    };
    Ok((case, workload, largest))
}

/// The S3 notification for `key`, in the SQS message body the loader reads.
fn notification(bucket: &str, key: &str, size: i64) -> String {
    json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": chrono::Utc::now().to_rfc3339(), "eventName": "ObjectCreated:Copy",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "cost",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size, "sequencer": "0065E6C7D6A1B2C3D4"}}}]})
    .to_string()
}

/// An SQS event of notifications for `files` new copies of `source`.
async fn loader_event(
    world: &mut World,
    source: &(String, i64),
    tag: &str,
    files: usize,
) -> Result<PathBuf, String> {
    let mut bodies = Vec::new();
    for _ in 0..files {
        world.next_seq += 1;
        let key = format!(
            "raw/sensor_readings/cost/{tag}-{}.ndjson.gz",
            world.next_seq
        );
        world
            .s3
            .copy_object()
            .bucket(&world.bucket)
            .copy_source(format!("{}/{}", world.bucket, source.0))
            .key(&key)
            .send()
            .await
            .map_err(|e| format!("copy to {key}: {e}"))?;
        bodies.push((
            format!("m-{}", world.next_seq),
            notification(&world.bucket, &key, source.1),
        ));
    }
    let messages: Vec<crate::events::SqsMessageIn<'_>> = bodies
        .iter()
        .map(|(id, body)| crate::events::SqsMessageIn {
            message_id: id,
            receipt_handle: id,
            body,
            md5_of_body: "0",
            receive_count: 1,
            sent_timestamp_ms: 1_700_000_000_000,
        })
        .collect();
    let arn = "arn:aws:sqs:us-east-1:123456789012:raw-zone-notifications";
    world.write(&crate::events::sqs_event("us-east-1", arn, &messages).to_string())
}

/// Whether the loader reads `LOAD_MODE`: given a mode no loader has, one that reads it fails at
/// start-up naming the variable; one that predates the variable loads as before.
async fn loader_reads_load_mode(
    world: &mut World,
    opts: &MeasureOptions,
    source: &(String, i64),
) -> Result<bool, String> {
    let event = loader_event(world, source, "probe", 1).await?;
    let env = with_vars(
        &world.snowflake,
        &[
            ("RAW_BUCKET", &world.bucket),
            ("RAW_PREFIX", "raw"),
            ("LOAD_MODE", "no-such-mode"),
        ],
    );
    match invoke(opts, "loader", &env, &[event]) {
        Ok(_) => Ok(false),
        Err(e) => Ok(e.contains("LOAD_MODE")),
    }
}

/// The loader in `mode` on copies of `source`; `None` for `snowpipe` when the binary has no
/// `LOAD_MODE` (the model then says the copy loader's timing stands in).
async fn loader(
    world: &mut World,
    opts: &MeasureOptions,
    spec: &Spec,
    mode: &str,
    source: &(String, i64),
) -> Result<Option<Case>, String> {
    if mode == "snowpipe" && !loader_reads_load_mode(world, opts, source).await? {
        return Ok(None);
    }
    let mut plan = Plan {
        events: Vec::new(),
        sizes: Vec::new(),
    };
    let order = std::iter::once(LOADER_FILES[0])
        .chain(std::iter::repeat_n(LOADER_FILES[0], opts.repeats))
        .chain(std::iter::repeat_n(LOADER_FILES[1], opts.repeats));
    for files in order {
        let event = loader_event(world, source, &format!("{}-{mode}", spec.name), files).await?;
        plan.push(event, files as u64, 0, files as u64 * source.1 as u64);
    }
    // Snowpipe's own load latency is the model's parameter: here files load at once and the
    // loader polls insertReport every 100 ms, so what is measured is the loader's own work.
    let env = with_vars(
        &world.snowflake,
        &[
            ("RAW_BUCKET", &world.bucket),
            ("RAW_PREFIX", "raw"),
            ("LOAD_MODE", mode),
            ("PIPE_POLL_MS", "100"),
        ],
    );
    let snowpipe = mode == "snowpipe";
    if snowpipe {
        snowpipe_load_delay(opts, [0, 0]).await?;
    }
    let ran = invoke(opts, "loader", &env, &plan.events);
    if snowpipe {
        snowpipe_load_delay(opts, [1_000, 5_000]).await?;
    }
    Ok(Some(plan.case("loader", mode, spec.name, "file", ran?)))
}

/// Changes the local Snowflake's configuration (`POST /admin/config`).
async fn admin_config(opts: &MeasureOptions, body: Value) -> Result<(), String> {
    let url = format!("{}/admin/config", opts.snowflake_url);
    let answer = reqwest::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("{url} {body}: {}", answer.status()));
    }
    Ok(())
}

/// Sets how long the local Snowpipe takes to load a queued file (the stack's default is
/// 1,000–5,000 ms).
async fn snowpipe_load_delay(opts: &MeasureOptions, range_ms: [u64; 2]) -> Result<(), String> {
    admin_config(opts, json!({ "snowpipe_load_delay_ms": range_ms })).await
}

async fn upsert(
    world: &mut World,
    opts: &MeasureOptions,
    spec: &Spec,
    mode: &str,
) -> Result<Case, String> {
    let plan = kinesis_plan(world, spec.name, spec.upsert, opts.repeats)?;
    let env = with_vars(
        &world.snowflake,
        &[
            ("TABLE", spec.table),
            ("UPSERT_TABLES", spec.mapping),
            ("ERROR_BUCKET", &world.bucket),
            ("WRITE_MODE", mode),
        ],
    );
    let ran = invoke(opts, "upsert", &env, &plan.events)?;
    Ok(plan.case("upsert", mode, spec.name, "record", ran))
}

fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Measures every case; prints a line per case as it goes.
pub async fn run(opts: &MeasureOptions) -> Result<Measurements, String> {
    // Statements, streaming commits and refreshes take Snowflake's time, not DuckDB's
    // (local/warehouse_timing.py), so the functions wait as long as they would on Snowflake.
    admin_config(opts, json!({ "timing_model": "snowflake" })).await?;
    let mut world = World::new(opts).await?;
    let mut m = Measurements {
        measured_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        machine: format!(
            "{}, {} cores",
            command_line("uname", &["-srm"]),
            command_line("nproc", &[])
        ),
        commit: command_line("git", &["rev-parse", "--short", "HEAD"]),
        binaries: "release".into(),
        workloads: Vec::new(),
        cases: Vec::new(),
    };
    for spec in &SPECS {
        let (case, workload, largest) = orchestrator(&mut world, opts, spec).await?;
        report(&case);
        m.cases.push(case);
        m.workloads.push(workload);
        for mode in ["copy", "snowpipe"] {
            match loader(&mut world, opts, spec, mode, &largest).await? {
                Some(case) => {
                    report(&case);
                    m.cases.push(case);
                }
                None => println!(
                    "loader {mode:<9} {:<8} not measured: this loader has no LOAD_MODE={mode}",
                    spec.name
                ),
            }
        }
        for mode in ["merge", "streaming"] {
            let case = upsert(&mut world, opts, spec, mode).await?;
            report(&case);
            m.cases.push(case);
        }
    }
    // The events are generated again on every run; tens of MB not worth keeping.
    std::fs::remove_dir_all(&world.dir).map_err(|e| format!("{}: {e}", world.dir.display()))?;
    Ok(m)
}

fn report(case: &Case) {
    let fit = case.fit();
    let batches: Vec<String> = case
        .batches
        .iter()
        .map(|b| {
            format!(
                "{} {}s: {:.0} ms",
                b.units,
                case.unit,
                super::measured::median(&b.billed_ms)
            )
        })
        .collect();
    println!(
        "{:<12} {:<9} {:<8} init {:>5.1} ms; {}; fit {:.1} ms + {:.4} ms/{}; S3 PUT {}, GET {}, other {}",
        case.function, case.mode, case.workload, case.init_ms, batches.join(", "), fit.fixed_ms, fit.per_unit_ms,
        case.unit, case.requests.s3_put, case.requests.s3_get, case.requests.other
    );
}
