//! Object-created notifications, however they arrive: pure parsing, no I/O.
//!
//! The loader is invoked with an S3 event (direct), an SQS batch whose message bodies carry an S3
//! event (possibly wrapped in an SNS envelope, or an EventBridge event), an SNS event, or an
//! EventBridge "Object Created" event. Senders differ in the fields they fill in (moto's S3 → SQS
//! notification has no `userIdentity`, which `aws_lambda_events` requires), so only the fields
//! the loader needs are read, with small structs of our own.
//!
//! S3 notification keys are URL-encoded (`+` is a space, `%2F` from moto is `/`, UTF-8 percent
//! escapes); EventBridge keys are not. Every [`ObjectRef::key`] here is the decoded key.

use percent_encoding::percent_decode_str;
use serde::Deserialize;
use serde_json::Value;

/// One object that was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectRef {
    pub(crate) bucket: String,
    /// The object key, decoded.
    pub(crate) key: String,
    pub(crate) size: Option<u64>,
    /// The object's ETag without quotes, when the sender gives it.
    pub(crate) etag: Option<String>,
}

/// What one message (or a direct event) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Notification {
    /// Objects created (possibly none: e.g. only `ObjectRemoved` records, which are not loaded).
    Objects(Vec<ObjectRef>),
    /// `s3:TestEvent`, sent by S3 and moto when a notification configuration is saved.
    TestEvent,
}

impl Notification {
    pub(crate) fn objects(&self) -> &[ObjectRef] {
        match self {
            Notification::Objects(o) => o,
            Notification::TestEvent => &[],
        }
    }
}

/// One unit Lambda can retry on its own: an SQS message, or the whole direct invocation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// The SQS `messageId`; `None` for direct S3, SNS and EventBridge invocations.
    pub(crate) message_id: Option<String>,
    /// SQS only: the message's `ApproximateReceiveCount` and `SentTimestamp` (ms since the epoch).
    /// Snowpipe mode asks the pipe's load history first for a message received before, from
    /// when it was sent (see `pipe_service`).
    pub(crate) receipt: Option<Receipt>,
    /// The notification, or why the message cannot be read.
    pub(crate) notification: Result<Notification, NotifyError>,
}

/// When an SQS message was sent and how often it was received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Receipt {
    pub(crate) receive_count: Option<u32>,
    pub(crate) sent_at_ms: Option<i64>,
}

/// How the function was invoked, which decides how failures are reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// SQS event source mapping: failures are `batchItemFailures`.
    Sqs,
    /// S3 invoking the function directly.
    S3,
    /// SNS invoking the function directly.
    Sns,
    /// An EventBridge rule invoking the function directly.
    EventBridge,
}

/// A parsed invocation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invocation {
    pub(crate) trigger: Trigger,
    pub(crate) items: Vec<Item>,
}

/// Why an event or message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotifyError {
    #[error("not JSON: {0}")]
    Json(String),
    #[error("not an S3 notification, SNS envelope or EventBridge event: {0}")]
    Shape(String),
    #[error("object key {0:?} is not a valid URL-encoded UTF-8 string")]
    Key(String),
}

/// Parses an invocation payload of any supported shape.
pub(crate) fn parse_invocation(event: &Value) -> Result<Invocation, NotifyError> {
    if let Some(records) = event.get("Records").and_then(Value::as_array) {
        let source = records
            .first()
            .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
            .and_then(Value::as_str)
            .unwrap_or("");
        match source {
            "aws:sqs" => {
                let items = records.iter().map(sqs_item).collect::<Result<_, _>>()?;
                return Ok(Invocation {
                    trigger: Trigger::Sqs,
                    items,
                });
            }
            "aws:sns" => {
                let items = records
                    .iter()
                    .map(|r| Item {
                        message_id: None,
                        receipt: None,
                        notification: r
                            .pointer("/Sns/Message")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                NotifyError::Shape("SNS record without Sns.Message".into())
                            })
                            .and_then(parse_body),
                    })
                    .collect();
                return Ok(Invocation {
                    trigger: Trigger::Sns,
                    items,
                });
            }
            // "aws:s3", or an empty Records list
            _ => {
                return Ok(Invocation {
                    trigger: Trigger::S3,
                    items: vec![Item {
                        message_id: None,
                        receipt: None,
                        notification: parse_value(event),
                    }],
                })
            }
        }
    }
    if is_eventbridge(event) {
        return Ok(Invocation {
            trigger: Trigger::EventBridge,
            items: vec![Item {
                message_id: None,
                receipt: None,
                notification: parse_value(event),
            }],
        });
    }
    Err(NotifyError::Shape(describe(event)))
}

