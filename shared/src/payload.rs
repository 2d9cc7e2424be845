//! A record's JSON payload, validated and read in one pass.
//!
//! The fields a configuration needs (routing, partitioning, CSV or table columns) are compiled
//! into an [`Extractor`]: a tree of JSON-pointer tokens walked while the payload is parsed, so
//! every wanted value is found in that single pass and everything else is only validated and
//! skipped. NDJSON files get the payload text as it arrived, never a re-serialisation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
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

/// An RFC 6901 JSON pointer, parsed once at configuration time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<String>,
}

impl JsonPointer {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for JsonPointer {
    type Err = String;

    /// Accepts `/a/b` and, for convenience in configuration, a bare top-level name `a`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = if s.starts_with('/') {
            s.to_string()
        } else {
            format!("/{s}")
        };
        if text == "/" {
            return Err("a JSON pointer needs at least one field name".into());
        }
        let tokens = text[1..]
            .split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        Ok(Self { text, tokens })
    }
}

impl<'de> serde::Deserialize<'de> for JsonPointer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

/// A set of JSON pointers, each given a slot, resolved in one pass over a payload.
#[derive(Debug, Clone, Default)]
pub struct Extractor {
    root: Node,
    pointers: Vec<JsonPointer>,
}

#[derive(Debug, Clone, Default)]
struct Node {
    children: Vec<(String, Node)>,
    slot: Option<usize>,
}

impl Extractor {
    pub fn new() -> Self {
        Self::default()
    }

    /// The slot of `pointer`, adding it when new.
    pub fn slot(&mut self, pointer: &JsonPointer) -> usize {
        if let Some(i) = self.pointers.iter().position(|p| p == pointer) {
            return i;
        }
        let slot = self.pointers.len();
        self.pointers.push(pointer.clone());
        let mut node = &mut self.root;
        for token in pointer.tokens() {
            let i = match node.children.iter().position(|(t, _)| t == token) {
                Some(i) => i,
                None => {
                    node.children.push((token.clone(), Node::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i].1;
        }
        node.slot = Some(slot);
        slot
    }

    pub fn len(&self) -> usize {
        self.pointers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty()
    }

    /// Validates `bytes` as a UTF-8 JSON object and resolves every slot.
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<Payload<'a>, PayloadError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
        let mut values = vec![None; self.pointers.len()];
        if !text.trim_start().starts_with('{') {
            // Tell "valid JSON but not an object" apart from garbage, for the quarantine reason.
            return match serde_json::from_str::<IgnoredAny>(text) {
                Ok(_) => Err(PayloadError::NotAnObject),
                Err(e) => Err(PayloadError::NotJson(e.to_string())),
            };
        }
        let mut de = serde_json::Deserializer::from_str(text);
        Walk {
            node: &self.root,
            values: &mut values,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end())
        .map_err(|e| PayloadError::NotJson(e.to_string()))?;
        Ok(Payload { text, values })
    }
}

/// A validated JSON object payload and the values its extractor asked for.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    text: &'a str,
    values: Vec<Option<&'a RawValue>>,
}

impl<'a> Payload<'a> {
    /// The payload as it arrived.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The value in `slot`; `None` when absent.
    pub fn value(&self, slot: usize) -> Option<&'a RawValue> {
        self.values.get(slot).copied().flatten()
    }

    /// The value in `slot` as text (see [`value_text`]); `None` when absent or null.
    pub fn text_of(&self, slot: usize) -> Option<Cow<'a, str>> {
        self.value(slot).and_then(value_text)
    }

    /// The payload on one line: valid JSON can hold a raw line break only as whitespace between
    /// tokens, so dropping CR and LF keeps it valid and makes it fit one NDJSON line.
    pub fn one_line(&self) -> Cow<'a, str> {
        if self.text.contains(['\n', '\r']) {
            Cow::Owned(
                self.text
                    .chars()
                    .filter(|c| *c != '\n' && *c != '\r')
                    .collect(),
            )
        } else {
            Cow::Borrowed(self.text.trim())
        }
    }
}

/// A scalar rendered as text: strings unescaped, numbers and booleans as written, `None` for
/// null; objects and arrays as their JSON text.
pub fn value_text(value: &RawValue) -> Option<Cow<'_, str>> {
    let text = value.get();
    match text.as_bytes().first() {
        // Most strings hold no escapes: borrow their inside instead of running a parser.
        Some(b'"') if !text.contains('\\') => Some(Cow::Borrowed(&text[1..text.len() - 1])),
        Some(b'"') => serde_json::from_str::<Cow<'_, str>>(text).ok(),
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(text)),
    }
}

/// Deserialises one value at `node`: captures it when the node has a slot, descends into it
/// when the node has children, and otherwise only validates it.
struct Walk<'n, 'v, 'a> {
    node: &'n Node,
    values: &'v mut Vec<Option<&'a RawValue>>,
}

