//! Snowflake SQL API v2 client.
//!
//! One [`SnowflakeClient`] per Lambda container, built once at init from a [`SnowflakeConfig`]
//! (read from the environment with [`SnowflakeConfig::from_env`]). [`SnowflakeClient::execute`]
//! submits one [`Statement`] (`POST /api/v2/statements`), follows a `202` by polling the statement
//! handle, fetches every result partition, and retries throttling, server and connection errors
//! with jittered exponential backoff until the caller's deadline, re-sending the same `requestId`
//! with `retry=true` so Snowflake does not execute the statement twice.
//!
//! SQL safety: values are always bound ([`Binding`]); identifiers go through [`ident`].

mod auth;
mod client;
mod config;
mod error;
pub mod ident;
mod recovery;
mod retry;
pub mod streaming;
mod types;

pub use auth::JwtSigner;
pub use client::{request_id_for, with_sources, SnowflakeClient};
pub use config::{
    AuthConfig, KeySource, RetryPolicy, SecretString, SnowflakeConfig, TokenSource, TokenType,
};
pub use error::SnowflakeError;
pub use ident::IdentError;
pub use recovery::Recovery;
pub use retry::{retry_until, Attempt};
pub use types::{Binding, ColumnType, QueryResult, Statement};

#[cfg(test)]
mod mock_tests;
