//! A record's JSON payload, validated and read in one pass.
//!
//! The fields a configuration needs (routing, partitioning, CSV or table columns) are compiled
//! into an [`Extractor`]: a tree of JSON-pointer tokens walked while the payload is parsed, so
//! every wanted value is found in that single pass and everything else is only validated and
//! skipped. NDJSON files get the payload text as it arrived, never a re-serialisation.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer};

use crate::kinesis::json::{self, JsonError, JsonStr, Reader};

/// Why a payload cannot be used as a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// The bytes are not UTF-8, which JSON text must be (RFC 8259).
    #[error("payload is not UTF-8")]
    NotUtf8,
    /// The text is not one JSON value (or is larger than 4 GiB); carries the parser's reason.
    #[error("payload is not valid JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but an array, string, number, boolean or null: a record must be an object.
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
    /// The pointer in RFC 6901 syntax (`/a/b`); a bare name `a` reads `/a`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The reference tokens, `~1` and `~0` already unescaped to `/` and `~`.
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
    /// An extractor with no pointer: it only validates payloads.
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

    /// How many slots there are: every pointer added, each once.
    pub fn len(&self) -> usize {
        self.pointers.len()
    }

    /// True when no pointer was added.
    pub fn is_empty(&self) -> bool {
        self.pointers.is_empty()
    }

    /// Validates `bytes` as a UTF-8 JSON object and resolves every slot.
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<Payload<'a>, PayloadError> {
        self.parse_learning(payload_text(bytes)?, &mut NoLearning)
    }

    /// A parser for the payloads of one batch, which reads a payload shaped like one before it
    /// through a [`PayloadTemplate`].
    pub fn parser<'a>(&self) -> PayloadParser<'_, 'a> {
        PayloadParser {
            extractor: self,
            templates: Vec::new(),
            steps: Vec::new(),
            misses: 0,
            template_reads: 0,
            templates_learned: 0,
        }
    }

    fn parse_learning<'a>(
        &self,
        text: &'a str,
        learn: &mut impl Learn,
    ) -> Result<Payload<'a>, PayloadError> {
        let not_json = |e: JsonError| PayloadError::NotJson(e.to_string());
        let mut reader = Reader::new(text);
        if reader.peek() != Some(b'{') {
            // Tell "valid JSON but not an object" apart from garbage, for the quarantine reason.
            return Err(json::validate(text).map_or_else(not_json, |()| PayloadError::NotAnObject));
        }
        let mut spans = Spans::new(self.pointers.len());
        walk(&mut reader, &self.root, spans.as_mut_slice(), learn)
            .and_then(|()| reader.end())
            .map_err(not_json)?;
        Ok(Payload { text, spans })
    }
}

/// The payload as text: UTF-8, and short enough for the `u32` spans of its values.
fn payload_text(bytes: &[u8]) -> Result<&str, PayloadError> {
    if u32::try_from(bytes.len()).is_err() {
        return Err(PayloadError::NotJson("payload larger than 4 GiB".into()));
    }
    crate::kinesis::scan::utf8(bytes).map_err(|_| PayloadError::NotUtf8)
}

/// A node with nothing below it, for values the extractor does not ask for.
static NOTHING: Node = Node {
    children: Vec::new(),
    slot: None,
};

