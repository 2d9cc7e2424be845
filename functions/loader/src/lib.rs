//! Loader: object-created notifications become `COPY INTO` the raw tables, every file exactly once.
//!
//! Accepts S3 events (direct), SQS batches carrying S3 notifications (plain, in an SNS envelope,
//! or EventBridge events), SNS events and EventBridge "Object Created" events. Objects outside the
//! configured bucket and prefix, or whose key the raw-zone layout cannot read, are logged and
//! skipped. The rest are grouped by (table, format) and loaded with one COPY per group and chunk
//! of at most 1,000 files, each with a deterministic requestId. COPY's per-file results are mapped
//! back to the messages that carried the files: an SQS invocation returns exactly the failed
//! messages as batch item failures; any other invocation fails as a whole so Lambda retries it.
//!
//! When a multi-file COPY fails with a SQL error (ON_ERROR = ABORT_STATEMENT aborts the whole
//! statement for one bad file), each file of that chunk is copied on its own to find exactly the
//! files that fail; files loaded meanwhile come back as already loaded, so this is safe.
//!
//! A requested file COPY's result does not name (Snowflake leaves out files its load metadata
//! says were loaded before) counts as already loaded only when `LOAD_HISTORY` shows its load;
//! otherwise it fails and is retried (see `copy::history_statement`).

mod copy;
mod notify;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::copy::{
    check_name, copy_report, history_statement, loaded_before, match_path, plan_copies, unreported,
    CopyStatement, CopyTarget, FileStatus, Lineage, MetadataLineage, OnError, StagedFile,
    MAX_FILES_PER_COPY,
};
use crate::notify::{parse_invocation, Notification, Trigger};
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use lambda_runtime::LambdaEvent;
use serde::Serialize;
use serde_json::Value;
use shared::config::{ConfigError, Env, ProcessEnv};
use shared::lambda::FunctionSettings;
use shared::rawzone::encode::Format;
use shared::rawzone::layout::Layout;
use shared::snowflake::{ident, SnowflakeClient, SnowflakeConfig, SnowflakeError, Statement};

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    /// `RAW_BUCKET` (required): the only bucket loaded from.
    pub bucket: String,
    /// `RAW_PREFIX` (default `raw`): the stage's URL is `s3://RAW_BUCKET/RAW_PREFIX/`.
    pub layout: Layout,
    /// `SNOWFLAKE_STAGE` (default `RAW_STAGE`), optionally qualified `DB.SCHEMA.STAGE`.
    pub stage: String,
    /// `RAW_TABLE_SUFFIX` (default `_RAW`): key table `sensor_readings` → `SENSOR_READINGS_RAW`.
    pub table_suffix: String,
    /// `TABLE_MAP` (optional JSON object): key table → Snowflake table (`T` or `DB.S.T`).
    pub table_map: BTreeMap<String, String>,
    /// `FILE_FORMAT_NDJSON` (default `NDJSON_FMT`), `FILE_FORMAT_CSV` (default `CSV_FMT`).
    pub ndjson_format: String,
    pub csv_format: String,
    /// `ON_ERROR` (default `ABORT_STATEMENT`).
    pub on_error: OnError,
    /// `LINEAGE` = `in_file` (default) | `metadata`.
    pub lineage: Lineage,
    /// `LINEAGE_CSV_FIELDS` (JSON object key table → number of CSV fields): needed for CSV
    /// tables with `LINEAGE=metadata`.
    pub csv_fields: BTreeMap<String, usize>,
    /// `MAX_FILES_PER_COPY` (default and maximum 1000).
    pub max_files_per_copy: usize,
    /// The `SNOWFLAKE_*` variables.
    pub snowflake: SnowflakeConfig,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub function: FunctionSettings,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let bucket = env.required("RAW_BUCKET")?;
        let layout = Layout::from_env(env)?;
        let name = |var: &str, default: &str, what: &'static str| {
            let v = env.optional(var).unwrap_or_else(|| default.into());
            check_name(what, &v).map_err(|e| ConfigError::new(var, e.to_string()))
        };
        let stage = name("SNOWFLAKE_STAGE", "RAW_STAGE", "stage")?;
        let ndjson_format = name("FILE_FORMAT_NDJSON", "NDJSON_FMT", "file format")?;
        let csv_format = name("FILE_FORMAT_CSV", "CSV_FMT", "file format")?;
        let table_suffix = env
            .optional("RAW_TABLE_SUFFIX")
            .unwrap_or_else(|| "_RAW".into());
        ident::validate(&format!("T{table_suffix}"))
            .map_err(|e| ConfigError::new("RAW_TABLE_SUFFIX", e.to_string()))?;
        let table_map: BTreeMap<String, String> =
            env.json_optional("TABLE_MAP")?.unwrap_or_default();
        for (k, v) in &table_map {
            for part in v.split('.') {
                ident::validate(part)
                    .map_err(|e| ConfigError::new("TABLE_MAP", format!("table for {k:?}: {e}")))?;
            }
            if v.split('.').count() > 3 {
                return Err(ConfigError::new(
                    "TABLE_MAP",
                    format!("table for {k:?}: at most DB.SCHEMA.TABLE"),
                ));
            }
        }
        let on_error = env.parse_or("ON_ERROR", OnError::AbortStatement)?;
        let lineage = match env
            .optional("LINEAGE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("in_file") => Lineage::InFile,
            Some("metadata") => Lineage::Metadata(MetadataLineage::default()),
            Some(other) => {
                return Err(ConfigError::new(
                    "LINEAGE",
                    format!("expected in_file or metadata, got {other:?}"),
                ))
            }
        };
        let csv_fields = env.json_optional("LINEAGE_CSV_FIELDS")?.unwrap_or_default();
        let max_files_per_copy = env.parse_or("MAX_FILES_PER_COPY", MAX_FILES_PER_COPY)?;
        if !(1..=MAX_FILES_PER_COPY).contains(&max_files_per_copy) {
            return Err(ConfigError::new(
                "MAX_FILES_PER_COPY",
                "must be between 1 and 1000",
            ));
        }
        Ok(Self {
            bucket,
            layout,
            stage,
            table_suffix,
            table_map,
            ndjson_format,
            csv_format,
            on_error,
            lineage,
            csv_fields,
            max_files_per_copy,
            snowflake: SnowflakeConfig::from_env(env)?,
            function: FunctionSettings::from_env(env, Duration::from_millis(3000))?,
        })
    }

    /// The quoted, qualified Snowflake table for a key's table directory.
    pub fn table_for(&self, key_table: &str) -> Result<String, ident::IdentError> {
        let name = self
            .table_map
            .get(key_table)
            .cloned()
            .unwrap_or_else(|| format!("{key_table}{}", self.table_suffix));
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 1 {
            return ident::qualified(&parts);
        }
        let sf = &self.snowflake;
        match &sf.database {
            Some(db) => ident::qualified(&[db, &sf.schema, &name]),
            None => ident::qualified(&[&sf.schema, &name]),
        }
    }
}

