//! `WRITE_MODE=streaming`: every change of a batch is appended to its table's change table
//! through Snowpipe Streaming, one channel per (logical table, stream, shard), each append
//! carrying the offset tokens (Kinesis positions) of its first and last rows.
//!
//! Snowflake commits accepted appends asynchronously, and a reopened or invalidated channel
//! discards what it had not committed. So the channel's resume point moves only by commits (the
//! open answer, status polls), never when an append is accepted; the batch is acknowledged only
//! once the channel reports its last offset committed; a channel whose status is not `SUCCESS`,
//! a 409 or a stale sequencer reopens it and re-appends everything above the committed offset, a
//! few times per batch at most, then Lambda resends the table. Records at or below the committed
//! offset are skipped: each change lands once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::changes::{
    change_op, is_committed, landed_query, offset_reached, offset_token, push_change_line,
    ChangeObjects,
};
use crate::mapping::TableMapping;
use crate::merge::Candidate;
use shared::kinesis::record::{cmp_positions, RecordMeta};
use shared::snowflake::streaming::{
    Channel, ChannelStatus, Recovery, StreamingClient, StreamingError, MAX_REQUEST_BYTES,
};
use shared::snowflake::{Binding, SnowflakeClient, SnowflakeError, Statement};

use crate::config::StreamingSettings;
use crate::error::HandlerError;
use crate::outcome::TableOutcome;
use crate::service::{take_refused, TableFailure, TableResult};

/// One channel of the container: its pipe and name (`<TABLE>_<stream>_<shardId>` and the
/// configured suffix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ChannelKey {
    pipe: String,
    name: String,
}

/// What this container knows of a channel.
#[derive(Default)]
struct ChannelState {
    /// The open channel; None before the first open and after an error that asks for a reopen.
    channel: Option<Channel>,
    /// The last offset token Snowflake reported committed (the open answer, status polls): the
    /// next append starts above it.
    committed: Option<String>,
    /// The pipe's column generation the channel was opened at (see [`StreamingWriter::reopen`]).
    generation: u64,
}

/// A channel's state behind its own lock: channels of different tables are written at once.
type Slot = Arc<tokio::sync::Mutex<ChannelState>>;

/// The streaming side of the function: the clients and the channels it keeps open across
/// invocations of a container.
pub struct StreamingWriter {
    settings: StreamingSettings,
    client: StreamingClient,
    snowflake: SnowflakeClient,
    /// Held only to find or insert a slot, never across a request.
    channels: Mutex<HashMap<ChannelKey, Slot>>,
    /// Asked once per new shard for its parents, whose channels are then dropped; None where
    /// no Kinesis client was given (tests, tools).
    kinesis: Option<aws_sdk_kinesis::Client>,
    /// Per pipe, how many times schema evolution changed its table's columns in this container:
    /// a channel opened at an older generation is reopened before its next append.
    generations: Mutex<HashMap<String, u64>>,
    /// Latest-state Dynamic Tables to re-create with the change table's new columns (kept until
    /// a re-create succeeds, so a failed one is tried again by the next batch).
    stale_latest: Mutex<HashSet<String>>,
}

/// A std mutex's guard, whether or not a holder panicked (the maps stay consistent).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A channel reopened more often than this within one batch means something else writes it (or
/// Snowflake keeps invalidating it): Lambda resends the table instead.
const MAX_REOPENS: u32 = 3;
const COMMIT_POLL: Duration = Duration::from_millis(100);
/// Sequence numbers bound per look-up of refused rows.
const LOOKUP_CHUNK: usize = 1000;

/// What one table's appends came to before the refused rows are looked up.
struct Delivered {
    /// Indices of the rows whose commit this call saw, by its own appends.
    committed_here: Vec<usize>,
    /// The status that saw the last append committed; None when nothing was appended.
    status: Option<ChannelStatus>,
}

impl StreamingWriter {
    /// A writer over `snowflake`'s connection and credentials.
    pub fn new(settings: StreamingSettings, snowflake: &SnowflakeClient) -> Self {
        Self {
            settings,
            client: StreamingClient::new(snowflake),
            snowflake: snowflake.clone(),
            channels: Mutex::new(HashMap::new()),
            kinesis: None,
            generations: Mutex::new(HashMap::new()),
            stale_latest: Mutex::new(HashSet::new()),
        }
    }

