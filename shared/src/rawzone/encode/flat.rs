//! Flat NDJSON lines, for tables loaded by column name (`MATCH_BY_NAME_TABLES`): the record's own
//! top-level fields, then its Kinesis lineage as top-level keys named as the table lineage columns
//! ([`table::FLAT`]):
//!
//! `{"sensorId":6,...,"KINESIS_STREAM":"s","KINESIS_SHARD_ID":"shardId-1",
//! "KINESIS_SEQUENCE_NUMBER":"42","KINESIS_PARTITION_KEY":"p","KINESIS_ARRIVAL_TIME":"2024-…Z"}`
//!
//! As in the nested form, the record's text is copied, never re-serialised: everything up to its
//! closing brace, then the lineage keys and a new closing brace. The file and row number are not
//! in the line: the loader's `INCLUDE_METADATA` (`LINEAGE=metadata`) adds them.

use std::sync::LazyLock;

use crate::kinesis::json::Reader;
use crate::kinesis::payload::Payload;
use crate::kinesis::record::RecordMeta;
use crate::kinesis::scan::find_byte;
use crate::lineage::table;

use super::{push_json_str, RowLineage};

/// The per-record lineage keys as they are written (`,"KINESIS_…":`), built once from
/// [`table`]'s names so that the names have one home.
struct Keys {
    sequence_number: Vec<u8>,
    partition_key: Vec<u8>,
    sub_sequence: Vec<u8>,
    /// With the opening quote of the time's string.
    arrival_time: Vec<u8>,
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    let key = |name: &str| format!(",\"{name}\":").into_bytes();
    let mut arrival_time = key(table::ARRIVAL_TIME);
    arrival_time.push(b'"');
    Keys {
        sequence_number: key(table::SEQUENCE_NUMBER),
        partition_key: key(table::PARTITION_KEY),
        sub_sequence: key(table::SUB_SEQUENCE),
        arrival_time,
    }
});

/// Stream and shard, which a group's records share: `"KINESIS_STREAM":…,"KINESIS_SHARD_ID":…`,
/// without a leading comma (see [`RowLineage`], which keeps them per object).
pub(crate) fn push_source(out: &mut Vec<u8>, stream: &str, shard: &str) {
    out.push(b'"');
    out.extend_from_slice(table::STREAM.as_bytes());
    out.extend_from_slice(b"\":");
    push_json_str(out, stream);
    out.extend_from_slice(b",\"");
    out.extend_from_slice(table::SHARD_ID.as_bytes());
    out.extend_from_slice(b"\":");
    push_json_str(out, shard);
}

/// Appends the flat line of one record; `lineage` is the object's. The payload was checked by
/// [`check_keys`] when it was classified.
pub(crate) fn push_line<'m>(
    out: &mut Vec<u8>,
    payload: &Payload<'_>,
    meta: &'m RecordMeta<'_>,
    lineage: &mut RowLineage<'m>,
) {
    let text = payload.one_line();
    let open = open_object(&text);
    out.extend_from_slice(open.as_bytes());
    // `{}` has no field for a comma to follow.
    if !open.ends_with('{') {
        out.push(b',');
    }
    lineage.push_source(out, meta);
    let keys = &*KEYS;
    out.extend_from_slice(&keys.sequence_number);
    push_json_str(out, &meta.sequence_number);
    out.extend_from_slice(&keys.partition_key);
    push_json_str(out, &meta.partition_key);
    // Only for KPL sub-records, which share their aggregate's sequence number.
    if let Some(sub) = meta.sub_sequence {
        out.extend_from_slice(&keys.sub_sequence);
        out.extend_from_slice(sub.to_string().as_bytes());
    }
    out.extend_from_slice(&keys.arrival_time);
    lineage.push_arrival(out, meta.arrival_ms);
    out.extend_from_slice(b"\"}\n");
}

/// A JSON object's text without its closing brace and the whitespace before it: what the lineage
/// keys are appended to. The text was validated as one object, so it ends with `}` after
/// trimming, and only JSON whitespace can stand between its last token and that brace (ASCII
/// trimming, byte by byte: cheaper than `trim`, which decodes characters).
fn open_object(text: &str) -> &str {
    let text = text.trim_ascii();
    text.strip_suffix('}').unwrap_or(text).trim_ascii_end()
}

/// What a payload is searched for before its keys are compared: every [`table::FLAT`] name is
/// this, then `_`, so a payload without it (in any case) before an `_` has no such key.
const SEARCHED: &[u8] = b"kinesis";

/// Refuses a record with a top-level key equal to a lineage key in any case, naming the key:
/// `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE` would load one of the two values into the column.
///
/// Comparing keys means reading the object again; the nested form reads it once. So the text is
/// first searched, as fast as the copy that follows, for `_` and `\`: an `_` after `kinesis` (in
/// any case) may end the start of a lineage key, and a `\u` escape may spell one's letters (the
/// other escapes stand for quotes, slashes and control characters, never letters or `_`, and are
/// stepped over). Only then are the keys read ([`colliding_key`]), which machine-written records
/// almost never need; those with `\u` escapes (non-ASCII text written as ASCII) do.
#[inline]
pub(crate) fn check_keys(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    let mut i = find_byte(bytes, 0, b"_\\");
    while i < bytes.len() {
        let suspect = if bytes[i] == b'\\' {
            // The byte after a backslash is escaped (in `\\` the second backslash): step over it.
            let escaped = bytes.get(i + 1).copied();
            i += 1;
            escaped == Some(b'u')
        } else {
            bytes
                .get(i.saturating_sub(SEARCHED.len())..i)
                .is_some_and(|before| before.eq_ignore_ascii_case(SEARCHED))
        };
        if suspect {
            return colliding_key(text);
        }
        i = find_byte(bytes, i + 1, b"_\\");
    }
    Ok(())
}

/// The slow path of [`check_keys`]: each top-level key, unescaped, against every lineage key.
#[cold]
fn colliding_key(text: &str) -> Result<(), String> {
    let mut found = None;
    let read = Reader::new(text).object(|r, key| {
        if found.is_none() {
            let key = key.value();
            if let Some(name) = table::FLAT.iter().find(|n| key.eq_ignore_ascii_case(n)) {
                found = Some(format!(
                    "field {key:?} has the name of the lineage key {name}: tables in \
                     MATCH_BY_NAME_TABLES load fields into columns by name, in any case"
                ));
            }
        }
        r.skip()
    });
    // The payload was validated as an object before it got here; a failure cannot happen, and
    // would only mean there is no key to refuse.
    debug_assert!(read.is_ok(), "{read:?}");
    found.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests;
