//! The loader's pipeline: parse the notifications, plan the COPY groups, send them, respond with
//! the failed SQS messages (or fail a direct invocation as a whole).

use std::collections::BTreeSet;
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use lambda_runtime::LambdaEvent;
use serde_json::Value;
use shared::config::{Env, ProcessEnv};
use shared::snowflake::SnowflakeClient;

use crate::config::{Config, LoadMode};
use crate::notify::{parse_invocation, Invocation, Item, Trigger};
use crate::outcome::{failed_all, Outcome};
use crate::pipe_service::PipeService;
use crate::plan::{plan, Group, Plan};
use crate::service::{row_count_mismatches, CopyService, LazyS3};

/// Why an invocation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is no notification the loader reads.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// Direct, SNS or EventBridge invocation: Lambda retries it, then the on-failure destination.
    #[error("{count} file(s) not loaded, first {file}: {reason}")]
    FilesFailed {
        /// Files not loaded (at least 1: a failed message counts as one).
        count: usize,
        /// The first failed file's key, or `-` when only a message failed.
        file: String,
        /// Why the first failed message failed.
        reason: String,
    },
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::FilesFailed { .. } => "LoadFailed",
        };
        shared::lambda::diagnostic(error_type, &error)
    }
}

/// The loader with its configuration and Snowflake client.
pub struct Loader {
    config: Config,
    client: SnowflakeClient,
    /// HEADs objects: files COPY left out, and row counts when reconciling.
    s3: LazyS3,
    /// Reconciles loaded rows with the counts recorded on the objects.
    reconcile: bool,
}

impl Loader {
    /// The loader as Lambda runs it: configuration from the environment, row counts reconciled.
    pub async fn from_env() -> Result<Self, lambda_runtime::Error> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let client = SnowflakeClient::new(config.snowflake.clone(), None).await?;
        Ok(Self::new(config, client).with_row_counts(None))
    }

    /// A loader that does not reconcile row counts (see [`Loader::with_row_counts`]); it reaches
    /// S3 (to tell a file missing from the stage) through the default AWS configuration.
    pub fn new(config: Config, client: SnowflakeClient) -> Self {
        Self {
            config,
            client,
            s3: LazyS3::new(None),
            reconcile: false,
        }
    }

    /// Compares each loaded file's rows with the count its writer recorded in the object's
    /// metadata, through `s3` (or a client made from the default AWS configuration when first
    /// needed).
    pub fn with_row_counts(mut self, s3: Option<aws_sdk_s3::Client>) -> Self {
        if s3.is_some() {
            self.s3 = LazyS3::new(s3);
        }
        self.reconcile = true;
        self
    }

    /// The configuration the loader was made with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Lambda entry point: an `SqsBatchResponse` for SQS, the outcome otherwise.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let deadline = self.config.function.deadline(event.context.deadline);
        let (response, outcome) = self.handle_value(&event.payload, deadline).await?;
        shared::lambda::emit(&outcome.metrics(&self.config.function.metrics_namespace));
        Ok(response)
    }

    /// Processes the event body as Lambda sends it.
    pub async fn handle_body(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<(Value, Outcome), HandlerError> {
        let value: Value =
            serde_json::from_str(body).map_err(|e| HandlerError::InvalidEvent(e.to_string()))?;
        self.handle_value(&value, deadline).await
    }

    /// Processes a parsed event. For SQS the response is an `SqsBatchResponse`.
    pub async fn handle_value(
        &self,
        event: &Value,
        deadline: Instant,
    ) -> Result<(Value, Outcome), HandlerError> {
        let started = Instant::now();
        let invocation = parse_invocation(event).map_err(|e| {
            tracing::error!(error = %e, "loader: unreadable event");
            HandlerError::InvalidEvent(e.to_string())
        })?;
        let Plan {
            mut outcome,
            mut item_failed,
            groups,
        } = plan(&invocation, &self.config);
        self.send(
            &groups,
            &invocation.items,
            deadline,
            &mut outcome,
            &mut item_failed,
        )
        .await;
        outcome.row_count_mismatches = self.reconcile(&outcome).await;
        let response = respond(&invocation, &item_failed, &mut outcome);
        log_invocation(&outcome, started);
        response.map(|r| (r, outcome))
    }

    /// Of the files an event names, the keys whose rows are already in their target table: the
    /// lineage the loader's COPY writes into every row (`shared::lineage`) is the lasting record
    /// of what landed, where Snowflake's load metadata expires after 64 days and `LOAD_HISTORY`
    /// after 14. Files the loader would skip or fail before any SQL are not asked about.
    pub async fn landed(&self, body: &str, deadline: Instant) -> Result<BTreeSet<String>, String> {
        let value: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
        let invocation = parse_invocation(&value).map_err(|e| e.to_string())?;
        let service = CopyService::new(&self.client, &self.config, &self.s3, deadline);
        let mut landed = BTreeSet::new();
        for group in plan(&invocation, &self.config).groups {
            if let Ok(target) = &group.target {
                landed.extend(service.landed(target, &group.files).await?);
            }
        }
        Ok(landed)
    }

    /// Loads every group (by COPY or through its pipe, as `LOAD_MODE` says) and counts each
    /// file's outcome; a failed or pending file fails the messages that carried it (the first
    /// reason a message fails is the one it keeps).
    async fn send(
        &self,
        groups: &[Group],
        items: &[Item],
        deadline: Instant,
        out: &mut Outcome,
        item_failed: &mut [Option<String>],
    ) {
        let copy = CopyService::new(&self.client, &self.config, &self.s3, deadline);
        for group in groups {
            out.files += group.files.len();
            let results = match (&self.config.load_mode, &group.target) {
                // the pipe's own COPY decides format and lineage (sql/35_pipes.sql)
                (LoadMode::Snowpipe(settings), target) => {
                    let results = PipeService::new(&self.client, settings, deadline)
                        .load_group(&group.table, &group.files, items, out)
                        .await;
                    match target {
                        Ok(target) => copy.settle_pending(target, &group.files, results).await,
                        Err(_) => results,
                    }
                }
                (LoadMode::Copy, Ok(target)) => copy.load_group(target, &group.files, out).await,
                (LoadMode::Copy, Err(error)) => failed_all(group.files.keys().cloned(), error),
            };
            for (path, outcome) in results {
                let file = &group.files[&path];
                if let Some(error) = out.count(&file.key, &group.table, outcome) {
                    for &i in &file.items {
                        item_failed[i].get_or_insert_with(|| error.clone());
                    }
                }
            }
        }
    }

    /// Loaded files whose rows differ from their recorded count (none when not reconciling).
    async fn reconcile(&self, out: &Outcome) -> usize {
        if !self.reconcile {
            return 0;
        }
        row_count_mismatches(&self.s3, &self.config.bucket, out).await
    }
}

