//! `WRITE_MODE=streaming`: every change of a batch is appended to its table's change table
//! through Snowpipe Streaming, one channel per (table, stream and shard), with the Kinesis
//! position of the last appended record as the offset token. Exactly once: a (re)opened channel
//! answers its committed offset token and records at or below it are skipped; the batch is
//! acknowledged only once the channel reports the last offset committed, else Lambda resends
//! it and the same skip applies.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::changes::{is_committed, offset_reached, offset_token, push_change_line, ChangeObjects};
use crate::mapping::TableMapping;
use crate::merge::Candidate;
use shared::kinesis::record::cmp_positions;
use shared::snowflake::streaming::{
    Channel, Recovery, StreamingClient, StreamingError, MAX_REQUEST_BYTES,
};
use shared::snowflake::SnowflakeClient;

use crate::config::StreamingSettings;
use crate::error::HandlerError;
use crate::outcome::TableOutcome;
use crate::service::{TableFailure, TableResult};

/// An open channel and the offset of the last row appended through it (committed or on its
/// way): what the next batch skips up to.
struct ChannelState {
    channel: Channel,
    high_water: Option<String>,
}

/// The streaming side of the function: the client and the channels it keeps open across
/// invocations of a container.
pub struct StreamingWriter {
    settings: StreamingSettings,
    client: StreamingClient,
    channels: tokio::sync::Mutex<HashMap<String, ChannelState>>,
}

/// A channel reopened more often than this within one batch means something else writes it.
const MAX_REOPENS: u32 = 3;
const COMMIT_POLL: Duration = Duration::from_millis(100);

impl StreamingWriter {
    pub fn new(settings: StreamingSettings, snowflake: &SnowflakeClient) -> Self {
        Self {
            settings,
            client: StreamingClient::new(snowflake),
            channels: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Appends a table's changes to its change table, as the handler sees it: what did not
    /// commit is resent by Lambda (committed rows are skipped then).
    pub(crate) async fn write_table<'r>(
        &self,
        mapping: &TableMapping,
        table: &str,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> TableResult<'r> {
        match self.write(mapping, candidates, deadline).await {
            Ok(outcome) => Ok((outcome, Vec::new())),
            Err(TableFailure::Retry(outcome)) => {
                tracing::error!(table, error = ?outcome.error, "appends not committed; Lambda will resend from this table's lowest sequence number (committed rows are skipped)");
                Err(TableFailure::Retry(outcome))
            }
            Err(fatal) => Err(fatal),
        }
    }

    /// Appends a table's changes of one batch (all from one shard) and waits until they are
    /// committed.
    pub(crate) async fn write(
        &self,
        mapping: &TableMapping,
        mut candidates: Vec<Candidate<'_>>,
        deadline: Instant,
    ) -> Result<TableOutcome, TableFailure> {
        let mut outcome = TableOutcome {
            rows: candidates.len(),
            ..TableOutcome::default()
        };
        // Stable: a DMS key change's delete of the old key stays before its new row.
        candidates.sort_by(|a, b| cmp_positions(&a.meta, &b.meta));
        let Some(first) = candidates.first() else {
            return Ok(outcome);
        };
        let objects = ChangeObjects::of(
            mapping,
            &self.settings.change_suffix,
            &self.settings.latest_suffix,
        );
        let name = format!("{}_{}", first.meta.stream, first.meta.shard_id);
        let key = format!("{}/{name}", objects.pipe);
        let mut channels = self.channels.lock().await;
        let mut reopens = 0;
        loop {
            let state = match channels.entry(key.clone()) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => {
                    e.insert(self.open(&objects, &name, deadline, &mut outcome).await?)
                }
            };
            match self
                .append_new(state, mapping, &candidates, deadline, &mut outcome)
                .await
            {
                Ok(()) => break,
                Err(e) if e.recovery() == Recovery::Reopen && reopens < MAX_REOPENS => {
                    reopens += 1;
                    tracing::warn!(channel = %name, error = %e, "channel must be reopened; resuming after its committed offset");
                    channels.remove(&key);
                }
                Err(e) => return Err(failure(e, outcome.rows)),
            }
        }
        let Some(high_water) = channels.get(&key).and_then(|s| s.high_water.clone()) else {
            return Ok(outcome);
        };
        drop(channels);
        self.wait_committed(&objects, &name, &high_water, deadline)
            .await
            .map_err(|e| e.into_failure(outcome.rows))?;
        Ok(outcome)
    }

