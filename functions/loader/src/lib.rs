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
//! says were loaded before, and files its listing of the stage does not find) counts as already
//! loaded only when `LOAD_HISTORY` shows its load; when S3 has no object under its key it is
//! reported as not in the stage (`FilesNotInStage`, not retried: the object is gone); otherwise
//! it fails and is retried (see `copy::history_statement`).
//!
//! `LOAD_MODE=snowpipe` keeps the notifications, checks and groups but hands each group's files
//! to its table's pipe through the Snowpipe REST API and confirms the loads before the deadline;
//! a file not yet reported is pending, never loaded, and its message is retried (`pipe`,
//! `pipe_service`).
//!
//! Laid out like a sink: `config` (settings read once), `notify` (notifications parsed), `plan`
//! (pure: notifications → groups of files to COPY), `copy` (pure: COPY and `LOAD_HISTORY` text
//! and results), `pipe` (pure: Snowpipe REST requests and reports), `service` and
//! `pipe_service` (the I/O), `outcome` (what an invocation did) and `handler` (plan →
//! send → respond).

mod config;
mod copy;
mod handler;
mod notify;
mod outcome;
mod pipe;
mod pipe_service;
mod plan;
mod service;

pub use config::Config;
pub use handler::{HandlerError, Loader};
pub use outcome::{FileOutcome, Outcome};
