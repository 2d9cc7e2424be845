//! What a batch did: per table and in all, for the log line, the metrics and the tests.

use std::collections::BTreeMap;

use shared::metrics::{Emf, Unit};
use shared::snowflake::QueryResult;

/// What one table's MERGEs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TableOutcome {
    /// Rows the table was sent after mapping (before de-duplication).
    pub rows: usize,
    /// Rows collapsed because a newer version of their key was in the batch.
    pub duplicates: usize,
    /// Rows Snowflake refused, quarantined: a data error isolated by splitting the MERGE, or (in
    /// streaming mode) a committed row missing from the change table.
    pub refused: usize,
    /// Rows Snowflake reports inserted (appended, in streaming mode).
    pub inserted: u64,
    /// Rows Snowflake reports updated.
    pub updated: u64,
    /// Rows Snowflake reports deleted.
    pub deleted: u64,
    /// MERGE statements (or appends) sent, counting the ones split to isolate rows.
    pub statements: usize,
    /// HTTP requests made for them, retries included.
    pub http_requests: u32,
    /// Why the table's rows did not all land; Lambda resends the batch from them.
    pub error: Option<String>,
    /// Columns schema evolution added to the table for this batch.
    pub columns_added: usize,
    /// Columns schema evolution widened (longer VARCHAR, more NUMBER precision).
    pub columns_widened: usize,
    /// Records quarantined by schema evolution: a value its column cannot hold, or over the
    /// cap of new columns per batch.
    pub drift_quarantined: usize,
    /// Snowflake said a column the statement names is unknown (`000904`): the table changed
    /// under this container, whose columns are read again before the resend.
    pub columns_changed: bool,
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
    /// Records in the batch (KPL sub-records counted one by one).
    pub records: usize,
    /// Records put into the quarantine object, at mapping or refused by Snowflake.
    pub quarantined: usize,
    /// The key of the batch's quarantine object, when it had one.
    pub quarantine_key: Option<String>,
    /// Valid change records applied to no row (truncates, tombstones, DMS control records), by
    /// reason.
    pub skipped: BTreeMap<&'static str, usize>,
    /// What each table's writes did, by table name in the configuration.
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
        Emf::new(namespace, "upsert")
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
            .metric("RowsRefused", Unit::Count, sum(|t| t.refused as u64))
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
            .count("ReconciliationMismatches", self.mismatches)
            .metric("ColumnsAdded", Unit::Count, sum(|t| t.columns_added as u64))
            .metric(
                "ColumnsWidened",
                Unit::Count,
                sum(|t| t.columns_widened as u64),
            )
            .metric(
                "SchemaDriftQuarantined",
                Unit::Count,
                sum(|t| t.drift_quarantined as u64),
            )
            .lag(self.newest_arrival_ms, now_ms)
    }
}
