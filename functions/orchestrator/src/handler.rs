//! The pipeline of one invocation: decode → plan → put → respond.

use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use shared::config::{ConfigError, Env, ProcessEnv};
use shared::kinesis::batch::kinesis_response;
use shared::kinesis::record::{decode_kinesis_event, DecodeError, PayloadBuffer};
use shared::rawzone::plan;

use crate::config::Config;
use crate::outcome::BatchOutcome;
use crate::service::RawZoneService;

/// Why an invocation failed as a whole (as opposed to a partial batch failure).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is not a Kinesis batch.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// Compressing or encoding an object failed.
    #[error("encoding the batch failed: {0}")]
    Encode(#[from] std::io::Error),
}

/// The handler with its configuration and S3 client.
pub struct Orchestrator {
    config: Config,
    service: RawZoneService,
}

impl Orchestrator {
    /// Reads the configuration from the process environment and builds the S3 client.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let aws = shared::aws::load_config().await;
        Ok(Self::new(config, shared::aws::s3_client(&aws)))
    }

    /// The handler for `config`, writing with `s3`.
    pub fn new(config: Config, s3: aws_sdk_s3::Client) -> Self {
        let service = RawZoneService::new(
            s3,
            config.raw_zone.destination.clone(),
            config.put_concurrency,
        );
        Self { config, service }
    }

    /// Handles one Lambda invocation and prints its metrics line.
    pub async fn handle(
        &self,
        event: LambdaEvent<Box<RawValue>>,
    ) -> Result<KinesisEventResponse, HandlerError> {
        let deadline = self.config.function.deadline(event.context.deadline);
        let (response, outcome) = self.handle_body(event.payload.get(), deadline).await?;
        let namespace = &self.config.function.metrics_namespace;
        shared::lambda::emit(&outcome.metrics(namespace, shared::metrics::now_ms()));
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
        let failures = self.service.put(&plan, deadline).await;
        let response =
            kinesis_response(failures.iter().map(|(o, _)| o.min_sequence_number.as_str()));
        let outcome = BatchOutcome::new(&plan, &records, &failures);
        outcome.log(&response, started.elapsed());
        Ok((response, outcome))
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::Decode(_) => "InvalidEvent",
            HandlerError::Encode(_) => "EncodeError",
        };
        shared::lambda::diagnostic(error_type, &error)
    }
}
