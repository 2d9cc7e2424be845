//! Which table a record belongs to.

use std::collections::HashMap;

use crate::config::{ConfigError, Env};
use crate::kinesis::payload::{Extractor, JsonPointer, Payload, PayloadParser};
use crate::kinesis::record::KinesisRecord;

/// Why a record has no table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The payload has no value at the routing field (carried as its pointer), or it is null.
    #[error("routing field {0} is missing or null")]
    MissingField(String),
    /// The value is not in `ROUTE_MAP` and there is no `ROUTE_DEFAULT_TABLE`.
    #[error("routing field {field} has value {value:?}, which maps to no table")]
    UnknownValue {
        /// The routing field's pointer.
        field: String,
        /// Its value as text (a string unescaped, anything else as its JSON).
        value: String,
    },
}

/// Routes every record to one table, or by a field's value through a map.
#[derive(Debug, Clone, PartialEq)]
pub enum Router {
    /// Every record to this table (`TABLE`).
    Fixed(String),
    /// By the value of a payload field (`ROUTE_FIELD`, `ROUTE_MAP`, `ROUTE_DEFAULT_TABLE`).
    ByField {
        /// Where the value is in the payload.
        field: JsonPointer,
        /// The field's slot in the configuration's [`Extractor`].
        slot: usize,
        /// Value (as text) → table.
        tables: HashMap<String, String>,
        /// Table for values the map does not name; `None` quarantines them.
        default: Option<String>,
    },
}

impl Router {
    /// `TABLE` for a fixed table, or `ROUTE_FIELD` + `ROUTE_MAP` (JSON object value → table) with
    /// an optional `ROUTE_DEFAULT_TABLE`.
    pub fn from_env(env: &Env<'_>, extractor: &mut Extractor) -> Result<Self, ConfigError> {
        match (env.optional("TABLE"), env.optional("ROUTE_FIELD")) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "ROUTE_FIELD",
                "set either TABLE or ROUTE_FIELD, not both",
            )),
            (None, None) => Err(ConfigError::new(
                "TABLE",
                "is required (or ROUTE_FIELD with ROUTE_MAP)",
            )),
            (Some(table), None) => Ok(Router::Fixed(table_name("TABLE", &table)?)),
            (None, Some(field)) => {
                let field: JsonPointer = field
                    .parse()
                    .map_err(|e| ConfigError::new("ROUTE_FIELD", e))?;
                let slot = extractor.slot(&field);
                let raw: HashMap<String, String> = env
                    .json_optional("ROUTE_MAP")?
                    .ok_or_else(|| ConfigError::new("ROUTE_MAP", "is required with ROUTE_FIELD"))?;
                let mut tables = HashMap::with_capacity(raw.len());
                for (value, table) in raw {
                    tables.insert(value, table_name("ROUTE_MAP", &table)?);
                }
                let default = env
                    .optional("ROUTE_DEFAULT_TABLE")
                    .map(|t| table_name("ROUTE_DEFAULT_TABLE", &t))
                    .transpose()?;
                Ok(Router::ByField {
                    field,
                    slot,
                    tables,
                    default,
                })
            }
        }
    }

    /// The table of a payload read through the configuration's extractor.
    pub(crate) fn route<'r>(&'r self, payload: &Payload<'_>) -> Result<&'r str, RouteError> {
        match self {
            Router::Fixed(table) => Ok(table),
            Router::ByField {
                field,
                slot,
                tables,
                default,
            } => {
                let value = payload
                    .text_of(*slot)
                    .ok_or_else(|| RouteError::MissingField(field.to_string()))?;
                match (tables.get(value.as_ref()), default) {
                    (Some(table), _) | (None, Some(table)) => Ok(table),
                    (None, None) => Err(RouteError::UnknownValue {
                        field: field.to_string(),
                        value: value.into_owned(),
                    }),
                }
            }
        }
    }

    /// Every table this router can produce, for validating per-table configuration at init.
    pub fn tables(&self) -> Vec<&str> {
        let mut all: Vec<&str> = match self {
            Router::Fixed(t) => vec![t],
            Router::ByField {
                tables, default, ..
            } => tables
                .values()
                .chain(default.iter())
                .map(String::as_str)
                .collect(),
        };
        all.sort_unstable();
        all.dedup();
        all
    }
}

