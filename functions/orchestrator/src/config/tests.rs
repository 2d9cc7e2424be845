use super::*;

#[test]
fn configuration_errors_name_the_variable() {
    let err = |vars: &[(&str, &str)]| Config::from_env(&Env::new(&vars.to_vec())).unwrap_err().var;
    assert_eq!(err(&[("TABLE", "t")]), "RAW_BUCKET");
    assert_eq!(err(&[("RAW_BUCKET", "b")]), "TABLE");
    assert_eq!(
        err(&[("RAW_BUCKET", "b"), ("TABLE", "t"), ("FORMAT", "csv")]),
        "CSV_COLUMNS"
    );
    assert_eq!(
        err(&[
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("PUT_CONCURRENCY", "0")
        ]),
        "PUT_CONCURRENCY"
    );
    assert_eq!(
        err(&[
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("DEADLINE_MARGIN_MS", "2s")
        ]),
        "DEADLINE_MARGIN_MS"
    );
    assert_eq!(
        err(&[
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("RAW_PREFIX", "x"),
            ("ERROR_PREFIX", "/x/")
        ]),
        "ERROR_PREFIX"
    );
    // tables loaded by column name need NDJSON: refused at start-up, not by a failing COPY
    assert_eq!(
        err(&[
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("FORMAT", "csv"),
            ("CSV_COLUMNS", r#"[{"name":"a","path":"/a"}]"#),
            ("MATCH_BY_NAME_TABLES", r#"["t"]"#)
        ]),
        "MATCH_BY_NAME_TABLES"
    );
}
