//! Kinesis Producer Library (KPL) aggregated records, split into their sub-records.
//!
//! An aggregated record is the magic `F3 89 9A C2`, a protobuf `AggregatedRecord` and the MD5
//! digest of that protobuf (16 bytes):
//! <https://github.com/awslabs/amazon-kinesis-producer/blob/master/aggregation-format.md>.
//!
//! ```text
//! message AggregatedRecord {
//!   repeated string partition_key_table     = 1;
//!   repeated string explicit_hash_key_table = 2;
//!   repeated Record records                 = 3;
//! }
//! message Record {
//!   required uint64 partition_key_index     = 1;
//!   optional uint64 explicit_hash_key_index = 2;
//!   required bytes  data                    = 3;
//!   repeated Tag    tags                    = 4;
//! }
//! ```
//!
//! The two messages are read by hand (a varint, a length and a field number are all the wire
//! format needs here) so sub-records borrow their bytes and partition keys from the batch's
//! payload buffer instead of being copied.

use md5::{Digest, Md5};

/// The first bytes of every KPL aggregated record.
pub(crate) const MAGIC: [u8; 4] = [0xF3, 0x89, 0x9A, 0xC2];

const DIGEST_LEN: usize = 16;

/// Why an aggregated record cannot be split; the whole record is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// Fewer than 16 bytes follow the magic: the record was cut short.
    #[error("KPL aggregated record is too short for its MD5 trailer")]
    TooShort,
    /// The trailer is not the MD5 of the protobuf: corrupted, or data that only starts like one.
    #[error("KPL aggregated record fails its MD5 check")]
    Digest,
    /// The digest matches but the protobuf does not parse; carries what is wrong with it.
    #[error("KPL aggregated record is not a valid AggregatedRecord protobuf: {0}")]
    Protobuf(&'static str),
    /// A sub-record's `partition_key_index` is past the end of `partition_key_table`.
    #[error("KPL sub-record {record} names partition key {index}, but the table has {len}")]
    PartitionKeyIndex {
        /// The sub-record's position in the aggregate, from 0.
        record: usize,
        /// The index it names.
        index: u64,
        /// How many partition keys the table holds.
        len: usize,
    },
    /// A valid protobuf with no `records`.
    #[error("KPL aggregated record holds no sub-records")]
    Empty,
}

/// One user record of an aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRecord<'a> {
    pub(crate) partition_key: &'a str,
    pub(crate) data: &'a [u8],
}

/// Whether `data` is a KPL aggregate (by its magic prefix).
pub(crate) fn is_aggregated(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// The sub-records of an aggregate, in order (their index is their position).
pub(crate) fn deaggregate(data: &[u8]) -> Result<Vec<SubRecord<'_>>, AggregateError> {
    let rest = data.get(MAGIC.len()..).ok_or(AggregateError::TooShort)?;
    if rest.len() < DIGEST_LEN {
        return Err(AggregateError::TooShort);
    }
    let (body, digest) = rest.split_at(rest.len() - DIGEST_LEN);
    if Md5::digest(body).as_slice() != digest {
        return Err(AggregateError::Digest);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut raw_records: Vec<&[u8]> = Vec::new();
    let mut r = Wire(body);
    while !r.0.is_empty() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (1, 2) => keys.push(
                std::str::from_utf8(r.bytes()?)
                    .map_err(|_| AggregateError::Protobuf("partition key is not UTF-8"))?,
            ),
            (3, 2) => raw_records.push(r.bytes()?),
            _ => r.skip(wire)?,
        }
    }
    if raw_records.is_empty() {
        return Err(AggregateError::Empty);
    }
    raw_records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let mut r = Wire(raw);
            let (mut index, mut data) = (None, None);
            while !r.0.is_empty() {
                match r.key()? {
                    (1, 0) => index = Some(r.varint()?),
                    (3, 2) => data = Some(r.bytes()?),
                    (_, wire) => r.skip(wire)?,
                }
            }
            let index = index.ok_or(AggregateError::Protobuf(
                "a record has no partition_key_index",
            ))?;
            let data = data.ok_or(AggregateError::Protobuf("a record has no data"))?;
            let partition_key = usize::try_from(index)
                .ok()
                .and_then(|k| keys.get(k))
                .ok_or(AggregateError::PartitionKeyIndex {
                    record: i,
                    index,
                    len: keys.len(),
                })?;
            Ok(SubRecord {
                partition_key,
                data,
            })
        })
        .collect()
}

