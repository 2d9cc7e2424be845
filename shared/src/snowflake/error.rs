//! Errors of the Snowflake client. None of them ever carries key or token material.

use crate::config::ConfigError;

use super::ident::IdentError;
use super::recovery::Recovery;

/// What went wrong running a statement.
#[derive(Debug, thiserror::Error)]
pub enum SnowflakeError {
    /// The statement failed in Snowflake (HTTP 422): compilation error, constraint, bad data, ...
    #[error("SQL error {code} ({sql_state}): {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    Sql {
        /// Snowflake's error code (`"002003"`: no such object); empty if the body had none.
        code: String,
        /// The five-character SQLSTATE (`"42S02"`); its first two characters are the class.
        sql_state: String,
        /// Snowflake's message, as the response body gives it.
        message: String,
        /// The failed statement's handle, to look it up in the query history; None if not sent.
        statement_handle: Option<String>,
    },

    /// HTTP 401 twice in a row: once with the cached token and once with a freshly made one.
    #[error("unauthorized: {0}")]
    Unauthorized(String),

    /// The caller's deadline passed before the statement finished; `last` is the last transient
    /// failure seen (or "statement still running" when it was being polled).
    #[error("deadline exceeded after {attempts} HTTP attempt(s); last: {last}")]
    DeadlineExceeded {
        /// HTTP requests sent for the statement, polls included.
        attempts: u32,
        /// The last transient failure seen, or "statement still running".
        last: String,
    },

    /// HTTP 408: the statement ran longer than its `timeout` and Snowflake canceled it.
    #[error("statement timed out and was canceled by Snowflake: {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    StatementTimeout {
        /// Snowflake's message, or "statement timeout" if the body had none.
        message: String,
        /// The canceled statement's handle; None if the response did not give it.
        statement_handle: Option<String>,
    },

    /// The statement was canceled (SQL error 000604), e.g. by another client.
    #[error("statement canceled: {message} [statement {}]", statement_handle.as_deref().unwrap_or("-"))]
    Canceled {
        /// Snowflake's message.
        message: String,
        /// The canceled statement's handle; None if the response did not give it.
        statement_handle: Option<String>,
    },

    /// Any other HTTP status (400, 403, 404, ...; or 429/5xx when classified individually).
    #[error("HTTP {status}: {message}")]
    Http {
        /// The HTTP status code.
        status: u16,
        /// `code: message` of the error body, or the body's text; at most 500 characters.
        message: String,
    },

    /// Connection refused/reset, DNS, timeout of one HTTP attempt: retryable.
    #[error("transport: {0}")]
    Transport(String),

    /// A response that does not follow the SQL API (unparseable JSON, missing handle, ...).
    #[error("unexpected response: {0}")]
    Protocol(String),

    /// The configuration is incomplete or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The private key cannot be read or used, or a token cannot be made. Never contains the key.
    #[error("key: {0}")]
    Key(String),

    /// Secrets Manager could not provide the key or token.
    #[error("secret {arn}: {message}")]
    Secret {
        /// The ARN of the secret that was asked for.
        arn: String,
        /// Why: the Secrets Manager error, or a secret without a `SecretString`.
        message: String,
    },

    /// A configured name is not a valid identifier.
    #[error(transparent)]
    Ident(#[from] IdentError),
}

impl SnowflakeError {
    /// What the caller should do about this error:
    /// - [`Recovery::Retry`]: throttling (429), server errors (500/502/503/504), transport
    ///   failures, an exceeded deadline (the statement may still finish; re-sending the same
    ///   deterministic requestId picks up its outcome) and lock contention (000625).
    /// - [`Recovery::Isolate`]: a data error (SQL state class 22, or 100090), see
    ///   [`is_data_error`](Self::is_data_error).
    /// - [`Recovery::Fatal`]: credentials or configuration (`Unauthorized`, `Config`, `Key`,
    ///   `Secret`).
    /// - [`Recovery::Reopen`]: everything else (other SQL errors, a statement timeout, a
    ///   canceled statement, another HTTP status, an unexpected response, a bad identifier):
    ///   the same request will not succeed now, but the batch sent again later may.
    ///
    /// The upsert fails the invocation on `Fatal`, splits the statement on `Isolate`, and hands
    /// the batch back to Lambda on `Retry` and `Reopen`. The loader's choice to copy file by
    /// file (any SQL error but SQL state classes 42 and 0A) looks at the SQL state itself: a
    /// lock contention (`Retry`) and a missing table (`Reopen`) are told apart there.
    pub fn recovery(&self) -> Recovery {
        match self {
            // a data error wins over the lock code: the same rows would fail again
            _ if self.is_data_error() => Recovery::Isolate,
            _ if self.is_lock_contention() => Recovery::Retry,
            SnowflakeError::Http { status, .. } if is_retryable_status(*status) => Recovery::Retry,
            SnowflakeError::Transport(_) | SnowflakeError::DeadlineExceeded { .. } => {
                Recovery::Retry
            }
            SnowflakeError::Unauthorized(_)
            | SnowflakeError::Config(_)
            | SnowflakeError::Key(_)
            | SnowflakeError::Secret { .. } => Recovery::Fatal,
            SnowflakeError::Sql { .. }
            | SnowflakeError::StatementTimeout { .. }
            | SnowflakeError::Canceled { .. }
            | SnowflakeError::Http { .. }
            | SnowflakeError::Protocol(_)
            | SnowflakeError::Ident(_) => Recovery::Reopen,
        }
    }