fn sqs_item(record: &Value) -> Result<Item, NotifyError> {
    let message_id = record
        .get("messageId")
        .and_then(Value::as_str)
        .ok_or_else(|| NotifyError::Shape("SQS record without messageId".into()))?
        .to_string();
    let notification = match record.get("body").and_then(Value::as_str) {
        Some(body) => parse_body(body),
        None => Err(NotifyError::Shape("SQS record without body".into())),
    };
    Ok(Item {
        message_id: Some(message_id),
        receipt: Some(receipt(record)),
        notification,
    })
}

/// An SQS record's `attributes`: Lambda passes them as strings of digits.
fn receipt(record: &Value) -> Receipt {
    let attribute = |name: &str| {
        record
            .pointer(&format!("/attributes/{name}"))
            .and_then(Value::as_str)
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    Receipt {
        receive_count: attribute("ApproximateReceiveCount").and_then(|n| u32::try_from(n).ok()),
        sent_at_ms: attribute("SentTimestamp"),
    }
}

/// Parses one message body: an S3 event, an SNS envelope around one, an `s3:TestEvent`, or an
/// EventBridge event.
pub(crate) fn parse_body(body: &str) -> Result<Notification, NotifyError> {
    let value: Value = serde_json::from_str(body).map_err(|e| NotifyError::Json(e.to_string()))?;
    parse_value(&value)
}

fn parse_value(value: &Value) -> Result<Notification, NotifyError> {
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Notification::TestEvent);
    }
    // SNS envelope (raw message delivery off): the S3 event is the string `Message`.
    if value.get("Type").and_then(Value::as_str) == Some("Notification") {
        let message = value
            .get("Message")
            .and_then(Value::as_str)
            .ok_or_else(|| NotifyError::Shape("SNS notification without Message".into()))?;
        return parse_body(message);
    }
    if is_eventbridge(value) {
        return eventbridge(value);
    }
    if let Some(records) = value.get("Records") {
        let records: Vec<S3Record> = serde_json::from_value(records.clone())
            .map_err(|e| NotifyError::Shape(format!("S3 records: {e}")))?;
        let mut objects = Vec::with_capacity(records.len());
        for r in records {
            let created = r.event_name.as_deref().is_none_or(|n| {
                n.starts_with("ObjectCreated") || n.starts_with("s3:ObjectCreated")
            });
            if !created {
                continue;
            }
            let (Some(s3), true) = (
                r.s3,
                r.event_source.as_deref().is_none_or(|s| s == "aws:s3"),
            ) else {
                continue;
            };
            objects.push(ObjectRef {
                bucket: s3.bucket.name,
                key: decode_key(&s3.object.key)?,
                size: s3.object.size,
                etag: s3.object.e_tag.map(|e| e.trim_matches('"').to_string()),
            });
        }
        return Ok(Notification::Objects(objects));
    }
    Err(NotifyError::Shape(describe(value)))
}

fn is_eventbridge(value: &Value) -> bool {
    value.get("detail-type").is_some() && value.get("detail").is_some()
}

fn eventbridge(value: &Value) -> Result<Notification, NotifyError> {
    let event: EbEvent = serde_json::from_value(value.clone())
        .map_err(|e| NotifyError::Shape(format!("EventBridge event: {e}")))?;
    if event.source.as_deref().is_some_and(|s| s != "aws.s3")
        || event.detail_type != "Object Created"
    {
        return Ok(Notification::Objects(Vec::new()));
    }
    Ok(Notification::Objects(vec![ObjectRef {
        bucket: event.detail.bucket.name,
        // EventBridge keys are not URL-encoded
        key: event.detail.object.key,
        size: event.detail.object.size,
        etag: event
            .detail
            .object
            .etag
            .map(|e| e.trim_matches('"').to_string()),
    }]))
}

/// Decodes an S3 notification key: `+` is a space, then percent escapes (UTF-8).
pub(crate) fn decode_key(raw: &str) -> Result<String, NotifyError> {
    let plus = raw.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| NotifyError::Key(raw.to_string()))
}

fn describe(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let keys: Vec<&str> = m.keys().map(String::as_str).take(8).collect();
            format!("object with fields [{}]", keys.join(", "))
        }
        other => format!("JSON {}", kind(other)),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventSource", default)]
    event_source: Option<String>,
    #[serde(rename = "eventName", default)]
    event_name: Option<String>,
    #[serde(default)]
    s3: Option<S3Entity>,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: Named,
    object: S3Object,
}

#[derive(Deserialize)]
struct Named {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(rename = "eTag", default)]
    e_tag: Option<String>,
}

#[derive(Deserialize)]
struct EbEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    #[serde(default)]
    source: Option<String>,
    detail: EbDetail,
}

#[derive(Deserialize)]
struct EbDetail {
    bucket: Named,
    object: EbObject,
}

#[derive(Deserialize)]
struct EbObject {
    key: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    etag: Option<String>,
}

#[cfg(test)]
mod tests;
