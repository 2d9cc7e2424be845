//! Lambda event JSON built from what the AWS APIs return, exactly as Lambda's event source
//! mappings send it, so the local driver exercises the handlers' real decoding.

use base64::Engine as _;
use serde_json::{json, Value};

/// A Kinesis record as `GetRecords` returned it.
pub struct KinesisRecordIn<'a> {
    /// The record's sequence number (also the event's `eventID` after the shard id).
    pub sequence_number: &'a str,
    /// The partition key the producer gave.
    pub partition_key: &'a str,
    /// The payload, raw (the event carries it base64-encoded).
    pub data: &'a [u8],
    /// Approximate arrival, in seconds since the epoch (0 when Kinesis gave none).
    pub arrival_secs: f64,
}

impl<'a> KinesisRecordIn<'a> {
    /// Borrows what the event needs from a `GetRecords` record.
    pub fn from_record(r: &'a aws_sdk_kinesis::types::Record) -> Self {
        Self {
            sequence_number: r.sequence_number(),
            partition_key: r.partition_key().unwrap_or_default(),
            data: r.data().as_ref(),
            arrival_secs: r
                .approximate_arrival_timestamp()
                .map(|t| t.as_secs_f64())
                .unwrap_or(0.0),
        }
    }
}

/// The event body Lambda sends for a Kinesis batch of one shard.
pub fn kinesis_event(
    region: &str,
    stream_arn: &str,
    shard_id: &str,
    records: &[KinesisRecordIn<'_>],
) -> String {
    let records: Vec<Value> = records
        .iter()
        .map(|r| {
            json!({
                "kinesis": {
                    "kinesisSchemaVersion": "1.0",
                    "partitionKey": r.partition_key,
                    "sequenceNumber": r.sequence_number,
                    "data": base64::engine::general_purpose::STANDARD.encode(r.data),
                    "approximateArrivalTimestamp": r.arrival_secs,
                },
                "eventSource": "aws:kinesis",
                "eventVersion": "1.0",
                "eventID": format!("{shard_id}:{}", r.sequence_number),
                "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/local-esm",
                "awsRegion": region,
                "eventSourceARN": stream_arn,
            })
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// An SQS message as `ReceiveMessage` returned it.
pub struct SqsMessageIn<'a> {
    /// The message id, which a handler names in its `batchItemFailures`.
    pub message_id: &'a str,
    /// The handle the message is deleted with once handled.
    pub receipt_handle: &'a str,
    /// The body as sent (for the loader, an S3 notification, maybe in an SNS envelope).
    pub body: &'a str,
    /// The MD5 of the body, as SQS computed it.
    pub md5_of_body: &'a str,
    /// How often the message has been received (`ApproximateReceiveCount`), this time included.
    pub receive_count: u32,
    /// When the message was sent (`SentTimestamp`), in milliseconds since the epoch.
    pub sent_timestamp_ms: u64,
}

/// The event Lambda sends for an SQS batch.
pub fn sqs_event(region: &str, queue_arn: &str, messages: &[SqsMessageIn<'_>]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_timestamp_ms.to_string(),
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": m.sent_timestamp_ms.to_string(),
                },
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinesis_event_decodes_with_the_handlers_decoder() {
        let body = kinesis_event(
            "us-east-1",
            "arn:aws:kinesis:us-east-1:123456789012:stream/sensors",
            "shardId-000000000001",
            &[KinesisRecordIn {
                sequence_number: "7",
                partition_key: "6",
                data: b"{\"a\":1}",
                arrival_secs: 1.5,
            }],
        );
        let mut payloads = shared::kinesis::record::PayloadBuffer::default();
        let records = shared::kinesis::record::decode_kinesis_event(&body, &mut payloads).unwrap();
        assert_eq!(records[0].meta.stream, "sensors");
        assert_eq!(records[0].meta.shard_id, "shardId-000000000001");
        assert_eq!(records[0].data.as_deref().unwrap(), b"{\"a\":1}");
        let typed: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_str(&body).unwrap();
        assert_eq!(typed.records.len(), 1);
    }
}
