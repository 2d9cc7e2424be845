//! Paths, request and response bodies of the Snowpipe Streaming REST API, as the page linked
//! from [`super`] documents them.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;

/// The largest request body Snowflake accepts, measured after compression.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// Path segments are escaped except the characters identifiers commonly have.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'.')
    .remove(b'$');

fn seg(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

pub(crate) fn channel_path(db: &str, schema: &str, pipe: &str, channel: &str) -> String {
    format!(
        "/v2/streaming/databases/{}/schemas/{}/pipes/{}/channels/{}",
        seg(db),
        seg(schema),
        seg(pipe),
        seg(channel)
    )
}

pub(crate) fn rows_path(db: &str, schema: &str, pipe: &str, channel: &str) -> String {
    format!(
        "/v2/streaming/data/databases/{}/schemas/{}/pipes/{}/channels/{}/rows",
        seg(db),
        seg(schema),
        seg(pipe),
        seg(channel)
    )
}

pub(crate) fn bulk_status_path(db: &str, schema: &str, pipe: &str) -> String {
    format!(
        "/v2/streaming/databases/{}/schemas/{}/pipes/{}:bulk-channel-status",
        seg(db),
        seg(schema),
        seg(pipe)
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct Hostname {
    pub hostname: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Opened {
    pub next_continuation_token: String,
    pub channel_status: ChannelStatus,
}

#[derive(Debug, Deserialize)]
pub(crate) struct Appended {
    pub next_continuation_token: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkStatus {
    #[serde(default)]
    pub channel_statuses: std::collections::HashMap<String, ChannelStatus>,
}

/// A channel's state as Snowflake reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChannelStatus {
    #[serde(default)]
    pub channel_status_code: Option<String>,
    #[serde(default)]
    pub last_committed_offset_token: Option<String>,
    #[serde(default)]
    pub rows_inserted: Option<u64>,
    /// Rows Snowflake parsed but refused (the default pipe continues past them).
    #[serde(default, alias = "rows_errors")]
    pub rows_error_count: Option<u64>,
    #[serde(default)]
    pub last_error_message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ErrorBody {
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

/// The scoped token: Snowflake answers it as plain text, the page shows `{"token": "…"}`;
/// both are read.
pub(crate) fn scoped_token(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Wrapped {
        token: String,
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    if text.starts_with('{') {
        return serde_json::from_str::<Wrapped>(text).ok().map(|w| w.token);
    }
    (!text.is_empty()).then(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_escape_what_identifiers_may_hold() {
        assert_eq!(
            channel_path("DB", "S", "ORDERS_CHANGES-STREAMING", "shard/1 x"),
            "/v2/streaming/databases/DB/schemas/S/pipes/ORDERS_CHANGES-STREAMING/channels/shard%2F1%20x"
        );
        assert_eq!(
            rows_path("DB", "S", "P", "C"),
            "/v2/streaming/data/databases/DB/schemas/S/pipes/P/channels/C/rows"
        );
        assert_eq!(
            bulk_status_path("DB", "S", "P"),
            "/v2/streaming/databases/DB/schemas/S/pipes/P:bulk-channel-status"
        );
    }

    #[test]
    fn the_scoped_token_is_read_plain_or_wrapped() {
        assert_eq!(scoped_token(b"abc.def\n").as_deref(), Some("abc.def"));
        assert_eq!(scoped_token(br#"{"token": "t1"}"#).as_deref(), Some("t1"));
        assert_eq!(scoped_token(b"  "), None);
        assert_eq!(scoped_token(br#"{"nope": 1}"#), None);
    }
}
