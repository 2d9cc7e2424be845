//! `WRITE_MODE=streaming` against the local Snowpipe Streaming API: every change lands exactly
//! once in the change table under replays, partial resends, an invalidated channel and 429/503
//! faults, and the latest-state view equals what merge mode leaves in the target table.

use std::time::{Duration, Instant};

use upsert::changes::{change_table_ddl, ChangeObjects};

use crate::support::{self, rows};
use crate::upsert::{upsert_config, upsert_for, ORDERS};

const SHARD: &str = "shardId-000000000007";

/// The merge target `table` and its latest-state Dynamic Table `<table>_LATEST`, `columns` of
/// each ordered by `key`: the Dynamic Table refreshed first, as Snowflake does within its target
/// lag (a test cannot wait a minute). Callers compare the two.
pub(crate) async fn target_and_latest(
    client: &shared::snowflake::SnowflakeClient,
    table: &str,
    columns: &str,
    key: &str,
) -> (Vec<Vec<Option<String>>>, Vec<Vec<Option<String>>>) {
    support::sql(
        client,
        &format!("ALTER DYNAMIC TABLE {table}_LATEST REFRESH"),
    )
    .await;
    let select = |from: String| format!("SELECT {columns} FROM {from} ORDER BY {key}");
    let target = rows(client, &select(table.to_string())).await;
    let latest = rows(client, &select(format!("{table}_LATEST"))).await;
    (target, latest)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

/// The channel the writer names for a logical table on a shard of the stream `orders`.
fn channel(table: &str, shard: &str) -> String {
    format!("{}_orders_{shard}", table.to_uppercase())
}

/// 240 changes of 30 orders in sequence order: creates, updates, deletes and re-creates, each
/// with a later `updated_at` than the key's previous change.
fn changes() -> Vec<(String, String, Vec<u8>)> {
    let mut state = std::collections::HashMap::new();
    (1..=240u64)
        .map(|seq| {
            let id = (seq * 7919) % 30 + 1;
            let existed = state.get(&id).copied().unwrap_or(false);
            let op = match (existed, seq % 5) {
                (false, _) => "c",
                (true, 0) => "d",
                _ => "u",
            };
            state.insert(id, op != "d");
            let minute = seq / 60;
            let second = seq % 60;
            let data = format!(
                r#"{{"op":"{op}","order_id":{id},"status":"S{seq}","amount":{}.{:02},"customer":"Zoë \"{id}\"","updated_at":"2024-11-21T10:{minute:02}:{second:02}Z"}}"#,
                seq % 97,
                seq % 100
            );
            (format!("{}", 1000 + seq), id.to_string(), data.into_bytes())
        })
        .collect()
}

fn event(records: &[(String, String, Vec<u8>)]) -> String {
    let records: Vec<(&str, &str, &[u8])> = records
        .iter()
        .map(|(s, p, d)| (s.as_str(), p.as_str(), d.as_slice()))
        .collect();
    support::kinesis_event("orders", SHARD, &records, 1_732_200_000.0)
}

async fn count(client: &shared::snowflake::SnowflakeClient, sql: &str) -> u64 {
    rows(client, sql).await[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn streaming_lands_each_change_once_and_its_latest_state_equals_merge_mode() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let db = support::bootstrapped_database("UPS_STREAM", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let client = support::snowflake_client(&db, "S").await;

    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)];
    let merge = upsert_for(&db, &bucket, &vars, None).await;
    let streaming_vars = [
        ("TABLE", "orders"),
        ("UPSERT_TABLES", ORDERS),
        ("WRITE_MODE", "streaming"),
    ];
    let streaming = upsert_for(&db, &bucket, &streaming_vars, None).await;

    // The change table and the latest state, as `bootstrap --streaming` makes them.
    let config = upsert_config(&db, &bucket, &streaming_vars);
    support::streaming_objects(&client, &config).await;

    let all = changes();
    let batches: Vec<String> = all.chunks(60).map(event).collect();
    for batch in &batches {
        let (response, _) = merge.handle_body(batch, soon()).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }

    // Batch 1, then batch 1 again (a replay: nothing new), then batch 2 under a 429 and a 503.
    let (response, outcome) = streaming.handle_body(&batches[0], soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.tables["orders"].inserted, 60);
    let (_, outcome) = streaming.handle_body(&batches[0], soon()).await.unwrap();
    assert_eq!(
        (
            outcome.tables["orders"].inserted,
            outcome.tables["orders"].duplicates
        ),
        (0, 60)
    );
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"streaming_status": 429, "count": 1}),
    )
    .await;
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"streaming_status": 503, "count": 1}),
    )
    .await;
    let (response, _) = streaming.handle_body(&batches[1], soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    // Lambda resends batch 2 from its middle record (a partial failure elsewhere): skipped.
    let tail = event(&all[90..120]);
    let (_, outcome) = streaming.handle_body(&tail, soon()).await.unwrap();
    assert_eq!(outcome.tables["orders"].inserted, 0);

    // Another writer (a new container) opens the channel: this one's token goes stale, it
    // reopens and resumes after the committed offset. Then the channel is invalidated.
    let other = upsert_for(&db, &bucket, &streaming_vars, None).await;
    let both = event(&all[120..180]);
    let (_, outcome) = other.handle_body(&both, soon()).await.unwrap();
    assert_eq!(outcome.tables["orders"].inserted, 60);
    let (_, outcome) = streaming.handle_body(&both, soon()).await.unwrap();
    assert_eq!(outcome.tables["orders"].inserted, 0, "{outcome:?}");
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"invalidate_channel": channel("orders", SHARD)}),
    )
    .await;
    // The connection drops under the first append of batch 4: the client sends it again.
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"streaming_drop_connection": true, "count": 1}),
    )
    .await;
    let (response, outcome) = streaming.handle_body(&batches[3], soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.tables["orders"].inserted, 60);
    streaming_faults_met().await;

    // Every change exactly once, in the change table.
    assert_eq!(
        rows(
            &client,
            "SELECT COUNT(*), COUNT(DISTINCT KINESIS_SEQUENCE_NUMBER), MIN(KINESIS_SEQUENCE_NUMBER), MAX(KINESIS_SEQUENCE_NUMBER) FROM ORDERS_CHANGES"
        )
        .await,
        vec![vec![
            Some("240".to_string()),
            Some("240".to_string()),
            Some("1001".to_string()),
            Some("1240".to_string())
        ]]
    );
    assert_eq!(
        count(
            &client,
            "SELECT COUNT(*) FROM ORDERS_CHANGES WHERE CHANGE_OP = 'DELETE'"
        )
        .await,
        all.iter()
            .filter(|(_, _, d)| d.starts_with(br#"{"op":"d""#))
            .count() as u64
    );
    // The latest state, once the Dynamic Table has refreshed (Snowflake does within TARGET_LAG;
    // a test asks at once), is the merge-mode target, row for row.
    let columns = "ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT, PAYLOAD, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER, KINESIS_ARRIVAL_TIME";
    let (merged, latest) = target_and_latest(&client, "ORDERS", columns, "ORDER_ID").await;
    assert!(merged.len() > 10, "{merged:?}");
    assert_eq!(latest, merged);
    support::clear_faults().await;
}

#[tokio::test]
async fn streaming_mode_quarantines_what_does_not_fit_and_appends_the_rest() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("UPS_STREAM_BAD", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let vars = [
        ("TABLE", "orders"),
        ("UPSERT_TABLES", ORDERS),
        ("WRITE_MODE", "streaming"),
    ];
    let streaming = upsert_for(&db, &bucket, &vars, None).await;
    let client = support::snowflake_client(&db, "S").await;
    let config = upsert_config(&db, &bucket, &vars);
    let mapping = config.tables.get("orders").unwrap();
    let objects = ChangeObjects::of(mapping, "_CHANGES", "_LATEST");
    support::sql(&client, &change_table_ddl(mapping, &objects)).await;
    let mut records = changes()[..4].to_vec();
    records.insert(
        2,
        (
            "1002".into(),
            "x".into(),
            br#"{"op":"c","order_id":"not a number","updated_at":"2024-11-21T10:00:00Z"}"#.to_vec(),
        ),
    );
    for (i, r) in records.iter_mut().enumerate() {
        r.0 = format!("{}", 2000 + i);
    }
    let (response, outcome) = streaming
        .handle_body(&event(&records), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(
        (outcome.quarantined, outcome.tables["orders"].inserted),
        (1, 4)
    );
    assert_eq!(
        count(&client, "SELECT COUNT(*) FROM ORDERS_CHANGES").await,
        4
    );
    let keys = support::list_keys(&s3, &bucket).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("errors/upsert/"), "{keys:?}");
}

#[tokio::test]
async fn streaming_mode_without_a_change_table_fails_the_invocation_naming_it() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("UPS_STREAM_MISSING", "s3://unused/raw/").await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&support::s3().await, &bucket).await;
    let streaming = upsert_for(
        &db,
        &bucket,
        &[
            ("TABLE", "orders"),
            ("UPSERT_TABLES", ORDERS),
            ("WRITE_MODE", "streaming"),
        ],
        None,
    )
    .await;
    let err = streaming
        .handle_body(&event(&changes()[..3]), soon())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ORDERS_CHANGES"), "{err}");
}

