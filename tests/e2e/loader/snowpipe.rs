//! `LOAD_MODE=snowpipe` end to end: files in moto S3 → SQS notifications → the loader hands them
//! to the local service's pipes (`sql/35_pipes.sql`) through the Snowpipe REST API stand-in
//! (`local/snowpipe_api.py`), which loads them after a delay; the tests assert the exact rows,
//! the batch item failures and the outcome of each file.

use super::*;

/// A loader in snowpipe mode polling every 100 ms, with the stack's bucket and database.
async fn pipe_loader(stack: &Stack) -> Loader {
    loader_for(
        &stack.bucket,
        &stack.db,
        &[("LOAD_MODE", "snowpipe"), ("PIPE_POLL_MS", "100")],
    )
    .await
}

/// Two sensor files written as the orchestrator writes them (lineage in each line, row count in
/// the object's metadata); returns their keys.
async fn two_sensor_files(stack: &Stack, tag: &str) -> [String; 2] {
    let keys = [1, 2]
        .map(|i| format!("raw/sensor_readings/2024/03/05/07/{SHARD}-{tag}{i}-{tag}{i}.ndjson.gz"));
    for (i, key) in keys.iter().enumerate() {
        let lines: Vec<String> = (1..=2)
            .map(|row| ndjson_line(10 * (i as u32 + 1) + row, key, row))
            .collect();
        put_counted(stack, key, gzip(&(lines.join("\n") + "\n")), "2").await;
    }
    keys
}

fn expected_rows(keys: &[String; 2]) -> Vec<(String, String, String)> {
    let mut rows = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        for row in 1..=2u32 {
            rows.push((
                (10 * (i as u32 + 1) + row).to_string(),
                key.clone(),
                row.to_string(),
            ));
        }
    }
    rows
}

/// The same records with `ApproximateReceiveCount` raised, as Lambda hands a redelivered message.
fn redelivered(records: &[Value], count: u32) -> Vec<Value> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            r["attributes"]["ApproximateReceiveCount"] = json!(count.to_string());
            r
        })
        .collect()
}

/// The same records as if their messages were sent `later` than they were (S3 delivering a
/// notification again, or an operator's redrive), first received.
fn sent_later(records: &[Value], later: Duration) -> Vec<Value> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            let sent: u64 = r["attributes"]["SentTimestamp"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("SQS records carry SentTimestamp");
            r["attributes"]["SentTimestamp"] = json!((sent + later.as_millis() as u64).to_string());
            r
        })
        .collect()
}

async fn invoke(loader: &Loader, records: &[Value], within: Duration) -> (Value, loader::Outcome) {
    loader
        .handle_body(&sqs_event(records), Instant::now() + within)
        .await
        .expect("an SQS invocation answers with batch item failures")
}

