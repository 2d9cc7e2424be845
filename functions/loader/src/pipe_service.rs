//! `LOAD_MODE=snowpipe`'s I/O: files handed to each table's pipe through the Snowpipe REST API,
//! and their loads confirmed before the invocation's deadline (sources in `pipe`).
//!
//! Per (table, format) group:
//! 1. A message received before (SQS `ApproximateReceiveCount` > 1), or a direct invocation
//!    (which Lambda may be retrying), first asks `loadHistoryScan` from when the message was sent
//!    (1 minute earlier, for clock skew; 6 hours back, Lambda's longest retry of an asynchronous
//!    event, without a sent time): a file it shows `LOADED` is already loaded and not sent again
//!    — an earlier invocation submitted it and ran out of time before its report, or the message
//!    came twice. `insertReport` would not tell: it keeps 10 minutes of events, and the SQS
//!    retry comes a visibility timeout (30 minutes) later.
//! 2. The other files go to `insertFiles` in chunks of at most 5,000 with a deterministic
//!    requestId. A file submitted twice is harmless: "Snowpipe uses file loading metadata
//!    associated with each pipe object to prevent reloading the same files" (kept 14 days),
//!    https://docs.snowflake.com/en/user-guide/data-load-snowpipe-intro#load-history — so a lost
//!    `insertFiles` answer (retried) or a redelivered message loads nothing twice.
//! 3. `insertReport` is polled every `PIPE_POLL_MS` from its `nextBeginMark` until each file is
//!    reported `LOADED`, `LOAD_FAILED` or `PARTIALLY_LOADED`, or the deadline nears.
//! 4. Files still unreported get one `loadHistoryScan` (a file Snowpipe skipped as loaded before
//!    gets no new `insertReport` event; an `insertReport` answer with `completeResult: false`
//!    missed events).
//! 5. A file reported by neither is [`FileOutcome::Pending`]: never counted loaded, since
//!    "a 200 response means that Snowpipe queued the file. It doesn't mean that the file loaded"
//!    ([OVERVIEW]) and Snowpipe gives no latency guarantee. Its message is a batch item failure;
//!    the retry starts at step 1, so it is acknowledged once the history shows the load, and
//!    reaches the DLQ (with the reason) only if Snowpipe never reports it in the queue's
//!    `maxReceiveCount` receives.
//!
//! Requests are retried on 408, 429, 5xx and transport failures ([PY] `network.py` retries 408
//! and 5xx; 429 is the REST page's rate limit) with `retry_until`'s backoff, and once after a
//! 401 with a fresh JWT; any other status fails the group's files with its message.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::CONTENT_TYPE;
use reqwest::Method;
use shared::snowflake::{
    retry_until, with_sources, Attempt, Recovery, SnowflakeClient, SnowflakeError,
};

use crate::config::PipeSettings;
use crate::notify::Item;
use crate::outcome::{failed_all, FileOutcome, Outcome};
use crate::pipe::{
    endpoint_path, history_time, insert_requests, pipe_for, settle, Endpoint, InsertRequest,
    InsertResponse, PipeFile, PipeName, Report,
};
use crate::plan::PendingFile;

/// How far back the load history is asked without a message's sent time: Lambda retries an
/// asynchronous invocation for at most 6 hours (`MaximumEventAgeInSeconds`).
const LOOKBACK_WITHOUT_SENT_TIME: Duration = Duration::from_secs(6 * 3600);

/// Clock skew allowed between SQS's `SentTimestamp` and Snowflake's load times.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// Time kept before the deadline for the last `loadHistoryScan` of files still unreported.
const FINAL_SCAN_RESERVE: Duration = Duration::from_secs(2);

/// What went wrong calling the Snowpipe REST API.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PipeError {
    /// An error status: `code` and `message` of the body when it has them.
    #[error("HTTP {status}: {message}")]
    Http { status: u16, message: String },
    /// Connection refused/reset, DNS, one attempt's timeout.
    #[error("transport: {0}")]
    Transport(String),
    /// An answer that does not follow the API.
    #[error("unexpected response: {0}")]
    Protocol(String),
    /// No JWT could be made.
    #[error(transparent)]
    Auth(SnowflakeError),
    /// The deadline passed; the last transient failure seen.
    #[error("deadline passed; last: {0}")]
    Deadline(String),
}

