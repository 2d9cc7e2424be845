//! A small validating JSON reader for the two documents on the hot path: the Kinesis event
//! envelope and each record's payload.
//!
//! Both only need a few fields located and everything else checked and skipped. Through serde
//! that cost about half of the orchestrator's time (visitor calls, keys compared through
//! `Cow`s, every skipped number parsed into a float); here strings are scanned 16 bytes at a
//! time (`crate::kinesis::scan`), skipped numbers are only checked against the grammar, and a value is
//! handed back as the slice of text it occupies.
//!
//! What counts as valid is RFC 8259, as serde_json reads it: no trailing commas, no comments,
//! no leading zeros, control characters escaped, nesting at most 128 deep. It is stricter in
//! one place: a `\u` escape that is half a surrogate pair is an error even in a skipped string,
//! because Snowflake would turn it into something else or reject the file it lands in.

use std::borrow::Cow;

use crate::kinesis::scan;

/// Nesting depth allowed, as serde_json's default recursion limit.
const MAX_DEPTH: usize = 128;

/// Why a text is not the JSON expected, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {offset}")]
pub struct JsonError {
    /// What the reader expected or found (`expected ',' or '}'`, `nested too deep`, ...).
    pub what: &'static str,
    /// The byte in the text where reading stopped.
    pub offset: usize,
}

/// A string as it appears between its quotes, with whether it holds escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct JsonStr<'a> {
    raw: &'a str,
    escaped: bool,
}

impl<'a> JsonStr<'a> {
    /// The string's value: borrowed unless it holds escapes.
    pub fn value(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(unescape(self.raw))
        } else {
            Cow::Borrowed(self.raw)
        }
    }

    /// Whether the value equals `s`, without unescaping when there is nothing to unescape.
    pub(crate) fn eq_str(&self, s: &str) -> bool {
        if self.escaped {
            unescape(self.raw) == s
        } else {
            self.raw == s
        }
    }
}

