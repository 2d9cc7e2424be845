//! The upsert's settings, read once at init: every variable in one place, each checked and
//! named in the error when it does not fit.

use std::time::Duration;

use shared::config::{ConfigError, Env};
use shared::kinesis::payload::Extractor;
use shared::kinesis::route::Router;
use shared::lambda::FunctionSettings;
use shared::rawzone::layout::Layout;
use shared::rawzone::s3::Destination;
use shared::snowflake::{ident, SnowflakeConfig};

use crate::mapping::TableMappings;

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    /// Which table each record belongs to (`TABLE`, or `ROUTE_FIELD` with `ROUTE_MAP`).
    pub router: Router,
    /// Each table's columns, keys, version and envelope (`UPSERT_TABLES`).
    pub tables: TableMappings,
    /// Every field the router and the mappings read, resolved in one pass per record.
    pub extractor: Extractor,
    /// Where rejected records go (`ERROR_BUCKET`, `ERROR_PREFIX` default `errors`; keys continue
    /// with `upsert/`, see [`Writer`]), encrypted with `KMS_KEY_ID` when set.
    pub error_destination: Destination,
    /// Where quarantine objects go under `ERROR_BUCKET` (`ERROR_PREFIX`).
    pub error_layout: Layout,
    /// The `SNOWFLAKE_*` connection: account, credentials, database and schema.
    pub snowflake: SnowflakeConfig,
    /// Rows per MERGE statement (`MAX_ROWS_PER_STATEMENT`, default 5,000).
    pub max_rows: usize,
    /// Approximate bytes of row JSON per statement (`MAX_BYTES_PER_STATEMENT`, default 1 MB:
    /// Snowflake advises keeping a statement with its binds near 1 MB,
    /// https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests#using-bind-variables-in-a-statement).
    pub max_bytes: usize,
    /// `WRITE_MODE`: `merge` (default) or `streaming` (Snowpipe Streaming into change tables).
    pub write_mode: WriteMode,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub function: FunctionSettings,
}

impl Config {
    /// Reads every variable once; an error names the variable that does not fit.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let snowflake = SnowflakeConfig::from_env(env)?;
        let mut extractor = Extractor::new();
        let router = Router::from_env(env, &mut extractor)?;
        // Targets are qualified with the connection's database and schema (already validated).
        let qualifier: Vec<&str> = snowflake
            .database
            .iter()
            .map(String::as_str)
            .chain([snowflake.schema.as_str()])
            .collect();
        let tables = TableMappings::from_env(env, &router.tables(), &qualifier, &mut extractor)?;
        let error_destination = Destination::from_env(env, "ERROR_BUCKET")?;
        let error_layout = Layout::from_env(env)?;
        let write_mode = WriteMode::from_env(env, &snowflake)?;
        Ok(Self {
            router,
            tables,
            extractor,
            error_destination,
            error_layout,
            snowflake,
            max_rows: max_rows(env)?,
            max_bytes: env.parse_or("MAX_BYTES_PER_STATEMENT", 1_000_000usize)?,
            write_mode,
            function: FunctionSettings::from_env(env, Duration::from_millis(3000))?,
        })
    }
}

/// `MAX_ROWS_PER_STATEMENT` (default 5,000, at least 1).
fn max_rows(env: &Env<'_>) -> Result<usize, ConfigError> {
    let max_rows = env.parse_or("MAX_ROWS_PER_STATEMENT", 5_000usize)?;
    if max_rows == 0 {
        return Err(ConfigError::new(
            "MAX_ROWS_PER_STATEMENT",
            "must be at least 1",
        ));
    }
    Ok(max_rows)
}

/// How the function writes a batch (`WRITE_MODE`).
#[derive(Debug, Clone)]
pub enum WriteMode {
    /// One MERGE per table and chunk (the default).
    Merge,
    /// Appends to a change table per target through Snowpipe Streaming.
    Streaming(StreamingSettings),
}

#[derive(Debug, Clone)]
/// Where `WRITE_MODE=streaming` writes: the change and latest-state tables' suffixes and schema.
pub struct StreamingSettings {
    /// Appended to each target's name for its change table (`CHANGE_TABLE_SUFFIX`, `_CHANGES`).
    pub change_suffix: String,
    /// The Dynamic Table of the latest state (`LATEST_TABLE_SUFFIX`, `_LATEST`); made by
    /// `bootstrap --streaming`, read by nobody here.
    pub latest_suffix: String,
    /// The connection's database and schema as the streaming API's paths name them.
    pub database: String,
    /// The connection's schema, resolved as the streaming API's paths name it.
    pub schema: String,
    /// Recovery channels: appended as given to every channel name
    /// (`<TABLE>_<stream>_<shardId><suffix>`); not read from the environment. Recovery tools
    /// (replay, redrive) set it (`Upsert::for_recovery`) so that they never share the live
    /// channels' committed offsets: with a suffix, the change table itself is the record of what
    /// landed (a look-up before each append), and each table's batch goes through a channel
    /// made for it and dropped after. None for the function itself.
    pub channel_suffix: Option<String>,
    /// The latest-state Dynamic Table's `TARGET_LAG` when schema evolution re-creates it
    /// (`LATEST_TARGET_LAG`, default `1 minute`, as `bootstrap --streaming` makes it).
    pub latest_target_lag: String,
    /// The warehouse that refreshes it, quoted (`SNOWFLAKE_WAREHOUSE`, default `COMPUTE_WH`,
    /// as `bootstrap --streaming`).
    pub latest_warehouse: String,
}