impl PipeError {
    /// [`Recovery::Retry`] for 408, 429, 5xx, transport failures and a passed deadline (and a
    /// retryable key read); [`Recovery::Fatal`] for 401/403 and the key; [`Recovery::Reopen`]
    /// (the files are retried with their message) otherwise: 400, 404 (no such pipe, or not
    /// authorized), an unreadable answer.
    pub(crate) fn recovery(&self) -> Recovery {
        match self {
            PipeError::Http { status, .. } if matches!(status, 408 | 429) || *status >= 500 => {
                Recovery::Retry
            }
            PipeError::Http {
                status: 401 | 403, ..
            } => Recovery::Fatal,
            PipeError::Http { .. } | PipeError::Protocol(_) => Recovery::Reopen,
            PipeError::Transport(_) | PipeError::Deadline(_) => Recovery::Retry,
            PipeError::Auth(e) if e.is_retryable() => Recovery::Retry,
            PipeError::Auth(_) => Recovery::Fatal,
        }
    }
}

/// Hands one invocation's groups to their pipes, before `deadline`.
pub(crate) struct PipeService<'a> {
    client: &'a SnowflakeClient,
    settings: &'a PipeSettings,
    deadline: Instant,
}

/// A group's files on their way through one pipe.
struct Run<'g> {
    pipe: PipeName,
    files: &'g BTreeMap<String, PendingFile>,
    pending: BTreeSet<&'g str>,
    settled: BTreeMap<&'g str, FileOutcome>,
    /// `startTimeInclusive` of every `loadHistoryScan`.
    since: String,
}

impl<'a> PipeService<'a> {
    pub(crate) fn new(
        client: &'a SnowflakeClient,
        settings: &'a PipeSettings,
        deadline: Instant,
    ) -> Self {
        Self {
            client,
            settings,
            deadline,
        }
    }

    /// Loads one group through the pipe of `table` (steps 1 to 5 of the module doc); returns
    /// every path's outcome.
    pub(crate) async fn load_group(
        &self,
        table: &str,
        files: &BTreeMap<String, PendingFile>,
        items: &[Item],
        out: &mut Outcome,
    ) -> Vec<(String, FileOutcome)> {
        let pipe = match pipe_for(table, &self.settings.suffix) {
            Ok(p) => p,
            Err(e) => return failed_all(files.keys().cloned(), &e),
        };
        let (redelivered, since) = receipt_window(files, items);
        let mut run = Run {
            pipe,
            files,
            pending: files.keys().map(String::as_str).collect(),
            settled: BTreeMap::new(),
            since: history_time(since),
        };
        if redelivered {
            self.loaded_before(&mut run, out).await;
        }
        let mark = self.submit(&mut run, items, out).await;
        self.poll(&mut run, mark, out).await;
        if !run.pending.is_empty() {
            self.scan(&mut run, out, Some).await;
        }
        finish(run)
    }

    /// Step 1: a file the pipe's history shows `LOADED` is already loaded and one shown
    /// `PARTIALLY_LOADED` fails again with its error: the pipe's load metadata would skip either.
    /// One shown `LOAD_FAILED` is sent again: the metadata remembers loaded files, so Snowpipe
    /// tries a failed one anew (a data error fails again and keeps failing the message, a
    /// transient one loads), https://docs.snowflake.com/en/user-guide/data-load-snowpipe-intro#load-history
    async fn loaded_before(&self, run: &mut Run<'_>, out: &mut Outcome) {
        self.scan(run, out, |outcome| match outcome {
            FileOutcome::Loaded { .. } => Some(FileOutcome::AlreadyLoaded),
            FileOutcome::Failed { error } if error.starts_with("LOAD_FAILED") => None,
            other => Some(other),
        })
        .await;
    }

