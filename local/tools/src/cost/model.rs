//! The monthly cost of each path for a record size, rate and hours a day: Lambda GB-seconds from
//! the measured billed milliseconds per batch, AWS requests, Kinesis, Firehose, warehouse
//! seconds (60-second minimum per resume) and per-GB ingest credits. Pure arithmetic.

use super::measured::{Fit, Measurements, Requests};
use super::prices::Prices;

/// Hours in a month, as AWS prices monthly usage (`730 hours`).
pub const HOURS_PER_MONTH: f64 = 730.0;
const GB: f64 = 1024.0 * 1024.0 * 1024.0;
/// What Lambda sends a Kinesis function at most per invocation (6 MB, base64 payloads).
/// <https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html>
const LAMBDA_PAYLOAD_BYTES: f64 = 6.0 * 1024.0 * 1024.0;
/// The Kinesis event's JSON around each base64 payload (keys, sequence number, ARNs).
const EVENT_BYTES_PER_RECORD: f64 = 420.0;

/// An event source mapping and its function, as `template.yaml` sets them.
#[derive(Debug, Clone, Copy)]
pub struct Mapping {
    /// The function's `MemorySize`, MB.
    pub memory_mb: f64,
    /// The mapping's `BatchSize` (records, or SQS messages).
    pub batch_size: f64,
    /// The mapping's `MaximumBatchingWindowInSeconds`.
    pub window_s: f64,
}

/// Everything the model assumes beyond prices: the template's values and Snowflake settings.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Orchestrator: 1024 MB, BatchSize 10,000, window 60 s.
    pub orchestrator: Mapping,
    /// Upsert: 512 MB, BatchSize 1,000, window 5 s.
    pub upsert: Mapping,
    /// Loader: 256 MB, BatchSize 100, window 20 s.
    pub loader: Mapping,
    /// Concurrent SQS long polls Lambda keeps open while idle (it starts with five).
    pub sqs_pollers: f64,
    /// Seconds each long poll (`ReceiveMessage` `WaitTimeSeconds`) waits.
    pub sqs_wait_s: f64,
    /// Warehouse size as a multiple of X-Small's credits an hour (1, 2, 4, ...).
    pub warehouse_size: f64,
    /// The warehouse's `AUTO_SUSPEND`, seconds.
    pub auto_suspend_s: f64,
    /// Seconds one COPY of a loader batch keeps the warehouse busy (1 s, the local service's
    /// Snowflake timing model's `dml_fixed_ms`, `local/warehouse_timing.py`, as for the two below).
    pub copy_query_s: f64,
    /// Seconds one MERGE of an upsert batch keeps the warehouse busy.
    pub merge_query_s: f64,
    /// Seconds one Dynamic Table refresh keeps the warehouse busy.
    pub refresh_query_s: f64,
    /// The latest-state Dynamic Table's `TARGET_LAG`, seconds (a refresh each lag).
    pub target_lag_s: f64,
    /// Seconds Snowpipe takes to load a file, which the snowpipe-mode loader waits for.
    pub snowpipe_latency_s: f64,
    /// Bytes of lineage columns a streamed change row carries beside the record.
    pub lineage_bytes: f64,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            orchestrator: Mapping {
                memory_mb: 1024.0,
                batch_size: 10_000.0,
                window_s: 60.0,
            },
            upsert: Mapping {
                memory_mb: 512.0,
                batch_size: 1_000.0,
                window_s: 5.0,
            },
            loader: Mapping {
                memory_mb: 256.0,
                batch_size: 100.0,
                window_s: 20.0,
            },
            sqs_pollers: 5.0,
            sqs_wait_s: 20.0,
            warehouse_size: 1.0,
            auto_suspend_s: 60.0,
            copy_query_s: 1.0,
            merge_query_s: 1.0,
            refresh_query_s: 1.0,
            target_lag_s: 60.0,
            snowpipe_latency_s: 60.0,
            lineage_bytes: 120.0,
        }
    }
}

/// A workload: how big, how fast, how long a day, and which measured workload's timings apply.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// What the README calls it.
    pub name: String,
    /// Payload bytes per record.
    pub record_bytes: f64,
    /// Records per second while active.
    pub rate: f64,
    /// Hours a day records arrive.
    pub hours_per_day: f64,
    /// The measured workload (`sensor`, `event5k`, `cdc`) whose per-batch timings are used.
    pub workload: String,
}

impl Scenario {
    fn active_s(&self) -> f64 {
        self.hours_per_day.clamp(0.0, 24.0) * 3600.0 * HOURS_PER_MONTH / 24.0
    }
}

