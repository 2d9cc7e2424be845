//! The SQL API v2 client: submission, polling, partitions, retries.

use std::fmt;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt as _, TryStreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, Url};
use uuid::Uuid;

use super::auth::Authenticator;
use super::config::{Context, SnowflakeConfig};
use super::error::{is_retryable_status, SnowflakeError};
use super::retry::{retry_until, Attempt};
use super::types::{
    cells, Bindings, Parameters, QueryResult, RequestBody, ResponseBody, Statement,
};

/// Namespace of the deterministic requestIds made by [`request_id_for`].
pub(crate) const REQUEST_ID_NAMESPACE: Uuid =
    Uuid::from_u128(0x6b1f_3c2e_9a47_4d0b_8e25_51c7_d3a9_0f64);

/// A deterministic requestId (UUID v5) for a batch identity such as
/// `["upsert", stream, shard, first_sequence, last_sequence]`. Parts are length-prefixed, so
/// `["ab", "c"]` and `["a", "bc"]` give different ids.
pub fn request_id_for(parts: &[&str]) -> Uuid {
    let mut name = String::new();
    for p in parts {
        name.push_str(&p.len().to_string());
        name.push(':');
        name.push_str(p);
    }
    Uuid::new_v5(&REQUEST_ID_NAMESPACE, name.as_bytes())
}

/// A Snowflake SQL API v2 client; cheap to clone (one connection pool and token cache).
#[derive(Clone)]
pub struct SnowflakeClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: SnowflakeConfig,
    /// The config's context names, resolved once.
    context: Context,
    http: reqwest::Client,
    auth: Authenticator,
    base: Url,
    statements: Url,
}

impl fmt::Debug for SnowflakeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnowflakeClient")
            .field("base_url", &self.inner.config.base_url)
            .field("auth", &self.inner.auth.kind())
            .finish_non_exhaustive()
    }
}

/// Book-keeping of one `execute` call.
struct Ctx {
    request_id: Uuid,
    deadline: Instant,
    requests: AtomicU32,
    last: Mutex<String>,
}

impl Ctx {
    fn new(request_id: Uuid, deadline: Instant, last: &str) -> Self {
        Self {
            request_id,
            deadline,
            requests: AtomicU32::new(0),
            last: Mutex::new(last.into()),
        }
    }
    fn note(&self, what: String) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = what;
    }
    /// A transport failure; one cut short by the deadline keeps the failure seen before it, which
    /// says more about why the statement did not complete.
    fn note_transport(&self, msg: String, at_deadline: bool) {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = if at_deadline && !last.is_empty() {
            format!("{msg} (attempt cut short by the deadline; before that: {last})")
        } else {
            msg
        };
    }
    fn deadline_exceeded(&self) -> SnowflakeError {
        SnowflakeError::DeadlineExceeded {
            attempts: self.requests.load(Ordering::Relaxed),
            last: self.last.lock().unwrap_or_else(|e| e.into_inner()).clone(),
        }
    }
}

/// The outcome of one HTTP attempt.
enum Sent {
    Response {
        status: u16,
        body: Bytes,
        token: super::config::SecretString,
    },
    /// `at_deadline`: the attempt timed out because its timeout was cut to the deadline.
    Transport {
        msg: String,
        at_deadline: bool,
    },
    DeadlinePassed,
}

/// `code: message` of an error body, or the start of a non-JSON body.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ResponseBody>(body) {
        Ok(b) if b.message.is_some() || b.code.is_some() => {
            format!(
                "{}{}",
                b.code.map(|c| format!("{c}: ")).unwrap_or_default(),
                b.message.unwrap_or_default()
            )
        }
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    let text = text.trim();
    if text.chars().count() > 500 {
        format!("{}...", text.chars().take(500).collect::<String>())
    } else {
        text.to_string()
    }
}

