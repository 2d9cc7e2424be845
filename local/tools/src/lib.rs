//! Tools around the functions: the load generator, the local event source mapping that invokes
//! the handlers as Lambda would, and the demo that wires them to the local stack.

pub mod args;
pub mod demo;
pub mod esm;
pub mod events;
pub mod loadgen;
