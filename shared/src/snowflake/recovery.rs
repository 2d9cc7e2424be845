//! What a caller should do about a failed Snowflake call: one classification for the SQL API
//! client ([`SnowflakeError::recovery`](super::SnowflakeError::recovery)) and the Snowpipe
//! Streaming client ([`StreamingError::recovery`](super::streaming::StreamingError::recovery)).

/// What the caller should do about an error, decided where the error is defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Send the same request again after a backoff (429, 5xx, a dropped connection, lock
    /// contention): it may succeed as it is.
    Retry,
    /// Start again from what Snowflake has committed: open the channel again and resume after
    /// its committed offset token, or hand the batch back so that its records are sent again
    /// (the same request, resent at once, would fail the same way).
    Reopen,
    /// The rows sent are at fault: every retry of them fails the same way, and only splitting
    /// the request finds the rows to set aside.
    Isolate,
    /// Configuration or credentials: no retry helps until someone fixes them.
    Fatal,
}