    /// The settings the writer was made with.
    pub(crate) fn settings(&self) -> &StreamingSettings {
        &self.settings
    }

    /// The change table's columns changed: this container's channels on `pipe` are reopened
    /// before their next append (so the pipe sees the new columns; the reopen resumes from the
    /// committed offset), and the table's latest-state Dynamic Table `latest` is re-created.
    pub(crate) fn reopen(&self, pipe: &str, latest: &str) {
        *lock(&self.generations).entry(pipe.to_string()).or_default() += 1;
        lock(&self.stale_latest).insert(latest.to_string());
    }

    /// Re-creates the Dynamic Table `latest` when the change table's columns changed since it
    /// was last made, with `ddl` (the latest-state query over every column).
    pub(crate) async fn refresh_latest(
        &self,
        latest: &str,
        ddl: &str,
        deadline: Instant,
    ) -> Result<(), SnowflakeError> {
        if !lock(&self.stale_latest).contains(latest) {
            return Ok(());
        }
        self.snowflake
            .execute(&Statement::new(ddl), deadline)
            .await?;
        tracing::info!(
            latest,
            "schema evolution: latest-state Dynamic Table re-created with the new columns"
        );
        lock(&self.stale_latest).remove(latest);
        Ok(())
    }

    /// Drops the channels of a new shard's parents, found with `kinesis` (`ListShards`).
    pub fn with_kinesis(mut self, kinesis: aws_sdk_kinesis::Client) -> Self {
        self.kinesis = Some(kinesis);
        self
    }

