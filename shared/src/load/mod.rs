//! The micro-batch path's second half: object-created notifications turned into `COPY INTO`.

pub mod copy;
pub mod notify;
