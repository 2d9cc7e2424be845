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

fn key_pair_env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<_> = env_with(extra)
        .into_iter()
        .filter(|(k, _)| !matches!(*k, "SNOWFLAKE_TOKEN" | "SNOWFLAKE_AUTH"))
        .collect();
    v.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/nonexistent/key.p8"));
    v
}

#[test]
fn load_mode_is_copy_by_default_and_snowpipe_needs_a_key_and_a_database() {
    let c = Config::from_env(&Env::new(&env_with(&[]))).unwrap();
    assert_eq!(c.load_mode, LoadMode::Copy);
    let c = Config::from_env(&Env::new(&key_pair_env(&[
        ("LOAD_MODE", "SnowPipe"),
        ("PIPE_POLL_MS", "250"),
    ])))
    .unwrap();
    assert_eq!(
        c.load_mode,
        LoadMode::Snowpipe(PipeSettings {
            suffix: "_PIPE".into(),
            poll_interval: Duration::from_millis(250),
        })
    );
    for (env, var) in [
        (env_with(&[("LOAD_MODE", "pipe")]), "LOAD_MODE"),
        (env_with(&[("LOAD_MODE", "snowpipe")]), "LOAD_MODE"),
        (
            key_pair_env(&[("LOAD_MODE", "snowpipe"), ("PIPE_SUFFIX", "-p")]),
            "PIPE_SUFFIX",
        ),
        (
            key_pair_env(&[("LOAD_MODE", "snowpipe"), ("PIPE_POLL_MS", "5")]),
            "PIPE_POLL_MS",
        ),
    ] {
        let err = Config::from_env(&Env::new(&env)).unwrap_err();
        assert_eq!(err.var, var, "{err}");
    }
    let no_db: Vec<_> = key_pair_env(&[("LOAD_MODE", "snowpipe")])
        .into_iter()
        .filter(|(k, _)| *k != "SNOWFLAKE_DATABASE")
        .collect();
    let err = Config::from_env(&Env::new(&no_db)).unwrap_err();
    assert_eq!(err.var, "SNOWFLAKE_DATABASE");
}