/// A cursor over one JSON text.
pub(crate) struct Reader<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    #[cold]
    fn error<T>(&self, what: &'static str) -> Result<T, JsonError> {
        Err(JsonError {
            what,
            offset: self.pos,
        })
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        // Machine-written JSON rarely has whitespace between tokens: one comparison decides.
        if self.bytes().get(self.pos).is_some_and(|b| *b > b' ') {
            return;
        }
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.bytes().get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace, not consumed.
    #[inline]
    pub fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.bytes().get(self.pos).copied()
    }

    /// Only whitespace is left.
    pub fn end(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => self.error("trailing characters"),
        }
    }

    #[inline]
    fn eat(&mut self, byte: u8, what: &'static str) -> Result<(), JsonError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            self.error(what)
        }
    }

    /// Reads an object, calling `field` with each key; `field` must read or skip the value.
    pub fn object<E: From<JsonError>>(
        &mut self,
        mut field: impl FnMut(&mut Self, JsonStr<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.eat(b'{', "expected an object")?;
        self.enter()?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            if self.peek() != Some(b'"') {
                return Ok(self.error("expected a key")?);
            }
            let key = self.string()?;
            self.eat(b':', "expected ':'")?;
            field(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Ok(self.error("expected ',' or '}'")?),
            }
        }
    }

    /// Reads an array, calling `item` with each index; `item` must read or skip the value.
    pub fn array<E: From<JsonError>>(
        &mut self,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        self.eat(b'[', "expected an array")?;
        self.enter()?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(());
        }
        let mut index = 0;
        loop {
            item(self, index)?;
            index += 1;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Ok(self.error("expected ',' or ']'")?),
            }
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.error("nested too deep");
        }
        Ok(())
    }

    /// Skips one value of any kind, validating it.
    #[inline]
    pub fn skip(&mut self) -> Result<(), JsonError> {
        // Strings are most of what is skipped and are read inline; the rest is a call.
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            _ => self.skip_other(),
        }
    }

    #[inline(never)]
    fn skip_other(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'{') => self.object(|r, _| r.skip()),
            Some(b'[') => self.array(|r, _| r.skip()),
            Some(b't') => self.literal("true"),
            Some(b'f') => self.literal("false"),
            Some(b'n') => self.literal("null"),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(_) => self.error("expected a value"),
            None => self.error("unexpected end"),
        }
    }

    /// Skips one value and returns its text, as written (without surrounding whitespace).
    #[cfg(test)]
    pub fn raw_value(&mut self) -> Result<&'a str, JsonError> {
        let start = self.value_start();
        self.skip()?;
        Ok(self.text_from(start))
    }

    /// Where the next value starts, to take its text with [`Reader::text_from`] once read.
    pub(crate) fn value_start(&mut self) -> usize {
        self.skip_whitespace();
        self.pos
    }

    /// How far the text has been read, in bytes.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Consumes `text` if the input continues with exactly it. The caller vouches that `text`
    /// is valid where it is read (it was read by this grammar before, in the same place).
    #[inline]
    pub(crate) fn eat_text(&mut self, text: &str) -> bool {
        let matches = scan::starts_with_at(self.bytes(), self.pos, text.as_bytes());
        if matches {
            self.pos += text.len();
        }
        matches
    }

    /// Goes back to `pos`, read before at the same nesting depth, to read that text again.
    pub(crate) fn rewind(&mut self, pos: usize) {
        self.pos = pos;
    }

    /// How deeply the position is nested in objects and arrays.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// Reads on as if nested `depth` deep: for reading a value whose enclosing text was matched
    /// rather than read, so the nesting limit counts the same.
    pub(crate) fn set_depth(&mut self, depth: usize) {
        self.depth = depth;
    }

    #[cfg(test)]
    /// The text from `start` to what has been read.
    pub fn text_from(&self, start: usize) -> &'a str {
        &self.text[start..self.pos]
    }

    /// A string value.
    #[inline(always)]
    pub fn str(&mut self) -> Result<JsonStr<'a>, JsonError> {
        if self.peek() != Some(b'"') {
            return self.error("expected a string");
        }
        self.string()
    }

    /// A number value's text, checked against the grammar.
    pub fn number(&mut self) -> Result<&'a str, JsonError> {
        self.skip_whitespace();
        let bytes = self.bytes();
        let start = self.pos;
        let digits_from = |i: usize| scan::skip_digits(bytes, i);
        let mut i = start + usize::from(bytes.get(start) == Some(&b'-'));
        i = match bytes.get(i) {
            Some(b'0') => i + 1,
            Some(b'1'..=b'9') => digits_from(i + 1),
            _ => return self.invalid_number(i),
        };
        if bytes.get(i) == Some(&b'.') {
            let end = digits_from(i + 1);
            if end == i + 1 {
                return self.invalid_number(end);
            }
            i = end;
        }
        if let Some(b'e' | b'E') = bytes.get(i) {
            i += 1 + usize::from(matches!(bytes.get(i + 1), Some(b'+' | b'-')));
            let end = digits_from(i);
            if end == i {
                return self.invalid_number(end);
            }
            i = end;
        }
        self.pos = i;
        // Only ASCII was read since `start`, which is on a character boundary.
        Ok(self.text.get(start..i).unwrap_or_default())
    }

    #[cold]
    fn invalid_number<T>(&mut self, at: usize) -> Result<T, JsonError> {
        self.pos = at;
        self.error("invalid number")
    }

    fn literal(&mut self, word: &'static str) -> Result<(), JsonError> {
        if self.bytes()[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(())
        } else {
            self.error("invalid literal")
        }
    }

    /// The string starting at the current `"`. Inlined into every caller: most strings hold no
    /// escapes and end within a few 16-byte steps, and a call costs as much as the scan.
    #[inline(always)]
    fn string(&mut self) -> Result<JsonStr<'a>, JsonError> {
        let bytes = self.bytes();
        let start = self.pos + 1;
        let end = find_special(bytes, start);
        if bytes.get(end) == Some(&b'"') {
            self.pos = end + 1;
            return Ok(JsonStr {
                raw: &self.text[start..end],
                escaped: false,
            });
        }
        self.string_with_escapes(start, end)
    }

    /// The rest of a string from `i`, where the plain scan stopped at something other than `"`.
    #[cold]
    #[inline(never)]
    fn string_with_escapes(
        &mut self,
        start: usize,
        mut i: usize,
    ) -> Result<JsonStr<'a>, JsonError> {
        let bytes = self.bytes();
        let mut escaped = false;
        loop {
            match bytes.get(i) {
                Some(b'"') => {
                    self.pos = i + 1;
                    return Ok(JsonStr {
                        raw: &self.text[start..i],
                        escaped,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    i = self.escape(i)?;
                }
                Some(_) => {
                    self.pos = i;
                    return self.error("control character in string");
                }
                None => {
                    self.pos = i;
                    return self.error("unterminated string");
                }
            }
            i = find_special(bytes, i);
        }
    }

    /// Checks the escape at `i` (a backslash); returns the index after it.
    #[cold]
    fn escape(&mut self, i: usize) -> Result<usize, JsonError> {
        let bytes = self.bytes();
        match bytes.get(i + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(i + 2),
            Some(b'u') => {
                let Some(unit) = hex4(bytes, i + 2) else {
                    self.pos = i;
                    return self.error("invalid \\u escape");
                };
                match unit {
                    0xD800..=0xDBFF => {
                        let low = (bytes.get(i + 6..i + 8) == Some(b"\\u"))
                            .then(|| hex4(bytes, i + 8))
                            .flatten();
                        match low {
                            Some(0xDC00..=0xDFFF) => Ok(i + 12),
                            _ => {
                                self.pos = i;
                                self.error("unpaired surrogate in \\u escape")
                            }
                        }
                    }
                    0xDC00..=0xDFFF => {
                        self.pos = i;
                        self.error("unpaired surrogate in \\u escape")
                    }
                    _ => Ok(i + 6),
                }
            }
            _ => {
                self.pos = i;
                self.error("invalid escape")
            }
        }
    }
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let mut value = 0;
    for d in digits {
        value = value * 16 + (*d as char).to_digit(16)?;
    }
    Some(value)
}

