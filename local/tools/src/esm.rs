//! A local event source mapping: polls Kinesis shards and an SQS queue on the local stack and
//! invokes handlers with the event JSON Lambda would send, honouring what Lambda honours: batch
//! size, batching window, partial batch failures (the batch is resent from the reported record),
//! a retry limit, then the on-failure destination.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::KinesisEventResponse;
use aws_sdk_kinesis::types::{Record, ShardIteratorType, StreamStatus};
use serde_json::Value;
use shared::kinesis::sequence::cmp_sequence_numbers;

use crate::events::{kinesis_event, sqs_event, KinesisRecordIn, SqsMessageIn};

/// What a handler returns: a boxed future, so handlers of different functions share one type.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A Kinesis handler: event body in, Lambda's response or the invocation's error out.
pub type KinesisInvoke =
    Arc<dyn Fn(String) -> BoxFuture<Result<KinesisEventResponse, String>> + Send + Sync>;
/// An SQS handler: event in, `SqsBatchResponse` JSON or the invocation's error out.
pub type SqsInvoke = Arc<dyn Fn(Value) -> BoxFuture<Result<Value, String>> + Send + Sync>;

/// An AWS call the local mapping or its setup (stream, queue, notification) could not make.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EsmError(
    /// The AWS error with its context, or what did not happen (a stream never active, ...).
    pub String,
);

fn err(e: impl std::fmt::Display) -> EsmError {
    EsmError(e.to_string())
}

/// How a Kinesis mapping batches and retries, as in the SAM template.
#[derive(Debug, Clone)]
pub struct KinesisSettings {
    /// The function's name, for the logs and the on-failure record's `functionArn`.
    pub function: String,
    /// Most records per invocation (`BatchSize`).
    pub batch_size: usize,
    /// How long a batch that is not full waits for more records (`MaximumBatchingWindowInSeconds`).
    pub batching_window: Duration,
    /// Resends of a failed batch before it is discarded (`MaximumRetryAttempts`).
    pub max_retries: u32,
    /// SQS queue URL receiving a record of every batch that exhausted its retries.
    pub on_failure_queue: Option<String>,
}

/// Counters shared with whoever watches the mapping.
#[derive(Debug, Default)]
pub struct Counters {
    /// Handler invocations, resends included.
    pub invocations: AtomicU64,
    /// Records (or messages) sent to the handler, counted again on every resend.
    pub records: AtomicU64,
    /// Kinesis batches resent, or SQS messages left on the queue, after a failure.
    pub retries: AtomicU64,
    /// Kinesis batches discarded after their retries, each reported to the on-failure queue.
    pub discarded_batches: AtomicU64,
    /// Records finished (delivered without a failure report, or discarded).
    pub done: AtomicU64,
}

