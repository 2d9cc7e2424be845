//! File encodings of the raw zone: NDJSON or CSV, compressed with gzip, zstd or nothing.
//!
//! Every line carries its lineage (stream, shard, sequence number, partition key, arrival time,
//! object key and row number), so the COPY that loads a file never depends on `METADATA$`
//! columns and the rows can always be traced back to the Kinesis record.

pub mod csv;
pub(crate) mod flat;
pub mod ndjson;

use std::io::{self, Write};

use crate::config::{ConfigError, Env};
use crate::kinesis::record::{ArrivalFormatter, RecordMeta};

/// The text format of a raw-zone file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One JSON object per line: the record as sent under `payload`, its lineage under `metadata`.
    Ndjson,
    /// One CSV line per record: the columns configured for its table, then the lineage.
    Csv,
}

impl Format {
    /// The extension in object keys, before the compression's; the loader reads it back.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
        }
    }

    /// The `Content-Type` objects of this format are put with.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
        }
    }

    /// `FORMAT`: `ndjson` (the default, also `json`) or `csv`.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        match env
            .optional("FORMAT")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("ndjson") | Some("json") => Ok(Format::Ndjson),
            Some("csv") => Ok(Format::Csv),
            Some(other) => Err(ConfigError::new(
                "FORMAT",
                format!("expected ndjson or csv, got {other:?}"),
            )),
        }
    }
}

/// How a file is compressed; the level only matters when writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip, which every COPY and every tool reads.
    Gzip {
        /// 0 (stored) to 9 (smallest).
        level: u32,
    },
    /// zstd: smaller files than gzip for the same CPU time.
    Zstd {
        /// 1 (fastest) to 19 (smallest).
        level: i32,
    },
    /// Stored as is.
    None,
}

impl Compression {
    /// The suffix after the format's extension in object keys: `.gz`, `.zst` or nothing.
    pub fn extension(self) -> &'static str {
        match self {
            Compression::Gzip { .. } => ".gz",
            Compression::Zstd { .. } => ".zst",
            Compression::None => "",
        }
    }

    /// The `Content-Encoding` objects are put with; None for uncompressed objects.
    pub fn content_encoding(self) -> Option<&'static str> {
        match self {
            Compression::Gzip { .. } => Some("gzip"),
            Compression::Zstd { .. } => Some("zstd"),
            Compression::None => None,
        }
    }

    /// `COMPRESSION` (gzip, the default; zstd; none) and `COMPRESSION_LEVEL` (gzip 0–9, default
    /// 1; zstd 1–19, default 3). Fast levels by default: a Lambda pays for CPU time, and the raw
    /// zone is read once by COPY.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let kind = env.optional("COMPRESSION").map(|c| c.to_ascii_lowercase());
        match kind.as_deref() {
            None | Some("gzip") | Some("gz") => {
                let level = env.parse_or("COMPRESSION_LEVEL", 1u32)?;
                if level > 9 {
                    return Err(ConfigError::new(
                        "COMPRESSION_LEVEL",
                        "gzip levels are 0 to 9",
                    ));
                }
                Ok(Compression::Gzip { level })
            }
            Some("zstd") | Some("zst") => {
                let level = env.parse_or("COMPRESSION_LEVEL", 3i32)?;
                if !(1..=19).contains(&level) {
                    return Err(ConfigError::new(
                        "COMPRESSION_LEVEL",
                        "zstd levels are 1 to 19",
                    ));
                }
                Ok(Compression::Zstd { level })
            }
            Some("none") => Ok(Compression::None),
            Some(other) => Err(ConfigError::new(
                "COMPRESSION",
                format!("expected gzip, zstd or none, got {other:?}"),
            )),
        }
    }

    /// A writer that compresses into memory, its buffer sized for `capacity` bytes of output.
    pub fn writer(self, capacity: usize) -> io::Result<CompressWriter> {
        let buf = Vec::with_capacity(capacity);
        Ok(match self {
            Compression::Gzip { level } => CompressWriter::Gzip(flate2::write::GzEncoder::new(
                buf,
                flate2::Compression::new(level),
            )),
            Compression::Zstd { level } => {
                CompressWriter::Zstd(zstd::stream::Encoder::new(buf, level)?)
            }
            Compression::None => CompressWriter::Plain(buf),
        })
    }
}

