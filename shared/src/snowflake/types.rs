//! Statements, bind values, results, and the SQL API v2 wire format.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use uuid::Uuid;

/// One bind value with its Snowflake type; `None` is SQL NULL.
///
/// Values travel as strings, as the SQL API wants them. A NULL of any type is sent as
/// `{"type": "TEXT", "value": null}`: Snowflake accepts a TEXT null for a column of any type, and
/// fakesnow (the local service) fails on typed nulls.
#[derive(Debug, Clone, PartialEq)]
pub enum Binding {
    /// A string; Snowflake casts it to the column's type where the statement needs one.
    Text(Option<String>),
    /// An exact number (integer or decimal) in its decimal text form, e.g. `"123"`, `"-1.50"`.
    Fixed(Option<String>),
    /// A double-precision float, sent in Rust's shortest round-trip text form.
    Real(Option<f64>),
    /// `true` or `false`.
    Boolean(Option<bool>),
    /// `YYYY-MM-DD`.
    Date(Option<String>),
    /// `HH:MM:SS[.fffffffff]`.
    Time(Option<String>),
    /// Nanoseconds since the epoch (what the connectors send) or ISO 8601 without offset.
    TimestampNtz(Option<String>),
    /// Nanoseconds since the epoch or ISO 8601 with offset.
    TimestampLtz(Option<String>),
    /// `"<nanoseconds since the epoch> <offset minutes + 1440>"` or ISO 8601 with offset.
    TimestampTz(Option<String>),
    /// Hex.
    Binary(Option<String>),
}

impl Binding {
    /// A TEXT value.
    pub fn text(v: impl Into<String>) -> Self {
        Binding::Text(Some(v.into()))
    }
    /// A FIXED (integer) value.
    pub fn int(v: i64) -> Self {
        Binding::Fixed(Some(v.to_string()))
    }
    /// A REAL (floating point) value.
    pub fn real(v: f64) -> Self {
        Binding::Real(Some(v))
    }
    /// A BOOLEAN value.
    pub fn boolean(v: bool) -> Self {
        Binding::Boolean(Some(v))
    }
    /// A TEXT NULL (valid for a column of any type).
    pub fn null() -> Self {
        Binding::Text(None)
    }
    /// TIMESTAMP_NTZ as nanoseconds since the epoch.
    pub fn timestamp_ntz(v: chrono::NaiveDateTime) -> Self {
        let utc = v.and_utc();
        let nanos =
            i128::from(utc.timestamp()) * 1_000_000_000 + i128::from(utc.timestamp_subsec_nanos());
        Binding::TimestampNtz(Some(nanos.to_string()))
    }
    /// A DATE value (`YYYY-MM-DD`).
    pub fn date(v: chrono::NaiveDate) -> Self {
        Binding::Date(Some(v.format("%Y-%m-%d").to_string()))
    }

    /// The Snowflake type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Binding::Text(_) => "TEXT",
            Binding::Fixed(_) => "FIXED",
            Binding::Real(_) => "REAL",
            Binding::Boolean(_) => "BOOLEAN",
            Binding::Date(_) => "DATE",
            Binding::Time(_) => "TIME",
            Binding::TimestampNtz(_) => "TIMESTAMP_NTZ",
            Binding::TimestampLtz(_) => "TIMESTAMP_LTZ",
            Binding::TimestampTz(_) => "TIMESTAMP_TZ",
            Binding::Binary(_) => "BINARY",
        }
    }

    /// The value as the SQL API wants it (a string), or `None` for NULL.
    pub fn value(&self) -> Option<String> {
        match self {
            Binding::Text(v)
            | Binding::Fixed(v)
            | Binding::Date(v)
            | Binding::Time(v)
            | Binding::TimestampNtz(v)
            | Binding::TimestampLtz(v)
            | Binding::TimestampTz(v)
            | Binding::Binary(v) => v.clone(),
            Binding::Real(v) => v.map(|f| {
                if f.is_nan() {
                    "NaN".to_string()
                } else if f.is_infinite() {
                    if f > 0.0 { "inf" } else { "-inf" }.to_string()
                } else {
                    // shortest representation that round-trips
                    format!("{f:?}")
                }
            }),
            Binding::Boolean(v) => v.map(|b| b.to_string()),
        }
    }
}

impl Serialize for Binding {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        match self.value() {
            Some(v) => {
                m.serialize_entry("type", self.type_name())?;
                m.serialize_entry("value", &v)?;
            }
            None => {
                m.serialize_entry("type", "TEXT")?;
                m.serialize_entry("value", &Option::<String>::None)?;
            }
        }
        m.end()
    }
}

/// Positional bindings as the SQL API wants them: `{"1": {...}, "2": {...}}`.
pub(crate) struct Bindings<'a>(pub &'a [Binding]);

