//! `COPY INTO` statements for raw-zone files, and their per-file results: pure, no I/O.
//!
//! One statement per (table, file format) and chunk of at most [`MAX_FILES_PER_COPY`] files:
//!
//! ```sql
//! COPY INTO "DB"."S"."SENSOR_READINGS_RAW" FROM @RAW_STAGE/
//!   FILES = ('sensor_readings/2024/03/05/07/shardId-000000000000-1-9.ndjson.gz', ...)
//!   FILE_FORMAT = (FORMAT_NAME = 'NDJSON_FMT') ON_ERROR = ABORT_STATEMENT
//!   LOAD_UNCERTAIN_FILES = TRUE
//! ```
//!
//! COPY's result names each file it processed; a requested file it skipped because its load
//! metadata says it was loaded before is left out (or, when that is every file, the result is
//! the single row "Copy executed with 0 files processed."). A file left out is not taken for
//! loaded on that alone: [`unreported`] lists them and [`history_statement`] asks
//! `LOAD_HISTORY` about them (see there for why).
//!
//! File paths are string literals; a path containing `'`, `\` or a control character is refused
//! (never escaped), so no object key can change the statement. Identifiers are quoted with
//! [`ident`](shared::snowflake::ident); stage and file-format names are checked to be plain
//! (optionally qualified) unquoted names.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use shared::rawzone::encode::Format;
use shared::snowflake::{ident, request_id_for, Binding, QueryResult, Statement};

/// Snowflake's limit on the `FILES` list of one COPY statement.
pub(crate) const MAX_FILES_PER_COPY: usize = 1000;

/// Why a statement cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CopyError {
    #[error("file path {0:?} contains a quote, backslash or control character and cannot be loaded safely")]
    UnsafePath(String),
    #[error("file path is empty")]
    EmptyPath,
    #[error("{what} {name:?} must be an unquoted Snowflake name ([A-Za-z_][A-Za-z0-9_$]*, up to 3 parts separated by '.')")]
    Name { what: &'static str, name: String },
    #[error(transparent)]
    Ident(#[from] ident::IdentError),
    #[error("no files to load")]
    NoFiles,
}

/// COPY's `ON_ERROR` copy option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum OnError {
    #[default]
    AbortStatement,
    Continue,
    SkipFile,
    /// `SKIP_FILE_<n>`: skip a file when it has at least n error rows.
    SkipFileRows(u64),
    /// `'SKIP_FILE_<n>%'`: skip a file when at least n percent of its rows have errors.
    SkipFilePercent(u8),
}

impl FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let u = s.trim().trim_matches('\'').to_ascii_uppercase();
        let bad = || {
            format!(
                "expected ABORT_STATEMENT, CONTINUE, SKIP_FILE, SKIP_FILE_<n> or SKIP_FILE_<n>%, got {s:?}"
            )
        };
        Ok(match u.as_str() {
            "ABORT_STATEMENT" => OnError::AbortStatement,
            "CONTINUE" => OnError::Continue,
            "SKIP_FILE" => OnError::SkipFile,
            _ => {
                let n = u.strip_prefix("SKIP_FILE_").ok_or_else(bad)?;
                if let Some(p) = n.strip_suffix('%') {
                    match p.parse::<u8>() {
                        Ok(p) if (1..=100).contains(&p) => OnError::SkipFilePercent(p),
                        _ => return Err(bad()),
                    }
                } else {
                    match n.parse::<u64>() {
                        Ok(n) if n >= 1 => OnError::SkipFileRows(n),
                        _ => return Err(bad()),
                    }
                }
            }
        })
    }
}

impl fmt::Display for OnError {
    /// The option's SQL text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnError::AbortStatement => f.write_str("ABORT_STATEMENT"),
            OnError::Continue => f.write_str("CONTINUE"),
            OnError::SkipFile => f.write_str("SKIP_FILE"),
            OnError::SkipFileRows(n) => write!(f, "SKIP_FILE_{n}"),
            OnError::SkipFilePercent(p) => write!(f, "'SKIP_FILE_{p}%'"),
        }
    }
}

/// Where the lineage (file, row number) of a loaded row comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Lineage {
    /// The files carry it (the orchestrator writes `metadata.file`/`metadata.row` into NDJSON and
    /// `SOURCE_FILE`/`SOURCE_ROW` columns into CSV): plain COPY.
    #[default]
    InFile,
    /// A COPY transform adds `METADATA$FILENAME`, `METADATA$FILE_ROW_NUMBER` and
    /// `METADATA$START_SCAN_TIME`, for files written by other producers.
    Metadata(MetadataLineage),
}