fn parse_body(body: &[u8]) -> Result<ResponseBody, SnowflakeError> {
    serde_json::from_slice(body)
        .map_err(|e| SnowflakeError::Protocol(format!("invalid JSON response: {e}")))
}

/// Snowflake answers some partitions gzip-compressed; inflate them whatever the headers say.
fn inflate(body: Bytes) -> Result<Bytes, SnowflakeError> {
    if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .map_err(|e| SnowflakeError::Protocol(format!("cannot gunzip a response: {e}")))?;
        Ok(out.into())
    } else {
        Ok(body)
    }
}

fn valid_handle(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 128
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn failure(status: u16, body: &[u8]) -> SnowflakeError {
    let b: ResponseBody = serde_json::from_slice(body).unwrap_or_default();
    match status {
        422 if b.code.as_deref() == Some("000604") => SnowflakeError::Canceled {
            message: b.message.unwrap_or_default(),
            statement_handle: b.statement_handle,
        },
        422 => SnowflakeError::Sql {
            code: b.code.unwrap_or_default(),
            sql_state: b.sql_state.unwrap_or_default(),
            message: b.message.unwrap_or_default(),
            statement_handle: b.statement_handle,
        },
        408 => SnowflakeError::StatementTimeout {
            message: b.message.unwrap_or_else(|| "statement timeout".into()),
            statement_handle: b.statement_handle,
        },
        401 => SnowflakeError::Unauthorized(error_message(body)),
        _ => SnowflakeError::Http {
            status,
            message: error_message(body),
        },
    }
}

/// Sends `req` and reads the whole answer.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, Bytes), reqwest::Error> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    resp.bytes().await.map(|b| (status, b))
}

/// What kind of transport failure `e` is, as the debug line and the error message name it.
fn transport_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect error"
    } else {
        "transport error"
    }
}