#[tokio::test]
async fn files_land_once_with_lineage_and_a_redelivered_message_loads_nothing_twice() {
    let _g = support::snowflake_shared().await;
    let stack = stack("pipe-once").await;
    let loader = pipe_loader(&stack).await;
    let keys = two_sensor_files(&stack, "1").await;
    let records = receive(&stack, 2).await;

    let (response, out) = invoke(&loader, &records, Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!((out.loaded, out.pending, out.failed), (2, 0, 0), "{out:#?}");
    assert_eq!(out.rows_loaded, 4);
    assert_eq!(
        out.row_count_mismatches, 0,
        "rowsInserted matches x-amz-meta-row-count"
    );
    assert!(
        out.insert_requests >= 1 && out.report_polls >= 1,
        "{out:#?}"
    );
    assert_eq!(sensor_rows(&stack).await, expected_rows(&keys));

    // the same messages again, as SQS redelivers them: the history says loaded, nothing is sent
    let (response, out) = invoke(&loader, &redelivered(&records, 2), Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(
        (out.already_loaded, out.loaded, out.insert_requests),
        (2, 0, 0),
        "{out:#?}"
    );
    // and as a fresh delivery (receive count 1): sent again, skipped by the pipe's load metadata,
    // confirmed by loadHistoryScan
    let (response, out) = invoke(&loader, &records, Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(out.pending + out.failed, 0, "{out:#?}");
    assert_eq!(
        sensor_rows(&stack).await,
        expected_rows(&keys),
        "no row twice"
    );
}

#[tokio::test]
async fn a_bad_file_fails_its_message_with_the_pipes_first_error_until_the_dlq() {
    let _g = support::snowflake_shared().await;
    let stack = stack("pipe-bad").await;
    let loader = pipe_loader(&stack).await;
    let good = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-5-5.ndjson.gz";
    let bad = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-6-6.ndjson.gz";
    put(&stack, good, gzip(&(ndjson_line(5, good, 1) + "\n"))).await;
    put(&stack, bad, gzip("{\"payload\": not json\n")).await;
    let records = receive(&stack, 2).await;

    for receive_count in 1..=3 {
        let (response, out) = invoke(
            &loader,
            &redelivered(&records, receive_count),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(
            failed_ids(&response),
            [message_id_of(&records, "-6-6")],
            "{out:#?}"
        );
        match &out.file_outcomes[bad] {
            FileOutcome::Failed { error } => {
                assert!(error.starts_with("LOAD_FAILED: "), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        sensor_rows(&stack).await,
        owned(&[("5", good, "1")]),
        "the good file loaded once, the bad one not at all"
    );
}

/// The pipe of the stack's sensor table, as the referee's faults name it.
fn sensor_pipe(stack: &Stack) -> String {
    format!("{}.S.SENSOR_READINGS_RAW_PIPE", stack.db)
}

#[tokio::test]
async fn throttling_and_a_lost_insert_files_answer_are_retried_without_double_rows() {
    let _g = support::snowflake_shared().await;
    let stack = stack("pipe-faults").await;
    let loader = pipe_loader(&stack).await;
    let keys = two_sensor_files(&stack, "3").await;
    let records = receive(&stack, 2).await;
    let pipe = sensor_pipe(&stack);
    support::snowflake_admin(
        "/admin/faults",
        json!({"snowpipe_status": 429, "count": 2, "pipe": pipe}),
    )
    .await;
    support::snowflake_admin(
        "/admin/faults",
        json!({"snowpipe_drop_connection": true, "after_apply": true, "count": 1, "pipe": pipe}),
    )
    .await;

    let (response, out) = invoke(&loader, &records, Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!((out.loaded, out.pending, out.failed), (2, 0, 0), "{out:#?}");
    assert_eq!(
        sensor_rows(&stack).await,
        expected_rows(&keys),
        "each row once"
    );
}

#[tokio::test]
async fn a_row_count_differing_from_the_recorded_one_is_a_mismatch() {
    let _g = support::snowflake_shared().await;
    let stack = stack("pipe-rowcount").await;
    let loader = pipe_loader(&stack).await;
    let key = "raw/sensor_readings/2024/03/05/07/shardId-000000000000-8-8.ndjson.gz";
    put_counted(&stack, key, gzip(&(ndjson_line(8, key, 1) + "\n")), "3").await;
    let records = receive(&stack, 1).await;
    let (response, out) = invoke(&loader, &records, Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(out.file_outcomes[key], FileOutcome::Loaded { rows: 1 });
    assert_eq!(out.row_count_mismatches, 1);
}

#[tokio::test]
async fn a_file_not_loaded_by_the_deadline_is_pending_then_acknowledged_on_the_retry() {
    // the load delay is the service's setting: no other test may run meanwhile
    let _g = support::snowflake_exclusive().await;
    let stack = stack("pipe-pending").await;
    let loader = pipe_loader(&stack).await;
    let keys = two_sensor_files(&stack, "4").await;
    let records = receive(&stack, 2).await;
    support::snowflake_admin(
        "/admin/config",
        json!({"snowpipe_load_delay_ms": [4000, 4000]}),
    )
    .await;

    let (response, out) = invoke(&loader, &records, Duration::from_secs(2)).await;
    support::snowflake_admin("/admin/reset", json!({})).await;
    let mut failed = failed_ids(&response);
    failed.sort();
    let mut all = [
        message_id_of(&records, "-41-41."),
        message_id_of(&records, "-42-42."),
    ];
    all.sort();
    assert_eq!(failed, all, "{out:#?}");
    assert_eq!(
        (out.pending, out.loaded, out.rows_loaded),
        (2, 0, 0),
        "{out:#?}"
    );
    assert!(
        matches!(&out.file_outcomes[&keys[0]], FileOutcome::Pending { reason } if reason.contains("SENSOR_READINGS_RAW_PIPE"))
    );

    // the retry comes after the load: the history shows it, nothing is sent again
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (response, out) = invoke(&loader, &redelivered(&records, 2), Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(
        (out.already_loaded, out.insert_requests),
        (2, 0),
        "{out:#?}"
    );
    assert_eq!(
        sensor_rows(&stack).await,
        expected_rows(&keys),
        "each row once"
    );
}

#[tokio::test]
async fn a_later_message_for_files_the_pipe_loaded_before_is_acknowledged_by_their_rows() {
    let _g = support::snowflake_shared().await;
    let stack = stack("pipe-later").await;
    let loader = pipe_loader(&stack).await;
    let keys = two_sensor_files(&stack, "6").await;
    let records = receive(&stack, 2).await;
    let (response, out) = invoke(&loader, &records, Duration::from_secs(30)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(out.loaded, 2, "{out:#?}");

    // ten minutes later the same notifications come in new messages: the pipe skips the files
    // (no insertReport event) and their loads are older than the messages' history window, so
    // only the rows' lineage can tell they landed — without it they fail every receive, then DLQ
    let later = sent_later(&records, Duration::from_secs(600));
    let (response, out) = invoke(&loader, &later, Duration::from_secs(5)).await;
    assert_eq!(failed_ids(&response), Vec::<String>::new(), "{out:#?}");
    assert_eq!(
        (out.already_loaded, out.pending, out.loaded),
        (2, 0, 0),
        "{out:#?}"
    );
    assert_eq!(
        sensor_rows(&stack).await,
        expected_rows(&keys),
        "each row once"
    );
}
