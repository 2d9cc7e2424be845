//! Orchestrator: a Kinesis batch becomes compressed NDJSON or CSV objects in the S3 raw zone.
//!
//! Records are grouped by (table, field partition, arrival hour, shard), one object per group,
//! under keys that depend only on the records, so a retried batch overwrites what it wrote
//! before. Unusable records go to one quarantine object with their reasons. When a put fails
//! after the SDK's retries, or is not confirmed by the invocation's deadline less a margin, the
//! lowest sequence number of those objects is reported to Lambda, which resends the batch from
//! there; the invocation itself never runs into Lambda's time-out.

use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use shared::config::{ConfigError, Env, ProcessEnv};
use shared::kinesis::record::{decode_kinesis_event, DecodeError, PayloadBuffer};
use shared::lambda::FunctionSettings;
use shared::rawzone::s3::PutError;
use shared::rawzone::{plan, PlannedObject, RawZoneConfig};

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw_zone: RawZoneConfig,
    /// How many objects are put at once (`PUT_CONCURRENCY`, default 8).
    pub put_concurrency: usize,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub function: FunctionSettings,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let put_concurrency = env.parse_or("PUT_CONCURRENCY", 8usize)?;
        if put_concurrency == 0 {
            return Err(ConfigError::new("PUT_CONCURRENCY", "must be at least 1"));
        }
        Ok(Self {
            raw_zone: RawZoneConfig::from_env(env)?,
            put_concurrency,
            function: FunctionSettings::from_env(env, Duration::from_millis(2000))?,
        })
    }
}

/// Why an invocation failed as a whole (as opposed to a partial batch failure).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("encoding the batch failed: {0}")]
    Encode(#[from] std::io::Error),
}

/// The handler with its configuration and S3 client.
pub struct Orchestrator {
    config: Config,
    s3: aws_sdk_s3::Client,
}

/// What one batch did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub records: usize,
    pub quarantined: usize,
    pub objects_written: usize,
    /// Objects not written: refused by S3, or not confirmed before the deadline.
    pub objects_failed: usize,
    /// Of those, the ones not confirmed before the deadline.
    pub objects_unconfirmed: usize,
    pub bytes_in: usize,
    pub bytes_out: usize,
    /// Records in the data objects (written or to be resent).
    pub in_objects: usize,
    /// The table of every record, when the batch had one.
    pub table: Option<String>,
    /// Arrival of the newest record, ms since the epoch.
    pub newest_arrival_ms: Option<i64>,
    /// 1 when records ≠ records in objects + quarantined (a bug, never data): logged as an error.
    pub mismatches: usize,
}

impl BatchOutcome {
    /// The invocation's EMF document.
    pub fn metrics(&self, namespace: &str, now_ms: i64) -> shared::metrics::Emf {
        use shared::metrics::{Emf, Unit};
        let written_bytes = self.bytes_out as f64;
        let mut emf = Emf::new(namespace, "orchestrator")
            .table(self.table.as_deref())
            .count("Records", self.records)
            .count("RecordsInObjects", self.in_objects)
            .count("Quarantined", self.quarantined)
            .count("ObjectsWritten", self.objects_written)
            .count("ObjectsFailed", self.objects_failed)
            .metric("BytesIn", Unit::Bytes, self.bytes_in as f64)
            .metric("BytesWritten", Unit::Bytes, written_bytes)
            .count("ReconciliationMismatches", self.mismatches);
        if let Some(arrival) = self.newest_arrival_ms {
            emf = emf.metric(
                "LagMs",
                Unit::Milliseconds,
                (now_ms - arrival).max(0) as f64,
            );
        }
        emf
    }
}

impl Orchestrator {
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let aws = shared::aws::load_config().await;
        Ok(Self::new(config, shared::aws::s3_client(&aws)))
    }

    pub fn new(config: Config, s3: aws_sdk_s3::Client) -> Self {
        Self { config, s3 }
    }

    pub async fn handle(
        &self,
        event: LambdaEvent<Box<RawValue>>,
    ) -> Result<KinesisEventResponse, HandlerError> {
        let deadline = self.config.function.deadline(event.context.deadline);
        let (response, outcome) = self.handle_body(event.payload.get(), deadline).await?;
        let now = shared::metrics::now_ms();
        println!(
            "{}",
            outcome
                .metrics(&self.config.function.metrics_namespace, now)
                .to_line(now)
        );
        Ok(response)
    }

    /// Processes the event body as Lambda sends it; no put is started or waited for after
    /// `deadline`.
    pub async fn handle_body(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<(KinesisEventResponse, BatchOutcome), HandlerError> {
        let started = Instant::now();
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(body, &mut payloads)?;
        let plan = plan(&self.config.raw_zone, &records)?;
        let objects: Vec<&PlannedObject> = plan.objects.iter().chain(&plan.quarantine).collect();
        let failures = shared::rawzone::s3::put_all(
            &self.s3,
            &self.config.raw_zone.bucket,
            objects,
            self.config.put_concurrency,
            deadline,
        )
        .await;
        for (object, error) in &failures {
            tracing::error!(key = %object.key, records = object.records, error = %error, "put not confirmed; Lambda will resend from the lowest sequence number of the unconfirmed objects");
        }
        let unconfirmed = failures
            .iter()
            .filter(|(_, e)| matches!(e, PutError::Deadline { .. }))
            .count();
        let response = shared::kinesis::batch::kinesis_response(
            failures.iter().map(|(o, _)| o.min_sequence_number.as_str()),
        );
        let in_objects: usize = plan.objects.iter().map(|o| o.records).sum();
        let mut tables = plan.objects.iter().filter_map(|o| o.table.as_deref());
        let table = tables
            .next()
            .filter(|first| tables.all(|t| t == *first))
            .map(String::from);
        let mismatches = usize::from(plan.records != in_objects + plan.quarantined);
        if mismatches > 0 {
            tracing::error!(
                records = plan.records,
                in_objects,
                quarantined = plan.quarantined,
                shard_id = records.first().map(|r| r.meta.shard_id.as_ref()),
                first_sequence_number = records.first().map(|r| r.meta.sequence_number.as_ref()),
                last_sequence_number = records.last().map(|r| r.meta.sequence_number.as_ref()),
                "reconciliation mismatch: records read ≠ records in objects + quarantined"
            );
        }
        let outcome = BatchOutcome {
            records: plan.records,
            quarantined: plan.quarantined,
            objects_written: plan.objects.len() + usize::from(plan.quarantine.is_some())
                - failures.len(),
            objects_failed: failures.len(),
            objects_unconfirmed: unconfirmed,
            bytes_in: plan.bytes_in,
            bytes_out: plan.bytes_out(),
            in_objects,
            table,
            newest_arrival_ms: records.iter().map(|r| r.meta.arrival_ms).max(),
            mismatches,
        };
        tracing::info!(
            records = outcome.records,
            quarantined = outcome.quarantined,
            objects_written = outcome.objects_written,
            objects_failed = outcome.objects_failed,
            objects_unconfirmed = outcome.objects_unconfirmed,
            bytes_in = outcome.bytes_in,
            bytes_out = outcome.bytes_out,
            retry_from = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.as_deref()),
            ms = started.elapsed().as_millis() as u64,
            "orchestrator batch"
        );
        Ok((response, outcome))
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::Decode(_) => "InvalidEvent",
            HandlerError::Encode(_) => "EncodeError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}