/// The columns of the `METADATA$` transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MetadataLineage {
    /// The VARIANT column an NDJSON line goes to (default `RECORD`).
    pub(crate) record_column: String,
    /// Columns receiving file name, row number and load time (default
    /// `SOURCE_FILE`, `SOURCE_ROW`, `LOADED_AT`); the load time is left out when `None`.
    pub(crate) file_column: String,
    pub(crate) row_column: String,
    pub(crate) loaded_at_column: Option<String>,
}

impl Default for MetadataLineage {
    fn default() -> Self {
        Self {
            record_column: "RECORD".into(),
            file_column: "SOURCE_FILE".into(),
            row_column: "SOURCE_ROW".into(),
            loaded_at_column: Some("LOADED_AT".into()),
        }
    }
}

/// What is loaded where: one raw table and the named file format of its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyTarget {
    /// The quoted, possibly qualified, table name (see [`ident::qualified`]).
    pub(crate) table: String,
    pub(crate) format: Format,
    /// A checked file format name (see [`check_name`]).
    pub(crate) file_format: String,
    /// For [`Lineage::Metadata`] with CSV: the number of fields of a file.
    pub(crate) csv_fields: Option<usize>,
    /// NDJSON into a typed table: `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE` (see [`MATCH_BY_NAME`]).
    pub(crate) match_by_name: bool,
}

/// The copy option loading each top-level field of an NDJSON line into the column of that name, in
/// any case; a column no field names gets NULL. Into a table with `ENABLE_SCHEMA_EVOLUTION = TRUE`,
/// Snowflake adds a column for a field no column matches (at most 100 per COPY) and drops NOT NULL
/// from a column the files lack. It cannot be combined with a transform, so lineage comes from the
/// files (their `metadata` object lands in a `METADATA` column) or from `INCLUDE_METADATA`.
/// https://docs.snowflake.com/en/sql-reference/sql/copy-into-table#copy-options-copyoptions
/// https://docs.snowflake.com/en/user-guide/data-load-schema-evolution
/// https://docs.snowflake.com/en/release-notes/bcr-bundles/2024_02/bcr-1514
const MATCH_BY_NAME: &str = "MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE";

/// The column of a match-by-name table receiving an NDJSON line's `metadata` object.
pub(crate) const IN_FILE_METADATA_COLUMN: &str = "METADATA";

/// Checks a stage or file format name: 1 to 3 unquoted-style parts separated by `.`.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<String, CopyError> {
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 3
        || !parts
            .iter()
            .all(|p| ident::is_unquoted_style(p) && p.len() <= 255)
    {
        return Err(CopyError::Name {
            what,
            name: name.to_string(),
        });
    }
    Ok(name.to_string())
}

/// A file path as a SQL string literal; refuses `'`, `\` and control characters.
pub(crate) fn file_literal(path: &str) -> Result<String, CopyError> {
    if path.is_empty() {
        return Err(CopyError::EmptyPath);
    }
    if path
        .chars()
        .any(|c| c == '\'' || c == '\\' || c.is_control())
    {
        return Err(CopyError::UnsafePath(path.to_string()));
    }
    Ok(format!("'{path}'"))
}

/// One statement to run and the files it loads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyStatement {
    pub(crate) sql: String,
    /// Paths below the stage URL, in statement order.
    pub(crate) files: Vec<String>,
    /// Deterministic: the same statement for the same object versions gets the same id, so a
    /// retried invocation picks up the outcome instead of running the COPY again.
    pub(crate) request_id: Uuid,
}

/// A file to load: its path below the stage URL and, when known, the object's ETag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StagedFile {
    pub(crate) path: String,
    pub(crate) etag: Option<String>,
}

