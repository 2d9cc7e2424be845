//! `replay`: batches that exhausted their retries, back through the function.
//!
//! Lambda's on-failure destination for a Kinesis mapping receives only where the batch was
//! (`KinesisBatchInfo`: stream ARN, shard, first and last sequence number, size),
//! <https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html>. For each
//! such message this reads the records of that range from the stream while it still holds them,
//! runs them through the function's handler as the batch it was, and deletes the message once the
//! handler accepted it. A range the stream no longer holds is reported as expired and its message
//! left for an operator.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::types::ShardIteratorType;
use shared::kinesis::sequence::cmp_sequence_numbers;

use crate::events::{kinesis_event, KinesisRecordIn};
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
    /// Ranges no longer (fully) in the stream.
    pub expired: usize,
    /// Batches the handler did not accept again (their messages stay).
    pub failed: usize,
}

struct BatchInfo {
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
        stream_arn: text("streamArn")?,
        shard_id: text("shardId")?,
        start: text("startSequenceNumber")?,
        end: text("endSequenceNumber")?,
    })
}

/// Reads up to `max` messages of the on-failure `queue_url` and replays their ranges.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    sqs: &aws_sdk_sqs::Client,
    kinesis: &aws_sdk_kinesis::Client,
    queue_url: &str,
    target: &Target,
    region: &str,
    max: usize,
    dry_run: bool,
) -> Result<ReplayReport, String> {
    let replayer = Replayer {
        sqs,
        kinesis,
        queue_url,
        target,
        region,
        dry_run,
    };
    let mut report = ReplayReport::default();
    let mut seen = std::collections::HashSet::new();
    'receiving: while report.messages < max {
        let received = replayer.receive().await?;
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            if !seen.insert(m.message_id().unwrap_or_default().to_string()) {
                // A message shown again: every message has been seen.
                if dry_run {
                    show_again(sqs, queue_url, m).await;
                }
                break 'receiving;
            }
            report.messages += 1;
            replayer.replay(m, &mut report).await?;
        }
    }
    Ok(report)
}

/// Where the messages come from and what their batches go through.
struct Replayer<'a> {
    sqs: &'a aws_sdk_sqs::Client,
    kinesis: &'a aws_sdk_kinesis::Client,
    queue_url: &'a str,
    target: &'a Target,
    region: &'a str,
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

    /// Replays one message's batch and counts what became of it in `report` (whose `messages`
    /// already counts this one).
    async fn replay(
        &self,
        m: &aws_sdk_sqs::types::Message,
        report: &mut ReplayReport,
    ) -> Result<(), String> {
        let info = batch_info(m.body().unwrap_or_default())?;
        let records = match read_range(self.kinesis, info.stream_name(), &info).await {
            Ok(r) => r,
            Err(e) => {
                println!(
                    "{} {}..{}: expired or unreadable ({e})",
                    info.shard_id, info.start, info.end
                );
                report.expired += 1;
                return Ok(());
            }
        };
        println!(
            "[{}] {} {}..{}: {} record(s){}",
            report.messages,
            info.shard_id,
            info.start,
            info.end,
            records.len(),
            if self.dry_run { " (dry run)" } else { "" }
        );
        if self.dry_run {
            show_again(self.sqs, self.queue_url, m).await;
            return Ok(());
        }
        if !self.accepted(&info, &records).await {
            println!("    not accepted; the message stays for the next replay");
            report.failed += 1;
            return Ok(());
        }
        report.batches_recovered += 1;
        report.records += records.len();
        self.delete(m).await
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
            .map(|(failures, _)| failures == 0)
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
    match out.first() {
        Some(first) if first.sequence_number() == info.start => Ok(out),
        // The stream trimmed the start of the range: what is left is not the batch.
        _ => Err("the range's first record is no longer in the stream".into()),
    }
}
