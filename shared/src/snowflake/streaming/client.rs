//! The HTTP side: hostname discovery and the scoped token (cached per client), then channel
//! operations on the ingest host, each retried on 429/5xx/transport failures within the
//! caller's deadline and once after a 401 with a fresh scoped token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::{Method, Url};

use super::api::{self, ChannelStatus, MAX_REQUEST_BYTES};
use super::error::StreamingError;
use crate::snowflake::client::backoff_delay;
use crate::snowflake::config::SecretString;
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
    pub database: String,
    pub schema: String,
    pub pipe: String,
    pub name: String,
    continuation: String,
    pub committed_when_opened: Option<String>,
}

impl StreamingClient {
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

    /// Appends NDJSON `rows` (one JSON object per line) whose last row has `offset_token`,
    /// zstd-compressed. On an error that asks for a reopen the channel must be opened again
    /// before the next append.
    pub async fn append(
        &self,
        channel: &mut Channel,
        rows: &[u8],
        offset_token: &str,
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
        let query = [
            ("continuationToken", channel.continuation.as_str()),
            ("offsetToken", offset_token),
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

    pub async fn drop_channel(
        &self,
        channel: &Channel,
        deadline: Instant,
    ) -> Result<(), StreamingError> {
        let path = api::channel_path(
            &channel.database,
            &channel.schema,
            &channel.pipe,
            &channel.name,
        );
        self.request(Method::DELETE, &path, &[], None, deadline)
            .await
            .map(|_| ())
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
        let (http, auth, base) = self.snowflake.parts();
        let account_token = auth.token().await?;
        let timeout = remaining(deadline)?;
        let mut url = base.clone();
        url.set_path("/v2/streaming/hostname");
        let resp = http
            .get(url)
            .timeout(timeout)
            .bearer_auth(account_token.expose())
            .header(
                "X-Snowflake-Authorization-Token-Type",
                auth.kind().header_value(),
            )
            .header(ACCEPT, "application/json")
            .send()
            .await
            .map_err(transport)?;
        let (status, body) = (
            resp.status().as_u16(),
            resp.bytes().await.map_err(transport)?,
        );
        if status != 200 {
            return Err(http_error(status, &body));
        }
        let hostname = parse::<api::Hostname>(&body)?.hostname;
        // The ingest host is reached the way the account is (https in AWS; the local stack's
        // plain http on loopback).
        let ingest = Url::parse(&format!("{}://{}", base.scheme(), hostname))
            .map_err(|e| StreamingError::Protocol(format!("ingest hostname {hostname:?}: {e}")))?;
        let form = format!(
            "grant_type={}&scope={}",
            form_value("urn:ietf:params:oauth:grant-type:jwt-bearer"),
            form_value(&hostname)
        );
        let mut url = base.clone();
        url.set_path("/oauth/token");
        let resp = http
            .post(url)
            .timeout(remaining(deadline)?)
            .bearer_auth(account_token.expose())
            .header(
                "X-Snowflake-Authorization-Token-Type",
                auth.kind().header_value(),
            )
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .map_err(transport)?;
        let (status, body) = (
            resp.status().as_u16(),
            resp.bytes().await.map_err(transport)?,
        );
        if status != 200 {
            return Err(http_error(status, &body));
        }
        let token = api::scoped_token(&body)
            .ok_or_else(|| StreamingError::Protocol("empty scoped token".into()))?;
        let session = Session {
            ingest,
            token: SecretString::new(token),
            made: Instant::now(),
        };
        *cached = Some(session.clone());
        Ok(session)
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Body>,
        deadline: Instant,
    ) -> Result<Bytes, StreamingError> {
        let policy = &self.snowflake.config().retry;
        let (http, _, _) = self.snowflake.parts();
        let mut attempt = 0u32;
        let mut renewed = false;
        loop {
            let session = match self.session(deadline).await {
                Ok(s) => s,
                Err(e) if e.recovery() == Recovery::Retry => {
                    retry_after(e, policy, &mut attempt, deadline).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
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
            if let Some(b) = &body {
                req = req
                    .header(CONTENT_TYPE, b.content_type)
                    .body(b.bytes.clone());
                if let Some(enc) = b.encoding {
                    req = req.header(CONTENT_ENCODING, enc);
                }
            }
            let error = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    match resp.bytes().await {
                        Ok(b) if status == 200 => return Ok(b),
                        Ok(_) if status == 401 && !renewed => {
                            // The scoped token expired or was revoked: make a new one once.
                            renewed = true;
                            *self.session.lock().await = None;
                            continue;
                        }
                        Ok(b) => http_error(status, &b),
                        Err(e) => transport(e),
                    }
                }
                Err(e) => transport(e),
            };
            if error.recovery() != Recovery::Retry {
                return Err(error);
            }
            tracing::debug!(%method, path, error = %error, attempt, "snowpipe streaming request failed; retrying");
            retry_after(error, policy, &mut attempt, deadline).await?;
        }
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

/// Sleeps the backoff of `attempt` unless that passes the deadline, which ends with `error`.
async fn retry_after(
    error: StreamingError,
    policy: &crate::snowflake::RetryPolicy,
    attempt: &mut u32,
    deadline: Instant,
) -> Result<(), StreamingError> {
    let delay = backoff_delay(policy, *attempt, rand::random::<f64>());
    *attempt += 1;
    if Instant::now() + delay >= deadline {
        return Err(StreamingError::Deadline(error.to_string()));
    }
    tokio::time::sleep(delay).await;
    Ok(())
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
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    StreamingError::Transport(msg)
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
