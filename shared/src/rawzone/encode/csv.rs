//! CSV files from a configured column mapping (column ← JSON pointer), lineage columns appended.
//!
//! Quoting follows what Snowflake's CSV parser needs with `FIELD_OPTIONALLY_ENCLOSED_BY = '"'`:
//! a field is quoted when it holds a delimiter, a quote, a line break, a backslash (an escape
//! character in unquoted fields), surrounding spaces, or is empty; SQL NULL is an unquoted `\N`.

use std::collections::HashMap;

use serde::Deserialize;

use crate::config::{ConfigError, Env};
use crate::kinesis::payload::{Extractor, JsonPointer, Payload};
use crate::kinesis::record::RecordMeta;
use crate::kinesis::scan;

use super::RowLineage;

/// The lineage columns appended after the mapped ones, in file order.
pub(crate) const LINEAGE_COLUMNS: [&str; 7] = crate::lineage::file::CSV_COLUMNS;

/// One mapped column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct CsvColumn {
    pub name: String,
    #[serde(alias = "pointer")]
    pub path: JsonPointer,
    /// A record without this field is quarantined instead of written with a NULL.
    #[serde(default)]
    pub required: bool,
}

/// The mapped columns of one table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CsvMapping {
    pub columns: Vec<CsvColumn>,
    /// The extractor slot of each column.
    slots: Vec<usize>,
}

/// Why a record cannot become a CSV row.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("required field {path} for column {column} is missing or null")]
pub(crate) struct MissingField {
    pub column: String,
    pub path: String,
}

impl CsvMapping {
    pub fn new(columns: Vec<CsvColumn>, extractor: &mut Extractor) -> Result<Self, String> {
        if columns.is_empty() {
            return Err("needs at least one column".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &columns {
            let lower = c.name.to_ascii_lowercase();
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                return Err(format!(
                    "column name {:?} must be letters, digits and underscores",
                    c.name
                ));
            }
            if LINEAGE_COLUMNS.contains(&lower.as_str()) {
                return Err(format!("column name {:?} is reserved for lineage", c.name));
            }
            if !seen.insert(lower) {
                return Err(format!("column {:?} appears twice", c.name));
            }
        }
        let slots = columns.iter().map(|c| extractor.slot(&c.path)).collect();
        Ok(Self { columns, slots })
    }

    /// The header line: mapped columns then lineage columns.
    pub(crate) fn push_header(&self, out: &mut Vec<u8>) {
        let names = self
            .columns
            .iter()
            .map(|c| c.name.as_str())
            .chain(LINEAGE_COLUMNS);
        for (i, name) in names.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(name.as_bytes());
        }
        out.push(b'\n');
    }