/// Reads one value at `node`: records where it is when the node has a slot, descends into it
/// when the node has children, and otherwise only validates it.
fn walk<L: Learn>(
    r: &mut Reader<'_>,
    node: &Node,
    spans: &mut [Span],
    learn: &mut L,
) -> Result<(), JsonError> {
    let start = r.value_start();
    // Objects are also entered when learning a template, even without pointers below them: their
    // keys then become text to compare, not text to scan.
    let descend = match r.peek() {
        Some(b'{') => !node.children.is_empty() || L::LEARNING,
        Some(b'[') => !node.children.is_empty(),
        _ => false,
    };
    if !descend {
        // A value read whole; when it is a scalar where an object was expected, the pointers
        // below it are simply absent.
        r.skip()?;
        learn.step(Step {
            at: start,
            end: r.position(),
            action: Action::Value {
                slot: node.slot,
                scalar_only: !node.children.is_empty(),
            },
            depth: r.depth(),
        });
    } else {
        if let Some(slot) = node.slot {
            learn.step(Step::mark(start, Action::Start(slot)));
        }
        if r.peek() == Some(b'{') {
            r.object(|r, key| walk(r, node.field(key).unwrap_or(&NOTHING), spans, learn))?;
        } else {
            r.array(|r, i| walk(r, node.item(i).unwrap_or(&NOTHING), spans, learn))?;
        }
        if let Some(slot) = node.slot {
            learn.step(Step::mark(r.position(), Action::End(slot)));
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

/// What a full read reports of a payload's shape, to make a template of it.
trait Learn {
    const LEARNING: bool;
    fn step(&mut self, step: Step);
}

struct NoLearning;

impl Learn for NoLearning {
    const LEARNING: bool = false;
    #[inline(always)]
    fn step(&mut self, _: Step) {}
}

impl Learn for Vec<Step> {
    const LEARNING: bool = true;
    fn step(&mut self, step: Step) {
        self.push(step);
    }
}

/// A place in a payload where a template stops comparing text: a value the extractor reads
/// (or skips, when it may differ between records), or where a slot's object or array starts or
/// ends. `at..end` is the value's text in the payload the template was learned from.
#[derive(Debug, Clone, Copy)]
struct Step {
    at: usize,
    end: usize,
    action: Action,
    /// The nesting depth the value is read at, so the nesting limit counts the same.
    depth: usize,
}

impl Step {
    fn mark(at: usize, action: Action) -> Self {
        Step {
            at,
            end: at,
            action,
            depth: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    /// Any one value; `scalar_only` where the extractor would descend into an object or array.
    Value {
        slot: Option<usize>,
        scalar_only: bool,
    },
    /// A slot's object or array starts here.
    Start(usize),
    /// A slot's object or array ends here.
    End(usize),
}

/// A payload's text cut at its values: the text before each [`Step`], then the text after the
/// last.
///
/// Records of one stream are nearly always written by one producer, with the same keys in the
/// same order. A payload that is this text with other values at the steps has the same shape,
/// so comparing the text in between and reading only the values (each validated as a full read
/// would) finds the same slots and accepts and rejects the same payloads, without scanning and
/// matching every key. A payload of another shape is read in full and becomes the template.
#[derive(Debug)]
struct PayloadTemplate<'a> {
    steps: Vec<(&'a str, Step)>,
    tail: &'a str,
}

impl<'a> PayloadTemplate<'a> {
    fn new(text: &'a str, steps: &[Step]) -> Self {
        let mut at = 0;
        let steps = steps
            .iter()
            .map(|step| {
                let before = &text[at..step.at];
                at = step.end;
                (before, *step)
            })
            .collect();
        Self {
            steps,
            tail: &text[at..],
        }
    }

    /// The payload's slots if `text` has this shape.
    fn read<'t>(&self, text: &'t str, slots: usize) -> Option<Payload<'t>> {
        let mut r = Reader::new(text);
        let mut spans = Spans::new(slots);
        let found = spans.as_mut_slice();
        for (before, step) in &self.steps {
            if !r.eat_text(before) {
                return None;
            }
            match step.action {
                Action::Value { slot, scalar_only } => {
                    // Where a value starts is after any whitespace the text has there.
                    let at = r.value_start() as u32;
                    // Most values are strings and numbers: read inline, not through `skip`.
                    let read = match r.peek() {
                        Some(b'"') => r.str().map(drop),
                        Some(b'-' | b'0'..=b'9') => r.number().map(drop),
                        Some(b'{' | b'[') if scalar_only => return None,
                        _ => {
                            r.set_depth(step.depth);
                            r.skip()
                        }
                    };
                    read.ok()?;
                    if let Some(slot) = slot {
                        found[slot] = Span {
                            start: at,
                            end: r.position() as u32,
                        };
                    }
                }
                Action::Start(slot) => found[slot].start = r.value_start() as u32,
                Action::End(slot) => found[slot].end = r.position() as u32,
            }
        }
        (r.eat_text(self.tail) && r.end().is_ok()).then_some(Payload { text, spans })
    }
}

/// How many payload shapes a parser keeps templates of: streams that interleave a few shapes
/// (event types) find each one's template; with more, the least recently used is replaced.
const TEMPLATES: usize = 4;

/// Payloads in a row that no template read before a parser stops trying: a stream with more
/// shapes than templates kept pays for failed comparisons and new templates on every record
/// (about a quarter more than reading plainly). It then reads plainly, and tries templates again
/// every `RETRY`th payload in case the shapes settle; a payload a template reads resumes them.
const GIVE_UP: usize = 16;
const RETRY: usize = 64;

/// Parses the payloads of one batch with one extractor (see [`Extractor::parser`]).
pub struct PayloadParser<'x, 'a> {
    extractor: &'x Extractor,
    /// Most recently used first.
    templates: Vec<PayloadTemplate<'a>>,
    /// Reused while learning a template.
    steps: Vec<Step>,
    /// Payloads in a row that no template read (see [`GIVE_UP`]).
    misses: usize,
    template_reads: usize,
    templates_learned: usize,
}

impl<'a> PayloadParser<'_, 'a> {
    /// As [`Extractor::parse`].
    pub fn parse(&mut self, bytes: &'a [u8]) -> Result<Payload<'a>, PayloadError> {
        let text = payload_text(bytes)?;
        if self.misses >= GIVE_UP && !self.misses.is_multiple_of(RETRY) {
            self.misses += 1;
            return self.extractor.parse_learning(text, &mut NoLearning);
        }
        let slots = self.extractor.pointers.len();
        for i in 0..self.templates.len() {
            if let Some(payload) = self.templates[i].read(text, slots) {
                self.templates[..=i].rotate_right(1);
                self.misses = 0;
                self.template_reads += 1;
                return Ok(payload);
            }
        }
        self.misses += 1;
        self.steps.clear();
        let payload = self.extractor.parse_learning(text, &mut self.steps)?;
        self.templates.truncate(TEMPLATES - 1);
        self.templates
            .insert(0, PayloadTemplate::new(payload.text, &self.steps));
        self.templates_learned += 1;
        Ok(payload)
    }

    /// How many payloads a template read, for tests.
    #[cfg(test)]
    fn template_reads(&self) -> usize {
        self.template_reads
    }

    /// How many templates were made, for tests.
    #[cfg(test)]
    fn templates_learned(&self) -> usize {
        self.templates_learned
    }
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
        if crate::kinesis::scan::find_byte(bytes, 0, b"\n\r") < bytes.len() {
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

    /// Parses `payloads` in order through one parser and one by one; both must agree on every
    /// slot's value or on the error. Returns how many a template read.
    fn parse_both_ways(x: &Extractor, slots: usize, payloads: &[Vec<u8>]) -> usize {
        let mut parser = x.parser();
        for bytes in payloads {
            let view = |p: Result<Payload<'_>, PayloadError>| {
                p.map(|p| {
                    (0..slots)
                        .map(|s| p.value(s).map(str::to_string))
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(
                view(parser.parse(bytes)),
                view(x.parse(bytes)),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        parser.template_reads()
    }

    fn order_extractor() -> (Extractor, usize) {
        let mut x = Extractor::new();
        for p in [
            "/event_type",
            "/customer",
            "/customer/name",
            "/order/total",
            "/order/items",
            "/order/items/0/sku",
            "/order/items/1/qty",
            "/nope/deeper",
        ] {
            x.slot(&ptr(p));
        }
        let slots = x.len();
        (x, slots)
    }

    #[test]
    fn templates_find_what_a_full_read_does() {
        let (x, slots) = order_extractor();
        let mut rng = crate::sample::Rng::new(5);
        let mut payloads: Vec<Vec<u8>> = (0..20)
            .map(|n| crate::sample::order_event(&mut rng, n).into_bytes())
            .collect();
        let order = String::from_utf8(payloads[0].clone()).unwrap();
        for variant in [
            order.replace(r#""total":"#, r#""total": "#),
            order.replace(r#""customer":{"id""#, r#""customer":"c","x":{"id""#),
            order.replace(r#""items":[{"#, r#""items":[{"a":[[[]]]},{"#),
            order.replace(r#""event_type":"#, r#""event_type":{"x":1},"e":"#),
            order
                .replace(r#""nope""#, r#""x""#)
                .replace(r#""session":"#, r#""nope":{"deeper":[1,2]},"session":"#),
            order.replace(r#""sku":"#, r#""s\u006bu":"#),
            order.replace(r#""city":"#, r#""city":"x","city":"#),
            format!("  {order}\n"),
        ] {
            // Each variant twice: once read in full, then through its own template.
            payloads.push(variant.clone().into_bytes());
            payloads.push(variant.into_bytes());
        }
        let reads = parse_both_ways(&x, slots, &payloads);
        // The 19 orders after the first, the second of each of the 8 variants, and the first
        // variant's first: whitespace before a value is not part of the text compared.
        assert_eq!(reads, 19 + 8 + 1);
    }

    #[test]
    fn templates_reject_what_a_full_read_rejects() {
        // With pointers, and without (NDJSON of one table only validates).
        for (x, slots) in [order_extractor(), (Extractor::new(), 0)] {
            reject_like_a_full_read(&x, slots);
        }
    }

    fn reject_like_a_full_read(x: &Extractor, slots: usize) {
        let mut rng = crate::sample::Rng::new(6);
        let first = crate::sample::order_event(&mut rng, 1).into_bytes();
        let second = crate::sample::order_event(&mut rng, 2).into_bytes();
        let mut rejected = 0;
        for at in 0..second.len() {
            let mut variants: Vec<Vec<u8>> = b"\"\\ x1.e-}],:{[\x01"
                .iter()
                .map(|b| {
                    let mut v = second.clone();
                    v[at] = *b;
                    v
                })
                .collect();
            variants.push([&second[..at], &second[at + 1..]].concat());
            variants.push([&second[..at], b"0", &second[at..]].concat());
            for variant in variants {
                rejected += usize::from(x.parse(&variant).is_err());
                parse_both_ways(x, slots, &[first.clone(), variant]);
            }
        }
        assert!(rejected > 1000, "{rejected}");
    }

    #[test]
    fn templates_count_nesting_as_a_full_read_does() {
        let mut x = Extractor::new();
        let slot = x.slot(&ptr("/a/b"));
        let nested = |depth: usize| {
            format!(
                r#"{{"a":{{"b":1,"c":{}{}}}}}"#,
                "[".repeat(depth),
                "]".repeat(depth)
            )
            .into_bytes()
        };
        // The root object and "a" make two levels, so 126 more are allowed and 127 are not.
        assert!(x.parse(&nested(126)).is_ok());
        assert!(x.parse(&nested(127)).is_err());
        parse_both_ways(
            &x,
            slot + 1,
            &[nested(1), nested(126), nested(127), nested(126)],
        );
    }

    #[test]
    fn payloads_are_read_through_templates_without_pointers_too() {
        let mut rng = crate::sample::Rng::new(8);
        let payloads: Vec<Vec<u8>> = (0..3)
            .map(|_| crate::sample::sensor_reading(&mut rng, 50).into_bytes())
            .collect();
        assert_eq!(parse_both_ways(&Extractor::new(), 0, &payloads), 2);
    }

    #[test]
    fn interleaved_shapes_each_keep_a_template() {
        let (x, slots) = order_extractor();
        let shape =
            |k: usize, n: usize| format!(r#"{{"event_type":"t{k}","f{k}":{n}}}"#).into_bytes();
        // Three shapes in turn: each is read in full once, then through its template.
        let three: Vec<Vec<u8>> = (0..12).map(|n| shape(n % 3, n)).collect();
        assert_eq!(parse_both_ways(&x, slots, &three), 9);
        // More shapes in turn than templates kept: every one is read in full.
        let five: Vec<Vec<u8>> = (0..15).map(|n| shape(n % 5, n)).collect();
        assert_eq!(parse_both_ways(&x, slots, &five), 0);
    }

    #[test]
    fn too_many_shapes_stop_the_templates_until_they_settle() {
        let (x, slots) = order_extractor();
        let shape =
            |k: usize, n: usize| format!(r#"{{"event_type":"t{k}","f{k}":{n}}}"#).into_bytes();
        let mut parser = x.parser();
        let view = |p: Payload<'_>| {
            (0..slots)
                .map(|s| p.value(s).map(str::to_string))
                .collect::<Vec<_>>()
        };
        let rotating: Vec<Vec<u8>> = (0..640).map(|n| shape(n % 5, n)).collect();
        for bytes in &rotating {
            assert_eq!(
                view(parser.parse(bytes).unwrap()),
                view(x.parse(bytes).unwrap())
            );
        }
        // Without the pause every one of the 640 makes a template; with it, runs of 16 tries
        // follow a retry that a stale template happens to read, a quarter of the payloads.
        assert_eq!(parser.templates_learned(), 160);
        // Once one shape settles, the next retry learns it and the rest go through it.
        let settled: Vec<Vec<u8>> = (0..128).map(|n| shape(0, n)).collect();
        for bytes in &settled {
            assert_eq!(
                view(parser.parse(bytes).unwrap()),
                view(x.parse(bytes).unwrap())
            );
        }
        assert!(parser.template_reads() >= 64, "{}", parser.template_reads());
    }

    #[test]
    fn an_object_where_the_template_had_a_scalar_is_read_in_full() {
        let (x, slots) = order_extractor();
        let payloads = [
            br#"{"customer":"c-1","order":7}"#.to_vec(),
            br#"{"customer":{"name":"Ada"},"order":{"total":2}}"#.to_vec(),
            br#"{"customer":"c-2","order":[]}"#.to_vec(),
        ];
        assert_eq!(parse_both_ways(&x, slots, &payloads), 0);
    }

    #[test]
    fn a_slot_holding_an_object_is_found_through_a_template() {
        let mut x = Extractor::new();
        let order = x.slot(&ptr("/order"));
        let total = x.slot(&ptr("/order/total"));
        let mut parser = x.parser();
        parser
            .parse(br#"{"order":{"total":1,"items":[1]}}"#)
            .unwrap();
        let p = parser
            .parse(br#"{"order":{"total":22.5,"items":[[3]]}}"#)
            .unwrap();
        assert_eq!(parser.template_reads(), 1);
        assert_eq!(p.value(order).unwrap(), r#"{"total":22.5,"items":[[3]]}"#);
        assert_eq!(p.text_of(total).unwrap(), "22.5");
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