/// The ways records reach Snowflake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Orchestrator → S3 → loader `LOAD_MODE=copy` (COPY INTO on a warehouse).
    Copy,
    /// Orchestrator → S3 → loader `LOAD_MODE=snowpipe` (Snowpipe REST, per GB).
    Snowpipe,
    /// Upsert `WRITE_MODE=merge` (a MERGE per batch on a warehouse).
    Merge,
    /// Upsert `WRITE_MODE=streaming` (Snowpipe Streaming) plus the Dynamic Table's refreshes.
    Streaming,
    /// Amazon Data Firehose (Direct PUT) to its Snowflake destination.
    Firehose,
}

impl Path {
    /// Every path, in the order the table and the chart list them.
    pub const ALL: [Path; 5] = [
        Path::Copy,
        Path::Snowpipe,
        Path::Merge,
        Path::Streaming,
        Path::Firehose,
    ];

    /// The path's name in the table and the chart's legend.
    pub fn label(self) -> &'static str {
        match self {
            Path::Copy => "orchestrator + loader copy",
            Path::Snowpipe => "orchestrator + loader snowpipe",
            Path::Merge => "upsert merge",
            Path::Streaming => "upsert streaming + Dynamic Table",
            Path::Firehose => "Firehose → Snowflake",
        }
    }
}

/// A path's monthly cost in USD, by what is billed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    /// Lambda GB-seconds and requests.
    pub lambda: f64,
    /// S3 and SQS requests.
    pub requests: f64,
    /// Kinesis shard-hours and PUT payload units.
    pub kinesis: f64,
    /// Firehose ingestion.
    pub firehose: f64,
    /// Warehouse credits (COPY, MERGE, Dynamic Table refreshes).
    pub warehouse: f64,
    /// Snowpipe and Snowpipe Streaming credits.
    pub ingest: f64,
}

impl Breakdown {
    /// Everything together.
    pub fn total(&self) -> f64 {
        self.lambda + self.requests + self.kinesis + self.firehose + self.warehouse + self.ingest
    }
}

/// A path's cost and what the estimate had to assume for want of a measurement.
#[derive(Debug, Clone)]
pub struct Estimate {
    /// The path.
    pub path: Path,
    /// Its monthly cost.
    pub cost: Breakdown,
    /// Measurements that were missing, and what stood in for them.
    pub notes: Vec<String>,
}

/// Billed warehouse seconds for `loads_per_s` statements of `query_s` each over `active_s`: the
/// warehouse never suspends when the next statement comes within `query_s + auto_suspend_s`,
/// otherwise each statement resumes it and bills at least 60 seconds.
/// <https://docs.snowflake.com/en/user-guide/cost-understanding-compute>
pub fn warehouse_seconds(
    loads_per_s: f64,
    query_s: f64,
    auto_suspend_s: f64,
    active_s: f64,
) -> f64 {
    if loads_per_s <= 0.0 || active_s <= 0.0 {
        return 0.0;
    }
    let awake = query_s + auto_suspend_s;
    if 1.0 / loads_per_s <= awake {
        active_s
    } else {
        loads_per_s * active_s * awake.max(60.0)
    }
}

/// Bytes Firehose bills for a record: rounded up to the next 5 KB.
pub fn firehose_billed_bytes(record_bytes: f64) -> f64 {
    const STEP: f64 = 5.0 * 1024.0;
    (record_bytes / STEP).ceil().max(1.0) * STEP
}

/// Provisioned shards for the rate: 1,000 records/s and 1 MB/s in per shard.
/// <https://docs.aws.amazon.com/streams/latest/dev/service-sizes-and-limits.html>
pub fn shards(rate: f64, record_bytes: f64) -> f64 {
    (rate / 1000.0)
        .max(rate * record_bytes / (1024.0 * 1024.0))
        .ceil()
        .max(1.0)
}

/// Records per Kinesis batch: what arrives on a shard within the window, at least one, at most
/// the batch size or what fits in Lambda's 6 MB payload.
pub fn kinesis_batch_records(rate: f64, record_bytes: f64, mapping: &Mapping) -> f64 {
    let per_shard = rate / shards(rate, record_bytes);
    let event_bytes = (record_bytes / 3.0).ceil() * 4.0 + EVENT_BYTES_PER_RECORD;
    let cap = mapping
        .batch_size
        .min((LAMBDA_PAYLOAD_BYTES / event_bytes).floor());
    (per_shard * mapping.window_s).clamp(1.0, cap.max(1.0))
}

/// SQS messages per loader invocation for `files_per_s` notifications: a window's worth, at
/// least one, at most the batch size.
pub fn sqs_batch_messages(files_per_s: f64, mapping: &Mapping) -> f64 {
    (files_per_s * mapping.window_s).clamp(1.0, mapping.batch_size)
}

/// Monthly USD of `invocations_per_s` invocations billed `billed_ms` each at `memory_mb`.
fn lambda_cost(invocations: f64, billed_ms: f64, memory_mb: f64, prices: &Prices) -> f64 {
    invocations
        * (billed_ms / 1000.0 * memory_mb / 1024.0 * prices.lambda_gb_second.value
            + prices.lambda_request.value)
}

