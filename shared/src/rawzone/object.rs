//! One object the raw zone will hold: the unit the planner produces and S3 puts.

/// One object to put.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    /// The object key, a function of the records only (see [`layout`](super::layout)).
    pub key: String,
    /// The encoded, compressed records.
    pub body: bytes::Bytes,
    /// The `Content-Type` to put it with.
    pub content_type: &'static str,
    /// The `Content-Encoding` to put it with; None for an uncompressed object.
    pub content_encoding: Option<&'static str>,
    /// The table its records go to; None for a quarantine object.
    pub table: Option<String>,
    /// How many records it holds.
    pub records: usize,
    /// The lowest sequence number in the object: where Lambda must resend from if it fails.
    pub min_sequence_number: String,
}
