//! The loader's settings, read once at init from the environment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shared::config::{ConfigError, Env};
use shared::lambda::FunctionSettings;
use shared::rawzone::layout::Layout;
use shared::snowflake::{ident, AuthConfig, SnowflakeConfig};

use crate::copy::{check_name, Lineage, MetadataLineage, OnError, MAX_FILES_PER_COPY};

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    /// `RAW_BUCKET` (required): the only bucket loaded from.
    pub bucket: String,
    /// `RAW_PREFIX` (default `raw`): the stage's URL is `s3://RAW_BUCKET/RAW_PREFIX/`.
    pub(crate) layout: Layout,
    /// `SNOWFLAKE_STAGE` (default `RAW_STAGE`), optionally qualified `DB.SCHEMA.STAGE`.
    pub(crate) stage: String,
    /// `RAW_TABLE_SUFFIX` (default `_RAW`): key table `sensor_readings` → `SENSOR_READINGS_RAW`.
    pub(crate) table_suffix: String,
    /// `TABLE_MAP` (optional JSON object): key table → Snowflake table (`T` or `DB.S.T`).
    pub(crate) table_map: BTreeMap<String, String>,
    /// `FILE_FORMAT_NDJSON` (default `NDJSON_FMT`).
    pub(crate) ndjson_format: String,
    /// `FILE_FORMAT_CSV` (default `CSV_FMT`).
    pub(crate) csv_format: String,
    /// `ON_ERROR` (default `ABORT_STATEMENT`).
    pub(crate) on_error: OnError,
    /// `LINEAGE` = `in_file` (default) | `metadata`.
    pub(crate) lineage: Lineage,
    /// `LINEAGE_CSV_FIELDS` (JSON object key table → number of CSV fields): needed for CSV
    /// tables with `LINEAGE=metadata`.
    pub(crate) csv_fields: BTreeMap<String, usize>,
    /// `MATCH_BY_NAME_TABLES` (optional JSON array of key tables): their NDJSON files load into typed
    /// columns with `MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE`, so a table created with
    /// `ENABLE_SCHEMA_EVOLUTION = TRUE` gains a column for each new field.
    pub(crate) match_by_name: BTreeSet<String>,
    /// `LOAD_MODE` = `copy` (default) | `snowpipe`, with the pipe settings of the latter.
    pub(crate) load_mode: LoadMode,
    /// `MAX_FILES_PER_COPY` (default and maximum 1000).
    pub(crate) max_files_per_copy: usize,
    /// The `SNOWFLAKE_*` variables.
    pub snowflake: SnowflakeConfig,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub(crate) function: FunctionSettings,
}

impl Config {
    /// Reads every variable; an error names the variable at fault.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let bucket = env.required("RAW_BUCKET")?;
        let layout = Layout::from_env(env)?;
        let stage = name(env, "SNOWFLAKE_STAGE", "RAW_STAGE", "stage")?;
        let ndjson_format = name(env, "FILE_FORMAT_NDJSON", "NDJSON_FMT", "file format")?;
        let csv_format = name(env, "FILE_FORMAT_CSV", "CSV_FMT", "file format")?;
        let table_suffix = table_suffix(env)?;
        let table_map = table_map(env)?;
        let on_error = env.parse_or("ON_ERROR", OnError::AbortStatement)?;
        let lineage = lineage(env)?;
        let csv_fields = env.json_optional("LINEAGE_CSV_FIELDS")?.unwrap_or_default();
        let max_files_per_copy = max_files_per_copy(env)?;
        let match_by_name = env
            .json_optional("MATCH_BY_NAME_TABLES")?
            .unwrap_or_default();
        let snowflake = SnowflakeConfig::from_env(env)?;
        let load_mode = load_mode(env, &snowflake)?;
        Ok(Self {
            bucket,
            layout,
            stage,
            table_suffix,
            table_map,
            ndjson_format,
            csv_format,
            on_error,
            lineage,
            csv_fields,
            match_by_name,
            max_files_per_copy,
            load_mode,
            snowflake,
            function: FunctionSettings::from_env(env, Duration::from_millis(3000))?,
        })
    }

    /// The quoted, qualified Snowflake table for a key's table directory.
    pub(crate) fn table_for(&self, key_table: &str) -> Result<String, ident::IdentError> {
        let name = self
            .table_map
            .get(key_table)
            .cloned()
            .unwrap_or_else(|| format!("{key_table}{}", self.table_suffix));
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() > 1 {
            return ident::qualified(&parts);
        }
        let sf = &self.snowflake;
        match &sf.database {
            Some(db) => ident::qualified(&[db, &sf.schema, &name]),
            None => ident::qualified(&[&sf.schema, &name]),
        }
    }
}

/// A stage or file format name from `var` (or `default`), checked to be a plain name.
fn name(
    env: &Env<'_>,
    var: &str,
    default: &str,
    what: &'static str,
) -> Result<String, ConfigError> {
    let v = env.optional(var).unwrap_or_else(|| default.into());
    check_name(what, &v).map_err(|e| ConfigError::new(var, e.to_string()))
}

/// `RAW_TABLE_SUFFIX`, checked by the table name it makes.
fn table_suffix(env: &Env<'_>) -> Result<String, ConfigError> {
    let table_suffix = env
        .optional("RAW_TABLE_SUFFIX")
        .unwrap_or_else(|| "_RAW".into());
    ident::validate(&format!("T{table_suffix}"))
        .map_err(|e| ConfigError::new("RAW_TABLE_SUFFIX", e.to_string()))?;
    Ok(table_suffix)
}