/// A streaming upsert on a fresh database with its change table (made by `ddl` from the
/// mapping's own DDL), and a client to read it.
struct Streaming {
    db: String,
    upsert: upsert::Upsert,
    client: shared::snowflake::SnowflakeClient,
    s3: aws_sdk_s3::Client,
    bucket: String,
}

async fn streaming_fixture(
    prefix: &str,
    vars: &[(&str, &str)],
    table: &str,
    ddl: impl Fn(String) -> String,
) -> Streaming {
    let db = support::bootstrapped_database(prefix, "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let mut vars = vars.to_vec();
    vars.push(("WRITE_MODE", "streaming"));
    let upsert = upsert_for(&db, &bucket, &vars, None).await;
    let client = support::snowflake_client(&db, "S").await;
    let config = upsert_config(&db, &bucket, &vars);
    let mapping = config.tables.get(table).unwrap();
    let objects = ChangeObjects::of(mapping, "_CHANGES", "_LATEST");
    support::sql(&client, &ddl(change_table_ddl(mapping, &objects))).await;
    Streaming {
        db,
        upsert,
        client,
        s3,
        bucket,
    }
}

/// The orders fixture, every record to `orders`.
async fn orders_fixture(prefix: &str) -> Streaming {
    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)];
    streaming_fixture(prefix, &vars, "orders", |ddl| ddl).await
}