/// The text of one COPY statement for `files` (at most [`MAX_FILES_PER_COPY`]).
pub(crate) fn copy_sql(
    target: &CopyTarget,
    stage: &str,
    files: &[&str],
    on_error: OnError,
    lineage: &Lineage,
) -> Result<String, CopyError> {
    if files.is_empty() {
        return Err(CopyError::NoFiles);
    }
    let literals = files
        .iter()
        .map(|f| file_literal(f))
        .collect::<Result<Vec<_>, _>>()?;
    let by_name = target.match_by_name && target.format == Format::Ndjson;
    let (into, source, options) = match lineage {
        Lineage::InFile => (target.table.clone(), format!("@{stage}/"), String::new()),
        Lineage::Metadata(m) if by_name => (
            target.table.clone(),
            format!("@{stage}/"),
            format!(" {}", include_metadata(m)?),
        ),
        Lineage::Metadata(m) => {
            let (into, source) = metadata_transform(target, stage, m)?;
            (into, source, String::new())
        }
    };
    let options = if by_name {
        format!(" {MATCH_BY_NAME}{options}")
    } else {
        options
    };
    Ok(format!(
        "COPY INTO {into} FROM {source} FILES = ({}) FILE_FORMAT = (FORMAT_NAME = '{}'){options} ON_ERROR = {on_error} {LOAD_UNCERTAIN}",
        literals.join(", "),
        target.file_format,
    ))
}

/// For [`Lineage::Metadata`] with [`MATCH_BY_NAME`]: `INCLUDE_METADATA`, which fills existing
/// columns (evolution never adds them) from the `METADATA$` fields, as the transform would.
/// https://docs.snowflake.com/en/sql-reference/sql/copy-into-table#copy-options-copyoptions
fn include_metadata(m: &MetadataLineage) -> Result<String, CopyError> {
    let mut pairs = vec![
        format!("{} = METADATA$FILENAME", ident::quote(&m.file_column)?),
        format!(
            "{} = METADATA$FILE_ROW_NUMBER",
            ident::quote(&m.row_column)?
        ),
    ];
    if let Some(c) = &m.loaded_at_column {
        pairs.push(format!("{} = METADATA$START_SCAN_TIME", ident::quote(c)?));
    }
    Ok(format!("INCLUDE_METADATA = ({})", pairs.join(", ")))
}

/// For [`Lineage::Metadata`]: what COPY loads into (the table, with a column list for NDJSON)
/// and the `SELECT` from the stage that adds the `METADATA$` lineage columns.
fn metadata_transform(
    target: &CopyTarget,
    stage: &str,
    m: &MetadataLineage,
) -> Result<(String, String), CopyError> {
    let mut columns = Vec::new();
    let mut select = Vec::new();
    match target.format {
        Format::Ndjson => {
            columns.push(ident::quote(&m.record_column)?);
            select.push("$1".to_string());
        }
        Format::Csv => {
            // without a field count the transform cannot be written; fall back to $1
            for i in 1..=target.csv_fields.unwrap_or(1) {
                select.push(format!("${i}"));
            }
        }
    }
    columns.push(ident::quote(&m.file_column)?);
    columns.push(ident::quote(&m.row_column)?);
    select.push("METADATA$FILENAME".into());
    select.push("METADATA$FILE_ROW_NUMBER".into());
    if let Some(c) = &m.loaded_at_column {
        columns.push(ident::quote(c)?);
        select.push("METADATA$START_SCAN_TIME".into());
    }
    let into = if target.format == Format::Csv {
        // CSV: every table column in order, lineage last, so no column list is needed
        target.table.clone()
    } else {
        format!("{} ({})", target.table, columns.join(", "))
    };
    Ok((
        into,
        format!("(SELECT {} FROM @{stage}/)", select.join(", ")),
    ))
}

/// Every COPY loads files whose load status is unknown. By default COPY silently skips a file
/// whose LAST_MODIFIED date is older than 64 days when the table's load metadata (kept 64 days)
/// cannot say whether it was loaded; the loader names exactly the files it was notified about
/// (a notification replayed from the DLQ or an archive can be that old), so skipping them would
/// lose them. The cost: a file loaded more than 64 days ago and notified again is loaded again;
/// rows carry their file and row number, and the curated layer de-duplicates on them. `backfill`
/// (which lists whole prefixes, so meets such files on every run) asks the target table first
/// ([`landed_statement`]) and hands the loader only files with no rows there.
/// https://docs.snowflake.com/en/sql-reference/sql/copy-into-table#copy-options-copyoptions
/// https://docs.snowflake.com/en/user-guide/data-load-considerations-load#loading-older-files
const LOAD_UNCERTAIN: &str = "LOAD_UNCERTAIN_FILES = TRUE";

