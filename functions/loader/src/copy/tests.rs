use super::*;
use shared::snowflake::ColumnType;

/// A quoted table name: `parts` such as `["DB", "S", "SENSOR_READINGS_RAW"]`.
fn table_name(parts: &[&str]) -> Result<String, CopyError> {
    Ok(ident::qualified(parts)?)
}

fn target(format: Format) -> CopyTarget {
    CopyTarget {
        table: table_name(&["db", "S", "sensor_readings_RAW"]).unwrap(),
        format,
        file_format: check_name("file format", "NDJSON_FMT").unwrap(),
        csv_fields: None,
        match_by_name: false,
    }
}

fn staged(path: &str) -> StagedFile {
    StagedFile {
        path: path.into(),
        etag: None,
    }
}

#[test]
fn plain_copy_text() {
    let sql = copy_sql(
        &target(Format::Ndjson),
        "RAW_STAGE",
        &[
            "sensor_readings/2024/03/05/07/a b é.ndjson.gz",
            "sensor_readings/x.ndjson",
        ],
        OnError::AbortStatement,
        &Lineage::InFile,
    )
    .unwrap();
    assert_eq!(
        sql,
        "COPY INTO \"DB\".\"S\".\"SENSOR_READINGS_RAW\" FROM @RAW_STAGE/ FILES = \
         ('sensor_readings/2024/03/05/07/a b é.ndjson.gz', 'sensor_readings/x.ndjson') \
         FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') ON_ERROR = ABORT_STATEMENT LOAD_UNCERTAIN_FILES = TRUE"
    );
}

#[test]
fn hostile_paths_are_refused_not_escaped() {
    for p in ["t/a'; DROP TABLE x; --.csv", "t/a\\'.csv", "t/a\n.csv", ""] {
        let err = copy_sql(
            &target(Format::Csv),
            "RAW_STAGE",
            &["t/ok.csv", p],
            OnError::AbortStatement,
            &Lineage::InFile,
        )
        .unwrap_err();
        assert!(
            matches!(err, CopyError::UnsafePath(_) | CopyError::EmptyPath),
            "{p:?}"
        );
    }
    assert_eq!(file_literal("t/\"x\" y.csv").unwrap(), "'t/\"x\" y.csv'");
    assert!(check_name("stage", "RAW_STAGE; DROP").is_err());
    assert!(check_name("stage", "@x").is_err());
    assert!(check_name("stage", "a.b.c.d").is_err());
    assert!(check_name("stage", "db.s.raw_stage").is_ok());
    assert!(table_name(&["a\"b"]).is_err());
}

#[test]
fn on_error_options() {
    for (text, sql) in [
        ("abort_statement", "ABORT_STATEMENT"),
        ("CONTINUE", "CONTINUE"),
        ("skip_file", "SKIP_FILE"),
        ("SKIP_FILE_10", "SKIP_FILE_10"),
        ("SKIP_FILE_5%", "'SKIP_FILE_5%'"),
        ("'SKIP_FILE_5%'", "'SKIP_FILE_5%'"),
    ] {
        assert_eq!(text.parse::<OnError>().unwrap().to_string(), sql);
    }
    for bad in [
        "",
        "SKIP",
        "SKIP_FILE_0",
        "SKIP_FILE_101%",
        "SKIP_FILE_x",
        "ABORT; DROP",
    ] {
        assert!(bad.parse::<OnError>().is_err(), "{bad}");
    }
}

/// `plan_copies` with ON_ERROR = ABORT_STATEMENT and lineage in the files.
fn plan_plain(
    target: &CopyTarget,
    stage: &str,
    files: &[StagedFile],
    chunk: usize,
) -> Vec<CopyStatement> {
    plan_copies(
        target,
        stage,
        files,
        OnError::AbortStatement,
        &Lineage::InFile,
        chunk,
    )
    .unwrap()
}