/// How long the local service waits before it commits an accepted append.
async fn commit_delay(min_ms: u64, max_ms: u64) {
    support::snowflake_admin(
        "/admin/config",
        serde_json::json!({"streaming_commit_delay_ms": [min_ms, max_ms]}),
    )
    .await;
}

/// Every streaming fault armed was met (the service drops a fault once its count is spent).
async fn streaming_faults_met() {
    let stats = support::snowflake_stats().await;
    assert_eq!(
        stats["streaming"]["faults"],
        serde_json::json!([]),
        "every injected fault was met"
    );
}

/// The service's default commit delay (spec: 300-1500 ms).
async fn default_commit_delay() {
    commit_delay(300, 1500).await;
}

/// Rows, distinct sequence numbers, and rows per sequence number at most, of the change table.
async fn landed(client: &shared::snowflake::SnowflakeClient) -> (u64, u64) {
    let r = rows(
        client,
        "SELECT COUNT(*), COUNT(DISTINCT KINESIS_SEQUENCE_NUMBER) FROM ORDERS_CHANGES",
    )
    .await;
    let n = |i: usize| r[0][i].as_deref().unwrap_or("0").parse().unwrap();
    (n(0), n(1))
}

/// 60 changes of the shared sequence renumbered from `first`.
fn renumbered(first: u64, n: usize) -> Vec<(String, String, Vec<u8>)> {
    let mut records = changes()[..n].to_vec();
    for (i, r) in records.iter_mut().enumerate() {
        r.0 = (first + i as u64).to_string();
    }
    records
}

#[tokio::test]
async fn streaming_waits_for_commits_that_arrive_seconds_later() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let f = orders_fixture("UPS_STREAM_LATE").await;
    commit_delay(1500, 2500).await;
    let started = Instant::now();
    let result = f
        .upsert
        .handle_body(&event(&renumbered(5000, 60)), soon())
        .await;
    default_commit_delay().await;
    let (response, outcome) = result.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "acknowledged before the commit"
    );
    assert_eq!(outcome.tables["orders"].inserted, 60);
    // Acknowledged means committed: every row is readable now.
    assert_eq!(landed(&f.client).await, (60, 60));
}

