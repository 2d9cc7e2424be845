//! Records → typed table rows for the upsert path: which columns, from which JSON pointers, of
//! which Snowflake type; keys, version, delete marker and lineage. Values are coerced in Rust
//! before anything is sent, so a record that does not fit is quarantined on its own instead of
//! failing a MERGE for the whole batch.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::envelope::{Change, Decision, Envelope, EnvelopeKind, Image, Skip};
use crate::number::{canonical_number, cmp_canonical, NumberError, Rounding};
use shared::config::{ConfigError, Env};
use shared::kinesis::payload::{value_text, Extractor, JsonPointer, Payload};
use shared::snowflake::ident;

/// The Snowflake type a column's values are coerced to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Number { precision: u8, scale: u8 },
    Float,
    Boolean,
    TimestampNtz(EpochUnit),
    Date,
    Variant,
}

/// What an epoch number in a TIMESTAMP_NTZ column counts (the column's `"epoch"` option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochUnit {
    /// By magnitude, as Snowflake reads an integer: right for seconds and milliseconds of
    /// today's dates, wrong for microseconds within a year of 1970 (they look like ms).
    #[default]
    Magnitude,
    Seconds,
    Milliseconds,
    /// Debezium's `MicroTimestamp` (DATETIME(6), TIMESTAMP(6) without zone).
    Microseconds,
    Nanoseconds,
}

impl EpochUnit {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "seconds" | "s" => EpochUnit::Seconds,
            "milliseconds" | "ms" => EpochUnit::Milliseconds,
            "microseconds" | "us" => EpochUnit::Microseconds,
            "nanoseconds" | "ns" => EpochUnit::Nanoseconds,
            _ => {
                return Err(format!(
                    "epoch {s:?} is not one of seconds, milliseconds, microseconds, nanoseconds"
                ))
            }
        })
    }

    /// Units per second of an integer `n`.
    fn per_second(self, n: i64) -> i64 {
        match self {
            EpochUnit::Seconds => 1,
            EpochUnit::Milliseconds => 1_000,
            EpochUnit::Microseconds => 1_000_000,
            EpochUnit::Nanoseconds => 1_000_000_000,
            // https://docs.snowflake.com/en/sql-reference/functions/to_timestamp#usage-notes
            EpochUnit::Magnitude => match n.unsigned_abs() {
                0..31_536_000_000 => 1,
                31_536_000_000..31_536_000_000_000 => 1_000,
                31_536_000_000_000..31_536_000_000_000_000 => 1_000_000,
                _ => 1_000_000_000,
            },
        }
    }
}

impl std::str::FromStr for ColumnType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.trim().to_ascii_uppercase();
        let (base, args) = match upper.split_once('(') {
            Some((b, rest)) => (b.trim(), Some(rest.trim_end_matches(')'))),
            None => (upper.as_str(), None),
        };
        Ok(match base {
            "TEXT" | "VARCHAR" | "STRING" | "CHAR" => ColumnType::Text,
            "NUMBER" | "NUMERIC" | "DECIMAL" | "FIXED" | "INT" | "INTEGER" | "BIGINT" => {
                let (precision, scale) = match args {
                    None => (38, 0),
                    Some(a) => {
                        let mut parts = a.split(',').map(|p| p.trim().parse::<u8>());
                        let p = parts
                            .next()
                            .and_then(Result::ok)
                            .ok_or_else(|| format!("bad precision in {s:?}"))?;
                        let sc = match parts.next() {
                            None => 0,
                            Some(v) => v.map_err(|_| format!("bad scale in {s:?}"))?,
                        };
                        if p == 0 || p > 38 || sc > p {
                            return Err(format!("precision/scale out of range in {s:?}"));
                        }
                        (p, sc)
                    }
                };
                ColumnType::Number { precision, scale }
            }
            "FLOAT" | "DOUBLE" | "REAL" | "FLOAT8" => ColumnType::Float,
            "BOOLEAN" | "BOOL" => ColumnType::Boolean,
            "TIMESTAMP_NTZ" | "TIMESTAMP" | "DATETIME" => {
                ColumnType::TimestampNtz(EpochUnit::Magnitude)
            }
            "DATE" => ColumnType::Date,
            "VARIANT" | "OBJECT" | "ARRAY" => ColumnType::Variant,
            _ => return Err(format!("unsupported column type {s:?}")),
        })
    }
}

impl ColumnType {
    /// The type in a SQL cast.
    pub fn sql(&self) -> String {
        match self {
            ColumnType::Text => "VARCHAR".into(),
            ColumnType::Number { precision, scale } => format!("NUMBER({precision},{scale})"),
            ColumnType::Float => "FLOAT".into(),
            ColumnType::Boolean => "BOOLEAN".into(),
            ColumnType::TimestampNtz(_) => "TIMESTAMP_NTZ".into(),
            ColumnType::Date => "DATE".into(),
            ColumnType::Variant => "VARIANT".into(),
        }
    }
}

/// A value that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {reason}")]
pub struct CoerceError {
    pub column: String,
    pub reason: String,
}