/// Why an invocation failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// Direct, SNS or EventBridge invocation: Lambda retries it, then the on-failure destination.
    #[error("{count} file(s) not loaded, first {file}: {reason}")]
    FilesFailed {
        count: usize,
        file: String,
        reason: String,
    },
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::InvalidEvent(_) => "InvalidEvent",
            HandlerError::FilesFailed { .. } => "LoadFailed",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileOutcome {
    Loaded {
        rows: u64,
    },
    AlreadyLoaded,
    /// ON_ERROR = CONTINUE loaded some rows and rejected others: reported, not retried (a retry
    /// would find the file already loaded).
    PartiallyLoaded {
        rows: u64,
        error: String,
    },
    Failed {
        error: String,
    },
}

/// What one invocation did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub trigger: String,
    /// SQS messages (1 for a direct invocation).
    pub messages: usize,
    pub messages_failed: usize,
    pub test_events: usize,
    /// Distinct files to load.
    pub files: usize,
    pub loaded: usize,
    pub already_loaded: usize,
    pub partially_loaded: usize,
    /// Loaded files whose row count differs from the one their writer recorded
    /// (`x-amz-meta-row-count`): a reconciliation mismatch.
    pub row_count_mismatches: usize,
    pub failed: usize,
    /// Objects outside the bucket/prefix or with keys the layout cannot read.
    pub skipped: usize,
    pub statements: usize,
    /// `LOAD_HISTORY` queries about files a COPY did not report.
    pub history_queries: usize,
    pub rows_loaded: u64,
    /// Rows loaded per (quoted) table.
    pub rows_by_table: BTreeMap<String, u64>,
    /// Keys (full object keys) and their outcome.
    pub file_outcomes: BTreeMap<String, FileOutcome>,
    /// The failed SQS message ids.
    pub failed_message_ids: Vec<String>,
}

