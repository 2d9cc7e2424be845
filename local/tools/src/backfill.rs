//! `backfill`: an existing raw-zone prefix (a table, a day, an hour) through the loader's own COPY
//! path, in chunks, as if each object had just been created. Idempotent: Snowflake's load
//! metadata skips files already loaded (the loader reports them as already loaded), so a
//! backfill can be stopped and run again.

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
    /// Files Snowflake's load metadata shows were loaded before (a backfill run again).
    pub already_loaded: usize,
    /// Files not loaded, counting every file of a chunk whose invocation failed as a whole.
    pub failed: usize,
    /// Rows loaded, in all tables.
    pub rows_loaded: u64,
}

impl BackfillReport {
    /// Adds what one invocation of the loader did.
    fn add(&mut self, outcome: &loader::Outcome) {
        self.loaded += outcome.loaded;
        self.already_loaded += outcome.already_loaded;
        self.failed += outcome.failed;
        self.rows_loaded += outcome.rows_loaded;
    }
}

/// Loads every object under `prefix` of `bucket`, `chunk` objects per invocation of the loader;
/// with `dry_run` only lists them.
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
        if dry_run {
            progress.println(&format!("{title} {} object(s) (dry run)", keys.len()));
        } else {
            let event = objects_created_event(bucket, keys);
            let deadline = Instant::now() + Duration::from_secs(600);
            match loader.handle_body(&event, deadline).await {
                Ok((_, outcome)) => {
                    report.add(&outcome);
                    progress.println(&format!(
                        "{title} {} object(s): {} loaded ({} rows), {} already loaded, {} failed",
                        keys.len(),
                        outcome.loaded,
                        outcome.rows_loaded,
                        outcome.already_loaded,
                        outcome.failed
                    ));
                }
                Err(e) => {
                    // A file that fails fails a direct invocation; its neighbours were handled.
                    progress.println(&format!("{title} {e}"));
                    report.failed += keys.len();
                }
            }
        }
        progress.item_done();
    }
    progress.finish();
    Ok(report)
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
