//! `WRITE_MODE=streaming`: every change of a batch is appended to its table's change table
//! through Snowpipe Streaming, one channel per (table, stream and shard), with the Kinesis
//! position of the last appended record as the offset token. Exactly once: a (re)opened channel
//! answers its committed offset token and records at or below it are skipped; the batch is
//! acknowledged only once the channel reports the last offset committed, else Lambda resends
//! it and the same skip applies.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use shared::config::{ConfigError, Env};
use shared::kinesis::record::cmp_positions;
use shared::snowflake::ident;
use shared::snowflake::streaming::{
    Channel, Recovery, StreamingClient, StreamingError, MAX_REQUEST_BYTES,
};
use shared::snowflake::{SnowflakeClient, SnowflakeConfig};
use shared::upsert::changes::{
    is_committed, offset_reached, offset_token, push_change_line, ChangeObjects,
};
use shared::upsert::mapping::TableMapping;
use shared::upsert::merge::Candidate;

use crate::TableOutcome;

/// How the function writes a batch (`WRITE_MODE`).
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// One MERGE per table and chunk (the default).
    Merge,
    Streaming(StreamingSettings),
}

#[derive(Debug, Clone)]
pub struct StreamingSettings {
    /// Appended to each target's name for its change table (`CHANGE_TABLE_SUFFIX`, `_CHANGES`).
    pub change_suffix: String,
    /// The Dynamic Table of the latest state (`LATEST_TABLE_SUFFIX`, `_LATEST`); made by
    /// `bootstrap --streaming`, read by nobody here.
    pub latest_suffix: String,
    /// The connection's database and schema as the streaming API's paths name them.
    pub database: String,
    pub schema: String,
}

impl WriteMode {
    pub fn from_env(env: &Env<'_>, snowflake: &SnowflakeConfig) -> Result<Self, ConfigError> {
        match env.optional("WRITE_MODE").as_deref().unwrap_or("merge") {
            "merge" => Ok(WriteMode::Merge),
            "streaming" => {
                let database = snowflake.database.as_deref().ok_or_else(|| {
                    ConfigError::new(
                        "SNOWFLAKE_DATABASE",
                        "is required with WRITE_MODE=streaming",
                    )
                })?;
                let suffix = |var: &str, default: &str| {
                    let s = env.optional(var).unwrap_or_else(|| default.into());
                    if s.is_empty()
                        || !s
                            .bytes()
                            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
                    {
                        return Err(ConfigError::new(
                            var,
                            "must be upper-case letters, digits and _",
                        ));
                    }
                    Ok(s)
                };
                Ok(WriteMode::Streaming(StreamingSettings {
                    change_suffix: suffix("CHANGE_TABLE_SUFFIX", "_CHANGES")?,
                    latest_suffix: suffix("LATEST_TABLE_SUFFIX", "_LATEST")?,
                    database: ident::resolve(database)
                        .map_err(|e| ConfigError::new("SNOWFLAKE_DATABASE", e.to_string()))?,
                    schema: ident::resolve(&snowflake.schema)
                        .map_err(|e| ConfigError::new("SNOWFLAKE_SCHEMA", e.to_string()))?,
                }))
            }
            other => Err(ConfigError::new(
                "WRITE_MODE",
                format!("{other:?} is not merge or streaming"),
            )),
        }
    }
}

/// Why a table's appends did not complete.
#[derive(Debug)]
pub enum StreamFailure {
    /// Resend the batch (after a backoff Lambda provides): throttling, a deadline, a channel
    /// reopened too often.
    Retry(String),
    /// Configuration or credentials.
    Fatal(StreamingError),
}

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

    /// Appends a table's changes of one batch (all from one shard) and waits until they are
    /// committed.
    pub async fn write(
        &self,
        mapping: &TableMapping,
        mut candidates: Vec<Candidate<'_>>,
        deadline: Instant,
    ) -> Result<TableOutcome, StreamFailure> {
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
        'appending: loop {
            if !channels.contains_key(&key) {
                let channel = self
                    .client
                    .open_channel(
                        &self.settings.database,
                        &self.settings.schema,
                        &objects.pipe,
                        &name,
                        deadline,
                    )
                    .await
                    .map_err(failure)?;
                outcome.http_requests += 1;
                let high_water = channel.committed_when_opened.clone();
                channels.insert(
                    key.clone(),
                    ChannelState {
                        channel,
                        high_water,
                    },
                );
            }
            let state = channels.get_mut(&key).expect("inserted above");
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
                match self
                    .client
                    .append(&mut state.channel, body.as_bytes(), &offset, deadline)
                    .await
                {
                    Ok(()) => {
                        outcome.statements += 1;
                        outcome.http_requests += 1;
                        outcome.inserted += chunk.len() as u64;
                        state.high_water = Some(offset);
                    }
                    Err(e) if e.recovery() == Recovery::Reopen && reopens < MAX_REOPENS => {
                        reopens += 1;
                        tracing::warn!(channel = %name, error = %e, "channel must be reopened; resuming after its committed offset");
                        channels.remove(&key);
                        continue 'appending;
                    }
                    Err(e) => return Err(failure(e)),
                }
            }
            break;
        }
        let Some(high_water) = channels.get(&key).and_then(|s| s.high_water.clone()) else {
            return Ok(outcome);
        };
        drop(channels);
        self.wait_committed(&objects, &name, &high_water, deadline)
            .await?;
        Ok(outcome)
    }

    /// Polls the channel's status until its committed offset token reaches `offset`.
    async fn wait_committed(
        &self,
        objects: &ChangeObjects,
        name: &str,
        offset: &str,
        deadline: Instant,
    ) -> Result<(), StreamFailure> {
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
                .map_err(failure)?;
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
                return Err(StreamFailure::Retry(format!(
                    "offset {offset} not committed before the deadline (committed: {:?})",
                    status.last_committed_offset_token
                )));
            }
            tokio::time::sleep(COMMIT_POLL).await;
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

fn failure(e: StreamingError) -> StreamFailure {
    match e.recovery() {
        Recovery::Fatal => StreamFailure::Fatal(e),
        Recovery::Retry | Recovery::Reopen | Recovery::Isolate => {
            StreamFailure::Retry(e.to_string())
        }
    }
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
