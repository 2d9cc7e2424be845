//! `LOAD_MODE=snowpipe`: the Snowpipe REST API's requests and answers, pure, no I/O.
//!
//! Sources (cited as [TAG] below):
//! - [REST] https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-apis — endpoints
//!   `POST /v1/data/pipes/<pipe>/insertFiles?requestId=…` (body `{"files": [{"path": …}]}`,
//!   at most 5,000 files, each path at most 1,024 bytes of UTF-8, the pipe "case-sensitive, fully
//!   qualified"), `GET …/insertReport?requestId=…&beginMark=…` (events of the last 10 minutes,
//!   at most 10,000; `nextBeginMark`, `completeResult`) and `GET …/loadHistoryScan?
//!   startTimeInclusive=…&endTimeExclusive=…&requestId=…` (at most 10,000 entries, ISO-8601
//!   times); per-file `path`, `status` (`LOAD_IN_PROGRESS`, `LOADED`, `LOAD_FAILED`,
//!   `PARTIALLY_LOADED`), `rowsInserted`, `firstError`, `firstErrorLineNum`, `systemError`.
//! - [OVERVIEW] https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-overview — a
//!   200 means queued, not loaded; key-pair JWT as `Authorization: Bearer`.
//! - [JAVA] snowflakedb/snowflake-ingest-java `RequestBuilder.java` (endpoint formats, the
//!   `requestId` query parameter on every call, `beginMark`, `startTimeInclusive`/
//!   `endTimeExclusive`) and `HistoryResponse.java` (the per-file fields and their types,
//!   `nextBeginMark` as a string).
//! - [PY] snowflakedb/snowflake-ingest-python `simple_ingest_manager.py`, `utils/uris.py`
//!   (the same URLs and body), `utils/network.py` (retries 408 and 5xx).
//!
//! The pipe's own `COPY INTO` (created by `sql/35_pipes.sql`) decides format and lineage; the
//! loader only says which staged files to load and reads what became of them.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use shared::snowflake::request_id_for;

use crate::copy::match_path;
use crate::outcome::FileOutcome;

/// [REST]: "A post can contain at most 5000 files."
pub(crate) const MAX_FILES_PER_INSERT: usize = 5000;

/// [REST]: "Each file path given must be <= 1024 bytes long when serialized as UTF-8."
pub(crate) const MAX_PATH_BYTES: usize = 1024;

/// A pipe, as SQL names it and as the REST path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeName {
    /// `"DB"."S"."T_PIPE"`, for messages and SQL.
    pub(crate) quoted: String,
    /// `DB.S.T_PIPE`, each part as Snowflake stores it ([REST]: case-sensitive, fully
    /// qualified), percent-encoded for the URL path.
    pub(crate) rest: String,
}

/// The pipe of a table as [`ident::qualified`](shared::snowflake::ident::qualified) quotes it
/// (`"DB"."S"."T"`): `T` + `suffix` in the same database and schema.
pub(crate) fn pipe_for(table: &str, suffix: &str) -> Result<PipeName, String> {
    let inner = table
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .ok_or_else(|| format!("table {table} is not a quoted name"))?;
    let mut parts: Vec<String> = inner.split("\".\"").map(String::from).collect();
    if parts.len() != 3 {
        return Err(format!(
            "the Snowpipe REST API needs a fully qualified pipe (DB.SCHEMA.PIPE); table {table} has {} part(s)",
            parts.len()
        ));
    }
    // PIPE_SUFFIX is checked at start-up to make an unquoted name, which Snowflake upper-cases
    parts[2].push_str(&suffix.to_ascii_uppercase());
    if let Some(p) = parts.iter().find(|p| p.contains('.') || p.contains('"')) {
        return Err(format!(
            "pipe name part {p:?} contains '.' or '\"': the REST path DB.SCHEMA.PIPE would be ambiguous"
        ));
    }
    let rest = parts
        .iter()
        .map(|p| percent_encoding::utf8_percent_encode(p, PATH_PART).to_string())
        .collect::<Vec<_>>()
        .join(".");
    Ok(PipeName {
        quoted: parts
            .iter()
            .map(|p| format!("\"{p}\""))
            .collect::<Vec<_>>()
            .join("."),
        rest,
    })
}

