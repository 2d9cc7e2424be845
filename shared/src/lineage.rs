//! Lineage: where each row came from, under one set of names for every path.
//!
//! Raw-zone files carry [`file`] fields (NDJSON `metadata` keys, CSV header columns); the
//! upsert's tables carry [`table`] columns. The encoders, the MERGE, the change table and `sql/`
//! use these names; the tests below hold `sql/` to them.

/// Fields of a raw-zone file's lineage, in file order.
pub mod file {
    /// The stream's name, from the event source ARN.
    pub const STREAM: &str = "stream";
    /// The shard the record was read from.
    pub const SHARD_ID: &str = "shard_id";
    /// The record's Kinesis sequence number.
    pub const SEQUENCE_NUMBER: &str = "sequence_number";
    /// The record's partition key.
    pub const PARTITION_KEY: &str = "partition_key";
    /// A KPL sub-record's index in its aggregate (NDJSON only, and only for sub-records).
    pub const SUB_SEQUENCE: &str = "sub_sequence";
    /// Kinesis's approximate arrival time.
    pub const ARRIVAL_TIME: &str = "arrival_time";
    /// The NDJSON key of a line's lineage object (`{"payload": ..., "metadata": {...}}`).
    pub const NDJSON_OBJECT: &str = "metadata";
    /// The object's key, as NDJSON names it (`metadata.file`).
    pub const NDJSON_FILE: &str = "file";
    /// The line's number in its object, as NDJSON names it (`metadata.row`).
    pub const NDJSON_ROW: &str = "row";
    /// The object's key, as a CSV column.
    pub const CSV_FILE: &str = "source_file";
    /// The line's number in its object, as a CSV column.
    pub(crate) const CSV_ROW: &str = "source_row";

    /// The lineage columns a CSV file appends after its mapped ones, in order.
    pub const CSV_COLUMNS: [&str; 7] = [
        STREAM,
        SHARD_ID,
        SEQUENCE_NUMBER,
        PARTITION_KEY,
        ARRIVAL_TIME,
        CSV_FILE,
        CSV_ROW,
    ];
}

/// Lineage columns of the upsert's tables (merge targets and change tables), also the top-level
/// keys of the orchestrator's flat NDJSON lines (`MATCH_BY_NAME_TABLES`, see [`table::FLAT`]).
pub mod table {
    /// The stream's name (flat NDJSON lines only).
    pub const STREAM: &str = "KINESIS_STREAM";
    /// The shard of the row's newest record.
    pub const SHARD_ID: &str = "KINESIS_SHARD_ID";
    /// Its sequence number: the version when the mapping names none.
    pub const SEQUENCE_NUMBER: &str = "KINESIS_SEQUENCE_NUMBER";
    /// A KPL sub-record's index (change tables only).
    pub const SUB_SEQUENCE: &str = "KINESIS_SUB_SEQUENCE";
    /// The record's partition key (flat NDJSON lines only).
    pub const PARTITION_KEY: &str = "KINESIS_PARTITION_KEY";
    /// Kinesis's approximate arrival time of that record.
    pub const ARRIVAL_TIME: &str = "KINESIS_ARRIVAL_TIME";
    /// When the MERGE last wrote the row (merge targets only).
    pub const LOADED_AT: &str = "LOADED_AT";

    /// The lineage columns of a merge target, in order.
    pub const MERGED: [&str; 4] = [SHARD_ID, SEQUENCE_NUMBER, ARRIVAL_TIME, LOADED_AT];

    /// The lineage keys a flat NDJSON line appends after the record's own fields, in order
    /// ([`SUB_SEQUENCE`] only for KPL sub-records). A record may not have a top-level key equal
    /// to one of them in any case: `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE` would load one of
    /// the two values into the column. Every name starts with `KINESIS_`, which is what the
    /// encoder searches payloads for before comparing keys.
    pub const FLAT: [&str; 6] = [
        STREAM,
        SHARD_ID,
        SEQUENCE_NUMBER,
        PARTITION_KEY,
        SUB_SEQUENCE,
        ARRIVAL_TIME,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The column names `sql/` declares for a table, upper-cased.
    fn columns(sql: &str, table: &str) -> Vec<String> {
        let start = sql
            .find(&format!("{table} ("))
            .unwrap_or_else(|| panic!("{table} in sql/"));
        let body = &sql[start..];
        // `)` opening a line ends the column list, whatever options follow it
        let body = &body[..body.find("\n)").expect("end of the table")];
        body.lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next())
            .map(|c| c.trim_end_matches(',').to_ascii_uppercase())
            .collect()
    }

    #[test]
    fn sql_upsert_tables_declare_the_merged_lineage_columns() {
        let sql = include_str!("../../sql/40_upsert_tables.sql");
        for t in ["SENSOR_READINGS", "ORDERS"] {
            let cols = columns(sql, t);
            for l in table::MERGED {
                assert!(cols.iter().any(|c| c == l), "{t} lacks {l}: {cols:?}");
            }
        }
    }

    #[test]
    fn sql_typed_table_declares_the_flat_lineage_columns() {
        let cols = columns(
            include_str!("../../sql/30_raw_tables.sql"),
            "SENSOR_READINGS_TYPED",
        );
        for l in table::FLAT {
            assert!(
                cols.iter().any(|c| c == l),
                "SENSOR_READINGS_TYPED lacks {l}: {cols:?}"
            );
            assert!(
                l.starts_with("KINESIS_"),
                "the encoder's search assumes it: {l}"
            );
        }
    }

    #[test]
    fn sql_raw_tables_read_the_file_lineage_fields() {
        let sql = include_str!("../../sql/30_raw_tables.sql");
        for f in [
            file::STREAM,
            file::SHARD_ID,
            file::SEQUENCE_NUMBER,
            file::PARTITION_KEY,
            file::ARRIVAL_TIME,
            file::NDJSON_FILE,
            file::NDJSON_ROW,
        ] {
            assert!(
                sql.contains(&format!("{}:{f}", file::NDJSON_OBJECT)),
                "sql/ does not read {f}"
            );
        }
    }
}