/// Creates the stream if it does not exist and waits until it is active.
pub async fn ensure_stream(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    shards: i32,
) -> Result<(), EsmError> {
    if client
        .describe_stream_summary()
        .stream_name(stream)
        .send()
        .await
        .is_err()
    {
        client
            .create_stream()
            .stream_name(stream)
            .shard_count(shards)
            .send()
            .await
            .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
    }
    for _ in 0..100 {
        let s = client
            .describe_stream_summary()
            .stream_name(stream)
            .send()
            .await
            .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
        if s.stream_description_summary().map(|d| d.stream_status()) == Some(&StreamStatus::Active)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(EsmError(format!("stream {stream} did not become active")))
}

/// Where a Kinesis mapping reads from and where its on-failure records go.
#[derive(Clone)]
pub struct KinesisSource {
    /// The client the shards are read with.
    pub kinesis: aws_sdk_kinesis::Client,
    /// The client the on-failure records are sent with.
    pub sqs: aws_sdk_sqs::Client,
    /// The region put in the events' `awsRegion`.
    pub region: String,
    /// The stream's name.
    pub stream: String,
}

/// Polls every shard of the source's stream from its start and invokes `invoke` until `stop` is
/// set and everything read has been delivered.
pub async fn run_kinesis(
    source: KinesisSource,
    settings: KinesisSettings,
    invoke: KinesisInvoke,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<(), EsmError> {
    let KinesisSource {
        kinesis: client,
        sqs,
        region,
        stream,
    } = source;
    let summary = client
        .describe_stream_summary()
        .stream_name(&stream)
        .send()
        .await
        .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
    let arn = summary
        .stream_description_summary()
        .map(|d| d.stream_arn().to_string())
        .unwrap_or_default();
    let shards = client
        .list_shards()
        .stream_name(&stream)
        .send()
        .await
        .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
    let tasks: Vec<_> = shards
        .shards()
        .iter()
        .map(|shard| {
            let shard_poller = ShardPoller {
                client: client.clone(),
                sqs: sqs.clone(),
                region: region.clone(),
                stream: stream.clone(),
                arn: arn.clone(),
                shard_id: shard.shard_id().to_string(),
                settings: settings.clone(),
                invoke: invoke.clone(),
                counters: counters.clone(),
                stop: stop.clone(),
            };
            tokio::spawn(shard_poller.run())
        })
        .collect();
    for t in tasks {
        t.await.map_err(err)??;
    }
    Ok(())
}

struct ShardPoller {
    client: aws_sdk_kinesis::Client,
    sqs: aws_sdk_sqs::Client,
    region: String,
    stream: String,
    arn: String,
    shard_id: String,
    settings: KinesisSettings,
    invoke: KinesisInvoke,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
}

/// The records a poller has read but not finished, when the first of them was read (the batching
/// window runs from then), and how often the batch has been tried.
#[derive(Default)]
struct Pending {
    records: Vec<Record>,
    first_buffered: Option<Instant>,
    attempts: u32,
}

impl ShardPoller {
    async fn run(self) -> Result<(), EsmError> {
        let mut iterator = self.trim_horizon().await?;
        let mut pending = Pending::default();
        loop {
            let got = self.read(&mut iterator, &mut pending).await?;
            let stopping = self.stop.load(Ordering::SeqCst);
            if self.batch_due(&pending, stopping && got == 0) {
                self.deliver_pending(&mut pending).await;
                continue;
            }
            if stopping && pending.records.is_empty() && got == 0 {
                return Ok(());
            }
            if got == 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    /// An iterator at the shard's oldest record.
    async fn trim_horizon(&self) -> Result<Option<String>, EsmError> {
        Ok(self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream)
            .shard_id(&self.shard_id)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?
            .shard_iterator()
            .map(String::from))
    }

    /// Reads as many records as the batch has room for; returns how many came.
    async fn read(
        &self,
        iterator: &mut Option<String>,
        pending: &mut Pending,
    ) -> Result<usize, EsmError> {
        if pending.records.len() >= self.settings.batch_size {
            return Ok(0);
        }
        let Some(it) = iterator.clone() else {
            return Ok(0);
        };
        let out = self
            .client
            .get_records()
            .shard_iterator(it)
            .limit((self.settings.batch_size - pending.records.len()) as i32)
            .send()
            .await
            .map_err(|e| err(aws_sdk_kinesis::error::DisplayErrorContext(&e)))?;
        let got = out.records().len();
        pending.records.extend(out.records().iter().cloned());
        *iterator = out.next_shard_iterator().map(String::from);
        if got > 0 && pending.first_buffered.is_none() {
            pending.first_buffered = Some(Instant::now());
        }
        Ok(got)
    }

    /// Whether the pending records go to the handler now: the batch is full, the batching window
    /// is over, or the mapping is stopping and the shard has nothing more (`drained`).
    fn batch_due(&self, pending: &Pending, drained: bool) -> bool {
        let window_over = pending
            .first_buffered
            .is_some_and(|t| t.elapsed() >= self.settings.batching_window);
        !pending.records.is_empty()
            && (pending.records.len() >= self.settings.batch_size || window_over || drained)
    }

    /// Delivers the pending batch; what the handler did not finish stays pending for the retry,
    /// unless the retries are exhausted (then the batch is discarded).
    async fn deliver_pending(&self, pending: &mut Pending) {
        let Some(from) = self.deliver(&pending.records).await else {
            self.finish(pending);
            return;
        };
        pending.attempts += 1;
        self.counters.retries.fetch_add(1, Ordering::SeqCst);
        if pending.attempts > self.settings.max_retries {
            self.discard(&pending.records).await;
            self.finish(pending);
            return;
        }
        // Lambda resends the batch from the reported record.
        let before = pending.records.len();
        pending
            .records
            .retain(|r| cmp_sequence_numbers(r.sequence_number(), &from).is_ge());
        self.counters
            .done
            .fetch_add((before - pending.records.len()) as u64, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100 * u64::from(pending.attempts))).await;
    }

    /// Counts the pending records done and starts a new batch.
    fn finish(&self, pending: &mut Pending) {
        self.counters
            .done
            .fetch_add(pending.records.len() as u64, Ordering::SeqCst);
        pending.records.clear();
        pending.first_buffered = None;
        pending.attempts = 0;
    }

    /// Invokes the handler; `Some(sequence number)` when the batch must be resent from there.
    async fn deliver(&self, batch: &[Record]) -> Option<String> {
        let records: Vec<KinesisRecordIn<'_>> =
            batch.iter().map(KinesisRecordIn::from_record).collect();
        let body = kinesis_event(&self.region, &self.arn, &self.shard_id, &records);
        self.counters.invocations.fetch_add(1, Ordering::SeqCst);
        self.counters
            .records
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        match (self.invoke)(body).await {
            Ok(response) => response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.clone()),
            Err(e) => {
                tracing::warn!(function = %self.settings.function, shard = %self.shard_id, error = %e, "invocation failed; retrying the whole batch");
                batch.first().map(|r| r.sequence_number().to_string())
            }
        }
    }

    /// What Lambda sends to the on-failure destination: where the discarded batch was.
    async fn discard(&self, batch: &[Record]) {
        self.counters
            .discarded_batches
            .fetch_add(1, Ordering::SeqCst);
        let record = serde_json::json!({
            "requestContext": {
                "condition": "RetryAttemptsExhausted",
                "functionArn": function_arn(&self.arn, &self.settings.function),
            },
            "KinesisBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": batch.first().map(|r| r.sequence_number()),
                "endSequenceNumber": batch.last().map(|r| r.sequence_number()),
                "batchSize": batch.len(),
                "streamArn": self.arn,
            }
        });
        tracing::error!(function = %self.settings.function, shard = %self.shard_id, records = batch.len(), "retries exhausted; batch sent to the on-failure destination");
        if let Some(queue) = &self.settings.on_failure_queue {
            let _ = self
                .sqs
                .send_message()
                .queue_url(queue)
                .message_body(record.to_string())
                .send()
                .await;
        }
    }
}

