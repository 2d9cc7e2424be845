//! Errors of the Snowflake client. None of them ever carries key or token material.

use crate::config::ConfigError;

use super::ident::IdentError;

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    /// The statement failed in Snowflake (HTTP 422): compilation error, constraint, bad data, ...
    #[error("SQL error {code} ({sql_state}): {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    Sql {
        code: String,
        sql_state: String,
        message: String,
        statement_handle: Option<String>,
    },

    /// HTTP 401 twice in a row: once with the cached token and once with a freshly made one.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The caller's deadline passed before the statement finished; `last` is the last transient
    /// failure seen (or "statement still running" when it was being polled).
    #[error("deadline exceeded after {attempts} HTTP attempt(s); last: {last}")]
    DeadlineExceeded { attempts: u32, last: String },

    /// HTTP 408: the statement ran longer than its `timeout` and Snowflake canceled it.
    #[error("statement timed out and was canceled by Snowflake: {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    StatementTimeout {
        message: String,
        statement_handle: Option<String>,
    },

    /// The statement was canceled (SQL error 000604), e.g. by another client.
    #[error("statement canceled: {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    Canceled {
        message: String,
        statement_handle: Option<String>,
    },

    /// Any other HTTP status (400, 403, 404, ...; or 429/5xx when classified individually).
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },

    /// Connection refused/reset, DNS, timeout of one HTTP attempt: retryable.
    #[error("transport: {0}")]
    Transport(String),

    /// A response that does not follow the SQL API (unparseable JSON, missing handle, ...).
    #[error("unexpected response: {0}")]
    Protocol(String),

    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The private key cannot be read or used, or a token cannot be made. Never contains the key.
    #[error("key: {0}")]
    Key(String),

    /// Secrets Manager could not provide the key or token.
    #[error("secret {arn}: {message}")]
    Secret { arn: String, message: String },

    #[error(transparent)]
    Ident(#[from] IdentError),
}

impl SnowflakeError {
    /// True when sending the same request again later may succeed: throttling (429), server
    /// errors (500/502/503/504), transport failures, and an exceeded deadline (the statement may
    /// still finish; re-sending the same deterministic requestId picks up its outcome).
    /// A statement aborted by lock contention is retryable too. Other SQL errors, auth
    /// failures, statement timeouts and configuration errors are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            SnowflakeError::Http { status, .. } => is_retryable_status(*status),
            SnowflakeError::Transport(_) | SnowflakeError::DeadlineExceeded { .. } => true,
            _ => self.is_lock_contention(),
        }
    }

    /// Snowflake aborted the statement because too many statements were already queued on the
    /// table's lock (`000625 (57014)`: "the number of waiters for this lock exceeds the 20
    /// statements limit"; https://docs.snowflake.com/en/sql-reference/transactions#resource-locking).
    /// Nothing ran; the same statement succeeds once the queue drains.
    pub fn is_lock_contention(&self) -> bool {
        matches!(self, SnowflakeError::Sql { code, .. } if code == "000625")
    }

    /// The statement failed on the values it was given (SQL state class 22, "data exception": a
    /// cast out of range, unparseable JSON; or 100090, a target row joined by several source rows
    /// of a MERGE, reported as 42P18): every retry of the same rows fails the same way, and only
    /// splitting the statement isolates the rows.
    pub fn is_data_error(&self) -> bool {
        matches!(self, SnowflakeError::Sql { sql_state, code, .. }
            if sql_state.starts_with("22") || code == "100090")
    }

    /// The Snowflake error code of a SQL error, e.g. `"002003"` for an object that does not exist.
    pub fn sql_code(&self) -> Option<&str> {
        match self {
            SnowflakeError::Sql { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// HTTP statuses that the SQL API documents as transient.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 500 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_classification() {
        for s in [429, 500, 502, 503, 504] {
            assert!(
                SnowflakeError::Http {
                    status: s,
                    message: String::new()
                }
                .is_retryable(),
                "{s}"
            );
        }
        for s in [400, 401, 403, 404, 405, 415] {
            assert!(
                !SnowflakeError::Http {
                    status: s,
                    message: String::new()
                }
                .is_retryable(),
                "{s}"
            );
        }
        assert!(SnowflakeError::Transport("connection reset".into()).is_retryable());
        assert!(SnowflakeError::DeadlineExceeded {
            attempts: 3,
            last: "503".into()
        }
        .is_retryable());
        let sql = SnowflakeError::Sql {
            code: "002003".into(),
            sql_state: "42S02".into(),
            message: "does not exist".into(),
            statement_handle: Some("h".into()),
        };
        assert!(!sql.is_retryable());
        assert!(!sql.is_data_error());
        assert_eq!(sql.sql_code(), Some("002003"));
        let lock = SnowflakeError::Sql {
            code: "000625".into(),
            sql_state: "57014".into(),
            message: "the number of waiters for this lock exceeds the 20 statements limit".into(),
            statement_handle: None,
        };
        assert!(lock.is_retryable() && lock.is_lock_contention() && !lock.is_data_error());
        let out_of_range = SnowflakeError::Sql {
            code: "100039".into(),
            sql_state: "22003".into(),
            message: "Numeric value '123.45' is out of range".into(),
            statement_handle: None,
        };
        assert!(out_of_range.is_data_error() && !out_of_range.is_retryable());
        assert!(!SnowflakeError::Unauthorized("x".into()).is_retryable());
        assert!(!SnowflakeError::StatementTimeout {
            message: "t".into(),
            statement_handle: None
        }
        .is_retryable());
        assert!(!SnowflakeError::Key("bad".into()).is_retryable());
    }
}