/// SQS: the failed messages as batch item failures. Otherwise the outcome, or an error so
/// Lambda retries the whole invocation.
fn respond(
    invocation: &Invocation,
    item_failed: &[Option<String>],
    out: &mut Outcome,
) -> Result<Value, HandlerError> {
    out.messages_failed = item_failed.iter().filter(|f| f.is_some()).count();
    if invocation.trigger == Trigger::Sqs {
        return Ok(batch_response(invocation, item_failed, out));
    }
    match item_failed.iter().flatten().next() {
        None => Ok(serde_json::to_value(&*out).expect("serializable")),
        Some(reason) => Err(HandlerError::FilesFailed {
            count: out.failed.max(1),
            file: out.first_failed_file(),
            reason: reason.clone(),
        }),
    }
}

/// The `SqsBatchResponse` naming the failed messages, which `out` records too.
fn batch_response(
    invocation: &Invocation,
    item_failed: &[Option<String>],
    out: &mut Outcome,
) -> Value {
    let mut response = SqsBatchResponse::default();
    for (item, failed) in invocation.items.iter().zip(item_failed) {
        if failed.is_some() {
            let id = item.message_id.clone().unwrap_or_default();
            out.failed_message_ids.push(id.clone());
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            response.batch_item_failures.push(f);
        }
    }
    serde_json::to_value(&response).expect("serializable")
}

/// The invocation's one log line.
fn log_invocation(out: &Outcome, started: Instant) {
    tracing::info!(
        trigger = %out.trigger,
        messages = out.messages,
        messages_failed = out.messages_failed,
        test_events = out.test_events,
        files = out.files,
        loaded = out.loaded,
        already_loaded = out.already_loaded,
        partially_loaded = out.partially_loaded,
        row_count_mismatches = out.row_count_mismatches,
        failed = out.failed,
        not_in_stage = out.not_in_stage,
        pending = out.pending,
        insert_requests = out.insert_requests,
        report_polls = out.report_polls,
        skipped = out.skipped,
        statements = out.statements,
        history_queries = out.history_queries,
        rows_loaded = out.rows_loaded,
        rows_by_table = %serde_json::to_string(&out.rows_by_table).unwrap_or_default(),
        ms = started.elapsed().as_millis() as u64,
        "loader invocation"
    );
}
