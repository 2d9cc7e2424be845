//! Tools around the functions: the Snowflake bootstrap (`sql/` applied), the load generator, the
//! local event source mapping that invokes the handlers as Lambda would, the demo that wires them
//! to the local stack, the CDC table-equality run, and the cost model.

pub mod args;
pub mod backfill;
pub mod bootstrap;
pub mod cdc;
pub mod ceiling;
pub mod cost;
pub mod demo;
pub mod esm;
pub mod events;
pub mod loadgen;
pub mod loadtest;
pub mod progress;
pub mod redrive;
pub mod replay;
pub mod svg;
pub mod visibility;
