//! The function: a Kinesis batch decoded, planned per table, written (MERGE or Snowpipe
//! Streaming), its rejects quarantined, and the partial batch response Lambda reads.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use shared::config::{Env, ProcessEnv};
use shared::kinesis::record::{
    decode_kinesis_event, min_sequence_number, KinesisRecord, PayloadBuffer,
};
use shared::kinesis::sequence::cmp_sequence_numbers;
use shared::rawzone::layout::Writer;
use shared::rawzone::quarantine::Rejected;
use shared::snowflake::{Recovery, SnowflakeClient, SnowflakeError};

use crate::changes::{latest_ddl, ChangeObjects};
use crate::config::{Config, WriteMode};
pub use crate::error::HandlerError;
use crate::mapping::TableMapping;
use crate::merge::Candidate;
use crate::outcome::{BatchOutcome, TableOutcome};
use crate::plan::{map_records, plan_mapping, plan_table, MappedBatch};
use crate::schema::Schemas;
use crate::service::{merge_table, TableFailure, TableResult};
use crate::streaming::StreamingWriter;

/// The upsert function with its configuration and clients, made once per container.
pub struct Upsert {
    config: Config,
    snowflake: SnowflakeClient,
    s3: aws_sdk_s3::Client,
    streaming: Option<StreamingWriter>,
    /// The columns of tables with `schema_evolution`, kept for the container's life.
    schemas: Schemas,
}

/// One table's result with the lowest sequence number of its rows (where a resend starts).
type Written<'r> = (String, Option<String>, TableResult<'r>);