/// Coerces one JSON value to `ty`, returning the JSON text to embed in the row document
/// (`null` for SQL NULL). Numbers travel as strings so no precision is lost to floats. The text
/// is canonical: two values Snowflake casts to the same value get the same text, so keys compare
/// as Snowflake compares them. A value Snowflake's cast would refuse (out of NUMBER(p,s) range, a
/// year outside 1–9999) is an error here, so its record is quarantined alone instead of failing
/// the MERGE. `rounding` says whether a NUMBER may be rounded to its scale (values, as Snowflake
/// does) or must be exact (keys, where rounding would merge distinct keys).
pub(crate) fn coerce(
    ty: ColumnType,
    value: Option<&str>,
    rounding: Rounding,
) -> Result<String, String> {
    let Some(raw) = value else {
        return Ok("null".into());
    };
    if raw == "null" {
        return Ok("null".into());
    }
    let first = raw.as_bytes()[0];
    let text = value_text(raw).unwrap_or_default();
    match ty {
        ColumnType::Variant => Ok(raw.to_string()),
        ColumnType::Text => Ok(quoted(&text)),
        ColumnType::Number { precision, scale } => {
            coerce_number(raw, first, &text, precision, scale, rounding)
        }
        ColumnType::Float => coerce_float(raw, first, &text),
        ColumnType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok("true".into()),
            "false" | "0" | "no" => Ok("false".into()),
            _ => Err(expected("a boolean", raw)),
        },
        ColumnType::TimestampNtz(unit) => {
            let ts =
                parse_timestamp(first, &text, unit).ok_or_else(|| expected("a timestamp", raw))?;
            in_snowflake_years(ts.date(), raw)?;
            Ok(quoted(&ts.format("%Y-%m-%d %H:%M:%S%.f").to_string()))
        }
        ColumnType::Date => {
            let d = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
                .ok()
                .or_else(|| parse_timestamp(first, &text, EpochUnit::Magnitude).map(|t| t.date()))
                .ok_or_else(|| expected("a date", raw))?;
            in_snowflake_years(d, raw)?;
            Ok(quoted(&d.format("%Y-%m-%d").to_string()))
        }
    }
}

// `coerce` runs once per column of every record: its steps are `#[inline]` and its error
// messages `#[cold]`. Split so, it ran 1 % fewer instructions per call than written in one
// piece (callgrind on the `upsert` bench; wall-clock on the shared 2-core machine varied by
// 50–140 % between runs).

/// A string as JSON text.
#[inline]
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "null".into())
}

/// Whether a value whose text starts with `first` is an object, an array or a boolean, which
/// a numeric column refuses even where its text would parse.
#[inline]
fn is_not_numeric(first: u8) -> bool {
    matches!(first, b'{' | b'[' | b't' | b'f')
}

/// [`coerce`] to NUMBER(p,s): the canonical text, as a JSON string.
#[inline]
fn coerce_number(
    raw: &str,
    first: u8,
    text: &str,
    precision: u8,
    scale: u8,
    rounding: Rounding,
) -> Result<String, String> {
    if is_not_numeric(first) {
        return Err(expected("a number", raw));
    }
    canonical_number(text.trim(), precision, scale, rounding)
        .map(|n| quoted(&n))
        .map_err(|e| number_error(e, raw, precision, scale))
}

/// The reason a value does not fit NUMBER(p,s).
#[cold]
fn number_error(e: NumberError, raw: &str, precision: u8, scale: u8) -> String {
    match e {
        NumberError::NotANumber => expected("a number", raw),
        NumberError::OutOfRange => format!(
            "numeric value {} is out of range for NUMBER({precision},{scale})",
            short(raw)
        ),
        NumberError::Inexact => format!(
            "key value {} has more than {scale} decimal places (NUMBER({precision},{scale}) would round it into another key)",
            short(raw)
        ),
    }
}

/// [`coerce`] to FLOAT: the shortest text of the finite value, as a JSON string.
#[inline]
fn coerce_float(raw: &str, first: u8, text: &str) -> Result<String, String> {
    if is_not_numeric(first) {
        return Err(expected("a number", raw));
    }
    let f: f64 = text.trim().parse().map_err(|_| expected("a number", raw))?;
    if !f.is_finite() {
        return Err(expected("a finite number", raw));
    }
    Ok(quoted(&canonical_float(f)))
}

/// The reason a value is not `what` (e.g. `a number`).
#[cold]
fn expected(what: &str, raw: &str) -> String {
    format!("expected {what}, got {}", short(raw))
}

fn short(raw: &str) -> String {
    let mut s: String = raw.chars().take(40).collect();
    if s.len() < raw.len() {
        s.push('…');
    }
    s
}

/// The shortest text that parses back to `f`, one per value (`6.0` and `6e0` are both `6`;
/// negative zero is zero, as Snowflake compares it).
fn canonical_float(f: f64) -> String {
    let f = if f == 0.0 { 0.0 } else { f };
    let plain = f.to_string();
    if plain.len() <= 24 {
        plain
    } else {
        format!("{f:e}")
    }
}

/// Snowflake's dates and timestamps span the years 1 to 9999; a value outside fails its cast:
/// <https://docs.snowflake.com/en/sql-reference/data-types-datetime#date>.
fn in_snowflake_years(date: NaiveDate, raw: &str) -> Result<(), String> {
    if (1..=9999).contains(&date.year()) {
        Ok(())
    } else {
        Err(format!("{} is outside the years 1 to 9999", short(raw)))
    }
}

/// RFC 3339 (any offset, converted to UTC), ISO without offset, or an epoch number (its unit by
/// magnitude, as Snowflake reads one).
fn parse_timestamp(first: u8, text: &str, unit: EpochUnit) -> Option<NaiveDateTime> {
    let t = text.trim();
    if first != b'"' {
        if let Ok(n) = t.parse::<i64>() {
            let per_second = unit.per_second(n);
            let nanos = n.rem_euclid(per_second) * (1_000_000_000 / per_second);
            return DateTime::<Utc>::from_timestamp(n.div_euclid(per_second), nanos as u32)
                .map(|d| d.naive_utc());
        }
        let n: f64 = t.parse().ok()?;
        let per_second = unit.per_second(n.clamp(i64::MIN as f64, i64::MAX as f64) as i64);
        let micros = n * (1e6 / per_second as f64);
        return DateTime::<Utc>::from_timestamp_micros(micros.round() as i64)
            .map(|d| d.naive_utc());
    }
    DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc).naive_utc())
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").ok())
        .or_else(|| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
}

#[derive(Debug, Clone, Deserialize)]
struct RawColumn {
    name: String,
    #[serde(alias = "pointer")]
    path: JsonPointer,
    #[serde(rename = "type", default = "text_type")]
    ty: String,
    /// For TIMESTAMP_NTZ: the unit of epoch numbers, when their magnitude cannot tell it.
    epoch: Option<String>,
}

