//! What one invocation did, file by file and in total: the log line, the metrics and the tests
//! read it.

use std::collections::BTreeMap;

use serde::Serialize;
use shared::metrics::{Emf, Unit};

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum FileOutcome {
    /// COPY loaded the file's rows.
    Loaded {
        /// Rows COPY reported loaded from the file.
        rows: u64,
    },
    /// COPY skipped the file, and its load history shows it loaded before.
    AlreadyLoaded,
    /// ON_ERROR = CONTINUE loaded some rows and rejected others: reported, not retried (a retry
    /// would find the file already loaded).
    PartiallyLoaded {
        /// Rows COPY loaded from the file.
        rows: u64,
        /// The first error COPY reported for the rejected rows.
        error: String,
    },
    /// Not loaded because the stage has no such object (deleted or expired before its notification
    /// was handled, or a notification naming a key that never existed): COPY leaves such a file out
    /// of its result, and an S3 HEAD of the key answers 404. Reported, not retried: a retry cannot
    /// find the object either.
    NotInStage {
        /// What was found: no load in `LOAD_HISTORY`, and no object under the key.
        reason: String,
    },
    /// `LOAD_MODE=snowpipe`: handed to the pipe, but Snowpipe had not reported its load (neither
    /// `insertReport` nor `loadHistoryScan`) by the invocation's deadline. Never counted loaded:
    /// its message is retried, and the retry asks the pipe's load history before submitting it
    /// again (see `pipe_service`).
    Pending {
        /// What was sent and what was not heard back.
        reason: String,
    },
    /// Not loaded; its message is retried.
    Failed {
        /// Why: COPY's error for the file, or the statement's or query's error.
        error: String,
    },
}

impl FileOutcome {
    /// A failure for this reason.
    pub(crate) fn failed(error: impl ToString) -> Self {
        FileOutcome::Failed {
            error: error.to_string(),
        }
    }
}

/// Every path failed with the same error.
pub(crate) fn failed_all<P>(
    paths: impl IntoIterator<Item = P>,
    error: &str,
) -> Vec<(P, FileOutcome)> {
    paths
        .into_iter()
        .map(|p| (p, FileOutcome::failed(error)))
        .collect()
}

/// What one invocation did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Outcome {
    /// How the function was invoked (`sqs`, `s3`, `sns`, `eventbridge`).
    pub trigger: String,
    /// SQS messages (1 for a direct invocation).
    pub messages: usize,
    /// SQS messages reported as batch item failures (or 1 for a failed direct invocation).
    pub messages_failed: usize,
    /// `s3:TestEvent` messages, which carry no object.
    pub test_events: usize,
    /// Distinct files to load.
    pub files: usize,
    /// Files COPY loaded.
    pub loaded: usize,
    /// Files loaded before.
    pub already_loaded: usize,
    /// Files with some rows rejected under the ON_ERROR policy.
    pub partially_loaded: usize,
    /// Loaded files whose row count differs from the one their writer recorded
    /// (`x-amz-meta-row-count`): a reconciliation mismatch.
    pub row_count_mismatches: usize,
    /// Files not loaded; their messages are retried.
    pub failed: usize,
    /// Snowpipe mode: files submitted whose load Snowpipe had not reported by the deadline
    /// (see [`FileOutcome::Pending`]); their messages are retried.
    pub pending: usize,
    /// Snowpipe mode: `insertFiles` requests sent.
    pub insert_requests: usize,
    /// Snowpipe mode: `insertReport` polls.
    pub report_polls: usize,
    /// Files not loaded because their object is not in the stage (see [`FileOutcome::NotInStage`]);
    /// not retried.
    pub not_in_stage: usize,
    /// Objects outside the bucket/prefix or with keys the layout cannot read.
    pub skipped: usize,
    /// COPY statements run.
    pub statements: usize,
    /// `LOAD_HISTORY` queries about files a COPY did not report, or (Snowpipe mode)
    /// `loadHistoryScan` requests.
    pub history_queries: usize,
    /// Rows loaded, in all tables.
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
    pub fn metrics(&self, namespace: &str) -> Emf {
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
            .count("FilesNotInStage", self.not_in_stage)
            .count("FilesPending", self.pending)
            .count("FilesSkipped", self.skipped)
            .metric("RowsLoaded", Unit::Count, self.rows_loaded as f64)
            .count("Statements", self.statements)
            .count(
                "ReconciliationMismatches",
                self.partially_loaded + self.row_count_mismatches,
            )
    }

    /// Counts one file's outcome against `table`; `Some(error)` when the file failed.
    pub(crate) fn count(&mut self, key: &str, table: &str, outcome: FileOutcome) -> Option<String> {
        let failed = match &outcome {
            FileOutcome::Loaded { rows } => {
                self.loaded += 1;
                self.add_rows(table, *rows);
                None
            }
            FileOutcome::AlreadyLoaded => {
                self.already_loaded += 1;
                None
            }
            FileOutcome::PartiallyLoaded { rows, error } => {
                self.partially_loaded += 1;
                self.add_rows(table, *rows);
                tracing::error!(key = %key, table = %table, rows_loaded = rows, first_error = %error, "loader: file partially loaded (ON_ERROR policy); rejected rows are not retried");
                None
            }
            FileOutcome::NotInStage { reason } => {
                self.not_in_stage += 1;
                tracing::error!(key = %key, table = %table, reason = %reason, "loader: file not in the stage; reported, not retried");
                None
            }
            FileOutcome::Pending { reason } => {
                self.pending += 1;
                tracing::warn!(key = %key, table = %table, reason = %reason, "loader: file submitted to the pipe, load not yet reported; its message is retried");
                Some(reason.clone())
            }
            FileOutcome::Failed { error } => {
                self.failed += 1;
                tracing::error!(key = %key, table = %table, error = %error, "loader: file not loaded; reported as failed");
                Some(error.clone())
            }
        };
        self.file_outcomes.insert(key.to_string(), outcome);
        failed
    }

    fn add_rows(&mut self, table: &str, rows: u64) {
        self.rows_loaded += rows;
        *self.rows_by_table.entry(table.to_string()).or_default() += rows;
    }

    /// The loaded files (fully or partly) and their rows, for reconciliation.
    pub(crate) fn loaded_files(&self) -> Vec<(&String, u64)> {
        self.file_outcomes
            .iter()
            .filter_map(|(key, o)| match o {
                FileOutcome::Loaded { rows } | FileOutcome::PartiallyLoaded { rows, .. } => {
                    Some((key, *rows))
                }
                _ => None,
            })
            .collect()
    }

    /// The first failed file's key, or `-` when the failure is a message's, not a file's.
    pub(crate) fn first_failed_file(&self) -> String {
        self.file_outcomes
            .iter()
            .find(|(_, o)| matches!(o, FileOutcome::Failed { .. } | FileOutcome::Pending { .. }))
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| "-".into())
    }
}