#[tokio::test]
async fn streaming_invalidation_discards_uncommitted_rows_and_the_batch_lands_once() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let f = orders_fixture("UPS_STREAM_INVAL").await;
    // Batch 1 commits, then batch 2 is accepted and invalidated before its commit.
    let (response, _) = f
        .upsert
        .handle_body(&event(&renumbered(6000, 30)), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    commit_delay(2000, 2000).await;
    let second = event(&renumbered(6030, 60));
    let invalidate = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        support::snowflake_admin(
            "/admin/faults",
            serde_json::json!({"invalidate_channel": channel("orders", SHARD)}),
        )
        .await;
        // The reopened channel's appends commit at the default pace.
        default_commit_delay().await;
    };
    let (result, ()) = tokio::join!(f.upsert.handle_body(&second, soon()), invalidate);
    let (response, outcome) = result.unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let stats = support::snowflake_stats().await;
    let key = format!(
        "{}.S.ORDERS_CHANGES-STREAMING.{}",
        f.db,
        channel("orders", SHARD).to_uppercase()
    );
    let discarded = &stats["streaming"]["channels"][&key]["appends_discarded"];
    assert!(
        discarded.as_u64() > Some(0),
        "the invalidation met uncommitted appends: {discarded}"
    );
    assert_eq!(landed(&f.client).await, (90, 90));
    // Lambda resends the batch anyway (e.g. another table failed): nothing lands twice.
    let (_, outcome) = f.upsert.handle_body(&second, soon()).await.unwrap();
    assert_eq!(outcome.tables["orders"].duplicates, 60);
    assert_eq!(landed(&f.client).await, (90, 90));
}

#[tokio::test]
async fn streaming_survives_409_and_408_answers() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let f = orders_fixture("UPS_STREAM_409").await;
    let (response, _) = f
        .upsert
        .handle_body(&event(&renumbered(7000, 20)), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    for status in [409, 408] {
        support::snowflake_admin(
            "/admin/faults",
            serde_json::json!({"streaming_status": status, "count": 1, "channel": channel("orders", SHARD)}),
        )
        .await;
    }
    let (response, outcome) = f
        .upsert
        .handle_body(&event(&renumbered(7020, 40)), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.tables["orders"].inserted, 40);
    assert_eq!(landed(&f.client).await, (60, 60));
    streaming_faults_met().await;
    support::clear_faults().await;
}