fn text_type() -> String {
    "TEXT".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    /// Snowflake table name; the logical name upper-cased by default.
    table: Option<String>,
    keys: Vec<String>,
    columns: Vec<RawColumn>,
    /// A column of `columns` that orders versions (e.g. an event time); default: the Kinesis
    /// sequence number.
    version: Option<String>,
    delete: Option<RawDelete>,
    payload_column: Option<String>,
    #[serde(default = "yes")]
    lineage: bool,
    /// `debezium` or `dms`: column paths are then relative to the row image, and the envelope
    /// decides the operation and (without `version`) the version.
    envelope: Option<EnvelopeKind>,
    /// The field DMS writes an update's before-image to (`BeforeImageSettings.FieldName`).
    before_image: Option<String>,
    /// Top-level fields no column maps become columns of the table (see `evolution`).
    #[serde(default)]
    schema_evolution: bool,
    /// New columns one batch may add (default 100, Snowflake's cap for a COPY); records that
    /// need more are quarantined.
    max_new_columns: Option<usize>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
struct RawDelete {
    #[serde(alias = "pointer")]
    path: JsonPointer,
    value: String,
}

/// One mapped column.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Quoted identifier, e.g. `"SENSORID"`.
    pub ident: String,
    pub path: JsonPointer,
    pub ty: ColumnType,
    slot: usize,
}

impl Column {
    /// A column schema evolution added: its values come with each row, not from a slot.
    pub(crate) fn evolved(ident: String, path: JsonPointer, ty: ColumnType) -> Self {
        Self {
            ident,
            path,
            ty,
            slot: usize::MAX,
        }
    }
}

/// What orders two versions of a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The Kinesis sequence number, compared numerically.
    Sequence,
    /// A mapped column (index into `columns`), ties broken by sequence number.
    Column(usize),
}

/// The full mapping of one target table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableMapping {
    pub logical: String,
    /// Quoted, qualified when a database/schema are configured.
    pub target: String,
    pub columns: Vec<Column>,
    /// Indices into `columns`.
    pub keys: Vec<usize>,
    pub version: Version,
    delete: Option<(usize, String)>,
    /// Quoted identifier of the VARIANT column holding the whole payload.
    pub payload_column: Option<String>,
    pub lineage: bool,
    /// The change envelope records of this table arrive in.
    pub envelope: Option<Envelope>,
    /// Index of the column holding the envelope's version (see [`ENVELOPE_VERSION`]).
    envelope_version: Option<usize>,
    /// `"schema_evolution": true`: which fields are the mapping's own, and the cap per batch.
    pub evolution: Option<Evolution>,
}

/// What schema evolution needs to know of a mapping: the top-level fields it already reads and
/// the column names it writes itself, which a field never becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evolution {
    /// New columns one batch may add; records needing more are quarantined.
    pub max_new_columns: usize,
    /// The first token of every column path and of the delete marker: fields the mapping reads.
    mapped_fields: HashSet<String>,
    /// Upper-cased names of the mapped, payload, lineage and change-table columns.
    reserved: HashSet<String>,
}

impl Evolution {
    /// Whether `field` is read by the mapping, or names a column the function writes itself:
    /// such a field never becomes a column of its own.
    pub fn is_owned(&self, field: &str, upper: &str) -> bool {
        self.mapped_fields.contains(field) || self.reserved.contains(upper)
    }

    /// Whether the table column `name` is one the mapping writes (not an evolved column).
    pub fn is_reserved(&self, name: &str) -> bool {
        self.reserved.contains(&name.to_uppercase())
    }
}

/// The column an envelope mapping without `version` keeps the envelope's version in (TEXT), so
/// the MERGE orders changes across batches by it as it orders any version column.
pub const ENVELOPE_VERSION: &str = "CDC_VERSION";

/// What a record means for its table.
#[derive(Debug, Clone, PartialEq)]
pub enum Mapped {
    /// One row to merge (no allocation beyond the row: this is every flat record).
    Row(Row),
    /// A DMS update that changed the primary key: a delete of the old key, then the new row.
    Rekey { old: Row, new: Row },
    /// Valid, counted, not applied.
    Skip(Skip),
}

/// Lineage columns written by the upsert path, in order.
pub const LINEAGE: [&str; 4] = shared::lineage::table::MERGED;

/// A record as a typed row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Coerced values as JSON text, in column order.
    pub values: Vec<String>,
    pub is_delete: bool,
}

impl TableMapping {
    pub fn has_delete_marker(&self) -> bool {
        self.delete.is_some() || self.envelope.is_some()
    }

    /// What a payload means for this table: a flat record is one row; an envelope decides.
    /// The error is the quarantine reason.
    pub fn changes(&self, payload: &Payload<'_>) -> Result<Mapped, String> {
        let Some(envelope) = &self.envelope else {
            return self
                .row(payload)
                .map(Mapped::Row)
                .map_err(|e| e.to_string());
        };
        let (change, layout, version) =
            match envelope.interpret(payload).map_err(|e| e.to_string())? {
                Decision::Skip(skip) => return Ok(Mapped::Skip(skip)),
                Decision::Apply {
                    change,
                    layout,
                    version,
                } => (change, layout, version),
            };
        let image_row = |image: Image, is_delete: bool| {
            self.build_row(
                |i| payload.value(layout.column_slot(image, i)),
                |i| format!("{}{}", layout.image_path(image), self.columns[i].path),
                version.as_deref(),
                is_delete,
            )
            .map_err(|e| format!("{} {}", envelope.kind_name(), e))
        };
        match change {
            Change::Delete(image) => Ok(Mapped::Row(image_row(image, true)?)),
            Change::Upsert { old } => {
                let new = image_row(Image::New, false)?;
                // A before-image whose key differs: the old key's row goes, the new one stays.
                let old = old
                    .and_then(|image| image_row(image, true).ok())
                    .filter(|o| self.key_of(o) != self.key_of(&new));
                Ok(match old {
                    Some(old) => Mapped::Rekey { old, new },
                    None => Mapped::Row(new),
                })
            }
        }
    }

