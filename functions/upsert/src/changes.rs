//! The streaming write mode's wire format and SQL, in one place: each change becomes one NDJSON
//! line appended to the table's change table through Snowpipe Streaming, and a Dynamic Table
//! over the change table keeps the newest version per key without deleted keys — the state the
//! MERGE mode keeps in the target table, without a writer taking the table's lock.
//!
//! A change line: the mapped columns by name, the payload column when mapped, `CHANGE_OP`
//! (`UPSERT` or `DELETE`) and the lineage `KINESIS_SHARD_ID`, `KINESIS_SEQUENCE_NUMBER`,
//! `KINESIS_SUB_SEQUENCE` (the KPL sub-record index, or null) and `KINESIS_ARRIVAL_TIME`.

use std::fmt::Write as _;

use crate::mapping::{Row, TableMapping, Version};
use shared::kinesis::record::RecordMeta;
use shared::kinesis::sequence::SequenceNumber;
use shared::lineage::table as lineage;

/// The change table's operation column.
pub const CHANGE_OP: &str = "CHANGE_OP";

/// Lineage columns of a change table, in order.
pub const CHANGE_LINEAGE: [(&str, &str); 4] = [
    (lineage::SHARD_ID, "VARCHAR"),
    (lineage::SEQUENCE_NUMBER, "VARCHAR"),
    (lineage::SUB_SEQUENCE, "NUMBER(10,0)"),
    (lineage::ARRIVAL_TIME, "TIMESTAMP_NTZ"),
];

/// Names of the objects the streaming mode writes and reads for one mapped table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeObjects {
    /// Qualified, quoted: `"DB"."S"."ORDERS_CHANGES"`.
    pub change_table: String,
    /// The bare change table name, as the streaming API's paths take it: `ORDERS_CHANGES`.
    pub change_table_name: String,
    /// The default pipe Snowflake makes for streaming into a table: `ORDERS_CHANGES-STREAMING`,
    /// <https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-api>.
    pub pipe: String,
    /// Qualified, quoted: `"DB"."S"."ORDERS_LATEST"`.
    pub latest: String,
}

impl ChangeObjects {
    /// `suffix` names the change table (`_CHANGES`) and `latest_suffix` the Dynamic Table
    /// (`_LATEST`) after the mapping's target, in its database and schema.
    pub fn of(mapping: &TableMapping, suffix: &str, latest_suffix: &str) -> Self {
        let renamed = |s: &str| {
            let base = mapping.target.strip_suffix('"').unwrap_or(&mapping.target);
            format!("{base}{s}\"")
        };
        let change_table = renamed(suffix);
        let change_table_name = last_name(&change_table);
        Self {
            pipe: format!("{change_table_name}-STREAMING"),
            change_table_name,
            change_table,
            latest: renamed(latest_suffix),
        }
    }
}

/// The unquoted last part of a quoted, qualified name.
fn last_name(qualified: &str) -> String {
    let inner = qualified.strip_suffix('"').unwrap_or(qualified);
    let start = inner.rfind("\".\"").map(|i| i + 3).unwrap_or(1);
    inner[start.min(inner.len())..].replace("\"\"", "\"")
}

/// A column's name without its quotes, as an NDJSON key.
fn bare(ident: &str) -> String {
    ident
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(ident)
        .replace("\"\"", "\"")
}

/// A row's `CHANGE_OP` value.
pub fn change_op(row: &Row) -> &'static str {
    if row.is_delete {
        "DELETE"
    } else {
        "UPSERT"
    }
}

/// The change rows of one shard among `n` sequence numbers (bound after the shard): what a
/// committed append left in the change table, to find the rows Snowflake refused at commit.
/// Answers sequence number, sub sequence and `CHANGE_OP`, which tell a record's rows apart.
pub fn landed_query(objects: &ChangeObjects, n: usize) -> String {
    format!(
        "SELECT \"{seq}\", \"{sub}\", \"{CHANGE_OP}\" FROM {table} WHERE \"{shard}\" = ? AND \"{seq}\" IN ({marks})",
        seq = lineage::SEQUENCE_NUMBER,
        sub = lineage::SUB_SEQUENCE,
        shard = lineage::SHARD_ID,
        table = objects.change_table,
        marks = vec!["?"; n.max(1)].join(", "),
    )
}

