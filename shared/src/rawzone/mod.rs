//! The micro-batch path's first half: a Kinesis batch planned as compressed objects in the S3 raw
//! zone (deterministic keys, encoders, quarantine) and put there.

pub mod encode;
pub mod layout;
mod object;
mod plan;
pub mod quarantine;
pub mod s3;

pub use object::PlannedObject;
pub use plan::{plan, Plan, RawZoneConfig};
