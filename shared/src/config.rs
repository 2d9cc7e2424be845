//! Reading configuration from the environment once, at init.
//!
//! Every function has one typed configuration struct built from these helpers, so a missing or
//! malformed variable fails start-up with an error that names it instead of failing a batch later.

use std::collections::HashMap;
use std::str::FromStr;

/// A configuration variable that is missing or cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    /// The variable's name, so the operator knows which one to fix.
    pub var: String,
    /// What is wrong with it (not set, unparseable, out of range, in conflict with another).
    pub reason: String,
}

impl ConfigError {
    /// The error for variable `var`, with why it cannot be used.
    pub fn new(var: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            var: var.into(),
            reason: reason.into(),
        }
    }
}

/// Where configuration values come from: the process environment in production, a map in tests.
pub trait Source {
    /// The raw value of variable `name`, `None` when it is not set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

fn lookup(pairs: &[(&str, &str)], name: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| (*v).to_string())
}

impl Source for &[(&str, &str)] {
    fn get(&self, name: &str) -> Option<String> {
        lookup(self, name)
    }
}

impl Source for Vec<(&str, &str)> {
    fn get(&self, name: &str) -> Option<String> {
        lookup(self, name)
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, name: &str) -> Option<String> {
        lookup(self, name)
    }
}

/// Typed access to a [`Source`]; empty values count as unset.
pub struct Env<'a> {
    source: &'a dyn Source,
}

impl<'a> Env<'a> {
    /// Reads from `source`: [`ProcessEnv`], or pairs and maps in tests and tools.
    pub fn new(source: &'a dyn Source) -> Self {
        Self { source }
    }

    /// The value, trimmed; `None` when unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// The value, or an error naming the variable when it is unset or blank.
    pub fn required(&self, name: &str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| ConfigError::new(name, "is required but not set"))
    }

    /// The value parsed as `T`, or `default` when unset; a value that does not parse is an error,
    /// never the default.
    pub fn parse_or<T>(&self, name: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        match self.optional(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    /// The value parsed as `T`, `None` when unset; a value that does not parse is an error.
    pub fn parse_optional<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: std::fmt::Display,
    {
        self.optional(name)
            .map(|raw| {
                raw.parse()
                    .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))
            })
            .transpose()
    }

    /// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off` in any case, or `default` when unset.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(name).map(|v| v.to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Ok(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Ok(false),
            Some(v) => Err(ConfigError::new(
                name,
                format!("expected true or false, got {v:?}"),
            )),
        }
    }

    /// A JSON value, for the structured settings (column mappings, routing maps).
    pub fn json_optional<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, ConfigError> {
        self.optional(name)
            .map(|raw| {
                serde_json::from_str(&raw)
                    .map_err(|e| ConfigError::new(name, format!("invalid JSON: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_required_names_the_variable() {
        let src: [(&str, &str); 0] = [];
        let err = Env::new(&src).required("RAW_BUCKET").unwrap_err();
        assert_eq!(
            err.to_string(),
            "configuration: RAW_BUCKET: is required but not set"
        );
    }

    #[test]
    fn blank_counts_as_unset_and_parse_errors_name_the_variable() {
        let src = [("A", "  "), ("N", "x1")];
        let env = Env::new(&src);
        assert_eq!(env.optional("A"), None);
        let err = env.parse_or::<u32>("N", 5).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("configuration: N: cannot parse \"x1\""),
            "{err}"
        );
        assert_eq!(env.parse_or::<u32>("MISSING", 5).unwrap(), 5);
    }

    #[test]
    fn booleans() {
        let src = [("T", "TRUE"), ("F", "off"), ("X", "maybe")];
        let env = Env::new(&src);
        assert!(env.bool_or("T", false).unwrap());
        assert!(!env.bool_or("F", true).unwrap());
        assert!(env.bool_or("X", true).is_err());
    }
}
