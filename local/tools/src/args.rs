//! Minimal `--name value` argument parsing: the tools have a handful of flags each.

use std::collections::HashMap;

/// Flags given as `--name value` or `--flag`; anything else is an error naming it.
pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    /// Parses `std::env::args()`; `switches` are flags that take no value.
    pub fn parse(switches: &[&str]) -> Result<Self, String> {
        Self::from_iter(std::env::args().skip(1), switches)
    }

    /// Parses `args` (without the program name), as [`Args::parse`] does; the tests call it.
    pub fn from_iter(
        args: impl IntoIterator<Item = String>,
        switches: &[&str],
    ) -> Result<Self, String> {
        let mut values = HashMap::new();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let name = arg
                .strip_prefix("--")
                .ok_or_else(|| format!("unexpected argument {arg:?}"))?;
            if let Some((k, v)) = name.split_once('=') {
                values.insert(k.to_string(), v.to_string());
            } else if switches.contains(&name) {
                values.insert(name.to_string(), "true".into());
            } else {
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                values.insert(name.to_string(), value);
            }
        }
        Ok(Self { values })
    }

    /// The value of `--name`, if given (`"true"` for a switch).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether `--name` was given, with or without a value.
    pub fn flag(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// `--name` parsed as a `T`, or `default` when it is not given; an error names the flag.
    pub fn parse_or<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }
}

/// Where the tools find the local stack, from the variables `make` exports.
pub struct LocalStack {
    /// The local Snowflake emulator's SQL API (`LOCAL_SF_URL`, default `http://127.0.0.1:8787`).
    pub snowflake_url: String,
    /// The PKCS#8 key the tools sign their JWTs with (`SNOWFLAKE_PRIVATE_KEY_FILE`).
    pub key_file: String,
    /// The AWS region (`AWS_REGION`, default `us-east-1`).
    pub region: String,
}

impl LocalStack {
    /// Reads the variables, with the defaults of the local stack for those not set.
    pub fn from_env() -> Self {
        let var =
            |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
        Self {
            snowflake_url: var("LOCAL_SF_URL", "http://127.0.0.1:8787"),
            key_file: var(
                "SNOWFLAKE_PRIVATE_KEY_FILE",
                "local/keys/snowflake_test_key.p8",
            ),
            region: var("AWS_REGION", "us-east-1"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_switches_and_equals() {
        let a = Args::from_iter(
            ["--count", "5", "--create", "--rate=10"].map(String::from),
            &["create"],
        )
        .unwrap();
        assert_eq!(a.parse_or("count", 0u64).unwrap(), 5);
        assert_eq!(a.parse_or("rate", 0u64).unwrap(), 10);
        assert!(a.flag("create"));
        assert!(Args::from_iter(["x".to_string()], &[]).is_err());
        assert!(Args::from_iter(["--count".to_string()], &[]).is_err());
    }
}