/// The index of the first `"`, `\` or control character at or after `i`, or the length.
#[inline]
fn find_special(bytes: &[u8], i: usize) -> usize {
    scan::find_byte_or_control(bytes, i, b"\"\\")
}

/// Whether `s` can be written between quotes as it is, without escapes.
pub(crate) fn needs_no_escape(s: &str) -> bool {
    find_special(s.as_bytes(), 0) == s.len()
}

/// The value of string contents already checked by [`Reader`].
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let b = rest.as_bytes();
        let (ch, used) = match b[at + 1] {
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => {
                let unit = hex4(b, at + 2).unwrap_or(0xFFFD);
                if (0xD800..0xDC00).contains(&unit) {
                    let low = hex4(b, at + 8).unwrap_or(0xDC00);
                    let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    (char::from_u32(code).unwrap_or('\u{FFFD}'), 12)
                } else {
                    (char::from_u32(unit).unwrap_or('\u{FFFD}'), 6)
                }
            }
            other => (other as char, 2),
        };
        out.push(ch);
        rest = &rest[at + used..];
    }
    out.push_str(rest);
    out
}

/// Validates a whole text as one JSON value.
pub fn validate(text: &str) -> Result<(), JsonError> {
    let mut reader = Reader::new(text);
    reader.skip()?;
    reader.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agrees_with_serde(text: &str) {
        let ours = validate(text).is_ok();
        let theirs = serde_json::from_str::<serde_json::Value>(text).is_ok();
        assert_eq!(ours, theirs, "validity of {text:?}");
    }

    #[test]
    fn accepts_and_rejects_what_serde_json_does() {
        for text in [
            "{}",
            "[]",
            " { \"a\" : [1, -0, 0.5, 1e3, 1E+3, -1.5e-7, true, false, null, \"x\"] } ",
            r#"{"a":{"b":{"c":[[],[{}]]}}}"#,
            r#""\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
            "\"Zoë 東京\"",
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[,1]",
            "[1 2]",
            "{\"a\":1 \"b\":2}",
            "{1:2}",
            "01",
            "-",
            "1.",
            ".5",
            "1e",
            "1e+",
            "+1",
            "tru",
            "nul",
            "truex",
            "\"a\nb\"",
            "\"a\\x\"",
            "\"\\u12g4\"",
            "\"\\u12\"",
            "\"unterminated",
            "{\"a\":1}}",
            "[1]]",
            "\"\t\"",
            "[\"a\\\"]",
        ] {
            agrees_with_serde(text);
        }
    }

    #[test]
    fn every_prefix_and_single_byte_change_of_a_document_agrees_with_serde() {
        let doc = r#"{"id":"evt-1","n":-12.5e+3,"ok":true,"none":null,"list":[1,{"k":"v\"q\\"}],"u":"\u00e9"}"#;
        for end in 0..=doc.len() {
            agrees_with_serde(&doc[..end]);
        }
        let replacements = [
            b'"', b'\\', b',', b':', b'{', b'}', b'[', b']', b'1', b'e', b' ', b'x',
        ];
        for at in 0..doc.len() {
            for r in replacements {
                let mut bytes = doc.as_bytes().to_vec();
                bytes[at] = r;
                if let Ok(text) = std::str::from_utf8(&bytes) {
                    agrees_with_serde(text);
                }
            }
        }
    }

    #[test]
    fn lone_surrogates_are_rejected() {
        assert!(validate(r#""\ud83d""#).is_err());
        assert!(validate(r#""\ude00""#).is_err());
        assert!(validate(r#""\ud83d\u0041""#).is_err());
        assert!(validate(r#""\ud83d\ude00""#).is_ok());
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(validate(&deep(128)).is_ok());
        assert!(validate(&deep(129)).is_err());
    }

    #[test]
    fn strings_are_found_across_word_boundaries_and_unescaped() {
        for pad in 0..20 {
            let body = "x".repeat(pad);
            let text = format!("\"{body}\\n{body}\\u00e9\\ud83d\\ude00\\\"\"");
            let s = Reader::new(&text).str().unwrap();
            assert_eq!(s.value(), format!("{body}\n{body}é😀\""));
            assert_eq!(s.value(), serde_json::from_str::<String>(&text).unwrap());
            let control = format!("\"{body}\u{1}\"");
            assert!(validate(&control).is_err(), "control character after {pad}");
        }
    }

    #[test]
    fn raw_values_are_the_text_as_written() {
        let mut r = Reader::new(r#" { "a" : [1, 2] , "b":  -3.5 } "#);
        let mut seen = Vec::new();
        r.object(|r, key| {
            seen.push((key.value().into_owned(), r.raw_value()?));
            Ok::<_, JsonError>(())
        })
        .unwrap();
        r.end().unwrap();
        assert_eq!(
            seen,
            [("a".to_string(), "[1, 2]"), ("b".to_string(), "-3.5")]
        );
    }

    #[test]
    fn errors_say_where() {
        let err = validate("{\"a\":1,}").unwrap_err();
        assert_eq!(err.to_string(), "expected a key at byte 7");
    }
}
