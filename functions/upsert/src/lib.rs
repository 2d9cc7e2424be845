//! Upsert: a Kinesis batch becomes one MERGE per target table in Snowflake.
//!
//! Each record is routed to a table, mapped and coerced to typed columns in Rust (a record that
//! does not fit is quarantined to S3, the rest land), de-duplicated by key (newest sequence
//! number wins) and sent as bound JSON in one MERGE per table and chunk. The MERGE only lets a
//! newer version overwrite a row, and every chunk carries a request id derived from its table,
//! shard and sequence range, so retries and replays leave the table as if each record had been
//! applied once, in order.
//!
//! Laid out like a sink: [`config`] (read once at init), `plan` (pure: records → rows per table →
//! statements), `service` (MERGE over the SQL API) and `streaming` (Snowpipe Streaming appends),
//! `handler` (plan → write → quarantine → respond), `outcome` (counts and metrics). The wire
//! formats live one per file: `row` (the MERGE source row), `changes` (the change-table line).
//! A mapping with `"schema_evolution": true` evolves its table first: `evolution` (the rules:
//! names, types, widening, drift) and `schema` (the columns kept per container, the ALTERs).

pub mod changes;
pub mod config;
mod envelope;
mod error;
mod evolution;
mod handler;
mod mapping;
mod merge;
mod number;
mod outcome;
mod plan;
mod row;
mod schema;
mod service;
mod shards;
mod streaming;

pub use config::{Config, StreamingSettings, WriteMode};
pub use handler::{HandlerError, Upsert};
pub use outcome::{BatchOutcome, TableOutcome};
pub use plan::{map_records, plan_table, MappedBatch, TablePlan};
