//! The latest-state Dynamic Table's ranking against the MERGE mode on the same changes: a delete
//! that carries no version, an older version arriving later, a key deleted before it exists.
//! The change table is filled by SQL here (the Snowpipe Streaming path is tested in
//! `streaming.rs`); what is tested is that both modes mean the same by "newer".

use std::time::{Duration, Instant};

use upsert::changes::{change_table_ddl, latest_ddl, ChangeObjects};

use crate::streaming::target_and_latest;
use crate::support;
use crate::upsert::{upsert_config, upsert_for, ORDERS};

const SHARD: &str = "shardId-000000000003";

/// (sequence number, record): per key, in sequence order.
fn changes() -> Vec<(u64, String)> {
    let up = |id: u32, status: &str, at: &str| {
        format!(
            r#"{{"op":"u","order_id":{id},"status":"{status}","amount":1.00,"customer":"c","updated_at":"2024-11-21T{at}Z"}}"#
        )
    };
    let del = |id: u32| format!(r#"{{"op":"d","order_id":{id}}}"#);
    vec![
        // 1: updated, then deleted without a version: gone in both modes.
        (1001, up(1, "a", "10:00:00")),
        (1002, up(1, "b", "10:01:00")),
        (1003, del(1)),
        // 2: deleted before it existed, then created: present.
        (1004, del(2)),
        (1005, up(2, "c", "10:00:00")),
        // 3: a newer version, then an older one arriving later: the newer stays.
        (1006, up(3, "new", "10:05:00")),
        (1007, up(3, "old", "10:00:00")),
        // 4: deleted without a version, then updated with a newer version: present.
        (1008, up(4, "d", "10:00:00")),
        (1009, del(4)),
        (1010, up(4, "e", "10:02:00")),
    ]
}

/// The change table's row of one change, as the streaming writer appends it.
fn insert(table: &str, seq: u64, data: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    let text = |k: &str| match v.get(k) {
        Some(serde_json::Value::String(s)) => format!("'{s}'"),
        Some(n @ serde_json::Value::Number(_)) => n.to_string(),
        _ => "NULL".into(),
    };
    let op = if v["op"] == "d" { "DELETE" } else { "UPSERT" };
    format!(
        "INSERT INTO {table} (ORDER_ID, STATUS, AMOUNT, CUSTOMER, UPDATED_AT, CHANGE_OP, KINESIS_SHARD_ID, KINESIS_SEQUENCE_NUMBER, KINESIS_ARRIVAL_TIME) \
         VALUES ({}, {}, {}, {}, {}, '{op}', '{SHARD}', '{seq}', '2024-11-21 10:00:00')",
        text("order_id"),
        text("status"),
        text("amount"),
        text("customer"),
        text("updated_at"),
    )
}

#[tokio::test]
async fn latest_state_ranks_changes_as_the_merge_applies_them() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("UPS_LATEST", "s3://unused/raw/").await;
    let bucket = support::unique("upsert-errors");
    support::create_bucket(&support::s3().await, &bucket).await;
    let client = support::snowflake_client(&db, "S").await;
    let vars = [("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)];
    let merge = upsert_for(&db, &bucket, &vars, None).await;

    // Merge mode: each change its own batch, so the MERGE (not the in-batch dedup) decides.
    for (seq, data) in changes() {
        let event = support::kinesis_event(
            "orders",
            SHARD,
            &[(&seq.to_string(), "k", data.as_bytes())],
            1_732_200_000.0,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        let (response, _) = merge.handle_body(&event, deadline).await.unwrap();
        assert!(response.batch_item_failures.is_empty());
    }

    let config = upsert_config(&db, &bucket, &vars);
    let mapping = config.tables.get("orders").unwrap();
    let objects = ChangeObjects::of(mapping, "_CHANGES", "_LATEST");
    support::sql(&client, &change_table_ddl(mapping, &objects)).await;
    for (seq, data) in changes() {
        support::sql(&client, &insert(&objects.change_table, seq, &data)).await;
    }
    let ddl = latest_ddl(mapping, &objects, "1 minute", "COMPUTE_WH");
    support::sql(&client, &ddl).await;

    let columns = "ORDER_ID, STATUS, UPDATED_AT, KINESIS_SEQUENCE_NUMBER";
    let (merged, latest) = target_and_latest(&client, "ORDERS", columns, "ORDER_ID").await;
    let ids: Vec<&str> = merged.iter().map(|r| r[0].as_deref().unwrap()).collect();
    assert_eq!(ids, ["2", "3", "4"], "{merged:?}");
    assert_eq!(merged[1][1].as_deref(), Some("new"));
    assert_eq!(merged[2][1].as_deref(), Some("e"));
    assert_eq!(latest, merged);
}
