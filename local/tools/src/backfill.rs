//! `backfill`: an existing raw-zone prefix (a table, a day, an hour) through the loader's own COPY
//! path, in chunks, as if each object had just been created. Never loads a file twice and never
//! reports a loaded file as failed, however long ago it was loaded: before each chunk it asks the
//! target table which of the chunk's files already have rows (the lineage every row carries, see
//! `loader::Loader::landed`), reports those as already loaded and loads only the rest. Snowflake's
//! own records cannot answer that alone: its load metadata expires after 64 days (so COPY with
//! `LOAD_UNCERTAIN_FILES = TRUE`, which the loader needs for old files never loaded, would load
//! them again) and `LOAD_HISTORY` shows 14 days (so a file loaded 14–64 days ago, which COPY skips
//! without a word, could not be shown loaded). A backfill can be stopped and run again.

use crate::progress::Progress;
use std::time::{Duration, Instant};

use serde_json::json;

/// What a backfill did, summed over its invocations of the loader.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BackfillReport {
    /// Objects listed under the prefix.
    pub objects: usize,
    /// Files the loader's COPY loaded.
    pub loaded: usize,
    /// Files already loaded: rows of theirs are in the target table, or (a file loaded while the
    /// backfill ran) Snowflake's load metadata and `LOAD_HISTORY` show the load.
    pub already_loaded: usize,
    /// Files gone from the bucket between the listing and the load.
    pub not_in_stage: usize,
    /// Files not loaded, counting every file of a chunk whose invocation failed as a whole or
    /// whose target could not be asked.
    pub failed: usize,
    /// Rows loaded, in all tables.
    pub rows_loaded: u64,
}

impl BackfillReport {
    /// Adds what one invocation of the loader did.
    fn add(&mut self, outcome: &loader::Outcome) {
        self.loaded += outcome.loaded;
        self.already_loaded += outcome.already_loaded;
        self.not_in_stage += outcome.not_in_stage;
        self.failed += outcome.failed;
        self.rows_loaded += outcome.rows_loaded;
    }
}

/// Loads every object under `prefix` of `bucket` that is not in its table yet, `chunk` objects
/// per invocation of the loader; with `dry_run` only lists them.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    loader: &loader::Loader,
    bucket: &str,
    prefix: &str,
    chunk: usize,
    dry_run: bool,
) -> Result<BackfillReport, String> {
    let keys = crate::demo::list(s3, bucket, prefix).await?;
    let mut report = BackfillReport {
        objects: keys.len(),
        ..BackfillReport::default()
    };
    let chunks: Vec<&[String]> = keys.chunks(chunk.max(1)).collect();
    let mut progress = Progress::new(Some(chunks.len()));
    for (i, keys) in chunks.iter().enumerate() {
        let title = format!("[{}/{}]", i + 1, chunks.len());
        let line = if dry_run {
            format!("{} object(s) (dry run)", keys.len())
        } else {
            load_chunk(loader, bucket, keys, &mut report).await
        };
        progress.println(&format!("{title} {line}"));
        progress.item_done();
    }
    progress.finish();
    Ok(report)
}

/// Loads the files of `keys` that have no rows in their table yet; returns the progress line.
async fn load_chunk(
    loader: &loader::Loader,
    bucket: &str,
    keys: &[String],
    report: &mut BackfillReport,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(600);
    let landed = match loader
        .landed(&objects_created_event(bucket, keys), deadline)
        .await
    {
        Ok(l) => l,
        Err(e) => {
            // without the answer a load could be a second one: load nothing, report the chunk
            report.failed += keys.len();
            return format!("{} object(s) not loaded: {e}", keys.len());
        }
    };
    report.already_loaded += landed.len();
    let rest: Vec<String> = keys
        .iter()
        .filter(|k| !landed.contains(*k))
        .cloned()
        .collect();
    if rest.is_empty() {
        return format!("{} object(s): all already in their table", keys.len());
    }
    match loader
        .handle_body(&objects_created_event(bucket, &rest), deadline)
        .await
    {
        Ok((_, outcome)) => {
            report.add(&outcome);
            format!(
                "{} object(s): {} already in their table; {} loaded ({} rows), {} already loaded, {} not in the stage, {} failed",
                keys.len(),
                landed.len(),
                outcome.loaded,
                outcome.rows_loaded,
                outcome.already_loaded,
                outcome.not_in_stage,
                outcome.failed
            )
        }
        Err(e) => {
            // A file that fails fails a direct invocation; its neighbours were handled.
            report.failed += rest.len();
            e.to_string()
        }
    }
}

/// The event S3 sends for new objects (keys URL-encoded as S3 encodes them).
fn objects_created_event(bucket: &str, keys: &[String]) -> String {
    let records: Vec<serde_json::Value> = keys
        .iter()
        .map(|k| {
            let encoded: String = url_encode(k);
            json!({"eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                       "object": {"key": encoded}}})
        })
        .collect();
    json!({ "Records": records }).to_string()
}

/// A key as S3 puts it in notifications: URL-encoded, `/` kept, space as `+`.
fn url_encode(key: &str) -> String {
    key.split('/')
        .map(|part| {
            percent_encoding::utf8_percent_encode(part, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%20", "+")
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_")
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    #[test]
    fn keys_are_encoded_as_s3_notifications_encode_them() {
        assert_eq!(
            super::url_encode("raw/t/2024/a b+é_x-1.ndjson.gz"),
            "raw/t/2024/a+b%2B%C3%A9_x-1.ndjson.gz"
        );
    }
}