/// `TABLE_MAP`, every table a valid name of at most three parts.
fn table_map(env: &Env<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let table_map: BTreeMap<String, String> = env.json_optional("TABLE_MAP")?.unwrap_or_default();
    for (k, v) in &table_map {
        for part in v.split('.') {
            ident::validate(part)
                .map_err(|e| ConfigError::new("TABLE_MAP", format!("table for {k:?}: {e}")))?;
        }
        if v.split('.').count() > 3 {
            return Err(ConfigError::new(
                "TABLE_MAP",
                format!("table for {k:?}: at most DB.SCHEMA.TABLE"),
            ));
        }
    }
    Ok(table_map)
}

/// `LINEAGE`: `in_file` (default) or `metadata`, in any case.
fn lineage(env: &Env<'_>) -> Result<Lineage, ConfigError> {
    match env
        .optional("LINEAGE")
        .map(|v| v.to_ascii_lowercase())
        .as_deref()
    {
        None | Some("in_file") => Ok(Lineage::InFile),
        Some("metadata") => Ok(Lineage::Metadata(MetadataLineage::default())),
        Some(other) => Err(ConfigError::new(
            "LINEAGE",
            format!("expected in_file or metadata, got {other:?}"),
        )),
    }
}

/// How the loader hands files to Snowflake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadMode {
    /// `COPY INTO` through the SQL API, on the configured warehouse (see `copy`).
    Copy,
    /// The Snowpipe REST API: `insertFiles` to each table's pipe, loads confirmed with
    /// `insertReport`/`loadHistoryScan` (see `pipe` and `pipe_service`).
    Snowpipe(PipeSettings),
}

/// `LOAD_MODE=snowpipe`'s settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PipeSettings {
    /// `PIPE_SUFFIX` (default `_PIPE`): table `DB.S.SENSOR_READINGS_RAW` is loaded by pipe
    /// `DB.S.SENSOR_READINGS_RAW_PIPE`, which `sql/35_pipes.sql` creates.
    pub(crate) suffix: String,
    /// `PIPE_POLL_MS` (default 5000): the wait between two `insertReport` polls. Snowpipe
    /// loads a file in about a minute (no SLA); polling faster only spends requests.
    pub(crate) poll_interval: Duration,
}

/// `LOAD_MODE` and, for `snowpipe`, `PIPE_SUFFIX` and `PIPE_POLL_MS`. The Snowpipe REST API takes
/// key-pair JWTs only, and a fully qualified pipe name
/// (https://docs.snowflake.com/en/user-guide/data-load-snowpipe-rest-apis), so `snowpipe` needs
/// `SNOWFLAKE_PRIVATE_KEY*` and `SNOWFLAKE_DATABASE`: both are checked here, at start-up.
fn load_mode(env: &Env<'_>, snowflake: &SnowflakeConfig) -> Result<LoadMode, ConfigError> {
    let mode = env.optional("LOAD_MODE").map(|v| v.to_ascii_lowercase());
    match mode.as_deref() {
        None | Some("copy") => return Ok(LoadMode::Copy),
        Some("snowpipe") => {}
        Some(other) => {
            return Err(ConfigError::new(
                "LOAD_MODE",
                format!("expected copy or snowpipe, got {other:?}"),
            ))
        }
    }
    if !matches!(snowflake.auth, AuthConfig::KeyPair { .. }) {
        return Err(ConfigError::new(
            "LOAD_MODE",
            "snowpipe needs key-pair authentication (SNOWFLAKE_PRIVATE_KEY*): the Snowpipe REST API takes key-pair JWTs only",
        ));
    }
    if snowflake.database.is_none() {
        return Err(ConfigError::new(
            "SNOWFLAKE_DATABASE",
            "required with LOAD_MODE=snowpipe: the Snowpipe REST API names a pipe DB.SCHEMA.PIPE",
        ));
    }
    let suffix = env
        .optional("PIPE_SUFFIX")
        .unwrap_or_else(|| "_PIPE".into());
    ident::resolve(&format!("T{suffix}"))
        .map_err(|e| ConfigError::new("PIPE_SUFFIX", e.to_string()))?;
    let poll_ms: u64 = env.parse_or("PIPE_POLL_MS", 5000)?;
    if !(100..=60_000).contains(&poll_ms) {
        return Err(ConfigError::new(
            "PIPE_POLL_MS",
            "must be between 100 and 60000",
        ));
    }
    Ok(LoadMode::Snowpipe(PipeSettings {
        suffix,
        poll_interval: Duration::from_millis(poll_ms),
    }))
}

/// `MAX_FILES_PER_COPY`, within Snowflake's limit.
fn max_files_per_copy(env: &Env<'_>) -> Result<usize, ConfigError> {
    let max_files_per_copy = env.parse_or("MAX_FILES_PER_COPY", MAX_FILES_PER_COPY)?;
    if !(1..=MAX_FILES_PER_COPY).contains(&max_files_per_copy) {
        return Err(ConfigError::new(
            "MAX_FILES_PER_COPY",
            "must be between 1 and 1000",
        ));
    }
    Ok(max_files_per_copy)
}

#[cfg(test)]
mod tests;
