//! The HTTP side: hostname discovery and the scoped token (cached per client), then channel
//! operations on the ingest host, each retried on 429/5xx/transport failures within the
//! caller's deadline and once after a 401 with a fresh scoped token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, Url};

use super::api::{self, ChannelStatus, MAX_REQUEST_BYTES};
use super::error::StreamingError;
use crate::snowflake::client::with_sources;
use crate::snowflake::config::SecretString;
use crate::snowflake::retry::{retry_until, Attempt};
use crate::snowflake::{Recovery, SnowflakeClient};

/// Snowflake does not say how long a scoped token lives; it is renewed well within an hour, and
/// at once after a 401.
const SCOPED_TOKEN_REUSE: Duration = Duration::from_secs(30 * 60);

/// A Snowpipe Streaming client sharing a [`SnowflakeClient`]'s connection pool and credentials.
pub struct StreamingClient {
    snowflake: SnowflakeClient,
    session: tokio::sync::Mutex<Option<Session>>,
}

#[derive(Clone)]
struct Session {
    ingest: Url,
    token: SecretString,
    made: Instant,
}

/// An open channel: where it writes, the continuation token of its next append, and the offset
/// token Snowflake had committed when it was opened.
#[derive(Debug, Clone)]
pub struct Channel {
    /// The database of the pipe, as given to [`StreamingClient::open_channel`] (a stored name).
    pub database: String,
    /// The schema of the pipe, likewise.
    pub schema: String,
    /// The pipe the channel writes through.
    pub pipe: String,
    /// The channel's name, unique per pipe; reopening it by this name resumes it.
    pub name: String,
    continuation: String,
    /// The last offset token Snowflake had committed on the channel when it was opened; None for
    /// a new channel, or one that never committed a row.
    pub committed_when_opened: Option<String>,
}

