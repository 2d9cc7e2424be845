//! What every function repeats around its pipeline: the settings each one reads the same way
//! (`DEADLINE_MARGIN_MS`, `METRICS_NAMESPACE`), the invocation's deadline, the one metrics line
//! per invocation, and the error Lambda reports for a failed invocation.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::{ConfigError, Env};
use crate::metrics::Emf;

/// The settings every function reads, each from one variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSettings {
    /// Time kept back from Lambda's deadline (`DEADLINE_MARGIN_MS`): no request starts or is
    /// waited for after it, so the response reporting what did not finish still reaches Lambda.
    pub deadline_margin: Duration,
    /// CloudWatch namespace of the per-invocation EMF document (`METRICS_NAMESPACE`).
    pub metrics_namespace: String,
}

impl FunctionSettings {
    /// Reads both variables; `default_margin` is the function's own default.
    pub fn from_env(env: &Env<'_>, default_margin: Duration) -> Result<Self, ConfigError> {
        let margin_ms = env.parse_or("DEADLINE_MARGIN_MS", default_margin.as_millis() as u64)?;
        Ok(Self {
            deadline_margin: Duration::from_millis(margin_ms),
            metrics_namespace: crate::metrics::namespace_from_env(env)?,
        })
    }

    /// The invocation's deadline less the margin (`deadline_ms` from the Lambda context).
    pub fn deadline(&self, deadline_ms: u64) -> Instant {
        deadline_from(deadline_ms, self.deadline_margin)
    }
}

/// Lambda's deadline (milliseconds since the epoch, from the invocation context) as an
/// `Instant`, less `margin` so a failure can still be reported before Lambda ends the invocation.
pub(crate) fn deadline_from(deadline_ms: u64, margin: Duration) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now()
        + Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(margin)
}

/// Prints the invocation's one EMF document to standard output, where CloudWatch Logs reads it.
pub fn emit(metrics: &Emf) {
    println!("{}", metrics.to_line(crate::metrics::now_ms()));
}

/// The `errorType` and `errorMessage` Lambda reports for a failed invocation.
pub fn diagnostic(error_type: &str, error: &impl std::fmt::Display) -> lambda_runtime::Diagnostic {
    lambda_runtime::Diagnostic {
        error_type: error_type.into(),
        error_message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_keeps_the_margin() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = deadline_from(now_ms + 10_000, Duration::from_secs(3));
        let left = d.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(6_500) && left <= Duration::from_secs(7),
            "{left:?}"
        );
        assert!(
            deadline_from(now_ms - 5_000, Duration::from_secs(3)) <= Instant::now(),
            "a passed deadline stays passed"
        );
    }

    #[test]
    fn settings_keep_the_function_default_and_name_the_variable() {
        let none: [(&str, &str); 0] = [];
        let s = FunctionSettings::from_env(&Env::new(&none), Duration::from_secs(2)).unwrap();
        assert_eq!(s.deadline_margin, Duration::from_secs(2));
        assert_eq!(s.metrics_namespace, crate::metrics::DEFAULT_NAMESPACE);
        let bad = [("DEADLINE_MARGIN_MS", "soon")];
        let err = FunctionSettings::from_env(&Env::new(&bad), Duration::ZERO).unwrap_err();
        assert_eq!(err.var, "DEADLINE_MARGIN_MS");
    }
}
