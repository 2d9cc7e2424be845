use super::*;

fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn render_substitutes_and_keeps_other_dollars() {
    let v = vars(&[("DATABASE", "DB1"), ("STAGE_URL", "s3://b/raw/")]);
    let out = render(
        "CREATE STAGE ${DATABASE}.S.X URL = '${STAGE_URL}' -- $1 $ SYSTEM$STREAM_HAS_DATA $$",
        &v,
    )
    .unwrap();
    assert_eq!(
        out,
        "CREATE STAGE DB1.S.X URL = 's3://b/raw/' -- $1 $ SYSTEM$STREAM_HAS_DATA $$"
    );
    assert_eq!(render("no vars; $", &v).unwrap(), "no vars; $");
    assert_eq!(render("${DATABASE}${DATABASE}", &v).unwrap(), "DB1DB1");
}

#[test]
fn render_unknown_variable_is_named() {
    let err = render("USE ${NOPE}", &vars(&[])).unwrap_err();
    assert!(matches!(&err, BootstrapError::UnknownVariable { name } if name == "NOPE"));
    assert!(err.to_string().contains("NOPE"), "{err}");
}

#[test]
fn render_malformed_references() {
    for t in ["${", "${DATABASE", "${lower}", "${}", "${A B}", "x ${A;}"] {
        assert!(
            matches!(
                render(t, &vars(&[("DATABASE", "D")])),
                Err(BootstrapError::MalformedVariable { .. })
            ),
            "{t}"
        );
    }
}

#[test]
fn render_rejects_injection() {
    for bad in [
        "DB; DROP TABLE X",
        "DB\"",
        "a b",
        "DB'",
        "1DB",
        "DB-1",
        "",
        "DB.S",
    ] {
        let err = render("${DATABASE}", &vars(&[("DATABASE", bad)])).unwrap_err();
        assert!(
            matches!(&err, BootstrapError::InvalidValue { name, .. } if name == "DATABASE"),
            "{bad:?}: {err}"
        );
    }
    for bad in [
        "s3://b/x'; DROP TABLE X; --",
        "s3://b/ x",
        "s3://b/\\",
        "s3://b/--",
        "s3://b/;",
        "s3://b/\n",
    ] {
        assert!(
            render("'${STAGE_URL}'", &vars(&[("STAGE_URL", bad)])).is_err(),
            "{bad:?}"
        );
    }
    // ordinary values pass
    render(
        "${DATABASE} '${STAGE_URL}' '${SNOWFLAKE_ROLE_ARN}' ${WAREHOUSE}",
        &vars(&[
            ("DATABASE", "Raw_DB$1"),
            ("STAGE_URL", "s3://my-bucket.prod/raw/zone-1/"),
            (
                "SNOWFLAKE_ROLE_ARN",
                "arn:aws:iam::123456789012:role/snowflake-s3",
            ),
            ("WAREHOUSE", "COMPUTE_WH"),
        ]),
    )
    .unwrap();
}

#[test]
fn split_plain_and_empty() {
    assert_eq!(
        split_statements("SELECT 1; SELECT 2;\n;  ;\nSELECT 3"),
        vec!["SELECT 1", "SELECT 2", "SELECT 3"]
    );
    assert!(split_statements("  ;; -- only a comment\n /* x; */ ").is_empty());
}

#[test]
fn split_ignores_semicolons_in_strings_and_identifiers() {
    let sql = r#"INSERT INTO T VALUES ('a;b', 'it''s; ok', 'esc\'; still', "we;ird"."c""; d");
SELECT ';'"#;
    let got = split_statements(sql);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        got[0],
        r#"INSERT INTO T VALUES ('a;b', 'it''s; ok', 'esc\'; still', "we;ird"."c""; d")"#
    );
    assert_eq!(got[1], "SELECT ';'");
}

#[test]
fn split_drops_comments_but_not_comment_markers_in_strings() {
    let sql = "-- header; with semicolon\nCREATE TABLE T (A INT) -- trailing; comment\n;\n/* block; \n comment */ SELECT '--not a comment', '/* nor this */' // c++ style; \n;\nSELECT 's3://bucket/x'";
    let got = split_statements(sql);
    assert_eq!(
        got,
        vec![
            "CREATE TABLE T (A INT)",
            "SELECT '--not a comment', '/* nor this */'",
            "SELECT 's3://bucket/x'"
        ]
    );
}

#[test]
fn split_keeps_dollar_quoted_blocks() {
    let got = split_statements("CREATE FUNCTION F() RETURNS INT AS $$ SELECT 1; $$; SELECT 2");
    assert_eq!(
        got,
        vec![
            "CREATE FUNCTION F() RETURNS INT AS $$ SELECT 1; $$",
            "SELECT 2"
        ]
    );
}