/// The ARN Lambda's on-failure record names the function by: in the stream's region and account.
fn function_arn(stream_arn: &str, function: &str) -> String {
    let parts: Vec<&str> = stream_arn.split(':').collect();
    let (region, account) = match parts.as_slice() {
        [_, _, _, region, account, ..] => (*region, *account),
        _ => ("us-east-1", "000000000000"),
    };
    format!("arn:aws:lambda:{region}:{account}:function:{function}")
}

/// How the SQS mapping batches, as in the SAM template.
#[derive(Debug, Clone)]
pub struct SqsSettings {
    /// The function's name, for the logs.
    pub function: String,
    /// Most messages per invocation (`BatchSize`; SQS receives at most 10 at a time).
    pub batch_size: i32,
}

/// Polls `queue_url` and invokes `invoke`; messages the handler reports failed stay on the queue
/// (visible again after the visibility timeout; the queue's redrive policy moves them to the
/// DLQ). Returns when `stop` is set and a poll comes back empty.
pub async fn run_sqs(
    sqs: aws_sdk_sqs::Client,
    region: String,
    queue_url: String,
    settings: SqsSettings,
    invoke: SqsInvoke,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) -> Result<(), EsmError> {
    let arn = queue_arn(&sqs, &queue_url).await?;
    loop {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(settings.batch_size.clamp(1, 10))
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
        let messages = out.messages();
        if messages.is_empty() {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            continue;
        }
        let inputs: Vec<SqsMessageIn<'_>> = messages.iter().map(sqs_message_in).collect();
        let event = sqs_event(&region, &arn, &inputs);
        counters.invocations.fetch_add(1, Ordering::SeqCst);
        counters
            .records
            .fetch_add(messages.len() as u64, Ordering::SeqCst);
        let failed = invoke_sqs(&invoke, event, &settings, &inputs).await;
        for m in messages {
            let id = m.message_id().unwrap_or_default();
            if failed.iter().any(|f| f == id) {
                counters.retries.fetch_add(1, Ordering::SeqCst);
                continue;
            }
            delete_message(&sqs, &queue_url, m).await?;
            counters.done.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A received message as its event record needs it.
fn sqs_message_in(m: &aws_sdk_sqs::types::Message) -> SqsMessageIn<'_> {
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    let attr = |name: A| {
        m.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    SqsMessageIn {
        message_id: m.message_id().unwrap_or_default(),
        receipt_handle: m.receipt_handle().unwrap_or_default(),
        body: m.body().unwrap_or_default(),
        md5_of_body: m.md5_of_body().unwrap_or_default(),
        receive_count: attr(A::ApproximateReceiveCount) as u32,
        sent_timestamp_ms: attr(A::SentTimestamp),
    }
}

/// Invokes the handler with `event`; returns the ids of the messages that stay on the queue:
/// those it reported failed, or all of them when the invocation failed.
async fn invoke_sqs(
    invoke: &SqsInvoke,
    event: Value,
    settings: &SqsSettings,
    inputs: &[SqsMessageIn<'_>],
) -> Vec<String> {
    match invoke(event).await {
        Ok(response) => response["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(function = %settings.function, error = %e, "invocation failed; every message stays on the queue");
            inputs.iter().map(|m| m.message_id.to_string()).collect()
        }
    }
}

async fn delete_message(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    m: &aws_sdk_sqs::types::Message,
) -> Result<(), EsmError> {
    if let Some(handle) = m.receipt_handle() {
        sqs.delete_message()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .send()
            .await
            .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    }
    Ok(())
}

/// The queue's ARN, for the events' `eventSourceARN` and the bucket's notification target.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<String, EsmError> {
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    attrs
        .attributes()
        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| EsmError(format!("no ARN for {queue_url}")))
}

/// A queue with a dead-letter queue after `max_receive` receives, as the template declares.
pub async fn ensure_queue_with_dlq(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_secs: u32,
    max_receive: u32,
) -> Result<String, EsmError> {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let dlq = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    let dlq_arn = queue_arn(sqs, dlq.queue_url().unwrap_or_default()).await?;
    let redrive = serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive.to_string()}).to_string();
    let q = sqs
        .create_queue()
        .queue_name(name)
        .attributes(A::VisibilityTimeout, visibility_secs.to_string())
        .attributes(A::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| err(aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
    Ok(q.queue_url().unwrap_or_default().to_string())
}

/// Sends the bucket's object-created notifications under `prefix` to the queue.
pub async fn notify_queue_on_create(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    queue_arn: &str,
) -> Result<(), EsmError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(format!("{}/", prefix.trim_matches('/')))
                        .build(),
                )
                .build(),
        )
        .build();
    let queue = QueueConfiguration::builder()
        .queue_arn(queue_arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(filter)
        .build()
        .map_err(err)?;
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .map_err(|e| err(aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    Ok(())
}