/// The statements loading `files` into `target`: files sorted and de-duplicated, in chunks of at
/// most `chunk` (≤ [`MAX_FILES_PER_COPY`]) files.
pub(crate) fn plan_copies(
    target: &CopyTarget,
    stage: &str,
    files: &[StagedFile],
    on_error: OnError,
    lineage: &Lineage,
    chunk: usize,
) -> Result<Vec<CopyStatement>, CopyError> {
    let mut files: Vec<&StagedFile> = files.iter().collect();
    files.sort();
    files.dedup_by(|a, b| a.path == b.path);
    files
        .chunks(chunk.clamp(1, MAX_FILES_PER_COPY))
        .map(|c| statement(target, stage, c, on_error, lineage))
        .collect()
}

/// One statement for exactly these files, in this order.
pub(crate) fn statement(
    target: &CopyTarget,
    stage: &str,
    files: &[&StagedFile],
    on_error: OnError,
    lineage: &Lineage,
) -> Result<CopyStatement, CopyError> {
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    let sql = copy_sql(target, stage, &paths, on_error, lineage)?;
    let mut id_parts: Vec<&str> = vec!["loader-copy", &sql];
    for f in files {
        id_parts.push(f.etag.as_deref().unwrap_or(""));
    }
    Ok(CopyStatement {
        request_id: request_id_for(&id_parts),
        files: paths.into_iter().map(String::from).collect(),
        sql,
    })
}

/// What COPY did with one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileStatus {
    Loaded,
    /// Skipped because the load metadata says it was loaded before.
    AlreadyLoaded,
    /// Some rows loaded, some rejected (ON_ERROR = CONTINUE).
    PartiallyLoaded,
    /// Nothing loaded (LOAD_FAILED, or skipped for errors under SKIP_FILE).
    Failed,
}

/// One row of COPY's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileResult {
    /// As Snowflake reports it: the full `s3://bucket/path` URL for external stages.
    pub(crate) file: String,
    pub(crate) status: FileStatus,
    pub(crate) raw_status: String,
    pub(crate) rows_parsed: u64,
    pub(crate) rows_loaded: u64,
    pub(crate) errors_seen: u64,
    pub(crate) first_error: Option<String>,
    pub(crate) first_error_line: Option<u64>,
}

/// What a COPY result says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyReport {
    /// One row per file COPY processed (loaded, failed, skipped for errors, ...).
    Files(Vec<FileResult>),
    /// The single row "Copy executed with 0 files processed.": COPY processed none of the
    /// requested files, i.e. skipped every one of them.
    NoFilesProcessed,
}

impl CopyReport {
    pub(crate) fn files(&self) -> &[FileResult] {
        match self {
            CopyReport::Files(f) => f,
            CopyReport::NoFilesProcessed => &[],
        }
    }
}

/// A COPY result of neither known shape: nothing can be concluded about any file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected COPY result (columns {columns:?}, {rows} row(s)): no per-file results and not \"0 files processed\"")]
pub(crate) struct UnexpectedReport {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: usize,
}

/// Reads a COPY result: per-file rows (a `file` column), or the one-row "0 files processed"
/// status.
pub(crate) fn copy_report(result: &QueryResult) -> Result<CopyReport, UnexpectedReport> {
    if result.column("file").is_some() {
        return Ok(CopyReport::Files(file_results(result)));
    }
    let status = result.column("status");
    match (&result.rows[..], status) {
        ([row], Some(i))
            if row.get(i).cloned().flatten().is_some_and(|s| {
                s.trim()
                    .to_ascii_lowercase()
                    .starts_with("copy executed with 0 files processed")
            }) =>
        {
            Ok(CopyReport::NoFilesProcessed)
        }
        _ => Err(UnexpectedReport {
            columns: result.columns.iter().map(|c| c.name.clone()).collect(),
            rows: result.rows.len(),
        }),
    }
}