/// `msg` followed by the chain of `e`'s sources (reqwest's own message rarely says why).
pub fn with_sources(mut msg: String, e: &dyn std::error::Error) -> String {
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The outcomes of an attempt every SQL API call treats alike: a passed deadline ends the call,
/// a transport failure or a transient status (429/5xx) is noted and retried, and any other
/// status fails.
fn settle<T>(sent: Sent, ctx: &Ctx) -> Result<Attempt<T, SnowflakeError>, SnowflakeError> {
    match sent {
        Sent::DeadlinePassed => Err(ctx.deadline_exceeded()),
        Sent::Transport { msg, at_deadline } => {
            ctx.note_transport(msg, at_deadline);
            Ok(Attempt::Retry(ctx.deadline_exceeded()))
        }
        Sent::Response { status, body, .. } if is_retryable_status(status) => {
            ctx.note(format!("HTTP {status}: {}", error_message(&body)));
            Ok(Attempt::Retry(ctx.deadline_exceeded()))
        }
        Sent::Response { status, body, .. } => Err(failure(status, &body)),
    }
}

/// True the first time a call asks: one 401 gets a fresh token, the next one is
/// [`SnowflakeError::Unauthorized`].
fn first_401(renewed: &AtomicBool) -> bool {
    !renewed.swap(true, Ordering::Relaxed)
}

impl SnowflakeClient {
    /// Resolves the key or token (reading Secrets Manager when configured, with `aws` or the
    /// default AWS configuration) once, and builds the HTTP client.
    pub async fn new(
        config: SnowflakeConfig,
        aws: Option<&aws_config::SdkConfig>,
    ) -> Result<Self, SnowflakeError> {
        let base = Url::parse(config.base_url.trim_end_matches('/'))
            .map_err(|e| SnowflakeError::Protocol(format!("invalid base URL: {e}")))?;
        let mut statements = base.clone();
        statements
            .path_segments_mut()
            .map_err(|_| SnowflakeError::Protocol("the base URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(["api", "v2", "statements"]);
        let context = Context::of(&config)?;
        let auth = Authenticator::resolve(&config.auth, &config.account, aws).await?;
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent.clone())
            .connect_timeout(config.retry.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .map_err(|e| SnowflakeError::Transport(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                context,
                http,
                auth,
                base,
                statements,
            }),
        })
    }

    /// The configuration the client was built with.
    pub fn config(&self) -> &SnowflakeConfig {
        &self.inner.config
    }

    /// What the Snowpipe Streaming client shares with this one: the connection pool, the
    /// account's credentials and the account URL.
    pub(crate) fn parts(&self) -> (&reqwest::Client, &Authenticator, &Url) {
        (&self.inner.http, &self.inner.auth, &self.inner.base)
    }

    /// A request to `path_and_query` on the account URL (the host the SQL API uses), authorized
    /// as the SQL API's requests are (`Authorization: Bearer <token>` and its
    /// `X-Snowflake-Authorization-Token-Type`), with `Accept: application/json` and a timeout of
    /// at most the retry policy's `http_timeout`; the token is returned beside it for
    /// [`renew_after_401`](Self::renew_after_401). For the account's other REST APIs (the
    /// loader's Snowpipe REST calls): the pool, the user agent and the key are shared.
    pub async fn account_request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<(reqwest::RequestBuilder, super::config::SecretString), SnowflakeError> {
        let mut url = self.inner.base.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let token = self.inner.auth.token().await?;
        let req = self
            .inner
            .http
            .request(method, url)
            .timeout(timeout.min(self.inner.config.retry.http_timeout))
            .bearer_auth(token.expose())
            .header(
                "X-Snowflake-Authorization-Token-Type",
                self.inner.auth.kind().header_value(),
            )
            .header(ACCEPT, "application/json");
        Ok((req, token))
    }

    /// After a 401 for `rejected` (from [`account_request`](Self::account_request)): the next
    /// token is made anew, signed with the key read again when it can change.
    pub async fn renew_after_401(
        &self,
        rejected: &super::config::SecretString,
    ) -> Result<(), SnowflakeError> {
        self.inner.auth.renew_after_401(rejected).await
    }

    /// The JSON body sent for `statement` (exposed for contract tests against the OpenAPI spec).
    pub fn request_body(&self, statement: &Statement) -> serde_json::Value {
        serde_json::from_slice(&self.body_bytes(statement)).expect("request bodies serialise")
    }

    fn body_bytes(&self, st: &Statement) -> Vec<u8> {
        let c = &self.inner.config;
        let context = &self.inner.context;
        let query_tag = st.query_tag.as_deref().or(c.query_tag.as_deref());
        let body = RequestBody {
            statement: &st.sql,
            timeout: Some(c.statement_timeout.as_secs()),
            database: context.database.as_deref(),
            schema: Some(context.schema.as_str()),
            warehouse: context.warehouse.as_deref(),
            role: context.role.as_deref(),
            bindings: (!st.bindings.is_empty()).then_some(Bindings(&st.bindings)),
            parameters: query_tag.map(|t| Parameters { query_tag: Some(t) }),
        };
        serde_json::to_vec(&body).expect("request bodies serialise")
    }

    /// Runs one statement and returns its complete result (all partitions).
    ///
    /// Throttling (429), server errors (500/502/503/504) and connection failures are retried with
    /// full-jitter exponential backoff, re-sending the same requestId with `retry=true`; a 401 is
    /// retried once with a new token, signed with the key read again when it comes from Secrets
    /// Manager or a file (so a rotated key takes effect); a 202 is followed by polling the
    /// statement. Nothing runs
    /// past `deadline`: each HTTP attempt's timeout is bounded by it, and when it passes while
    /// the statement is still running, the statement is canceled (best effort) and
    /// [`SnowflakeError::DeadlineExceeded`] returned.
    ///
    /// A statement aborted by lock contention (000625: more than 20 statements queued on one
    /// table) is submitted again with backoff until the deadline, as Snowflake advises for
    /// concurrent DML on one table.
    pub async fn execute(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        retry_until(deadline, &self.inner.config.retry, |aborted| async move {
            match self.execute_once(statement, deadline).await {
                Ok(result) => Ok(Attempt::Done(result)),
                Err(e) if e.is_lock_contention() => {
                    tracing::warn!(error = %e, aborted, "statement aborted by lock contention; submitting it again after a backoff");
                    Ok(Attempt::Retry(e))
                }
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// One submission of `statement` under one requestId, resent on transient failures.
    async fn execute_once(
        &self,
        statement: &Statement,
        deadline: Instant,
    ) -> Result<QueryResult, SnowflakeError> {
        let (request_id, sent_before) = match statement.request_id {
            // a caller-supplied id may have been sent by a previous invocation: always retry=true
            Some(id) => (id, true),
            None => (Uuid::new_v4(), false),
        };
        let ctx = Ctx::new(request_id, deadline, "no attempt made");
        let body = Bytes::from(self.body_bytes(statement));
        let renewed = AtomicBool::new(false);
        retry_until(deadline, &self.inner.config.retry, |transient| {
            let (ctx, body, renewed) = (&ctx, &body, &renewed);
            async move {
                // Every request after this call's first one resends the requestId.
                let retry = sent_before || ctx.requests.load(Ordering::Relaxed) > 0;
                let url = self.submission_url(request_id, retry);
                let sent = self
                    .send(Method::POST, url, Some(body.clone()), ctx, transient)
                    .await?;
                self.submitted(sent, ctx, renewed).await
            }
        })
        .await
    }

    /// `POST /api/v2/statements?requestId=…[&retry=true]`.
    fn submission_url(&self, request_id: Uuid, retry: bool) -> Url {
        let mut url = self.inner.statements.clone();
        url.query_pairs_mut()
            .append_pair("requestId", &request_id.to_string());
        if retry {
            url.query_pairs_mut().append_pair("retry", "true");
        }
        url
    }

    /// What the answer to a submission means: a result (200), a statement to follow (202), a
    /// first 401 (renew the token and resend), or what [`settle`] says.
    async fn submitted(
        &self,
        sent: Sent,
        ctx: &Ctx,
        renewed: &AtomicBool,
    ) -> Result<Attempt<QueryResult, SnowflakeError>, SnowflakeError> {
        match sent {
            Sent::Response {
                status: 200, body, ..
            } => {
                let body = parse_body(&inflate(body)?)?;
                self.complete(body, ctx).await.map(Attempt::Done)
            }
            Sent::Response {
                status: 202, body, ..
            } => self
                .follow(parse_body(&body)?, ctx)
                .await
                .map(Attempt::Done),
            Sent::Response {
                status: 401,
                body,
                token,
            } if first_401(renewed) => {
                self.inner.auth.renew_after_401(&token).await?;
                ctx.note(format!("HTTP 401: {}", error_message(&body)));
                Ok(Attempt::Resend)
            }
            other => settle(other, ctx),
        }
    }

    /// Asks Snowflake to cancel a running statement.
    pub async fn cancel(
        &self,
        statement_handle: &str,
        deadline: Instant,
    ) -> Result<(), SnowflakeError> {
        if !valid_handle(statement_handle) {
            return Err(SnowflakeError::Protocol("invalid statement handle".into()));
        }
        let mut url = self.inner.statements.clone();
        url.path_segments_mut()
            .expect("http URL")
            .extend([statement_handle, "cancel"]);
        let ctx = Ctx::new(Uuid::new_v4(), deadline, "");
        match self.send(Method::POST, url, None, &ctx, 0).await? {
            Sent::Response { status: 200, .. } => Ok(()),
            Sent::Response { status, body, .. } => Err(failure(status, &body)),
            Sent::Transport { msg, .. } => Err(SnowflakeError::Transport(msg)),
            Sent::DeadlinePassed => Err(ctx.deadline_exceeded()),
        }
    }

    /// One HTTP attempt, bounded by the deadline, logged with one debug line.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        ctx: &Ctx,
        attempt: u32,
    ) -> Result<Sent, SnowflakeError> {
        let start = Instant::now();
        let Some(remaining) = ctx
            .deadline
            .checked_duration_since(start)
            .filter(|d| !d.is_zero())
        else {
            return Ok(Sent::DeadlinePassed);
        };
        let timeout = remaining.min(self.inner.config.retry.http_timeout);
        let token = self.inner.auth.token().await?;
        let req = self.http_request(method.clone(), url.clone(), body, &token, timeout);
        ctx.requests.fetch_add(1, Ordering::Relaxed);
        let result = exchange(req).await;
        let ms = start.elapsed().as_millis() as u64;
        let path = url.path();
        match result {
            Ok((status, body)) => {
                tracing::debug!(%method, path, request_id = %ctx.request_id, status, attempt, ms, "snowflake http");
                Ok(Sent::Response {
                    status,
                    body,
                    token,
                })
            }
            Err(e) => {
                let kind = transport_kind(&e);
                let msg = with_sources(format!("{kind} after {ms} ms"), &e);
                tracing::debug!(%method, path, request_id = %ctx.request_id, status = kind, attempt, ms, "snowflake http");
                let at_deadline = e.is_timeout() && timeout < self.inner.config.retry.http_timeout;
                Ok(Sent::Transport { msg, at_deadline })
            }
        }
    }

    /// An authorized SQL API request (a JSON body when there is one).
    fn http_request(
        &self,
        method: Method,
        url: Url,
        body: Option<Bytes>,
        token: &super::config::SecretString,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let req = self
            .inner
            .http
            .request(method, url)
            .timeout(timeout)
            .bearer_auth(token.expose())
            .header(
                "X-Snowflake-Authorization-Token-Type",
                self.inner.auth.kind().header_value(),
            )
            .header(ACCEPT, "application/json");
        match body {
            Some(b) => req.header(CONTENT_TYPE, "application/json").body(b),
            None => req,
        }
    }

    /// A GET (status poll or partition), retried on 429/5xx/transport and once on 401.
    /// Returns the 200 or 202 body; anything else is an error.
    async fn get(&self, url: &Url, ctx: &Ctx) -> Result<(u16, ResponseBody), SnowflakeError> {
        let renewed = AtomicBool::new(false);
        retry_until(ctx.deadline, &self.inner.config.retry, |transient| {
            let renewed = &renewed;
            async move {
                match self
                    .send(Method::GET, url.clone(), None, ctx, transient)
                    .await?
                {
                    Sent::Response {
                        status: status @ (200 | 202),
                        body,
                        ..
                    } => Ok(Attempt::Done((status, parse_body(&inflate(body)?)?))),
                    Sent::Response {
                        status: 401, token, ..
                    } if first_401(renewed) => {
                        self.inner.auth.renew_after_401(&token).await?;
                        Ok(Attempt::Resend)
                    }
                    other => settle(other, ctx),
                }
            }
        })
        .await
    }

    fn statement_url(&self, handle: &str) -> Url {
        let mut url = self.inner.statements.clone();
        url.path_segments_mut().expect("http URL").push(handle);
        url
    }

    /// After a 202: polls the statement until it finishes or the deadline passes (then cancels it).
    async fn follow(&self, status: ResponseBody, ctx: &Ctx) -> Result<QueryResult, SnowflakeError> {
        let handle = status
            .statement_handle
            .filter(|h| valid_handle(h))
            .ok_or_else(|| {
                SnowflakeError::Protocol("202 without a valid statementHandle".into())
            })?;
        // statementStatusUrl may be relative; never follow it to another host (it would get the token)
        let own = self.statement_url(&handle);
        let url = status
            .statement_status_url
            .and_then(|u| self.inner.base.join(&u).ok())
            .filter(|u| u.origin() == self.inner.base.origin())
            .unwrap_or(own);
        let policy = &self.inner.config.retry;
        let mut delay = policy.poll_initial;
        ctx.note(format!("statement {handle} still running"));
        loop {
            let remaining = ctx.deadline.saturating_duration_since(Instant::now());
            tokio::time::sleep(delay.min(remaining)).await;
            let outcome = if Instant::now() >= ctx.deadline {
                Err(ctx.deadline_exceeded())
            } else {
                self.get(&url, ctx).await
            };
            match outcome {
                Ok((200, body)) => return self.complete(body, ctx).await,
                Ok(_) => ctx.note(format!("statement {handle} still running")),
                Err(e @ SnowflakeError::DeadlineExceeded { .. }) => {
                    let cancel_deadline = Instant::now() + policy.cancel_timeout;
                    match self.cancel(&handle, cancel_deadline).await {
                        Ok(()) => {
                            tracing::debug!(statement_handle = %handle, "canceled after the deadline")
                        }
                        Err(err) => {
                            tracing::debug!(statement_handle = %handle, error = %err, "cancel failed")
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
            delay = (delay * 2).min(policy.poll_max);
        }
    }

    /// A 200 `ResultSet`: fetches partitions 1.. and assembles the result.
    async fn complete(&self, body: ResponseBody, ctx: &Ctx) -> Result<QueryResult, SnowflakeError> {
        let handle = body
            .statement_handle
            .filter(|h| valid_handle(h))
            .ok_or_else(|| {
                SnowflakeError::Protocol("result without a valid statementHandle".into())
            })?;
        let meta = body.result_set_meta_data.unwrap_or_default();
        let mut rows = cells(body.data.unwrap_or_default());
        let partitions = meta.partition_info.len();
        if partitions > 1 {
            let base = self.statement_url(&handle);
            let fetched: Vec<_> = futures_util::stream::iter(1..partitions)
                .map(|n| {
                    let mut url = base.clone();
                    url.query_pairs_mut()
                        .append_pair("partition", &n.to_string());
                    async move {
                        match self.get(&url, ctx).await? {
                            (200, b) => Ok(cells(b.data.unwrap_or_default())),
                            (s, _) => {
                                Err(SnowflakeError::Protocol(format!("partition {n}: HTTP {s}")))
                            }
                        }
                    }
                })
                .buffered(4)
                .try_collect()
                .await?;
            for (i, part) in fetched.into_iter().enumerate() {
                if let Some(expected) = meta.partition_info[i + 1].row_count {
                    if part.len() as u64 != expected {
                        return Err(SnowflakeError::Protocol(format!(
                            "partition {}: expected {expected} rows, got {}",
                            i + 1,
                            part.len()
                        )));
                    }
                }
                rows.extend(part);
            }
        }
        if let Some(n) = meta.num_rows {
            if n != rows.len() as u64 {
                return Err(SnowflakeError::Protocol(format!(
                    "expected {n} rows, got {}",
                    rows.len()
                )));
            }
        }
        Ok(QueryResult {
            statement_handle: handle,
            request_id: ctx.request_id,
            columns: meta.row_type,
            rows,
            stats: body.stats,
            http_requests: ctx.requests.load(Ordering::Relaxed),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snowflake::config::{AuthConfig, RetryPolicy, SecretString, TokenSource, TokenType};
    use crate::snowflake::ident::IdentError;
    use crate::snowflake::types::Binding;
    use serde_json::json;

    fn config(url: &str) -> SnowflakeConfig {
        SnowflakeConfig {
            account: "localtest".into(),
            base_url: url.into(),
            database: Some("DB".into()),
            schema: "RAW".into(),
            warehouse: None,
            role: Some("LOADER_ROLE".into()),
            auth: AuthConfig::Token {
                kind: TokenType::ProgrammaticAccessToken,
                source: TokenSource::Value(SecretString::new("t")),
            },
            statement_timeout: Duration::from_secs(300),
            user_agent: "kinesis-snowflake/test".into(),
            query_tag: Some("cfg-tag".into()),
            retry: RetryPolicy {
                base: Duration::from_millis(10),
                max: Duration::from_millis(80),
                ..RetryPolicy::default()
            },
        }
    }

    #[test]
    fn request_ids_are_deterministic_and_unambiguous() {
        let a = request_id_for(&["upsert", "stream", "shard-1", "100", "200"]);
        assert_eq!(
            a,
            request_id_for(&["upsert", "stream", "shard-1", "100", "200"])
        );
        assert_eq!(a.get_version_num(), 5);
        assert_ne!(
            a,
            request_id_for(&["upsert", "stream", "shard-1", "100", "201"])
        );
        assert_ne!(request_id_for(&["ab", "c"]), request_id_for(&["a", "bc"]));
    }

    #[tokio::test]
    async fn request_body_matches_the_spec_shape() {
        let client = SnowflakeClient::new(config("http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let st = Statement::new("INSERT INTO t VALUES (?, ?)")
            .bind(Binding::text("a'b"))
            .bind(Binding::Fixed(None));
        assert_eq!(
            client.request_body(&st),
            serde_json::json!({
                "statement": "INSERT INTO t VALUES (?, ?)",
                "timeout": 300,
                "database": "DB",
                "schema": "RAW",
                "role": "LOADER_ROLE",
                "bindings": {"1": {"type": "TEXT", "value": "a'b"}, "2": {"type": "TEXT", "value": null}},
                "parameters": {"query_tag": "cfg-tag"},
            })
        );
        // no bindings and a statement tag
        let body = client.request_body(&Statement::new("SELECT 1").with_query_tag("own"));
        assert!(body.get("bindings").is_none());
        assert!(body.get("warehouse").is_none());
        assert_eq!(body["parameters"], serde_json::json!({"query_tag": "own"}));
        // context names go out as Snowflake resolves them
        let mut c = config("http://127.0.0.1:9");
        c.database = Some("ingest".into());
        c.schema = "\"Raw Zone\"".into();
        c.warehouse = Some("wh".into());
        let body = SnowflakeClient::new(c, None)
            .await
            .unwrap()
            .request_body(&Statement::new("SELECT 1"));
        assert_eq!(
            (&body["database"], &body["schema"], &body["warehouse"]),
            (&json!("INGEST"), &json!("Raw Zone"), &json!("WH"))
        );
        let mut c = config("http://127.0.0.1:9");
        c.schema = "my-schema".into();
        assert!(matches!(
            SnowflakeClient::new(c, None).await,
            Err(SnowflakeError::Ident(IdentError::NotUnquoted(_)))
        ));
        let mut c = config("http://127.0.0.1:9");
        c.query_tag = None;
        let client = SnowflakeClient::new(c, None).await.unwrap();
        assert!(client
            .request_body(&Statement::new("SELECT 1"))
            .get("parameters")
            .is_none());
    }

    #[test]
    fn result_set_parsing() {
        let body: ResponseBody = serde_json::from_value(serde_json::json!({
            "code": "090001", "sqlState": "00000", "message": "ok",
            "statementHandle": "01b2c3d4-0000-1111-2222-333344445555",
            "statementStatusUrl": "/api/v2/statements/01b2c3d4-0000-1111-2222-333344445555",
            "resultSetMetaData": {
                "format": "jsonv2", "numRows": 5,
                "rowType": [{"name": "ID", "type": "FIXED", "length": 0, "precision": 38, "scale": 0, "nullable": false},
                            {"name": "V", "type": "TEXT", "length": 16777216, "precision": 0, "scale": 0, "nullable": true}],
                "partitionInfo": [{"rowCount": 2, "uncompressedSize": 10}, {"rowCount": 2}, {"rowCount": 1}],
            },
            "data": [["1", "a"], ["2", null]],
            "stats": {"numRowsInserted": 3, "numRowsUpdated": 1},
        }))
        .unwrap();
        let meta = body.result_set_meta_data.as_ref().unwrap();
        assert_eq!(meta.partition_info.len(), 3);
        assert_eq!(meta.row_type[0].type_name, "FIXED");
        assert_eq!(meta.row_type[1].nullable, Some(true));
        assert_eq!(body.stats.unwrap().inserted, 3);
        assert_eq!(body.stats.unwrap().deleted, 0);
        assert_eq!(
            cells(body.data.unwrap()),
            vec![
                vec![Some("1".into()), Some("a".into())],
                vec![Some("2".into()), None]
            ]
        );
        // a later partition carries data only
        let part: ResponseBody =
            serde_json::from_str(r#"{"data": [["3", "c"], ["4", 5]]}"#).unwrap();
        assert_eq!(
            cells(part.data.unwrap())[1],
            vec![Some("4".into()), Some("5".into())]
        );
    }

    #[test]
    fn failures_are_typed() {
        let body = br#"{"code":"002003","sqlState":"42S02","message":"Table 'X' does not exist","statementHandle":"h-1"}"#;
        match failure(422, body) {
            SnowflakeError::Sql {
                code,
                sql_state,
                message,
                statement_handle,
            } => {
                assert_eq!((code.as_str(), sql_state.as_str()), ("002003", "42S02"));
                assert!(message.contains("does not exist"));
                assert_eq!(statement_handle.as_deref(), Some("h-1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            failure(408, b"{\"statementHandle\":\"h\"}"),
            SnowflakeError::StatementTimeout { .. }
        ));
        assert!(matches!(
            failure(
                422,
                br#"{"code":"000604","message":"canceled","statementHandle":"h"}"#
            ),
            SnowflakeError::Canceled { .. }
        ));
        match failure(400, b"<html>bad</html>") {
            SnowflakeError::Http {
                status: 400,
                message,
            } => assert_eq!(message, "<html>bad</html>"),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(failure(401, br#"{"code":"390144","message":"JWT token is invalid."}"#), SnowflakeError::Unauthorized(m) if m == "390144: JWT token is invalid.")
        );
    }

    #[test]
    fn gzip_bodies_are_inflated() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(br#"{"data":[["x"]]}"#).unwrap();
        let gz = Bytes::from(enc.finish().unwrap());
        assert_eq!(&inflate(gz).unwrap()[..], br#"{"data":[["x"]]}"#);
        assert_eq!(&inflate(Bytes::from_static(b"{}")).unwrap()[..], b"{}");
    }

    /// Connection refused on every attempt: retried with backoff, and the call returns
    /// DeadlineExceeded no later than the deadline (plus scheduling slack).
    #[tokio::test]
    async fn transport_failures_are_retried_until_the_deadline() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = SnowflakeClient::new(config(&format!("http://127.0.0.1:{port}")), None)
            .await
            .unwrap();
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(400);
        let err = client
            .execute(&Statement::new("SELECT 1"), deadline)
            .await
            .unwrap_err();
        let elapsed = t0.elapsed();
        match &err {
            SnowflakeError::DeadlineExceeded { attempts, last } => {
                assert!(*attempts >= 3, "{err}");
                assert!(last.contains("connect"), "{err}");
            }
            other => panic!("{other:?}"),
        }
        assert!(elapsed <= Duration::from_millis(450), "{elapsed:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn a_deadline_in_the_past_sends_nothing() {
        let client = SnowflakeClient::new(config("http://127.0.0.1:9"), None)
            .await
            .unwrap();
        let err = client
            .execute(&Statement::new("SELECT 1"), Instant::now())
            .await
            .unwrap_err();
        assert!(
            matches!(err, SnowflakeError::DeadlineExceeded { attempts: 0, .. }),
            "{err:?}"
        );
    }
}
