//! Snowflake identifiers: validated, then always double-quoted.
//!
//! Rules:
//! - rejected: empty names, names longer than 255 characters, leading or trailing whitespace,
//!   control characters, invisible formatting characters (zero-width, bidi overrides, BOM), and
//!   the double quote `"` itself (instead of doubling it: no legitimate name in this project
//!   needs one, and rejecting it removes a whole class of quoting mistakes);
//! - names that look like unquoted identifiers (`[A-Za-z_][A-Za-z0-9_$]*`) are upper-cased
//!   before quoting, because that is how Snowflake resolves an unquoted name:
//!   `quote("sensor_readings") == "\"SENSOR_READINGS\""` names the same table as
//!   `sensor_readings` written without quotes;
//! - any other name (spaces, dashes, dots, non-ASCII letters, ...) is quoted verbatim and is
//!   therefore case-sensitive, exactly as written;
//! - a name written in double quotes (`"Mixed Case"`, as in SQL) is taken as written between
//!   them, case included, so `"ingest"` names a database created as `CREATE DATABASE "ingest"`
//!   while `ingest` names `INGEST`. The name inside follows the rules above (no `"` in it).
//!
//! [`resolve`] is the strict form for names configured by an operator, such as the statement
//! context: an unquoted name must be a valid unquoted identifier, as in Snowflake.

/// Maximum identifier length in Snowflake.
pub const MAX_LEN: usize = 255;

/// Why a name cannot be used as an identifier. Carries the offending name (names are not secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    /// The name, or what is between its double quotes, is empty.
    #[error("identifier is empty")]
    Empty,
    /// More than [`MAX_LEN`] characters; carries the first 40 of them.
    #[error("identifier {0:?} is longer than 255 characters")]
    TooLong(String),
    /// Whitespace at either end: almost always a copy-paste slip, and invisible in a log.
    #[error("identifier {0:?} has leading or trailing whitespace")]
    Whitespace(String),
    /// A control, zero-width or bidi character; carries the name with it escaped.
    #[error("identifier {0:?} contains a control or invisible formatting character")]
    ControlCharacter(String),
    /// A `"` inside the name, which is rejected rather than doubled (see the module rules).
    #[error("identifier {0:?} contains a double quote")]
    DoubleQuote(String),
    /// [`qualified`] was given no part or more than three (database, schema, object).
    #[error("qualified name needs 1 to 3 parts, got {0}")]
    Parts(usize),
    /// [`resolve`] was given an unquoted name that Snowflake would not accept unquoted.
    #[error("{0:?} is not a valid unquoted identifier ([A-Za-z_][A-Za-z0-9_$]*); write it in double quotes if the name is case-sensitive or has other characters")]
    NotUnquoted(String),
}

/// The name between the quotes of a double-quoted name (`"x"` → `x`), or `None`.
fn quoted_inner(name: &str) -> Option<&str> {
    name.strip_prefix('"')?.strip_suffix('"')
}

fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width space/joiners, LRM/RLM
            | '\u{202A}'..='\u{202E}' // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}' // bidi isolates
            | '\u{FEFF}' // BOM / zero-width no-break space
        )
}

/// True for names Snowflake would accept unquoted (and then upper-case).
pub fn is_unquoted_style(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
}

/// Validates `name` without quoting it.
pub fn validate(name: &str) -> Result<(), IdentError> {
    let name = quoted_inner(name).unwrap_or(name);
    if name.is_empty() {
        return Err(IdentError::Empty);
    }
    if name.chars().count() > MAX_LEN {
        let shown: String = name.chars().take(40).collect();
        return Err(IdentError::TooLong(format!("{shown}...")));
    }
    if name.chars().any(is_invisible) {
        return Err(IdentError::ControlCharacter(
            name.escape_default().to_string(),
        ));
    }
    if name.trim() != name {
        return Err(IdentError::Whitespace(name.to_string()));
    }
    if name.contains('"') {
        return Err(IdentError::DoubleQuote(name.to_string()));
    }
    Ok(())
}

/// The identifier, validated and double-quoted; unquoted-style names are upper-cased first, a
/// double-quoted name is kept as written.
pub fn quote(name: &str) -> Result<String, IdentError> {
    validate(name)?;
    if let Some(inner) = quoted_inner(name) {
        Ok(format!("\"{inner}\""))
    } else if is_unquoted_style(name) {
        Ok(format!("\"{}\"", name.to_ascii_uppercase()))
    } else {
        Ok(format!("\"{name}\""))
    }
}

/// A qualified object name such as `"DB"."SCHEMA"."TABLE"` from 1 to 3 parts, each quoted with
/// [`quote`]. Parts are never split on `.`: `qualified(&["a.b"])` is the single name `"a.b"`.
pub fn qualified(parts: &[&str]) -> Result<String, IdentError> {
    if parts.is_empty() || parts.len() > 3 {
        return Err(IdentError::Parts(parts.len()));
    }
    let quoted = parts
        .iter()
        .map(|p| quote(p))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(quoted.join("."))
}

/// The name as Snowflake stores it (what `quote` puts between the quotes): upper-cased when
/// unquoted-style, verbatim otherwise. Useful for the `database`/`schema` request fields and for
/// comparing with `information_schema` contents.
pub fn normalize(name: &str) -> Result<String, IdentError> {
    validate(name)?;
    Ok(if let Some(inner) = quoted_inner(name) {
        inner.to_string()
    } else if is_unquoted_style(name) {
        name.to_ascii_uppercase()
    } else {
        name.to_string()
    })
}