fn kinesis_cost(s: &Scenario, prices: &Prices) -> f64 {
    let units = (s.record_bytes / (25.0 * 1024.0)).ceil().max(1.0);
    shards(s.rate, s.record_bytes) * HOURS_PER_MONTH * prices.kinesis_shard_hour.value
        + s.rate * s.active_s() * units * prices.kinesis_put_unit.value
}

fn credits_usd(credits: f64, prices: &Prices) -> f64 {
    credits * prices.snowflake_credit.value
}

fn warehouse_cost(loads_per_s: f64, query_s: f64, s: &Scenario, setup: &Setup, p: &Prices) -> f64 {
    let seconds = warehouse_seconds(loads_per_s, query_s, setup.auto_suspend_s, s.active_s());
    credits_usd(
        seconds / 3600.0 * p.warehouse_xs_credits_hour.value * setup.warehouse_size,
        p,
    )
}

/// What one function of a path costs: its measured timing on the scenario's workload.
struct Function<'a> {
    name: &'static str,
    mode: &'static str,
    mapping: Mapping,
    /// Invocations per second while active.
    invocations_per_s: f64,
    /// Units (records or files) per invocation.
    units: f64,
    /// Waiting the local stack does not reproduce (Snowpipe's load latency).
    wait_ms: f64,
    /// Shards the batches come from, one batch at a time each (Kinesis); `None` for SQS.
    shards: Option<f64>,
    measured: &'a Measurements,
}

impl Function<'_> {
    /// Monthly Lambda USD and the measured case's requests, per invocation and per unit.
    fn cost(&self, s: &Scenario, p: &Prices, notes: &mut Vec<String>) -> (f64, Requests) {
        let Some((fit, requests)) = self.timing(s, notes) else {
            return (0.0, Requests::default());
        };
        let billed = fit.billed_ms(self.units) + self.wait_ms;
        if let Some(shards) = self.shards {
            let between_ms = 1000.0 * shards / self.invocations_per_s.max(1e-12);
            if billed > between_ms {
                notes.push(format!(
                    "{} {}: a batch bills {billed:.0} ms but one arrives every {between_ms:.0} ms \
                     per shard: it falls behind (more shards or a larger BatchSize)",
                    self.name, self.mode
                ));
            }
        }
        let invocations = self.invocations_per_s * s.active_s();
        (
            lambda_cost(invocations, billed, self.mapping.memory_mb, p),
            requests,
        )
    }

    /// The fit for the scenario's record size (the per-record part scaled from the measured
    /// workload's size) and the case's request counts; the copy loader's when the snowpipe
    /// loader was not measured.
    fn timing(&self, s: &Scenario, notes: &mut Vec<String>) -> Option<(Fit, Requests)> {
        let m = self.measured;
        let case = m.case(self.name, self.mode, &s.workload).or_else(|| {
            let stand_in = (self.name == "loader").then(|| m.case("loader", "copy", &s.workload));
            notes.push(format!(
                "{} {} not measured on {}: {}",
                self.name,
                self.mode,
                s.workload,
                if stand_in.flatten().is_some() {
                    "the copy loader's timing stands in"
                } else {
                    "left out"
                }
            ));
            stand_in.flatten()
        })?;
        let mut fit = case.fit();
        if case.unit == "record" {
            let measured = m
                .workload(&s.workload)
                .map_or(s.record_bytes, |w| w.record_bytes);
            fit.per_unit_ms *= s.record_bytes / measured.max(1.0);
        }
        Some((fit, case.requests.clone()))
    }
}