impl Serialize for Bindings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (i, b) in self.0.iter().enumerate() {
            m.serialize_entry(&(i + 1).to_string(), b)?;
        }
        m.end()
    }
}

/// One SQL statement with its positional (`?`) bind values.
#[derive(Debug, Clone, Default)]
pub struct Statement {
    /// The SQL text, one statement, with `?` where a value is bound.
    pub sql: String,
    /// The values of the `?`s, in order.
    pub bindings: Vec<Binding>,
    /// A caller-chosen requestId (see [`request_id_for`](super::request_id_for)); it is always sent
    /// with `retry=true`, so sending it again (a re-invoked Lambda) returns the stored outcome
    /// instead of executing the statement twice. `None`: a random id per `execute`.
    pub request_id: Option<Uuid>,
    /// Overrides the configured `query_tag`.
    pub query_tag: Option<String>,
}

impl Statement {
    /// A statement with no bindings, a random requestId and the configured query tag.
    pub fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            ..Self::default()
        }
    }
    /// Binds the next `?`.
    pub fn bind(mut self, b: Binding) -> Self {
        self.bindings.push(b);
        self
    }
    /// Binds the next `?`s, in order.
    pub fn bind_all(mut self, bs: impl IntoIterator<Item = Binding>) -> Self {
        self.bindings.extend(bs);
        self
    }
    /// Sends under `id` (always with `retry=true`), e.g. one made by [`request_id_for`](super::request_id_for).
    pub fn with_request_id(mut self, id: Uuid) -> Self {
        self.request_id = Some(id);
        self
    }
    /// Tags the statement (`query_tag`), instead of the configured tag.
    pub fn with_query_tag(mut self, tag: impl Into<String>) -> Self {
        self.query_tag = Some(tag.into());
        self
    }
}

/// A result column (`resultSetMetaData.rowType` entry).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ColumnType {
    /// The column's name in the result (upper case for an unquoted name or alias).
    pub name: String,
    /// Snowflake type: FIXED, REAL, TEXT, BOOLEAN, DATE, TIMESTAMP_NTZ, VARIANT, ...
    #[serde(rename = "type")]
    pub type_name: String,
    /// Maximum length of a TEXT (characters) or BINARY (bytes) column; None for other types.
    #[serde(default)]
    pub length: Option<u64>,
    /// Total digits of a FIXED column; None for other types.
    #[serde(default)]
    pub precision: Option<u64>,
    /// Digits after the decimal point (FIXED) or of fractional seconds (TIME, TIMESTAMP_*).
    #[serde(default)]
    pub scale: Option<u64>,
    /// Whether the column may hold NULL; None when Snowflake leaves it out.
    #[serde(default)]
    pub nullable: Option<bool>,
}

/// Row counts of a DML statement (`stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct DmlStats {
    /// Rows the statement inserted (a MERGE's `WHEN NOT MATCHED`, an INSERT).
    #[serde(rename = "numRowsInserted", default)]
    pub inserted: u64,
    /// Rows the statement updated.
    #[serde(rename = "numRowsUpdated", default)]
    pub updated: u64,
    /// Rows the statement deleted.
    #[serde(rename = "numRowsDeleted", default)]
    pub deleted: u64,
    /// Updated rows that joined several source rows (Snowpark's `multi_joined_rows_updated`).
    #[serde(rename = "numDuplicateRowsUpdated", default)]
    pub duplicates_updated: u64,
}

/// The complete outcome of a statement: every partition's rows, in order.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Snowflake's id of the statement, as the query history shows it.
    pub statement_handle: String,
    /// The requestId the statement was submitted under (the caller's, or the random one).
    pub request_id: Uuid,
    /// The result columns, in order; each row has one value per column.
    pub columns: Vec<ColumnType>,
    /// Values as Snowflake returns them (`jsonv2`): strings, `None` for NULL. Note the encodings:
    /// FIXED/REAL as decimal text, BOOLEAN `"true"`/`"false"`, DATE as days since the epoch,
    /// TIMESTAMP_NTZ as `"<seconds>.<nanoseconds>"`.
    pub rows: Vec<Vec<Option<String>>>,
    /// Row counts of a DML statement; None for a query or DDL.
    pub stats: Option<DmlStats>,
    /// HTTP requests made for this result (submissions, polls, partitions), retries included.
    pub http_requests: u32,
}

impl QueryResult {
    /// Index of a column by name, case-insensitively.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .position(|c| c.name == name)
            .or_else(|| {
                self.columns
                    .iter()
                    .position(|c| c.name.to_lowercase() == name.to_lowercase())
            })
    }

    /// The value in `row` of the column `name` (case-insensitive); `None` for NULL or no such cell.
    pub fn value(&self, row: usize, name: &str) -> Option<&str> {
        let i = self.column(name)?;
        self.rows.get(row)?.get(i)?.as_deref()
    }
}

