//! Errors of the Snowpipe Streaming client, classified where they are defined.

use crate::snowflake::{Recovery, SnowflakeError};

/// What went wrong calling Snowpipe Streaming.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// An error answer: `code` is Snowflake's stable code (`STALE_CONTINUATION_TOKEN_SEQUENCER`, …).
    #[error("HTTP {status} {code}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// The body's `code`; empty when the body had none.
        code: String,
        /// The body's `message`, or its first 300 bytes when it had none.
        message: String,
    },
    /// Connection refused/reset, DNS, timeout of one HTTP attempt.
    #[error("transport: {0}")]
    Transport(String),
    /// An answer that does not follow the API (unparseable JSON, an empty token, ...).
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// The account's credentials could not make a token.
    #[error(transparent)]
    Auth(#[from] SnowflakeError),
    /// The caller's deadline passed; the last transient failure seen.
    #[error("deadline passed; last: {0}")]
    Deadline(String),
    /// The channel's status code is not `SUCCESS`: Snowflake discarded what it had not
    /// committed, and takes no append until the channel is reopened.
    #[error("channel {channel} is invalid: {code}: {message}")]
    ChannelInvalid {
        /// The channel's name.
        channel: String,
        /// Its `channel_status_code` (`ERR_CHANNEL_MUST_BE_REOPENED`, …), or `ABSENT` when the
        /// status did not list it (dropped).
        code: String,
        /// Its `last_error_message`, when it had one.
        message: String,
    },
    /// One row is larger than a request may be.
    #[error("a row of {0} bytes exceeds the 4 MB request limit")]
    RowTooLarge(usize),
}

/// Codes that mean the channel's continuation token or state is stale: reopen it (which discards
/// what it had not committed) and resume after its committed offset,
/// <https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-error-handling>.
const REOPEN_CODES: [&str; 5] = [
    "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER",
    "ERR_CHANNEL_HAS_INVALID_CLIENT_SEQUENCER",
    "ERR_CHANNEL_MUST_BE_REOPENED",
    "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED",
    "ERR_INVALID_CONTINUATION_TOKEN",
];

impl StreamingError {
    /// What the caller should do: [`Recovery::Reopen`] for a stale continuation token
    /// (`STALE_CONTINUATION_TOKEN_*`), a stale sequencer, an invalid channel (its status code or
    /// a 409); [`Recovery::Retry`] for 408, 429, 5xx, transport failures and a passed deadline;
    /// [`Recovery::Fatal`] otherwise. Never [`Recovery::Isolate`]: rows Snowflake refuses are
    /// reported by the channel's status after the commit, not by the append.
    pub fn recovery(&self) -> Recovery {
        match self {
            StreamingError::Http { status, code, .. } => {
                if code.starts_with("STALE_CONTINUATION_TOKEN")
                    || REOPEN_CODES.contains(&code.as_str())
                    || *status == 409
                {
                    Recovery::Reopen
                } else if matches!(status, 408 | 429) || *status >= 500 {
                    Recovery::Retry
                } else {
                    Recovery::Fatal
                }
            }
            StreamingError::ChannelInvalid { .. } => Recovery::Reopen,
            StreamingError::Transport(_) | StreamingError::Deadline(_) => Recovery::Retry,
            StreamingError::Auth(e) if e.is_retryable() => Recovery::Retry,
            StreamingError::Protocol(_)
            | StreamingError::Auth(_)
            | StreamingError::RowTooLarge(_) => Recovery::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(status: u16, code: &str) -> StreamingError {
        StreamingError::Http {
            status,
            code: code.into(),
            message: String::new(),
        }
    }

    #[test]
    fn errors_say_what_to_do() {
        assert_eq!(
            http(429, "ERR_TOO_MANY_REQUESTS").recovery(),
            Recovery::Retry
        );
        assert_eq!(
            http(503, "ERR_SERVICE_UNAVAILABLE").recovery(),
            Recovery::Retry
        );
        assert_eq!(
            http(400, "STALE_CONTINUATION_TOKEN_SEQUENCER").recovery(),
            Recovery::Reopen
        );
        assert_eq!(
            http(400, "ERR_CHANNEL_MUST_BE_REOPENED").recovery(),
            Recovery::Reopen
        );
        assert_eq!(
            http(404, "ERR_TABLE_DOES_NOT_EXIST_NOT_AUTHORIZED").recovery(),
            Recovery::Fatal
        );
        assert_eq!(http(401, "ERR_UNAUTHORIZED").recovery(), Recovery::Fatal);
    }

    #[test]
    fn conflicts_and_stale_sequencers_reopen_timeouts_retry() {
        for code in [
            "STALE_CONTINUATION_TOKEN_ROW_SEQUENCER",
            "ERR_CHANNEL_HAS_INVALID_ROW_SEQUENCER",
            "ERR_CHANNEL_HAS_INVALID_CLIENT_SEQUENCER",
        ] {
            assert_eq!(http(400, code).recovery(), Recovery::Reopen, "{code}");
        }
        assert_eq!(http(409, "ERR_SOMETHING_NEW").recovery(), Recovery::Reopen);
        assert_eq!(http(408, "ERR_REQUEST_TIMEOUT").recovery(), Recovery::Retry);
        assert_eq!(http(502, "").recovery(), Recovery::Retry);
        let invalid = StreamingError::ChannelInvalid {
            channel: "C".into(),
            code: "ERR_CHANNEL_MUST_BE_REOPENED".into(),
            message: String::new(),
        };
        assert_eq!(invalid.recovery(), Recovery::Reopen);
        assert_eq!(
            StreamingError::Transport("reset".into()).recovery(),
            Recovery::Retry
        );
    }
}
