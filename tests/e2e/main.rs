//! End-to-end tests against the local stack started by `make test` (`local/stack.sh up`):
//! moto on `MOTO_URL` (default http://127.0.0.1:4566) and the local Snowflake SQL API service on
//! `LOCAL_SF_URL` (default http://127.0.0.1:8787). Every test uses its own bucket or tables, so
//! they run in parallel against one stack.

mod support;

mod bootstrap;
mod cdc;
mod chaos;
mod generated_events;
mod kms;
mod latest;
mod loader;
mod orchestrator;
mod pipeline;
mod quarantine;
mod redrive;
mod replay;
mod snowflake_client;
mod streaming;
mod upsert;
