//! A record's JSON payload, read lazily.
//!
//! Only the top level is split into fields; a JSON pointer into a nested object parses just the
//! values on its path. Encoding a record to NDJSON never re-serialises it, and a CSV column or a
//! routing field costs a look-up, not a tree of allocations.

use std::borrow::Cow;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Why a payload cannot be used as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not UTF-8")]
    NotUtf8,
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("payload is JSON but not an object")]
    NotAnObject,
}

/// A JSON object payload: its text and its top-level fields.
#[derive(Debug)]
pub struct Payload<'a> {
    text: &'a str,
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Payload<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, PayloadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
        let trimmed = text.trim_start();
        if !trimmed.starts_with('{') {
            // Tell "valid JSON but not an object" apart from garbage, for the quarantine reason.
            return match serde_json::from_str::<&RawValue>(text) {
                Ok(_) => Err(PayloadError::NotAnObject),
                Err(e) => Err(PayloadError::NotJson(e.to_string())),
            };
        }
        let Fields(fields) =
            serde_json::from_str(text).map_err(|e| PayloadError::NotJson(e.to_string()))?;
        Ok(Self { text, fields })
    }

    /// The payload as it arrived.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The payload on one line: valid JSON can hold a raw line break only as whitespace between
    /// tokens, so dropping CR and LF keeps it valid and makes it fit one NDJSON line.
    pub fn one_line(&self) -> Cow<'a, str> {
        if self.text.contains(['\n', '\r']) {
            Cow::Owned(self.text.chars().filter(|c| *c != '\n' && *c != '\r').collect())
        } else {
            Cow::Borrowed(self.text.trim())
        }
    }

    pub fn field(&self, name: &str) -> Option<&'a RawValue> {
        // Later duplicates win, as in serde_json's own maps.
        self.fields.iter().rev().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    /// Looks up an RFC 6901 JSON pointer (`/customer/id`, `/items/0/sku`); `None` when absent.
    pub fn pointer(&self, pointer: &JsonPointer) -> Option<&'a RawValue> {
        let mut tokens = pointer.tokens.iter();
        let first = tokens.next()?;
        let mut current = self.field(first)?;
        for token in tokens {
            current = child(current, token)?;
        }
        Some(current)
    }
}

fn child<'a>(value: &'a RawValue, token: &str) -> Option<&'a RawValue> {
    let text = value.get().trim_start();
    if text.starts_with('{') {
        let Fields(fields) = serde_json::from_str(value.get()).ok()?;
        fields.into_iter().rev().find(|(k, _)| k == token).map(|(_, v)| v)
    } else if text.starts_with('[') {
        let index: usize = token.parse().ok()?;
        let items: Vec<&RawValue> = serde_json::from_str(value.get()).ok()?;
        items.get(index).copied()
    } else {
        None
    }
}

/// An RFC 6901 JSON pointer, parsed once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

impl JsonPointer {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for JsonPointer {
    type Err = String;

    /// Accepts `/a/b` and, for convenience in configuration, a bare top-level name `a`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = if s.starts_with('/') { s.to_string() } else { format!("/{s}") };
        if text == "/" {
            return Err("a JSON pointer needs at least one field name".into());
        }
        let tokens = text[1..].split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect();
        Ok(Self { text, tokens })
    }
}

impl<'de> serde::Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A scalar rendered as text: strings unescaped, numbers and booleans as written, `None` for
/// null; objects and arrays as their JSON text.
pub fn value_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Cow<'_, str>>(text).ok(),
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(text)),
    }
}

/// Top-level fields of an object, borrowed.
struct Fields<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Fields<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    fields.push((key, value));
                }
                Ok(Fields(fields))
            }
            fn visit_seq<S: SeqAccess<'de>>(self, _: S) -> Result<Self::Value, S::Error> {
                Err(de::Error::custom("expected an object, found an array"))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(s: &str) -> JsonPointer {
        s.parse().unwrap()
    }

    #[test]
    fn reads_nested_fields_and_array_items() {
        let p = Payload::parse(br#"{"a":1,"customer":{"id":"c-1","tags":["x","y"]},"s":"q\"uote"}"#).unwrap();
        assert_eq!(p.pointer(&ptr("/a")).unwrap().get(), "1");
        assert_eq!(value_text(p.pointer(&ptr("/customer/id")).unwrap()).unwrap(), "c-1");
        assert_eq!(value_text(p.pointer(&ptr("/customer/tags/1")).unwrap()).unwrap(), "y");
        assert_eq!(value_text(p.pointer(&ptr("s")).unwrap()).unwrap(), "q\"uote");
        assert!(p.pointer(&ptr("/customer/missing")).is_none());
        assert!(p.pointer(&ptr("/a/b")).is_none());
    }

    #[test]
    fn escaped_pointer_tokens() {
        let p = Payload::parse(br#"{"a/b":{"c~d":true}}"#).unwrap();
        assert_eq!(p.pointer(&ptr("/a~1b/c~0d")).unwrap().get(), "true");
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        assert_eq!(Payload::parse(b"[1]").unwrap_err(), PayloadError::NotAnObject);
        assert_eq!(Payload::parse(b"42").unwrap_err(), PayloadError::NotAnObject);
        assert!(matches!(Payload::parse(b"{\"a\":").unwrap_err(), PayloadError::NotJson(_)));
        assert!(matches!(Payload::parse(b"{\"a\":1} x").unwrap_err(), PayloadError::NotJson(_)));
        assert_eq!(Payload::parse(&[0xff, 0xfe]).unwrap_err(), PayloadError::NotUtf8);
    }

    #[test]
    fn null_is_none_and_one_line_drops_line_breaks() {
        let p = Payload::parse(b"{\n  \"a\": null,\r\n  \"b\": \"x\\ny\"\n}").unwrap();
        assert_eq!(value_text(p.field("a").unwrap()), None);
        assert_eq!(p.one_line(), "{  \"a\": null,  \"b\": \"x\\ny\"}");
        assert!(serde_json::from_str::<serde_json::Value>(&p.one_line()).is_ok());
    }
}