/// The name as Snowflake resolves it, strictly: an unquoted name must be a valid unquoted
/// identifier and is upper-cased (`ingest` → `INGEST`); a double-quoted one is taken as written
/// between the quotes (`"My Db"` → `My Db`). For names an operator configures, where `my-db`
/// is more likely a mistake than a case-sensitive name.
pub fn resolve(name: &str) -> Result<String, IdentError> {
    validate(name)?;
    if let Some(inner) = quoted_inner(name) {
        Ok(inner.to_string())
    } else if is_unquoted_style(name) {
        Ok(name.to_ascii_uppercase())
    } else {
        Err(IdentError::NotUnquoted(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_style_names_are_upper_cased() {
        assert_eq!(quote("sensor_readings").unwrap(), "\"SENSOR_READINGS\"");
        assert_eq!(quote("Orders_2024$x").unwrap(), "\"ORDERS_2024$X\"");
        assert_eq!(quote("_x").unwrap(), "\"_X\"");
        assert_eq!(normalize("raw").unwrap(), "RAW");
    }

    #[test]
    fn other_names_are_quoted_verbatim() {
        assert_eq!(quote("My Table").unwrap(), "\"My Table\"");
        assert_eq!(quote("1abc").unwrap(), "\"1abc\"");
        assert_eq!(quote("a-b.c").unwrap(), "\"a-b.c\"");
        assert_eq!(quote("température").unwrap(), "\"température\"");
        assert_eq!(
            quote("x'; DROP TABLE t; --").unwrap(),
            "\"x'; DROP TABLE t; --\""
        );
    }

    #[test]
    fn unsafe_names_are_rejected() {
        assert_eq!(quote(""), Err(IdentError::Empty));
        assert!(matches!(quote("a\"b"), Err(IdentError::DoubleQuote(_))));
        assert!(matches!(
            quote("x\"; DROP TABLE t; --"),
            Err(IdentError::DoubleQuote(_))
        ));
        assert!(matches!(
            quote("a\nb"),
            Err(IdentError::ControlCharacter(_))
        ));
        assert!(matches!(
            quote("a\0b"),
            Err(IdentError::ControlCharacter(_))
        ));
        assert!(matches!(
            quote("a\u{202E}b"),
            Err(IdentError::ControlCharacter(_))
        ));
        assert!(matches!(
            quote("a\u{200B}"),
            Err(IdentError::ControlCharacter(_))
        ));
        assert!(matches!(quote(" a"), Err(IdentError::Whitespace(_))));
        assert!(matches!(quote("a "), Err(IdentError::Whitespace(_))));
        assert!(quote(&"a".repeat(255)).is_ok());
        assert!(matches!(
            quote(&"a".repeat(256)),
            Err(IdentError::TooLong(_))
        ));
        // characters, not bytes
        assert!(quote(&"é".repeat(255)).is_ok());
    }

    #[test]
    fn double_quoted_names_are_kept_as_written() {
        assert_eq!(quote("\"ingest\"").unwrap(), "\"ingest\"");
        assert_eq!(quote("\"My Db\"").unwrap(), "\"My Db\"");
        assert_eq!(normalize("\"ingest\"").unwrap(), "ingest");
        assert_eq!(
            qualified(&["\"lower_db\"", "raw", "t"]).unwrap(),
            "\"lower_db\".\"RAW\".\"T\""
        );
        assert_eq!(quote("\"\""), Err(IdentError::Empty));
        assert!(matches!(quote("\""), Err(IdentError::DoubleQuote(_))));
        assert!(matches!(quote("\"a\"b\""), Err(IdentError::DoubleQuote(_))));
        assert!(matches!(
            quote("\"a\" OR \"b\""),
            Err(IdentError::DoubleQuote(_))
        ));
        assert!(matches!(quote("\" a\""), Err(IdentError::Whitespace(_))));
        assert!(matches!(
            quote("\"a\nb\""),
            Err(IdentError::ControlCharacter(_))
        ));
    }

    #[test]
    fn resolve_is_how_snowflake_resolves_a_configured_name() {
        assert_eq!(resolve("ingest").unwrap(), "INGEST");
        assert_eq!(resolve("Compute_WH$1").unwrap(), "COMPUTE_WH$1");
        assert_eq!(resolve("\"ingest\"").unwrap(), "ingest");
        assert_eq!(resolve("\"My Db\"").unwrap(), "My Db");
        assert_eq!(resolve("\"INGEST\"").unwrap(), "INGEST");
        for bad in ["my-db", "1abc", "a b", "a.b", "température"] {
            assert_eq!(
                resolve(bad),
                Err(IdentError::NotUnquoted(bad.into())),
                "{bad}"
            );
        }
        assert_eq!(resolve(""), Err(IdentError::Empty));
        assert!(matches!(
            resolve("\"a\"b\""),
            Err(IdentError::DoubleQuote(_))
        ));
        assert!(matches!(resolve("\"x"), Err(IdentError::DoubleQuote(_))));
    }

    #[test]
    fn qualified_names() {
        assert_eq!(
            qualified(&["db", "raw", "events"]).unwrap(),
            "\"DB\".\"RAW\".\"EVENTS\""
        );
        assert_eq!(
            qualified(&["raw", "My Events"]).unwrap(),
            "\"RAW\".\"My Events\""
        );
        assert_eq!(qualified(&[]), Err(IdentError::Parts(0)));
        assert_eq!(qualified(&["a", "b", "c", "d"]), Err(IdentError::Parts(4)));
        assert!(matches!(
            qualified(&["db", "a\"b"]),
            Err(IdentError::DoubleQuote(_))
        ));
    }
}