impl Upsert {
    /// Reads the configuration and makes the clients (Lambda's init).
    pub async fn from_env() -> Result<Self, lambda_runtime::Error> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let aws = shared::aws::load_config().await;
        let snowflake = SnowflakeClient::new(config.snowflake.clone(), Some(&aws)).await?;
        let upsert = Self::new(config, snowflake, shared::aws::s3_client(&aws));
        Ok(upsert.with_kinesis(aws_sdk_kinesis::Client::new(&aws)))
    }

    /// In streaming mode, asks `kinesis` (`ListShards`) for a new shard's parents, whose
    /// channels are then dropped; without it they stay until someone drops them.
    pub fn with_kinesis(mut self, kinesis: aws_sdk_kinesis::Client) -> Self {
        self.streaming = self.streaming.map(|w| w.with_kinesis(kinesis));
        self
    }

    /// The function over given clients (tests, tools).
    pub fn new(config: Config, snowflake: SnowflakeClient, s3: aws_sdk_s3::Client) -> Self {
        let streaming = match &config.write_mode {
            WriteMode::Merge => None,
            WriteMode::Streaming(s) => Some(StreamingWriter::new(s.clone(), &snowflake)),
        };
        let schemas = Schemas::new(&snowflake);
        Self {
            config,
            snowflake,
            s3,
            streaming,
            schemas,
        }
    }

    /// The function as a recovery tool (replay, redrive) runs it: in streaming mode its
    /// channels carry `suffix` (unique per run), so old records never meet a live channel's
    /// committed offset, and what the change table already holds is skipped; merge mode is
    /// unchanged (the MERGE is idempotent by itself).
    pub fn for_recovery(&mut self, suffix: &str) {
        if let WriteMode::Streaming(settings) = &mut self.config.write_mode {
            settings.channel_suffix = Some(suffix.to_string());
            self.streaming = Some(StreamingWriter::new(settings.clone(), &self.snowflake));
        }
    }

    /// The Lambda entry point: the batch response, and one metrics line.
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

    /// Processes the event body as Lambda sends it, finishing before `deadline`: plan, write
    /// each table, quarantine what was rejected, respond.
    pub async fn handle_body(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<(KinesisEventResponse, BatchOutcome), HandlerError> {
        let started = Instant::now();
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(body, &mut payloads)?;
        let batch = map_records(&self.config, &records);
        let mut outcome = BatchOutcome::of(&records, &batch);
        let MappedBatch {
            by_table,
            mut rejected,
            ..
        } = batch;
        let written = self.write_tables(by_table, deadline).await;
        let mut failed = collect_tables(written, &mut outcome, &mut rejected)?;
        // After the writes, so rows Snowflake refused go into the batch's one quarantine object.
        keep_below_retry(&mut rejected, &failed);
        outcome.quarantined = rejected.len();
        failed.extend(self.quarantine(&rejected, &mut outcome).await?);
        let response = shared::kinesis::batch::kinesis_response(failed.iter().map(String::as_str));
        log_batch(&outcome, &response, started);
        Ok((response, outcome))
    }

    /// Writes every table of the batch at once, each in the configured mode.
    async fn write_tables<'r>(
        &self,
        by_table: BTreeMap<String, Vec<Candidate<'r>>>,
        deadline: Instant,
    ) -> Vec<Written<'r>> {
        let writes = by_table.into_iter().map(|(table, candidates)| async move {
            let lowest =
                min_sequence_number(candidates.iter().map(|c| c.meta.sequence_number.as_ref()))
                    .map(str::to_owned);
            // Boxed as a trait object (one allocation per table and batch): nested this deep, the
            // future's type made proving it `Send` overflow the compiler's recursion limit in
            // the crates that spawn `handle_body` (tools, e2e).
            let write: Pin<Box<dyn Future<Output = TableResult<'r>> + Send + '_>> =
                Box::pin(self.write_table(&table, candidates, deadline));
            let result = write.await;
            (table, lowest, result)
        });
        futures_util::future::join_all(writes).await
    }

    /// Writes one table's rows in the configured mode, evolving its schema first when its
    /// mapping asks for it.
    async fn write_table<'r>(
        &self,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> TableResult<'r> {
        let mapping = self
            .config
            .tables
            .get(table)
            .expect("candidates only exist for mapped tables");
        if mapping.evolution.is_some() {
            return self
                .write_evolving(mapping, table, candidates, deadline)
                .await;
        }
        match &self.streaming {
            None => {
                let plan = plan_table(&self.config, table, candidates);
                merge_table(&self.snowflake, plan, deadline).await
            }
            Some(writer) => {
                writer
                    .write_table(mapping, table, candidates, deadline)
                    .await
            }
        }
    }

    /// [`Self::write_table`] for a table whose new fields become columns: the table evolved
    /// (the target, or the change table with its channel and latest state), then written with
    /// the evolved columns; drift is quarantined with the rows Snowflake refused.
    async fn write_evolving<'r>(
        &self,
        mapping: &TableMapping,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> TableResult<'r> {
        let objects = self.streaming.as_ref().map(|w| {
            let s = w.settings();
            ChangeObjects::of(mapping, &s.change_suffix, &s.latest_suffix)
        });
        let evolved_table = objects
            .as_ref()
            .map_or(&mapping.target, |o| &o.change_table);
        let rows = candidates.len();
        let evolved = match self
            .schemas
            .evolve(mapping, evolved_table, candidates, deadline)
            .await
        {
            Ok(evolved) => evolved,
            Err(e) => return Err(evolution_failed(table, e, rows)),
        };
        let result = match (&self.streaming, &objects) {
            (Some(writer), Some(objects)) => {
                if evolved.changed() {
                    writer.reopen(&objects.pipe, &objects.latest);
                }
                let s = writer.settings();
                let ddl = latest_ddl(
                    &evolved.mapping,
                    objects,
                    &s.latest_target_lag,
                    &s.latest_warehouse,
                );
                if let Err(e) = writer.refresh_latest(&objects.latest, &ddl, deadline).await {
                    return Err(evolution_failed(table, e, rows));
                }
                writer
                    .write_table(&evolved.mapping, table, evolved.candidates, deadline)
                    .await
            }
            _ => {
                let plan = plan_mapping(&self.config, &evolved.mapping, table, evolved.candidates);
                merge_table(&self.snowflake, plan, deadline).await
            }
        };
        match result {
            Ok((mut outcome, mut refused)) => {
                outcome.columns_added = evolved.added;
                outcome.columns_widened = evolved.widened;
                outcome.drift_quarantined = evolved.rejected.len();
                refused.extend(evolved.rejected);
                Ok((outcome, refused))
            }
            Err(TableFailure::Retry(outcome)) => {
                if outcome.columns_changed {
                    self.schemas.forget(evolved_table);
                }
                Err(TableFailure::Retry(outcome))
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Puts the batch's rejected records into one quarantine object; on failure, the sequence
    /// number Lambda must resend from.
    async fn quarantine(
        &self,
        rejected: &[Rejected<'_>],
        outcome: &mut BatchOutcome,
    ) -> Result<Option<String>, HandlerError> {
        let layout = &self.config.error_layout;
        let Some(object) = shared::rawzone::quarantine::object(layout, Writer::Upsert, rejected)?
        else {
            return Ok(None);
        };
        outcome.quarantine_key = Some(object.key.clone());
        match shared::rawzone::s3::put_object(&self.s3, &self.config.error_destination, &object)
            .await
        {
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::error!(error = %e, "quarantine put failed; Lambda will resend from the lowest rejected record");
                Ok(Some(object.min_sequence_number.clone()))
            }
        }
    }
}

/// Why a table could not be evolved: credentials fail the invocation, anything else has Lambda
/// resend the table (its columns are read again then).
fn evolution_failed(table: &str, error: SnowflakeError, rows: usize) -> TableFailure {
    if error.recovery() == Recovery::Fatal {
        return TableFailure::Fatal(HandlerError::Snowflake(error));
    }
    tracing::error!(table, error = %error, "schema evolution failed; Lambda will resend from this table's lowest sequence number");
    TableFailure::Retry(TableOutcome {
        rows,
        error: Some(format!("schema evolution: {error}")),
        ..TableOutcome::default()
    })
}

/// Files each table's outcome and refused rows; the sequence numbers Lambda must resend from,
/// or the error that fails the invocation.
fn collect_tables<'r>(
    written: Vec<Written<'r>>,
    outcome: &mut BatchOutcome,
    rejected: &mut Vec<Rejected<'r>>,
) -> Result<Vec<String>, HandlerError> {
    let mut failed = Vec::new();
    for (table, lowest, result) in written {
        let table_outcome = match result {
            Ok((t, refused)) => {
                rejected.extend(refused);
                t
            }
            Err(TableFailure::Fatal(e)) => {
                tracing::error!(table = %table, error = %e, "credentials or configuration refused; failing the invocation");
                return Err(e);
            }
            Err(TableFailure::Retry(t)) => {
                failed.extend(lowest);
                t
            }
        };
        outcome.tables.insert(table, table_outcome);
    }
    Ok(failed)
}

