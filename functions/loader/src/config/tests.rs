use super::*;

fn env_with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        ("RAW_BUCKET", "raw-bucket"),
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_DATABASE", "DB"),
        ("SNOWFLAKE_SCHEMA", "S"),
        ("SNOWFLAKE_TOKEN", "t"),
        ("SNOWFLAKE_AUTH", "pat"),
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn defaults_and_table_names() {
    let c = Config::from_env(&Env::new(&env_with(&[(
        "TABLE_MAP",
        r#"{"orders":"OTHER.X.ORDERS_T"}"#,
    )])))
    .unwrap();
    assert_eq!(c.layout.prefix(), "raw");
    assert_eq!(c.stage, "RAW_STAGE");
    assert_eq!(c.ndjson_format, "NDJSON_FMT");
    assert_eq!(c.csv_format, "CSV_FMT");
    assert_eq!(c.on_error, OnError::AbortStatement);
    assert_eq!(c.lineage, Lineage::InFile);
    assert_eq!(
        c.table_for("sensor_readings").unwrap(),
        "\"DB\".\"S\".\"SENSOR_READINGS_RAW\""
    );
    assert_eq!(
        c.table_for("orders").unwrap(),
        "\"OTHER\".\"X\".\"ORDERS_T\""
    );
}

#[test]
fn configuration_errors_name_the_variable() {
    for (var, value) in [
        ("ON_ERROR", "SKIP_SOME"),
        ("LINEAGE", "both"),
        ("SNOWFLAKE_STAGE", "RAW_STAGE/x"),
        ("FILE_FORMAT_CSV", "'CSV'"),
        ("TABLE_MAP", "{\"a\": \"x\\\"y\"}"),
        ("TABLE_MAP", "[1]"),
        ("MAX_FILES_PER_COPY", "1001"),
        ("RAW_TABLE_SUFFIX", "\"x"),
    ] {
        let err = Config::from_env(&Env::new(&env_with(&[(var, value)]))).unwrap_err();
        assert_eq!(err.var, var, "{value}: {err}");
    }
    let err = Config::from_env(&Env::new(&[("SNOWFLAKE_SCHEMA", "S")])).unwrap_err();
    assert_eq!(err.var, "RAW_BUCKET");
    let c = Config::from_env(&Env::new(&env_with(&[
        ("ON_ERROR", "skip_file_3%"),
        ("LINEAGE", "METADATA"),
    ])))
    .unwrap();
    assert_eq!(c.on_error, OnError::SkipFilePercent(3));
    assert!(matches!(c.lineage, Lineage::Metadata(_)));
}