    /// The top-level fields of a record (of its new row image, with an envelope) that the
    /// mapping does not read, with their raw JSON values, by name; nulls left out. Empty unless
    /// the mapping evolves its table's schema, so other tables never parse a record twice.
    pub(crate) fn new_fields<'p>(&self, payload: &Payload<'p>) -> Vec<(String, &'p str)> {
        let Some(evolution) = &self.evolution else {
            return Vec::new();
        };
        let text = match &self.envelope {
            None => Some(payload.text()),
            Some(envelope) => envelope.new_image(payload),
        };
        let Some(fields) =
            text.and_then(|t| serde_json::from_str::<BTreeMap<String, &RawValue>>(t).ok())
        else {
            return Vec::new();
        };
        fields
            .into_iter()
            .map(|(name, value)| (name, value.get()))
            .filter(|(name, value)| {
                *value != "null" && !evolution.is_owned(name, &name.to_uppercase())
            })
            .collect()
    }

    /// Coerces a payload into a row. Keys must be present; a delete needs only its keys.
    pub fn row(&self, payload: &Payload<'_>) -> Result<Row, CoerceError> {
        let is_delete = self
            .delete
            .as_ref()
            .is_some_and(|(slot, value)| payload.text_of(*slot).is_some_and(|v| v == *value));
        self.build_row(
            |i| payload.value(self.columns[i].slot),
            |i| self.columns[i].path.to_string(),
            None,
            is_delete,
        )
    }

    /// A row from each column's raw value; `version` fills the envelope's version column.
    fn build_row<'p>(
        &self,
        value: impl Fn(usize) -> Option<&'p str>,
        path: impl Fn(usize) -> String,
        version: Option<&str>,
        is_delete: bool,
    ) -> Result<Row, CoerceError> {
        let version_json =
            version.map(|v| serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        let mut values = Vec::with_capacity(self.columns.len());
        for (i, c) in self.columns.iter().enumerate() {
            if self.envelope_version == Some(i) {
                values.push(version_json.clone().unwrap_or_else(|| "null".into()));
                continue;
            }
            let is_key = self.keys.contains(&i);
            let raw = value(i);
            let rounding = if is_key {
                Rounding::Exact
            } else {
                Rounding::HalfAwayFromZero
            };
            match coerce(c.ty, raw, rounding) {
                Ok(v) if is_key && v == "null" => {
                    return Err(CoerceError {
                        column: c.ident.clone(),
                        reason: format!("key field {} is missing or null", path(i)),
                    })
                }
                Ok(v) => values.push(v),
                Err(_) if is_delete && !is_key => values.push("null".into()),
                Err(reason) => {
                    return Err(CoerceError {
                        column: c.ident.clone(),
                        reason,
                    })
                }
            }
        }
        if let Version::Column(i) = self.version {
            if values[i] == "null" && !is_delete {
                return Err(CoerceError {
                    column: self.columns[i].ident.clone(),
                    reason: "version field is missing or null".into(),
                });
            }
        }
        Ok(Row { values, is_delete })
    }

    /// The key of a row, for de-duplication.
    pub fn key_of<'r>(&self, row: &'r Row) -> Vec<&'r str> {
        self.keys.iter().map(|&i| row.values[i].as_str()).collect()
    }

    /// Orders two rows' version columns as Snowflake orders the typed values; `None` when the
    /// version is the sequence number, or when either row has none (a delete may carry only its
    /// key), and the caller falls back on the sequence number.
    pub fn cmp_versions(&self, a: &Row, b: &Row) -> Option<std::cmp::Ordering> {
        let Version::Column(i) = self.version else {
            return None;
        };
        let (a, b) = (a.values[i].as_str(), b.values[i].as_str());
        if a == "null" || b == "null" {
            return None;
        }
        // Values are canonical JSON strings (or true/false): compare what they hold, borrowed
        // from between the quotes unless an escape needs decoding (only TEXT can have one).
        fn text(v: &str) -> std::borrow::Cow<'_, str> {
            match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) if !inner.contains('\\') => inner.into(),
                _ => serde_json::from_str::<String>(v).map_or_else(|_| v.into(), Into::into),
            }
        }
        Some(match self.columns[i].ty {
            ColumnType::Number { .. } => cmp_canonical(&text(a), &text(b)),
            ColumnType::Float => {
                let f = |v: &str| text(v).parse::<f64>().unwrap_or(f64::NAN);
                f(a).total_cmp(&f(b))
            }
            // Canonical `YYYY-MM-DD[ HH:MM:SS[.fff…]]` (years 1–9999), and false < true, order
            // as text; TEXT compares as Snowflake's default (binary) collation does.
            ColumnType::TimestampNtz(_)
            | ColumnType::Date
            | ColumnType::Boolean
            | ColumnType::Text
            | ColumnType::Variant => text(a).cmp(&text(b)),
        })
    }
}

/// Every target table's mapping, from `UPSERT_TABLES`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TableMappings {
    by_logical: HashMap<String, TableMapping>,
}

impl TableMappings {
    /// `UPSERT_TABLES`: JSON object of logical table → mapping; every table the router can
    /// produce must have one. `database`/`schema` qualify the target names when given.
    pub fn from_env(
        env: &Env<'_>,
        tables: &[&str],
        qualifier: &[&str],
        extractor: &mut Extractor,
    ) -> Result<Self, ConfigError> {
        const VAR: &str = "UPSERT_TABLES";
        let raw: HashMap<String, RawTable> = env
            .json_optional(VAR)?
            .ok_or_else(|| ConfigError::new(VAR, "is required"))?;
        let mut by_logical = HashMap::new();
        for (logical, table) in raw {
            let mapping = build(&logical, table, qualifier, extractor)
                .map_err(|e| ConfigError::new(VAR, format!("{logical}: {e}")))?;
            by_logical.insert(logical, mapping);
        }
        if let Some(missing) = tables.iter().find(|t| !by_logical.contains_key(**t)) {
            return Err(ConfigError::new(
                VAR,
                format!("has no mapping for table {missing:?}"),
            ));
        }
        Ok(Self { by_logical })
    }

