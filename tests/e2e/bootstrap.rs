//! `sql/` applied by `tools::bootstrap` to the local Snowflake service: idempotent, creates the
//! contract's objects with their exact columns, and the objects work together (files in the raw
//! zone load through the stage and formats; the views read the tables).

use std::collections::HashMap;
use std::io::Write as _;
use std::path::PathBuf;

use shared::rawzone::encode::Compression;
use tools::bootstrap::{apply_dir, Profile};

use crate::support;

fn sql_dir() -> PathBuf {
    support::repo_root().join("sql")
}

fn compress(c: Compression, text: &str) -> Vec<u8> {
    let mut w = c.writer(1024).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap()
}

async fn columns(
    client: &shared::snowflake::SnowflakeClient,
    db: &str,
    table: &str,
) -> Vec<String> {
    support::rows(
        client,
        &format!(
            "SELECT COLUMN_NAME FROM {db}.INFORMATION_SCHEMA.COLUMNS \
             WHERE TABLE_SCHEMA = 'S' AND TABLE_NAME = '{table}' ORDER BY ORDINAL_POSITION"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn bootstrap_applies_sql_twice_and_creates_the_contract() {
    let _g = support::snowflake_shared().await;
    let s3 = support::s3().await;
    let bucket = support::unique("bootstrap");
    support::create_bucket(&s3, &bucket).await;
    let stage_url = format!("s3://{bucket}/raw/");

    let db = support::fresh_database("BOOT").await;
    let client = support::snowflake_client(&db, "S").await;
    let vars: HashMap<String, String> = [
        ("DATABASE", db.clone()),
        ("SCHEMA", "S".to_string()),
        ("STAGE_URL", stage_url.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();

    // twice: every statement is idempotent
    let first = apply_dir(&client, &sql_dir(), Profile::Local, &vars)
        .await
        .unwrap_or_else(|e| panic!("first apply: {e}"));
    let second = apply_dir(&client, &sql_dir(), Profile::Local, &vars)
        .await
        .unwrap_or_else(|e| panic!("second apply: {e}"));
    assert_eq!(first.len(), second.len());
    assert!(first.len() >= 15, "{first:#?}");
    let files: Vec<&str> = first.iter().map(|o| o.file.as_str()).collect();
    assert!(files.contains(&"20_stage.local.sql"));
    assert!(!files.contains(&"20_stage.aws.sql"));
    assert!(
        files.windows(2).all(|w| w[0] <= w[1]),
        "lexical order: {files:?}"
    );
    assert!(
        second.iter().any(|o| o.status.contains("already exists")),
        "{second:#?}"
    );

    // tables with their exact columns
    let lineage = [
        "STREAM",
        "SHARD_ID",
        "SEQUENCE_NUMBER",
        "PARTITION_KEY",
        "ARRIVAL_TIME",
        "SOURCE_FILE",
        "SOURCE_ROW",
    ];
    assert_eq!(
        columns(&client, &db, "SENSOR_READINGS_RAW").await,
        names(&["RECORD"])
    );
    let mut order_raw = names(&[
        "EVENT_ID",
        "EVENT_TYPE",
        "EVENT_TIMESTAMP",
        "CUSTOMER_ID",
        "CUSTOMER_NAME",
        "CITY",
        "TOTAL",
        "CURRENCY",
        "ITEMS",
    ]);
    order_raw.extend(names(&lineage));
    assert_eq!(columns(&client, &db, "ORDER_EVENTS_RAW").await, order_raw);
    assert_eq!(
        columns(&client, &db, "SENSOR_READINGS").await,
        names(&[
            "SENSORID",
            "CURRENTTEMPERATURE",
            "STATUS",
            "KINESIS_SHARD_ID",
            "KINESIS_SEQUENCE_NUMBER",
            "KINESIS_ARRIVAL_TIME",
            "LOADED_AT",
        ])
    );
    assert_eq!(
        columns(&client, &db, "ORDERS").await,
        names(&[
            "ORDER_ID",
            "STATUS",
            "AMOUNT",
            "CUSTOMER",
            "UPDATED_AT",
            "PAYLOAD",
            "KINESIS_SHARD_ID",
            "KINESIS_SEQUENCE_NUMBER",
            "KINESIS_ARRIVAL_TIME",
            "LOADED_AT",
        ])
    );
    let mut curated = order_raw.clone();
    curated.push("CURATED_AT".into());
    assert_eq!(columns(&client, &db, "ORDER_EVENTS_CURATED").await, curated);
    let mut sensor_view = names(&["SENSORID", "CURRENTTEMPERATURE", "STATUS"]);
    sensor_view.extend(names(&lineage));
    assert_eq!(
        columns(&client, &db, "SENSOR_READINGS_RAW_V").await,
        sensor_view
    );

    // file formats and the stage
    let formats: Vec<String> =
        support::rows(&client, &format!("SHOW FILE FORMATS IN SCHEMA {db}.S"))
            .await
            .into_iter()
            .map(|r| r[1].clone().unwrap())
            .collect();
    for f in [
        "NDJSON_FMT",
        "CSV_FMT",
        "NDJSON_GZ_FMT",
        "NDJSON_ZSTD_FMT",
        "CSV_GZ_FMT",
        "CSV_ZSTD_FMT",
    ] {
        assert!(
            formats.iter().any(|x| x == f),
            "{f} missing from {formats:?}"
        );
    }
    let stages = support::rows(&client, &format!("SHOW STAGES IN SCHEMA {db}.S")).await;
    assert_eq!(stages.len(), 1, "{stages:?}");
    assert_eq!(stages[0][1].as_deref(), Some("RAW_STAGE"));
    assert_eq!(stages[0][4].as_deref(), Some(stage_url.as_str()));

    // NDJSON (gzip + zstd) through the stage and NDJSON_FMT, read through the view
    let line = |id: u32, seq: &str| {
        serde_json::json!({
            "payload": {"sensorId": id, "currentTemperature": 20.5 + f64::from(id), "status": "OK"},
            "metadata": {"stream": "sensors", "shard_id": "shardId-000000000000",
                         "sequence_number": seq, "partition_key": format!("s{id}"),
                         "arrival_time": "2024-03-05T07:30:00.000Z",
                         "file": "raw/sensors/a.ndjson.gz", "row": id},
        })
        .to_string()
    };
    let nd_gz = format!("{}\n{}\n", line(1, "101"), line(2, "102"));
    let nd_zst = format!("{}\n", line(3, "103"));
    for (key, body) in [
        (
            "raw/sensors/a.ndjson.gz",
            compress(Compression::Gzip { level: 1 }, &nd_gz),
        ),
        (
            "raw/sensors/b.ndjson.zst",
            compress(Compression::Zstd { level: 3 }, &nd_zst),
        ),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    support::sql(
        &client,
        &format!(
            "COPY INTO {db}.S.SENSOR_READINGS_RAW FROM @{db}.S.RAW_STAGE/sensors/ \
             FILES = ('a.ndjson.gz', 'b.ndjson.zst') FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT')"
        ),
    )
    .await;
    let view = support::rows(
        &client,
        &format!(
            "SELECT SENSORID, CURRENTTEMPERATURE, STATUS, SHARD_ID, SEQUENCE_NUMBER, PARTITION_KEY, \
             ARRIVAL_TIME, SOURCE_ROW FROM {db}.S.SENSOR_READINGS_RAW_V ORDER BY SENSORID"
        ),
    )
    .await;
    assert_eq!(view.len(), 3, "{view:?}");
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        view[0],
        vec![
            s("1"),
            s("21.5"),
            s("OK"),
            s("shardId-000000000000"),
            s("101"),
            s("s1"),
            s("1709623800.000000000"), // 2024-03-05T07:30:00Z as the SQL API sends TIMESTAMP_NTZ
            s("1"),
        ]
    );
    assert_eq!(view[2][0].as_deref(), Some("3"));

    // CSV (gzip + zstd) through CSV_FMT: header skipped, \N is NULL, "" stays empty, quoted
    // separators, ISO 8601 arrival time into TIMESTAMP_NTZ, 56-digit sequence numbers intact
    let header = "event_id,event_type,event_timestamp,customer_id,customer_name,city,total,currency,items,stream,shard_id,sequence_number,partition_key,arrival_time,source_file,source_row\n";
    let seq = "49590338271490256608559692538361571095921575989136588898";
    let csv_gz = format!(
        "{header}evt-1,order_created,2024-03-05T07:29:59.500Z,c-1,\"Doe, \"\"J\"\"\",Paris,12.50,EUR,\"[{{\"\"sku\"\":\"\"A\"\"}}]\",orders,shardId-000000000000,{seq},c-1,2024-03-05T07:30:00.000Z,raw/orders/x.csv.gz,1\n\
         evt-2,order_created,\\N,c-2,\"\",Lyon,3,EUR,\\N,orders,shardId-000000000000,2,c-2,2024-03-05T07:30:01.123Z,raw/orders/x.csv.gz,2\n"
    );
    // the same event again in another file (a re-delivered Kinesis record): curated de-duplicates
    let csv_zst = format!(
        "{header}evt-1,order_created,2024-03-05T07:29:59.500Z,c-1,\"Doe, \"\"J\"\"\",Paris,12.50,EUR,\"[]\",orders,shardId-000000000000,{seq},c-1,2024-03-05T07:30:00.000Z,raw/orders/y.csv.zst,1\n"
    );
    for (key, body) in [
        (
            "raw/orders/x.csv.gz",
            compress(Compression::Gzip { level: 1 }, &csv_gz),
        ),
        (
            "raw/orders/y.csv.zst",
            compress(Compression::Zstd { level: 3 }, &csv_zst),
        ),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap();
    }
    support::sql(
        &client,
        &format!(
            "COPY INTO {db}.S.ORDER_EVENTS_RAW FROM @{db}.S.RAW_STAGE/orders/ \
             FILES = ('x.csv.gz', 'y.csv.zst') FILE_FORMAT = (FORMAT_NAME = 'CSV_FMT')"
        ),
    )
    .await;
    let raw = support::rows(
        &client,
        &format!(
            "SELECT EVENT_ID, EVENT_TIMESTAMP, CUSTOMER_NAME, TOTAL, ITEMS, SEQUENCE_NUMBER, \
             ARRIVAL_TIME, SOURCE_ROW FROM {db}.S.ORDER_EVENTS_RAW ORDER BY SOURCE_FILE, SOURCE_ROW"
        ),
    )
    .await;
    assert_eq!(raw.len(), 3, "{raw:?}");
    assert_eq!(
        raw[0],
        vec![
            s("evt-1"),
            s("2024-03-05T07:29:59.500Z"),
            s("Doe, \"J\""),
            s("12.50"),
            s("[{\"sku\":\"A\"}]"),
            s(seq),
            s("1709623800.000000000"),
            s("1"),
        ]
    );
    assert_eq!(
        raw[1],
        vec![
            s("evt-2"),
            None,
            s(""),
            s("3.00"),
            None,
            s("2"),
            s("1709623801.123000000"),
            s("2"),
        ]
    );

    // the curated task's MERGE, run by hand against the raw table (no TASK/STREAM locally), then
    // the analytical view over the curated table
    let task_merge = curated_merge_from(&db, &format!("{db}.S.ORDER_EVENTS_RAW"));
    for _ in 0..2 {
        support::sql(&client, &task_merge).await;
    }
    let cur = support::rows(
        &client,
        &format!(
            "SELECT EVENT_ID, CUSTOMER_NAME, EVENT_TIMESTAMP FROM {db}.S.ORDER_EVENTS_CURATED \
             ORDER BY EVENT_ID"
        ),
    )
    .await;
    assert_eq!(
        cur,
        vec![
            vec![s("evt-1"), s("Doe, \"J\""), s("1709623799.500000000")],
            vec![s("evt-2"), None, None],
        ]
    );
    let revenue = support::rows(
        &client,
        &format!(
            "SELECT CUSTOMER_ID, ORDERS, REVENUE FROM {db}.S.DAILY_CUSTOMER_REVENUE ORDER BY CUSTOMER_ID"
        ),
    )
    .await;
    assert_eq!(
        revenue,
        vec![
            vec![s("c-1"), s("1"), s("12.50")],
            vec![s("c-2"), s("1"), s("3.00")],
        ]
    );
}

/// The MERGE of `ORDER_EVENTS_CURATE_TASK` in `sql/50_curated.sql`, reading `source` instead of
/// the stream.
fn curated_merge_from(db: &str, source: &str) -> String {
    let text = std::fs::read_to_string(sql_dir().join("50_curated.sql")).unwrap();
    let vars: HashMap<String, String> = [("DATABASE", db), ("SCHEMA", "S")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let task = tools::bootstrap::split_statements(&text)
        .into_iter()
        .find(|s| s.contains("CREATE OR REPLACE TASK"))
        .expect("the task statement");
    let merge = &task[task.find("MERGE INTO").expect("MERGE in the task")..];
    tools::bootstrap::render(
        &merge.replace("${DATABASE}.${SCHEMA}.ORDER_EVENTS_RAW_STREAM", source),
        &vars,
    )
    .unwrap()
}

#[tokio::test]
async fn bootstrap_stops_at_the_first_failing_statement() {
    let _g = support::snowflake_shared().await;
    let db = support::fresh_database("BOOTFAIL").await;
    let client = support::snowflake_client(&db, "S").await;
    let dir = std::env::temp_dir().join(support::unique("bootstrap-fail"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("00_ok.sql"),
        "CREATE TABLE IF NOT EXISTS ${DATABASE}.S.T1 (A INT);\n-- a comment; with a semicolon\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("10_bad.sql"),
        "CREATE TABLE IF NOT EXISTS ${DATABASE}.S.T2 (A INT);\nSELECT * FROM ${DATABASE}.S.NO_SUCH_TABLE;\nCREATE TABLE ${DATABASE}.S.T3 (A INT);",
    )
    .unwrap();
    let vars: HashMap<String, String> = [("DATABASE".to_string(), db.clone())].into();
    let err = apply_dir(&client, &dir, Profile::Local, &vars)
        .await
        .unwrap_err();
    match &err {
        tools::bootstrap::BootstrapError::Statement {
            file,
            statement,
            source,
            ..
        } => {
            assert_eq!(file, "10_bad.sql");
            assert_eq!(*statement, 2);
            assert!(source.sql_code().is_some(), "{source}");
        }
        other => panic!("{other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("10_bad.sql#2") && msg.contains("NO_SUCH_TABLE"),
        "{msg}"
    );
    let tables: Vec<Option<String>> = support::rows(
        &client,
        &format!(
            "SELECT TABLE_NAME FROM {db}.INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'S' ORDER BY 1"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone())
    .collect();
    assert_eq!(tables, vec![Some("T1".into()), Some("T2".into())]);
    std::fs::remove_dir_all(&dir).ok();
}