    /// One `loadHistoryScan` since the group's window start; final entries of pending files are
    /// settled through `map` (`None`: left pending). A failed scan settles nothing (logged).
    async fn scan(
        &self,
        run: &mut Run<'_>,
        out: &mut Outcome,
        map: impl Fn(FileOutcome) -> Option<FileOutcome>,
    ) {
        out.history_queries += 1;
        let path = endpoint_path(&run.pipe, Endpoint::LoadHistoryScan);
        let request_id = uuid::Uuid::new_v4().to_string();
        let query = [
            ("startTimeInclusive", run.since.as_str()),
            ("requestId", request_id.as_str()),
        ];
        match self.get_report(&path, &query).await {
            Ok(report) => {
                for (p, o) in settle(&report, &mut run.pending) {
                    match map(o) {
                        Some(o) => {
                            run.settled.insert(p, o);
                        }
                        None => {
                            run.pending.insert(p);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(pipe = %run.pipe.quoted, error = %e, "loader: loadHistoryScan failed; its files are taken as not reported")
            }
        }
    }

    /// Step 2: `insertFiles` for the pending files; returns the `insertReport` mark to poll from
    /// (taken before the first request, so older events of the same paths are not read as this
    /// load's). Files of a failed request fail with its error.
    async fn submit(&self, run: &mut Run<'_>, items: &[Item], out: &mut Outcome) -> Option<String> {
        if run.pending.is_empty() {
            return None;
        }
        let files: Vec<PipeFile<'_>> = run
            .pending
            .iter()
            .map(|p| pipe_file(p, &run.files[*p], items))
            .collect();
        let requests = match insert_requests(&run.pipe, &files) {
            Ok(r) => r,
            Err(e) => {
                for p in std::mem::take(&mut run.pending) {
                    run.settled.insert(p, FileOutcome::failed(&e));
                }
                return None;
            }
        };
        let mark = self
            .report(&run.pipe, None, out)
            .await
            .ok()
            .and_then(|r| r.next_mark());
        for request in requests {
            out.insert_requests += 1;
            if let Err(e) = self.insert(&run.pipe, &request).await {
                tracing::error!(pipe = %run.pipe.quoted, request_id = %request.request_id, files = request.files.len(), error = %e, "loader: insertFiles failed");
                for f in &request.files {
                    if let Some(p) = run.pending.take(f.as_str()) {
                        run.settled.insert(
                            p,
                            FileOutcome::failed(format!("insertFiles to {}: {e}", run.pipe.quoted)),
                        );
                    }
                }
            }
        }
        mark
    }

    /// Step 3: polls `insertReport` until every file is settled or the deadline nears.
    async fn poll(&self, run: &mut Run<'_>, mut mark: Option<String>, out: &mut Outcome) {
        let interval = self.settings.poll_interval;
        while !run.pending.is_empty() {
            if Instant::now() + interval + FINAL_SCAN_RESERVE >= self.deadline {
                return;
            }
            tokio::time::sleep(interval).await;
            match self.report(&run.pipe, mark.as_deref(), out).await {
                Ok(report) => {
                    if !report.complete() {
                        tracing::warn!(pipe = %run.pipe.quoted, "loader: insertReport missed events (completeResult false); loadHistoryScan will be asked");
                    }
                    mark = report.next_mark().or(mark);
                    run.settled.extend(settle(&report, &mut run.pending));
                }
                Err(e) => {
                    tracing::warn!(pipe = %run.pipe.quoted, error = %e, "loader: insertReport failed; polling on")
                }
            }
        }
    }

    /// `GET insertReport[?beginMark=…]`.
    async fn report(
        &self,
        pipe: &PipeName,
        mark: Option<&str>,
        out: &mut Outcome,
    ) -> Result<Report, PipeError> {
        out.report_polls += 1;
        let path = endpoint_path(pipe, Endpoint::InsertReport);
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut query = vec![("requestId", request_id.as_str())];
        if let Some(m) = mark {
            query.push(("beginMark", m));
        }
        self.get_report(&path, &query).await
    }

    async fn get_report(&self, path: &str, query: &[(&str, &str)]) -> Result<Report, PipeError> {
        let body = self.call(Method::GET, path, query, None).await?;
        serde_json::from_slice(&body).map_err(|e| PipeError::Protocol(format!("{path}: {e}")))
    }

    /// `POST insertFiles?requestId=…`; success is a 200 whose `responseCode` is `SUCCESS`.
    async fn insert(&self, pipe: &PipeName, request: &InsertRequest) -> Result<(), PipeError> {
        let path = endpoint_path(pipe, Endpoint::InsertFiles);
        let id = request.request_id.to_string();
        let body = self
            .call(
                Method::POST,
                &path,
                &[("requestId", &id)],
                Some(&request.body),
            )
            .await?;
        let answer: InsertResponse = serde_json::from_slice(&body)
            .map_err(|e| PipeError::Protocol(format!("insertFiles: {e}")))?;
        match answer.response_code.as_deref() {
            Some(c) if c.eq_ignore_ascii_case("SUCCESS") => Ok(()),
            other => Err(PipeError::Protocol(format!(
                "insertFiles answered responseCode {other:?}"
            ))),
        }
    }

    /// One request on the account URL, retried as the module doc says.
    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Vec<u8>>,
    ) -> Result<bytes::Bytes, PipeError> {
        let renewed = AtomicBool::new(false);
        let policy = &self.client.config().retry;
        retry_until(self.deadline, policy, |attempt| {
            let (method, renewed) = (method.clone(), &renewed);
            async move {
                let timeout = self
                    .deadline
                    .checked_duration_since(Instant::now())
                    .filter(|d| !d.is_zero())
                    .ok_or_else(|| PipeError::Deadline("no time left".into()))?;
                let (mut req, token) = self
                    .client
                    .account_request(method, path, query, timeout)
                    .await
                    .map_err(PipeError::Auth)?;
                if let Some(b) = body {
                    req = req.header(CONTENT_TYPE, "application/json").body(b.clone());
                }
                let error = match exchange(req).await {
                    Ok((200, answer)) => return Ok(Attempt::Done(answer)),
                    Ok((401, _)) if !renewed.swap(true, Ordering::Relaxed) => {
                        self.client
                            .renew_after_401(&token)
                            .await
                            .map_err(PipeError::Auth)?;
                        return Ok(Attempt::Resend);
                    }
                    Ok((status, answer)) => http_error(status, &answer),
                    Err(e) => e,
                };
                if error.recovery() != Recovery::Retry {
                    return Err(error);
                }
                tracing::debug!(path, error = %error, attempt, "snowpipe request failed; retrying");
                Ok(Attempt::Retry(PipeError::Deadline(error.to_string())))
            }
        })
        .await
    }
}

/// Step 5: every file's outcome; one neither report settled is pending.
fn finish(run: Run<'_>) -> Vec<(String, FileOutcome)> {
    let Run {
        pipe,
        mut settled,
        pending,
        ..
    } = run;
    for p in pending {
        settled.insert(
            p,
            FileOutcome::Pending {
                reason: format!(
                    "submitted to pipe {} but neither insertReport nor loadHistoryScan reported its load by the deadline; not counted loaded, retried",
                    pipe.quoted
                ),
            },
        );
    }
    settled
        .into_iter()
        .map(|(p, o)| (p.to_string(), o))
        .collect()
}

/// Whether any message carrying the group may have been handled before (a receive count other
/// than 1, or no SQS receipt), and where its load-history window starts.
fn receipt_window(
    files: &BTreeMap<String, PendingFile>,
    items: &[Item],
) -> (bool, chrono::DateTime<chrono::Utc>) {
    let receipts: Vec<_> = files
        .values()
        .flat_map(|f| f.items.iter())
        .map(|&i| items[i].receipt)
        .collect();
    let redelivered = receipts
        .iter()
        .any(|r| r.is_none_or(|r| r.receive_count != Some(1)));
    let now = chrono::Utc::now();
    let sent = receipts
        .iter()
        .map(|r| r.and_then(|r| r.sent_at_ms))
        .collect::<Option<Vec<i64>>>()
        .and_then(|s| s.into_iter().min())
        .and_then(chrono::DateTime::from_timestamp_millis);
    let since = match sent {
        Some(t) => t - CLOCK_SKEW,
        None => now - LOOKBACK_WITHOUT_SENT_TIME,
    };
    (redelivered, since.min(now))
}

/// A pending file as the pure side takes it, with the ids of the messages carrying it.
fn pipe_file<'f>(path: &'f str, file: &'f PendingFile, items: &'f [Item]) -> PipeFile<'f> {
    PipeFile {
        path,
        etag: file.etag.as_deref(),
        message_ids: file
            .items
            .iter()
            .filter_map(|&i| items[i].message_id.as_deref())
            .collect(),
    }
}

/// Sends `req` and reads the whole answer.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, bytes::Bytes), PipeError> {
    let transport = |e: reqwest::Error| PipeError::Transport(with_sources(e.to_string(), &e));
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(transport)?;
    Ok((status, body))
}

/// An error answer: `code: message` of a JSON body (Snowflake's error shape), or its first 300
/// bytes.
fn http_error(status: u16, body: &[u8]) -> PipeError {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let text = |k: &str| {
        v.get(k).and_then(|c| {
            c.as_str()
                .map(String::from)
                .or_else(|| (!c.is_null()).then(|| c.to_string()))
        })
    };
    let message = match (text("code"), text("message")) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (None, Some(m)) => m,
        _ => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
    };
    PipeError::Http { status, message }
}

#[cfg(test)]
mod tests;