/// A protobuf reader over the bytes still to read.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn varint(&mut self) -> Result<u64, AggregateError> {
        let mut value = 0u64;
        for (i, b) in self.0.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(AggregateError::Protobuf("truncated or overlong varint"))
    }

    fn key(&mut self) -> Result<(u64, u64), AggregateError> {
        let key = self.varint()?;
        Ok((key >> 3, key & 7))
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], AggregateError> {
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= self.0.len())
            .ok_or(AggregateError::Protobuf("a field runs past the end"))?;
        let (head, tail) = self.0.split_at(len);
        self.0 = tail;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], AggregateError> {
        let len = self.varint()?;
        self.take(len)
    }

    fn skip(&mut self, wire: u64) -> Result<(), AggregateError> {
        match wire {
            0 => self.varint().map(drop),
            1 => self.take(8).map(drop),
            2 => self.bytes().map(drop),
            5 => self.take(4).map(drop),
            _ => Err(AggregateError::Protobuf("unsupported wire type")),
        }
    }
}

/// Builds an aggregate of `(partition key, data)` records, as the KPL does: for tests and the
/// benchmarks, never shipped in a function.
#[cfg(any(test, feature = "sample"))]
pub fn aggregate(records: &[(&str, &[u8])]) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        varint(out, number << 3 | 2);
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }
    let mut keys: Vec<&str> = Vec::new();
    let mut body = Vec::new();
    let mut recs = Vec::new();
    for (key, data) in records {
        let index = match keys.iter().position(|k| k == key) {
            Some(i) => i,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        let mut rec = Vec::new();
        varint(&mut rec, 1 << 3);
        varint(&mut rec, index as u64);
        field(&mut rec, 3, data);
        recs.push(rec);
    }
    for key in &keys {
        field(&mut body, 1, key.as_bytes());
    }
    for rec in &recs {
        field(&mut body, 3, rec);
    }
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(Md5::digest(&body).as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_partition_keys() {
        let agg = aggregate(&[("a", b"{\"x\":1}"), ("b", b"{\"x\":2}"), ("a", b"")]);
        assert!(is_aggregated(&agg));
        let subs = deaggregate(&agg).unwrap();
        assert_eq!(
            subs,
            [
                SubRecord {
                    partition_key: "a",
                    data: b"{\"x\":1}"
                },
                SubRecord {
                    partition_key: "b",
                    data: b"{\"x\":2}"
                },
                SubRecord {
                    partition_key: "a",
                    data: b""
                },
            ]
        );
    }

    #[test]
    fn corrupt_aggregates_are_errors() {
        let agg = aggregate(&[("a", b"{}")]);
        let mut bad_digest = agg.clone();
        let last = bad_digest.len() - 1;
        bad_digest[last] ^= 1;
        assert_eq!(deaggregate(&bad_digest), Err(AggregateError::Digest));
        assert_eq!(deaggregate(&MAGIC), Err(AggregateError::TooShort));
        // A body that is not protobuf, with a correct digest.
        let body = [0x1A, 0x7F, 0x00];
        let mut garbage = MAGIC.to_vec();
        garbage.extend_from_slice(&body);
        garbage.extend_from_slice(Md5::digest(body).as_slice());
        assert!(matches!(
            deaggregate(&garbage),
            Err(AggregateError::Protobuf(_))
        ));
        // A record naming a partition key the table does not have.
        let rec = [0x08, 0x05, 0x1A, 0x00];
        let mut body = vec![0x0A, 0x01, b'k', 0x1A, rec.len() as u8];
        body.extend_from_slice(&rec);
        let mut bad_index = MAGIC.to_vec();
        bad_index.extend_from_slice(&body);
        bad_index.extend_from_slice(Md5::digest(&body).as_slice());
        assert_eq!(
            deaggregate(&bad_index),
            Err(AggregateError::PartitionKeyIndex {
                record: 0,
                index: 5,
                len: 1
            })
        );
        let mut empty = MAGIC.to_vec();
        empty.extend_from_slice(Md5::digest([]).as_slice());
        assert_eq!(deaggregate(&empty), Err(AggregateError::Empty));
    }
}
