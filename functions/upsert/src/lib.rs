//! Upsert: a Kinesis batch becomes one MERGE per target table in Snowflake.
//!
//! Each record is routed to a table, mapped and coerced to typed columns in Rust (a record that
//! does not fit is quarantined to S3, the rest land), de-duplicated by key (newest sequence
//! number wins) and sent as bound JSON in one MERGE per table and chunk. The MERGE only lets a
//! newer version overwrite a row, and every chunk carries a request id derived from its table,
//! shard and sequence range, so retries and replays leave the table as if each record had been
//! applied once, in order.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::KinesisEventResponse;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use shared::config::{ConfigError, Env, ProcessEnv};
use shared::kinesis::payload::Extractor;
use shared::kinesis::record::{
    decode_kinesis_event, min_sequence_number, DecodeError, KinesisRecord, PayloadBuffer,
};
use shared::kinesis::route::{route_record, Router};
use shared::lambda::FunctionSettings;
use shared::rawzone::layout::{Layout, Writer};
use shared::rawzone::quarantine::{RawData, Rejected};
use shared::snowflake::{
    request_id_for, Binding, SnowflakeClient, SnowflakeConfig, SnowflakeError, Statement,
};
use crate::envelope::{is_tombstone, Skip};
use crate::mapping::{Mapped, TableMapping, TableMappings};
use crate::merge::{chunks, dedup, merge_sql, Candidate, Chunk};

pub mod changes;
pub mod envelope;
pub mod mapping;
pub mod merge;
mod number;
mod streaming;
use streaming::{StreamFailure, StreamingWriter};
pub use streaming::{StreamingSettings, WriteMode};

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    pub router: Router,
    pub tables: TableMappings,
    pub extractor: Extractor,
    /// Where rejected records go (`ERROR_BUCKET`, `ERROR_PREFIX` default `errors`; keys continue
    /// with `upsert/`, see [`Writer`]).
    pub error_bucket: String,
    pub error_layout: Layout,
    pub snowflake: SnowflakeConfig,
    /// Rows per MERGE statement (`MAX_ROWS_PER_STATEMENT`, default 5,000).
    pub max_rows: usize,
    /// Approximate bytes of row JSON per statement (`MAX_BYTES_PER_STATEMENT`, default 1 MB:
    /// Snowflake advises keeping a statement with its binds near 1 MB,
    /// https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests#using-bind-variables-in-a-statement).
    pub max_bytes: usize,
    /// `WRITE_MODE`: `merge` (default) or `streaming` (Snowpipe Streaming into change tables).
    pub write_mode: WriteMode,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub function: FunctionSettings,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let snowflake = SnowflakeConfig::from_env(env)?;
        let mut extractor = Extractor::new();
        let router = Router::from_env(env, &mut extractor)?;
        // Targets are qualified with the connection's database and schema (already validated).
        let qualifier: Vec<&str> = snowflake
            .database
            .iter()
            .map(String::as_str)
            .chain([snowflake.schema.as_str()])
            .collect();
        let tables = TableMappings::from_env(env, &router.tables(), &qualifier, &mut extractor)?;
        let error_bucket = env.required("ERROR_BUCKET")?;
        let error_layout = Layout::from_env(env)?;
        let max_rows = env.parse_or("MAX_ROWS_PER_STATEMENT", 5_000usize)?;
        if max_rows == 0 {
            return Err(ConfigError::new(
                "MAX_ROWS_PER_STATEMENT",
                "must be at least 1",
            ));
        }
        let max_bytes = env.parse_or("MAX_BYTES_PER_STATEMENT", 1_000_000usize)?;
        let write_mode = WriteMode::from_env(env, &snowflake)?;
        Ok(Self {
            router,
            tables,
            extractor,
            error_bucket,
            error_layout,
            snowflake,
            max_rows,
            max_bytes,
            write_mode,
            function: FunctionSettings::from_env(env, Duration::from_millis(3000))?,
        })
    }
}

/// Why an invocation failed as a whole; Lambda retries the batch.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("Snowflake refused the credentials or configuration: {0}")]
    Snowflake(SnowflakeError),
    #[error("Snowpipe Streaming refused the credentials or configuration: {0}")]
    Streaming(shared::snowflake::streaming::StreamingError),
    #[error("encoding quarantined records failed: {0}")]
    Encode(#[from] std::io::Error),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::Decode(_) => "InvalidEvent",
            HandlerError::Snowflake(_) | HandlerError::Streaming(_) => "SnowflakeConfiguration",
            HandlerError::Encode(_) => "EncodeError",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What one table's MERGEs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    pub rows: usize,
    pub duplicates: usize,
    /// Rows Snowflake refused (a data error isolated by splitting the statement), quarantined.
    pub refused: usize,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub statements: usize,
    pub http_requests: u32,
    pub error: Option<String>,
}

