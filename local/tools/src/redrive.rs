//! `redrive`: quarantined records through a function again, with its current configuration.
//!
//! Each quarantine object (`errors/<function>/…`, one gzip NDJSON line per record with its
//! lineage and the original bytes, see `shared::rawzone::quarantine`) becomes the Kinesis event
//! its records arrived in, and the function's own handler runs it: what fits now lands; what
//! still does not is quarantined again by the handler, with today's reason. The original object
//! is deleted only when each of its records landed or was quarantined anew under another key:
//! quarantine keys depend only on the records, so when the same records fail again (a redrive
//! before the fix, or a second one) the handler writes the very same key — often the very same
//! bytes — and that object is then the one place its records are. Running a redrive twice, or
//! before the fix is deployed, therefore removes nothing.
//! KPL sub-records come back as plain records of their aggregate's sequence number.

use std::io::Read as _;
use std::time::{Duration, Instant};

use aws_lambda_events::event::streams::KinesisEventResponse;
use base64::Engine as _;
use serde_json::Value;

use shared::rawzone::layout::Writer;

use crate::events::{kinesis_event, KinesisRecordIn};
use crate::progress::Progress;

/// Which handler runs the records.
pub enum Target {
    /// The orchestrator: records land in the raw zone again.
    Orchestrator(Box<orchestrator::Orchestrator>),
    /// The upsert: records are merged into their tables again.
    Upsert(Box<upsert::Upsert>),
}

impl Target {
    /// The named function, configured from the environment as Lambda would.
    pub async fn from_env(function: &str) -> Result<Self, String> {
        Ok(match function {
            "upsert" => {
                let mut upsert = upsert::Upsert::from_env()
                    .await
                    .map_err(|e| e.to_string())?;
                upsert.for_recovery(&recovery_suffix());
                Target::Upsert(Box::new(upsert))
            }
            "orchestrator" => Target::Orchestrator(Box::new(
                orchestrator::Orchestrator::from_env()
                    .await
                    .map_err(|e| e.to_string())?,
            )),
            other => return Err(format!("--function {other:?}: upsert or orchestrator")),
        })
    }

    /// The key segment of the quarantine objects this function writes.
    fn writer(&self) -> &'static str {
        match self {
            Target::Orchestrator(_) => Writer::Orchestrator.as_str(),
            Target::Upsert(_) => Writer::Upsert.as_str(),
        }
    }

    /// Runs the Kinesis event `body` through the handler; returns what it did with the batch.
    pub(crate) async fn handle(&self, body: &str, deadline: Instant) -> Result<Handled, String> {
        let handled = |r: KinesisEventResponse, quarantined, quarantine_key| Handled {
            failures: r.batch_item_failures.len(),
            quarantined,
            quarantine_key,
        };
        match self {
            Target::Orchestrator(o) => o
                .handle_body(body, deadline)
                .await
                .map(|(r, out)| handled(r, out.quarantined, out.quarantine_key))
                .map_err(|e| e.to_string()),
            Target::Upsert(u) => u
                .handle_body(body, deadline)
                .await
                .map(|(r, out)| handled(r, out.quarantined, out.quarantine_key))
                .map_err(|e| e.to_string()),
        }
    }
}

/// The channel suffix of one recovery run (streaming mode): unique per process, so two tools
/// running at once never share a channel, and never one of the live function's.
pub fn recovery_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "_RECOVERY_{:08X}",
        nanos ^ std::process::id().rotate_left(16)
    )
}

/// What a handler did with a batch, as a recovery tool needs it.
pub(crate) struct Handled {
    /// Records it reported failed (Lambda would resend from the lowest).
    pub(crate) failures: usize,
    /// Records it quarantined.
    pub(crate) quarantined: usize,
    /// Where it wrote them.
    pub(crate) quarantine_key: Option<String>,
}

/// What a redrive did, over every quarantine object under the prefix.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RedriveReport {
    /// Quarantine objects read.
    pub objects: usize,
    /// Records in them (counted in a dry run too).
    pub records: usize,
    /// Records that did not fit again (quarantined anew).
    pub still_quarantined: usize,
    /// Original objects removed (everything in them was handled).
    pub deleted: usize,
    /// Objects whose batch the handler did not accept (left untouched).
    pub failed: usize,
    /// Objects another function quarantined (their key names that writer): left untouched, for
    /// that function's own redrive.
    pub other_function: usize,
}

/// One quarantine line as a record to send again.
struct Line {
    stream: String,
    shard_id: String,
    sequence_number: String,
    partition_key: String,
    arrival_secs: f64,
    data: Vec<u8>,
}