#[test]
fn chunks_of_at_most_1000_sorted_and_deduplicated_with_stable_request_ids() {
    let mut files: Vec<StagedFile> = (0..2500)
        .map(|i| staged(&format!("t/{i:05}.csv")))
        .collect();
    files.push(staged("t/00001.csv"));
    files.reverse();
    let stmts = plan_plain(
        &target(Format::Csv),
        "RAW_STAGE",
        &files,
        MAX_FILES_PER_COPY,
    );
    assert_eq!(
        stmts.iter().map(|s| s.files.len()).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    assert_eq!(stmts[0].files[0], "t/00000.csv");
    assert_eq!(stmts[2].files[499], "t/02499.csv");
    assert_eq!(stmts[0].sql.matches("'t/").count(), 1000);
    // same (table, file set) in any order → same id; another set, table or ETag → another id
    let again = plan_plain(
        &target(Format::Csv),
        "RAW_STAGE",
        &files.iter().rev().cloned().collect::<Vec<_>>(),
        5000,
    );
    assert_eq!(again[1].request_id, stmts[1].request_id);
    assert_ne!(stmts[0].request_id, stmts[1].request_id);
}

#[test]
fn request_ids_differ_by_table_and_etag() {
    let mut other_table = target(Format::Csv);
    other_table.table = table_name(&["OTHER"]).unwrap();
    let one = [staged("t/a.csv")];
    let a = plan_plain(&target(Format::Csv), "S1", &one, 10);
    let b = plan_plain(&other_table, "S1", &one, 10);
    let tagged = [StagedFile {
        path: "t/a.csv".into(),
        etag: Some("e2".into()),
    }];
    let c = plan_plain(&target(Format::Csv), "S1", &tagged, 10);
    assert_ne!(a[0].request_id, b[0].request_id);
    assert_ne!(a[0].request_id, c[0].request_id);
    assert_eq!(
        a[0].request_id,
        plan_plain(&target(Format::Csv), "S1", &one, 10)[0].request_id
    );
    assert!(plan_plain(&target(Format::Csv), "S1", &[], 10).is_empty());
}

#[test]
fn metadata_transform_forms() {
    let sql = copy_sql(
        &target(Format::Ndjson),
        "RAW_STAGE",
        &["sensor_readings/a.ndjson.gz"],
        OnError::SkipFilePercent(5),
        &Lineage::Metadata(MetadataLineage::default()),
    )
    .unwrap();
    assert_eq!(
        sql,
        "COPY INTO \"DB\".\"S\".\"SENSOR_READINGS_RAW\" (\"RECORD\", \"SOURCE_FILE\", \"SOURCE_ROW\", \"LOADED_AT\") \
         FROM (SELECT $1, METADATA$FILENAME, METADATA$FILE_ROW_NUMBER, METADATA$START_SCAN_TIME FROM @RAW_STAGE/) \
         FILES = ('sensor_readings/a.ndjson.gz') FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') ON_ERROR = 'SKIP_FILE_5%' \
         LOAD_UNCERTAIN_FILES = TRUE"
    );
    let mut csv = target(Format::Csv);
    csv.file_format = "CSV_FMT".into();
    csv.csv_fields = Some(3);
    let m = MetadataLineage {
        loaded_at_column: None,
        ..MetadataLineage::default()
    };
    let sql = copy_sql(
        &csv,
        "DB.S.STG",
        &["o/a.csv.gz"],
        OnError::Continue,
        &Lineage::Metadata(m),
    )
    .unwrap();
    assert_eq!(
        sql,
        "COPY INTO \"DB\".\"S\".\"SENSOR_READINGS_RAW\" FROM (SELECT $1, $2, $3, METADATA$FILENAME, \
         METADATA$FILE_ROW_NUMBER FROM @DB.S.STG/) FILES = ('o/a.csv.gz') \
         FILE_FORMAT = (FORMAT_NAME = 'CSV_FMT') ON_ERROR = CONTINUE LOAD_UNCERTAIN_FILES = TRUE"
    );
}

fn result(columns: &[&str], rows: Vec<Vec<Option<&str>>>) -> QueryResult {
    QueryResult {
        statement_handle: "h".into(),
        request_id: Uuid::nil(),
        columns: columns
            .iter()
            .map(|c| ColumnType {
                name: c.to_string(),
                type_name: "TEXT".into(),
                length: None,
                precision: None,
                scale: None,
                nullable: None,
            })
            .collect(),
        rows: rows
            .into_iter()
            .map(|r| r.into_iter().map(|c| c.map(String::from)).collect())
            .collect(),
        stats: None,
        http_requests: 1,
    }
}

/// Result rows written `a|b||d`: cells separated by `|`, an empty cell is NULL.
fn cells<'a>(rows: &[&'a str]) -> Vec<Vec<Option<&'a str>>> {
    rows.iter()
        .map(|row| {
            row.split('|')
                .map(|c| (!c.is_empty()).then_some(c))
                .collect()
        })
        .collect()
}

