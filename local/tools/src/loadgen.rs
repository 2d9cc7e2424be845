//! The load generator: puts templated records to a Kinesis stream at a given rate.
//!
//! `PutRecords` in batches of at most 500; entries the service rejects (throttling) are retried
//! with backoff until they land, so the count put is exactly the count asked for.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use shared::sample::{cdc_change, order_event, sensor_reading, Rng};

/// Which records to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// The reference system's `{"sensorId", "currentTemperature", "status"}`.
    Sensor,
    /// Nested e-commerce order events.
    Order,
    /// CDC insert/update/delete changes of an `orders` table.
    Cdc,
}

impl std::str::FromStr for Template {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sensor" | "sensors" => Ok(Template::Sensor),
            "order" | "orders" => Ok(Template::Order),
            "cdc" => Ok(Template::Cdc),
            _ => Err(format!("unknown template {s:?} (sensor, order, cdc)")),
        }
    }
}

/// A generator of records and their partition keys.
pub struct Generator {
    template: Template,
    rng: Rng,
    n: u64,
    /// Distinct keys (sensor ids, order ids).
    pub keys: u64,
}

impl Generator {
    /// A generator of `template` records over `keys` distinct keys (at least 1); the same
    /// `seed` gives the same records.
    pub fn new(template: Template, seed: u64, keys: u64) -> Self {
        Self {
            template,
            rng: Rng::new(seed),
            n: 0,
            keys: keys.max(1),
        }
    }

    /// The next (partition key, payload).
    pub fn next_record(&mut self) -> (String, String) {
        self.n += 1;
        let payload = match self.template {
            Template::Sensor => sensor_reading(&mut self.rng, self.keys),
            Template::Order => order_event(&mut self.rng, self.n),
            Template::Cdc => cdc_change(&mut self.rng, self.keys, self.n),
        };
        // Partition by the business key so one key's changes stay in order on one shard.
        let key = serde_json::from_str::<serde_json::Value>(&payload)
            .ok()
            .and_then(|v| {
                ["sensorId", "order_id", "event_id"]
                    .iter()
                    .find_map(|k| v.get(k).map(|x| x.to_string()))
            })
            .unwrap_or_else(|| self.n.to_string());
        (key, payload)
    }
}

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    /// Records put so far (each exactly once, retries aside).
    pub records: u64,
    /// Payload bytes generated, partition keys not counted.
    pub bytes: u64,
    /// `PutRecords` requests sent, retries included.
    pub requests: u64,
    /// Entries the service rejected (throttled) and that were put again.
    pub retried_entries: u64,
    /// Time since the run started.
    pub elapsed: Duration,
}

impl Report {
    /// The rate achieved so far.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why a run stopped before putting every record.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A `PutRecords` request failed as a whole (no stream, no credentials, ...).
    #[error("PutRecords to {stream} failed: {message}")]
    Put {
        /// The stream's name.
        stream: String,
        /// The SDK's error, with its context.
        message: String,
    },
    /// Some entries were still rejected after the last attempt.
    #[error("{failed} entries still rejected after {attempts} attempts")]
    GaveUp {
        /// Entries of the batch not put.
        failed: usize,
        /// `PutRecords` attempts made for the batch.
        attempts: u32,
    },
}

/// Puts `count` records at about `rate` records/s (0: as fast as possible), in batches of at
/// most 500. `progress` is called after every batch.
pub async fn run(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    generator: &mut Generator,
    count: u64,
    rate: u64,
    mut progress: impl FnMut(&Report),
) -> Result<Report, LoadError> {
    const MAX_BATCH: u64 = 500;
    let started = Instant::now();
    let mut report = Report::default();
    while report.records < count {
        let n = (count - report.records).min(MAX_BATCH);
        let entries = next_entries(generator, n, &mut report);
        put_all(client, stream, entries, &mut report).await?;
        report.records += n;
        report.elapsed = started.elapsed();
        progress(&report);
        if rate > 0 {
            keep_to_rate(started, report.records, rate).await;
        }
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The generator's next `n` records as `PutRecords` entries, their payload bytes counted.
fn next_entries(
    generator: &mut Generator,
    n: u64,
    report: &mut Report,
) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|_| {
            let (key, payload) = generator.next_record();
            report.bytes += payload.len() as u64;
            PutRecordsRequestEntry::builder()
                .partition_key(key)
                .data(Blob::new(payload.into_bytes()))
                .build()
                .expect("partition key and data are set")
        })
        .collect()
}

/// Puts `entries`, putting the rejected ones again with backoff until every one has landed (or
/// ten attempts were not enough).
async fn put_all(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    mut entries: Vec<PutRecordsRequestEntry>,
    report: &mut Report,
) -> Result<(), LoadError> {
    let mut attempts = 0u32;
    while !entries.is_empty() {
        attempts += 1;
        report.requests += 1;
        let out = client
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries.clone()))
            .send()
            .await
            .map_err(|e| LoadError::Put {
                stream: stream.into(),
                message: aws_sdk_kinesis::error::DisplayErrorContext(&e).to_string(),
            })?;
        // Results line up with the request entries; keep only the rejected ones.
        let rejected: Vec<PutRecordsRequestEntry> = out
            .records()
            .iter()
            .zip(entries)
            .filter(|(r, _)| r.error_code().is_some())
            .map(|(_, e)| e)
            .collect();
        if !rejected.is_empty() {
            if attempts >= 10 {
                return Err(LoadError::GaveUp {
                    failed: rejected.len(),
                    attempts,
                });
            }
            report.retried_entries += rejected.len() as u64;
            tokio::time::sleep(Duration::from_millis(50 << attempts.min(6))).await;
        }
        entries = rejected;
    }
    Ok(())
}

/// Waits until `records` are due at `rate` records/s since `started`.
async fn keep_to_rate(started: Instant, records: u64, rate: u64) {
    let due = Duration::from_secs_f64(records as f64 / rate as f64);
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generators_key_records_by_their_business_key() {
        let mut g = Generator::new(Template::Sensor, 1, 5);
        for _ in 0..50 {
            let (key, payload) = g.next_record();
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
            assert_eq!(key, v["sensorId"].to_string());
            assert!((1..=5).contains(&v["sensorId"].as_u64().unwrap()));
        }
        let (key, payload) = Generator::new(Template::Cdc, 1, 3).next_record();
        assert!(payload.contains(&format!("\"order_id\":{key}")));
        assert!("bogus".parse::<Template>().is_err());
    }
}
