//! Records that cannot be used are written aside with the reason, never dropped.
//!
//! One gzip NDJSON object per batch and writing function under the error prefix (see
//! [`Layout::quarantine_key`]), one line per record:
//! `{"reason": "...", "metadata": {...}, "payload": "<text>"}`, or `"payload_base64"` when the
//! bytes are not UTF-8, so the original can always be recovered exactly and replayed.

use std::borrow::Cow;
use std::io::Write;

use base64::Engine as _;

use crate::kinesis::record::RecordMeta;
use crate::kinesis::sequence::sequence_bounds;
use crate::rawzone::encode::ndjson::push_metadata;
use crate::rawzone::encode::{push_json_str, Compression};
use crate::rawzone::layout::{hour_of, Layout, Writer};
use crate::rawzone::object::PlannedObject;

/// A record set aside, with why.
#[derive(Debug, Clone)]
pub struct Rejected<'a> {
    /// Where the record came from, written as the line's `metadata`.
    pub meta: RecordMeta<'a>,
    /// Why it was set aside, for whoever replays it.
    pub reason: String,
    /// The record as it arrived, so it can be recovered exactly.
    pub data: RecordData<'a>,
}

/// What arrived in the record's `data` field.
#[derive(Debug, Clone)]
pub enum RecordData<'a> {
    /// Base64-decoded bytes.
    Bytes(&'a [u8]),
    /// The `data` text itself, when it was not valid base64.
    Undecodable(&'a str),
}

impl<'a> RecordData<'a> {
    /// From a [`KinesisRecord`](crate::kinesis::record::KinesisRecord)'s `data`: the decoded
    /// bytes, or the text that was not base64.
    pub fn from_record(data: &'a Result<&'a [u8], Cow<'a, str>>) -> Self {
        match data {
            Ok(bytes) => RecordData::Bytes(bytes),
            Err(text) => RecordData::Undecodable(text),
        }
    }
}

pub(crate) fn push_line(out: &mut Vec<u8>, rejected: &Rejected<'_>) {
    out.extend_from_slice(b"{\"reason\":");
    push_json_str(out, &rejected.reason);
    out.extend_from_slice(b",\"metadata\":");
    push_metadata(out, &rejected.meta);
    match rejected.data {
        RecordData::Bytes(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => {
                out.extend_from_slice(b",\"payload\":");
                push_json_str(out, text);
            }
            Err(_) => {
                out.extend_from_slice(b",\"payload_base64\":\"");
                out.extend_from_slice(
                    base64::engine::general_purpose::STANDARD
                        .encode(bytes)
                        .as_bytes(),
                );
                out.push(b'"');
            }
        },
        RecordData::Undecodable(text) => {
            out.extend_from_slice(b",\"data_field\":");
            push_json_str(out, text);
        }
    }
    out.extend_from_slice(b"}\n");
}

/// The gzip body of a quarantine object.
pub fn encode(rejected: &[Rejected<'_>]) -> std::io::Result<Vec<u8>> {
    let mut lines = Vec::with_capacity(rejected.len() * 256);
    for r in rejected {
        push_line(&mut lines, r);
    }
    let mut w = Compression::Gzip { level: 6 }.writer(lines.len() / 4 + 64)?;
    w.write_all(&lines)?;
    w.finish()
}

/// The one quarantine object `writer` makes of a batch, keyed by its shard, hour and sequence
/// range, or `None` when nothing was rejected.
pub fn object(
    layout: &Layout,
    writer: Writer,
    rejected: &[Rejected<'_>],
) -> std::io::Result<Option<PlannedObject>> {
    let Some(first) = rejected.first() else {
        return Ok(None);
    };
    let (min, max) = sequence_bounds(rejected.iter().map(|r| r.meta.sequence_number.as_ref()))
        .unwrap_or(("0", "0"));
    Ok(Some(PlannedObject {
        key: layout.quarantine_key(
            writer,
            &first.meta.shard_id,
            hour_of(first.meta.arrival_ms),
            min,
            max,
        ),
        body: encode(rejected)?.into(),
        content_type: "application/x-ndjson",
        content_encoding: Some("gzip"),
        table: None,
        records: rejected.len(),
        min_sequence_number: min.to_string(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RecordMeta<'static> {
        RecordMeta {
            stream: Cow::Borrowed("s"),
            shard_id: Cow::Borrowed("shardId-1"),
            sequence_number: "3".into(),
            partition_key: Cow::Borrowed("k"),
            arrival_ms: 0,
            sub_sequence: None,
        }
    }

    #[test]
    fn every_kind_of_bad_payload_is_recoverable() {
        let binary = [0xffu8, 0x00, 0x10];
        let rejected = [
            Rejected {
                meta: meta(),
                reason: "payload is JSON but not an object".into(),
                data: RecordData::Bytes(b"[1,2]"),
            },
            Rejected {
                meta: meta(),
                reason: "payload is not UTF-8".into(),
                data: RecordData::Bytes(&binary),
            },
            Rejected {
                meta: meta(),
                reason: "data is not base64".into(),
                data: RecordData::Undecodable("%%%"),
            },
        ];
        let body = encode(&rejected).unwrap();
        let text = String::from_utf8(
            crate::rawzone::encode::decompress(Compression::Gzip { level: 0 }, &body).unwrap(),
        )
        .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["payload"], "[1,2]");
        assert_eq!(lines[0]["reason"], "payload is JSON but not an object");
        assert_eq!(lines[0]["metadata"]["sequence_number"], "3");
        assert_eq!(lines[1]["payload_base64"], "/wAQ");
        assert_eq!(lines[2]["data_field"], "%%%");
    }

    #[test]
    fn the_two_functions_never_write_the_same_key_for_the_same_batch() {
        // Both functions read the same stream and, as template.yaml deploys them, share one
        // error prefix: the same rejected records must still land in two objects.
        let layout = Layout::new("raw", "errors");
        let rejected = [Rejected {
            meta: meta(),
            reason: "payload is not valid JSON".into(),
            data: RecordData::Bytes(b"{"),
        }];
        let orchestrator = object(&layout, Writer::Orchestrator, &rejected)
            .unwrap()
            .unwrap();
        let upsert = object(&layout, Writer::Upsert, &rejected).unwrap().unwrap();
        assert_eq!(
            orchestrator.key,
            "errors/orchestrator/1970/01/01/00/shardId-1-3-3.ndjson.gz"
        );
        assert_eq!(
            upsert.key,
            "errors/upsert/1970/01/01/00/shardId-1-3-3.ndjson.gz"
        );
        assert_eq!(orchestrator.body, upsert.body);
        assert!(object(&layout, Writer::Upsert, &[]).unwrap().is_none());
    }
}