/// Orchestrator → S3 → loader, in `copy` or `snowpipe` mode.
fn micro_batch(path: Path, s: &Scenario, setup: &Setup, m: &Measurements, p: &Prices) -> Estimate {
    let mut notes = Vec::new();
    let records = kinesis_batch_records(s.rate, s.record_bytes, &setup.orchestrator);
    let files_per_s = s.rate / records;
    // The local service runs COPY as Snowflake would, so the copy loader's time is as measured;
    // the measuring run has the local Snowpipe load at once, so its latency is added here.
    let (mode, wait_s) = match path {
        Path::Copy => ("copy", 0.0),
        _ => ("snowpipe", setup.snowpipe_latency_s),
    };
    let files = sqs_batch_messages(files_per_s, &setup.loader);
    let orchestrator = Function {
        name: "orchestrator",
        mode: "-",
        mapping: setup.orchestrator,
        invocations_per_s: files_per_s,
        units: records,
        wait_ms: 0.0,
        shards: Some(shards(s.rate, s.record_bytes)),
        measured: m,
    };
    let loader = Function {
        name: "loader",
        mode,
        mapping: setup.loader,
        invocations_per_s: files_per_s / files,
        units: files,
        wait_ms: wait_s * 1000.0,
        shards: None,
        measured: m,
    };
    let (lambda_o, req_o) = orchestrator.cost(s, p, &mut notes);
    let (lambda_l, req_l) = loader.cost(s, p, &mut notes);
    let active = s.active_s();
    let s3 = files_per_s
        * active
        * (req_o.per_invocation(|r| r.s3_put) * p.s3_put.value
            + req_l.per_unit(|r| r.s3_get) * p.s3_get.value);
    // S3's notification, then the loader's delete per batch; idle long polls all month.
    let sqs = (files_per_s + files_per_s / files) * active
        + setup.sqs_pollers * HOURS_PER_MONTH * 3600.0 / setup.sqs_wait_s;
    let mut cost = Breakdown {
        lambda: lambda_o + lambda_l,
        requests: s3 + sqs * p.sqs_request.value,
        kinesis: kinesis_cost(s, p),
        ..Breakdown::default()
    };
    if path == Path::Copy {
        cost.warehouse = warehouse_cost(files_per_s / files, setup.copy_query_s, s, setup, p);
    } else {
        let per_record = m.workload(&s.workload).map_or(s.record_bytes, |w| {
            w.file_bytes_per_record * s.record_bytes / w.record_bytes.max(1.0)
        });
        let gb = s.rate * active * per_record / GB;
        cost.ingest = credits_usd(gb * p.snowpipe_credits_gb.value, p);
    }
    Estimate { path, cost, notes }
}

/// The upsert in `merge` or `streaming` mode.
fn upsert(path: Path, s: &Scenario, setup: &Setup, m: &Measurements, p: &Prices) -> Estimate {
    let mut notes = Vec::new();
    let records = kinesis_batch_records(s.rate, s.record_bytes, &setup.upsert);
    let batches_per_s = s.rate / records;
    let merge = path == Path::Merge;
    let function = Function {
        name: "upsert",
        mode: if merge { "merge" } else { "streaming" },
        mapping: setup.upsert,
        invocations_per_s: batches_per_s,
        units: records,
        wait_ms: 0.0,
        shards: Some(shards(s.rate, s.record_bytes)),
        measured: m,
    };
    let (lambda, requests) = function.cost(s, p, &mut notes);
    let active = s.active_s();
    let mut cost = Breakdown {
        lambda,
        requests: batches_per_s * active * requests.per_invocation(|r| r.s3_put) * p.s3_put.value,
        kinesis: kinesis_cost(s, p),
        ..Breakdown::default()
    };
    if merge {
        cost.warehouse = warehouse_cost(batches_per_s, setup.merge_query_s, s, setup, p);
    } else {
        let gb = s.rate * active * (s.record_bytes + setup.lineage_bytes) / GB;
        cost.ingest = credits_usd(gb * p.streaming_credits_gb.value, p);
        let refreshes = 1.0 / setup.target_lag_s.max(1.0);
        cost.warehouse = warehouse_cost(refreshes, setup.refresh_query_s, s, setup, p);
    }
    Estimate { path, cost, notes }
}

/// Firehose Direct PUT to Snowflake: ingestion per GB in 5 KB steps, and the Snowpipe Streaming
/// credits Snowflake bills for the rows Firehose streams in.
fn firehose(s: &Scenario, p: &Prices) -> Estimate {
    let records = s.rate * s.active_s();
    let cost = Breakdown {
        firehose: records * firehose_billed_bytes(s.record_bytes) / GB * p.firehose_gb.value,
        ingest: credits_usd(
            records * s.record_bytes / GB * p.streaming_credits_gb.value,
            p,
        ),
        ..Breakdown::default()
    };
    Estimate {
        path: Path::Firehose,
        cost,
        notes: Vec::new(),
    }
}

/// The monthly cost of `path` for scenario `s`.
pub fn estimate(path: Path, s: &Scenario, setup: &Setup, m: &Measurements, p: &Prices) -> Estimate {
    match path {
        Path::Copy | Path::Snowpipe => micro_batch(path, s, setup, m, p),
        Path::Merge | Path::Streaming => upsert(path, s, setup, m, p),
        Path::Firehose => firehose(s, p),
    }
}

/// GB a day above which a warehouse kept running all day (`hours_per_day`) costs less than
/// Snowpipe's per-GB credits: the break-even of `copy` against `snowpipe` on Snowflake's side.
pub fn copy_breakeven_gb_per_day(setup: &Setup, prices: &Prices, hours_per_day: f64) -> f64 {
    let credits_per_day =
        hours_per_day * prices.warehouse_xs_credits_hour.value * setup.warehouse_size;
    credits_per_day / prices.snowpipe_credits_gb.value
}
