//! `replay`: batches that exhausted their retries, back through the function.
//!
//! Lambda's on-failure destination for a Kinesis mapping receives only where the batch was
//! (`KinesisBatchInfo`: stream ARN, shard, first and last sequence number, size),
//! <https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>. For each
//! such message this reads the records of that range from the stream while it still holds them,
//! runs them through the function's handler as the batch it was, and deletes the message once the
//! handler accepted it. A range the stream no longer holds, or that could not be read to its last
//! record, is reported and its message left for an operator.
//!
//! Both Kinesis functions share the on-failure queue, so a replay takes only the messages of the
//! function it was asked to run: each message names it in `requestContext.functionArn`. Other
//! functions' messages are made visible again at once, untouched.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use shared::kinesis::sequence::cmp_sequence_numbers;

use crate::events::{kinesis_event, KinesisRecordIn};
use crate::progress::Progress;
use crate::redrive::Target;

/// What a replay did, over the on-failure messages it received.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// On-failure messages received (each once, up to `max`).
    pub messages: usize,
    /// Batches the handler accepted; their messages were deleted.
    pub batches_recovered: usize,
    /// Records in the recovered batches.
    pub records: usize,
    /// Ranges no longer (fully) in the stream, or not read to their last record.
    pub expired: usize,
    /// Messages of other functions (or naming none), left on the queue untouched.
    pub other_function: usize,
    /// Batches the handler did not accept again (their messages stay).
    pub failed: usize,
}

struct BatchInfo {
    /// `requestContext.functionArn`: the function whose batch this was.
    function_arn: Option<String>,
    stream_arn: String,
    shard_id: String,
    start: String,
    end: String,
}

impl BatchInfo {
    /// The stream's name, the last part of its ARN.
    fn stream_name(&self) -> &str {
        self.stream_arn.rsplit('/').next().unwrap_or_default()
    }

    /// Whether the batch was the named function's (a name, or an ARN with or without a
    /// version or alias).
    fn belongs_to(&self, function: &str) -> bool {
        self.function_arn
            .as_deref()
            .is_some_and(|arn| function_name(arn) == function_name(function))
    }
}

/// A function's name from its name or ARN (`arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]`).
fn function_name(name_or_arn: &str) -> &str {
    match name_or_arn.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or_default(),
        None => name_or_arn,
    }
}

fn batch_info(body: &str) -> Result<BatchInfo, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("not an on-failure record: {e}"))?;
    let b = &v["KinesisBatchInfo"];
    let text = |k: &str| {
        b[k].as_str()
            .map(String::from)
            .ok_or_else(|| format!("KinesisBatchInfo.{k} is missing"))
    };
    Ok(BatchInfo {
        function_arn: v["requestContext"]["functionArn"]
            .as_str()
            .map(String::from),
        stream_arn: text("streamArn")?,
        shard_id: text("shardId")?,
        start: text("startSequenceNumber")?,
        end: text("endSequenceNumber")?,
    })
}

/// Where a replay reads its messages and records.
pub struct ReplaySource<'a> {
    /// The on-failure queue's client.
    pub sqs: &'a aws_sdk_sqs::Client,
    /// The stream's client.
    pub kinesis: &'a aws_sdk_kinesis::Client,
    /// The on-failure queue both Kinesis functions send to.
    pub queue_url: &'a str,
    /// The region the replayed events name, as Lambda's would.
    pub region: &'a str,
}

/// What a replay takes and how far it goes.
pub struct ReplayOptions<'a> {
    /// The deployed function whose messages are replayed (its name or ARN); other functions'
    /// messages stay on the queue.
    pub function_name: &'a str,
    /// At most this many messages.
    pub max: usize,
    /// Read and report, change nothing.
    pub dry_run: bool,
}

/// Reads up to `max` messages of the on-failure queue and replays the ranges of the named
/// function's batches through `target`.
pub async fn run(
    source: &ReplaySource<'_>,
    target: &Target,
    options: &ReplayOptions<'_>,
) -> Result<ReplayReport, String> {
    let (sqs, queue_url) = (source.sqs, source.queue_url);
    let replayer = Replayer {
        sqs,
        kinesis: source.kinesis,
        queue_url,
        target,
        region: source.region,
        function_name: options.function_name,
        dry_run: options.dry_run,
    };
    let mut report = ReplayReport::default();
    let mut seen = std::collections::HashSet::new();
    let mut others = Vec::new();
    let mut progress = Progress::new(None);
    'receiving: while report.messages < options.max {
        let received = replayer.receive().await?;
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for (i, m) in messages.iter().enumerate() {
            if !seen.insert(m.message_id().unwrap_or_default().to_string()) {
                // A message shown again: every message has been seen. This one and the rest of
                // the batch were not handled in this round: visible again at once.
                for unhandled in &messages[i..] {
                    show_again(sqs, queue_url, unhandled).await;
                }
                break 'receiving;
            }
            if !replayer.replay(m, &progress, &mut report).await? {
                others.push(m.clone());
            }
            progress.item_done();
        }
    }
    // Other functions' messages stayed hidden for the rest of the round, so each was received
    // once (a queue with a redrive policy counts receives); visible again now.
    for m in &others {
        show_again(sqs, queue_url, m).await;
    }
    progress.finish();
    Ok(report)
}