/// The batch's one log line.
/// Leaves out the rejects Lambda resends: it resends every record from the lowest failed one
/// on, and those are quarantined by the invocation that gets them again (a KPL aggregate's
/// sub-records share its sequence number and are resent with it). Quarantining them now too would
/// put one record in two quarantine objects.
fn keep_below_retry(rejected: &mut Vec<Rejected<'_>>, failed: &[String]) {
    if let Some(retry_from) = min_sequence_number(failed.iter().map(String::as_str)) {
        rejected.retain(|r| cmp_sequence_numbers(&r.meta.sequence_number, retry_from).is_lt());
    }
}

fn log_batch(outcome: &BatchOutcome, response: &KinesisEventResponse, started: Instant) {
    let tables = || outcome.tables.values();
    let merged: BTreeMap<&str, (u64, u64, u64)> = outcome
        .tables
        .iter()
        .map(|(t, o)| (t.as_str(), (o.inserted, o.updated, o.deleted)))
        .collect();
    tracing::info!(
        records = outcome.records,
        quarantined = outcome.quarantined,
        skipped = ?outcome.skipped,
        duplicates = tables().map(|t| t.duplicates).sum::<usize>(),
        merged = ?merged,
        statements = tables().map(|t| t.statements).sum::<usize>(),
        requests = tables().map(|t| t.http_requests).sum::<u32>(),
        failed_tables = tables().filter(|t| t.error.is_some()).count(),
        retry_from = response.batch_item_failures.first().and_then(|f| f.item_identifier.as_deref()),
        ms = started.elapsed().as_millis() as u64,
        "upsert batch"
    );
}

impl BatchOutcome {
    /// The counts known once the batch is mapped; logs a reconciliation mismatch (a bug, never
    /// data) when records read ≠ mapped + quarantined + skipped.
    fn of(records: &[KinesisRecord<'_>], batch: &MappedBatch<'_>) -> Self {
        let skipped: usize = batch.skipped.values().sum();
        let accounted = batch.mapped + batch.rejected.len() + skipped;
        let mismatches = usize::from(accounted != records.len());
        if mismatches > 0 {
            tracing::error!(
                records = records.len(),
                mapped = batch.mapped,
                quarantined = batch.rejected.len(),
                skipped = ?batch.skipped,
                shard_id = records.first().map(|r| r.meta.shard_id.as_ref()),
                first_sequence_number = records.first().map(|r| r.meta.sequence_number.as_str()),
                last_sequence_number = records.last().map(|r| r.meta.sequence_number.as_str()),
                "reconciliation mismatch: records read ≠ mapped + quarantined + skipped"
            );
        }
        BatchOutcome {
            records: records.len(),
            skipped: batch.skipped.clone(),
            tables: BTreeMap::new(),
            mapped: batch.mapped,
            newest_arrival_ms: records.iter().map(|r| r.meta.arrival_ms).max(),
            mismatches,
            ..BatchOutcome::default()
        }
    }
}
