//! A record's JSON payload, validated and read in one pass.
//!
//! The fields a configuration needs (routing, partitioning, CSV or table columns) are compiled
//! into an [`Extractor`]: a tree of JSON-pointer tokens walked while the payload is parsed, so
//! every wanted value is found in that single pass and everything else is only validated and
//! skipped. NDJSON files get the payload text as it arrived, never a re-serialisation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};

use crate::json::{self, JsonError, JsonStr, Reader};

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
    children: Vec<Child>,
    slot: Option<usize>,
}

#[derive(Debug, Clone)]
struct Child {
    token: String,
    /// The token as an array index, when it is one (`0`, `12`; not `01`).
    index: Option<usize>,
    node: Node,
}

impl Node {
    fn field(&self, key: JsonStr<'_>) -> Option<&Node> {
        self.children
            .iter()
            .find(|c| key.eq_str(&c.token))
            .map(|c| &c.node)
    }

    fn item(&self, index: usize) -> Option<&Node> {
        self.children
            .iter()
            .find(|c| c.index == Some(index))
            .map(|c| &c.node)
    }
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
            let i = match node.children.iter().position(|c| c.token == *token) {
                Some(i) => i,
                None => {
                    let is_index = token == "0"
                        || (!token.starts_with('0') && token.bytes().all(|b| b.is_ascii_digit()));
                    node.children.push(Child {
                        token: token.clone(),
                        index: is_index.then(|| token.parse().ok()).flatten(),
                        node: Node::default(),
                    });
                    node.children.len() - 1
                }
            };
            node = &mut node.children[i].node;
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
        let not_json = |e: JsonError| PayloadError::NotJson(e.to_string());
        let mut reader = Reader::new(text);
        if reader.peek() != Some(b'{') {
            // Tell "valid JSON but not an object" apart from garbage, for the quarantine reason.
            return Err(json::validate(text).map_or_else(not_json, |()| PayloadError::NotAnObject));
        }
        if u32::try_from(text.len()).is_err() {
            return Err(PayloadError::NotJson("payload larger than 4 GiB".into()));
        }
        let mut spans = Spans::new(self.pointers.len());
        walk(&mut reader, &self.root, spans.as_mut_slice())
            .and_then(|()| reader.end())
            .map_err(not_json)?;
        Ok(Payload { text, spans })
    }
}

/// Reads one value at `node`: records where it is when the node has a slot, descends into it
/// when the node has children, and otherwise only validates it.
fn walk(r: &mut Reader<'_>, node: &Node, spans: &mut [Span]) -> Result<(), JsonError> {
    let start = r.value_start();
    if node.children.is_empty() {
        r.skip()?;
    } else {
        match r.peek() {
            Some(b'{') => r.object(|r, key| match node.field(key) {
                Some(child) => walk(r, child, spans),
                None => r.skip(),
            })?,
            Some(b'[') => r.array(|r, i| match node.item(i) {
                Some(child) => walk(r, child, spans),
                None => r.skip(),
            })?,
            // A scalar where an object was expected: the pointers below it are simply absent.
            _ => r.skip()?,
        }
    }
    if let Some(slot) = node.slot {
        // Payloads are checked to be under 4 GiB before the walk.
        spans[slot] = Span {
            start: start as u32,
            end: r.position() as u32,
        };
    }
    Ok(())
}

/// Where an extracted value is in the payload text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    const ABSENT: Span = Span {
        start: u32::MAX,
        end: 0,
    };
}

/// The spans of a payload's slots. As many as a configuration usually asks for (routing,
/// partition and a table's columns) are held inline, so parsing a record allocates nothing.
#[derive(Debug, Clone)]
enum Spans {
    Inline([Span; Spans::INLINE]),
    Heap(Vec<Span>),
}

impl Spans {
    const INLINE: usize = 12;

    fn new(slots: usize) -> Self {
        if slots <= Self::INLINE {
            Spans::Inline([Span::ABSENT; Self::INLINE])
        } else {
            Spans::Heap(vec![Span::ABSENT; slots])
        }
    }

    fn as_mut_slice(&mut self) -> &mut [Span] {
        match self {
            Spans::Inline(spans) => spans,
            Spans::Heap(spans) => spans,
        }
    }