/// Appends one change line (with its newline).
pub fn push_change_line(
    out: &mut String,
    mapping: &TableMapping,
    row: &Row,
    payload: Option<&str>,
    meta: &RecordMeta<'_>,
) {
    let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "null".into());
    out.push('{');
    for (c, v) in mapping.columns.iter().zip(&row.values) {
        let _ = write!(out, "{}:{v},", q(&bare(&c.ident)));
    }
    if let Some(p) = &mapping.payload_column {
        let _ = write!(out, "{}:{},", q(&bare(p)), payload.unwrap_or("null"));
    }
    let _ = writeln!(
        out,
        "\"{CHANGE_OP}\":\"{}\",\"{}\":{},\"{}\":{},\"{}\":{},\"{}\":{}}}",
        change_op(row),
        lineage::SHARD_ID,
        q(&meta.shard_id),
        lineage::SEQUENCE_NUMBER,
        q(&meta.sequence_number),
        lineage::SUB_SEQUENCE,
        meta.sub_sequence
            .map(|s| s.to_string())
            .unwrap_or_else(|| "null".into()),
        lineage::ARRIVAL_TIME,
        q(&meta.arrival_rfc3339()),
    );
}

/// The offset token of a record: its sequence number, and the KPL sub-record index when it has
/// one (`<sequence>:<index>`), so a channel's committed offset orders records as Lambda does.
pub fn offset_token(meta: &RecordMeta<'_>) -> String {
    match meta.sub_sequence {
        None => meta.sequence_number.to_string(),
        Some(i) => format!("{}:{i}", meta.sequence_number),
    }
}

/// An offset token as (sequence number, sub-record index).
fn parse_offset(token: &str) -> (&str, Option<u32>) {
    match token.split_once(':') {
        Some((seq, i)) => (seq, i.parse::<u32>().ok()),
        None => (token, None),
    }
}

fn cmp_positions(a: (&str, Option<u32>), b: (&str, Option<u32>)) -> std::cmp::Ordering {
    shared::kinesis::sequence::cmp_sequence_numbers(a.0, b.0).then(a.1.cmp(&b.1))
}

/// Whether a record is at or below a committed offset token (already in the change table).
pub fn is_committed(meta: &RecordMeta<'_>, committed: &str) -> bool {
    cmp_positions(
        (&meta.sequence_number, meta.sub_sequence),
        parse_offset(committed),
    )
    .is_le()
}

/// Whether a channel's `committed` offset token is at or past `offset`.
pub fn offset_reached(committed: &str, offset: &str) -> bool {
    cmp_positions(parse_offset(offset), parse_offset(committed)).is_le()
}

/// `CREATE TABLE IF NOT EXISTS` of the change table.
pub fn change_table_ddl(mapping: &TableMapping, objects: &ChangeObjects) -> String {
    let mut cols: Vec<String> = mapping
        .columns
        .iter()
        .map(|c| format!("{} {}", c.ident, c.ty.sql()))
        .collect();
    cols.extend(
        mapping
            .payload_column
            .iter()
            .map(|p| format!("{p} VARIANT")),
    );
    cols.push(format!("\"{CHANGE_OP}\" VARCHAR"));
    cols.extend(CHANGE_LINEAGE.iter().map(|(n, t)| format!("\"{n}\" {t}")));
    format!(
        "CREATE TABLE IF NOT EXISTS {} ({})",
        objects.change_table,
        cols.join(", ")
    )
}