impl Outcome {
    /// The invocation's EMF document; a partially loaded file is a reconciliation mismatch.
    pub fn metrics(&self, namespace: &str) -> shared::metrics::Emf {
        use shared::metrics::{Emf, Unit};
        let table = (self.rows_by_table.len() == 1)
            .then(|| self.rows_by_table.keys().next().map(String::as_str))
            .flatten();
        Emf::new(namespace, "loader")
            .table(table)
            .count("Messages", self.messages)
            .count("MessagesFailed", self.messages_failed)
            .count("Files", self.files)
            .count("FilesLoaded", self.loaded)
            .count("FilesAlreadyLoaded", self.already_loaded)
            .count("FilesFailed", self.failed)
            .count("FilesSkipped", self.skipped)
            .metric("RowsLoaded", Unit::Count, self.rows_loaded as f64)
            .count("Statements", self.statements)
            .count(
                "ReconciliationMismatches",
                self.partially_loaded + self.row_count_mismatches,
            )
    }
}

/// The loader with its configuration and Snowflake client.
pub struct Loader {
    config: Config,
    client: SnowflakeClient,
    /// Reads the row count the orchestrator recorded on each object; made at the first
    /// reconciliation, not at init (the loader needs no AWS client otherwise).
    row_counts: Option<tokio::sync::OnceCell<aws_sdk_s3::Client>>,
}

struct PendingFile {
    key: String,
    etag: Option<String>,
    items: BTreeSet<usize>,
}

impl Loader {
    pub async fn from_env() -> Result<Self, lambda_runtime::Error> {
        let config = Config::from_env(&Env::new(&ProcessEnv))?;
        let client = SnowflakeClient::new(config.snowflake.clone(), None).await?;
        Ok(Self::new(config, client).with_row_counts(None))
    }

    pub fn new(config: Config, client: SnowflakeClient) -> Self {
        Self {
            config,
            client,
            row_counts: None,
        }
    }

    /// Compares each loaded file's rows with the count its writer recorded in the object's
    /// metadata, through `s3` (or a client made from the default AWS configuration when first
    /// needed).
    pub fn with_row_counts(mut self, s3: Option<aws_sdk_s3::Client>) -> Self {
        self.row_counts = Some(match s3 {
            Some(c) => tokio::sync::OnceCell::new_with(Some(c)),
            None => tokio::sync::OnceCell::new(),
        });
        self
    }