// ----------------------------------------------------------------------------------------------
// Wire format
// ----------------------------------------------------------------------------------------------

#[derive(Serialize)]
pub(crate) struct RequestBody<'a> {
    pub statement: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warehouse: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bindings: Option<Bindings<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters<'a>>,
}

#[derive(Serialize)]
pub(crate) struct Parameters<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query_tag: Option<&'a str>,
}

/// `ResultSet`, `QueryStatus` and `QueryFailureStatus` all parse into this (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResponseBody {
    pub code: Option<String>,
    pub sql_state: Option<String>,
    pub message: Option<String>,
    pub statement_handle: Option<String>,
    pub statement_status_url: Option<String>,
    pub result_set_meta_data: Option<ResultSetMetaData>,
    #[serde(default)]
    pub data: Option<Vec<Vec<serde_json::Value>>>,
    pub stats: Option<DmlStats>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ResultSetMetaData {
    pub num_rows: Option<u64>,
    #[serde(default)]
    pub row_type: Vec<ColumnType>,
    #[serde(default)]
    pub partition_info: Vec<PartitionInfo>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PartitionInfo {
    pub row_count: Option<u64>,
}

/// `data` cells: strings or null per the spec; anything else is kept as its JSON text.
pub(crate) fn cells(data: Vec<Vec<serde_json::Value>>) -> Vec<Vec<Option<String>>> {
    data.into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| match v {
                    serde_json::Value::Null => None,
                    serde_json::Value::String(s) => Some(s),
                    other => Some(other.to_string()),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bindings_shape_and_typed_nulls_as_text() {
        let bs = vec![
            Binding::text("x"),
            Binding::int(-42),
            Binding::real(1.5),
            Binding::boolean(true),
            Binding::TimestampNtz(Some("1700000000000000000".into())),
            Binding::Fixed(None),
            Binding::Boolean(None),
            Binding::Real(None),
            Binding::TimestampNtz(None),
            Binding::Text(None),
            Binding::text(""),
        ];
        let v = serde_json::to_value(Bindings(&bs)).unwrap();
        assert_eq!(
            v,
            json!({
                "1": {"type": "TEXT", "value": "x"},
                "2": {"type": "FIXED", "value": "-42"},
                "3": {"type": "REAL", "value": "1.5"},
                "4": {"type": "BOOLEAN", "value": "true"},
                "5": {"type": "TIMESTAMP_NTZ", "value": "1700000000000000000"},
                "6": {"type": "TEXT", "value": null},
                "7": {"type": "TEXT", "value": null},
                "8": {"type": "TEXT", "value": null},
                "9": {"type": "TEXT", "value": null},
                "10": {"type": "TEXT", "value": null},
                "11": {"type": "TEXT", "value": ""},
            })
        );
    }

    #[test]
    fn binding_helpers() {
        let ts = chrono::NaiveDate::from_ymd_opt(2024, 1, 2)
            .unwrap()
            .and_hms_nano_opt(3, 4, 5, 6)
            .unwrap();
        assert_eq!(
            Binding::timestamp_ntz(ts).value().unwrap(),
            "1704164645000000006"
        );
        let before = chrono::NaiveDate::from_ymd_opt(1969, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 500_000_000)
            .unwrap();
        assert_eq!(
            Binding::timestamp_ntz(before).value().unwrap(),
            "-500000000"
        );
        assert_eq!(Binding::date(ts.date()).value().unwrap(), "2024-01-02");
        assert_eq!(Binding::real(0.1).value().unwrap(), "0.1");
        assert_eq!(Binding::real(1e300).value().unwrap(), "1e300");
        assert_eq!(Binding::real(f64::NAN).value().unwrap(), "NaN");
        assert_eq!(Binding::real(f64::NEG_INFINITY).value().unwrap(), "-inf");
        assert_eq!(Binding::null(), Binding::Text(None));
    }

    #[test]
    fn result_column_lookup() {
        let r = QueryResult {
            statement_handle: "h".into(),
            request_id: Uuid::nil(),
            columns: vec![
                ColumnType {
                    name: "ID".into(),
                    type_name: "FIXED".into(),
                    length: None,
                    precision: None,
                    scale: None,
                    nullable: None,
                },
                ColumnType {
                    name: "Name".into(),
                    type_name: "TEXT".into(),
                    length: None,
                    precision: None,
                    scale: None,
                    nullable: None,
                },
            ],
            rows: vec![vec![Some("1".into()), None]],
            stats: None,
            http_requests: 1,
        };
        assert_eq!(r.column("id"), Some(0));
        assert_eq!(r.column("NAME"), Some(1));
        assert_eq!(r.column("missing"), None);
        assert_eq!(r.value(0, "Id"), Some("1"));
        assert_eq!(r.value(0, "name"), None);
        assert_eq!(r.value(1, "id"), None);
    }
}
