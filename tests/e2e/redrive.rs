//! `redrive`: records quarantined under a broken mapping land once the mapping is fixed; a
//! record that still does not fit is quarantined again with today's reason, and the original
//! quarantine object is gone.

use std::time::{Duration, Instant};

use crate::support::{self, rows};
use crate::upsert::{upsert_config, upsert_for, ORDERS};

#[tokio::test]
async fn quarantined_records_land_after_the_fix_and_what_still_does_not_fit_stays() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("REDRIVE", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("redrive");
    support::create_bucket(&s3, &bucket).await;
    let broken = ORDERS.replace(r#""path":"/order_id""#, r#""path":"/id""#);
    assert_ne!(broken, ORDERS);
    let before = upsert_for(
        &db,
        &bucket,
        &[("TABLE", "orders"), ("UPSERT_TABLES", &broken)],
        None,
    )
    .await;
    let event = support::kinesis_event(
        "orders",
        "shardId-000000000003",
        &[
            ("1", "1", br#"{"op":"c","order_id":1,"status":"NEW","amount":5,"customer":"a","updated_at":"2024-11-21T10:00:00Z"}"#),
            ("2", "x", br#"{"op":"c","order_id":"x","status":"NEW","amount":5,"customer":"b","updated_at":"2024-11-21T10:00:00Z"}"#),
        ],
        1_732_200_000.0,
    );
    let (response, outcome) = before
        .handle_body(&event, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(outcome.quarantined, 2);
    let quarantined = support::list_keys(&s3, &bucket).await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");

    // The mapping is fixed; redrive runs the quarantined batch through the fixed function.
    let fixed = upsert_for(
        &db,
        &bucket,
        &[("TABLE", "orders"), ("UPSERT_TABLES", ORDERS)],
        None,
    )
    .await;
    let target = tools::redrive::Target::Upsert(Box::new(fixed));
    let dry = tools::redrive::run(&s3, &bucket, "errors/upsert/", &target, "us-east-1", true)
        .await
        .unwrap();
    assert_eq!((dry.objects, dry.records, dry.deleted), (1, 2, 0));
    assert_eq!(
        support::list_keys(&s3, &bucket).await,
        quarantined,
        "a dry run changes nothing"
    );
    let report = tools::redrive::run(&s3, &bucket, "errors/upsert/", &target, "us-east-1", false)
        .await
        .unwrap();
    assert_eq!(
        (
            report.objects,
            report.records,
            report.still_quarantined,
            report.deleted,
            report.failed
        ),
        (1, 2, 1, 1, 0)
    );
    let client = support::snowflake_client(&db, "S").await;
    assert_eq!(
        rows(&client, "SELECT ORDER_ID, STATUS, CUSTOMER FROM ORDERS").await,
        vec![vec![
            Some("1".to_string()),
            Some("NEW".to_string()),
            Some("a".to_string())
        ]]
    );
    let now = support::list_keys(&s3, &bucket).await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now, quarantined, "the original object is gone");
    let lines = support::rejected_lines(&s3, &bucket, &now[0]).await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["metadata"]["sequence_number"], "2");
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("expected a number"),
        "{lines:?}"
    );
}

/// Before the fix, every record fails again with the same reason: the handler writes the same
/// key (and the same bytes). The object is then the one place its records are, so it stays —
/// after one redrive and after a second.
#[tokio::test]
async fn a_redrive_before_the_fix_and_a_second_one_remove_nothing() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("REDRIVE_EARLY", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("redrive-early");
    support::create_bucket(&s3, &bucket).await;
    let broken = ORDERS.replace(r#""path":"/order_id""#, r#""path":"/id""#);
    let config = [("TABLE", "orders"), ("UPSERT_TABLES", broken.as_str())];
    let event = support::kinesis_event(
        "orders",
        "shardId-000000000004",
        &[
            ("7", "7", br#"{"op":"c","order_id":7,"status":"NEW","amount":5,"customer":"a","updated_at":"2024-11-21T10:00:00Z"}"#),
            ("8", "8", br#"{"op":"c","order_id":8,"status":"NEW","amount":5,"customer":"b","updated_at":"2024-11-21T10:00:00Z"}"#),
        ],
        1_732_200_000.0,
    );
    let before = upsert_for(&db, &bucket, &config, None).await;
    let (_, outcome) = before
        .handle_body(&event, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(outcome.quarantined, 2);
    let quarantined = support::list_keys(&s3, &bucket).await;
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    let original = support::rejected_lines(&s3, &bucket, &quarantined[0]).await;
    // The same records as if the orchestrator had quarantined them: an upsert redrive over the
    // whole error prefix must leave them to the orchestrator's own redrive.
    let foreign = quarantined[0].replacen("/upsert/", "/orchestrator/", 1);
    assert_ne!(foreign, quarantined[0]);
    s3.copy_object()
        .bucket(&bucket)
        .copy_source(format!("{bucket}/{}", quarantined[0]))
        .key(&foreign)
        .send()
        .await
        .unwrap();
    let mut all = [quarantined[0].clone(), foreign];
    all.sort();

    // The fix is not deployed yet: the redrive runs the same broken mapping, twice.
    let target =
        tools::redrive::Target::Upsert(Box::new(upsert_for(&db, &bucket, &config, None).await));
    for run in 1..=2 {
        let report = tools::redrive::run(&s3, &bucket, "errors/", &target, "us-east-1", false)
            .await
            .unwrap();
        assert_eq!(
            (
                report.objects,
                report.records,
                report.still_quarantined,
                report.deleted,
                report.other_function
            ),
            (1, 2, 2, 0, 1),
            "run {run}"
        );
        assert_eq!(support::list_keys(&s3, &bucket).await, all, "run {run}");
        let lines = support::rejected_lines(&s3, &bucket, &quarantined[0]).await;
        let seqs = |l: &[serde_json::Value]| {
            l.iter()
                .map(|x| x["metadata"]["sequence_number"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            seqs(&lines),
            seqs(&original),
            "run {run}: both records still there"
        );
    }
}

/// Streaming mode: the live channel has committed offsets far above the quarantined records by
/// the time they are redriven. A redrive through that channel would find them at or below its
/// committed offset, skip them as duplicates and delete the object; a recovery channel of its
/// own (and the change table as the record of what landed) lands them, once, even when the
/// redrive is run again after a crash that left the object behind.
#[tokio::test]
async fn a_streaming_redrive_lands_records_below_the_live_channels_offset() {
    use upsert::changes::{change_table_ddl, ChangeObjects};
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("REDRIVE_STREAM", "s3://unused/raw/").await;
    let s3 = support::s3().await;
    let bucket = support::unique("redrive-stream");
    support::create_bucket(&s3, &bucket).await;
    let client = support::snowflake_client(&db, "S").await;
    let broken = ORDERS.replace(r#""path":"/order_id""#, r#""path":"/id""#);
    let vars = |tables: &'static str| {
        [
            ("TABLE", "orders"),
            ("UPSERT_TABLES", tables),
            ("WRITE_MODE", "streaming"),
        ]
    };
    let broken: &'static str = Box::leak(broken.into_boxed_str());
    let live = upsert_for(&db, &bucket, &vars(ORDERS), None).await;
    let config = upsert_config(&db, &bucket, &vars(ORDERS));
    let objects = ChangeObjects::of(config.tables.get("orders").unwrap(), "_CHANGES", "_LATEST");
    support::sql(
        &client,
        &change_table_ddl(config.tables.get("orders").unwrap(), &objects),
    )
    .await;

    let order = |seq: u64| {
        (
            seq.to_string(),
            format!(
                r#"{{"op":"c","order_id":{seq},"status":"S{seq}","amount":1,"customer":"c","updated_at":"2024-11-21T10:00:00Z"}}"#
            ),
        )
    };
    let event = |seqs: std::ops::RangeInclusive<u64>| {
        let records: Vec<(String, String)> = seqs.map(order).collect();
        let refs: Vec<(&str, &str, &[u8])> = records
            .iter()
            .map(|(s, d)| (s.as_str(), "k", d.as_bytes()))
            .collect();
        support::kinesis_event("orders", "shardId-000000000005", &refs, 1_732_200_000.0)
    };
    let soon = || Instant::now() + Duration::from_secs(30);
    // Records 10..=12 meet a broken deployment and are quarantined; 20..=22 land live after it
    // is fixed, so the live channel's committed offset is 22.
    let before = upsert_for(&db, &bucket, &vars(broken), None).await;
    let (_, outcome) = before.handle_body(&event(10..=12), soon()).await.unwrap();
    assert_eq!(outcome.quarantined, 3);
    let (response, _) = live.handle_body(&event(20..=22), soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());

    let mut fixed = upsert_for(&db, &bucket, &vars(ORDERS), None).await;
    fixed.for_recovery(&tools::redrive::recovery_suffix());
    let target = tools::redrive::Target::Upsert(Box::new(fixed));
    let report = tools::redrive::run(&s3, &bucket, "errors/", &target, "us-east-1", false)
        .await
        .unwrap();
    assert_eq!(
        (
            report.objects,
            report.records,
            report.still_quarantined,
            report.deleted
        ),
        (1, 3, 0, 1)
    );
    let landed = |sql: &'static str| {
        let client = &client;
        async move { rows(client, sql).await }
    };
    let query = "SELECT KINESIS_SEQUENCE_NUMBER FROM ORDERS_CHANGES ORDER BY KINESIS_SEQUENCE_NUMBER::NUMBER";
    let seqs = |r: Vec<Vec<Option<String>>>| {
        r.into_iter()
            .map(|r| r[0].clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seqs(landed(query).await),
        ["10", "11", "12", "20", "21", "22"]
    );

    // A crash after the commit, before the delete: the object is back, the rows are landed.
    let (_, outcome) = before.handle_body(&event(10..=12), soon()).await.unwrap();
    assert_eq!(outcome.quarantined, 3);
    let report = tools::redrive::run(&s3, &bucket, "errors/", &target, "us-east-1", false)
        .await
        .unwrap();
    assert_eq!(
        (report.records, report.still_quarantined, report.deleted),
        (3, 0, 1)
    );
    assert_eq!(
        seqs(landed(query).await),
        ["10", "11", "12", "20", "21", "22"],
        "each once"
    );
    // The live channel still resumes where it was: its next batch lands, its replay skips.
    let (response, outcome) = live.handle_body(&event(20..=23), soon()).await.unwrap();
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        (
            outcome.tables["orders"].duplicates,
            outcome.tables["orders"].inserted
        ),
        (3, 1)
    );
}