    pub fn get(&self, logical: &str) -> Option<&TableMapping> {
        self.by_logical.get(logical)
    }

    /// Every mapping, by logical name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TableMapping)> {
        let mut all: Vec<_> = self
            .by_logical
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .collect();
        all.sort_by_key(|(k, _)| *k);
        all.into_iter()
    }

    /// Whether any table takes Debezium envelopes: then an empty or `null` record is a
    /// tombstone to count, not a payload to quarantine.
    pub fn any_debezium(&self) -> bool {
        self.by_logical.values().any(|m| {
            m.envelope
                .as_ref()
                .is_some_and(|e| e.kind == EnvelopeKind::Debezium)
        })
    }
}

/// Validates one table's configuration and registers its pointers in `x`: columns first, then
/// the envelope's fields, then the delete marker.
fn build(
    logical: &str,
    t: RawTable,
    qualifier: &[&str],
    x: &mut Extractor,
) -> Result<TableMapping, String> {
    let target = qualified_target(t.table.as_deref().unwrap_or(logical), qualifier)?;
    let mut columns = mapped_columns(&t, x)?;
    let envelope = envelope(&t, &columns, x)?;
    let envelope_version = match envelope {
        Some(_) if t.version.is_none() => Some(push_envelope_version(&mut columns)?),
        _ => None,
    };
    if t.keys.is_empty() {
        return Err("needs at least one key column".into());
    }
    let keys = t
        .keys
        .iter()
        .map(|k| column_index(&columns, k))
        .collect::<Result<Vec<_>, _>>()?;
    let version = version(&t, &columns, envelope_version)?;
    let delete = t
        .delete
        .as_ref()
        .map(|d| (x.slot(&d.path), d.value.clone()));
    let payload_column = t
        .payload_column
        .as_deref()
        .map(ident::quote)
        .transpose()
        .map_err(|e| e.to_string())?;
    let evolution = evolution(&t, &columns, payload_column.as_deref())?;
    Ok(TableMapping {
        logical: logical.to_string(),
        target,
        columns,
        keys,
        version,
        delete,
        payload_column,
        lineage: t.lineage,
        envelope,
        envelope_version,
        evolution,
    })
}

/// The mapping's [`Evolution`] when `schema_evolution` is on.
fn evolution(
    t: &RawTable,
    columns: &[Column],
    payload_column: Option<&str>,
) -> Result<Option<Evolution>, String> {
    if !t.schema_evolution {
        if t.max_new_columns.is_some() {
            return Err("max_new_columns needs \"schema_evolution\": true".into());
        }
        return Ok(None);
    }
    let max_new_columns = t
        .max_new_columns
        .unwrap_or(crate::evolution::MAX_NEW_COLUMNS);
    if max_new_columns == 0 {
        return Err("max_new_columns must be at least 1".into());
    }
    let first_token = |p: &JsonPointer| p.tokens().first().cloned();
    let mut mapped_fields: HashSet<String> = columns
        .iter()
        .filter_map(|c| first_token(&c.path))
        .collect();
    mapped_fields.extend(t.delete.iter().filter_map(|d| first_token(&d.path)));
    let bare = |ident: &str| ident.trim_matches('"').to_uppercase();
    let mut reserved: HashSet<String> = columns.iter().map(|c| bare(&c.ident)).collect();
    reserved.extend(payload_column.map(bare));
    reserved.extend(crate::evolution::RESERVED.iter().map(|n| n.to_string()));
    Ok(Some(Evolution {
        max_new_columns,
        mapped_fields,
        reserved,
    }))
}

/// The quoted Snowflake name of table `name`, qualified by `qualifier` (database, schema).
fn qualified_target(name: &str, qualifier: &[&str]) -> Result<String, String> {
    let mut parts: Vec<&str> = qualifier.to_vec();
    parts.push(name);
    ident::qualified(&parts).map_err(|e| e.to_string())
}

/// The configured columns, in order, each path registered in `x` unless an envelope resolves
/// it inside each row image.
fn mapped_columns(t: &RawTable, x: &mut Extractor) -> Result<Vec<Column>, String> {
    if t.columns.is_empty() {
        return Err("needs at least one column".into());
    }
    let mut columns = Vec::with_capacity(t.columns.len());
    for c in &t.columns {
        let ident = ident::quote(&c.name).map_err(|e| e.to_string())?;
        if columns.iter().any(|o: &Column| o.ident == ident) {
            return Err(format!("column {} appears twice", c.name));
        }
        if t.lineage && LINEAGE.iter().any(|l| ident == format!("\"{l}\"")) {
            return Err(format!("column {} is a lineage column", c.name));
        }
        let ty = column_type(c)?;
        // With an envelope the path is relative to each row image and resolved there.
        let slot = match t.envelope {
            None => x.slot(&c.path),
            Some(_) => usize::MAX,
        };
        columns.push(Column {
            ident,
            path: c.path.clone(),
            ty,
            slot,
        });
    }
    Ok(columns)
}

/// A column's type with its `epoch` option, which only a TIMESTAMP_NTZ column takes.
fn column_type(c: &RawColumn) -> Result<ColumnType, String> {
    Ok(match (c.ty.parse()?, c.epoch.as_deref()) {
        (ty, None) => ty,
        (ColumnType::TimestampNtz(_), Some(unit)) => {
            ColumnType::TimestampNtz(EpochUnit::parse(unit)?)
        }
        (_, Some(_)) => {
            return Err(format!(
                "column {}: epoch applies to TIMESTAMP_NTZ only",
                c.name
            ))
        }
    })
}