    /// Opens the channel; what it had committed is where this batch's appends resume.
    async fn open(
        &self,
        objects: &ChangeObjects,
        name: &str,
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<ChannelState, TableFailure> {
        let channel = self
            .client
            .open_channel(
                &self.settings.database,
                &self.settings.schema,
                &objects.pipe,
                name,
                deadline,
            )
            .await
            .map_err(|e| failure(e, outcome.rows))?;
        outcome.http_requests += 1;
        let high_water = channel.committed_when_opened.clone();
        Ok(ChannelState {
            channel,
            high_water,
        })
    }

    /// Appends the candidates above the channel's high-water mark, in requests within the
    /// size limit, each with the offset token of its last row.
    async fn append_new(
        &self,
        state: &mut ChannelState,
        mapping: &TableMapping,
        candidates: &[Candidate<'_>],
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<(), StreamingError> {
        let pending: Vec<&Candidate<'_>> = candidates
            .iter()
            .filter(|c| {
                state
                    .high_water
                    .as_deref()
                    .is_none_or(|hw| !is_committed(&c.meta, hw))
            })
            .collect();
        outcome.duplicates = candidates.len() - pending.len();
        let lines: Vec<String> = pending
            .iter()
            .map(|c| {
                let mut line = String::new();
                push_change_line(&mut line, mapping, &c.row, c.payload.as_deref(), &c.meta);
                line
            })
            .collect();
        for range in requests(&lines) {
            let chunk = &pending[range.clone()];
            let body = lines[range].concat();
            let offset = offset_token(&chunk[chunk.len() - 1].meta);
            self.client
                .append(&mut state.channel, body.as_bytes(), &offset, deadline)
                .await?;
            outcome.statements += 1;
            outcome.http_requests += 1;
            outcome.inserted += chunk.len() as u64;
            state.high_water = Some(offset);
        }
        Ok(())
    }

    /// Polls the channel's status until its committed offset token reaches `offset`.
    async fn wait_committed(
        &self,
        objects: &ChangeObjects,
        name: &str,
        offset: &str,
        deadline: Instant,
    ) -> Result<(), NotCommitted> {
        loop {
            let statuses = self
                .client
                .channel_status(
                    &self.settings.database,
                    &self.settings.schema,
                    &objects.pipe,
                    &[name],
                    deadline,
                )
                .await
                .map_err(NotCommitted::Error)?;
            let status = statuses.get(name).cloned().unwrap_or_default();
            if let Some(committed) = status.last_committed_offset_token.as_deref() {
                if offset_reached(committed, offset) {
                    if let Some(n) = status.rows_error_count.filter(|n| *n > 0) {
                        tracing::error!(channel = name, rows_refused = n, last_error = ?status.last_error_message, "Snowflake refused rows of this channel (counted since it was created)");
                    }
                    return Ok(());
                }
            }
            if Instant::now() + COMMIT_POLL >= deadline {
                return Err(NotCommitted::Deadline(format!(
                    "offset {offset} not committed before the deadline (committed: {:?})",
                    status.last_committed_offset_token
                )));
            }
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }
}

/// Why appended rows were not seen committed.
enum NotCommitted {
    /// The status request failed.
    Error(StreamingError),
    /// The deadline came first.
    Deadline(String),
}

impl NotCommitted {
    fn into_failure(self, rows: usize) -> TableFailure {
        match self {
            NotCommitted::Error(e) => failure(e, rows),
            NotCommitted::Deadline(why) => resend(why, rows),
        }
    }
}

/// Cuts lines into requests within the size limit, measured before compression (which only
/// shrinks them); a line larger than a request travels alone and is refused by the client.
fn requests(lines: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        if i > start && bytes + line.len() > MAX_REQUEST_BYTES {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += line.len();
    }
    if start < lines.len() {
        out.push(start..lines.len());
    }
    out
}

/// What an error the writer cannot recover from within the batch means for it: credentials or
/// configuration fail the invocation, anything else has Lambda resend the table's `rows`.
fn failure(e: StreamingError, rows: usize) -> TableFailure {
    match e.recovery() {
        Recovery::Fatal => TableFailure::Fatal(HandlerError::Streaming(e)),
        Recovery::Retry | Recovery::Reopen | Recovery::Isolate => resend(e.to_string(), rows),
    }
}

/// Lambda resends the table's `rows` (committed ones are skipped then).
fn resend(error: String, rows: usize) -> TableFailure {
    TableFailure::Retry(TableOutcome {
        rows,
        error: Some(error),
        ..TableOutcome::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_within_the_limit() {
        let line = "x".repeat(1024 * 1024);
        let lines = vec![line.clone(), line.clone(), line.clone(), line.clone(), line];
        assert_eq!(requests(&lines), vec![0..4, 4..5]);
        assert_eq!(requests(&[]), Vec::<std::ops::Range<usize>>::new());
    }
}
