//! The orchestrator's settings, read once at init.

use std::time::Duration;

use shared::config::{ConfigError, Env};
use shared::lambda::FunctionSettings;
use shared::rawzone::RawZoneConfig;

/// Configuration, read once at init.
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) raw_zone: RawZoneConfig,
    /// How many objects are put at once (`PUT_CONCURRENCY`, default 8).
    pub(crate) put_concurrency: usize,
    /// `DEADLINE_MARGIN_MS` and `METRICS_NAMESPACE`.
    pub(crate) function: FunctionSettings,
}

impl Config {
    /// Reads the raw zone's settings, `PUT_CONCURRENCY` and the function settings.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let put_concurrency = env.parse_or("PUT_CONCURRENCY", 8usize)?;
        if put_concurrency == 0 {
            return Err(ConfigError::new("PUT_CONCURRENCY", "must be at least 1"));
        }
        Ok(Self {
            raw_zone: RawZoneConfig::from_env(env)?,
            put_concurrency,
            function: FunctionSettings::from_env(env, Duration::from_millis(2000))?,
        })
    }
}

#[cfg(test)]
mod tests;