/// `LATEST_TARGET_LAG` (default `1 minute`): `<n> seconds|minutes|hours|days`, at least a
/// minute, as Snowflake accepts it for a new or replaced Dynamic Table
/// (<https://docs.snowflake.com/en/release-notes/bcr-bundles/2023_06/bcr-1247>); refused here so
/// that a schema-evolution re-create cannot fail on it later.
fn target_lag(value: Option<String>) -> Result<String, String> {
    let Some(value) = value else {
        return Ok("1 minute".into());
    };
    let (n, unit) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| format!("{value:?} is not '<n> seconds|minutes|hours|days'"))?;
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{value:?} does not start with a whole number"))?;
    let seconds = match unit
        .trim()
        .trim_end_matches('s')
        .to_ascii_lowercase()
        .as_str()
    {
        "second" => n,
        "minute" => n * 60,
        "hour" => n * 3600,
        "day" => n * 86_400,
        _ => {
            return Err(format!(
                "{value:?}: the unit is seconds, minutes, hours or days"
            ))
        }
    };
    if seconds < 60 {
        return Err(format!(
            "{value:?} is under a minute, which Snowflake refuses"
        ));
    }
    Ok(value.trim().to_string())
}

impl WriteMode {
    /// `WRITE_MODE` (`merge` or `streaming`) and, for streaming, its table suffixes.
    pub fn from_env(env: &Env<'_>, snowflake: &SnowflakeConfig) -> Result<Self, ConfigError> {
        match env.optional("WRITE_MODE").as_deref().unwrap_or("merge") {
            "merge" => Ok(WriteMode::Merge),
            "streaming" => {
                let database = snowflake.database.as_deref().ok_or_else(|| {
                    ConfigError::new(
                        "SNOWFLAKE_DATABASE",
                        "is required with WRITE_MODE=streaming",
                    )
                })?;
                Ok(WriteMode::Streaming(StreamingSettings {
                    change_suffix: table_suffix(env, "CHANGE_TABLE_SUFFIX", "_CHANGES")?,
                    latest_suffix: table_suffix(env, "LATEST_TABLE_SUFFIX", "_LATEST")?,
                    database: ident::resolve(database)
                        .map_err(|e| ConfigError::new("SNOWFLAKE_DATABASE", e.to_string()))?,
                    schema: ident::resolve(&snowflake.schema)
                        .map_err(|e| ConfigError::new("SNOWFLAKE_SCHEMA", e.to_string()))?,
                    channel_suffix: None,
                    latest_target_lag: target_lag(env.optional("LATEST_TARGET_LAG"))
                        .map_err(|e| ConfigError::new("LATEST_TARGET_LAG", e))?,
                    latest_warehouse: ident::quote(
                        snowflake.warehouse.as_deref().unwrap_or("COMPUTE_WH"),
                    )
                    .map_err(|e| ConfigError::new("SNOWFLAKE_WAREHOUSE", e.to_string()))?,
                }))
            }
            other => Err(ConfigError::new(
                "WRITE_MODE",
                format!("{other:?} is not merge or streaming"),
            )),
        }
    }
}

/// A suffix appended to a table name (`CHANGE_TABLE_SUFFIX`, `LATEST_TABLE_SUFFIX`).
fn table_suffix(env: &Env<'_>, var: &str, default: &str) -> Result<String, ConfigError> {
    let s = env.optional(var).unwrap_or_else(|| default.into());
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ConfigError::new(
            var,
            "must be upper-case letters, digits and _",
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::target_lag;

    #[test]
    fn the_latest_target_lag_is_checked_at_start_up() {
        assert_eq!(target_lag(None).unwrap(), "1 minute");
        for ok in ["1 minute", "60 seconds", "2 hours", "1 day", " 5 Minutes "] {
            assert!(target_lag(Some(ok.into())).is_ok(), "{ok}");
        }
        for bad in [
            "30 seconds",
            "0 minutes",
            "soon",
            "1",
            "1 fortnight",
            "DOWNSTREAM",
        ] {
            assert!(target_lag(Some(bad.into())).is_err(), "{bad}");
        }
    }
}
