//! `replay`: a batch that failed until its retries ran out (its target table did not exist) is on
//! the on-failure queue as a pointer into the stream; once the table exists, replay reads that
//! range from the stream and lands it exactly once. It takes only its own function's messages
//! (both Kinesis functions share the queue) and acknowledges only a range read to its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tools::esm::{self, Counters, KinesisInvoke, KinesisSettings, KinesisSource};

use crate::support::{self, rows};
use crate::upsert::upsert_for;

const LATE: &str = r#"{"orders":{"table":"LATE_ORDERS","keys":["order_id"],"columns":[
    {"name":"order_id","path":"/order_id","type":"NUMBER"},{"name":"status","path":"/status"}]}}"#;

#[tokio::test]
async fn a_batch_that_exhausted_its_retries_is_replayed_once_after_the_fix() {
    let _g = support::snowflake_shared().await;
    let db = support::bootstrapped_database("REPLAY", "s3://unused/raw/").await;
    let aws = support::sdk_config().await;
    let kinesis = aws_sdk_kinesis::Client::new(&aws);
    let sqs = aws_sdk_sqs::Client::new(&aws);
    let name = support::unique("replay");
    esm::ensure_stream(&kinesis, &name, 1).await.unwrap();
    let queue = esm::ensure_queue_with_dlq(&sqs, &name, 30, 5)
        .await
        .unwrap();
    let bucket = support::unique("replay-errors");
    support::create_bucket(&support::s3().await, &bucket).await;
    let upsert = Arc::new(
        upsert_for(
            &db,
            &bucket,
            &[("TABLE", "orders"), ("UPSERT_TABLES", LATE)],
            None,
        )
        .await,
    );
    let mut sequence_numbers = Vec::new();
    for i in 1..=5 {
        let put = kinesis
            .put_record()
            .stream_name(&name)
            .partition_key(i.to_string())
            .data(aws_sdk_kinesis::primitives::Blob::new(
                format!(r#"{{"order_id":{i},"status":"S{i}"}}"#).into_bytes(),
            ))
            .send()
            .await
            .unwrap();
        sequence_numbers.push(put.sequence_number().to_string());
    }

    // LATE_ORDERS does not exist yet: every attempt fails, and after 1 retry the mapping gives up.
    let invoke: KinesisInvoke = {
        let upsert = upsert.clone();
        Arc::new(move |body: String| {
            let upsert = upsert.clone();
            Box::pin(async move {
                upsert
                    .handle_body(&body, Instant::now() + Duration::from_secs(30))
                    .await
                    .map(|(r, _)| r)
                    .map_err(|e| e.to_string())
            })
        })
    };
    let counters = Arc::new(Counters::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mapping = tokio::spawn(esm::run_kinesis(
        KinesisSource {
            kinesis: kinesis.clone(),
            sqs: sqs.clone(),
            region: "us-east-1".into(),
            stream: name.clone(),
        },
        KinesisSettings {
            function: "upsert".into(),
            batch_size: 100,
            batching_window: Duration::from_millis(200),
            max_retries: 1,
            on_failure_queue: Some(queue.clone()),
        },
        invoke,
        counters.clone(),
        stop.clone(),
    ));
    let give_up = Instant::now() + Duration::from_secs(60);
    while counters.discarded_batches.load(Ordering::SeqCst) == 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    mapping.await.unwrap().unwrap();
    assert_eq!(counters.discarded_batches.load(Ordering::SeqCst), 1);
    // Beside the upsert's message: the orchestrator's (same queue, same range), and one of the
    // upsert's whose range ends past what the stream holds (it cannot be read to its end).
    let stream_arn = format!("arn:aws:kinesis:us-east-1:123456789012:stream/{name}");
    let (first, last) = (&sequence_numbers[0], &sequence_numbers[4]);
    let other = on_failure_message(&stream_arn, "orchestrator", first, last);
    let beyond = on_failure_message(&stream_arn, "upsert", first, &format!("{last}0"));
    for body in [other, beyond] {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    let client = support::snowflake_client(&db, "S").await;
    support::sql(
        &client,
        "CREATE TABLE LATE_ORDERS (ORDER_ID NUMBER(38,0), STATUS VARCHAR, KINESIS_SHARD_ID VARCHAR, \
         KINESIS_SEQUENCE_NUMBER VARCHAR, KINESIS_ARRIVAL_TIME TIMESTAMP_NTZ, LOADED_AT TIMESTAMP_NTZ)",
    )
    .await;
    let target = tools::redrive::Target::Upsert(Box::new(
        upsert_for(
            &db,
            &bucket,
            &[("TABLE", "orders"), ("UPSERT_TABLES", LATE)],
            None,
        )
        .await,
    ));
    let source = tools::replay::ReplaySource {
        sqs: &sqs,
        kinesis: &kinesis,
        queue_url: &queue,
        region: "us-east-1",
    };
    let options = |dry_run| tools::replay::ReplayOptions {
        function_name: "upsert",
        max: 10,
        dry_run,
    };
    let dry = tools::replay::run(&source, &target, &options(true))
        .await
        .unwrap();
    assert_eq!(
        (dry.messages, dry.batches_recovered, dry.other_function),
        (2, 0, 1)
    );
    let report = tools::replay::run(&source, &target, &options(false))
        .await
        .unwrap();
    assert_eq!(
        (
            report.messages,
            report.batches_recovered,
            report.records,
            report.expired,
            report.failed,
            report.other_function
        ),
        (2, 1, 5, 1, 0, 1)
    );
    assert_eq!(
        rows(
            &client,
            "SELECT COUNT(*), COUNT(DISTINCT ORDER_ID), MIN(STATUS), MAX(STATUS) FROM LATE_ORDERS"
        )
        .await,
        vec![vec![
            Some("5".to_string()),
            Some("5".to_string()),
            Some("S1".to_string()),
            Some("S5".to_string())
        ]]
    );
    let again = tools::replay::run(&source, &target, &options(false))
        .await
        .unwrap();
    assert_eq!(again.messages, 0, "the replayed message was deleted");
    assert_eq!(again.other_function, 1, "the orchestrator's message stays");
    // The orchestrator's message (visible) and the unreadable range's (hidden until its
    // visibility timeout) are both still on the queue.
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(
            aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        )
        .send()
        .await
        .unwrap();
    let count = |a| {
        attributes.attributes().unwrap()[&a]
            .parse::<usize>()
            .unwrap()
    };
    use aws_sdk_sqs::types::QueueAttributeName::*;
    assert_eq!(
        (
            count(ApproximateNumberOfMessages),
            count(ApproximateNumberOfMessagesNotVisible)
        ),
        (1, 1)
    );
}

/// An on-failure record as Lambda writes it for a Kinesis batch of `function`.
fn on_failure_message(stream_arn: &str, function: &str, start: &str, end: &str) -> String {
    serde_json::json!({
        "requestContext": {
            "condition": "RetryAttemptsExhausted",
            "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        },
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": start,
            "endSequenceNumber": end,
            "batchSize": 5,
            "streamArn": stream_arn,
        }
    })
    .to_string()
}