#[test]
fn reads_per_file_results() {
    let cols = [
        "file",
        "status",
        "rows_parsed",
        "rows_loaded",
        "error_limit",
        "errors_seen",
        "first_error",
        "first_error_line",
    ];
    let r = result(
        &cols,
        cells(&[
            "s3://b/raw/t/a.csv|LOADED|3|3|1|0||",
            "s3://b/raw/t/b.csv|LOAD_SKIPPED|0|0||1|File was loaded before.|",
            "s3://b/raw/t/c.csv|PARTIALLY_LOADED|5|4|5|1|bad row|3",
            "s3://b/raw/t/d.csv|LOAD_FAILED|5|0|1|1|oops|1",
            "s3://b/raw/t/e.csv|LOAD_SKIPPED|5|0|1|3|Numeric value 'x' is not recognized|2",
        ]),
    );
    let report = copy_report(&r).unwrap();
    let files = report.files();
    let statuses: Vec<FileStatus> = files.iter().map(|f| f.status).collect();
    assert_eq!(
        statuses,
        [
            FileStatus::Loaded,
            FileStatus::AlreadyLoaded,
            FileStatus::PartiallyLoaded,
            FileStatus::Failed,
            FileStatus::Failed
        ]
    );
    assert_eq!(files[2].rows_loaded, 4);
    assert_eq!(files[2].first_error_line, Some(3));
    assert_eq!(files[3].first_error.as_deref(), Some("oops"));
    let none = result(
        &["status"],
        vec![vec![Some("Copy executed with 0 files processed.")]],
    );
    assert_eq!(copy_report(&none).unwrap(), CopyReport::NoFilesProcessed);
    // any other shape is not read as "nothing to do"
    for odd in [
        result(&["status"], vec![vec![Some("Something else.")]]),
        result(&["status"], vec![]),
        result(&["rows_loaded"], vec![vec![Some("3")]]),
    ] {
        assert!(copy_report(&odd).is_err(), "{odd:?}");
    }
}

