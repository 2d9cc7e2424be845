//! Snowpipe Streaming REST API client (high-performance architecture, named channels):
//! <https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-api>.
//!
//! The flow: `GET /v2/streaming/hostname` on the account URL, `POST /oauth/token` there to trade
//! the account's key-pair JWT / PAT / OAuth token for a scoped token, then on the ingest host:
//! open a channel (`PUT …/channels/{c}`, answers the last committed offset token and a
//! continuation token), append NDJSON rows (`POST /v2/streaming/data/…/channels/{c}/rows`, each
//! answer carries the next continuation token), read committed offsets
//! (`POST …/pipes/{p}:bulk-channel-status`) and drop the channel (`DELETE`). Requests are at
//! most 4 MB after compression (the page's limit); errors are `{"code", "message"}`.
//!
//! Exactly once comes from the caller: an append carries the offset tokens of its first and last
//! rows, an accepted append is not yet committed (commits are asynchronous), the channel's
//! status and a reopened channel answer the last committed offset token, and the caller skips
//! what is at or below it. This client classifies errors for that ([`Recovery`]): retry the same
//! request (408, 429, 5xx, transport), reopen the channel (stale continuation token or sequencer,
//! 409, invalid channel; a reopen discards what was not committed), or give up.

mod api;
mod client;
mod error;

/// The one classification of errors, re-exported where the streaming client's callers look.
pub use crate::snowflake::Recovery;
pub use api::{ChannelStatus, MAX_REQUEST_BYTES};
pub use client::{Channel, StreamingClient};
pub use error::StreamingError;