    fn get(&self, slot: usize) -> Option<Span> {
        match self {
            Spans::Inline(spans) => spans.get(slot),
            Spans::Heap(spans) => spans.get(slot),
        }
        .copied()
        .filter(|s| *s != Span::ABSENT)
    }
}

/// A validated JSON object payload and the values its extractor asked for.
#[derive(Debug, Clone)]
pub struct Payload<'a> {
    text: &'a str,
    spans: Spans,
}

impl<'a> Payload<'a> {
    /// The payload as it arrived.
    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The JSON text of the value in `slot`; `None` when absent.
    pub fn value(&self, slot: usize) -> Option<&'a str> {
        let span = self.spans.get(slot)?;
        self.text.get(span.start as usize..span.end as usize)
    }

    /// The value in `slot` as text (see [`value_text`]); `None` when absent or null.
    pub fn text_of(&self, slot: usize) -> Option<Cow<'a, str>> {
        self.value(slot).and_then(value_text)
    }

    /// The payload on one line: valid JSON can hold a raw line break only as whitespace between
    /// tokens, so dropping CR and LF keeps it valid and makes it fit one NDJSON line.
    pub fn one_line(&self) -> Cow<'a, str> {
        let bytes = self.text.as_bytes();
        if crate::scan::find_byte(bytes, 0, b"\n\r") < bytes.len() {
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

/// A value's JSON text rendered as text: strings unescaped, numbers and booleans as written,
/// `None` for null; objects and arrays as their JSON text.
pub fn value_text(json: &str) -> Option<Cow<'_, str>> {
    match json.as_bytes().first() {
        Some(b'"') => Some(
            Reader::new(json)
                .str()
                .map_or(Cow::Borrowed(""), |s| s.value()),
        ),
        Some(b'n') => None,
        _ => Some(Cow::Borrowed(json)),
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
        assert_eq!(p.value(a).unwrap(), "1");
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
        assert_eq!(p.value(order).unwrap(), r#"{"total":12.5,"items":[1]}"#);
        assert_eq!(p.text_of(total).unwrap(), "12.5");
    }

    #[test]
    fn escaped_pointer_tokens_and_duplicate_keys() {
        let mut x = Extractor::new();
        let slot = x.slot(&ptr("/a~1b/c~0d"));
        let dup = x.slot(&ptr("/k"));
        let p = x.parse(br#"{"a/b":{"c~d":true},"k":1,"k":2}"#).unwrap();
        assert_eq!(p.value(slot).unwrap(), "true");
        assert_eq!(p.value(dup).unwrap(), "2", "the last duplicate wins");
    }

    #[test]
    fn agrees_with_serde_json_pointers() {
        let mut rng = crate::sample::Rng::new(3);
        let pointers = [
            "/event_id",
            "/customer",
            "/customer/name",
            "/customer/city",
            "/order/total",
            "/order/items",
            "/order/items/0/sku",
            "/order/items/00",
            "/order/items/1",
            "/session/device",
            "/nope/deeper",
        ]
        .map(ptr);
        let mut x = Extractor::new();
        let slots: Vec<usize> = pointers.iter().map(|p| x.slot(p)).collect();
        for n in 0..50 {
            let text = crate::sample::order_event(&mut rng, n);
            let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
            let p = x.parse(text.as_bytes()).unwrap();
            for (pointer, slot) in pointers.iter().zip(&slots) {
                let expected = doc.pointer(pointer.as_str());
                let ours = p
                    .value(*slot)
                    .map(|v| serde_json::from_str::<serde_json::Value>(v).unwrap());
                assert_eq!(ours.as_ref(), expected, "{pointer} in {text}");
            }
        }
    }

    #[test]
    fn more_slots_than_fit_inline() {
        let mut x = Extractor::new();
        let slots: Vec<usize> = (0..20).map(|k| x.slot(&ptr(&format!("/k{k}")))).collect();
        let text = format!(
            "{{{}}}",
            (0..20)
                .filter(|k| k % 3 != 0)
                .map(|k| format!("\"k{k}\":{k}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let p = x.parse(text.as_bytes()).unwrap();
        for (k, slot) in slots.into_iter().enumerate() {
            let expected = (k % 3 != 0).then(|| k.to_string());
            assert_eq!(p.value(slot).map(str::to_string), expected, "k{k}");
        }
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
