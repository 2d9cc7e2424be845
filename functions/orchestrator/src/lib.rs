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
use shared::rawzone::s3::PutError;
use shared::rawzone::{plan, PlannedObject, RawZoneConfig};

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    pub raw_zone: RawZoneConfig,
    /// How many objects are put at once (`PUT_CONCURRENCY`, default 8).
    pub put_concurrency: usize,
    /// Time kept back from Lambda's deadline (`DEADLINE_MARGIN_MS`, default 2000): no put starts
    /// or is waited for after it, so the response reporting the unconfirmed objects still
    /// reaches Lambda.
    pub deadline_margin: Duration,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let put_concurrency = env.parse_or("PUT_CONCURRENCY", 8usize)?;
        if put_concurrency == 0 {
            return Err(ConfigError::new("PUT_CONCURRENCY", "must be at least 1"));
        }
        let deadline_margin = Duration::from_millis(env.parse_or("DEADLINE_MARGIN_MS", 2_000u64)?);
        Ok(Self {
            raw_zone: RawZoneConfig::from_env(env)?,
            put_concurrency,
            deadline_margin,
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
        let deadline = shared::kinesis::batch::deadline_from(
            event.context.deadline,
            self.config.deadline_margin,
        );
        self.handle_body(event.payload.get(), deadline)
            .await
            .map(|(response, _)| response)
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
        let outcome = BatchOutcome {
            records: plan.records,
            quarantined: plan.quarantined,
            objects_written: plan.objects.len() + usize::from(plan.quarantine.is_some())
                - failures.len(),
            objects_failed: failures.len(),
            objects_unconfirmed: unconfirmed,
            bytes_in: plan.bytes_in,
            bytes_out: plan.bytes_out(),
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
