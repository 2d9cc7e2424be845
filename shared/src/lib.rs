//! The library every function of the Kinesis → S3 → Snowflake pipeline shares.
//!
//! Pure logic (decoding, routing, encoding, key layout, SQL text, de-duplication) lives apart
//! from I/O (S3, Snowflake HTTP) so it can be tested with plain values.

pub mod aws;
pub mod batch;
pub mod bootstrap;
pub mod config;
pub mod copy;
pub mod encode;
pub mod json;
pub mod layout;
pub mod logging;
pub mod mapping;
pub mod merge;
pub mod notify;
pub mod payload;
pub mod quarantine;
pub mod rawzone;
pub mod record;
pub mod route;
pub mod s3;
pub mod sample;
mod scan;
pub mod snowflake;