#[test]
fn files_copy_leaves_out_are_unreported_until_the_history_shows_a_load() {
    let paths = ["t/a.csv", "t/b.csv", "t/c.csv", "t/d.csv"];
    let report = copy_report(&result(
        &["file", "status", "rows_parsed", "rows_loaded"],
        vec![vec![
            Some("s3://b/raw/t/b.csv"),
            Some("LOADED"),
            Some("1"),
            Some("1"),
        ]],
    ))
    .unwrap();
    assert_eq!(
        unreported(&paths, &report),
        ["t/a.csv", "t/c.csv", "t/d.csv"]
    );
    assert_eq!(
        unreported(&paths, &CopyReport::NoFilesProcessed),
        paths.to_vec()
    );
    let missing = ["t/a.csv", "t/c.csv", "t/d.csv", "t/e.csv"];
    let history = result(
        &["FILE_NAME", "STATUS"],
        vec![
            vec![Some("s3://b/raw/t/a.csv"), Some("LOADED")],
            vec![Some("s3://b/raw/t/c.csv"), Some("LOAD FAILED")],
            vec![Some("s3://b/raw/t/d.csv"), Some("PARTIALLY LOADED")],
            // LIKE '%t/a.csv' also matches a longer path: matched exactly here
            vec![Some("s3://b/raw/xt/a.csv"), Some("LOADED")],
            // the path alone, as a history may hold it
            vec![Some("t/e.csv"), Some("LOADED")],
            vec![Some("s3://b/raw/t/zzz.csv"), Some("LOADED")],
        ],
    );
    assert_eq!(
        loaded_before(&history, &missing)
            .into_iter()
            .collect::<Vec<_>>(),
        ["t/a.csv", "t/d.csv", "t/e.csv"]
    );
    assert!(loaded_before(&result(&["X"], vec![]), &missing).is_empty());
}

