//! The streaming path: records mapped to typed rows and merged into Snowflake tables.

pub mod changes;
pub mod envelope;
pub mod mapping;
pub mod merge;
mod number;
