//! Reading a Kinesis batch: the Lambda event envelope, KPL aggregates split into their records, routing a record
//! to its table, and the batch response Lambda expects back.

pub mod batch;
pub mod json;
pub mod kpl;
pub mod payload;
pub mod record;
pub mod route;
pub(crate) mod scan;
pub mod sequence;
