//! Schema evolution's rules, pure: which top-level fields of a record become columns, under
//! which name and of which type; whether a value fits the column its field names (widening the
//! column where Snowflake allows it); and which records are quarantined as drift.
//!
//! Snowflake evolves a table only for `COPY`/Snowpipe with `MATCH_BY_COLUMN_NAME` into a table
//! with `ENABLE_SCHEMA_EVOLUTION = TRUE`, at most 100 new columns per load
//! (<https://docs.snowflake.com/en/user-guide/data-load-schema-evolution>); `INSERT` and `MERGE`
//! never do, so the upsert follows the same rules itself:
//! - name: a field matches a column as `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE` matches it
//!   (<https://docs.snowflake.com/en/sql-reference/sql/copy-into-table>, copy options): names
//!   compared upper-cased; a new column takes the upper-cased field name, validated and quoted;
//! - type: as schema detection types a JSON value
//!   (<https://docs.snowflake.com/en/sql-reference/functions/infer_schema>): an integer is
//!   `NUMBER(38,0)`, a number with a fraction or exponent `FLOAT` (Snowflake's `REAL`), a string
//!   `VARCHAR`, `true`/`false` `BOOLEAN`, an object or array `VARIANT`; a null types nothing;
//! - widening: `ALTER TABLE … ALTER COLUMN … SET DATA TYPE` may lengthen a `VARCHAR(n)` and raise
//!   a `NUMBER`'s precision at the same scale, never change the scale or the type
//!   (<https://docs.snowflake.com/en/sql-reference/sql/alter-table-column>); any other value that
//!   does not fit is drift, quarantined with the table, column and both types.

use std::collections::{HashMap, HashSet};

use shared::kinesis::payload::value_text;
use shared::lineage::table as lineage;
use shared::snowflake::ident;

use crate::mapping::{coerce, ColumnType};
use crate::number::{canonical_number, Rounding};

/// New columns one batch may add by default: Snowflake's cap for one COPY.
pub const MAX_NEW_COLUMNS: usize = 100;

/// Snowflake's code for a column a statement names that the table does not have
/// (`000904 (42000): SQL compilation error: invalid identifier`).
pub const UNKNOWN_COLUMN: &str = "000904";

/// The longest `VARCHAR` (characters), <https://docs.snowflake.com/en/sql-reference/data-types-text>.
const VARCHAR_MAX: u64 = 16_777_216;

/// Columns the function writes itself in either mode, which no field becomes.
pub const RESERVED: [&str; 7] = [
    lineage::SHARD_ID,
    lineage::SEQUENCE_NUMBER,
    lineage::SUB_SEQUENCE,
    lineage::ARRIVAL_TIME,
    lineage::LOADED_AT,
    crate::changes::CHANGE_OP,
    "__DELETE",
];

/// A column of a table, as `INFORMATION_SCHEMA.COLUMNS` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    /// The name as stored, between its quotes.
    pub name: String,
    /// The type the function coerces to; None for a type it does not write (BINARY, TIME, …).
    pub ty: Option<ColumnType>,
    /// `VARCHAR(n)`: n.
    pub length: Option<u64>,
    /// `DATA_TYPE` as reported, for reasons.
    pub data_type: String,
}

impl TableColumn {
    /// From an `INFORMATION_SCHEMA.COLUMNS` row: `DATA_TYPE`, `CHARACTER_MAXIMUM_LENGTH`,
    /// `NUMERIC_PRECISION`, `NUMERIC_SCALE`.
    pub fn from_information_schema(
        name: &str,
        data_type: &str,
        length: Option<&str>,
        precision: Option<&str>,
        scale: Option<&str>,
    ) -> Self {
        let num = |v: Option<&str>| v.and_then(|v| v.parse::<u8>().ok());
        let ty = match data_type.to_ascii_uppercase().as_str() {
            "TEXT" => Some(ColumnType::Text),
            "NUMBER" => Some(ColumnType::Number {
                precision: num(precision).unwrap_or(38),
                scale: num(scale).unwrap_or(0),
            }),
            other => other.parse().ok(),
        };
        Self {
            name: name.to_string(),
            ty,
            length: length.and_then(|l| l.parse().ok()),
            data_type: data_type.to_string(),
        }
    }