/// The newest change per key, deleted keys left out, in the MERGE mode's order: the version
/// column, then the sequence number and sub-record index. A NULL version sorts last, as the
/// MERGE never lets an unversioned row replace a versioned one; but a delete that carries no
/// version wins over every change before it, as it does in the MERGE (it deletes whatever row
/// the key has): it ranks with the highest version seen up to it in sequence order
/// (`CHANGE_VERSION`), and its later position breaks the tie.
pub fn latest_query(mapping: &TableMapping, objects: &ChangeObjects) -> String {
    let mut cols: Vec<String> = mapping.columns.iter().map(|c| c.ident.clone()).collect();
    cols.extend(mapping.payload_column.iter().cloned());
    cols.extend(CHANGE_LINEAGE.iter().map(|(n, _)| format!("\"{n}\"")));
    let keys = mapping
        .keys
        .iter()
        .map(|&k| mapping.columns[k].ident.as_str())
        .collect::<Vec<&str>>()
        .join(", ");
    let sequence = SequenceNumber::sql_order(&format!("\"{}\"", lineage::SEQUENCE_NUMBER));
    let sub = format!("\"{}\"", lineage::SUB_SEQUENCE);
    let (changes, mut order) = match mapping.version {
        Version::Column(v) => {
            let v = &mapping.columns[v].ident;
            let changes = format!(
                "(SELECT *, CASE WHEN \"{CHANGE_OP}\" = 'DELETE' AND {v} IS NULL THEN MAX({v}) OVER (PARTITION BY {keys} ORDER BY {sequence}, {sub} NULLS FIRST ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ELSE {v} END AS \"CHANGE_VERSION\" FROM {})",
                objects.change_table
            );
            (
                changes,
                vec!["\"CHANGE_VERSION\" DESC NULLS LAST".to_string()],
            )
        }
        Version::Sequence => (objects.change_table.clone(), Vec::new()),
    };
    order.push(format!("{sequence} DESC"));
    order.push(format!("{sub} DESC NULLS LAST"));
    format!(
        "SELECT {cols} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY {order}) AS \"CHANGE_RANK\" FROM {changes}) WHERE \"CHANGE_RANK\" = 1 AND \"{CHANGE_OP}\" <> 'DELETE'",
        cols = cols.join(", "),
        order = order.join(", "),
    )
}

