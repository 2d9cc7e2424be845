//! The pure part of a batch: records routed, mapped and coerced to rows per table (what does
//! not fit is rejected with its reason), then each table's rows de-duplicated and cut into
//! MERGE statements with deterministic request ids.

use std::borrow::Cow;
use std::collections::BTreeMap;

use shared::kinesis::payload::PayloadParser;
use shared::kinesis::record::KinesisRecord;
use shared::kinesis::route::route_record;
use shared::rawzone::quarantine::{RecordData, Rejected};
use shared::snowflake::{request_id_for, Binding, Statement};

use crate::config::Config;
use crate::envelope::{is_tombstone, Skip};
use crate::mapping::{Mapped, Row, TableMapping};
use crate::merge::{chunks, dedup, merge_sql, Candidate, Chunk, NewFields};

/// A batch's records sorted into rows per table, rejections and skipped change records.
#[derive(Default)]
pub struct MappedBatch<'r> {
    /// Rows per table, in record order.
    pub by_table: BTreeMap<String, Vec<Candidate<'r>>>,
    /// Records that do not fit, with their reasons, for the quarantine.
    pub rejected: Vec<Rejected<'r>>,
    /// Counts by [`Skip::reason`].
    pub skipped: BTreeMap<&'static str, usize>,
    /// Records that became one or more rows.
    pub mapped: usize,
}

/// What one record became before it is sorted into the [`MappedBatch`]: its table, rows,
/// payload and the fields schema evolution reads.
type MappedRecord<'c, 'r> = Option<(&'c str, Mapped, Option<Cow<'r, str>>, Fields<'r>)>;

/// A record's top-level fields no column maps, when its table evolves.
type Fields<'r> = Option<Box<NewFields<'r>>>;

/// Routes, maps and coerces every record; what does not fit is rejected with its reason, and
/// change records that apply to no row are counted and logged.
pub fn map_records<'r>(config: &Config, records: &'r [KinesisRecord<'_>]) -> MappedBatch<'r> {
    let mut out = MappedBatch::default();
    let mut parser = config.extractor.parser();
    let tombstones = config.tables.any_debezium();
    for record in records {
        match map_record(config, &mut parser, tombstones, record) {
            Ok(None) => out.skip(record, Skip::Tombstone),
            Ok(Some((table, mapped, payload, fields))) => match mapped {
                Mapped::Skip(skip) => out.skip(record, skip),
                Mapped::Row(row) => out.add(record, table, [Some(row), None], payload, fields),
                // A DMS key change: the old key's delete, then the new row.
                Mapped::Rekey { old, new } => {
                    out.add(record, table, [Some(old), Some(new)], payload, fields)
                }
            },
            Err(reason) => out.rejected.push(Rejected {
                meta: record.meta.clone(),
                reason,
                data: RecordData::from_record(&record.data),
            }),
        }
    }
    out
}

/// One record's table, rows and (when the table keeps it) one-line payload; `None` for a
/// Debezium tombstone, which has no table to route by. The error is the quarantine reason.
fn map_record<'c, 'r>(
    config: &'c Config,
    parser: &mut PayloadParser<'_, 'r>,
    tombstones: bool,
    record: &'r KinesisRecord<'_>,
) -> Result<MappedRecord<'c, 'r>, String> {
    if tombstones && record.data.as_deref().is_ok_and(is_tombstone) {
        return Ok(None);
    }
    let (table, payload) = route_record(&config.router, parser, record)?;
    let mapping = config
        .tables
        .get(table)
        .ok_or_else(|| format!("no mapping for table {table}"))?;
    let rows = mapping.changes(&payload)?;
    let fields = match (&rows, &mapping.evolution) {
        (Mapped::Skip(_), _) | (_, None) => None,
        _ => Some(Box::new(mapping.new_fields(&payload))),
    };
    let payload = mapping.payload_column.as_ref().map(|_| payload.one_line());
    Ok(Some((table, rows, payload, fields)))
}

impl<'r> MappedBatch<'r> {
    /// Counts and logs a valid change record that applies to no row.
    fn skip(&mut self, record: &KinesisRecord<'_>, skip: Skip) {
        tracing::info!(
            reason = skip.reason(),
            shard_id = %record.meta.shard_id,
            sequence_number = %record.meta.sequence_number,
            "change record skipped: applies to no row"
        );
        *self.skipped.entry(skip.reason()).or_default() += 1;
    }

    /// Adds the rows one record became, in order; the fields go with the row that is not a
    /// delete (a delete needs only its key).
    fn add(
        &mut self,
        record: &'r KinesisRecord<'_>,
        table: &str,
        rows: [Option<Row>; 2],
        payload: Option<Cow<'r, str>>,
        mut fields: Fields<'r>,
    ) {
        self.mapped += 1;
        let candidates = self.by_table.entry(table.to_string()).or_default();
        for row in rows.into_iter().flatten() {
            let fields = if row.is_delete { None } else { fields.take() };
            candidates.push(Candidate {
                row,
                meta: record.meta.clone(),
                payload: payload.clone(),
                data: RecordData::from_record(&record.data),
                fields,
            });
        }
    }
}

/// One table's rows, de-duplicated and cut into statements.
pub struct TablePlan<'r, 'c> {
    mapping: &'c TableMapping,
    logical: &'c str,
    /// The newest row per key, in sequence order.
    pub rows: Vec<Candidate<'r>>,
    /// Rows collapsed into a newer one of the same key.
    pub duplicates: usize,
    /// The rows cut into statements within the row and byte limits.
    pub chunks: Vec<Chunk>,
    sql: String,
}

/// De-duplicates a table's rows and cuts them into statements.
pub fn plan_table<'r, 'c>(
    config: &'c Config,
    table: &'c str,
    candidates: Vec<Candidate<'r>>,
) -> TablePlan<'r, 'c> {
    let mapping = config
        .tables
        .get(table)
        .expect("candidates only exist for mapped tables");
    plan_mapping(config, mapping, table, candidates)
}

/// [`plan_table`] with the table's `mapping` given: the configured one, or the one schema
/// evolution extended with the table's evolved columns.
pub(crate) fn plan_mapping<'r, 'c>(
    config: &Config,
    mapping: &'c TableMapping,
    table: &'c str,
    candidates: Vec<Candidate<'r>>,
) -> TablePlan<'r, 'c> {
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

impl<'c> TablePlan<'_, 'c> {
    /// The table's name in the configuration.
    pub(crate) fn logical(&self) -> &'c str {
        self.logical
    }

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
    pub(crate) fn halves(&self, start: usize, rows: usize) -> Vec<Chunk> {
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

#[cfg(test)]
pub(crate) mod tests;
