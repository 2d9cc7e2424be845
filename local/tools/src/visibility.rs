//! When records put to Kinesis become visible in a Snowflake table: the load test's put → visible
//! latency.
//!
//! Every table the upsert writes carries the shard and sequence number of the row's newest
//! record. Records of one shard land in order (one invocation per shard at a time, each MERGE or
//! channel commit atomic and in order), so once a table shows a shard's sequence number `s`,
//! every record of that shard up to `s` is visible. A [`Watch`] polls the newest sequence number
//! per shard a few times a second and keeps when each one first showed; a record is visible at
//! the first poll that showed its shard at or past it (up to one poll interval late).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shared::kinesis::sequence::{cmp_sequence_numbers, SequenceNumber};
use shared::lineage::table::{SEQUENCE_NUMBER, SHARD_ID};
use shared::snowflake::{SnowflakeClient, Statement};

/// How often a watch reads its table.
pub const POLL_EVERY: Duration = Duration::from_millis(250);

/// A record as put: its shard, sequence number and Kinesis arrival time (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PutRecord {
    /// The shard id.
    pub shard: String,
    /// The sequence number Kinesis gave it.
    pub sequence: String,
    /// `approximateArrivalTimestamp`, in ms since the epoch.
    pub put_ms: u64,
}

/// Per shard, each newest sequence number the table showed and when (ms since the epoch), in
/// the order seen.
type Seen = HashMap<String, Vec<(String, u64)>>;

/// A table being polled in the background.
pub struct Watch {
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Watch {
    /// Starts polling `table` (a qualified name) through `client`.
    pub fn start(client: SnowflakeClient, table: String) -> Self {
        let seen = Arc::new(Mutex::new(Seen::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sql = format!(
            "SELECT \"{SHARD_ID}\", MAX({}) FROM {table} GROUP BY 1",
            SequenceNumber::sql_order(&format!("\"{SEQUENCE_NUMBER}\""))
        );
        let task = tokio::spawn(poll(client, sql, seen.clone(), stop.clone()));
        Self { seen, stop, task }
    }

    /// Whether every record of `records` has shown (each shard at or past its newest record).
    pub fn covers(&self, records: &[PutRecord]) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        newest_per_shard(records).iter().all(|(shard, want)| {
            seen.get(*shard)
                .and_then(|v| v.last())
                .is_some_and(|(got, _)| cmp_sequence_numbers(got, want).is_ge())
        })
    }

    /// Polls until `records` have all shown or `timeout` passed; then stops and returns each
    /// record's put → visible latency in ms (records that never showed are left out).
    pub async fn finish(self, records: &[PutRecord], timeout: Duration) -> Vec<u64> {
        let started = Instant::now();
        while !self.covers(records) && started.elapsed() < timeout {
            tokio::time::sleep(POLL_EVERY).await;
        }
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let seen = std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()));
        latencies(&seen, records)
    }
}

async fn poll(client: SnowflakeClient, sql: String, seen: Arc<Mutex<Seen>>, stop: Arc<AtomicBool>) {
    let statement = Statement::new(sql);
    while !stop.load(Ordering::SeqCst) {
        let asked = Instant::now();
        // A failed poll (the table not there yet) is just a poll that saw nothing.
        if let Ok(answer) = client
            .execute(&statement, Instant::now() + Duration::from_secs(30))
            .await
        {
            let now = now_ms();
            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
            for row in &answer.rows {
                if let (Some(Some(shard)), Some(Some(seq))) = (row.first(), row.get(1)) {
                    let list = seen.entry(shard.clone()).or_default();
                    if list
                        .last()
                        .is_none_or(|(last, _)| cmp_sequence_numbers(seq, last).is_gt())
                    {
                        list.push((seq.clone(), now));
                    }
                }
            }
        }
        tokio::time::sleep(POLL_EVERY.saturating_sub(asked.elapsed())).await;
    }
}

/// Each shard's newest sequence number among `records`.
fn newest_per_shard(records: &[PutRecord]) -> HashMap<&str, &str> {
    let mut newest: HashMap<&str, &str> = HashMap::new();
    for r in records {
        let entry = newest.entry(&r.shard).or_insert(&r.sequence);
        if cmp_sequence_numbers(&r.sequence, entry).is_gt() {
            *entry = &r.sequence;
        }
    }
    newest
}

/// Put → first shown, per record that showed.
fn latencies(seen: &Seen, records: &[PutRecord]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| {
            let list = seen.get(&r.shard)?;
            let i = list.partition_point(|(s, _)| cmp_sequence_numbers(s, &r.sequence).is_lt());
            list.get(i).map(|(_, at)| at.saturating_sub(r.put_ms))
        })
        .collect()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(shard: &str, sequence: &str, put_ms: u64) -> PutRecord {
        PutRecord {
            shard: shard.into(),
            sequence: sequence.into(),
            put_ms,
        }
    }

    #[test]
    fn a_record_is_visible_at_the_first_poll_that_shows_its_shard_at_or_past_it() {
        let seen = Seen::from([
            (
                "a".to_string(),
                vec![("0005".to_string(), 1_000), ("0120".to_string(), 2_000)],
            ),
            ("b".to_string(), vec![("7".to_string(), 1_500)]),
        ]);
        let records = [
            put("a", "5", 100),
            put("a", "6", 200),
            put("a", "120", 300),
            put("b", "9", 0),
        ];
        // "b"/9 never showed: left out.
        assert_eq!(latencies(&seen, &records), vec![900, 1_800, 1_700]);
    }

    #[test]
    fn newest_per_shard_compares_sequence_numbers_as_numbers() {
        let records = [put("a", "99", 0), put("a", "100", 0), put("b", "3", 0)];
        let newest = newest_per_shard(&records);
        assert_eq!(newest["a"], "100");
        assert_eq!(newest["b"], "3");
    }
}