    /// The column's type as SQL: `VARCHAR(20)`, `NUMBER(38,0)`, `FLOAT`.
    pub fn sql(&self) -> String {
        match (self.ty, self.length) {
            (Some(ColumnType::Text), Some(n)) => format!("VARCHAR({n})"),
            (Some(ty), _) => ty.sql(),
            (None, _) => self.data_type.clone(),
        }
    }

    /// The column's quoted identifier.
    pub fn ident(&self) -> String {
        format!("\"{}\"", self.name)
    }
}

/// The column a field becomes, as `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE` names it: the field
/// upper-cased; an error (the record's quarantine reason) when no identifier can carry it.
pub fn column_name(field: &str) -> Result<String, String> {
    let upper = field.to_uppercase();
    ident::validate(&upper)
        .map_err(|e| format!("field {field:?} cannot be a column: {e}"))
        .and_then(|()| match upper.contains('"') {
            true => Err(format!(
                "field {field:?} cannot be a column: it has a quote"
            )),
            false => Ok(upper),
        })
}

/// The type schema detection gives a JSON value; None for null.
pub fn detected_type(raw: &str) -> Option<ColumnType> {
    Some(match raw.as_bytes().first()? {
        b'"' => ColumnType::Text,
        b't' | b'f' => ColumnType::Boolean,
        b'{' | b'[' => ColumnType::Variant,
        b'n' => return None,
        _ if raw.contains(['.', 'e', 'E']) => ColumnType::Float,
        // NUMBER holds 38 digits; a longer integer is only a FLOAT.
        _ if raw.trim_start_matches('-').len() > 38 => ColumnType::Float,
        _ => ColumnType::Number {
            precision: 38,
            scale: 0,
        },
    })
}

/// What a JSON value is, as a SQL type, for drift reasons.
fn value_type(raw: &str) -> String {
    detected_type(raw).map_or_else(|| "NULL".into(), |t| t.sql())
}

/// How a value meets its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fit {
    /// It fits: the coerced JSON text for the row.
    Fits(String),
    /// It fits once the column is widened to this type (same column, larger `VARCHAR(n)` or
    /// `NUMBER(p,s)`), which Snowflake allows without rewriting the data.
    Widen(TableColumn),
    /// It does not fit and no widening helps: the quarantine reason.
    Drift(String),
}

/// How `raw` (a field's JSON value) meets `column` of `table`.
pub fn fit(table: &str, column: &TableColumn, raw: &str) -> Fit {
    let drift = |why: &str| {
        Fit::Drift(format!(
            "schema drift: table {table} column {}: {} cannot hold a {} value: {why}",
            column.ident(),
            column.sql(),
            value_type(raw)
        ))
    };
    let Some(ty) = column.ty else {
        return drift("the upsert does not write this column type");
    };
    match coerce(ty, Some(raw), Rounding::HalfAwayFromZero) {
        Ok(json) => match (ty, column.length) {
            (ColumnType::Text, Some(n)) => {
                let chars = value_text(raw).map_or(0, |t| t.chars().count()) as u64;
                match chars {
                    c if c <= n => Fit::Fits(json),
                    c if c <= VARCHAR_MAX => Fit::Widen(TableColumn {
                        length: Some(c),
                        ..column.clone()
                    }),
                    _ => drift("longer than the longest VARCHAR"),
                }
            }
            _ => Fit::Fits(json),
        },
        Err(reason) => match ty {
            ColumnType::Number { precision, scale } => match wider_number(raw, precision, scale) {
                Some(p) => Fit::Widen(TableColumn {
                    ty: Some(ColumnType::Number {
                        precision: p,
                        scale,
                    }),
                    ..column.clone()
                }),
                None => drift(&reason),
            },
            _ => drift(&reason),
        },
    }
}