    /// Files whose loaded rows differ from their recorded row count. Objects without one
    /// (written by other tools) and failed look-ups are not mismatches; the latter are logged.
    async fn reconcile_row_counts(&self, out: &Outcome) -> usize {
        let Some(cell) = &self.row_counts else {
            return 0;
        };
        let loaded: Vec<(&String, u64)> = out
            .file_outcomes
            .iter()
            .filter_map(|(key, o)| match o {
                FileOutcome::Loaded { rows } | FileOutcome::PartiallyLoaded { rows, .. } => {
                    Some((key, *rows))
                }
                _ => None,
            })
            .collect();
        if loaded.is_empty() {
            return 0;
        }
        let s3 = cell
            .get_or_init(|| async { shared::aws::s3_client(&shared::aws::load_config().await) })
            .await;
        let bucket = &self.config.bucket;
        let heads = loaded.iter().map(|(key, rows)| async move {
            let recorded = s3
                .head_object()
                .bucket(bucket)
                .key(key.as_str())
                .send()
                .await
                .map(|h| {
                    h.metadata()
                        .and_then(|m| m.get("row-count"))
                        .and_then(|v| v.parse::<u64>().ok())
                });
            (key, *rows, recorded)
        });
        let mut mismatches = 0;
        for (key, rows, recorded) in futures_util::future::join_all(heads).await {
            match recorded {
                Ok(Some(expected)) if expected != rows => {
                    mismatches += 1;
                    tracing::error!(key = %key, rows_recorded = expected, rows_loaded = rows, "reconciliation mismatch: the file loaded a different number of rows than its writer recorded");
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "row count of a loaded file could not be read; not reconciled")
                }
            }
        }
        mismatches
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Lambda entry point: an `SqsBatchResponse` for SQS, the outcome otherwise.
    pub async fn handle(&self, event: LambdaEvent<Value>) -> Result<Value, HandlerError> {
        let deadline = self.config.function.deadline(event.context.deadline);
        let (response, outcome) = self.handle_value(&event.payload, deadline).await?;
        let now = shared::metrics::now_ms();
        println!(
            "{}",
            outcome
                .metrics(&self.config.function.metrics_namespace)
                .to_line(now)
        );
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
        let mut out = Outcome {
            trigger: format!("{:?}", invocation.trigger).to_lowercase(),
            messages: invocation.items.len(),
            ..Outcome::default()
        };
        let mut item_failed: Vec<Option<String>> = vec![None; invocation.items.len()];
        // (table, format extension, key table) → (format, path → file)
        type Files = BTreeMap<String, PendingFile>;
        let mut groups: BTreeMap<(String, &'static str, String), (Format, Files)> = BTreeMap::new();

        for (i, item) in invocation.items.iter().enumerate() {
            let notification = match &item.notification {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(message_id = item.message_id.as_deref(), error = %e, "loader: unreadable message; reported as failed");
                    item_failed[i] = Some(e.to_string());
                    continue;
                }
            };
            if *notification == Notification::TestEvent {
                out.test_events += 1;
                continue;
            }
            for object in notification.objects() {
                if object.bucket != self.config.bucket {
                    tracing::warn!(bucket = %object.bucket, key = %object.key, "loader: object outside the raw bucket; skipped");
                    out.skipped += 1;
                    continue;
                }
                let Some(parsed) = self.config.layout.parse_key(&object.key) else {
                    tracing::warn!(bucket = %object.bucket, key = %object.key, prefix = self.config.layout.prefix(), "loader: key outside the raw prefix or not a raw-zone file; skipped");
                    out.skipped += 1;
                    continue;
                };
                // A key COPY cannot name, or whose table is not a valid identifier, fails alone.
                let table = match copy::file_literal(parsed.path)
                    .map_err(|e| e.to_string())
                    .and_then(|_| {
                        self.config
                            .table_for(parsed.table)
                            .map_err(|e| e.to_string())
                    }) {
                    Ok(t) => t,
                    Err(error) => {
                        tracing::error!(key = %object.key, error = %error, "loader: key cannot be loaded; reported as failed");
                        out.file_outcomes.insert(
                            object.key.clone(),
                            FileOutcome::Failed {
                                error: error.clone(),
                            },
                        );
                        item_failed[i] = Some(error);
                        out.files += 1;
                        out.failed += 1;
                        continue;
                    }
                };
                let file = groups
                    .entry((table, parsed.format.extension(), parsed.table.to_string()))
                    .or_insert_with(|| (parsed.format, BTreeMap::new()))
                    .1
                    .entry(parsed.path.to_string())
                    .or_insert_with(|| PendingFile {
                        key: object.key.clone(),
                        etag: object.etag.clone(),
                        items: BTreeSet::new(),
                    });
                file.items.insert(i);
            }
        }

        for ((table, _, key_table), (format, files)) in &groups {
            out.files += files.len();
            let target = CopyTarget {
                table: table.clone(),
                format: *format,
                file_format: match format {
                    Format::Ndjson => self.config.ndjson_format.clone(),
                    Format::Csv => self.config.csv_format.clone(),
                },
                csv_fields: self.config.csv_fields.get(key_table).copied(),
            };
            let results = if matches!(self.config.lineage, Lineage::Metadata(_))
                && *format == Format::Csv
                && target.csv_fields.is_none()
            {
                let error =
                    format!("LINEAGE=metadata needs LINEAGE_CSV_FIELDS for table {key_table:?}");
                files
                    .keys()
                    .map(|p| {
                        (
                            p.clone(),
                            FileOutcome::Failed {
                                error: error.clone(),
                            },
                        )
                    })
                    .collect()
            } else {
                self.load_group(&target, files, deadline, &mut out).await
            };
            for (path, outcome) in results {
                let file = &files[&path];
                match &outcome {
                    FileOutcome::Loaded { rows } => {
                        out.loaded += 1;
                        out.rows_loaded += rows;
                        *out.rows_by_table.entry(table.clone()).or_default() += rows;
                    }
                    FileOutcome::AlreadyLoaded => out.already_loaded += 1,
                    FileOutcome::PartiallyLoaded { rows, error } => {
                        out.partially_loaded += 1;
                        out.rows_loaded += rows;
                        *out.rows_by_table.entry(table.clone()).or_default() += rows;
                        tracing::error!(key = %file.key, table = %table, rows_loaded = rows, first_error = %error, "loader: file partially loaded (ON_ERROR policy); rejected rows are not retried");
                    }
                    FileOutcome::Failed { error } => {
                        out.failed += 1;
                        tracing::error!(key = %file.key, table = %table, error = %error, "loader: file not loaded; reported as failed");
                        for &i in &file.items {
                            item_failed[i].get_or_insert_with(|| error.clone());
                        }
                    }
                }
                out.file_outcomes.insert(file.key.clone(), outcome);
            }
        }

        out.row_count_mismatches = self.reconcile_row_counts(&out).await;
        out.messages_failed = item_failed.iter().filter(|f| f.is_some()).count();
        let response = match invocation.trigger {
            Trigger::Sqs => {
                let mut response = SqsBatchResponse::default();
                for (item, failed) in invocation.items.iter().zip(&item_failed) {
                    if failed.is_some() {
                        let id = item.message_id.clone().unwrap_or_default();
                        out.failed_message_ids.push(id.clone());
                        let mut f = BatchItemFailure::default();
                        f.item_identifier = id;
                        response.batch_item_failures.push(f);
                    }
                }
                Ok(serde_json::to_value(&response).expect("serializable"))
            }
            _ => match item_failed.iter().flatten().next() {
                None => Ok(serde_json::to_value(&out).expect("serializable")),
                Some(reason) => {
                    let file = out
                        .file_outcomes
                        .iter()
                        .find(|(_, o)| matches!(o, FileOutcome::Failed { .. }))
                        .map(|(k, _)| k.clone())
                        .unwrap_or_else(|| "-".into());
                    Err(HandlerError::FilesFailed {
                        count: out.failed.max(1),
                        file,
                        reason: reason.clone(),
                    })
                }
            },
        };
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
            skipped = out.skipped,
            statements = out.statements,
            history_queries = out.history_queries,
            rows_loaded = out.rows_loaded,
            rows_by_table = %serde_json::to_string(&out.rows_by_table).unwrap_or_default(),
            ms = started.elapsed().as_millis() as u64,
            "loader invocation"
        );
        response.map(|r| (r, out))
    }

    /// Loads one (table, format) group; returns every path's outcome.
    async fn load_group(
        &self,
        target: &CopyTarget,
        files: &BTreeMap<String, PendingFile>,
        deadline: Instant,
        out: &mut Outcome,
    ) -> Vec<(String, FileOutcome)> {
        let staged: Vec<StagedFile> = files
            .iter()
            .map(|(path, f)| StagedFile {
                path: path.clone(),
                etag: f.etag.clone(),
            })
            .collect();
        let statements = match plan_copies(
            target,
            &self.config.stage,
            &staged,
            self.config.on_error,
            &self.config.lineage,
            self.config.max_files_per_copy,
        ) {
            Ok(s) => s,
            Err(e) => {
                return files
                    .keys()
                    .map(|p| {
                        (
                            p.clone(),
                            FileOutcome::Failed {
                                error: e.to_string(),
                            },
                        )
                    })
                    .collect()
            }
        };
        let by_path: BTreeMap<&str, &StagedFile> =
            staged.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut results = Vec::with_capacity(files.len());
        for stmt in statements {
            match self.run(target, &stmt, deadline, out).await {
                Ok(r) => results.extend(r),
                Err(e) if stmt.files.len() > 1 && isolatable(&e) => {
                    tracing::warn!(table = %target.table, files = stmt.files.len(), error = %e, "loader: COPY failed; copying each file on its own to find the failing ones");
                    for path in &stmt.files {
                        let single = match copy::statement(
                            target,
                            &self.config.stage,
                            &[by_path[path.as_str()]],
                            self.config.on_error,
                            &self.config.lineage,
                        ) {
                            Ok(s) => s,
                            Err(e) => {
                                results.push((
                                    path.clone(),
                                    FileOutcome::Failed {
                                        error: e.to_string(),
                                    },
                                ));
                                continue;
                            }
                        };
                        match self.run(target, &single, deadline, out).await {
                            Ok(r) => results.extend(r),
                            Err(e) => results.push((
                                path.clone(),
                                FileOutcome::Failed {
                                    error: e.to_string(),
                                },
                            )),
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(table = %target.table, files = stmt.files.len(), error = %e, "loader: COPY failed");
                    results.extend(stmt.files.iter().map(|p| {
                        (
                            p.clone(),
                            FileOutcome::Failed {
                                error: e.to_string(),
                            },
                        )
                    }));
                }
            }
        }
        results
    }

    /// Runs one COPY and maps its result to the statement's files: a file the result names has
    /// its status; a file it leaves out is already loaded if `LOAD_HISTORY` shows its load into
    /// `target`, and failed (to be retried) otherwise.
    async fn run(
        &self,
        target: &CopyTarget,
        stmt: &CopyStatement,
        deadline: Instant,
        out: &mut Outcome,
    ) -> Result<Vec<(String, FileOutcome)>, SnowflakeError> {
        out.statements += 1;
        let result = self
            .client
            .execute(
                &Statement::new(stmt.sql.clone()).with_request_id(stmt.request_id),
                deadline,
            )
            .await?;
        let paths: Vec<&str> = stmt.files.iter().map(String::as_str).collect();
        let report = match copy_report(&result) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(table = %target.table, error = %e, "loader: COPY result not understood; its files are reported as failed");
                return Ok(failed_all(&stmt.files, &e.to_string()));
            }
        };
        let mut outcomes: BTreeMap<&str, FileOutcome> = BTreeMap::new();
        for r in report.files() {
            let Some(path) = match_path(&r.file, &paths) else {
                tracing::warn!(file = %r.file, status = %r.raw_status, "loader: COPY reported a file that was not requested");
                continue;
            };
            let error = || {
                let mut e = r
                    .first_error
                    .clone()
                    .unwrap_or_else(|| r.raw_status.clone());
                if let Some(line) = r.first_error_line {
                    e.push_str(&format!(" (line {line})"));
                }
                format!("{}: {e}", r.raw_status)
            };
            let outcome = match r.status {
                FileStatus::Loaded => FileOutcome::Loaded {
                    rows: r.rows_loaded,
                },
                FileStatus::AlreadyLoaded => FileOutcome::AlreadyLoaded,
                FileStatus::PartiallyLoaded => FileOutcome::PartiallyLoaded {
                    rows: r.rows_loaded,
                    error: error(),
                },
                FileStatus::Failed => FileOutcome::Failed { error: error() },
            };
            outcomes.insert(path, outcome);
        }
        let missing = unreported(&paths, &report);
        if !missing.is_empty() {
            for (path, outcome) in self
                .verify_unreported(target, &missing, deadline, out)
                .await
            {
                outcomes.insert(path, outcome);
            }
        }
        Ok(paths
            .iter()
            .map(|p| {
                let outcome = outcomes.remove(p).unwrap_or_else(|| FileOutcome::Failed {
                    error: "no outcome for the file".into(),
                });
                (p.to_string(), outcome)
            })
            .collect())
    }

    /// Files a COPY left out: already loaded when `LOAD_HISTORY` shows a load into `target`,
    /// failed otherwise, and failed when the history cannot be read (never assumed loaded).
    async fn verify_unreported<'p>(
        &self,
        target: &CopyTarget,
        missing: &[&'p str],
        deadline: Instant,
        out: &mut Outcome,
    ) -> Vec<(&'p str, FileOutcome)> {
        let statement = match history_statement(&target.table, missing) {
            Ok(s) => s,
            Err(e) => {
                return failed_all(
                    missing,
                    &format!(
                        "COPY did not report the file, and its load history cannot be asked: {e}"
                    ),
                )
            }
        };
        out.history_queries += 1;
        let history = match self.client.execute(&statement, deadline).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(table = %target.table, files = missing.len(), error = %e, "loader: files COPY did not report, and LOAD_HISTORY could not be read; reported as failed");
                return failed_all(
                    missing,
                    &format!(
                        "COPY did not report the file, and its load history could not be read: {e}"
                    ),
                );
            }
        };
        let loaded = loaded_before(&history, missing);
        missing
            .iter()
            .map(|p| {
                let outcome = if loaded.contains(p) {
                    FileOutcome::AlreadyLoaded
                } else {
                    FileOutcome::Failed {
                        error: format!(
                            "COPY did not report the file and LOAD_HISTORY shows no load of it into {} (last 14 days): not loaded; retried",
                            target.table
                        ),
                    }
                };
                (*p, outcome)
            })
            .collect()
    }
}