/// The table's envelope, its fields and every column under each image registered in `x`;
/// `None` for flat records. Settings that belong to another envelope, or to flat records, are
/// refused rather than ignored.
fn envelope(
    t: &RawTable,
    columns: &[Column],
    x: &mut Extractor,
) -> Result<Option<Envelope>, String> {
    let Some(kind) = t.envelope else {
        if t.before_image.is_some() {
            return Err("before_image needs \"envelope\": \"dms\"".into());
        }
        return Ok(None);
    };
    if t.before_image.is_some() && kind != EnvelopeKind::Dms {
        return Err("before_image is a DMS setting; Debezium has \"before\"".into());
    }
    if t.delete.is_some() {
        return Err("an envelope decides deletes itself; remove \"delete\"".into());
    }
    let paths: Vec<&JsonPointer> = columns.iter().map(|c| &c.path).collect();
    let before_image = t.before_image.as_deref().unwrap_or("before-image");
    Envelope::new(kind, &paths, before_image, x).map(Some)
}

/// Appends the [`ENVELOPE_VERSION`] column and returns its index; a configured column of that
/// name would be overwritten, so it is refused.
fn push_envelope_version(columns: &mut Vec<Column>) -> Result<usize, String> {
    let ident = format!("\"{ENVELOPE_VERSION}\"");
    if columns.iter().any(|c| c.ident == ident) {
        return Err(format!(
            "column {ENVELOPE_VERSION} holds the envelope's version; name it in \"version\" or rename it"
        ));
    }
    columns.push(Column {
        ident,
        path: "/source".parse()?,
        ty: ColumnType::Text,
        slot: usize::MAX,
    });
    Ok(columns.len() - 1)
}

/// The index of the column configured as `name`.
fn column_index(columns: &[Column], name: &str) -> Result<usize, String> {
    let q = ident::quote(name).map_err(|e| e.to_string())?;
    columns
        .iter()
        .position(|c| c.ident == q)
        .ok_or_else(|| format!("{name} is not one of the columns"))
}