/// Where the messages come from and what their batches go through.
struct Replayer<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    kinesis: &'a aws_sdk_kinesis::Client,
    queue_url: &'a str,
    target: &'a Target,
    region: &'a str,
    function_name: &'a str,
    dry_run: bool,
}

impl Replayer<'_> {
    /// The next messages, hidden from other readers while they are replayed.
    async fn receive(
        &self,
    ) -> Result<aws_sdk_sqs::operation::receive_message::ReceiveMessageOutput, String> {
        self.sqs
            .receive_message()
            .queue_url(self.queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(300)
            .wait_time_seconds(1)
            .send()
            .await
            .map_err(|e| format!("receive: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))
    }

    /// Replays one message's batch and counts what became of it; false (and nothing done) when
    /// the batch was another function's, which its own replay takes.
    async fn replay(
        &self,
        m: &aws_sdk_sqs::types::Message,
        progress: &Progress,
        report: &mut ReplayReport,
    ) -> Result<bool, String> {
        let info = batch_info(m.body().unwrap_or_default())?;
        if !info.belongs_to(self.function_name) {
            report.other_function += 1;
            return Ok(false);
        }
        report.messages += 1;
        let records = match read_range(self.kinesis, info.stream_name(), &info).await {
            Ok(r) => r,
            Err(e) => {
                progress.println(&format!(
                    "{} {}..{}: not replayed ({e}); the message stays",
                    info.shard_id, info.start, info.end
                ));
                report.expired += 1;
                if self.dry_run {
                    show_again(self.sqs, self.queue_url, m).await;
                }
                return Ok(true);
            }
        };
        progress.println(&format!(
            "[{}] {} {}..{}: {} record(s){}",
            report.messages,
            info.shard_id,
            info.start,
            info.end,
            records.len(),
            if self.dry_run { " (dry run)" } else { "" }
        ));
        if self.dry_run {
            show_again(self.sqs, self.queue_url, m).await;
            return Ok(true);
        }
        if !self.accepted(&info, &records).await {
            progress.println("    not accepted; the message stays for the next replay");
            report.failed += 1;
            return Ok(true);
        }
        report.batches_recovered += 1;
        report.records += records.len();
        self.delete(m).await.map(|()| true)
    }

    /// Whether the handler took the batch without reporting a failure.
    async fn accepted(&self, info: &BatchInfo, records: &[aws_sdk_kinesis::types::Record]) -> bool {
        let inputs: Vec<KinesisRecordIn<'_>> =
            records.iter().map(KinesisRecordIn::from_record).collect();
        let event = kinesis_event(self.region, &info.stream_arn, &info.shard_id, &inputs);
        let deadline = Instant::now() + Duration::from_secs(240);
        self.target
            .handle(&event, deadline)
            .await
            .map(|handled| handled.failures == 0)
            .unwrap_or(false)
    }

    async fn delete(&self, m: &aws_sdk_sqs::types::Message) -> Result<(), String> {
        if let Some(handle) = m.receipt_handle() {
            self.sqs
                .delete_message()
                .queue_url(self.queue_url)
                .receipt_handle(handle)
                .send()
                .await
                .map_err(|e| format!("delete: {}", aws_sdk_sqs::error::DisplayErrorContext(&e)))?;
        }
        Ok(())
    }
}

/// Makes a received message visible again at once: a dry run takes nothing off the queue.
async fn show_again(sqs: &aws_sdk_sqs::Client, queue_url: &str, m: &aws_sdk_sqs::types::Message) {
    if let Some(handle) = m.receipt_handle() {
        let _ = sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(handle)
            .visibility_timeout(0)
            .send()
            .await;
    }
}

/// The records of a range, read from its first sequence number until past its last.
async fn read_range(
    kinesis: &aws_sdk_kinesis::Client,
    stream: &str,
    info: &BatchInfo,
) -> Result<Vec<aws_sdk_kinesis::types::Record>, String> {
    let mut iterator = kinesis
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(&info.shard_id)
        .shard_iterator_type(ShardIteratorType::AtSequenceNumber)
        .starting_sequence_number(&info.start)
        .send()
        .await
        .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string())?
        .shard_iterator()
        .map(String::from);
    let mut out = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(60);
    while let Some(it) = iterator {
        let page = kinesis
            .get_records()
            .shard_iterator(it)
            .limit(1000)
            .send()
            .await
            .map_err(|e| aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string())?;
        let mut past_end = false;
        for r in page.records() {
            if cmp_sequence_numbers(r.sequence_number(), &info.end).is_gt() {
                past_end = true;
                break;
            }
            out.push(r.clone());
        }
        if past_end || Instant::now() > give_up {
            break;
        }
        if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
            break;
        }
        iterator = page.next_shard_iterator().map(String::from);
    }
    let (first, last) = (out.first(), out.last());
    match (first, last) {
        (Some(first), _) if first.sequence_number() != info.start => {
            // The stream trimmed the start of the range: what is left is not the batch.
            Err("the range's first record is no longer in the stream".into())
        }
        (Some(_), Some(last)) if last.sequence_number() == info.end => Ok(out),
        // Acknowledging a range read in part would delete the pointer to records never replayed.
        (_, last) => Err(format!(
            "the range was not read to its last record {} (read up to {})",
            info.end,
            last.map(|r| r.sequence_number()).unwrap_or("nothing")
        )),
    }
}
