//! What a batch did: per table and in all, for the log line, the metrics and the tests.

use std::collections::BTreeMap;

use shared::metrics::{Emf, Unit};
use shared::snowflake::QueryResult;

/// What one table's MERGEs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    pub rows: usize,
    pub duplicates: usize,
    /// Rows Snowflake refused (a data error isolated by splitting the statement), quarantined.
    pub refused: usize,
    pub inserted: u64,
    pub updated: u64,
    pub deleted: u64,
    pub statements: usize,
    pub http_requests: u32,
    pub error: Option<String>,
}

impl TableOutcome {
    /// Counts one statement Snowflake ran.
    pub(crate) fn add_statement(&mut self, result: &QueryResult) {
        self.statements += 1;
        self.http_requests += result.http_requests;
        if let Some(stats) = &result.stats {
            self.inserted += stats.inserted;
            self.updated += stats.updated;
            self.deleted += stats.deleted;
        }
    }
}

/// What one batch did, for the log line and for tests.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchOutcome {
    pub records: usize,
    pub quarantined: usize,
    /// Valid change records applied to no row (truncates, tombstones, DMS control records), by
    /// reason.
    pub skipped: BTreeMap<&'static str, usize>,
    pub tables: BTreeMap<String, TableOutcome>,
    /// Records that became rows (a DMS key change is one record and two rows).
    pub mapped: usize,
    /// Arrival of the newest record, ms since the epoch.
    pub newest_arrival_ms: Option<i64>,
    /// 1 when records ≠ mapped + quarantined at mapping + skipped (a bug, never data).
    pub mismatches: usize,
}

impl BatchOutcome {
    /// The invocation's EMF document; per table when the batch had one table.
    pub fn metrics(&self, namespace: &str, now_ms: i64) -> Emf {
        let sum = |f: fn(&TableOutcome) -> u64| self.tables.values().map(f).sum::<u64>() as f64;
        let table = (self.tables.len() == 1)
            .then(|| self.tables.keys().next().map(String::as_str))
            .flatten();
        let mut emf = Emf::new(namespace, "upsert")
            .table(table)
            .count("Records", self.records)
            .count("Quarantined", self.quarantined)
            .count("Skipped", self.skipped.values().sum())
            .metric(
                "DuplicatesCollapsed",
                Unit::Count,
                sum(|t| t.duplicates as u64),
            )
            .metric("RowsInserted", Unit::Count, sum(|t| t.inserted))
            .metric("RowsUpdated", Unit::Count, sum(|t| t.updated))
            .metric("RowsDeleted", Unit::Count, sum(|t| t.deleted))
            .metric("Statements", Unit::Count, sum(|t| t.statements as u64))
            .metric(
                "SnowflakeRequests",
                Unit::Count,
                sum(|t| u64::from(t.http_requests)),
            )
            .count(
                "FailedTables",
                self.tables.values().filter(|t| t.error.is_some()).count(),
            )
            .count("ReconciliationMismatches", self.mismatches);
        if let Some(arrival) = self.newest_arrival_ms {
            emf = emf.metric(
                "LagMs",
                Unit::Milliseconds,
                (now_ms - arrival).max(0) as f64,
            );
        }
        emf
    }
}