/// A writer that compresses into memory.
pub enum CompressWriter {
    /// [`Compression::Gzip`].
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    /// [`Compression::Zstd`].
    Zstd(zstd::stream::Encoder<'static, Vec<u8>>),
    /// [`Compression::None`]: the bytes as written.
    Plain(Vec<u8>),
}

impl CompressWriter {
    /// Ends the stream (the gzip trailer, the last zstd frame) and returns the compressed bytes.
    pub fn finish(self) -> io::Result<Vec<u8>> {
        match self {
            CompressWriter::Gzip(w) => w.finish(),
            CompressWriter::Zstd(w) => w.finish(),
            CompressWriter::Plain(v) => Ok(v),
        }
    }
}

impl Write for CompressWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            CompressWriter::Gzip(w) => w.write(buf),
            CompressWriter::Zstd(w) => w.write(buf),
            CompressWriter::Plain(v) => v.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            CompressWriter::Gzip(w) => w.write_all(buf),
            CompressWriter::Zstd(w) => w.write_all(buf),
            CompressWriter::Plain(v) => v.write_all(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            CompressWriter::Gzip(w) => w.flush(),
            CompressWriter::Zstd(w) => w.flush(),
            CompressWriter::Plain(_) => Ok(()),
        }
    }
}

/// Reverses [`Compression::writer`]; for tests, tools and the quarantine reader.
pub fn decompress(compression: Compression, bytes: &[u8]) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::with_capacity(bytes.len() * 4);
    match compression {
        Compression::Gzip { .. } => {
            flate2::read::MultiGzDecoder::new(bytes).read_to_end(&mut out)?;
        }
        Compression::Zstd { .. } => {
            zstd::stream::read::Decoder::new(bytes)?.read_to_end(&mut out)?;
        }
        Compression::None => out.extend_from_slice(bytes),
    }
    Ok(out)
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    if crate::kinesis::json::needs_no_escape(s) {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// What the rows of one object share, prepared once per object: the object key already encoded
/// as a field of the file's format, the arrival-time formatter, the encoded stream and shard of
/// the last row (a group's records share both) and the last row number written.
#[derive(Debug, Clone)]
pub(crate) struct RowLineage<'m> {
    shape: Shape,
    file_field: Vec<u8>,
    arrivals: ArrivalFormatter,
    /// The stream and shard `source_fields` holds, borrowed from the records so that the next
    /// row's are usually recognised by address.
    source: Option<(&'m str, &'m str)>,
    source_fields: Vec<u8>,
    row: RowNumber,
}

/// How a line holds its lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// CSV columns after the mapped ones.
    Csv,
    /// An NDJSON `metadata` object beside the `payload`.
    Nested,
    /// NDJSON `KINESIS_…` keys after the record's own (see [`flat`]).
    Flat,
}

impl<'m> RowLineage<'m> {
    pub fn new(format: Format, file: &str) -> Self {
        let shape = match format {
            Format::Csv => Shape::Csv,
            Format::Ndjson => Shape::Nested,
        };
        Self::of_shape(shape, file)
    }

    /// For [`flat`] lines, which do not carry their file.
    pub fn flat() -> Self {
        Self::of_shape(Shape::Flat, "")
    }

    fn of_shape(shape: Shape, file: &str) -> Self {
        let mut file_field = Vec::with_capacity(file.len() + 2);
        match shape {
            Shape::Csv => csv::push_field(&mut file_field, Some(file)),
            Shape::Nested => push_json_str(&mut file_field, file),
            Shape::Flat => {}
        }
        Self {
            shape,
            file_field,
            arrivals: ArrivalFormatter::default(),
            source: None,
            source_fields: Vec::new(),
            row: RowNumber::default(),
        }
    }

