//! `WRITE_MODE=streaming` against the local Snowpipe Streaming API: every change lands exactly
//! once in the change table under replays, partial resends, an invalidated channel and 429/503
//! faults, and the latest-state view equals what merge mode leaves in the target table.

use std::time::{Duration, Instant};

use upsert::changes::{change_table_ddl, latest_ddl, ChangeObjects};

use crate::support::{self, rows};
use crate::upsert::{upsert_for, ORDERS};

const SHARD: &str = "shardId-000000000007";

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
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
    let config = upsert::Config::from_env(&shared::config::Env::new(&support::as_pairs(&{
        let mut v = support::snowflake_vars(&db, "S");
        v.push(("ERROR_BUCKET".into(), bucket.clone()));
        v.extend(
            streaming_vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        v
    })))
    .unwrap();
    let mapping = config.tables.get("orders").unwrap();
    let objects = ChangeObjects::of(mapping, "_CHANGES", "_LATEST");
    support::sql(&client, &change_table_ddl(mapping, &objects)).await;
    support::sql(
        &client,
        &latest_ddl(mapping, &objects, "1 minute", "COMPUTE_WH"),
    )
    .await;

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
        serde_json::json!({"invalidate_channel": format!("orders_{SHARD}")}),
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
    let faults = &support::snowflake_stats().await["faults"];
    assert_eq!(
        (
            &faults["streaming_drop"]["count"],
            &faults["streaming_status"]["count"]
        ),
        (&serde_json::json!(0), &serde_json::json!(0)),
        "every injected fault was met"
    );

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
    support::sql(&client, "ALTER DYNAMIC TABLE ORDERS_LATEST REFRESH").await;
    let columns = "ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT, PAYLOAD, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER, KINESIS_ARRIVAL_TIME";
    let merged = rows(
        &client,
        &format!("SELECT {columns} FROM ORDERS ORDER BY ORDER_ID"),
    )
    .await;
    let latest = rows(
        &client,
        &format!("SELECT {columns} FROM ORDERS_LATEST ORDER BY ORDER_ID"),
    )
    .await;
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
    let config = upsert::Config::from_env(&shared::config::Env::new(&support::as_pairs(&{
        let mut v = support::snowflake_vars(&db, "S");
        v.push(("ERROR_BUCKET".into(), bucket.clone()));
        v.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        v
    })))
    .unwrap();
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