impl StreamingClient {
    /// A client that reaches Snowpipe Streaming with `snowflake`'s pool and credentials.
    pub fn new(snowflake: &SnowflakeClient) -> Self {
        Self {
            snowflake: snowflake.clone(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// Opens (or reopens) a channel on `pipe`; the answer carries the last committed offset
    /// token. Reopening invalidates every earlier continuation token of the channel.
    pub async fn open_channel(
        &self,
        database: &str,
        schema: &str,
        pipe: &str,
        name: &str,
        deadline: Instant,
    ) -> Result<Channel, StreamingError> {
        let path = api::channel_path(database, schema, pipe, name);
        let body = Body::json(b"{}".to_vec());
        let answer = self
            .request(Method::PUT, &path, &[], Some(body), deadline)
            .await?;
        let opened: api::Opened = parse(&answer)?;
        Ok(Channel {
            database: database.into(),
            schema: schema.into(),
            pipe: pipe.into(),
            name: name.into(),
            continuation: opened.next_continuation_token,
            committed_when_opened: opened.channel_status.last_committed_offset_token,
        })
    }

    /// Appends NDJSON `rows` (one JSON object per line) whose first row has offset token
    /// `start` and last row `end`, zstd-compressed. The answer means accepted, not committed:
    /// only the channel's status says when they are. On an error that asks for a reopen the
    /// channel must be opened again before the next append.
    pub async fn append(
        &self,
        channel: &mut Channel,
        rows: &[u8],
        (start, end): (&str, &str),
        deadline: Instant,
    ) -> Result<(), StreamingError> {
        let compressed = zstd::bulk::compress(rows, 3)
            .map_err(|e| StreamingError::Protocol(format!("zstd: {e}")))?;
        if compressed.len() > MAX_REQUEST_BYTES {
            return Err(StreamingError::RowTooLarge(compressed.len()));
        }
        let path = api::rows_path(
            &channel.database,
            &channel.schema,
            &channel.pipe,
            &channel.name,
        );
        // The reference page's current names; the single `offsetToken` is the older spelling,
        // https://docs.snowflake.com/en/user-guide/snowpipe-streaming/snowpipe-streaming-high-performance-rest-api
        let query = [
            ("continuationToken", channel.continuation.as_str()),
            ("startOffsetToken", start),
            ("endOffsetToken", end),
        ];
        let body = Body {
            bytes: compressed.into(),
            content_type: "application/x-ndjson",
            encoding: Some("zstd"),
        };
        let answer = self
            .request(Method::POST, &path, &query, Some(body), deadline)
            .await?;
        let appended: api::Appended = parse(&answer)?;
        channel.continuation = appended.next_continuation_token;
        Ok(())
    }

    /// The status of channels of one pipe; a channel Snowflake does not know is absent.
    pub async fn channel_status(
        &self,
        database: &str,
        schema: &str,
        pipe: &str,
        names: &[&str],
        deadline: Instant,
    ) -> Result<HashMap<String, ChannelStatus>, StreamingError> {
        let path = api::bulk_status_path(database, schema, pipe);
        let body = serde_json::json!({ "channel_names": names }).to_string();
        let answer = self
            .request(
                Method::POST,
                &path,
                &[],
                Some(Body::json(body.into_bytes())),
                deadline,
            )
            .await?;
        let status: api::BulkStatus = parse(&answer)?;
        Ok(status.channel_statuses)
    }

    /// Drops the channel `name` of `pipe` (`DELETE`); one Snowflake does not know (404) counts
    /// as dropped. Its continuation tokens are then useless.
    pub async fn drop_channel(
        &self,
        (database, schema, pipe): (&str, &str, &str),
        name: &str,
        deadline: Instant,
    ) -> Result<(), StreamingError> {
        let path = api::channel_path(database, schema, pipe, name);
        match self
            .request(Method::DELETE, &path, &[], None, deadline)
            .await
        {
            Ok(_) => Ok(()),
            Err(StreamingError::Http { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The ingest host and a scoped token, made once and kept for [`SCOPED_TOKEN_REUSE`].
    async fn session(&self, deadline: Instant) -> Result<Session, StreamingError> {
        let mut cached = self.session.lock().await;
        if let Some(s) = cached
            .as_ref()
            .filter(|s| s.made.elapsed() < SCOPED_TOKEN_REUSE)
        {
            return Ok(s.clone());
        }
        let (_, auth, base) = self.snowflake.parts();
        let account_token = auth.token().await?;
        let hostname = self.hostname(&account_token, deadline).await?;
        // The ingest host is reached the way the account is (https in AWS; the local stack's
        // plain http on loopback).
        let ingest = Url::parse(&format!("{}://{}", base.scheme(), hostname))
            .map_err(|e| StreamingError::Protocol(format!("ingest hostname {hostname:?}: {e}")))?;
        let token = self
            .scoped_token(&account_token, &hostname, deadline)
            .await?;
        let session = Session {
            ingest,
            token: SecretString::new(token),
            made: Instant::now(),
        };
        *cached = Some(session.clone());
        Ok(session)
    }

    /// `GET /v2/streaming/hostname` on the account URL: the account's ingest host.
    async fn hostname(
        &self,
        account_token: &SecretString,
        deadline: Instant,
    ) -> Result<String, StreamingError> {
        let (http, _, base) = self.snowflake.parts();
        let timeout = remaining(deadline)?;
        let mut url = base.clone();
        url.set_path("/v2/streaming/hostname");
        let req = self
            .with_account_token(http.get(url).timeout(timeout), account_token)
            .header(ACCEPT, "text/plain, application/json");
        let body = fetch_200(req).await?;
        api::ingest_host(&body).ok_or_else(|| {
            StreamingError::Protocol(format!(
                "no ingest hostname in {:?}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            ))
        })
    }

    /// `POST /oauth/token` on the account URL: trades the account's token for one scoped to
    /// the ingest host, acting as the connection's role when it names one (`SNOWFLAKE_ROLE`,
    /// resolved as the SQL API sends it).
    async fn scoped_token(
        &self,
        account_token: &SecretString,
        hostname: &str,
        deadline: Instant,
    ) -> Result<String, StreamingError> {
        let (http, _, base) = self.snowflake.parts();
        let role = self
            .snowflake
            .config()
            .role
            .as_deref()
            .map(|r| crate::snowflake::ident::resolve(r).unwrap_or_else(|_| r.to_string()));
        let form = format!(
            "grant_type={}&scope={}",
            form_value("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            form_value(&api::scope(hostname, role.as_deref()))
        );
        let mut url = base.clone();
        url.set_path("/oauth/token");
        let req = self
            .with_account_token(http.post(url).timeout(remaining(deadline)?), account_token)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        let body = fetch_200(req).await?;
        api::scoped_token(&body)
            .ok_or_else(|| StreamingError::Protocol("empty scoped token".into()))
    }

    /// `req` authorized with the account's own token, as the account URL wants it.
    fn with_account_token(
        &self,
        req: reqwest::RequestBuilder,
        account_token: &SecretString,
    ) -> reqwest::RequestBuilder {
        let (_, auth, _) = self.snowflake.parts();
        req.bearer_auth(account_token.expose()).header(
            "X-Snowflake-Authorization-Token-Type",
            auth.kind().header_value(),
        )
    }

    /// One channel operation on the ingest host, retried on what [`StreamingError::recovery`]
    /// calls [`Recovery::Retry`] and once after a 401 with a fresh scoped token.
    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
        deadline: Instant,
    ) -> Result<Bytes, StreamingError> {
        let renewed = AtomicBool::new(false);
        retry_until(deadline, &self.snowflake.config().retry, |attempt| {
            let (method, body, renewed) = (&method, body.as_ref(), &renewed);
            async move {
                let session = match self.session(deadline).await {
                    Ok(s) => s,
                    Err(e) if e.recovery() == Recovery::Retry => {
                        return Ok(Attempt::Retry(deadline_after(e)))
                    }
                    Err(e) => return Err(e),
                };
                let req = self.ingest_request(&session, method, path, query, body, deadline)?;
                let error = match exchange(req).await {
                    Ok((200, answer)) => return Ok(Attempt::Done(answer)),
                    Ok((401, _)) if !renewed.swap(true, Ordering::Relaxed) => {
                        // The scoped token expired or was revoked: make a new one once.
                        *self.session.lock().await = None;
                        return Ok(Attempt::Resend);
                    }
                    Ok((status, answer)) => http_error(status, &answer),
                    Err(e) => e,
                };
                if error.recovery() != Recovery::Retry {
                    return Err(error);
                }
                tracing::debug!(%method, path, error = %error, attempt, "snowpipe streaming request failed; retrying");
                Ok(Attempt::Retry(deadline_after(error)))
            }
        })
        .await
    }

    /// A request to the ingest host with the session's scoped token, bounded by the deadline.
    fn ingest_request(
        &self,
        session: &Session,
        method: &Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Body>,
        deadline: Instant,
    ) -> Result<reqwest::RequestBuilder, StreamingError> {
        let (http, _, _) = self.snowflake.parts();
        let policy = &self.snowflake.config().retry;
        let mut url = session.ingest.clone();
        url.set_path(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = http
            .request(method.clone(), url)
            .timeout(remaining(deadline)?.min(policy.http_timeout))
            .bearer_auth(session.token.expose())
            .header("X-Snowflake-Authorization-Token-Type", "OAUTH")
            .header(ACCEPT, "application/json");
        if let Some(b) = body {
            req = req
                .header(CONTENT_TYPE, b.content_type)
                .body(b.bytes.clone());
            if let Some(enc) = b.encoding {
                req = req.header(CONTENT_ENCODING, enc);
            }
        }
        Ok(req)
    }
}

struct Body {
    bytes: Bytes,
    content_type: &'static str,
    encoding: Option<&'static str>,
}

impl Body {
    fn json(bytes: Vec<u8>) -> Self {
        Self {
            bytes: bytes.into(),
            content_type: "application/json",
            encoding: None,
        }
    }
}

/// What ends the call when a transient `error` leaves no time for another attempt.
fn deadline_after(error: StreamingError) -> StreamingError {
    StreamingError::Deadline(error.to_string())
}

/// Sends `req` and reads the whole answer.
async fn exchange(req: reqwest::RequestBuilder) -> Result<(u16, Bytes), StreamingError> {
    let resp = req.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(transport)?;
    Ok((status, body))
}

/// The body of a 200 answer to `req`; any other status is an error.
async fn fetch_200(req: reqwest::RequestBuilder) -> Result<Bytes, StreamingError> {
    match exchange(req).await? {
        (200, body) => Ok(body),
        (status, body) => Err(http_error(status, &body)),
    }
}

fn form_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn remaining(deadline: Instant) -> Result<Duration, StreamingError> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| StreamingError::Deadline("no time left".into()))
}

fn transport(e: reqwest::Error) -> StreamingError {
    StreamingError::Transport(with_sources(e.to_string(), &e))
}

fn http_error(status: u16, body: &[u8]) -> StreamingError {
    let b: api::ErrorBody = serde_json::from_slice(body).unwrap_or_default();
    StreamingError::Http {
        status,
        code: b.code.unwrap_or_default(),
        message: b
            .message
            .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, StreamingError> {
    serde_json::from_slice(body).map_err(|e| StreamingError::Protocol(format!("invalid JSON: {e}")))
}