/// The per-file rows of a COPY result (none without a `file` column).
fn file_results(result: &QueryResult) -> Vec<FileResult> {
    let Some(file_col) = result.column("file") else {
        return Vec::new();
    };
    let col = |name: &str| result.column(name);
    let (status_col, parsed, loaded, seen, first, line) = (
        col("status"),
        col("rows_parsed"),
        col("rows_loaded"),
        col("errors_seen"),
        col("first_error"),
        col("first_error_line"),
    );
    let cell = |row: &Vec<Option<String>>, c: Option<usize>| -> Option<String> {
        c.and_then(|i| row.get(i).cloned().flatten())
    };
    let num = |row: &Vec<Option<String>>, c: Option<usize>| -> Option<u64> {
        cell(row, c)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|f| f as u64)
    };
    result
        .rows
        .iter()
        .filter_map(|row| {
            let file = cell(row, Some(file_col))?;
            let raw_status = cell(row, status_col).unwrap_or_default();
            let first_error = cell(row, first);
            let status = match raw_status.to_ascii_uppercase().as_str() {
                "LOADED" => FileStatus::Loaded,
                "PARTIALLY_LOADED" => FileStatus::PartiallyLoaded,
                // LOAD_SKIPPED means "loaded before" when it carries no error of its own; under
                // SKIP_FILE it is a file skipped for its errors.
                "LOAD_SKIPPED"
                    if first_error
                        .as_deref()
                        .is_none_or(|e| e.to_ascii_lowercase().contains("loaded before")) =>
                {
                    FileStatus::AlreadyLoaded
                }
                _ => FileStatus::Failed,
            };
            Some(FileResult {
                file,
                status,
                raw_status,
                rows_parsed: num(row, parsed).unwrap_or(0),
                rows_loaded: num(row, loaded).unwrap_or(0),
                errors_seen: num(row, seen).unwrap_or(0),
                first_error,
                first_error_line: num(row, line),
            })
        })
        .collect()
}

/// Which of `paths` a result's `file` names: the longest path equal to it or ending it after a
/// `/` (results carry the full `s3://bucket/prefix/path` URL).
pub(crate) fn match_path<'p>(file: &str, paths: &[&'p str]) -> Option<&'p str> {
    paths
        .iter()
        .copied()
        .filter(|p| {
            file == *p
                || (file.len() > p.len()
                    && file.ends_with(*p)
                    && file.as_bytes()[file.len() - p.len() - 1] == b'/')
        })
        .max_by_key(|p| p.len())
}

/// The requested `paths` no row of `report` names, in request order: the files COPY skipped
/// without a word.
pub(crate) fn unreported<'p>(paths: &[&'p str], report: &CopyReport) -> Vec<&'p str> {
    let named: std::collections::BTreeSet<&str> = report
        .files()
        .iter()
        .filter_map(|r| match_path(&r.file, paths))
        .collect();
    paths
        .iter()
        .copied()
        .filter(|p| !named.contains(p))
        .collect()
}

/// The query asking `LOAD_HISTORY` which of `paths` (files COPY did not report) were loaded into
/// `table` (as [`ident::qualified`] quotes it).
///
/// Why ask: COPY leaves out a file its load metadata says was loaded before, which is what makes
/// a redelivered notification harmless, but an omission is not proof of a load, and counting a
/// file that was never loaded as "already loaded" would drop it silently (load-uncertain files
/// were one such case before [`LOAD_UNCERTAIN`]; anything else Snowflake may skip without a row
/// would be another). So an omitted file counts as loaded only when the history shows a load
/// into this table; otherwise it fails and its notification is retried, and after the queue's
/// receive limit it lands in the DLQ with its alarm: loud, never lost. FORCE = TRUE instead would
/// load every redelivered file twice. The query runs only for statements that left files out
/// (redeliveries, overwritten identical objects), so a normal load costs nothing more.
///
/// `LOAD_HISTORY` (information schema) covers the last 14 days and returns at most 10,000 rows,
/// which the filter on table and file names keeps far away; a file loaded longer ago is retried
/// and reaches the DLQ rather than being assumed loaded.
/// https://docs.snowflake.com/en/sql-reference/info-schema/load_history
///
/// File names are matched with `LIKE '%<path>'`, whether the history holds the full stage URL
/// or the path alone (`_` and `%` in a path only widen the match), and exactly again, at a `/`,
/// by [`loaded_before`].
pub(crate) fn history_statement(table: &str, paths: &[&str]) -> Result<Statement, CopyError> {
    if paths.is_empty() {
        return Err(CopyError::NoFiles);
    }
    for p in paths {
        file_literal(p)?;
    }
    let parts = split_quoted(table).ok_or_else(|| CopyError::Name {
        what: "table",
        name: table.to_string(),
    })?;
    let (view, schema, name) = match &parts[..] {
        [db, schema, name] => (
            format!(
                "{}.INFORMATION_SCHEMA.LOAD_HISTORY",
                ident::quote(&format!("\"{db}\""))?
            ),
            Some(*schema),
            *name,
        ),
        [schema, name] => (
            "INFORMATION_SCHEMA.LOAD_HISTORY".to_string(),
            Some(*schema),
            *name,
        ),
        [name] => ("INFORMATION_SCHEMA.LOAD_HISTORY".to_string(), None, *name),
        _ => {
            return Err(CopyError::Name {
                what: "table",
                name: table.to_string(),
            })
        }
    };
    let mut sql = format!("SELECT FILE_NAME, STATUS FROM {view} WHERE TABLE_NAME = ?");
    let mut statement_bindings = vec![Binding::text(name)];
    if let Some(schema) = schema {
        sql.push_str(" AND SCHEMA_NAME = ?");
        statement_bindings.push(Binding::text(schema));
    }
    let likes = vec!["FILE_NAME LIKE ?"; paths.len()].join(" OR ");
    sql.push_str(&format!(" AND ({likes})"));
    statement_bindings.extend(paths.iter().map(|p| Binding::text(format!("%{p}"))));
    let mut statement = Statement::new(sql);
    for b in statement_bindings {
        statement = statement.bind(b);
    }
    Ok(statement)
}