/// What both Kinesis functions do first with a record: its payload, validated and read through
/// the batch's `parser`, and its table. The error is the quarantine reason.
pub fn route_record<'c, 'r>(
    router: &'c Router,
    parser: &mut PayloadParser<'_, 'r>,
    record: &'r KinesisRecord<'_>,
) -> Result<(&'c str, Payload<'r>), String> {
    if let Some(e) = &record.aggregate_error {
        return Err(e.to_string());
    }
    let bytes = record
        .data
        .as_ref()
        .map_err(|_| "data is not valid base64".to_string())?;
    let payload = parser.parse(bytes).map_err(|e| e.to_string())?;
    let table = router.route(&payload).map_err(|e| e.to_string())?;
    Ok((table, payload))
}

/// Logical table names appear in object keys and become Snowflake identifiers, so they are kept
/// to letters, digits and underscores.
pub fn table_name(var: &str, name: &str) -> Result<String, ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(name.to_string())
    } else {
        Err(ConfigError::new(var, format!("table name {name:?} must be letters, digits and underscores, not starting with a digit")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(vars: &[(&str, &str)]) -> Result<(Router, Extractor), ConfigError> {
        let mut x = Extractor::new();
        Router::from_env(&Env::new(&vars), &mut x).map(|r| (r, x))
    }

    #[test]
    fn fixed_table() {
        let (r, x) = router(&[("TABLE", "sensor_readings")]).unwrap();
        let p = x.parse(b"{}").unwrap();
        assert_eq!(r.route(&p).unwrap(), "sensor_readings");
    }

    #[test]
    fn by_field_with_and_without_default() {
        let vars = [
            ("ROUTE_FIELD", "/event_type"),
            (
                "ROUTE_MAP",
                r#"{"order_created":"orders","page_view":"clicks"}"#,
            ),
        ];
        let (r, x) = router(&vars).unwrap();
        assert_eq!(r.tables(), vec!["clicks", "orders"]);
        let order = x.parse(br#"{"event_type":"order_created"}"#).unwrap();
        assert_eq!(r.route(&order).unwrap(), "orders");
        let other = x.parse(br#"{"event_type":"refund"}"#).unwrap();
        assert_eq!(
            r.route(&other).unwrap_err(),
            RouteError::UnknownValue {
                field: "/event_type".into(),
                value: "refund".into()
            }
        );
        let missing = x.parse(br#"{"event_type":null}"#).unwrap();
        assert_eq!(
            r.route(&missing).unwrap_err(),
            RouteError::MissingField("/event_type".into())
        );

        let mut with_default = vars.to_vec();
        with_default.push(("ROUTE_DEFAULT_TABLE", "other_events"));
        let (r, _) = router(&with_default).unwrap();
        assert_eq!(
            r.route(&other).unwrap(),
            "other_events",
            "the same slot layout: the field is the only pointer"
        );
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        assert_eq!(router(&[]).unwrap_err().var, "TABLE");
        assert_eq!(router(&[("TABLE", "bad-name")]).unwrap_err().var, "TABLE");
        assert_eq!(
            router(&[("ROUTE_FIELD", "/t")]).unwrap_err().var,
            "ROUTE_MAP"
        );
        assert_eq!(
            router(&[("ROUTE_FIELD", "/t"), ("ROUTE_MAP", "{")])
                .unwrap_err()
                .var,
            "ROUTE_MAP"
        );
        assert_eq!(
            router(&[("ROUTE_FIELD", "/t"), ("ROUTE_MAP", r#"{"a":"x y"}"#)])
                .unwrap_err()
                .var,
            "ROUTE_MAP"
        );
    }
}