/// The precision a number needs at `scale` when it is more than `precision` but at most 38.
fn wider_number(raw: &str, precision: u8, scale: u8) -> Option<u8> {
    let text = value_text(raw)?;
    let canonical = canonical_number(text.trim(), 38, scale, Rounding::HalfAwayFromZero).ok()?;
    let integer_digits = canonical
        .trim_start_matches('-')
        .split('.')
        .next()
        .map_or(0, |i| i.trim_start_matches('0').len());
    let needed = (integer_digits as u8).saturating_add(scale);
    (needed > precision && needed <= 38).then_some(needed)
}

/// The schema changes one batch needs, before any is made.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// New columns, in the order their fields first appear.
    pub add: Vec<TableColumn>,
    /// Existing columns to widen, each to what the batch's largest value needs.
    pub widen: Vec<TableColumn>,
    /// Rows (indices) needing a new column beyond the cap, with their reasons.
    pub over_cap: HashMap<usize, String>,
}

impl Changes {
    /// Whether the batch changes the table.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.widen.is_empty()
    }
}

/// What the batch's rows (each a list of (field, raw value)) need of the table whose columns
/// (those no mapping writes) are `existing`: new columns typed by their first non-null value,
/// widenings to the largest value, and the rows over `cap` new columns.
pub fn changes<'a>(
    table: &str,
    existing: &[TableColumn],
    rows: impl Iterator<Item = &'a [(String, &'a str)]>,
    cap: usize,
) -> Changes {
    let by_name: HashMap<String, &TableColumn> = existing
        .iter()
        .map(|c| (c.name.to_uppercase(), c))
        .collect();
    let mut out = Changes::default();
    let mut widened: HashMap<String, usize> = HashMap::new();
    let mut added: HashSet<String> = HashSet::new();
    for (i, fields) in rows.enumerate() {
        for (field, raw) in fields {
            let Ok(name) = column_name(field) else {
                continue;
            };
            if let Some(column) = by_name.get(&name) {
                let current = widened.get(&name).map_or(*column, |&w| &out.widen[w]);
                if let Fit::Widen(wider) = fit(table, current, raw) {
                    match widened.get(&name) {
                        Some(&w) => out.widen[w] = wider,
                        None => {
                            widened.insert(name, out.widen.len());
                            out.widen.push(wider);
                        }
                    }
                }
            } else if !added.contains(&name) {
                let Some(ty) = detected_type(raw) else {
                    continue;
                };
                if out.add.len() >= cap {
                    out.over_cap.entry(i).or_insert_with(|| {
                        format!("schema drift: table {table}: field {field:?} would be new column {} of this batch, over its cap of {cap}; it lands when redriven", cap + 1)
                    });
                    continue;
                }
                added.insert(name.clone());
                out.add.push(TableColumn {
                    data_type: ty.sql(),
                    name,
                    ty: Some(ty),
                    length: None,
                });
            }
        }
    }
    out
}

/// A row's values for the evolved `columns`, in order (null where the row has no such field),
/// or the drift reason that quarantines it.
pub fn row_values(
    table: &str,
    columns: &[TableColumn],
    fields: &[(String, &str)],
) -> Result<Vec<String>, String> {
    let mut values = vec!["null".to_string(); columns.len()];
    for (field, raw) in fields {
        let name = column_name(field)?;
        let Some(i) = columns.iter().position(|c| c.name.to_uppercase() == name) else {
            return Err(format!(
                "schema drift: table {table} has no column for field {field:?} (another writer dropped or renamed it?)"
            ));
        };
        values[i] = match fit(table, &columns[i], raw) {
            Fit::Fits(json) => json,
            Fit::Widen(wider) => {
                return Err(format!(
                    "schema drift: table {table} column {}: {} is too narrow for {} and was not widened",
                    wider.ident(),
                    columns[i].sql(),
                    wider.sql()
                ))
            }
            Fit::Drift(reason) => return Err(reason),
        };
    }
    Ok(values)
}

#[cfg(test)]
mod tests;
