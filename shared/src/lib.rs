//! The library every function of the Kinesis → S3 → Snowflake pipeline shares, in folders by the
//! path they serve: `kinesis` (reading batches and their sequence numbers), `rawzone` (objects
//! in S3), `snowflake` (the SQL API and Snowpipe Streaming clients), `lineage` (the names of
//! where a row came from), and `lambda` (what every function repeats around its pipeline).
//! What only one function uses lives in that function's crate (MERGE in `upsert`, COPY INTO in
//! `loader`).
//!
//! Pure logic (decoding, routing, encoding, key layout, SQL text, de-duplication) lives apart
//! from I/O (S3, Snowflake HTTP) so it can be tested with plain values.

pub mod aws;
pub mod config;
pub mod kinesis;
pub mod lambda;
pub mod lineage;
pub mod logging;
pub mod metrics;
pub mod rawzone;
pub mod runtime;
/// Generated events for benchmarks, examples and the load generator; not part of the functions.
#[cfg(any(test, feature = "sample"))]
pub mod sample;
pub mod snowflake;