/// The Dynamic Table of the latest state,
/// <https://docs.snowflake.com/en/sql-reference/sql/create-dynamic-table>.
pub fn latest_ddl(
    mapping: &TableMapping,
    objects: &ChangeObjects,
    target_lag: &str,
    warehouse: &str,
) -> String {
    format!(
        "CREATE OR REPLACE DYNAMIC TABLE {} TARGET_LAG = '{}' WAREHOUSE = {} AS {}",
        objects.latest,
        target_lag.replace('\'', "''"),
        warehouse,
        latest_query(mapping, objects)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::TableMappings;
    use shared::config::Env;
    use shared::kinesis::payload::Extractor;
    use std::borrow::Cow;

    fn orders() -> TableMapping {
        let json = r#"{"orders":{"keys":["order_id"],"columns":[
            {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"},
            {"name":"updated_at","path":"/updated_at","type":"TIMESTAMP_NTZ"}],
            "version":"updated_at","delete":{"path":"/op","value":"d"}}}"#;
        let vars = [("UPSERT_TABLES", json)];
        let mut x = Extractor::new();
        TableMappings::from_env(&Env::new(&vars), &["orders"], &["DB", "S"], &mut x)
            .unwrap()
            .get("orders")
            .unwrap()
            .clone()
    }

    fn meta(seq: &str, sub: Option<u32>) -> RecordMeta<'static> {
        RecordMeta {
            stream: Cow::Borrowed("s"),
            shard_id: Cow::Borrowed("shardId-000000000001"),
            sequence_number: seq.to_string().into(),
            partition_key: Cow::Borrowed("k"),
            arrival_ms: 1_700_000_000_123,
            sub_sequence: sub,
        }
    }

    #[test]
    fn names_follow_the_target() {
        let o = ChangeObjects::of(&orders(), "_CHANGES", "_LATEST");
        assert_eq!(o.change_table, r#""DB"."S"."ORDERS_CHANGES""#);
        assert_eq!(o.change_table_name, "ORDERS_CHANGES");
        assert_eq!(o.pipe, "ORDERS_CHANGES-STREAMING");
        assert_eq!(o.latest, r#""DB"."S"."ORDERS_LATEST""#);
    }

    #[test]
    fn a_change_line_names_every_column() {
        let m = orders();
        let row = Row {
            values: vec![r#""7""#.into(), r#""PA\"ID""#.into(), "null".into()],
            is_delete: false,
        };
        let mut out = String::new();
        push_change_line(&mut out, &m, &row, None, &meta("49", Some(2)));
        assert_eq!(
            out,
            "{\"ORDER_ID\":\"7\",\"STATUS\":\"PA\\\"ID\",\"UPDATED_AT\":null,\"CHANGE_OP\":\"UPSERT\",\"KINESIS_SHARD_ID\":\"shardId-000000000001\",\"KINESIS_SEQUENCE_NUMBER\":\"49\",\"KINESIS_SUB_SEQUENCE\":2,\"KINESIS_ARRIVAL_TIME\":\"2023-11-14T22:13:20.123Z\"}\n"
        );
        let line: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(line["STATUS"], "PA\"ID");
    }

    #[test]
    fn the_landed_rows_are_looked_up_by_bound_shard_and_sequence_numbers() {
        let o = ChangeObjects::of(&orders(), "_CHANGES", "_LATEST");
        assert_eq!(
            landed_query(&o, 2),
            r#"SELECT "KINESIS_SEQUENCE_NUMBER", "KINESIS_SUB_SEQUENCE", "CHANGE_OP" FROM "DB"."S"."ORDERS_CHANGES" WHERE "KINESIS_SHARD_ID" = ? AND "KINESIS_SEQUENCE_NUMBER" IN (?, ?)"#
        );
    }

    #[test]
    fn offsets_order_records_as_lambda_does() {
        assert_eq!(offset_token(&meta("49", None)), "49");
        assert_eq!(offset_token(&meta("49", Some(3))), "49:3");
        assert!(is_committed(&meta("49", None), "49"));
        assert!(is_committed(&meta("48", None), "49"));
        assert!(!is_committed(&meta("50", None), "49"));
        assert!(!is_committed(&meta("100", None), "99"));
        assert!(is_committed(&meta("49", Some(2)), "49:3"));
        assert!(!is_committed(&meta("49", Some(4)), "49:3"));
        assert!(!is_committed(&meta("49", Some(0)), "49"));
    }

    #[test]
    fn committed_offsets_compare_numerically() {
        assert!(offset_reached("100", "99"));
        assert!(offset_reached("99", "99"));
        assert!(!offset_reached("99", "100"));
        assert!(offset_reached("99:4", "99:3"));
        assert!(!offset_reached("99", "99:0"));
    }

    #[test]
    fn ddl_and_latest_state() {
        let m = orders();
        let o = ChangeObjects::of(&m, "_CHANGES", "_LATEST");
        assert_eq!(
            change_table_ddl(&m, &o),
            r#"CREATE TABLE IF NOT EXISTS "DB"."S"."ORDERS_CHANGES" ("ORDER_ID" NUMBER(38,0), "STATUS" VARCHAR, "UPDATED_AT" TIMESTAMP_NTZ, "CHANGE_OP" VARCHAR, "KINESIS_SHARD_ID" VARCHAR, "KINESIS_SEQUENCE_NUMBER" VARCHAR, "KINESIS_SUB_SEQUENCE" NUMBER(10,0), "KINESIS_ARRIVAL_TIME" TIMESTAMP_NTZ)"#
        );
        let ddl = latest_ddl(&m, &o, "1 minute", "COMPUTE_WH");
        assert!(ddl.starts_with(r#"CREATE OR REPLACE DYNAMIC TABLE "DB"."S"."ORDERS_LATEST" TARGET_LAG = '1 minute' WAREHOUSE = COMPUTE_WH AS SELECT "ORDER_ID", "STATUS", "UPDATED_AT", "KINESIS_SHARD_ID""#), "{ddl}");
        assert!(ddl.contains(r#"PARTITION BY "ORDER_ID" ORDER BY "CHANGE_VERSION" DESC NULLS LAST, LPAD("KINESIS_SEQUENCE_NUMBER", 129, '0') DESC"#), "{ddl}");
        assert!(ddl.contains(r#"CASE WHEN "CHANGE_OP" = 'DELETE' AND "UPDATED_AT" IS NULL THEN MAX("UPDATED_AT") OVER (PARTITION BY "ORDER_ID" ORDER BY LPAD("KINESIS_SEQUENCE_NUMBER", 129, '0'), "KINESIS_SUB_SEQUENCE" NULLS FIRST ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) ELSE "UPDATED_AT" END AS "CHANGE_VERSION""#), "{ddl}");
        assert!(
            ddl.ends_with(r#"WHERE "CHANGE_RANK" = 1 AND "CHANGE_OP" <> 'DELETE'"#),
            "{ddl}"
        );
    }
}