#[test]
fn history_query_text_and_bindings() {
    let st = history_statement(
        "\"DB\".\"S\".\"SENSOR_READINGS_RAW\"",
        &[
            "sensor_readings/a_1.ndjson.gz",
            "sensor_readings/b.ndjson.gz",
        ],
    )
    .unwrap();
    assert_eq!(
        st.sql,
        "SELECT FILE_NAME, STATUS FROM \"DB\".INFORMATION_SCHEMA.LOAD_HISTORY WHERE TABLE_NAME = ? \
         AND SCHEMA_NAME = ? AND (FILE_NAME LIKE ? OR FILE_NAME LIKE ?)"
    );
    let values: Vec<String> = st
        .bindings
        .iter()
        .map(|b| match b {
            Binding::Text(Some(v)) => v.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        values,
        [
            "SENSOR_READINGS_RAW",
            "S",
            "%sensor_readings/a_1.ndjson.gz",
            "%sensor_readings/b.ndjson.gz"
        ]
    );
    let st = history_statement("\"S\".\"T\"", &["t/a.csv"]).unwrap();
    assert!(st
        .sql
        .starts_with("SELECT FILE_NAME, STATUS FROM INFORMATION_SCHEMA.LOAD_HISTORY WHERE"));
    assert_eq!(st.bindings.len(), 3);
    assert!(history_statement("\"S\".\"T\"", &[]).is_err());
    assert!(history_statement("S.T", &["t/a.csv"]).is_err());
    assert!(history_statement("\"T\"", &["t/a'.csv"]).is_err());
}

#[test]
fn result_files_map_back_to_paths() {
    let paths = ["t/a.csv", "t/2024/t/a.csv", "t/my file é.csv"];
    assert_eq!(match_path("s3://b/raw/t/a.csv", &paths), Some("t/a.csv"));
    assert_eq!(
        match_path("s3://b/raw/t/2024/t/a.csv", &paths),
        Some("t/2024/t/a.csv")
    );
    assert_eq!(
        match_path("s3://b/raw/t/my file é.csv", &paths),
        Some("t/my file é.csv")
    );
    assert_eq!(match_path("t/a.csv", &paths), Some("t/a.csv"));
    assert_eq!(match_path("s3://b/raw/xt/a.csv", &paths), None);
    assert_eq!(match_path("s3://b/raw/t/z.csv", &paths), None);
}

#[test]
fn landed_statement_reads_each_lineage_with_bound_names() {
    let names = ["raw/t/2024/a.ndjson.gz", "t/2024/a.ndjson.gz"];
    let ndjson = landed_statement(&target(Format::Ndjson), &Lineage::InFile, &names).unwrap();
    assert_eq!(
        ndjson.sql,
        "SELECT DISTINCT \"RECORD\":metadata:file::STRING AS SOURCE_FILE FROM \"DB\".\"S\".\"SENSOR_READINGS_RAW\" \
         WHERE \"RECORD\":metadata:file::STRING IN (?, ?)"
    );
    assert_eq!(ndjson.bindings.len(), 2);
    let csv = landed_statement(&target(Format::Csv), &Lineage::InFile, &names[..1]).unwrap();
    assert!(
        csv.sql
            .starts_with("SELECT DISTINCT \"SOURCE_FILE\" AS SOURCE_FILE FROM"),
        "{}",
        csv.sql
    );
    let metadata = Lineage::Metadata(MetadataLineage {
        file_column: "src file".into(),
        ..MetadataLineage::default()
    });
    let m = landed_statement(&target(Format::Ndjson), &metadata, &names[..1]).unwrap();
    assert!(m.sql.ends_with("WHERE \"src file\" IN (?)"), "{}", m.sql);
    assert!(matches!(
        landed_statement(&target(Format::Csv), &Lineage::InFile, &[]),
        Err(CopyError::NoFiles)
    ));
}

#[test]
fn the_in_file_record_column_is_the_raw_tables_variant_column() {
    let sql = include_str!("../../../../sql/30_raw_tables.sql");
    assert!(sql.contains(&format!("  {IN_FILE_RECORD_COLUMN} VARIANT")));
}

#[test]
fn match_by_name_copy_text_with_in_file_and_metadata_lineage() {
    let typed = CopyTarget {
        match_by_name: true,
        ..target(Format::Ndjson)
    };
    let sql = copy_sql(
        &typed,
        "RAW_STAGE",
        &["t/a.ndjson.gz"],
        OnError::AbortStatement,
        &Lineage::InFile,
    )
    .unwrap();
    assert_eq!(
        sql,
        "COPY INTO \"DB\".\"S\".\"SENSOR_READINGS_RAW\" FROM @RAW_STAGE/ FILES = ('t/a.ndjson.gz') \
         FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE \
         ON_ERROR = ABORT_STATEMENT LOAD_UNCERTAIN_FILES = TRUE"
    );
    // no transform with MATCH_BY_COLUMN_NAME (Snowflake refuses it): INCLUDE_METADATA instead
    let metadata = Lineage::Metadata(MetadataLineage::default());
    let sql = copy_sql(
        &typed,
        "RAW_STAGE",
        &["t/a.ndjson.gz"],
        OnError::AbortStatement,
        &metadata,
    )
    .unwrap();
    assert_eq!(
        sql,
        "COPY INTO \"DB\".\"S\".\"SENSOR_READINGS_RAW\" FROM @RAW_STAGE/ FILES = ('t/a.ndjson.gz') \
         FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE \
         INCLUDE_METADATA = (\"SOURCE_FILE\" = METADATA$FILENAME, \"SOURCE_ROW\" = METADATA$FILE_ROW_NUMBER, \
         \"LOADED_AT\" = METADATA$START_SCAN_TIME) ON_ERROR = ABORT_STATEMENT LOAD_UNCERTAIN_FILES = TRUE"
    );
    // CSV files of a listed table keep their positional COPY
    let csv = CopyTarget {
        match_by_name: true,
        ..target(Format::Csv)
    };
    let sql = copy_sql(
        &csv,
        "RAW_STAGE",
        &["t/a.csv.gz"],
        OnError::AbortStatement,
        &Lineage::InFile,
    )
    .unwrap();
    assert!(!sql.contains("MATCH_BY_COLUMN_NAME"), "{sql}");
}

#[test]
fn match_by_name_lineage_reads_the_metadata_column() {
    let typed = CopyTarget {
        match_by_name: true,
        ..target(Format::Ndjson)
    };
    let st = landed_statement(&typed, &Lineage::InFile, &["t/a.ndjson.gz"]).unwrap();
    assert!(
        st.sql
            .starts_with("SELECT DISTINCT \"METADATA\":file::STRING AS SOURCE_FILE FROM"),
        "{}",
        st.sql
    );
}
