//! CloudWatch metrics in the Embedded Metric Format: one JSON log line per invocation that
//! CloudWatch Logs turns into metrics, no API call and no per-record cost,
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.
//!
//! A document: `{"_aws": {"Timestamp": <ms>, "CloudWatchMetrics": [{"Namespace", "Dimensions":
//! [["Function"], ["Function", "Table"]], "Metrics": [{"Name", "Unit"}]}]}, "Function": …,
//! "Table": …, "<Name>": <value>, …}`. Counts are made by the handlers while they work and
//! written here once.

use std::fmt::Write as _;

use crate::config::{ConfigError, Env};

/// `METRICS_NAMESPACE` when not set.
pub(crate) const DEFAULT_NAMESPACE: &str = "KinesisSnowflake";

/// `METRICS_NAMESPACE`: 1 to 255 characters, no `:` (CloudWatch's rule for namespaces).
pub(crate) fn namespace_from_env(env: &Env<'_>) -> Result<String, ConfigError> {
    let ns = env
        .optional("METRICS_NAMESPACE")
        .unwrap_or_else(|| DEFAULT_NAMESPACE.into());
    if ns.is_empty() || ns.len() > 255 || ns.contains(':') || ns.chars().any(char::is_control) {
        return Err(ConfigError::new(
            "METRICS_NAMESPACE",
            "must be 1 to 255 characters without ':'",
        ));
    }
    Ok(ns)
}

/// The CloudWatch unit a metric is recorded in (the EMF `Unit` of its definition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Records, objects, statements, ...
    Count,
    /// Payload and object sizes.
    Bytes,
    /// Durations.
    Milliseconds,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Bytes => "Bytes",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// One invocation's metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Emf {
    namespace: String,
    function: String,
    table: Option<String>,
    metrics: Vec<(&'static str, Unit, f64)>,
}

impl Emf {
    /// An empty document for `function` (its `Function` dimension) in `namespace`.
    pub fn new(namespace: &str, function: &str) -> Self {
        Self {
            namespace: namespace.into(),
            function: function.into(),
            table: None,
            metrics: Vec::new(),
        }
    }

    /// Adds the `Table` dimension (a batch of one table; a mixed batch is counted per function).
    pub fn table(mut self, table: Option<&str>) -> Self {
        self.table = table.map(String::from);
        self
    }

    /// Adds a metric: its definition in the directive's `Metrics`, its value at the root.
    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.metrics.push((name, unit, value));
        self
    }

    /// Adds a [`Unit::Count`] metric.
    pub fn count(self, name: &'static str, value: usize) -> Self {
        self.metric(name, Unit::Count, value as f64)
    }

    /// Adds `LagMs`, now − the arrival of the batch's newest record, when the batch had one.
    pub fn lag(self, newest_arrival_ms: Option<i64>, now_ms: i64) -> Self {
        match newest_arrival_ms {
            Some(arrival) => self.metric(
                "LagMs",
                Unit::Milliseconds,
                (now_ms - arrival).max(0) as f64,
            ),
            None => self,
        }
    }

    /// The value of a metric, for tests and the demo.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| *v)
    }

    /// The `Function` dimension.
    pub fn function(&self) -> &str {
        &self.function
    }

    /// The metric names, in the order they were added.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.metrics.iter().map(|(n, _, _)| *n)
    }

    /// The document as one log line.
    pub fn to_line(&self, timestamp_ms: i64) -> String {
        let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let mut out = String::with_capacity(256 + 48 * self.metrics.len());
        let dims = if self.table.is_some() {
            r#"[["Function"],["Function","Table"]]"#
        } else {
            r#"[["Function"]]"#
        };
        let _ = write!(
            out,
            r#"{{"_aws":{{"Timestamp":{timestamp_ms},"CloudWatchMetrics":[{{"Namespace":{},"Dimensions":{dims},"Metrics":["#,
            q(&self.namespace)
        );
        for (i, (name, unit, _)) in self.metrics.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"Name":{},"Unit":"{}"}}"#, q(name), unit.name());
        }
        let _ = write!(out, r#"]}}]}},"Function":{}"#, q(&self.function));
        if let Some(t) = &self.table {
            let _ = write!(out, r#","Table":{}"#, q(t));
        }
        for (name, _, value) in &self.metrics {
            let value = if value.is_finite() { *value } else { 0.0 };
            let _ = write!(out, ",{}:{value}", q(name));
        }
        out.push('}');
        out
    }
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the specification requires of a document: `_aws.Timestamp` (ms), a
    /// `CloudWatchMetrics` array of directives each with a `Namespace`, `Dimensions` (arrays of
    /// member names, each member a string at the root) and `Metrics` (`Name`, `Unit`, each a
    /// number at the root), at most 100 metrics and 30 dimensions per set.
    fn check_against_spec(line: &str) -> serde_json::Value {
        let doc: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
        let aws = &doc["_aws"];
        assert!(aws["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        let directives = aws["CloudWatchMetrics"].as_array().unwrap();
        assert!(!directives.is_empty());
        for d in directives {
            let ns = d["Namespace"].as_str().unwrap();
            assert!(!ns.is_empty() && ns.len() <= 255 && !ns.contains(':'));
            for set in d["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert!(!set.is_empty() && set.len() <= 30);
                for name in set {
                    assert!(doc[name.as_str().unwrap()].is_string(), "dimension {name}");
                }
            }
            let metrics = d["Metrics"].as_array().unwrap();
            assert!(metrics.len() <= 100);
            for m in metrics {
                let name = m["Name"].as_str().unwrap();
                assert!(doc[name].is_number(), "metric {name}");
                assert!(["Count", "Bytes", "Milliseconds"].contains(&m["Unit"].as_str().unwrap()));
            }
        }
        doc
    }

    #[test]
    fn a_document_follows_the_specification() {
        let emf = Emf::new("Ns/Test", "upsert")
            .table(Some("ORDERS \"x\""))
            .count("Records", 10)
            .metric("LagMs", Unit::Milliseconds, 1500.0)
            .metric("BytesOut", Unit::Bytes, f64::NAN);
        let doc = check_against_spec(&emf.to_line(1_700_000_000_000));
        assert_eq!(doc["Table"], "ORDERS \"x\"");
        assert_eq!(doc["Records"], 10.0);
        assert_eq!(doc["BytesOut"], 0.0);
        assert_eq!(emf.get("LagMs"), Some(1500.0));
        let doc = check_against_spec(
            &Emf::new("N", "loader")
                .count("Files", 0)
                .to_line(1_700_000_000_000),
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([["Function"]])
        );
    }

    #[test]
    fn the_namespace_is_checked_at_start_up() {
        assert_eq!(
            namespace_from_env(&Env::new(&[])).unwrap(),
            DEFAULT_NAMESPACE
        );
        assert_eq!(
            namespace_from_env(&Env::new(&[("METRICS_NAMESPACE", "Team/Ingest")])).unwrap(),
            "Team/Ingest"
        );
        let err = namespace_from_env(&Env::new(&[("METRICS_NAMESPACE", "a:b")])).unwrap_err();
        assert!(err.to_string().contains("METRICS_NAMESPACE"));
    }
}
