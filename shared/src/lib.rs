//! The library every function of the Kinesis → S3 → Snowflake pipeline shares, in folders by the
//! path they serve: `kinesis` (reading batches), `rawzone` (objects in S3), `upsert` (MERGE)
//! and `snowflake` (the SQL API client and set-up). COPY INTO lives in the `loader` crate, its
//! only user.
//!
//! Pure logic (decoding, routing, encoding, key layout, SQL text, de-duplication) lives apart
//! from I/O (S3, Snowflake HTTP) so it can be tested with plain values.

pub mod aws;
pub mod config;
pub mod kinesis;
pub mod lambda;
pub mod logging;
pub mod metrics;
pub mod rawzone;
pub mod runtime;
/// Generated events for benchmarks, examples and the load generator; not part of the functions.
#[cfg(any(test, feature = "sample"))]
pub mod sample;
pub mod snowflake;
pub mod upsert;
