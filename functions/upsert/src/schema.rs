//! Schema evolution's I/O: each evolving table's columns, read from `INFORMATION_SCHEMA.COLUMNS`
//! once per container and kept for its life (read again after a change, or when Snowflake says
//! a column is unknown); the `ALTER TABLE`s a batch needs; the batch's rows given their evolved
//! values, or quarantined as drift. The rules themselves are in `evolution`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shared::rawzone::quarantine::Rejected;
use shared::snowflake::{Binding, SnowflakeClient, SnowflakeError, Statement};

use crate::evolution::{changes, row_values, Changes, TableColumn};
use crate::mapping::{Column, TableMapping};
use crate::merge::Candidate;

/// The columns of the tables this container evolves, by qualified table name.
pub(crate) struct Schemas {
    snowflake: SnowflakeClient,
    known: Mutex<HashMap<String, Arc<Vec<TableColumn>>>>,
}

/// A table's batch after evolution: the mapping with the evolved columns appended, the rows
/// with their values for them, and what was quarantined as drift.
pub(crate) struct Evolved<'r> {
    /// The configured mapping and, after its columns, every evolved column the table has.
    pub mapping: TableMapping,
    /// The rows that fit, their values for the evolved columns appended.
    pub candidates: Vec<Candidate<'r>>,
    /// Rows whose values do not fit their columns, or over the cap of new columns.
    pub rejected: Vec<Rejected<'r>>,
    /// Columns this batch added, and columns it widened.
    pub added: usize,
    /// Columns this batch widened.
    pub widened: usize,
}

impl Evolved<'_> {
    /// Whether the table's columns changed (the channel and Dynamic Table follow them).
    pub fn changed(&self) -> bool {
        self.added + self.widened > 0
    }
}

