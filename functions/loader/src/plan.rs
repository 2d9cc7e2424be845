//! Pure planning: a parsed invocation becomes per-(table, format) groups of files to COPY, plus
//! the messages and files that fail or are skipped before any SQL runs.

use std::collections::{BTreeMap, BTreeSet};

use shared::rawzone::encode::Format;
use shared::rawzone::layout::ParsedKey;

use crate::config::Config;
use crate::copy::{file_literal, CopyTarget, Lineage};
use crate::notify::{Invocation, Item, Notification, ObjectRef};
use crate::outcome::{FileOutcome, Outcome};

/// A file to load and the messages (item indexes) that carried it.
#[derive(Clone)]
pub(crate) struct PendingFile {
    /// The full object key.
    pub(crate) key: String,
    pub(crate) etag: Option<String>,
    pub(crate) items: BTreeSet<usize>,
}

/// The files of one (table, format) group.
pub(crate) struct Group {
    /// The quoted, qualified table.
    pub(crate) table: String,
    /// What COPY loads into, or why no file of the group can be loaded.
    pub(crate) target: Result<CopyTarget, String>,
    /// Path below the stage → file.
    pub(crate) files: BTreeMap<String, PendingFile>,
}

/// What an invocation asks for, before any SQL.
pub(crate) struct Plan {
    /// Messages, test events, skipped objects and the files that fail before any SQL.
    pub(crate) outcome: Outcome,
    /// Per item: why it failed, if it did.
    pub(crate) item_failed: Vec<Option<String>>,
    /// In (table, format, key table) order.
    pub(crate) groups: Vec<Group>,
}

/// Groups the invocation's objects by (table, format); an unreadable message fails, an object
/// outside the bucket or prefix is skipped, and a key COPY cannot name fails on its own.
pub(crate) fn plan(invocation: &Invocation, config: &Config) -> Plan {
    let mut planner = Planner {
        config,
        outcome: Outcome {
            trigger: format!("{:?}", invocation.trigger).to_lowercase(),
            messages: invocation.items.len(),
            ..Outcome::default()
        },
        item_failed: vec![None; invocation.items.len()],
        groups: BTreeMap::new(),
    };
    for (i, item) in invocation.items.iter().enumerate() {
        planner.item(i, item);
    }
    planner.finish()
}

/// (table, format extension, key table): the order groups are loaded in.
type GroupKey = (String, &'static str, String);

struct Planner<'c> {
    config: &'c Config,
    outcome: Outcome,
    item_failed: Vec<Option<String>>,
    groups: BTreeMap<GroupKey, (Format, BTreeMap<String, PendingFile>)>,
}

impl Planner<'_> {
    fn item(&mut self, i: usize, item: &Item) {
        let notification = match &item.notification {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(message_id = item.message_id.as_deref(), error = %e, "loader: unreadable message; reported as failed");
                self.item_failed[i] = Some(e.to_string());
                return;
            }
        };
        if *notification == Notification::TestEvent {
            self.outcome.test_events += 1;
            return;
        }
        for object in notification.objects() {
            self.object(i, object);
        }
    }

    fn object(&mut self, i: usize, object: &ObjectRef) {
        if object.bucket != self.config.bucket {
            tracing::warn!(bucket = %object.bucket, key = %object.key, "loader: object outside the raw bucket; skipped");
            self.outcome.skipped += 1;
            return;
        }
        let Some(parsed) = self.config.layout.parse_key(&object.key) else {
            tracing::warn!(bucket = %object.bucket, key = %object.key, prefix = self.config.layout.prefix(), "loader: key outside the raw prefix or not a raw-zone file; skipped");
            self.outcome.skipped += 1;
            return;
        };
        let table = match loadable_table(self.config, &parsed) {
            Ok(t) => t,
            Err(error) => return self.reject(i, &object.key, error),
        };
        let file = self
            .groups
            .entry((table, parsed.format.extension(), parsed.table.to_string()))
            .or_insert_with(|| (parsed.format, BTreeMap::new()))
            .1
            .entry(parsed.path.to_string())
            .or_insert_with(|| PendingFile {
                key: object.key.clone(),
                etag: object.etag.clone(),
                items: BTreeSet::new(),
            });
        file.items.insert(i);
    }

    /// A file that fails before any SQL, and fails the message that carried it.
    fn reject(&mut self, i: usize, key: &str, error: String) {
        tracing::error!(key = %key, error = %error, "loader: key cannot be loaded; reported as failed");
        self.outcome
            .file_outcomes
            .insert(key.to_string(), FileOutcome::failed(&error));
        self.item_failed[i] = Some(error);
        self.outcome.files += 1;
        self.outcome.failed += 1;
    }

    fn finish(self) -> Plan {
        let config = self.config;
        let groups = self
            .groups
            .into_iter()
            .map(|((table, _, key_table), (format, files))| Group {
                target: target(config, &table, &key_table, format),
                table,
                files,
            })
            .collect();
        Plan {
            outcome: self.outcome,
            item_failed: self.item_failed,
            groups,
        }
    }
}

/// The key's quoted table, when COPY can name the file and the table is a valid identifier.
fn loadable_table(config: &Config, parsed: &ParsedKey<'_>) -> Result<String, String> {
    file_literal(parsed.path).map_err(|e| e.to_string())?;
    config.table_for(parsed.table).map_err(|e| e.to_string())
}

/// What a group is loaded into; `LINEAGE=metadata` cannot load CSV without its field count.
fn target(
    config: &Config,
    table: &str,
    key_table: &str,
    format: Format,
) -> Result<CopyTarget, String> {
    let target = CopyTarget {
        table: table.to_string(),
        format,
        file_format: match format {
            Format::Ndjson => config.ndjson_format.clone(),
            Format::Csv => config.csv_format.clone(),
        },
        csv_fields: config.csv_fields.get(key_table).copied(),
        match_by_name: config.match_by_name.contains(key_table),
    };
    if matches!(config.lineage, Lineage::Metadata(_))
        && format == Format::Csv
        && target.csv_fields.is_none()
    {
        return Err(format!(
            "LINEAGE=metadata needs LINEAGE_CSV_FIELDS for table {key_table:?}"
        ));
    }
    Ok(target)
}

#[cfg(test)]
mod tests;