impl<'de: 'a, 'a> DeserializeSeed<'de> for Walk<'_, '_, 'a> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        match (self.node.slot, self.node.children.is_empty()) {
            (None, true) => {
                IgnoredAny::deserialize(d)?;
                Ok(())
            }
            (Some(slot), true) => {
                self.values[slot] = Some(<&RawValue>::deserialize(d)?);
                Ok(())
            }
            (Some(slot), false) => {
                // Both captured and descended into (pointers `/a` and `/a/b`): parse it again.
                let raw = <&'de RawValue>::deserialize(d)?;
                self.values[slot] = Some(raw);
                let mut inner = serde_json::Deserializer::from_str(raw.get());
                Walk {
                    node: self.node,
                    values: self.values,
                }
                .descend(&mut inner)
                .map_err(de::Error::custom)
            }
            (None, false) => self.descend(d),
        }
    }
}

impl<'de: 'a, 'a> Walk<'_, '_, 'a> {
    fn descend<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for Walk<'_, '_, 'a> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<(), M::Error> {
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            match self.node.children.iter().find(|(t, _)| *t == key) {
                Some((_, child)) => map.next_value_seed(Walk {
                    node: child,
                    values: &mut *self.values,
                })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<(), S::Error> {
        let mut index = 0usize;
        loop {
            let token = index.to_string();
            let done = match self.node.children.iter().find(|(t, _)| *t == token) {
                Some((_, child)) => seq
                    .next_element_seed(Walk {
                        node: child,
                        values: &mut *self.values,
                    })?
                    .is_none(),
                None => seq.next_element::<IgnoredAny>()?.is_none(),
            };
            if done {
                return Ok(());
            }
            index += 1;
        }
    }

    // Scalars where an object was expected: the pointers below them are simply absent.
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ptr(s: &str) -> JsonPointer {
        s.parse().unwrap()
    }

    #[test]
    fn resolves_nested_fields_and_array_items_in_one_pass() {
        let mut x = Extractor::new();
        let a = x.slot(&ptr("/a"));
        let id = x.slot(&ptr("/customer/id"));
        let tag = x.slot(&ptr("/customer/tags/1"));
        let s = x.slot(&ptr("s"));
        let missing = x.slot(&ptr("/customer/missing"));
        let below_scalar = x.slot(&ptr("/a/b"));
        assert_eq!(x.slot(&ptr("/a")), a, "a pointer keeps its slot");
        let p = x
            .parse(br#"{"a":1,"customer":{"id":"c-1","tags":["x","y"]},"s":"q\"uote"}"#)
            .unwrap();
        assert_eq!(p.value(a).unwrap().get(), "1");
        assert_eq!(p.text_of(id).unwrap(), "c-1");
        assert_eq!(p.text_of(tag).unwrap(), "y");
        assert_eq!(p.text_of(s).unwrap(), "q\"uote");
        assert!(p.value(missing).is_none());
        assert!(p.value(below_scalar).is_none());
    }

    #[test]
    fn a_value_and_a_field_inside_it() {
        let mut x = Extractor::new();
        let order = x.slot(&ptr("/order"));
        let total = x.slot(&ptr("/order/total"));
        let p = x.parse(br#"{"order":{"total":12.5,"items":[1]}}"#).unwrap();
        assert_eq!(
            p.value(order).unwrap().get(),
            r#"{"total":12.5,"items":[1]}"#
        );
        assert_eq!(p.text_of(total).unwrap(), "12.5");
    }

    #[test]
    fn escaped_pointer_tokens_and_duplicate_keys() {
        let mut x = Extractor::new();
        let slot = x.slot(&ptr("/a~1b/c~0d"));
        let dup = x.slot(&ptr("/k"));
        let p = x.parse(br#"{"a/b":{"c~d":true},"k":1,"k":2}"#).unwrap();
        assert_eq!(p.value(slot).unwrap().get(), "true");
        assert_eq!(p.value(dup).unwrap().get(), "2", "the last duplicate wins");
    }

    #[test]
    fn rejects_what_is_not_an_object() {
        let x = Extractor::new();
        assert_eq!(x.parse(b"[1]").unwrap_err(), PayloadError::NotAnObject);
        assert_eq!(x.parse(b"42").unwrap_err(), PayloadError::NotAnObject);
        assert!(matches!(
            x.parse(b"{\"a\":").unwrap_err(),
            PayloadError::NotJson(_)
        ));
        assert!(matches!(
            x.parse(b"{\"a\":1} x").unwrap_err(),
            PayloadError::NotJson(_)
        ));
        assert!(
            matches!(
                x.parse(b"{\"a\":[1,}").unwrap_err(),
                PayloadError::NotJson(_)
            ),
            "skipped values are validated too"
        );
        assert_eq!(x.parse(&[0xff, 0xfe]).unwrap_err(), PayloadError::NotUtf8);
    }

    #[test]
    fn null_is_none_and_one_line_drops_line_breaks() {
        let mut x = Extractor::new();
        let a = x.slot(&ptr("a"));
        let p = x
            .parse(b"{\n  \"a\": null,\r\n  \"b\": \"x\\ny\"\n}")
            .unwrap();
        assert_eq!(p.text_of(a), None);
        assert!(p.value(a).is_some());
        assert_eq!(p.one_line(), "{  \"a\": null,  \"b\": \"x\\ny\"}");
        assert!(serde_json::from_str::<serde_json::Value>(&p.one_line()).is_ok());
    }
}