    pub(crate) fn push_file(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.file_field);
    }

    pub(crate) fn push_arrival(&mut self, out: &mut Vec<u8>, ms: i64) {
        self.arrivals.push(out, ms);
    }

    pub(crate) fn push_row_number(&mut self, out: &mut Vec<u8>, row: u64) {
        self.row.push(out, row);
    }

    /// Stream and shard: `stream,shard` in CSV, `{"stream":…,"shard_id":…` in NDJSON,
    /// `"KINESIS_STREAM":…,"KINESIS_SHARD_ID":…` in flat NDJSON.
    pub(crate) fn push_source(&mut self, out: &mut Vec<u8>, meta: &'m RecordMeta<'_>) {
        let (stream, shard): (&'m str, &'m str) = (&meta.stream, &meta.shard_id);
        let same_text = crate::kinesis::scan::same_text;
        let same = self
            .source
            .is_some_and(|(s, h)| same_text(s, stream) && same_text(h, shard));
        if !same {
            self.source_fields.clear();
            let fields = &mut self.source_fields;
            match self.shape {
                Shape::Csv => {
                    csv::push_field(fields, Some(stream));
                    fields.push(b',');
                    csv::push_field(fields, Some(shard));
                }
                Shape::Nested => {
                    fields.extend_from_slice(b"{\"stream\":");
                    push_json_str(fields, stream);
                    fields.extend_from_slice(b",\"shard_id\":");
                    push_json_str(fields, shard);
                }
                Shape::Flat => flat::push_source(fields, stream, shard),
            }
        }
        // Kept even when equal: the newest address is the one the next row most likely shares.
        self.source = Some((stream, shard));
        out.extend_from_slice(&self.source_fields);
    }
}

/// Writes row numbers, which go up by one from row to row: the last one's digits are kept and
/// incremented in place rather than formatted again.
#[derive(Debug, Clone)]
struct RowNumber {
    last: u64,
    /// The decimal digits of `last`, right-aligned from `start`.
    digits: [u8; 20],
    start: usize,
}

impl Default for RowNumber {
    fn default() -> Self {
        Self {
            last: 0,
            digits: [b'0'; 20],
            start: 19,
        }
    }
}

impl RowNumber {
    fn push(&mut self, out: &mut Vec<u8>, row: u64) {
        if row == self.last.wrapping_add(1) && row != 0 {
            self.increment();
        } else {
            self.format(row);
        }
        self.last = row;
        out.extend_from_slice(&self.digits[self.start..]);
    }

    fn increment(&mut self) {
        let mut i = self.digits.len() - 1;
        while self.digits[i] == b'9' {
            self.digits[i] = b'0';
            // 20 digits hold every u64, so a carry out of the last one cannot happen.
            i = i.saturating_sub(1);
        }
        self.digits[i] += 1;
        self.start = self.start.min(i);
    }

    fn format(&mut self, mut n: u64) {
        self.digits = [b'0'; 20];
        let mut i = self.digits.len();
        loop {
            i -= 1;
            self.digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.start = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_round_trips() {
        let text = "línea 1,\"x\"\n".repeat(1000);
        for c in [
            Compression::Gzip { level: 1 },
            Compression::Gzip { level: 9 },
            Compression::Zstd { level: 3 },
            Compression::None,
        ] {
            let mut w = c.writer(1024).unwrap();
            w.write_all(text.as_bytes()).unwrap();
            let packed = w.finish().unwrap();
            if c != Compression::None {
                assert!(
                    packed.len() < text.len() / 10,
                    "{c:?} compresses repetitive text"
                );
            }
            assert_eq!(decompress(c, &packed).unwrap(), text.as_bytes(), "{c:?}");
        }
    }

    #[test]
    fn compression_from_env() {
        let e = |v: &[(&str, &str)]| Compression::from_env(&Env::new(&v.to_vec()));
        assert_eq!(e(&[]).unwrap(), Compression::Gzip { level: 1 });
        assert_eq!(
            e(&[("COMPRESSION", "ZSTD")]).unwrap(),
            Compression::Zstd { level: 3 }
        );
        assert_eq!(
            e(&[("COMPRESSION", "zstd"), ("COMPRESSION_LEVEL", "0")])
                .unwrap_err()
                .var,
            "COMPRESSION_LEVEL"
        );
        assert_eq!(e(&[("COMPRESSION", "lz4")]).unwrap_err().var, "COMPRESSION");
    }

    #[test]
    fn row_numbers_are_written_in_decimal() {
        let mut numbers = RowNumber::default();
        let rows =
            (1..=1_234u64).chain([9_999, 10_000, 10_001, 7, 8, 0, 1, u64::MAX - 1, u64::MAX]);
        for row in rows {
            let mut out = Vec::new();
            numbers.push(&mut out, row);
            assert_eq!(String::from_utf8(out).unwrap(), row.to_string());
        }
    }
}