    /// Checks the fields marked required before any row is numbered.
    pub fn check(&self, payload: &Payload<'_>) -> Result<(), MissingField> {
        for (c, slot) in self
            .columns
            .iter()
            .zip(&self.slots)
            .filter(|(c, _)| c.required)
        {
            if payload.text_of(*slot).is_none() {
                return Err(MissingField {
                    column: c.name.clone(),
                    path: c.path.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Appends the row of one record; `lineage` is the object's, `row` its 1-based number.
    pub fn push_row<'m>(
        &self,
        out: &mut Vec<u8>,
        payload: &Payload<'_>,
        meta: &'m RecordMeta<'_>,
        lineage: &mut RowLineage<'m>,
        row: u64,
    ) {
        for slot in &self.slots {
            push_json_field(out, payload.value(*slot));
            out.push(b',');
        }
        lineage.push_source(out, meta);
        out.push(b',');
        push_field(out, Some(&meta.sequence_number));
        out.push(b',');
        push_field(out, Some(&meta.partition_key));
        out.push(b',');
        lineage.push_arrival(out, meta.arrival_ms);
        out.push(b',');
        lineage.push_file(out);
        out.push(b',');
        lineage.push_row_number(out, row);
        out.push(b'\n');
    }
}

/// Per-table CSV mappings from `CSV_COLUMNS`: a JSON array (every table) or an object of
/// table → array.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsvMappings {
    all: Option<CsvMapping>,
    by_table: HashMap<String, CsvMapping>,
}

impl CsvMappings {
    /// `CSV_COLUMNS`, with columns for every one of `tables` (the tables records are routed to);
    /// each column's pointer gets its slot in `extractor`.
    pub fn from_env(
        env: &Env<'_>,
        tables: &[&str],
        extractor: &mut Extractor,
    ) -> Result<Self, ConfigError> {
        const VAR: &str = "CSV_COLUMNS";
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            All(Vec<CsvColumn>),
            ByTable(HashMap<String, Vec<CsvColumn>>),
        }
        let raw: Raw = env
            .json_optional(VAR)?
            .ok_or_else(|| ConfigError::new(VAR, "is required when FORMAT=csv"))?;
        let mappings = match raw {
            Raw::All(cols) => CsvMappings {
                all: Some(CsvMapping::new(cols, extractor).map_err(|e| ConfigError::new(VAR, e))?),
                by_table: HashMap::new(),
            },
            Raw::ByTable(map) => {
                let mut by_table = HashMap::new();
                for (table, cols) in map {
                    let mapping = CsvMapping::new(cols, extractor)
                        .map_err(|e| ConfigError::new(VAR, format!("{table}: {e}")))?;
                    by_table.insert(table, mapping);
                }
                CsvMappings {
                    all: None,
                    by_table,
                }
            }
        };
        if let Some(missing) = tables.iter().find(|t| mappings.get(t).is_none()) {
            return Err(ConfigError::new(
                VAR,
                format!("has no columns for table {missing:?}"),
            ));
        }
        Ok(mappings)
    }

    pub(crate) fn get(&self, table: &str) -> Option<&CsvMapping> {
        self.by_table.get(table).or(self.all.as_ref())
    }
}

/// Bytes that force a field into quotes (besides surrounding spaces).
const NEEDS_QUOTES: &[u8] = b",\"\n\r\\";

/// Appends a value's JSON text as a field, as [`push_field`] does its text (see
/// [`crate::kinesis::payload::value_text`]): strings unescaped, null as `\N`, the rest as written.
pub(crate) fn push_json_field(out: &mut Vec<u8>, json: Option<&str>) {
    match json.map(str::as_bytes) {
        // A number's text is digits, signs, '.' and exponents, and true and false are plain
        // words: nothing that needs quotes.
        Some(number @ [b'-' | b'0'..=b'9' | b't' | b'f', ..]) => {
            out.extend_from_slice(number);
            return;
        }
        Some(b"null") | None => {
            out.extend_from_slice(b"\\N");
            return;
        }
        _ => {}
    }
    if let Some([b'"', inner @ .., b'"']) = json.map(str::as_bytes) {
        // The text was validated as a string: without a backslash there is nothing to
        // unescape, and the bytes between the quotes are the value.
        let special = scan::find_byte(inner, 0, NEEDS_QUOTES);
        if special == inner.len() && !needs_quotes_at_edges(inner) {
            out.extend_from_slice(inner);
            return;
        }
        if !inner[special..].contains(&b'\\') {
            push_quoted(out, inner);
            return;
        }
    }
    push_field(
        out,
        json.and_then(crate::kinesis::payload::value_text)
            .as_deref(),
    );
}

/// Appends one field, quoted when it needs to be.
pub(crate) fn push_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(value) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    let bytes = value.as_bytes();
    if needs_quotes_at_edges(bytes) || scan::find_byte(bytes, 0, NEEDS_QUOTES) < bytes.len() {
        push_quoted(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
}

/// An empty field, or one with a space at either end, is quoted so it survives as written.
fn needs_quotes_at_edges(bytes: &[u8]) -> bool {
    matches!(
        (bytes.first(), bytes.last()),
        (Some(b' '), _) | (_, Some(b' ')) | (None, _)
    )
}

/// Appends `bytes` between quotes, doubling the quotes in it.
fn push_quoted(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    loop {
        let quote = scan::find_byte(bytes, start, b"\"");
        if quote == bytes.len() {
            out.extend_from_slice(&bytes[start..]);
            break;
        }
        out.extend_from_slice(&bytes[start..=quote]);
        out.push(b'"');
        start = quote + 1;
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn field(v: Option<&str>) -> String {
        let mut out = Vec::new();
        push_field(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn quoting_edge_cases() {
        assert_eq!(field(Some("plain")), "plain");
        assert_eq!(field(Some("a,b")), "\"a,b\"");
        assert_eq!(field(Some("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(field(Some("two\nlines\r\n")), "\"two\nlines\r\n\"");
        assert_eq!(field(Some("C:\\temp")), "\"C:\\temp\"");
        assert_eq!(field(Some(" padded ")), "\" padded \"");
        assert_eq!(field(Some("")), "\"\"");
        assert_eq!(field(Some("ünïcödé ✓ 温度")), "ünïcödé ✓ 温度");
        assert_eq!(field(Some("\"")), "\"\"\"\"");
        assert_eq!(field(None), "\\N");
    }

    #[test]
    fn json_values_are_written_as_their_text_is() {
        for json in [
            r#""plain""#,
            r#""a,b""#,
            r#""say \"hi\"""#,
            r#""two\nlines""#,
            r#""C:\\temp""#,
            r#""" "#.trim(),
            r#"" padded ""#,
            r#""ünïcödé ✓ 温度""#,
            r#""\u00e9\/""#,
            r#""quote \" inside, with a comma""#,
            "12.5",
            "-0",
            "true",
            "null",
            r#"{"a":[1,"x,y"]}"#,
            r#"[" ", "\""]"#,
        ] {
            let (mut fast, mut plain) = (Vec::new(), Vec::new());
            push_json_field(&mut fast, Some(json));
            push_field(
                &mut plain,
                crate::kinesis::payload::value_text(json).as_deref(),
            );
            assert_eq!(
                String::from_utf8(fast).unwrap(),
                String::from_utf8(plain).unwrap(),
                "{json}"
            );
        }
        let mut none = Vec::new();
        push_json_field(&mut none, None);
        assert_eq!(none, b"\\N");
    }

    fn mapping() -> (CsvMapping, Extractor) {
        let cols: Vec<CsvColumn> = serde_json::from_str(
            r#"[{"name":"sensorid","path":"/sensorId","required":true},{"name":"temp","path":"currentTemperature"},{"name":"note","path":"/meta/note"}]"#,
        )
        .unwrap();
        let mut x = Extractor::new();
        (CsvMapping::new(cols, &mut x).unwrap(), x)
    }

    #[test]
    fn rows_follow_the_mapping_with_lineage() {
        let (m, x) = mapping();
        let mut out = Vec::new();
        m.push_header(&mut out);
        let p = x
            .parse(br#"{"sensorId":6,"currentTemperature":64.5,"meta":{"note":"hot, \"very\""}}"#)
            .unwrap();
        let meta = RecordMeta {
            stream: Cow::Borrowed("s"),
            shard_id: Cow::Borrowed("shardId-1"),
            sequence_number: "7".into(),
            partition_key: Cow::Borrowed("6"),
            arrival_ms: 0,
            sub_sequence: None,
        };
        let mut lineage = RowLineage::new(crate::rawzone::encode::Format::Csv, "raw/t/f.csv.gz");
        m.push_row(&mut out, &p, &meta, &mut lineage, 1);
        let p2 = x.parse(br#"{"sensorId":"x"}"#).unwrap();
        m.push_row(&mut out, &p2, &meta, &mut lineage, 2);
        // Stream and shard are encoded once per run of rows that share them.
        let other = RecordMeta {
            stream: Cow::Borrowed("a,b"),
            shard_id: Cow::Borrowed(""),
            ..meta.clone()
        };
        m.push_row(&mut out, &p2, &other, &mut lineage, 3);
        m.push_row(&mut out, &p2, &meta, &mut lineage, 4);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "sensorid,temp,note,stream,shard_id,sequence_number,partition_key,arrival_time,source_file,source_row\n\
             6,64.5,\"hot, \"\"very\"\"\",s,shardId-1,7,6,1970-01-01T00:00:00.000Z,raw/t/f.csv.gz,1\n\
             x,\\N,\\N,s,shardId-1,7,6,1970-01-01T00:00:00.000Z,raw/t/f.csv.gz,2\n\
             x,\\N,\\N,\"a,b\",\"\",7,6,1970-01-01T00:00:00.000Z,raw/t/f.csv.gz,3\n\
             x,\\N,\\N,s,shardId-1,7,6,1970-01-01T00:00:00.000Z,raw/t/f.csv.gz,4\n"
        );
    }

    #[test]
    fn required_fields_are_checked() {
        let (m, x) = mapping();
        assert!(m.check(&x.parse(br#"{"sensorId":1}"#).unwrap()).is_ok());
        let err = m
            .check(&x.parse(br#"{"sensorId":null}"#).unwrap())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "required field /sensorId for column sensorid is missing or null"
        );
    }

    #[test]
    fn mapping_validation() {
        let col = |n: &str| CsvColumn {
            name: n.into(),
            path: "/a".parse().unwrap(),
            required: false,
        };
        let x = &mut Extractor::new();
        assert!(CsvMapping::new(vec![], x).is_err());
        assert!(CsvMapping::new(vec![col("a"), col("A")], x).is_err());
        assert!(CsvMapping::new(vec![col("source_row")], x).is_err());
        assert!(CsvMapping::new(vec![col("a b")], x).is_err());
    }

    #[test]
    fn mappings_per_table_from_env() {
        let vars = [(
            "CSV_COLUMNS",
            r#"{"orders":[{"name":"id","path":"/order/id"}]}"#,
        )];
        let env = Env::new(&vars);
        let x = &mut Extractor::new();
        let m = CsvMappings::from_env(&env, &["orders"], x).unwrap();
        assert_eq!(m.get("orders").unwrap().columns[0].name, "id");
        assert_eq!(
            CsvMappings::from_env(&env, &["orders", "clicks"], x)
                .unwrap_err()
                .var,
            "CSV_COLUMNS"
        );
    }
}