#[test]
fn files_by_profile_in_lexical_order() {
    // The process id and the clock keep concurrent test runs apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("bootstrap-files-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "20_stage.local.sql",
        "20_stage.aws.sql",
        "10_b.sql",
        "00_a.sql",
        "README.md",
    ] {
        std::fs::write(dir.join(f), "SELECT 1;").unwrap();
    }
    let names = |p: Profile| -> Vec<String> {
        files(&dir, p)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(Profile::Local),
        ["00_a.sql", "10_b.sql", "20_stage.local.sql"]
    );
    assert_eq!(
        names(Profile::Aws),
        ["00_a.sql", "10_b.sql", "20_stage.aws.sql"]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn repo_sql() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sql")
}

#[test]
fn repository_sql_plans_for_both_profiles() {
    let base = vars(&[
        ("DATABASE", "DB"),
        ("SCHEMA", "S"),
        ("STAGE_URL", "s3://bucket/raw/"),
    ]);
    let local = plan(&repo_sql(), Profile::Local, &base).unwrap();
    assert!(local.iter().all(|p| !p.sql.contains("${")));
    assert!(local.iter().any(|p| p
        .sql
        .starts_with("CREATE STAGE IF NOT EXISTS DB.S.RAW_STAGE")));
    assert!(!local.iter().any(|p| p.sql.contains("STORAGE INTEGRATION")));
    assert!(local
        .iter()
        .all(|p| !p.sql.starts_with("--") && !p.sql.starts_with("/*")));

    // the aws profile needs the integration variables, and names the missing one
    let err = plan(&repo_sql(), Profile::Aws, &base).unwrap_err();
    assert!(err.to_string().contains("STORAGE_INTEGRATION"), "{err}");
    let mut aws = base.clone();
    aws.insert("STORAGE_INTEGRATION".into(), "RAW_S3_INT".into());
    aws.insert(
        "SNOWFLAKE_ROLE_ARN".into(),
        "arn:aws:iam::123456789012:role/snowflake".into(),
    );
    let err = plan(&repo_sql(), Profile::Aws, &aws).unwrap_err();
    assert!(err.to_string().contains("LOADER_ROLE"), "{err}");
    aws.insert("LOADER_ROLE".into(), "LOADER".into());
    let planned = plan(&repo_sql(), Profile::Aws, &aws).unwrap();
    assert!(planned.iter().any(|p| p.sql.starts_with(
        "GRANT OPERATE, MONITOR ON PIPE DB.S.SENSOR_READINGS_RAW_PIPE TO ROLE LOADER"
    )));
    // both profiles create one pipe per raw table, from the stage's root
    for planned in [&local, &planned] {
        assert!(planned.iter().any(|p| p.sql.starts_with(
            "CREATE PIPE IF NOT EXISTS DB.S.SENSOR_READINGS_RAW_PIPE\n  AS COPY INTO DB.S.SENSOR_READINGS_RAW\n  FROM @DB.S.RAW_STAGE/"
        )));
    }
    assert!(planned.iter().any(|p| p
        .sql
        .starts_with("CREATE STORAGE INTEGRATION IF NOT EXISTS RAW_S3_INT")));
}

#[test]
fn env_defaults_and_explicit_vars() {
    let src = [
        ("SNOWFLAKE_DATABASE", "ENV_DB"),
        ("SNOWFLAKE_SCHEMA", "RAW"),
        ("STAGE_URL", "s3://b/raw/"),
    ];
    let env = Env::new(&src);
    let v = vars_from_env(&env, &vars(&[("DATABASE", "CLI_DB")]));
    assert_eq!(v["DATABASE"], "CLI_DB");
    assert_eq!(v["SCHEMA"], "RAW");
    assert_eq!(v["STAGE_URL"], "s3://b/raw/");
    let all = with_defaults(&v);
    assert_eq!(all["STAGE"], "RAW_STAGE");
    assert_eq!(all["WAREHOUSE"], "COMPUTE_WH");
    assert_eq!(parse_var("A_1=x=y").unwrap(), ("A_1".into(), "x=y".into()));
    assert!(parse_var("novalue").is_err());
    assert!(parse_var("lower=x").is_err());
    assert_eq!("AWS".parse::<Profile>().unwrap(), Profile::Aws);
    assert!("prod".parse::<Profile>().is_err());
}

#[test]
fn first_line_is_short() {
    assert_eq!(
        first_line("CREATE TABLE X (\n A INT)"),
        "CREATE TABLE X ( ..."
    );
    assert_eq!(first_line("SELECT 1"), "SELECT 1");
}
