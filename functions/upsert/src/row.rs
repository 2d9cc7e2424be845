//! The MERGE source row, written and read in this file only.
//!
//! A table's rows travel as one JSON array in the MERGE's single TEXT bind variable; each row is
//! `{"c0": …, "c1": …, "p": <payload>, "d": <delete?>, "h": <shard>, "s": <sequence>, "a":
//! <arrival>}`, and the MERGE's `USING` select reads the same keys back, typed by the mapping.
//! Short keys keep the request small (a 1,000-row statement is ~65 KB).

use std::fmt::Write as _;

use shared::kinesis::record::RecordMeta;
use shared::lineage::table as lineage;

use crate::mapping::{Row, TableMapping};

/// The payload column's value.
const PAYLOAD: &str = "p";
/// Whether the row is a delete.
const DELETE: &str = "d";
/// Lineage: the shard, sequence number and arrival time of the row's record.
const SHARD: &str = "h";
const SEQUENCE: &str = "s";
const ARRIVAL: &str = "a";

/// The source column that carries the delete flag into the MERGE's conditions.
pub(crate) const DELETE_COLUMN: &str = "\"__DELETE\"";

/// Appends one row document for the MERGE source: column values, payload, delete flag and
/// lineage (`arrival` is the record's arrival time, formatted once per row by the caller).
pub(crate) fn push_row(
    out: &mut String,
    mapping: &TableMapping,
    row: &Row,
    payload: Option<&str>,
    meta: &RecordMeta<'_>,
    arrival: &str,
) {
    out.push('{');
    for (i, v) in row.values.iter().enumerate() {
        let _ = write!(out, "\"c{i}\":{v},");
    }
    // The keys are spelled out (as PAYLOAD, DELETE, SHARD, SEQUENCE, ARRIVAL; the test below
    // holds them together): with the constants as format arguments every row formatted five more
    // values, +14 % instructions in `chunks` (callgrind, upsert bench).
    if mapping.payload_column.is_some() {
        out.push_str("\"p\":");
        out.push_str(payload.unwrap_or("null"));
        out.push(',');
    }
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "null".into());
    let _ = write!(
        out,
        "\"d\":{},\"h\":{},\"s\":{},\"a\":{}}}",
        row.is_delete,
        q(&meta.shard_id),
        q(&meta.sequence_number),
        q(arrival)
    );
}

/// The MERGE's `USING` source: the bound array flattened, each key read back as its column.
pub(crate) fn source_select(m: &TableMapping) -> String {
    let mut sql = String::from("SELECT ");
    for (i, c) in m.columns.iter().enumerate() {
        let _ = write!(sql, "value:\"c{i}\"::{} AS {}, ", c.ty.sql(), c.ident);
    }
    if let Some(p) = &m.payload_column {
        let _ = write!(sql, "value:\"{PAYLOAD}\" AS {p}, ");
    }
    if m.lineage {
        let _ = write!(
            sql,
            "value:\"{SHARD}\"::VARCHAR AS \"{}\", value:\"{SEQUENCE}\"::VARCHAR AS \"{}\", value:\"{ARRIVAL}\"::TIMESTAMP_NTZ AS \"{}\", ",
            lineage::SHARD_ID,
            lineage::SEQUENCE_NUMBER,
            lineage::ARRIVAL_TIME
        );
    }
    let _ = write!(
        sql,
        "value:\"{DELETE}\"::BOOLEAN AS {DELETE_COLUMN} FROM (SELECT PARSE_JSON(?, 'd') AS J) AS SRC, LATERAL FLATTEN(INPUT => SRC.J)"
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_row_written_has_the_keys_the_select_reads() {
        let config = crate::plan::tests::config(
            "t",
            r#"{"t":{"keys":["k"],"columns":[{"name":"k","path":"/k"},{"name":"v","path":"/v"}],
                "payload_column":"payload"}}"#,
        );
        let mapping = config.tables.get("t").unwrap();
        let row = Row {
            values: vec!["\"1\"".into(), "\"x\"".into()],
            is_delete: false,
        };
        let meta = RecordMeta {
            stream: "s".into(),
            shard_id: "shardId-1".into(),
            sequence_number: "42".into(),
            partition_key: "k".into(),
            arrival_ms: 0,
            sub_sequence: None,
        };
        let mut json = String::new();
        push_row(
            &mut json,
            mapping,
            &row,
            Some("{}"),
            &meta,
            "2024-01-01T00:00:00.000Z",
        );
        let written: serde_json::Value = serde_json::from_str(&json).unwrap();
        let mut keys: Vec<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort_unstable();
        let mut expected = vec!["c0", "c1", PAYLOAD, DELETE, SHARD, SEQUENCE, ARRIVAL];
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let select = source_select(mapping);
        for key in expected {
            assert!(
                select.contains(&format!("value:\"{key}\"")),
                "{key} not read: {select}"
            );
        }
    }
}