/// Every path failed with the same error.
fn failed_all<P: Clone>(paths: &[P], error: &str) -> Vec<(P, FileOutcome)> {
    paths
        .iter()
        .map(|p| {
            (
                p.clone(),
                FileOutcome::Failed {
                    error: error.to_string(),
                },
            )
        })
        .collect()
}

/// A SQL error that may come from one file's contents (worth copying each file on its own), as
/// opposed to one of the statement itself: syntax or access rule violations (SQLSTATE class 42:
/// missing table, stage or file format) and unsupported features (0A) fail every file alike.
fn isolatable(e: &SnowflakeError) -> bool {
    match e {
        SnowflakeError::Sql { sql_state, .. } => {
            !(sql_state.starts_with("42") || sql_state.starts_with("0A"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            ("RAW_BUCKET", "raw-bucket"),
            ("SNOWFLAKE_ACCOUNT", "localtest"),
            ("SNOWFLAKE_USER", "loader"),
            ("SNOWFLAKE_DATABASE", "DB"),
            ("SNOWFLAKE_SCHEMA", "S"),
            ("SNOWFLAKE_TOKEN", "t"),
            ("SNOWFLAKE_AUTH", "pat"),
        ];
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn defaults_and_table_names() {
        let c = Config::from_env(&Env::new(&env_with(&[(
            "TABLE_MAP",
            r#"{"orders":"OTHER.X.ORDERS_T"}"#,
        )])))
        .unwrap();
        assert_eq!(c.layout.prefix(), "raw");
        assert_eq!(c.stage, "RAW_STAGE");
        assert_eq!(c.ndjson_format, "NDJSON_FMT");
        assert_eq!(c.csv_format, "CSV_FMT");
        assert_eq!(c.on_error, OnError::AbortStatement);
        assert_eq!(c.lineage, Lineage::InFile);
        assert_eq!(
            c.table_for("sensor_readings").unwrap(),
            "\"DB\".\"S\".\"SENSOR_READINGS_RAW\""
        );
        assert_eq!(
            c.table_for("orders").unwrap(),
            "\"OTHER\".\"X\".\"ORDERS_T\""
        );
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        for (var, value) in [
            ("ON_ERROR", "SKIP_SOME"),
            ("LINEAGE", "both"),
            ("SNOWFLAKE_STAGE", "RAW_STAGE/x"),
            ("FILE_FORMAT_CSV", "'CSV'"),
            ("TABLE_MAP", "{\"a\": \"x\\\"y\"}"),
            ("TABLE_MAP", "[1]"),
            ("MAX_FILES_PER_COPY", "1001"),
            ("RAW_TABLE_SUFFIX", "\"x"),
        ] {
            let err = Config::from_env(&Env::new(&env_with(&[(var, value)]))).unwrap_err();
            assert_eq!(err.var, var, "{value}: {err}");
        }
        let err = Config::from_env(&Env::new(&[("SNOWFLAKE_SCHEMA", "S")])).unwrap_err();
        assert_eq!(err.var, "RAW_BUCKET");
        let c = Config::from_env(&Env::new(&env_with(&[
            ("ON_ERROR", "skip_file_3%"),
            ("LINEAGE", "METADATA"),
        ])))
        .unwrap();
        assert_eq!(c.on_error, OnError::SkipFilePercent(3));
        assert!(matches!(c.lineage, Lineage::Metadata(_)));
    }

    #[test]
    fn sample_events_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        for (file, trigger, keys) in [
            (
                "s3-put.json",
                Trigger::S3,
                vec!["raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz"],
            ),
            (
                "sqs-s3-notification.json",
                Trigger::Sqs,
                vec![
                    "raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz",
                    "raw/order_events/2024/03/05/07/shardId-000000000001-7-9.csv.gz",
                ],
            ),
            (
                "sqs-sns-s3-notification.json",
                Trigger::Sqs,
                vec!["raw/sensor_readings/2024/03/05/07/my file é.ndjson.gz"],
            ),
            (
                "eventbridge-object-created.json",
                Trigger::EventBridge,
                vec!["raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz"],
            ),
        ] {
            let text =
                std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
            let inv = parse_invocation(&serde_json::from_str(&text).unwrap()).unwrap();
            assert_eq!(inv.trigger, trigger, "{file}");
            let got: Vec<String> = inv
                .items
                .iter()
                .flat_map(|i| i.notification.as_ref().expect(file).objects().to_vec())
                .map(|o| o.key)
                .collect();
            assert_eq!(got, keys, "{file}");
        }
    }
}
