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

/// The ingest host from the answer to `GET /v2/streaming/hostname`: the reference page shows
/// `{"hostname": "…"}`, the cURL tutorial reads the body as the bare host
/// (<https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-tutorial>);
/// both are read. `_` becomes `-`: the tutorial sends an account name holding `_` with `-`, and
/// a DNS name cannot hold `_`.
pub(crate) fn ingest_host(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Wrapped {
        hostname: String,
    }
    let text = std::str::from_utf8(body).ok()?.trim();
    let host = if text.starts_with('{') {
        serde_json::from_str::<Wrapped>(text).ok()?.hostname
    } else {
        text.to_string()
    };
    let host = host.trim().replace('_', "-");
    (!host.is_empty()).then_some(host)
}

/// The `scope` of the scoped-token exchange: the ingest host, preceded by
/// `session:role:<ROLE>` when the connection names a role (else the token acts as the user's
/// default role), as the REST page's token exchange takes it.
pub(crate) fn scope(hostname: &str, role: Option<&str>) -> String {
    match role {
        Some(role) => format!("session:role:{role} {hostname}"),
        None => hostname.to_string(),
    }
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

/// A channel's state as Snowflake reports it (open answer and bulk status), fields as the
/// error-handling page names them:
/// <https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-error-handling>.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ChannelStatus {
    /// `SUCCESS`, or the `ERR_*` code of a channel that must be reopened.
    #[serde(default)]
    pub channel_status_code: Option<String>,
    /// The end offset token of the last committed append: rows at or below it are in the
    /// table (or were refused at commit).
    #[serde(
        default,
        alias = "last_commited_offset_token",
        deserialize_with = "offset_token"
    )]
    pub last_committed_offset_token: Option<String>,
    /// Rows committed into the table since the channel was created.
    #[serde(default)]
    pub rows_inserted: Option<u64>,
    /// Rows Snowflake parsed but refused (the default pipe continues past them).
    #[serde(default, alias = "rows_errors")]
    pub rows_error_count: Option<u64>,
    /// The end offset token of the append whose commit last refused a row.
    #[serde(default, deserialize_with = "offset_token")]
    pub last_error_offset_upper_bound: Option<String>,
    /// Why the last refused row was refused.
    #[serde(default)]
    pub last_error_message: Option<String>,
}

/// An offset token: a string as the page shows it; a number is read as its text, so that a
/// service that answers the token it was given as a JSON number does not fail the status.
fn offset_token<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

impl ChannelStatus {
    /// The status code when it is not `SUCCESS` (an absent code counts as success: the open
    /// answer of older services has none).
    pub fn failure_code(&self) -> Option<&str> {
        self.channel_status_code
            .as_deref()
            .filter(|c| !c.eq_ignore_ascii_case("SUCCESS"))
    }
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
    fn the_ingest_host_is_read_plain_or_wrapped_with_dashes_for_underscores() {
        assert_eq!(
            ingest_host(b"myorg-my_account.snowflakecomputing.com\n").as_deref(),
            Some("myorg-my-account.snowflakecomputing.com")
        );
        assert_eq!(
            ingest_host(br#"{"hostname": "a_b.example:8080"}"#).as_deref(),
            Some("a-b.example:8080")
        );
        assert_eq!(
            ingest_host(b"127.0.0.1:8792").as_deref(),
            Some("127.0.0.1:8792")
        );
        assert_eq!(ingest_host(b" "), None);
        assert_eq!(ingest_host(br#"{"host": "x"}"#), None);
    }

    #[test]
    fn the_scope_names_the_role_when_there_is_one() {
        assert_eq!(scope("h.example", None), "h.example");
        assert_eq!(
            scope("h.example", Some("LOADER")),
            "session:role:LOADER h.example"
        );
    }

    #[test]
    fn offset_tokens_are_read_as_text() {
        let s: ChannelStatus = serde_json::from_str(
            r#"{"last_committed_offset_token": "49:2", "last_error_offset_upper_bound": 17}"#,
        )
        .unwrap();
        assert_eq!(s.last_committed_offset_token.as_deref(), Some("49:2"));
        assert_eq!(s.last_error_offset_upper_bound.as_deref(), Some("17"));
        let s: ChannelStatus =
            serde_json::from_str(r#"{"last_committed_offset_token": null}"#).unwrap();
        assert_eq!(s.last_committed_offset_token, None);
    }

    #[test]
    fn a_status_fails_only_on_a_code_other_than_success() {
        let status = |code: Option<&str>| ChannelStatus {
            channel_status_code: code.map(String::from),
            ..ChannelStatus::default()
        };
        assert_eq!(status(None).failure_code(), None);
        assert_eq!(status(Some("SUCCESS")).failure_code(), None);
        assert_eq!(
            status(Some("ERR_CHANNEL_MUST_BE_REOPENED")).failure_code(),
            Some("ERR_CHANNEL_MUST_BE_REOPENED")
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