/// What one batch did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub records: usize,
    pub quarantined: usize,
    /// Valid change records applied to no row (truncates, tombstones, DMS control records), by
    /// reason.
    pub skipped: BTreeMap<&'static str, usize>,
    pub tables: BTreeMap<String, TableOutcome>,
    /// Records that became rows (a DMS key change is one record and two rows).
    pub mapped: usize,
    /// Arrival of the newest record, ms since the epoch.
    pub newest_arrival_ms: Option<i64>,
    /// 1 when records ≠ mapped + quarantined at mapping + skipped (a bug, never data).
    pub mismatches: usize,
}

impl BatchOutcome {
    /// The invocation's EMF document; per table when the batch had one table.
    pub fn metrics(&self, namespace: &str, now_ms: i64) -> shared::metrics::Emf {
        use shared::metrics::{Emf, Unit};
        let sum = |f: fn(&TableOutcome) -> u64| self.tables.values().map(f).sum::<u64>() as f64;
        let table = (self.tables.len() == 1)
            .then(|| self.tables.keys().next().map(String::as_str))
            .flatten();
        let mut emf = Emf::new(namespace, "upsert")
            .table(table)
            .count("Records", self.records)
            .count("Quarantined", self.quarantined)
            .count("Skipped", self.skipped.values().sum())
            .metric(
                "DuplicatesCollapsed",
                Unit::Count,
                sum(|t| t.duplicates as u64),
            )
            .metric("RowsInserted", Unit::Count, sum(|t| t.inserted))
            .metric("RowsUpdated", Unit::Count, sum(|t| t.updated))
            .metric("RowsDeleted", Unit::Count, sum(|t| t.deleted))
            .metric("Statements", Unit::Count, sum(|t| t.statements as u64))
            .metric(
                "SnowflakeRequests",
                Unit::Count,
                sum(|t| u64::from(t.http_requests)),
            )
            .count(
                "FailedTables",
                self.tables.values().filter(|t| t.error.is_some()).count(),
            )
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

pub struct Upsert {
    config: Config,
    snowflake: SnowflakeClient,
    s3: aws_sdk_s3::Client,
    streaming: Option<StreamingWriter>,
}

impl Upsert {
    pub async fn from_env() -> Result<Self, lambda_runtime::Error> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let aws = shared::aws::load_config().await;
        let snowflake = SnowflakeClient::new(config.snowflake.clone(), Some(&aws)).await?;
        Ok(Self::new(config, snowflake, shared::aws::s3_client(&aws)))
    }

    pub fn new(config: Config, snowflake: SnowflakeClient, s3: aws_sdk_s3::Client) -> Self {
        let streaming = match &config.write_mode {
            WriteMode::Merge => None,
            WriteMode::Streaming(s) => Some(StreamingWriter::new(s.clone(), &snowflake)),
        };
        Self {
            config,
            snowflake,
            s3,
            streaming,
        }
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

    /// Processes the event body as Lambda sends it, finishing before `deadline`.
    pub async fn handle_body(
        &self,
        body: &str,
        deadline: Instant,
    ) -> Result<(KinesisEventResponse, BatchOutcome), HandlerError> {
        let started = Instant::now();
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(body, &mut payloads)?;
        let Mapping {
            by_table,
            mut rejected,
            skipped,
            mapped,
        } = map_records(&self.config, &records);
        let accounted = mapped + rejected.len() + skipped.values().sum::<usize>();
        let mismatches = usize::from(accounted != records.len());
        if mismatches > 0 {
            tracing::error!(
                records = records.len(),
                mapped,
                quarantined = rejected.len(),
                skipped = ?skipped,
                shard_id = records.first().map(|r| r.meta.shard_id.as_ref()),
                first_sequence_number = records.first().map(|r| r.meta.sequence_number.as_ref()),
                last_sequence_number = records.last().map(|r| r.meta.sequence_number.as_ref()),
                "reconciliation mismatch: records read ≠ mapped + quarantined + skipped"
            );
        }

        let mut failed: Vec<String> = Vec::new();
        let merges = by_table.into_iter().map(|(table, candidates)| async move {
            let lowest =
                min_sequence_number(candidates.iter().map(|c| c.meta.sequence_number.as_ref()))
                    .map(str::to_owned);
            let outcome = match &self.streaming {
                None => self.merge_table(&table, candidates, deadline).await,
                Some(writer) => {
                    self.stream_table(writer, &table, candidates, deadline)
                        .await
                }
            };
            (table, lowest, outcome)
        });
        let mut outcome = BatchOutcome {
            records: records.len(),
            skipped,
            tables: BTreeMap::new(),
            mapped,
            newest_arrival_ms: records.iter().map(|r| r.meta.arrival_ms).max(),
            mismatches,
            ..BatchOutcome::default()
        };
        for (table, lowest, result) in futures_util::future::join_all(merges).await {
            let table_outcome = match result {
                Ok((t, refused)) => {
                    rejected.extend(refused);
                    t
                }
                Err(TableFailure::Fatal(e)) => {
                    tracing::error!(table = %table, error = %e, "Snowflake refused the credentials or configuration; failing the invocation");
                    return Err(HandlerError::Snowflake(e));
                }
                Err(TableFailure::FatalStreaming(e)) => {
                    tracing::error!(table = %table, error = %e, "Snowpipe Streaming refused the credentials or configuration; failing the invocation");
                    return Err(HandlerError::Streaming(e));
                }
                Err(TableFailure::Retry(t)) => {
                    failed.extend(lowest);
                    t
                }
            };
            outcome.tables.insert(table.to_string(), table_outcome);
        }

        // After the MERGEs, so rows Snowflake refused go into the batch's one quarantine object.
        outcome.quarantined = rejected.len();
        if let Some(object) = shared::rawzone::quarantine::object(
            &self.config.error_layout,
            Writer::Upsert,
            &rejected,
        )? {
            if let Err(e) =
                shared::rawzone::s3::put_object(&self.s3, &self.config.error_bucket, &object).await
            {
                tracing::error!(error = %e, "quarantine put failed; Lambda will resend from the lowest rejected record");
                failed.push(object.min_sequence_number.clone());
            }
        }

        let response = shared::kinesis::batch::kinesis_response(failed.iter().map(String::as_str));
        let merged: BTreeMap<&str, (u64, u64, u64)> = outcome
            .tables
            .iter()
            .map(|(t, o)| (t.as_str(), (o.inserted, o.updated, o.deleted)))
            .collect();
        tracing::info!(
            records = outcome.records,
            quarantined = outcome.quarantined,
            skipped = ?outcome.skipped,
            duplicates = outcome.tables.values().map(|t| t.duplicates).sum::<usize>(),
            merged = ?merged,
            statements = outcome.tables.values().map(|t| t.statements).sum::<usize>(),
            requests = outcome.tables.values().map(|t| t.http_requests).sum::<u32>(),
            failed_tables = outcome.tables.values().filter(|t| t.error.is_some()).count(),
            retry_from = response.batch_item_failures.first().and_then(|f| f.item_identifier.as_deref()),
            ms = started.elapsed().as_millis() as u64,
            "upsert batch"
        );
        Ok((response, outcome))
    }

    /// Appends a table's changes to its change table (`WRITE_MODE=streaming`).
    async fn stream_table<'r>(
        &self,
        writer: &StreamingWriter,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> Result<(TableOutcome, Vec<Rejected<'r>>), TableFailure> {
        let mapping = self
            .config
            .tables
            .get(table)
            .expect("candidates only exist for mapped tables");
        let rows = candidates.len();
        match writer.write(mapping, candidates, deadline).await {
            Ok(outcome) => Ok((outcome, Vec::new())),
            Err(StreamFailure::Fatal(e)) => Err(TableFailure::FatalStreaming(e)),
            Err(StreamFailure::Retry(error)) => {
                tracing::error!(table, error = %error, "appends not committed; Lambda will resend from this table's lowest sequence number (committed rows are skipped)");
                Err(TableFailure::Retry(TableOutcome {
                    rows,
                    error: Some(error),
                    ..TableOutcome::default()
                }))
            }
        }
    }

    /// Runs a table's MERGEs in order. A statement Snowflake refuses for its data is split in
    /// halves until the refused rows stand alone; they are returned for the quarantine and the
    /// rest lands, so one bad value cannot block a table on every retry.
    async fn merge_table<'r>(
        &self,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> Result<(TableOutcome, Vec<Rejected<'r>>), TableFailure> {
        let mut plan = plan_table(&self.config, table, candidates);
        let mut outcome = TableOutcome {
            rows: plan.rows.len(),
            duplicates: plan.duplicates,
            ..TableOutcome::default()
        };
        let mut refused: Vec<(usize, String)> = Vec::new();
        let mut pending: VecDeque<Chunk> = std::mem::take(&mut plan.chunks).into();
        while let Some(chunk) = pending.pop_front() {
            let (start, rows, first) =
                (chunk.start, chunk.rows, chunk.first_sequence_number.clone());
            let statement = plan.statement(chunk);
            match self.snowflake.execute(&statement, deadline).await {
                Ok(result) => {
                    outcome.statements += 1;
                    outcome.http_requests += result.http_requests;
                    if let Some(stats) = result.stats {
                        outcome.inserted += stats.inserted;
                        outcome.updated += stats.updated;
                        outcome.deleted += stats.deleted;
                    }
                }
                Err(e) if is_fatal(&e) => return Err(TableFailure::Fatal(e)),
                Err(e) if e.is_data_error() && rows == 1 => {
                    outcome.statements += 1;
                    tracing::warn!(table, error = %e, sequence_number = %first, "Snowflake refused a row; quarantining it");
                    refused.push((start, refusal_reason(&e)));
                    outcome.refused += 1;
                }
                Err(e) if e.is_data_error() => {
                    outcome.statements += 1;
                    tracing::warn!(table, rows, error = %e, "Snowflake refused the data of a MERGE; splitting it to isolate the rows");
                    for half in plan.halves(start, rows).into_iter().rev() {
                        pending.push_front(half);
                    }
                }
                Err(e) => {
                    tracing::error!(table, error = %e, "MERGE failed; Lambda will resend from this table's lowest sequence number");
                    outcome.error = Some(e.to_string());
                    return Err(TableFailure::Retry(outcome));
                }
            }
        }
        let mut slots: Vec<Option<Candidate<'r>>> = plan.rows.into_iter().map(Some).collect();
        let rejected = refused
            .into_iter()
            .filter_map(|(i, reason)| {
                let c = slots[i].take()?;
                Some(Rejected {
                    meta: c.meta,
                    reason,
                    raw: c.raw,
                })
            })
            .collect();
        Ok((outcome, rejected))
    }
}

/// A batch's records sorted into rows per table, rejections and skipped change records.
pub struct Mapping<'r> {
    pub by_table: BTreeMap<String, Vec<Candidate<'r>>>,
    pub rejected: Vec<Rejected<'r>>,
    /// Counts by [`Skip::reason`].
    pub skipped: BTreeMap<&'static str, usize>,
    /// Records that became one or more rows.
    pub mapped: usize,
}

/// Routes, maps and coerces every record; what does not fit is rejected with its reason, and
/// change records that apply to no row are counted and logged.
pub fn map_records<'r>(config: &Config, records: &'r [KinesisRecord<'_>]) -> Mapping<'r> {
    let mut out = Mapping {
        by_table: BTreeMap::new(),
        rejected: Vec::new(),
        skipped: BTreeMap::new(),
        mapped: 0,
    };
    let mut parser = config.extractor.parser();
    let tombstones = config.tables.any_debezium();
    for record in records {
        let mapped = (|| {
            if tombstones && record.data.as_deref().is_ok_and(is_tombstone) {
                return Ok(None);
            }
            let (table, payload) = route_record(&config.router, &mut parser, record)?;
            let mapping = config
                .tables
                .get(table)
                .ok_or_else(|| format!("no mapping for table {table}"))?;
            let rows = mapping.changes(&payload)?;
            let payload = mapping.payload_column.as_ref().map(|_| payload.one_line());
            Ok::<_, String>(Some((table, rows, payload)))
        })();
        let skip = |out: &mut Mapping<'r>, skip: Skip| {
            tracing::info!(
                reason = skip.reason(),
                shard_id = %record.meta.shard_id,
                sequence_number = %record.meta.sequence_number,
                "change record skipped: applies to no row"
            );
            *out.skipped.entry(skip.reason()).or_default() += 1;
        };
        match mapped {
            Ok(None) => skip(&mut out, Skip::Tombstone),
            Ok(Some((table, mapped, payload))) => {
                let (first, second) = match mapped {
                    Mapped::Skip(s) => {
                        skip(&mut out, s);
                        continue;
                    }
                    Mapped::Row(row) => (row, None),
                    Mapped::Rekey { old, new } => (old, Some(new)),
                };
                out.mapped += 1;
                let candidates = out.by_table.entry(table.to_string()).or_default();
                for row in std::iter::once(first).chain(second) {
                    candidates.push(Candidate {
                        row,
                        meta: record.meta.clone(),
                        payload: payload.clone(),
                        raw: RawData::from_record(&record.data),
                    });
                }
            }
            Err(reason) => out.rejected.push(Rejected {
                meta: record.meta.clone(),
                reason,
                raw: RawData::from_record(&record.data),
            }),
        }
    }
    out
}

/// One table's rows, de-duplicated and cut into statements.
pub struct TablePlan<'r, 'c> {
    mapping: &'c TableMapping,
    logical: &'c str,
    pub rows: Vec<Candidate<'r>>,
    pub duplicates: usize,
    pub chunks: Vec<Chunk>,
    sql: String,
}

pub fn plan_table<'r, 'c>(
    config: &'c Config,
    table: &'c str,
    candidates: Vec<Candidate<'r>>,
) -> TablePlan<'r, 'c> {
    let mapping = config
        .tables
        .get(table)
        .expect("candidates only exist for mapped tables");
    let (rows, duplicates) = dedup(mapping, candidates);
    let chunks = chunks(mapping, &rows, config.max_rows, config.max_bytes);
    TablePlan {
        mapping,
        logical: table,
        rows,
        duplicates,
        chunks,
        sql: merge_sql(mapping),
    }
}

impl TablePlan<'_, '_> {
    /// The MERGE of one chunk, with the request id of its stream, table, shard and sequence
    /// range: a retried batch re-sends identical statements, which Snowflake runs once.
    pub fn statement(&self, chunk: Chunk) -> Statement {
        let meta = &self.rows[chunk.start].meta;
        let rows = chunk.rows.to_string();
        let mut parts: Vec<&str> = vec![
            "upsert",
            &meta.stream,
            &self.mapping.target,
            &meta.shard_id,
            &chunk.first_sequence_number,
            &chunk.last_sequence_number,
            &rows,
        ];
        // KPL sub-record indices only when there are some, so ids of plain records stay the
        // ids earlier versions sent (a replay after a deploy is still recognised).
        let subs = match (chunk.first_sub_sequence, chunk.last_sub_sequence) {
            (None, None) => None,
            (a, b) => Some(format!("{a:?}-{b:?}")),
        };
        parts.extend(subs.as_deref());
        let request_id = request_id_for(&parts);
        Statement::new(self.sql.clone())
            .bind(Binding::text(chunk.rows_json))
            .with_request_id(request_id)
            .with_query_tag(format!("kinesis-snowflake/upsert/{}", self.logical))
    }

