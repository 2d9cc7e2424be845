//! NDJSON lines: `{"payload": <the record as sent>, "metadata": {...lineage...}}`.
//!
//! The payload is copied as it arrived (line breaks between tokens dropped), never re-serialised,
//! so numbers keep their precision and keys their order.

use crate::kinesis::payload::Payload;
use crate::kinesis::record::RecordMeta;

use super::{push_json_str, RowLineage};

/// Appends the line of one record; `lineage` is the object's, `row` its 1-based number.
pub(crate) fn push_line<'m>(
    out: &mut Vec<u8>,
    payload: &Payload<'_>,
    meta: &'m RecordMeta<'_>,
    lineage: &mut RowLineage<'m>,
    row: u64,
) {
    out.extend_from_slice(b"{\"payload\":");
    out.extend_from_slice(payload.one_line().as_bytes());
    out.extend_from_slice(b",\"metadata\":");
    lineage.push_source(out, meta);
    push_record_lineage(out, meta, |out| lineage.push_arrival(out, meta.arrival_ms));
    out.extend_from_slice(b",\"file\":");
    lineage.push_file(out);
    out.extend_from_slice(b",\"row\":");
    lineage.push_row_number(out, row);
    out.extend_from_slice(b"}}\n");
}

/// The metadata object alone (also used by quarantine lines).
pub(crate) fn push_metadata(out: &mut Vec<u8>, meta: &RecordMeta<'_>) {
    out.extend_from_slice(b"{\"stream\":");
    push_json_str(out, &meta.stream);
    out.extend_from_slice(b",\"shard_id\":");
    push_json_str(out, &meta.shard_id);
    push_record_lineage(out, meta, |out| meta.push_arrival(out));
    out.push(b'}');
}

/// The metadata that differs from record to record, after stream and shard.
fn push_record_lineage(
    out: &mut Vec<u8>,
    meta: &RecordMeta<'_>,
    arrival: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(b",\"sequence_number\":");
    push_json_str(out, &meta.sequence_number);
    out.extend_from_slice(b",\"partition_key\":");
    push_json_str(out, &meta.partition_key);
    // Only for KPL sub-records, which share their aggregate's sequence number.
    if let Some(sub) = meta.sub_sequence {
        out.extend_from_slice(b",\"sub_sequence\":");
        out.extend_from_slice(sub.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"arrival_time\":\"");
    arrival(out);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    pub(crate) fn meta() -> RecordMeta<'static> {
        RecordMeta {
            stream: Cow::Borrowed("sensors"),
            shard_id: Cow::Borrowed("shardId-000000000000"),
            sequence_number: "42".into(),
            partition_key: Cow::Borrowed("p\"k"),
            arrival_ms: 1_700_000_000_123,
            sub_sequence: None,
        }
    }

    #[test]
    fn line_has_payload_and_lineage() {
        let payload = crate::kinesis::payload::Extractor::new()
            .parse(b"{\"sensorId\": 6,\n \"big\": 12345678901234567890123}")
            .unwrap();
        let mut out = Vec::new();
        let mut lineage = RowLineage::new(super::super::Format::Ndjson, "raw/t/x.ndjson.gz");
        push_line(&mut out, &payload, &meta(), &mut lineage, 3);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        assert!(
            text.contains("12345678901234567890123"),
            "numbers are copied, not re-serialised"
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"]["sensorId"], 6);
        assert_eq!(
            v["metadata"],
            serde_json::json!({"stream":"sensors","shard_id":"shardId-000000000000","sequence_number":"42",
                "partition_key":"p\"k","arrival_time":"2023-11-14T22:13:20.123Z","file":"raw/t/x.ndjson.gz","row":3})
        );
    }
}