fn parse_line(line: &str) -> Result<Line, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let m = &v["metadata"];
    let text = |k: &str| {
        m[k].as_str()
            .map(String::from)
            .ok_or_else(|| format!("metadata.{k} is missing"))
    };
    let data = match (v["payload"].as_str(), v["payload_base64"].as_str()) {
        (Some(p), _) => p.as_bytes().to_vec(),
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|e| format!("payload_base64: {e}"))?,
        _ => return Err("no payload".into()),
    };
    let arrival_secs = chrono::DateTime::parse_from_rfc3339(&text("arrival_time")?)
        .map(|t| t.timestamp_millis() as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok(Line {
        stream: text("stream")?,
        shard_id: text("shard_id")?,
        sequence_number: text("sequence_number")?,
        partition_key: text("partition_key")?,
        arrival_secs,
        data,
    })
}

/// Redrives every quarantine object under `prefix`; with `dry_run` only counts them.
pub async fn run(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    target: &Target,
    region: &str,
    dry_run: bool,
) -> Result<RedriveReport, String> {
    let keys = crate::demo::list(s3, bucket, prefix).await?;
    let redrive = Redrive {
        s3,
        bucket,
        target,
        region,
        dry_run,
    };
    let mut report = RedriveReport::default();
    let mut progress = Progress::new(Some(keys.len()));
    for (i, key) in keys.iter().enumerate() {
        let title = format!("[{}/{}] {key}", i + 1, keys.len());
        redrive.object(key, &title, &progress, &mut report).await?;
        progress.item_done();
    }
    progress.finish();
    Ok(report)
}

/// Where a redrive reads and what runs the records.
struct Redrive<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    target: &'a Target,
    region: &'a str,
    dry_run: bool,
}

impl Redrive<'_> {
    /// Runs one quarantine object's records through the handler and removes the object when
    /// each landed or was quarantined under another key.
    async fn object(
        &self,
        key: &str,
        title: &str,
        progress: &Progress,
        report: &mut RedriveReport,
    ) -> Result<(), String> {
        // Keys are `<error prefix>/<writer>/…`: another function's records land in its own
        // place (the raw zone, not a MERGE target), so they are never taken here.
        if !key
            .split('/')
            .any(|segment| segment == self.target.writer())
        {
            progress.println(&format!(
                "{title}: another function's quarantine; left as it is"
            ));
            report.other_function += 1;
            return Ok(());
        }
        let lines = read_quarantine(self.s3, self.bucket, key).await?;
        report.objects += 1;
        report.records += lines.len();
        let dry = if self.dry_run { " (dry run)" } else { "" };
        progress.println(&format!("{title}: {} record(s){dry}", lines.len()));
        if self.dry_run || lines.is_empty() {
            return Ok(());
        }
        let event = redrive_event(self.region, &lines);
        let deadline = Instant::now() + Duration::from_secs(120);
        let handled = self
            .target
            .handle(&event, deadline)
            .await
            .map_err(|e| format!("{key}: the handler failed: {e}"))?;
        if handled.failures > 0 {
            progress.println("    not accepted (the handler reported a retry); left as it is");
            report.failed += 1;
            return Ok(());
        }
        report.still_quarantined += handled.quarantined;
        // Quarantined again under this very key: that object is now where they are.
        let requarantined_here = handled.quarantine_key.as_deref() == Some(key);
        if !requarantined_here {
            delete(self.s3, self.bucket, key).await?;
            report.deleted += 1;
        }
        let stays = if requarantined_here {
            " (in the same object, which stays)"
        } else {
            ""
        };
        progress.println(&format!(
            "    landed {}, quarantined again {}{stays}",
            lines.len() - handled.quarantined,
            handled.quarantined
        ));
        Ok(())
    }
}

/// The records of the quarantine object `key`.
async fn read_quarantine(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Vec<Line>, String> {
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| format!("get {key}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)))?;
    let body = object
        .body
        .collect()
        .await
        .map_err(|e| format!("read {key}: {e}"))?
        .into_bytes();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&body[..])
        .read_to_string(&mut text)
        .map_err(|e| format!("{key} is not gzip NDJSON: {e}"))?;
    let lines = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(parse_line)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{key}: {e}"))?;
    Ok(lines)
}

/// The Kinesis event the lines arrived in: one object holds the records of one shard's batch,
/// so the first line names the stream and shard for all of them.
fn redrive_event(region: &str, lines: &[Line]) -> String {
    let first = &lines[0];
    let records: Vec<KinesisRecordIn<'_>> = lines
        .iter()
        .map(|l| KinesisRecordIn {
            sequence_number: &l.sequence_number,
            partition_key: &l.partition_key,
            data: &l.data,
            arrival_secs: l.arrival_secs,
        })
        .collect();
    let arn = format!(
        "arn:aws:kinesis:{region}:000000000000:stream/{}",
        first.stream
    );
    kinesis_event(region, &arn, &first.shard_id, &records)
}

async fn delete(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(), String> {
    s3.delete_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            format!(
                "delete {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        })?;
    Ok(())
}
