//! What a measuring run recorded (`local/cost/measured.json`) and the per-batch fits the model
//! reads from it.

use serde::{Deserialize, Serialize};

/// A measuring run: where and when, the workloads' record sizes, and one case per function,
/// mode and workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurements {
    /// When the run started (UTC, RFC 3339).
    pub measured_at: String,
    /// The machine (`uname -srm`, cores) the binaries ran on.
    pub machine: String,
    /// The commit the binaries were built from.
    pub commit: String,
    /// How the binaries were built (`release`, as Lambda runs them).
    pub binaries: String,
    /// The generated workloads.
    pub workloads: Vec<Workload>,
    /// One per function, mode and workload.
    pub cases: Vec<Case>,
}

/// A generated workload's records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    /// `sensor`, `event5k` or `cdc`.
    pub name: String,
    /// Mean payload bytes per record, as put to Kinesis.
    pub record_bytes: f64,
    /// Mean bytes per record of the orchestrator's objects, uncompressed (payload and lineage).
    pub file_bytes_per_record: f64,
}

/// One function in one mode on one workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Case {
    /// `orchestrator`, `upsert` or `loader`.
    pub function: String,
    /// `copy`, `snowpipe`, `merge`, `streaming`, or `-` for the orchestrator.
    pub mode: String,
    /// The workload's name.
    pub workload: String,
    /// What a batch is counted in: `record` (Kinesis) or `file` (loader notifications).
    pub unit: String,
    /// Billed init of the cold invocation (exec until the first `/next` poll).
    pub init_ms: f64,
    /// The warm invocations, grouped by batch size.
    pub batches: Vec<Batch>,
    /// Requests the local AWS stand-in served during the warm invocations.
    pub requests: Requests,
}

/// Warm invocations of one batch size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    /// Units (records or files) per batch.
    pub units: u64,
    /// Records per batch.
    pub records: u64,
    /// Payload bytes per batch.
    pub bytes: u64,
    /// Billed milliseconds of each invocation, as the Runtime API stand-in timed them.
    pub billed_ms: Vec<u64>,
}

/// Requests counted in the AWS stand-in's request log over a case's warm invocations.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Requests {
    /// Invocations counted.
    pub invocations: u64,
    /// Units (records or files) in them.
    pub units: u64,
    /// S3 PUT/POST/LIST requests.
    pub s3_put: u64,
    /// S3 GET/HEAD requests (the local Snowflake's reads of staged files included).
    pub s3_get: u64,
    /// JSON-protocol requests (SQS, Kinesis, STS, ...).
    pub other: u64,
}

/// Billed milliseconds of a batch as a line: `fixed_ms + per_unit_ms × units`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// What every invocation costs whatever its size.
    pub fixed_ms: f64,
    /// What each record (or file) adds.
    pub per_unit_ms: f64,
}

impl Fit {
    /// The billed milliseconds of a batch of `units`, never below 1 ms.
    pub fn billed_ms(&self, units: f64) -> f64 {
        (self.fixed_ms + self.per_unit_ms * units).max(1.0)
    }
}

/// The median of `values` (0 when empty).
pub(crate) fn median(values: &[u64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

impl Case {
    /// The least-squares line through each batch size's median; neither part below 0.
    pub fn fit(&self) -> Fit {
        let points: Vec<(f64, f64)> = self
            .batches
            .iter()
            .filter(|b| !b.billed_ms.is_empty())
            .map(|b| (b.units as f64, median(&b.billed_ms)))
            .collect();
        let n = points.len() as f64;
        if points.is_empty() {
            return Fit {
                fixed_ms: 0.0,
                per_unit_ms: 0.0,
            };
        }
        let (mx, my) = (
            points.iter().map(|p| p.0).sum::<f64>() / n,
            points.iter().map(|p| p.1).sum::<f64>() / n,
        );
        let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
        let fixed = (my - slope * mx).max(0.0);
        Fit {
            fixed_ms: fixed,
            per_unit_ms: slope,
        }
    }
}

impl Requests {
    /// Requests of `kind` per invocation.
    pub fn per_invocation(&self, kind: fn(&Requests) -> u64) -> f64 {
        kind(self) as f64 / self.invocations.max(1) as f64
    }

    /// Requests of `kind` per unit (record or file).
    pub fn per_unit(&self, kind: fn(&Requests) -> u64) -> f64 {
        kind(self) as f64 / self.units.max(1) as f64
    }
}

impl Measurements {
    /// The case of `function` in `mode` on `workload`, if measured.
    pub fn case(&self, function: &str, mode: &str, workload: &str) -> Option<&Case> {
        self.cases
            .iter()
            .find(|c| c.function == function && c.mode == mode && c.workload == workload)
    }

    /// The workload called `name`.
    pub fn workload(&self, name: &str) -> Option<&Workload> {
        self.workloads.iter().find(|w| w.name == name)
    }

    /// The measured workload whose record size is nearest `bytes` (on a log scale).
    pub fn nearest_workload(&self, bytes: f64) -> Option<&Workload> {
        let distance = |w: &Workload| (w.record_bytes.max(1.0).ln() - bytes.max(1.0).ln()).abs();
        self.workloads
            .iter()
            .min_by(|a, b| distance(a).total_cmp(&distance(b)))
    }
}
