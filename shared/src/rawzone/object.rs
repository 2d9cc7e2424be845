//! One object the raw zone will hold: the unit the planner produces and S3 puts.

/// One object to put.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedObject {
    pub key: String,
    pub body: bytes::Bytes,
    pub content_type: &'static str,
    pub content_encoding: Option<&'static str>,
    pub table: Option<String>,
    pub records: usize,
    /// The lowest sequence number in the object: where Lambda must resend from if it fails.
    pub min_sequence_number: String,
}