/// What orders versions: the configured column, else the envelope's version column, else the
/// sequence number (kept in a lineage column, so it needs them).
fn version(
    t: &RawTable,
    columns: &[Column],
    envelope_version: Option<usize>,
) -> Result<Version, String> {
    Ok(match (&t.version, envelope_version) {
        (Some(v), _) => Version::Column(column_index(columns, v)?),
        (None, Some(i)) => Version::Column(i),
        (None, None) => {
            if !t.lineage {
                return Err("the default version (sequence number) needs lineage columns".into());
            }
            Version::Sequence
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(ty: &str, v: &str) -> Result<String, String> {
        coerce(ty.parse().unwrap(), Some(v), Rounding::HalfAwayFromZero)
    }

    #[test]
    fn an_epoch_number_is_read_in_the_unit_its_magnitude_names() {
        let ts = |v: &str| c("TIMESTAMP_NTZ", v).unwrap();
        let expected = r#""2023-11-14 22:13:20.123456""#;
        assert_eq!(ts("1700000000"), r#""2023-11-14 22:13:20""#);
        assert_eq!(ts("1700000000.123456"), expected);
        assert_eq!(ts("1700000000123"), r#""2023-11-14 22:13:20.123""#);
        // Debezium's MicroTimestamp, also before 1970
        assert_eq!(ts("1700000000123456"), expected);
        assert_eq!(ts("-2177452799999999"), r#""1901-01-01 00:00:00.000001""#);
        assert_eq!(
            ts("1700000000123456789"),
            r#""2023-11-14 22:13:20.123456789""#
        );
        assert_eq!(ts("31535999999"), r#""2969-05-02 23:59:59""#);
        assert_eq!(ts("31536000000"), r#""1971-01-01 00:00:00""#);
        // Microseconds within a year of 1970 look like milliseconds: the column names its unit.
        let micros = ColumnType::TimestampNtz(EpochUnit::Microseconds);
        let c = |v: &str| coerce(micros, Some(v), Rounding::Exact).unwrap();
        assert_eq!(ts("29201656984270"), r#""2895-05-13 03:23:04.270""#);
        assert_eq!(c("29201656984270"), r#""1970-12-04 23:34:16.984270""#);
        assert_eq!(c("-22886987557658"), r#""1969-04-11 02:30:12.442342""#);
        assert_eq!(c(r#""2024-01-02 03:04:05""#), r#""2024-01-02 03:04:05""#);
    }

    #[test]
    fn epoch_is_an_option_of_timestamp_columns_only() {
        let mapping = |column: &str| {
            mappings(&format!(
                r#"{{"orders":{{"keys":["a"],"columns":[{{"name":"a","path":"/a"}},{column}]}}}}"#
            ))
            .map(|_| ())
            .map_err(|e| e.to_string())
        };
        assert!(mapping(
            r#"{"name":"b","path":"/b","type":"TIMESTAMP_NTZ","epoch":"microseconds"}"#
        )
        .is_ok());
        assert!(
            mapping(r#"{"name":"b","path":"/b","type":"NUMBER","epoch":"microseconds"}"#)
                .unwrap_err()
                .contains("epoch applies to TIMESTAMP_NTZ only")
        );
        assert!(
            mapping(r#"{"name":"b","path":"/b","type":"TIMESTAMP_NTZ","epoch":"days"}"#)
                .unwrap_err()
                .contains("is not one of")
        );
    }

    #[test]
    fn coercion_to_each_type() {
        assert_eq!(c("TEXT", r#""a\"b""#).unwrap(), r#""a\"b""#);
        assert_eq!(c("TEXT", "12").unwrap(), r#""12""#);
        assert_eq!(c("TEXT", r#"{"a":1}"#).unwrap(), r#""{\"a\":1}""#);
        assert_eq!(c("NUMBER", "64").unwrap(), r#""64""#);
        assert_eq!(c("NUMBER", r#""64""#).unwrap(), r#""64""#);
        assert_eq!(
            c("NUMBER", "123456789012345678901234567890").unwrap(),
            r#""123456789012345678901234567890""#
        );
        assert_eq!(c("NUMBER(12,2)", "12.5").unwrap(), r#""12.50""#);
        assert_eq!(c("NUMBER", "12.0").unwrap(), r#""12""#);
        assert_eq!(c("NUMBER", "12.5").unwrap(), r#""13""#);
        assert_eq!(c("NUMBER", r#""0006""#).unwrap(), r#""6""#);
        assert_eq!(c("NUMBER", "6e0").unwrap(), r#""6""#);
        assert!(c("NUMBER(4,2)", "123.45")
            .unwrap_err()
            .contains("out of range for NUMBER(4,2)"));
        assert!(c("NUMBER", "1e38").unwrap_err().contains("out of range"));
        assert!(c("NUMBER", r#""hot""#)
            .unwrap_err()
            .contains("expected a number"));
        assert!(c("NUMBER", "true").is_err());
        assert_eq!(c("FLOAT", "64.25").unwrap(), r#""64.25""#);
        assert_eq!(c("FLOAT", "6.0").unwrap(), r#""6""#);
        assert_eq!(c("FLOAT", "-0.0").unwrap(), r#""0""#);
        assert_eq!(c("FLOAT", "1e300").unwrap(), r#""1e300""#);
        assert!(c("FLOAT", r#""NaN""#).is_err());
        assert_eq!(c("BOOLEAN", "true").unwrap(), "true");
        assert_eq!(c("BOOLEAN", r#""FALSE""#).unwrap(), "false");
        assert!(c("BOOLEAN", "2").is_err());
        assert_eq!(
            c("TIMESTAMP_NTZ", r#""2024-11-21T15:01:02Z""#).unwrap(),
            r#""2024-11-21 15:01:02""#
        );
        assert_eq!(
            c("TIMESTAMP_NTZ", r#""2024-11-21T16:01:02.5+01:00""#).unwrap(),
            r#""2024-11-21 15:01:02.500""#
        );
        assert_eq!(
            c("TIMESTAMP_NTZ", "1732201262").unwrap(),
            r#""2024-11-21 15:01:02""#
        );
        assert_eq!(
            c("TIMESTAMP_NTZ", "1732201262123").unwrap(),
            r#""2024-11-21 15:01:02.123""#
        );
        assert!(c("TIMESTAMP_NTZ", r#""yesterday""#).is_err());
        assert!(c("TIMESTAMP_NTZ", r#""0000-06-01T00:00:00Z""#)
            .unwrap_err()
            .contains("years 1 to 9999"));
        assert_eq!(
            c("TIMESTAMP_NTZ", "300000000000000").unwrap(),
            r#""1979-07-05 05:20:00""#
        );
        assert_eq!(
            c("TIMESTAMP_NTZ", r#""9999-12-31T23:59:59Z""#).unwrap(),
            r#""9999-12-31 23:59:59""#
        );
        assert!(c("DATE", r#""0000-12-31""#)
            .unwrap_err()
            .contains("years 1 to 9999"));
        assert_eq!(c("DATE", r#""2024-11-21""#).unwrap(), r#""2024-11-21""#);
        assert_eq!(
            c("VARIANT", r#"{"a": [1, 2]}"#).unwrap(),
            r#"{"a": [1, 2]}"#
        );
        assert_eq!(
            coerce(ColumnType::Text, None, Rounding::Exact).unwrap(),
            "null"
        );
        assert_eq!(c("NUMBER", "null").unwrap(), "null");
    }

    fn mappings(json: &str) -> Result<(TableMappings, Extractor), ConfigError> {
        let mut x = Extractor::new();
        let vars = [("UPSERT_TABLES", json)];
        TableMappings::from_env(&Env::new(&vars), &["orders"], &["DB", "S"], &mut x).map(|m| (m, x))
    }

    const ORDERS: &str = r#"{"orders":{"keys":["order_id"],"columns":[
        {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
        {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
        "version":"updated_at","delete":{"path":"/op","value":"d"},"payload_column":"payload"}}"#;

    #[test]
    fn rows_from_payloads() {
        let (m, x) = mappings(ORDERS).unwrap();
        let orders = m.get("orders").unwrap();
        assert_eq!(orders.target, r#""DB"."S"."ORDERS""#);
        assert_eq!(orders.version, Version::Column(2));
        let p = x
            .parse(
                br#"{"op":"u","order_id":7,"status":"PAID","updated_at":"2024-11-21T15:00:00Z"}"#,
            )
            .unwrap();
        let row = orders.row(&p).unwrap();
        assert_eq!(
            row.values,
            vec![r#""7""#, r#""PAID""#, r#""2024-11-21 15:00:00""#]
        );
        assert!(!row.is_delete);
        let del = x.parse(br#"{"op":"d","order_id":7}"#).unwrap();
        let row = orders.row(&del).unwrap();
        assert!(row.is_delete);
        assert_eq!(orders.key_of(&row), vec![r#""7""#]);
        let no_key = x
            .parse(br#"{"op":"c","status":"NEW","updated_at":"2024-11-21T15:00:00Z"}"#)
            .unwrap();
        assert!(orders
            .row(&no_key)
            .unwrap_err()
            .reason
            .contains("key field /order_id"));
        let bad = x
            .parse(br#"{"op":"c","order_id":"seven","updated_at":"2024-11-21T15:00:00Z"}"#)
            .unwrap();
        assert_eq!(orders.row(&bad).unwrap_err().column, r#""ORDER_ID""#);
        let mut doc = String::new();
        let meta = shared::kinesis::record::RecordMeta {
            stream: "s".into(),
            shard_id: "shardId-1".into(),
            sequence_number: "42".into(),
            partition_key: "k".into(),
            arrival_ms: 0,
            sub_sequence: None,
        };
        crate::row::push_row(
            &mut doc,
            orders,
            &orders.row(&p).unwrap(),
            Some(r#"{"x":1}"#),
            &meta,
            "2024-11-21T15:00:00.000Z",
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"c0":"7","c1":"PAID","c2":"2024-11-21 15:00:00","p":{"x":1},"d":false,"h":"shardId-1","s":"42","a":"2024-11-21T15:00:00.000Z"})
        );
    }

    #[test]
    fn configuration_errors() {
        let err = |j: &str| mappings(j).unwrap_err().to_string();
        assert!(err("{}").contains("no mapping for table \"orders\""));
        assert!(
            err(r#"{"orders":{"keys":["nope"],"columns":[{"name":"a","path":"/a"}]}}"#)
                .contains("nope is not one of the columns")
        );
        assert!(err(
            r#"{"orders":{"keys":["a"],"columns":[{"name":"a","path":"/a","type":"BLOB"}]}}"#
        )
        .contains("unsupported column type"));
        assert!(
            err(r#"{"orders":{"keys":["a"],"columns":[{"name":"a\"b","path":"/a"}]}}"#)
                .starts_with("configuration: UPSERT_TABLES: orders:")
        );
        assert!(err(
            r#"{"orders":{"keys":["a"],"columns":[{"name":"a","path":"/a"}],"lineage":false}}"#
        )
        .contains("needs lineage"));
        assert!(err(
            r#"{"orders":{"keys":["a"],"columns":[{"name":"kinesis_shard_id","path":"/a"}]}}"#
        )
        .contains("lineage column"));
        assert!(err(
            r#"{"orders":{"envelope":"debezium","keys":["a"],"columns":[{"name":"a","path":"/a"}],"delete":{"path":"/op","value":"d"}}}"#
        )
        .contains("envelope decides deletes"));
        assert!(err(
            r#"{"orders":{"envelope":"dms","keys":["a"],"columns":[{"name":"a","path":"/a"},{"name":"cdc_version","path":"/v"}]}}"#
        )
        .contains("CDC_VERSION holds the envelope's version"));
        assert!(err(
            r#"{"orders":{"keys":["a"],"columns":[{"name":"a","path":"/a"}],"before_image":"BI"}}"#
        )
        .contains("before_image needs"));
        assert!(err(
            r#"{"orders":{"envelope":"debezium","keys":["a"],"columns":[{"name":"a","path":"/a"}],"before_image":"BI"}}"#
        )
        .contains("before_image is a DMS setting"));
        assert!(err(
            r#"{"orders":{"envelope":"maxwell","keys":["a"],"columns":[{"name":"a","path":"/a"}]}}"#
        )
        .contains("unknown variant"));
    }

    #[test]
    fn evolving_mappings_read_the_fields_no_column_maps() {
        let (m, x) = mappings(
            r#"{"orders":{"schema_evolution":true,"keys":["order_id"],"columns":[
            {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"state","path":"/status/code"}],
            "delete":{"path":"/op","value":"d"},"payload_column":"payload"}}"#,
        )
        .unwrap();
        let orders = m.get("orders").unwrap();
        assert_eq!(orders.evolution.as_ref().unwrap().max_new_columns, 100);
        let p = x
            .parse(br#"{"op":"u","order_id":1,"status":{"code":"A"},"Priority":2,"note":null,"payload":1,"kinesis_shard_id":"x","tags":[1]}"#)
            .unwrap();
        assert_eq!(
            orders.new_fields(&p),
            [("Priority".to_string(), "2"), ("tags".to_string(), "[1]")]
        );
        let (m, x) = mappings(
            r#"{"orders":{"envelope":"debezium","schema_evolution":true,"max_new_columns":5,"keys":["order_id"],"columns":[
            {"name":"order_id","path":"/order_id","type":"NUMBER"}]}}"#,
        )
        .unwrap();
        let orders = m.get("orders").unwrap();
        let change = x
            .parse(br#"{"op":"u","before":{"order_id":1,"old":1},"after":{"order_id":1,"color":"red"},"source":{"ts_ms":1}}"#)
            .unwrap();
        assert_eq!(
            orders.new_fields(&change),
            [("color".to_string(), r#""red""#)]
        );
        let delete = x
            .parse(
                br#"{"op":"d","before":{"order_id":1,"old":1},"after":null,"source":{"ts_ms":1}}"#,
            )
            .unwrap();
        assert!(orders.new_fields(&delete).is_empty());
        let err = mappings(
            r#"{"orders":{"max_new_columns":5,"keys":["a"],"columns":[{"name":"a","path":"/a"}]}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_new_columns needs"), "{err}");
    }

    #[test]
    fn envelope_mappings_read_columns_from_the_image() {
        let (m, x) = mappings(
            r#"{"orders":{"envelope":"dms","before_image":"BI","keys":["order_id"],"columns":[
            {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"}]}}"#,
        )
        .unwrap();
        let orders = m.get("orders").unwrap();
        assert_eq!(orders.version, Version::Column(2));
        assert_eq!(orders.columns[2].ident, "\"CDC_VERSION\"");
        let meta = r#""metadata":{"timestamp":"2024-11-21T15:00:00Z","record-type":"data","operation":"update"}"#;
        let text =
            format!(r#"{{"data":{{"order_id":2,"status":"A"}},"BI":{{"order_id":1}},{meta}}}"#);
        let rekey = x.parse(text.as_bytes()).unwrap();
        match orders.changes(&rekey).unwrap() {
            Mapped::Rekey { old, new } => {
                assert_eq!((old.is_delete, new.is_delete), (true, false));
                assert_eq!(old.values[0], r#""1""#);
                assert_eq!(
                    new.values,
                    [r#""2""#, r#""A""#, r#""2024-11-21T15:00:00.000000000""#]
                );
            }
            other => panic!("{other:?}"),
        }
        let text =
            format!(r#"{{"data":{{"order_id":2,"status":"B"}},"BI":{{"order_id":2}},{meta}}}"#);
        let same_key = x.parse(text.as_bytes()).unwrap();
        assert!(matches!(orders.changes(&same_key).unwrap(), Mapped::Row(r) if !r.is_delete));
    }
}