    /// Appends a table's changes (all from one shard) to its change table and waits until they
    /// are committed; rows Snowflake refused at commit are returned for the quarantine. What did
    /// not commit is resent by Lambda (committed rows are skipped then).
    pub(crate) async fn write_table<'r>(
        &self,
        mapping: &TableMapping,
        table: &str,
        mut candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> TableResult<'r> {
        let mut outcome = TableOutcome {
            rows: candidates.len(),
            ..TableOutcome::default()
        };
        // Stable: a DMS key change's delete of the old key stays before its new row.
        candidates.sort_by(|a, b| cmp_positions(&a.meta, &b.meta));
        let Some(first) = candidates.first().map(|c| c.meta.clone()) else {
            return Ok((outcome, Vec::new()));
        };
        let objects = ChangeObjects::of(
            mapping,
            &self.settings.change_suffix,
            &self.settings.latest_suffix,
        );
        let key = self.key(&objects, table, &first.stream, &first.shard_id);
        let recovery = self.settings.channel_suffix.is_some();
        if recovery {
            candidates = match self.not_landed(&objects, candidates, deadline).await {
                Ok(rest) if rest.is_empty() => {
                    outcome.duplicates = outcome.rows;
                    return Ok((outcome, Vec::new()));
                }
                Ok(rest) => rest,
                Err(e) => return Err(resend(table, e.to_string(), outcome.rows)),
            };
            self.drop_channel(&key, deadline).await;
        }
        let (slot, new) = self.slot(&key);
        if new && !recovery {
            self.drop_parents(&objects, table, &first, deadline).await;
        }
        let mut state = slot.lock().await;
        let generation = lock(&self.generations).get(&key.pipe).copied().unwrap_or(0);
        if state.generation != generation {
            state.channel = None;
            state.generation = generation;
        }
        let delivered = self
            .deliver(
                &mut state,
                &key,
                mapping,
                &candidates,
                deadline,
                &mut outcome,
            )
            .await;
        let delivered = match delivered {
            Ok(d) => d,
            Err(e) => {
                // Whatever failed, the next invocation opens the channel again and resumes from
                // what Snowflake committed, not from this container's view of it.
                state.channel = None;
                drop(state);
                self.evict(&key);
                return Err(failed(table, e, outcome.rows));
            }
        };
        drop(state);
        if recovery {
            self.drop_channel(&key, deadline).await;
        }
        let refused = self
            .refused(&objects, &key, &candidates, &delivered, deadline)
            .await;
        outcome.refused = refused.len();
        outcome.inserted = (delivered.committed_here.len() - refused.len()) as u64;
        outcome.duplicates = outcome.rows - delivered.committed_here.len();
        let reason = refusal_reason(delivered.status.as_ref());
        let refused = refused.into_iter().map(|i| (i, reason.clone())).collect();
        Ok((outcome, take_refused(candidates, refused)))
    }

    /// The channel of a logical table on one shard: two tables mapped onto one target share
    /// its pipe, never a channel (nor its committed offset).
    fn key(&self, objects: &ChangeObjects, table: &str, stream: &str, shard: &str) -> ChannelKey {
        ChannelKey {
            pipe: objects.pipe.clone(),
            name: channel_name(
                table,
                stream,
                shard,
                self.settings.channel_suffix.as_deref(),
            ),
        }
    }

    /// The channel's slot, and whether it was made now (first use in this container).
    fn slot(&self, key: &ChannelKey) -> (Slot, bool) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        match channels.get(key) {
            Some(slot) => (slot.clone(), false),
            None => {
                let slot = Slot::default();
                channels.insert(key.clone(), slot.clone());
                (slot, true)
            }
        }
    }

    fn evict(&self, key: &ChannelKey) {
        self.channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Appends the rows above the committed offset and waits for their commit, reopening the
    /// channel (which discards what it had not committed) when Snowflake asks for it.
    async fn deliver(
        &self,
        state: &mut ChannelState,
        key: &ChannelKey,
        mapping: &TableMapping,
        candidates: &[Candidate<'_>],
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<Delivered, StreamingError> {
        let mut committed_here = Vec::new();
        let mut reopens = 0;
        loop {
            if state.channel.is_none() {
                self.open(state, key, deadline, outcome).await?;
            }
            let before = state.committed.clone();
            let pending: Vec<usize> = (0..candidates.len())
                .filter(|&i| !at_or_below(&candidates[i].meta, before.as_deref()))
                .collect();
            if pending.is_empty() {
                return Ok(Delivered {
                    committed_here,
                    status: None,
                });
            }
            let result = self
                .append_and_wait(state, key, mapping, candidates, &pending, deadline, outcome)
                .await;
            // What the polls saw committed above `before` was this call's appends: the channel
            // takes no other writer's appends while this one's continuation token is valid.
            committed_here.extend(
                pending
                    .iter()
                    .filter(|&&i| at_or_below(&candidates[i].meta, state.committed.as_deref())),
            );
            match result {
                Ok(status) => {
                    return Ok(Delivered {
                        committed_here,
                        status: Some(status),
                    })
                }
                Err(e) if e.recovery() == Recovery::Reopen && reopens < MAX_REOPENS => {
                    reopens += 1;
                    tracing::warn!(channel = %key.name, error = %e, reopens, "channel must be reopened; resending what is above its committed offset");
                    state.channel = None;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Opens (or reopens) the channel: its committed offset is where appends resume.
    async fn open(
        &self,
        state: &mut ChannelState,
        key: &ChannelKey,
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<(), StreamingError> {
        let channel = self
            .client
            .open_channel(
                &self.settings.database,
                &self.settings.schema,
                &key.pipe,
                &key.name,
                deadline,
            )
            .await?;
        outcome.http_requests += 1;
        state.committed = channel.committed_when_opened.clone();
        state.channel = Some(channel);
        Ok(())
    }

    /// Appends the `pending` rows in requests within the size limit, then polls until the last
    /// one is committed.
    #[allow(clippy::too_many_arguments)]
    async fn append_and_wait(
        &self,
        state: &mut ChannelState,
        key: &ChannelKey,
        mapping: &TableMapping,
        candidates: &[Candidate<'_>],
        pending: &[usize],
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<ChannelStatus, StreamingError> {
        let mut lines = Vec::with_capacity(pending.len());
        let mut tokens = Vec::with_capacity(pending.len());
        for &i in pending {
            let c = &candidates[i];
            let mut line = String::new();
            push_change_line(&mut line, mapping, &c.row, c.payload.as_deref(), &c.meta);
            lines.push(line);
            tokens.push(offset_token(&c.meta));
        }
        let channel = state
            .channel
            .as_mut()
            .expect("deliver opens the channel first");
        for range in requests(&lines, &tokens) {
            let offsets = (tokens[range.start].as_str(), tokens[range.end - 1].as_str());
            let body = lines[range].concat();
            self.client
                .append(channel, body.as_bytes(), offsets, deadline)
                .await?;
            outcome.statements += 1;
            outcome.http_requests += 1;
        }
        let last = tokens.last().expect("pending is not empty");
        self.wait_committed(state, key, last, deadline, outcome)
            .await
    }

    /// Polls the channel's status until its committed offset token reaches `offset`, moving the
    /// state's committed offset as it goes. A status other than `SUCCESS` (or none: the
    /// channel was dropped) ends the wait at once: Snowflake discarded what it had not
    /// committed, and only a reopen lets the rows be sent again.
    async fn wait_committed(
        &self,
        state: &mut ChannelState,
        key: &ChannelKey,
        offset: &str,
        deadline: Instant,
        outcome: &mut TableOutcome,
    ) -> Result<ChannelStatus, StreamingError> {
        loop {
            let mut statuses = self
                .client
                .channel_status(
                    &self.settings.database,
                    &self.settings.schema,
                    &key.pipe,
                    &[&key.name],
                    deadline,
                )
                .await?;
            outcome.http_requests += 1;
            let status = statuses.remove(&key.name);
            let status = check_status(&key.name, status)?;
            if let Some(committed) = &status.last_committed_offset_token {
                state.committed = Some(committed.clone());
                if offset_reached(committed, offset) {
                    return Ok(status);
                }
            }
            if Instant::now() + COMMIT_POLL >= deadline {
                return Err(StreamingError::Deadline(format!(
                    "offset {offset} not committed before the deadline (committed: {:?})",
                    status.last_committed_offset_token
                )));
            }
            tokio::time::sleep(COMMIT_POLL).await;
        }
    }

    /// The rows of this call's commits that are not in the change table, when the channel
    /// reports a refused row at or above the first of them: Snowflake's default pipe continues
    /// past a row it refuses, so only a look-up tells which.
    async fn refused(
        &self,
        objects: &ChangeObjects,
        key: &ChannelKey,
        candidates: &[Candidate<'_>],
        delivered: &Delivered,
        deadline: Instant,
    ) -> Vec<usize> {
        let (Some(status), Some(&first)) = (&delivered.status, delivered.committed_here.first())
        else {
            return Vec::new();
        };
        let Some(bound) = status.last_error_offset_upper_bound.as_deref() else {
            return Vec::new();
        };
        if !offset_reached(bound, &offset_token(&candidates[first].meta)) {
            return Vec::new();
        }
        match self
            .missing(objects, candidates, &delivered.committed_here, deadline)
            .await
        {
            Ok(missing) => missing,
            Err(e) => {
                // The rows are committed: a resend would skip them, so failing the table would
                // not find them either. Say where to look.
                tracing::error!(channel = %key.name, error = %e, bound, last_error = ?status.last_error_message, "Snowflake refused rows of this batch and the look-up of which failed; see SNOWPIPE_STREAMING_CHANNEL_HISTORY");
                Vec::new()
            }
        }
    }

    /// The rows among `rows` that the change table does not hold.
    async fn missing(
        &self,
        objects: &ChangeObjects,
        candidates: &[Candidate<'_>],
        rows: &[usize],
        deadline: Instant,
    ) -> Result<Vec<usize>, SnowflakeError> {
        let shard = candidates[rows[0]].meta.shard_id.to_string();
        let mut landed: HashSet<(String, Option<String>, String)> = HashSet::new();
        for chunk in rows.chunks(LOOKUP_CHUNK) {
            let sequences: Vec<String> = chunk
                .iter()
                .map(|&i| candidates[i].meta.sequence_number.to_string())
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let statement = Statement::new(landed_query(objects, sequences.len()))
                .bind(Binding::text(shard.clone()))
                .bind_all(sequences.into_iter().map(Binding::text));
            let result = self.snowflake.execute(&statement, deadline).await?;
            landed.extend(result.rows.into_iter().map(|mut r| {
                let op = r.pop().flatten().unwrap_or_default();
                let sub = r.pop().flatten();
                (r.pop().flatten().unwrap_or_default(), sub, op)
            }));
        }
        Ok(rows
            .iter()
            .copied()
            .filter(|&i| {
                let c = &candidates[i];
                let row = (
                    c.meta.sequence_number.to_string(),
                    c.meta.sub_sequence.map(|s| s.to_string()),
                    change_op(&c.row).to_string(),
                );
                !landed.contains(&row)
            })
            .collect())
    }

    /// The candidates the change table does not hold yet: a recovery tool's records may have
    /// landed before (a lost answer, a crash after the commit), under any channel.
    async fn not_landed<'r>(
        &self,
        objects: &ChangeObjects,
        candidates: Vec<Candidate<'r>>,
        deadline: Instant,
    ) -> Result<Vec<Candidate<'r>>, SnowflakeError> {
        let all: Vec<usize> = (0..candidates.len()).collect();
        let missing: HashSet<usize> = self
            .missing(objects, &candidates, &all, deadline)
            .await?
            .into_iter()
            .collect();
        Ok(candidates
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| missing.contains(&i).then_some(c))
            .collect())
    }

    /// Drops a recovery channel (and this container's view of it), before its batch so that
    /// nothing an earlier run committed on it hides the batch's records, and after, so that
    /// recovery channels do not pile up on the pipe. Best effort: a failure is logged.
    async fn drop_channel(&self, key: &ChannelKey, deadline: Instant) {
        self.evict(key);
        let pipe = (
            self.settings.database.as_str(),
            self.settings.schema.as_str(),
            key.pipe.as_str(),
        );
        if let Err(e) = self.client.drop_channel(pipe, &key.name, deadline).await {
            tracing::warn!(channel = %key.name, error = %e, "could not drop a recovery channel");
        }
    }

    /// Lambda finishes a parent shard before it reads its children, so when a shard is first
    /// seen its parents' channels (of the same table) are done: drop them, so that channels of
    /// closed shards do not pile up on the pipe. Best effort: a failure is logged.
    async fn drop_parents(
        &self,
        objects: &ChangeObjects,
        table: &str,
        meta: &RecordMeta<'_>,
        deadline: Instant,
    ) {
        let Some(kinesis) = &self.kinesis else {
            return;
        };
        let parents = match crate::shards::parents(kinesis, &meta.stream, &meta.shard_id).await {
            Ok(parents) => parents,
            Err(e) => {
                tracing::warn!(stream = %meta.stream, shard = %meta.shard_id, error = %e, "ListShards failed; the parents' channels stay");
                return;
            }
        };
        let pipe = (
            self.settings.database.as_str(),
            self.settings.schema.as_str(),
            objects.pipe.as_str(),
        );
        for parent in parents {
            let key = self.key(objects, table, &meta.stream, &parent);
            self.evict(&key);
            match self.client.drop_channel(pipe, &key.name, deadline).await {
                Ok(()) => {
                    tracing::info!(channel = %key.name, "dropped the channel of a closed parent shard")
                }
                Err(e) => {
                    tracing::warn!(channel = %key.name, error = %e, "could not drop the channel of a parent shard")
                }
            }
        }
    }
}

/// What an error the writer cannot recover from within the batch means for it: credentials
/// or configuration fail the invocation, anything else has Lambda resend the table's rows
/// (committed ones are skipped then).
fn failed(table: &str, e: StreamingError, rows: usize) -> TableFailure {
    if e.recovery() == Recovery::Fatal {
        return TableFailure::Fatal(HandlerError::Streaming(e));
    }
    resend(table, e.to_string(), rows)
}

/// Lambda resends the table's `rows` (committed ones are skipped then).
fn resend(table: &str, error: String, rows: usize) -> TableFailure {
    tracing::error!(table, error = %error, "appends not committed; Lambda will resend from this table's lowest sequence number (committed rows are skipped)");
    TableFailure::Retry(TableOutcome {
        rows,
        error: Some(error),
        ..TableOutcome::default()
    })
}

/// `<TABLE>_<stream>_<shardId>` and the configured suffix: one channel per logical table,
/// stream and shard.
fn channel_name(table: &str, stream: &str, shard: &str, suffix: Option<&str>) -> String {
    format!(
        "{}_{stream}_{shard}{}",
        table.to_ascii_uppercase(),
        suffix.unwrap_or_default()
    )
}

/// Whether a record is at or below a committed offset token (None: nothing committed).
fn at_or_below(meta: &RecordMeta<'_>, committed: Option<&str>) -> bool {
    committed.is_some_and(|c| is_committed(meta, c))
}

/// The channel's status, unless it asks for a reopen.
fn check_status(
    channel: &str,
    status: Option<ChannelStatus>,
) -> Result<ChannelStatus, StreamingError> {
    let Some(status) = status else {
        return Err(StreamingError::ChannelInvalid {
            channel: channel.into(),
            code: "ABSENT".into(),
            message: "the status does not list the channel".into(),
        });
    };
    match status.failure_code() {
        None => Ok(status),
        Some(code) => Err(StreamingError::ChannelInvalid {
            channel: channel.into(),
            code: code.into(),
            message: status.last_error_message.clone().unwrap_or_default(),
        }),
    }
}

/// The quarantine reason of a row Snowflake refused at commit.
fn refusal_reason(status: Option<&ChannelStatus>) -> String {
    let message = status
        .and_then(|s| s.last_error_message.as_deref())
        .unwrap_or("no message");
    format!("Snowflake refused the row at commit: {message}")
}

/// Cuts lines into requests within the size limit, measured before compression (which only
/// shrinks them), never between lines of one offset token (a DMS key change's delete and new
/// row): a request that committed one without the other would leave the key half changed at a
/// committed offset. A group larger than a request travels alone and is refused by the client.
fn requests(lines: &[String], tokens: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    let mut group = 0;
    for (i, line) in lines.iter().enumerate() {
        if i > 0 && tokens[i] != tokens[i - 1] {
            group = i;
        }
        if group > start && bytes + line.len() > MAX_REQUEST_BYTES {
            out.push(start..group);
            bytes = lines[group..i].iter().map(String::len).sum();
            start = group;
        }
        bytes += line.len();
    }
    if start < lines.len() {
        out.push(start..lines.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_stay_within_the_limit() {
        let line = "x".repeat(1024 * 1024);
        let lines = vec![line.clone(), line.clone(), line.clone(), line.clone(), line];
        let t = tokens(&["1", "2", "3", "4", "5"]);
        assert_eq!(requests(&lines, &t), vec![0..4, 4..5]);
        assert_eq!(requests(&[], &[]), Vec::<std::ops::Range<usize>>::new());
    }

    #[test]
    fn rows_of_one_offset_token_stay_in_one_request() {
        let line = "x".repeat(1024 * 1024);
        let lines = vec![line.clone(), line.clone(), line.clone(), line.clone(), line];
        // The 4th and 5th rows are a key change (one record): they travel together.
        let t = tokens(&["1", "2", "3", "4", "4"]);
        assert_eq!(requests(&lines, &t), vec![0..3, 3..5]);
        let t = tokens(&["1", "1", "1", "1", "1"]);
        assert_eq!(requests(&lines, &t), vec![0..5]);
    }

    #[test]
    fn channels_are_per_logical_table_stream_and_shard() {
        assert_eq!(
            channel_name("orders", "s1", "shardId-000000000001", None),
            "ORDERS_s1_shardId-000000000001"
        );
        assert_ne!(
            channel_name("orders", "s1", "shardId-1", None),
            channel_name("orders_archive", "s1", "shardId-1", None)
        );
        assert_eq!(
            channel_name("orders", "s1", "shardId-1", Some("_REPLAY")),
            "ORDERS_s1_shardId-1_REPLAY"
        );
    }

    #[test]
    fn an_invalid_or_absent_status_asks_for_a_reopen() {
        let status = |code: &str| ChannelStatus {
            channel_status_code: Some(code.into()),
            last_error_message: Some("m".into()),
            ..ChannelStatus::default()
        };
        assert!(check_status("C", Some(status("SUCCESS"))).is_ok());
        let e = check_status("C", Some(status("ERR_CHANNEL_MUST_BE_REOPENED"))).unwrap_err();
        assert_eq!(e.recovery(), Recovery::Reopen);
        assert_eq!(
            check_status("C", None).unwrap_err().recovery(),
            Recovery::Reopen
        );
    }
}