/// Of `paths`, those the [`history_statement`] result shows loaded (fully or partly: either way
/// the load metadata keeps COPY from loading them again).
pub(crate) fn loaded_before<'p>(
    history: &QueryResult,
    paths: &[&'p str],
) -> std::collections::BTreeSet<&'p str> {
    let (Some(file), Some(status)) = (history.column("FILE_NAME"), history.column("STATUS")) else {
        return Default::default();
    };
    history
        .rows
        .iter()
        .filter(|row| {
            row.get(status)
                .cloned()
                .flatten()
                .map(|s| s.trim().to_ascii_uppercase().replace(' ', "_"))
                .is_some_and(|s| s == "LOADED" || s == "PARTIALLY_LOADED")
        })
        .filter_map(|row| row.get(file).cloned().flatten())
        .filter_map(|f| match_path(&f, paths))
        .collect()
}

/// The VARIANT column an NDJSON line lands in without a transform (`sql/30_raw_tables.sql`).
pub(crate) const IN_FILE_RECORD_COLUMN: &str = "RECORD";

/// The SQL expression of a loaded row's source file in `target`: what the loader's COPY wrote as
/// the row's lineage (`metadata.file` of an NDJSON line, the `SOURCE_FILE` column of CSV, or the
/// `METADATA$FILENAME` column of [`Lineage::Metadata`]).
fn source_file_expr(target: &CopyTarget, lineage: &Lineage) -> Result<String, CopyError> {
    use shared::lineage::file;
    Ok(match (lineage, target.format) {
        (Lineage::InFile, Format::Ndjson) if target.match_by_name => format!(
            "{}:{}::STRING",
            ident::quote(IN_FILE_METADATA_COLUMN)?,
            file::NDJSON_FILE
        ),
        (Lineage::InFile, Format::Ndjson) => format!(
            "{}:{}:{}::STRING",
            ident::quote(IN_FILE_RECORD_COLUMN)?,
            file::NDJSON_OBJECT,
            file::NDJSON_FILE
        ),
        (Lineage::InFile, Format::Csv) => ident::quote(file::CSV_FILE)?,
        (Lineage::Metadata(m), _) => ident::quote(&m.file_column)?,
    })
}

/// The query asking `target` which of `names` its rows carry as their source file: files whose
/// rows are in the table. Names are bound, never spliced; the table and column are quoted.
///
/// Give each file's object key and its path below the stage: files carry their key, while
/// `METADATA$FILENAME` is the path as the stage lists it.
pub(crate) fn landed_statement(
    target: &CopyTarget,
    lineage: &Lineage,
    names: &[&str],
) -> Result<Statement, CopyError> {
    if names.is_empty() {
        return Err(CopyError::NoFiles);
    }
    let file = source_file_expr(target, lineage)?;
    let marks = vec!["?"; names.len()].join(", ");
    let sql = format!(
        "SELECT DISTINCT {file} AS SOURCE_FILE FROM {} WHERE {file} IN ({marks})",
        target.table
    );
    Ok(Statement::new(sql).bind_all(names.iter().map(|n| Binding::text(*n))))
}

/// `"DB"."S"."T"` → `["DB", "S", "T"]`; `None` for anything [`ident::qualified`] does not make.
/// Quoted parts never contain `"` (see [`ident`]), so splitting at `"."` is exact.
fn split_quoted(table: &str) -> Option<Vec<&str>> {
    let inner = table.strip_prefix('"')?.strip_suffix('"')?;
    let parts: Vec<&str> = inner.split("\".\"").collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && !p.contains('"'))
        .then_some(parts)
}

#[cfg(test)]
mod tests;