/// Characters escaped in a path segment: everything but unreserved characters and `$`.
const PATH_PART: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'$');

/// The three endpoints [REST] [JAVA].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    InsertFiles,
    InsertReport,
    LoadHistoryScan,
}

/// `/v1/data/pipes/<DB.S.PIPE>/<endpoint>`.
pub(crate) fn endpoint_path(pipe: &PipeName, endpoint: Endpoint) -> String {
    let name = match endpoint {
        Endpoint::InsertFiles => "insertFiles",
        Endpoint::InsertReport => "insertReport",
        Endpoint::LoadHistoryScan => "loadHistoryScan",
    };
    format!("/v1/data/pipes/{}/{name}", pipe.rest)
}

/// A file to hand to the pipe: its path below the stage, its ETag and the messages carrying it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeFile<'a> {
    pub(crate) path: &'a str,
    pub(crate) etag: Option<&'a str>,
    pub(crate) message_ids: BTreeSet<&'a str>,
}

/// One `insertFiles` request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InsertRequest {
    /// Paths below the stage, in body order.
    pub(crate) files: Vec<String>,
    /// Deterministic: the same chunk of the same files carried by the same messages gets the same
    /// id, so a retried invocation re-sends the request Snowflake saw (and logs show it as one).
    pub(crate) request_id: Uuid,
    /// `{"files": [{"path": …}, …]}` [REST].
    pub(crate) body: Vec<u8>,
}

/// Why a file cannot be handed to a pipe.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("file path is {0} bytes long; the Snowpipe REST API takes at most 1024")]
pub(crate) struct PathTooLong(pub(crate) usize);

/// The `insertFiles` requests for `files` of `pipe`: sorted by path, in chunks of at most
/// [`MAX_FILES_PER_INSERT`]; a path longer than [`MAX_PATH_BYTES`] is refused.
pub(crate) fn insert_requests(
    pipe: &PipeName,
    files: &[PipeFile<'_>],
) -> Result<Vec<InsertRequest>, PathTooLong> {
    if let Some(f) = files.iter().find(|f| f.path.len() > MAX_PATH_BYTES) {
        return Err(PathTooLong(f.path.len()));
    }
    let mut files: Vec<&PipeFile<'_>> = files.iter().collect();
    files.sort_by_key(|f| f.path);
    files.dedup_by_key(|f| f.path);
    Ok(files
        .chunks(MAX_FILES_PER_INSERT)
        .enumerate()
        .map(|(i, chunk)| insert_request(pipe, i, chunk))
        .collect())
}

fn insert_request(pipe: &PipeName, index: usize, chunk: &[&PipeFile<'_>]) -> InsertRequest {
    let index = index.to_string();
    let messages: BTreeSet<&str> = chunk
        .iter()
        .flat_map(|f| f.message_ids.iter().copied())
        .collect();
    let mut id_parts: Vec<&str> = vec!["loader-pipe", &pipe.rest, &index];
    id_parts.extend(messages);
    id_parts.push("files");
    for f in chunk {
        id_parts.push(f.path);
        id_parts.push(f.etag.unwrap_or(""));
    }
    let paths: Vec<String> = chunk.iter().map(|f| f.path.to_string()).collect();
    let body = serde_json::json!({
        "files": paths.iter().map(|p| serde_json::json!({ "path": p })).collect::<Vec<_>>()
    });
    InsertRequest {
        request_id: request_id_for(&id_parts),
        body: serde_json::to_vec(&body).expect("serialisable"),
        files: paths,
    }
}

/// The answer to `insertFiles` [REST]: `{"requestId": …, "responseCode": "SUCCESS"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InsertResponse {
    #[serde(default)]
    pub(crate) response_code: Option<String>,
}

/// The answer to `insertReport` or `loadHistoryScan` [REST] [JAVA]: the files it reports, and
/// for `insertReport` the mark to ask from next.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    #[serde(default)]
    pub(crate) files: Vec<ReportedFile>,
    /// A string in [JAVA]; taken as any JSON scalar and sent back as written.
    #[serde(default)]
    pub(crate) next_begin_mark: Option<Value>,
    /// False when events were missed between the mark given and the first event reported.
    #[serde(default)]
    pub(crate) complete_result: Option<Value>,
}

