//! Orchestrator: a Kinesis batch becomes compressed NDJSON or CSV objects in the S3 raw zone.
//!
//! Records are grouped by (table, field partition, arrival hour, shard), one object per group,
//! under keys that depend only on the records, so a retried batch overwrites what it wrote
//! before. Unusable records go to one quarantine object with their reasons. When a put fails
//! after the SDK's retries, or is not confirmed by the invocation's deadline less a margin, the
//! lowest sequence number of those objects is reported to Lambda, which resends the batch from
//! there; the invocation itself never runs into Lambda's time-out.
//!
//! Laid out as a pipeline: [`Config`] read once at init, the pure plan
//! (`shared::rawzone::plan`), the puts (`service`), and the handler that runs them in turn and
//! answers Lambda with a [`BatchOutcome`] for the metrics.

mod config;
mod handler;
mod outcome;
mod service;

pub use config::Config;
pub use handler::{HandlerError, Orchestrator};
pub use outcome::BatchOutcome;