    /// Every chunk's statement, in order.
    pub fn statements(mut self) -> Vec<Statement> {
        let chunks = std::mem::take(&mut self.chunks);
        chunks.into_iter().map(|c| self.statement(c)).collect()
    }

    /// The rows `start..start + rows` as two chunks (the first half, then the second).
    fn halves(&self, start: usize, rows: usize) -> Vec<Chunk> {
        let mid = start + rows / 2;
        [start..mid, mid..start + rows]
            .into_iter()
            .flat_map(|range| {
                let offset = range.start;
                chunks(self.mapping, &self.rows[range], usize::MAX, usize::MAX)
                    .into_iter()
                    .map(move |mut c| {
                        c.start += offset;
                        c
                    })
            })
            .collect()
    }
}

/// The quarantine reason of a row Snowflake refused.
fn refusal_reason(error: &SnowflakeError) -> String {
    match error {
        SnowflakeError::Sql {
            code,
            sql_state,
            message,
            ..
        } => format!("Snowflake refused the row: {code} ({sql_state}): {message}"),
        other => format!("Snowflake refused the row: {other}"),
    }
}

enum TableFailure {
    /// Credentials or configuration: no retry of the batch can succeed until someone fixes it.
    Fatal(SnowflakeError),
    FatalStreaming(shared::snowflake::streaming::StreamingError),
    Retry(TableOutcome),
}

fn is_fatal(e: &SnowflakeError) -> bool {
    matches!(
        e,
        SnowflakeError::Unauthorized(_)
            | SnowflakeError::Config(_)
            | SnowflakeError::Key(_)
            | SnowflakeError::Secret { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::snowflake::Binding;

    const ORDERS: &str = r#"{"orders":{"keys":["order_id"],"columns":[
        {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
        {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
        {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
        "version":"updated_at","delete":{"path":"/op","value":"d"}}}"#;
    const SENSORS: &str = r#"{"sensor_readings":{"keys":["sensorid"],"columns":[
        {"name":"sensorid","path":"/sensorId","type":"NUMBER"},
        {"name":"currenttemperature","path":"/currentTemperature","type":"FLOAT"},
        {"name":"status","path":"/status"}]}}"#;

    fn config(table: &str, tables: &str) -> Config {
        let vars = [
            ("SNOWFLAKE_ACCOUNT", "acct"),
            ("SNOWFLAKE_DATABASE", "DB"),
            ("SNOWFLAKE_SCHEMA", "S"),
            ("SNOWFLAKE_AUTH", "pat"),
            ("SNOWFLAKE_TOKEN", "t"),
            ("ERROR_BUCKET", "b"),
            ("TABLE", table),
            ("UPSERT_TABLES", tables),
        ];
        Config::from_env(&Env::new(&vars)).unwrap()
    }

    fn rows_of(statement: &Statement) -> serde_json::Value {
        match &statement.bindings[..] {
            [Binding::Text(Some(json))] => serde_json::from_str(json).unwrap(),
            other => panic!("one TEXT binding expected, got {other:?}"),
        }
    }

    #[test]
    fn sample_cdc_event_becomes_one_merge_of_the_newest_changes() {
        let config = config("orders", ORDERS);
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(
            include_str!("../../../events/kinesis-cdc-orders.json"),
            &mut payloads,
        )
        .unwrap();
        let Mapping {
            by_table, rejected, ..
        } = map_records(&config, &records);
        assert!(rejected.is_empty());
        let plan = plan_table(&config, "orders", by_table.into_values().next().unwrap());
        assert_eq!((plan.rows.len(), plan.duplicates), (3, 3));
        let statements = plan.statements();
        assert_eq!(statements.len(), 1);
        let rows = rows_of(&statements[0]);
        let summary: Vec<(String, String, bool)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["c0"].as_str().unwrap().to_string(),
                    r["c1"].as_str().unwrap_or("NULL").to_string(),
                    r["d"].as_bool().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("1003".into(), "NEW".into(), false),
                ("1002".into(), "NULL".into(), true),
                ("1001".into(), "SHIPPED".into(), false)
            ]
        );
        assert!(statements[0]
            .sql
            .starts_with(r#"MERGE INTO "DB"."S"."ORDERS""#));
        assert!(statements[0].request_id.is_some());
    }

    #[test]
    fn sample_sensor_event_repeats_keys_and_keeps_the_newest() {
        let config = config("sensor_readings", SENSORS);
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(
            include_str!("../../../events/kinesis-sensors.json"),
            &mut payloads,
        )
        .unwrap();
        let by_table = map_records(&config, &records).by_table;
        let plan = plan_table(
            &config,
            "sensor_readings",
            by_table.into_values().next().unwrap(),
        );
        assert_eq!((plan.rows.len(), plan.duplicates), (3, 3));
        let statements = plan.statements();
        let rows = rows_of(&statements[0]);
        let temps: Vec<(&str, &str)> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["c0"].as_str().unwrap(), r["c1"].as_str().unwrap()))
            .collect();
        assert_eq!(temps, [("8", "40"), ("7", "95"), ("6", "66")]);
        // The same batch plans the same request ids: a re-invoked Lambda is not executed twice.
        let again = map_records(&config, &records).by_table;
        let replan = plan_table(
            &config,
            "sensor_readings",
            again.into_values().next().unwrap(),
        );
        assert_eq!(replan.statements()[0].request_id, statements[0].request_id);
    }

    #[test]
    fn request_ids_name_the_stream() {
        let config = config("sensor_readings", SENSORS);
        let body = include_str!("../../../events/kinesis-sensors.json");
        let other_stream = body.replace(":stream/", ":stream/other-");
        assert_ne!(
            body, other_stream,
            "the fixture names its stream in eventSourceARN"
        );
        let ids = |event: &str| {
            let mut payloads = PayloadBuffer::default();
            let records = decode_kinesis_event(event, &mut payloads).unwrap();
            let by_table = map_records(&config, &records).by_table;
            let candidates = by_table.into_values().next().unwrap();
            plan_table(&config, "sensor_readings", candidates)
                .statements()
                .into_iter()
                .map(|s| s.request_id)
                .collect::<Vec<_>>()
        };
        // two streams with the same shard ids and sequence numbers are different statements
        assert_ne!(ids(body), ids(&other_stream));
        assert_eq!(ids(body), ids(body));
    }

    const DEBEZIUM: &str = r#"{"orders":{"envelope":"debezium","keys":["order_id"],"columns":[
        {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
        {"name":"amount","path":"/amount","type":"NUMBER(12,2)"},{"name":"customer","path":"/customer"},
        {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}]}}"#;

    /// `(key, status, delete)` of every row the event's one MERGE sends, with the batch's
    /// rejection reasons and skip counts.
    #[allow(clippy::type_complexity)]
    fn merged(
        config: &Config,
        event: &str,
    ) -> (
        Vec<(String, String, bool)>,
        Vec<String>,
        BTreeMap<&'static str, usize>,
    ) {
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(event, &mut payloads).unwrap();
        let Mapping {
            by_table,
            rejected,
            skipped,
            ..
        } = map_records(config, &records);
        let mut rows = Vec::new();
        for (table, candidates) in by_table {
            for statement in plan_table(config, &table, candidates).statements() {
                for r in rows_of(&statement).as_array().unwrap() {
                    rows.push((
                        r["c0"].as_str().unwrap().to_string(),
                        r["c1"].as_str().unwrap_or("NULL").to_string(),
                        r["d"].as_bool().unwrap(),
                    ));
                }
            }
        }
        let reasons = rejected.into_iter().map(|r| r.reason).collect();
        (rows, reasons, skipped)
    }

    fn row(key: &str, status: &str, delete: bool) -> (String, String, bool) {
        (key.into(), status.into(), delete)
    }

    #[test]
    fn sample_debezium_event_applies_creates_updates_deletes_and_a_key_change() {
        let config = config("orders", DEBEZIUM);
        let (rows, rejected, skipped) = merged(
            &config,
            include_str!("../../../events/kinesis-debezium-orders.json"),
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        // 1002 created then deleted; 1003 re-keyed to 1005 (delete + create), then 1005 paid.
        assert_eq!(
            rows,
            [
                row("1001", "SHIPPED", false),
                row("1002", "NEW", true),
                row("1003", "NEW", true),
                row("1005", "PAID", false),
            ]
        );
        assert_eq!(
            skipped,
            BTreeMap::from([("debezium tombstone", 2), ("debezium truncate", 1)])
        );
    }

    #[test]
    fn debezium_tombstones_are_counted_before_routing() {
        let vars = [
            ("SNOWFLAKE_ACCOUNT", "acct"),
            ("SNOWFLAKE_DATABASE", "DB"),
            ("SNOWFLAKE_SCHEMA", "S"),
            ("SNOWFLAKE_AUTH", "pat"),
            ("SNOWFLAKE_TOKEN", "t"),
            ("ERROR_BUCKET", "b"),
            ("ROUTE_FIELD", "/source/table"),
            ("ROUTE_MAP", r#"{"orders":"orders"}"#),
            ("UPSERT_TABLES", DEBEZIUM),
        ];
        let config = Config::from_env(&Env::new(&vars)).unwrap();
        let (rows, rejected, skipped) = merged(
            &config,
            include_str!("../../../events/kinesis-debezium-orders.json"),
        );
        // A tombstone has no table to route by: it is counted, not quarantined. The one record
        // wrapped in `payload` routes by `/payload/source/table`, not this field.
        assert_eq!(
            skipped,
            BTreeMap::from([("debezium tombstone", 2), ("debezium truncate", 1)])
        );
        assert_eq!(rejected, ["routing field /source/table is missing or null"]);
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn debezium_versions_order_by_source_position_not_arrival() {
        let config = config("orders", DEBEZIUM);
        let body = include_str!("../../../events/kinesis-debezium-orders.json");
        let mut payloads = PayloadBuffer::default();
        let mut records = decode_kinesis_event(body, &mut payloads).unwrap();
        // The update of 1001 arrives before its snapshot read: the newer source position wins.
        records.swap(0, 3);
        let by_table = map_records(&config, &records).by_table;
        let plan = plan_table(&config, "orders", by_table.into_values().next().unwrap());
        let rows = rows_of(&plan.statements()[0]);
        let r1001 = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["c0"] == "1001")
            .unwrap();
        assert_eq!(r1001["c1"], "SHIPPED");
        // file / pos / row, then ts_ms
        assert!(r1001["c5"]
            .as_str()
            .unwrap()
            .ends_with("/00000001732201500000"));
    }

    #[test]
    fn sample_dms_event_applies_changes_and_counts_control_records() {
        let dms = DEBEZIUM.replace("\"debezium\"", "\"dms\"");
        let config = config("orders", &dms);
        let (rows, rejected, skipped) = merged(
            &config,
            include_str!("../../../events/kinesis-dms-orders.json"),
        );
        assert!(rejected.is_empty(), "{rejected:?}");
        // The update to key 1005 carries before-image 1003: the old key is deleted.
        assert_eq!(
            rows,
            [
                row("1001", "SHIPPED", false),
                row("1002", "NULL", true),
                row("1003", "NULL", true),
                row("1005", "PAID", false),
            ]
        );
        assert_eq!(skipped, BTreeMap::from([("dms control record", 1)]));
    }

    #[test]
    fn bad_envelopes_are_quarantined_with_reasons() {
        let config = config("orders", DEBEZIUM);
        let body = include_str!("../../../events/kinesis-debezium-orders.json");
        let mut event: serde_json::Value = serde_json::from_str(body).unwrap();
        let bad = [
            r#"{"op":"x","after":{"order_id":1}}"#,
            r#"{"op":"d","before":null,"after":null,"source":{"ts_ms":1}}"#,
            r#"{"op":"d","before":{"status":"NEW"},"after":null,"source":{"ts_ms":1}}"#,
            r#"{"after":{"order_id":1}}"#,
        ];
        for (i, data) in bad.iter().enumerate() {
            event["Records"][i]["kinesis"]["data"] =
                shared::sample::base64_encode(data.as_bytes()).into();
        }
        let (_, rejected, _) = merged(&config, &event.to_string());
        assert_eq!(
            rejected,
            [
                "debezium envelope: unknown operation \"x\"",
                "debezium envelope: operation \"d\" has no before row image",
                "debezium column \"ORDER_ID\": key field /before/order_id is missing or null",
                "debezium envelope: op is missing",
            ]
        );
    }

    /// Every MERGE row of an event without its Kinesis lineage.
    fn merged_values(config: &Config, event: &str) -> Vec<serde_json::Value> {
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(event, &mut payloads).unwrap();
        let mapping = map_records(config, &records);
        assert!(mapping.rejected.is_empty());
        let mut out = Vec::new();
        for (table, candidates) in mapping.by_table {
            for statement in plan_table(config, &table, candidates).statements() {
                for mut row in rows_of(&statement).as_array().unwrap().clone() {
                    for lineage in ["s", "h", "a"] {
                        row.as_object_mut().unwrap().remove(lineage);
                    }
                    out.push(row);
                }
            }
        }
        out.sort_by_key(|r| r.to_string());
        out
    }

    #[test]
    fn kpl_aggregated_batches_merge_the_same_rows_as_plain_ones() {
        for (config, body) in [
            (
                config("orders", ORDERS),
                include_str!("../../../events/kinesis-cdc-orders.json"),
            ),
            (
                config("orders", DEBEZIUM),
                include_str!("../../../events/kinesis-debezium-orders.json"),
            ),
            (
                config("sensor_readings", SENSORS),
                include_str!("../../../events/kinesis-sensors.json"),
            ),
        ] {
            let plain = merged_values(&config, body);
            assert!(!plain.is_empty());
            for group in [1, 2, 3, 100] {
                let aggregated = shared::sample::kpl_aggregated_event(body, group);
                assert_eq!(
                    merged_values(&config, &aggregated),
                    plain,
                    "groups of {group}"
                );
            }
        }
    }

    #[test]
    fn kpl_sub_records_of_one_aggregate_keep_distinct_request_ids_and_order() {
        let config = Config {
            max_rows: 1,
            ..config("sensor_readings", SENSORS)
        };
        let body = shared::sample::kpl_aggregated_event(
            include_str!("../../../events/kinesis-sensors.json"),
            100,
        );
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(&body, &mut payloads).unwrap();
        assert!(records.len() > 1);
        assert!(records
            .iter()
            .all(|r| r.meta.sequence_number == records[0].meta.sequence_number));
        let by_table = map_records(&config, &records).by_table;
        let statements = plan_table(
            &config,
            "sensor_readings",
            by_table.into_values().next().unwrap(),
        )
        .statements();
        let mut ids: Vec<_> = statements.iter().map(|s| s.request_id).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "one request id per statement");
    }

    #[test]
    fn a_corrupt_kpl_aggregate_is_quarantined_whole() {
        let config = config("sensor_readings", SENSORS);
        let body = shared::sample::kpl_aggregated_event(
            include_str!("../../../events/kinesis-sensors.json"),
            100,
        );
        let mut event: serde_json::Value = serde_json::from_str(&body).unwrap();
        let data = event["Records"][0]["kinesis"]["data"]
            .as_str()
            .unwrap()
            .to_string();
        // Flip a character in the middle of the protobuf body: the MD5 trailer no longer fits.
        let mut bytes = data.into_bytes();
        let mid = bytes.len() / 2;
        bytes[mid] = if bytes[mid] == b'A' { b'B' } else { b'A' };
        event["Records"][0]["kinesis"]["data"] = String::from_utf8(bytes).unwrap().into();
        let (rows, rejected, _) = merged(&config, &event.to_string());
        assert!(rows.is_empty());
        assert_eq!(rejected, ["KPL aggregated record fails its MD5 check"]);
    }

    #[test]
    fn sample_bad_records_are_rejected_with_reasons() {
        let config = config("sensor_readings", SENSORS);
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(
            include_str!("../../../events/kinesis-bad-records.json"),
            &mut payloads,
        )
        .unwrap();
        let Mapping {
            by_table, rejected, ..
        } = map_records(&config, &records);
        assert_eq!(by_table["sensor_readings"].len(), 2);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 4);
        assert_eq!(reasons[3], "data is not valid base64");
    }
}