impl Report {
    /// `nextBeginMark` as the next `beginMark` query value.
    pub(crate) fn next_mark(&self) -> Option<String> {
        match self.next_begin_mark.as_ref()? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }

    /// True unless the answer says events were missed (`completeResult: false`).
    pub(crate) fn complete(&self) -> bool {
        match &self.complete_result {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => !s.eq_ignore_ascii_case("false"),
            _ => true,
        }
    }
}

/// One file of a report [JAVA] `HistoryResponse.FileEntry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReportedFile {
    /// "The file path relative to the stage location."
    pub(crate) path: String,
    #[serde(default)]
    pub(crate) status: Option<String>,
    #[serde(default)]
    pub(crate) rows_inserted: Option<u64>,
    #[serde(default)]
    pub(crate) first_error: Option<String>,
    #[serde(default)]
    pub(crate) first_error_line_num: Option<u64>,
    #[serde(default)]
    pub(crate) system_error: Option<String>,
}

/// What a report says of one file, when it says something final: `LOADED` is loaded with
/// `rowsInserted` rows; `LOAD_FAILED` and `PARTIALLY_LOADED` fail with the first error (a
/// partial load is failed, not accepted: the rejected rows would be lost silently, and the
/// pipe's load metadata keeps the file from loading twice, so retries only repeat the report
/// until the message reaches the DLQ carrying it); `LOAD_IN_PROGRESS` or anything else is
/// `None`, still pending.
pub(crate) fn reported_outcome(f: &ReportedFile) -> Option<FileOutcome> {
    let status = f
        .status
        .as_deref()?
        .trim()
        .to_ascii_uppercase()
        .replace(' ', "_");
    let error = || {
        let mut e = f
            .first_error
            .clone()
            .or_else(|| f.system_error.clone())
            .unwrap_or_else(|| "no error given".into());
        if let Some(line) = f.first_error_line_num {
            e.push_str(&format!(" (line {line})"));
        }
        e
    };
    match status.as_str() {
        "LOADED" => Some(FileOutcome::Loaded {
            rows: f.rows_inserted.unwrap_or(0),
        }),
        "LOAD_FAILED" => Some(FileOutcome::failed(format!("LOAD_FAILED: {}", error()))),
        "PARTIALLY_LOADED" => Some(FileOutcome::failed(format!(
            "PARTIALLY_LOADED ({} row(s) loaded, the others rejected; not retried by Snowpipe): {}",
            f.rows_inserted.unwrap_or(0),
            error()
        ))),
        _ => None,
    }
}

/// Takes the files of `report` that are among `pending` and reported final out of `pending`,
/// with their outcome; the last entry of a file wins (reports list events oldest first).
pub(crate) fn settle<'p>(
    report: &Report,
    pending: &mut BTreeSet<&'p str>,
) -> BTreeMap<&'p str, FileOutcome> {
    let paths: Vec<&'p str> = pending.iter().copied().collect();
    let mut settled = BTreeMap::new();
    for f in &report.files {
        let Some(path) = match_path(&f.path, &paths) else {
            continue;
        };
        if let Some(outcome) = reported_outcome(f) {
            settled.insert(path, outcome);
        }
    }
    for p in settled.keys() {
        pending.remove(p);
    }
    settled
}

/// An instant as `loadHistoryScan` reads it: ISO-8601 in UTC with milliseconds [JAVA].
pub(crate) fn history_time(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests;