#[tokio::test]
async fn streaming_resends_an_append_whose_answer_was_lost_after_it_applied() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let f = orders_fixture("UPS_STREAM_DROP").await;
    let (response, _) = f
        .upsert
        .handle_body(&event(&renumbered(8000, 20)), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    support::snowflake_admin(
        "/admin/faults",
        serde_json::json!({"streaming_drop_connection": true, "count": 1, "after_apply": true, "channel": channel("orders", SHARD)}),
    )
    .await;
    let (response, outcome) = f
        .upsert
        .handle_body(&event(&renumbered(8020, 40)), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(landed(&f.client).await, (60, 60));
    streaming_faults_met().await;
    support::clear_faults().await;
}

#[tokio::test]
async fn two_logical_tables_on_one_target_each_have_their_own_channel() {
    let _g = support::snowflake_shared().await;
    let tables = ORDERS.replacen(r#"{"orders":"#, "", 1);
    let tables = tables.strip_suffix('}').unwrap();
    let tables = format!(r#"{{"orders":{tables},"orders_eu":{tables}}}"#);
    let vars = [
        ("ROUTE_FIELD", "/region"),
        ("ROUTE_MAP", r#"{"us":"orders","eu":"orders_eu"}"#),
        ("UPSERT_TABLES", tables.as_str()),
    ];
    let f = streaming_fixture("UPS_STREAM_TWO", &vars, "orders", |ddl| ddl).await;
    let record = |seq: u64, id: u64, region: &str| {
        let data = format!(
            r#"{{"op":"c","region":"{region}","order_id":{id},"status":"NEW","updated_at":"2024-11-21T10:00:0{id}Z"}}"#
        );
        (seq.to_string(), id.to_string(), data.into_bytes())
    };
    // Sequence numbers interleave: a shared high-water mark would skip the EU record.
    let records = vec![
        record(9001, 1, "us"),
        record(9002, 2, "eu"),
        record(9003, 3, "us"),
    ];
    let (response, outcome) = f
        .upsert
        .handle_body(&event(&records), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(
        (
            outcome.tables["orders"].inserted,
            outcome.tables["orders_eu"].inserted
        ),
        (2, 1)
    );
    assert_eq!(landed(&f.client).await, (3, 3));
    // The replay skips all three, per channel.
    let (_, outcome) = f
        .upsert
        .handle_body(&event(&records), soon())
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.tables["orders"].duplicates,
            outcome.tables["orders_eu"].duplicates
        ),
        (2, 1)
    );
    assert_eq!(landed(&f.client).await, (3, 3));
}

#[tokio::test]
async fn a_dms_key_change_is_never_split_across_append_requests() {
    let _g = support::snowflake_shared().await;
    let tables = ORDERS
        .replace(
            r#""table":"ORDERS","#,
            r#""table":"ORDERS","envelope":"dms","#,
        )
        .replace(
            r#","delete":{"path":"/op","value":"d"},"payload_column":"payload""#,
            "",
        );
    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", tables.as_str())];
    let f = streaming_fixture("UPS_STREAM_DMS", &vars, "orders", |ddl| ddl).await;
    let dms = |id: u64, before: u64, customer: &str| {
        format!(
            r#"{{"data":{{"order_id":{id},"status":"NEW","customer":"{customer}","updated_at":"2024-11-21T10:00:00Z"}},"before-image":{{"order_id":{before}}},"metadata":{{"record-type":"data","operation":"update","partition-key-type":"primary-key","schema-name":"shop","table-name":"orders"}}}}"#
        )
        .into_bytes()
    };
    // 3.5 MB, then a key change (a small delete and a 1 MB row): cut by size alone, the
    // delete would travel with the first row and the new row alone.
    let big = "x".repeat(3_500_000);
    let row = "y".repeat(1_000_000);
    let records = vec![
        ("9101".to_string(), "1".to_string(), dms(1, 1, &big)),
        ("9102".to_string(), "2".to_string(), dms(5, 3, &row)),
    ];
    let (response, outcome) = f
        .upsert
        .handle_body(&event(&records), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    assert_eq!(outcome.tables["orders"].statements, 2, "{outcome:?}");
    assert_eq!(outcome.tables["orders"].inserted, 3);
    assert_eq!(
        rows(&f.client, "SELECT ORDER_ID, CHANGE_OP FROM ORDERS_CHANGES ORDER BY KINESIS_SEQUENCE_NUMBER, CHANGE_OP").await,
        vec![
            vec![Some("1".to_string()), Some("UPSERT".to_string())],
            vec![Some("3".to_string()), Some("DELETE".to_string())],
            vec![Some("5".to_string()), Some("UPSERT".to_string())],
        ]
    );
}

#[tokio::test]
async fn a_row_snowflake_refuses_at_commit_is_quarantined_with_its_bytes_and_message() {
    let _g = support::snowflake_shared().await;
    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)];
    // STATUS is a number in the change table: a text status passes the mapping and is refused
    // by Snowflake at commit.
    let f = streaming_fixture("UPS_STREAM_REFUSED", &vars, "orders", |ddl| {
        ddl.replace(r#""STATUS" VARCHAR"#, r#""STATUS" NUMBER(38,0)"#)
    })
    .await;
    let record = |seq: u64, id: u64, status: &str| {
        let data = format!(
            r#"{{"op":"c","order_id":{id},"status":"{status}","updated_at":"2024-11-21T10:00:00Z"}}"#
        );
        (seq.to_string(), id.to_string(), data.into_bytes())
    };
    let records = vec![
        record(9201, 1, "11"),
        record(9202, 2, "PAID"),
        record(9203, 3, "13"),
    ];
    let (response, outcome) = f
        .upsert
        .handle_body(&event(&records), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
    let table = &outcome.tables["orders"];
    assert_eq!(
        (outcome.quarantined, table.refused, table.inserted),
        (1, 1, 2),
        "{outcome:?}"
    );
    assert_eq!(landed(&f.client).await, (2, 2));
    let keys = support::list_keys(&f.s3, &f.bucket).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let lines = support::rejected_lines(&f.s3, &f.bucket, &keys[0]).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(
        lines[0]["payload"].as_str().unwrap().as_bytes(),
        records[1].2.as_slice()
    );
    assert_eq!(lines[0]["metadata"]["sequence_number"], "9202");
    let reason = lines[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("Snowflake refused the row at commit: "),
        "{reason}"
    );
    assert!(!reason.ends_with("no message"), "{reason}");
}

/// Lambda finishes a parent shard before it reads its children: a child's first batch drops the
/// parent's channel (the stream split in moto, the parents found with `ListShards`), so channels
/// of closed shards do not pile up on the pipe (2,000 at most).
#[tokio::test]
async fn a_new_shards_first_batch_drops_its_parents_channel() {
    let _g = support::snowflake_shared().await;
    let f = orders_fixture("UPS_STREAM_SPLIT").await;
    let kinesis = aws_sdk_kinesis::Client::new(&support::sdk_config().await);
    let stream = support::unique("split");
    tools::esm::ensure_stream(&kinesis, &stream, 1)
        .await
        .unwrap();
    let parent = "shardId-000000000000";
    kinesis
        .split_shard()
        .stream_name(&stream)
        .shard_to_split(parent)
        .new_starting_hash_key("170141183460469231731687303715884105728")
        .send()
        .await
        .unwrap();
    let shards = kinesis
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .unwrap();
    let child = shards
        .shards()
        .iter()
        .find(|s| s.parent_shard_id() == Some(parent))
        .expect("a child of the split shard")
        .shard_id()
        .to_string();
    let upsert = f.upsert.with_kinesis(kinesis.clone());
    let batch = |shard: &str, seq: &str| {
        let data = format!(
            r#"{{"op":"c","order_id":{seq},"status":"S","amount":1,"customer":"c","updated_at":"2024-11-21T10:00:00Z"}}"#
        );
        support::kinesis_event(
            &stream,
            shard,
            &[(seq, "k", data.as_bytes())],
            1_732_200_000.0,
        )
    };
    let channels = || async {
        let stats = support::snowflake_stats().await;
        let suffix =
            |shard: &str| format!(".ORDERS_{}_{}", stream.to_uppercase(), shard.to_uppercase());
        let all = stats["streaming"]["channels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let has = |shard: &str| {
            all.keys()
                .any(|k| k.starts_with(&f.db) && k.ends_with(&suffix(shard)))
        };
        (has(parent), has(&child))
    };
    let (response, _) = upsert
        .handle_body(&batch(parent, "10"), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(channels().await, (true, false));
    let (response, _) = upsert
        .handle_body(&batch(&child, "20"), soon())
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        channels().await,
        (false, true),
        "the parent's channel is dropped"
    );
    assert_eq!(landed(&f.client).await, (2, 2));
}

/// The tables of one batch are written at once: each channel has its own lock, none is held
/// across another channel's requests. With every commit held back 2 s, both tables' appends are
/// waiting to commit at the same moment; a writer that took the tables one after another would
/// append the second only after the first had committed.
#[tokio::test]
async fn the_tables_of_one_batch_are_appended_at_once() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let tables = ORDERS.replacen(r#"{"orders":"#, "", 1);
    let tables = tables.strip_suffix('}').unwrap();
    let tables = format!(r#"{{"orders":{tables},"orders_eu":{tables}}}"#);
    let vars = [
        ("ROUTE_FIELD", "/region"),
        ("ROUTE_MAP", r#"{"us":"orders","eu":"orders_eu"}"#),
        ("UPSERT_TABLES", tables.as_str()),
    ];
    let f = streaming_fixture("UPS_STREAM_CONC", &vars, "orders", |ddl| ddl).await;
    let record = |seq: u64, region: &str| {
        let data = format!(
            r#"{{"op":"c","region":"{region}","order_id":{seq},"status":"NEW","updated_at":"2024-11-21T10:00:00Z"}}"#
        );
        (seq.to_string(), seq.to_string(), data.into_bytes())
    };
    let records = vec![record(9101, "us"), record(9102, "eu")];
    commit_delay(2000, 2000).await;
    let body = event(&records);
    let write = f.upsert.handle_body(&body, soon());
    let watch = async {
        let pending = |stats: &serde_json::Value| {
            let channels = stats["streaming"]["channels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            channels
                .iter()
                .filter(|(k, v)| k.starts_with(&f.db) && v["pending"].as_u64() > Some(0))
                .count()
        };
        let mut most = 0;
        let until = Instant::now() + Duration::from_millis(1800);
        while Instant::now() < until {
            most = most.max(pending(&support::snowflake_stats().await));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        most
    };
    let (result, most) = tokio::join!(write, watch);
    default_commit_delay().await;
    let (response, _) = result.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(most, 2, "both channels held an uncommitted append at once");
    assert_eq!(landed(&f.client).await, (2, 2));
}

/// 120 changes of 20 orders as [`changes`] makes them, a field `priority` appearing from the
/// 41st (an integer, once the string "high": drift) and `gift` (a boolean) from the 81st.
fn evolving_changes() -> Vec<(String, String, Vec<u8>)> {
    changes()
        .into_iter()
        .take(120)
        .enumerate()
        .map(|(i, (seq, key, data))| {
            let text = String::from_utf8(data).unwrap();
            let body = text.trim_end_matches('}');
            let extra = match i {
                0..40 => String::new(),
                60 => r#","priority":"high""#.to_string(),
                40..80 => format!(r#","priority":{}"#, i % 3),
                _ => format!(r#","priority":{},"gift":{}"#, i % 3, i % 2 == 0),
            };
            (seq, key, format!("{body}{extra}}}").into_bytes())
        })
        .collect()
}

#[tokio::test]
async fn after_schema_evolution_the_latest_state_still_equals_merge_mode_row_for_row() {
    let _g = support::snowflake_exclusive().await;
    support::clear_faults().await;
    let db = support::bootstrapped_database("UPS_STREAM_EVOLVE", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &bucket).await;
    let client = support::snowflake_client(&db, "S").await;
    let evolving = ORDERS.replacen(r#""keys""#, r#""schema_evolution":true,"keys""#, 1);
    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", evolving.as_str())];
    let merge = upsert_for(&db, &bucket, &vars, None).await;
    let streaming_vars = [vars[0], vars[1], ("WRITE_MODE", "streaming")];
    // Each mode quarantines into its own bucket: the objects of one batch have the same key.
    let streaming_bucket = support::unique("upsert-errors");
    support::create_bucket(&s3, &streaming_bucket).await;
    let streaming = upsert_for(&db, &streaming_bucket, &streaming_vars, None).await;
    // The change table and the latest state, as `bootstrap --streaming` makes them.
    let config = upsert_config(&db, &bucket, &streaming_vars);
    support::streaming_objects(&client, &config).await;

    let all = evolving_changes();
    let mut quarantined = [0, 0];
    let mut added = [0, 0];
    for batch in all.chunks(30).map(event) {
        for (i, upsert) in [&merge, &streaming].into_iter().enumerate() {
            let (response, outcome) = upsert.handle_body(&batch, soon()).await.unwrap();
            assert!(response.batch_item_failures.is_empty(), "{outcome:?}");
            quarantined[i] += outcome.tables["orders"].drift_quarantined;
            added[i] += outcome.tables["orders"].columns_added;
        }
    }
    assert_eq!((quarantined, added), ([1, 1], [2, 2]));
    let evolved = |table: &str| {
        format!(
            "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = 'S' \
             AND TABLE_NAME = '{table}' AND COLUMN_NAME IN ('PRIORITY', 'GIFT') ORDER BY COLUMN_NAME"
        )
    };
    let expected = vec![
        vec![Some("GIFT".to_string()), Some("BOOLEAN".to_string())],
        vec![Some("PRIORITY".to_string()), Some("NUMBER".to_string())],
    ];
    for table in ["ORDERS", "ORDERS_CHANGES", "ORDERS_LATEST"] {
        assert_eq!(rows(&client, &evolved(table)).await, expected, "{table}");
    }
    // The drifted record is in both modes' quarantine, with the same reason but for its table.
    let mut reasons = Vec::new();
    for bucket in [&bucket, &streaming_bucket] {
        for key in support::list_keys(&s3, bucket).await {
            for line in support::rejected_lines(&s3, bucket, &key).await {
                reasons.push(line["reason"].as_str().unwrap().replace("_CHANGES", ""));
            }
        }
    }
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0], reasons[1]);
    assert!(
        reasons[0].contains(r#"column "PRIORITY": NUMBER(38,0) cannot hold a VARCHAR value"#),
        "{reasons:?}"
    );

    let columns = "ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT, PAYLOAD, PRIORITY, GIFT, KINESIS_SEQUENCE_NUMBER";
    let (merged, latest) = target_and_latest(&client, "ORDERS", columns, "ORDER_ID").await;
    assert!(merged.len() > 10, "{merged:?}");
    assert!(merged.iter().any(|r| r[6].is_some()) && merged.iter().any(|r| r[7].is_some()));
    assert_eq!(latest, merged);
}