    /// True when sending the same request again later may succeed ([`Recovery::Retry`]).
    pub fn is_retryable(&self) -> bool {
        self.recovery() == Recovery::Retry
    }

    /// Snowflake aborted the statement because too many statements were already queued on the
    /// table's lock (`000625 (57014)`: "the number of waiters for this lock exceeds the 20
    /// statements limit"; https://docs.snowflake.com/en/sql-reference/transactions#resource-locking).
    /// Nothing ran; the same statement succeeds once the queue drains.
    pub(crate) fn is_lock_contention(&self) -> bool {
        matches!(self, SnowflakeError::Sql { code, .. } if code == "000625")
    }

    /// The statement failed on the values it was given (SQL state class 22, "data exception": a
    /// cast out of range, unparseable JSON; or 100090, a target row joined by several source rows
    /// of a MERGE, reported as 42P18): every retry of the same rows fails the same way, and only
    /// splitting the statement isolates the rows ([`Recovery::Isolate`]).
    pub(crate) fn is_data_error(&self) -> bool {
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

    fn sql(code: &str, sql_state: &str) -> SnowflakeError {
        SnowflakeError::Sql {
            code: code.into(),
            sql_state: sql_state.into(),
            message: String::new(),
            statement_handle: None,
        }
    }

    /// One error of every variant (and every kind of SQL error) with its recovery.
    fn every_variant() -> Vec<(SnowflakeError, Recovery)> {
        let http = |status| SnowflakeError::Http {
            status,
            message: String::new(),
        };
        vec![
            (http(429), Recovery::Retry),
            (http(503), Recovery::Retry),
            (SnowflakeError::Transport("reset".into()), Recovery::Retry),
            (
                SnowflakeError::DeadlineExceeded {
                    attempts: 2,
                    last: "503".into(),
                },
                Recovery::Retry,
            ),
            (sql("000625", "57014"), Recovery::Retry),
            (sql("100039", "22003"), Recovery::Isolate),
            (sql("100090", "42P18"), Recovery::Isolate),
            (SnowflakeError::Unauthorized("x".into()), Recovery::Fatal),
            (
                SnowflakeError::Config(ConfigError::new("SNOWFLAKE_SCHEMA", "required")),
                Recovery::Fatal,
            ),
            (SnowflakeError::Key("bad".into()), Recovery::Fatal),
            (
                SnowflakeError::Secret {
                    arn: "arn".into(),
                    message: "denied".into(),
                },
                Recovery::Fatal,
            ),
            (sql("002003", "42S02"), Recovery::Reopen),
            (sql("000002", "0A000"), Recovery::Reopen),
            (sql("100132", "P0000"), Recovery::Reopen),
            (
                SnowflakeError::StatementTimeout {
                    message: "t".into(),
                    statement_handle: None,
                },
                Recovery::Reopen,
            ),
            (
                SnowflakeError::Canceled {
                    message: "c".into(),
                    statement_handle: None,
                },
                Recovery::Reopen,
            ),
            (http(400), Recovery::Reopen),
            (http(404), Recovery::Reopen),
            (
                SnowflakeError::Protocol("no handle".into()),
                Recovery::Reopen,
            ),
            (SnowflakeError::Ident(IdentError::Empty), Recovery::Reopen),
        ]
    }

    #[test]
    fn every_variant_says_what_to_do() {
        for (e, recovery) in every_variant() {
            assert_eq!(e.recovery(), recovery, "{e:?}");
            assert_eq!(e.is_retryable(), recovery == Recovery::Retry, "{e:?}");
            assert_eq!(e.is_data_error(), recovery == Recovery::Isolate, "{e:?}");
        }
    }

    /// The upsert's rules today (`is_fatal`, `is_data_error`) follow from `recovery()` alone.
    #[test]
    fn the_upserts_rules_follow_from_recovery() {
        let upsert_is_fatal = |e: &SnowflakeError| {
            matches!(
                e,
                SnowflakeError::Unauthorized(_)
                    | SnowflakeError::Config(_)
                    | SnowflakeError::Key(_)
                    | SnowflakeError::Secret { .. }
            )
        };
        for (e, _) in every_variant() {
            assert_eq!(
                upsert_is_fatal(&e),
                e.recovery() == Recovery::Fatal,
                "{e:?}"
            );
            assert_eq!(
                e.is_data_error(),
                e.recovery() == Recovery::Isolate,
                "{e:?}"
            );
        }
    }

    /// The loader's rule (copy file by file after any SQL error but classes 42 and 0A) does not
    /// follow from `recovery()`: it keeps its own predicate on the SQL state.
    #[test]
    fn the_loaders_rule_needs_the_sql_state() {
        let lock = sql("000625", "57014");
        let unavailable = SnowflakeError::Http {
            status: 503,
            message: String::new(),
        };
        assert_eq!(lock.recovery(), unavailable.recovery());
        let (udf, missing) = (sql("100132", "P0000"), sql("002003", "42S02"));
        assert_eq!(udf.recovery(), missing.recovery());
    }
}
