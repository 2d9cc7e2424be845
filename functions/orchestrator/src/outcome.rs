//! What one batch did: counted from its plan and the puts that failed, logged, and turned into
//! the invocation's metrics.

use std::time::Duration;

use aws_lambda_events::event::streams::KinesisEventResponse;
use shared::kinesis::record::KinesisRecord;
use shared::metrics::{Emf, Unit};
use shared::rawzone::s3::PutError;
use shared::rawzone::{Plan, PlannedObject};

/// What one batch did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    /// Records in the batch.
    pub records: usize,
    /// Records put in the quarantine object.
    pub quarantined: usize,
    /// The key of the batch's quarantine object, when it had one.
    pub quarantine_key: Option<String>,
    /// Objects written, the quarantine object included.
    pub objects_written: usize,
    /// Objects not written: refused by S3, or not confirmed before the deadline.
    pub objects_failed: usize,
    /// Of those, the ones not confirmed before the deadline.
    pub objects_unconfirmed: usize,
    pub(crate) bytes_in: usize,
    pub(crate) bytes_out: usize,
    /// Records in the data objects (written or to be resent).
    pub(crate) in_objects: usize,
    /// The table of every record, when the batch had one.
    pub(crate) table: Option<String>,
    /// Arrival of the newest record, ms since the epoch.
    pub(crate) newest_arrival_ms: Option<i64>,
    /// 1 when records ≠ records in objects + quarantined (a bug, never data): logged as an error.
    pub(crate) mismatches: usize,
}

impl BatchOutcome {
    /// The outcome of `plan`, made from `records`, once put with `failures` not written; a
    /// reconciliation mismatch is logged as an error here.
    pub(crate) fn new(
        plan: &Plan,
        records: &[KinesisRecord<'_>],
        failures: &[(&PlannedObject, PutError)],
    ) -> Self {
        let in_objects: usize = plan.objects.iter().map(|o| o.records).sum();
        let mismatches = usize::from(plan.records != in_objects + plan.quarantined);
        if mismatches > 0 {
            log_mismatch(plan, in_objects, records);
        }
        let unconfirmed = failures
            .iter()
            .filter(|(_, e)| matches!(e, PutError::Deadline { .. }))
            .count();
        Self {
            records: plan.records,
            quarantined: plan.quarantined,
            quarantine_key: plan.quarantine.as_ref().map(|q| q.key.clone()),
            objects_written: plan.objects.len() + usize::from(plan.quarantine.is_some())
                - failures.len(),
            objects_failed: failures.len(),
            objects_unconfirmed: unconfirmed,
            bytes_in: plan.bytes_in,
            bytes_out: plan.bytes_out(),
            in_objects,
            table: single_table(plan),
            newest_arrival_ms: records.iter().map(|r| r.meta.arrival_ms).max(),
            mismatches,
        }
    }

    /// Logs the batch's one summary line; `response` says where Lambda resends from.
    pub(crate) fn log(&self, response: &KinesisEventResponse, elapsed: Duration) {
        tracing::info!(
            records = self.records,
            quarantined = self.quarantined,
            objects_written = self.objects_written,
            objects_failed = self.objects_failed,
            objects_unconfirmed = self.objects_unconfirmed,
            bytes_in = self.bytes_in,
            bytes_out = self.bytes_out,
            retry_from = response
                .batch_item_failures
                .first()
                .and_then(|f| f.item_identifier.as_deref()),
            ms = elapsed.as_millis() as u64,
            "orchestrator batch"
        );
    }

    /// The invocation's EMF document.
    pub fn metrics(&self, namespace: &str, now_ms: i64) -> Emf {
        let written_bytes = self.bytes_out as f64;
        Emf::new(namespace, "orchestrator")
            .table(self.table.as_deref())
            .count("Records", self.records)
            .count("RecordsInObjects", self.in_objects)
            .count("Quarantined", self.quarantined)
            .count("ObjectsWritten", self.objects_written)
            .count("ObjectsFailed", self.objects_failed)
            .metric("BytesIn", Unit::Bytes, self.bytes_in as f64)
            .metric("BytesWritten", Unit::Bytes, written_bytes)
            .count("ReconciliationMismatches", self.mismatches)
            .lag(self.newest_arrival_ms, now_ms)
    }
}

/// The table every data object belongs to, when they all belong to the same one.
fn single_table(plan: &Plan) -> Option<String> {
    let mut tables = plan.objects.iter().filter_map(|o| o.table.as_deref());
    tables
        .next()
        .filter(|first| tables.all(|t| t == *first))
        .map(String::from)
}

fn log_mismatch(plan: &Plan, in_objects: usize, records: &[KinesisRecord<'_>]) {
    tracing::error!(
        records = plan.records,
        in_objects,
        quarantined = plan.quarantined,
        shard_id = records.first().map(|r| r.meta.shard_id.as_ref()),
        first_sequence_number = records.first().map(|r| r.meta.sequence_number.as_ref()),
        last_sequence_number = records.last().map(|r| r.meta.sequence_number.as_ref()),
        "reconciliation mismatch: records read ≠ records in objects + quarantined"
    );
}

#[cfg(test)]
mod tests;