impl Schemas {
    /// Kept per container; reads and changes tables through `snowflake`.
    pub fn new(snowflake: &SnowflakeClient) -> Self {
        Self {
            snowflake: snowflake.clone(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Evolves `table` (qualified, quoted: the target, or the change table in streaming mode)
    /// for a batch: adds the columns its new fields need (`ADD COLUMN IF NOT EXISTS`, so a
    /// container adding the same column at the same moment is no error), widens what Snowflake
    /// can widen, then types every row against the columns as Snowflake now reports them (a
    /// column another container added with another type makes its values drift).
    pub async fn evolve<'r>(
        &self,
        mapping: &TableMapping,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> Result<Evolved<'r>, SnowflakeError> {
        let evolution = mapping
            .evolution
            .as_ref()
            .expect("only evolving tables are evolved");
        let plan = |columns: &[TableColumn]| {
            let rows = candidates
                .iter()
                .map(|c| c.fields.as_deref().map_or(&[][..], Vec::as_slice));
            changes(table, columns, rows, evolution.max_new_columns)
        };
        let mut columns = self.columns(mapping, table, deadline).await?;
        let mut planned = plan(&columns);
        if !planned.is_empty() {
            // What this container knows may be stale (another writer changed the table): read
            // the table again before changing it, and once more after.
            self.forget(table);
            columns = self.columns(mapping, table, deadline).await?;
            planned = plan(&columns);
            if !planned.is_empty() {
                self.alter(table, &planned, deadline).await?;
                self.forget(table);
                columns = self.columns(mapping, table, deadline).await?;
            }
        }
        let (candidates, rejected) = typed_rows(table, &columns, candidates, &planned);
        Ok(Evolved {
            mapping: extended(mapping, &columns),
            candidates,
            rejected,
            added: planned.add.len(),
            widened: planned.widen.len(),
        })
    }

    /// Drops what this container knows of `table`'s columns: the next batch reads them again.
    pub fn forget(&self, table: &str) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(table);
    }

    /// The table's columns no mapping writes, from the cache or `INFORMATION_SCHEMA.COLUMNS`.
    async fn columns(
        &self,
        mapping: &TableMapping,
        table: &str,
        deadline: Instant,
    ) -> Result<Vec<TableColumn>, SnowflakeError> {
        let cached = self
            .known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(table)
            .cloned();
        let all = match cached {
            Some(all) => all,
            None => {
                let all = Arc::new(self.read_columns(table, deadline).await?);
                // A table that does not exist is not cached: the write names it in its error.
                if !all.is_empty() {
                    let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
                    known.insert(table.to_string(), all.clone());
                }
                all
            }
        };
        let evolution = mapping.evolution.as_ref().expect("evolving table");
        Ok(all
            .iter()
            .filter(|c| !evolution.is_reserved(&c.name))
            .cloned()
            .collect())
    }

    /// Every column of `table` in order, names and schema bound.
    async fn read_columns(
        &self,
        table: &str,
        deadline: Instant,
    ) -> Result<Vec<TableColumn>, SnowflakeError> {
        let parts = name_parts(table);
        let (database, schema, name) = match parts.as_slice() {
            [d, s, n] => (Some(d.as_str()), s.as_str(), n.as_str()),
            [s, n] => (None, s.as_str(), n.as_str()),
            _ => return Ok(Vec::new()),
        };
        let view = match database {
            Some(d) => format!("\"{d}\".INFORMATION_SCHEMA.COLUMNS"),
            None => "INFORMATION_SCHEMA.COLUMNS".to_string(),
        };
        let sql = format!(
            "SELECT COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH, NUMERIC_PRECISION, NUMERIC_SCALE FROM {view} WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION"
        );
        let statement = Statement::new(sql)
            .bind(Binding::text(schema))
            .bind(Binding::text(name));
        let result = self.snowflake.execute(&statement, deadline).await?;
        Ok(result
            .rows
            .iter()
            .filter_map(|r| {
                let cell = |i: usize| r.get(i).and_then(|v| v.as_deref());
                Some(TableColumn::from_information_schema(
                    cell(0)?,
                    cell(1)?,
                    cell(2),
                    cell(3),
                    cell(4),
                ))
            })
            .collect())
    }

    /// Adds and widens the columns of `planned`, one statement each, logging each.
    async fn alter(
        &self,
        table: &str,
        planned: &Changes,
        deadline: Instant,
    ) -> Result<(), SnowflakeError> {
        for column in &planned.add {
            let sql = format!(
                "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {} {}",
                column.ident(),
                column.sql()
            );
            self.snowflake
                .execute(&Statement::new(sql), deadline)
                .await?;
            tracing::info!(table, column = %column.name, r#type = %column.sql(), "schema evolution: column added");
        }
        for column in &planned.widen {
            let sql = format!(
                "ALTER TABLE {table} ALTER COLUMN {} SET DATA TYPE {}",
                column.ident(),
                column.sql()
            );
            self.snowflake
                .execute(&Statement::new(sql), deadline)
                .await?;
            tracing::info!(table, column = %column.name, r#type = %column.sql(), "schema evolution: column widened");
        }
        Ok(())
    }
}

/// The unquoted parts of a quoted, qualified name (`"DB"."S"."T"` → DB, S, T); identifiers never
/// hold a `"` (see `shared::snowflake::ident`).
fn name_parts(qualified: &str) -> Vec<String> {
    qualified
        .trim_matches('"')
        .split("\".\"")
        .map(str::to_string)
        .collect()
}

/// Each row with its values for `columns` appended (nulls for a delete), or quarantined: over
/// the cap of new columns, or a value its column cannot hold.
fn typed_rows<'r>(
    table: &str,
    columns: &[TableColumn],
    candidates: Vec<Candidate<'r>>,
    planned: &Changes,
) -> (Vec<Candidate<'r>>, Vec<Rejected<'r>>) {
    let mut kept = Vec::with_capacity(candidates.len());
    let mut rejected = Vec::new();
    for (i, mut c) in candidates.into_iter().enumerate() {
        let values = match planned.over_cap.get(&i) {
            Some(reason) => Err(reason.clone()),
            None => row_values(
                table,
                columns,
                c.fields.as_deref().map_or(&[], Vec::as_slice),
            ),
        };
        match values {
            Ok(values) => {
                // Columns of a type the function does not write are left out of its statements.
                let writable = columns.iter().zip(values).filter(|(c, _)| c.ty.is_some());
                c.row.values.extend(writable.map(|(_, v)| v));
                kept.push(c);
            }
            Err(reason) => {
                tracing::warn!(table, sequence_number = %c.meta.sequence_number, reason = %reason, "schema drift: record quarantined");
                rejected.push(Rejected {
                    meta: c.meta,
                    reason,
                    data: c.data,
                });
            }
        }
    }
    (kept, rejected)
}

/// The mapping with every writable evolved column appended, in the table's order.
fn extended(mapping: &TableMapping, columns: &[TableColumn]) -> TableMapping {
    let mut out = mapping.clone();
    for column in columns {
        let Some(ty) = column.ty else { continue };
        let escaped = column.name.replace('~', "~0").replace('/', "~1");
        if let Ok(path) = format!("/{escaped}").parse() {
            out.columns.push(Column::evolved(column.ident(), path, ty));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_split_into_their_parts() {
        assert_eq!(name_parts(r#""DB"."S"."ORDERS""#), ["DB", "S", "ORDERS"]);
        assert_eq!(name_parts(r#""S"."My T""#), ["S", "My T"]);
    }
}
