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
    /// One row is larger than a request may be.
    #[error("a row of {0} bytes exceeds the 4 MB request limit")]
    RowTooLarge(usize),
}

impl StreamingError {
    /// What the caller should do: [`Recovery::Reopen`] for a stale continuation token or an
    /// invalid channel, [`Recovery::Retry`] for 429, 5xx, transport failures and a passed
    /// deadline, [`Recovery::Fatal`] otherwise. Never [`Recovery::Isolate`]: a request refused
    /// for its rows is not told apart from other refusals.
    pub fn recovery(&self) -> Recovery {
        match self {
            StreamingError::Http { status, code, .. } => {
                if code.starts_with("STALE_CONTINUATION_TOKEN")
                    || code == "ERR_CHANNEL_MUST_BE_REOPENED"
                    || code == "ERR_CHANNEL_DOES_NOT_EXIST_OR_IS_NOT_AUTHORIZED"
                    || code == "ERR_INVALID_CONTINUATION_TOKEN"
                {
                    Recovery::Reopen
                } else if *status == 429 || *status >= 500 {
                    Recovery::Retry
                } else {
                    Recovery::Fatal
                }
            }
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
        assert_eq!(
            StreamingError::Transport("reset".into()).recovery(),
            Recovery::Retry
        );
    }
}
