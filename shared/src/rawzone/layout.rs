//! Object keys in the raw zone.
//!
//! Keys are a pure function of the records they hold, so a retried batch overwrites the objects
//! it wrote before instead of adding new ones:
//! `{prefix}/{table}/{yyyy}/{mm}/{dd}/{hh}/[{name}={value}/]{shard}-{firstSeq}-{lastSeq}.{format}[.{gz|zst}]`
//!
//! A field partition's value is [`sanitize`]d into one key segment. The empty string is a value
//! like any other and gets the segment [`EMPTY_VALUE`] (`{name}=_empty`), so all records of a
//! (table, hour, shard) whose field is `""` share one object; a missing or null field is not a
//! value at all and sends the record to quarantine instead (see the planner).
//!
//! Quarantine objects carry the function that wrote them, because the orchestrator and the upsert
//! function read the same stream and may share one error prefix: without it both would write the
//! same key for the same batch and one would overwrite the other's rejected records:
//! `{error_prefix}/{writer}/{yyyy}/{mm}/{dd}/{hh}/{shard}-{firstSeq}-{lastSeq}.ndjson.gz`

use crate::config::{ConfigError, Env};
use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::rawzone::encode::{Compression, Format};

/// Where an object's records belong: the group a batch is split into, one object per group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct GroupKey {
    /// The table the records are routed to: the key's first segment below the prefix.
    pub table: String,
    /// Sanitised `name=value` of the optional field partition.
    pub partition: Option<String>,
    /// Hours since the epoch of the records' arrival time.
    pub hour: i64,
    /// The shard the records were read from, sanitised into the file name.
    pub shard_id: String,
}

/// The function that writes a quarantine object: its own key segment under the error prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Records the orchestrator rejected: not a JSON object, no table, no partition value, ...
    Orchestrator,
    /// Records the upsert function rejected, or Snowflake refused as rows.
    Upsert,
}

impl Writer {
    /// The key segment, also the function's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Writer::Orchestrator => "orchestrator",
            Writer::Upsert => "upsert",
        }
    }
}

/// The prefixes and the naming scheme of the raw zone.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    prefix: String,
    error_prefix: String,
}

impl Layout {
    /// A layout under `prefix`, quarantining under `error_prefix`; slashes at either end and
    /// empty segments are dropped.
    pub(crate) fn new(prefix: &str, error_prefix: &str) -> Self {
        Self {
            prefix: clean_prefix(prefix),
            error_prefix: clean_prefix(error_prefix),
        }
    }

    /// `RAW_PREFIX` (default `raw`) and `ERROR_PREFIX` (default `errors`), read by every
    /// function that writes or reads the raw zone. They must differ, or the loader would load
    /// quarantined records.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let layout = Self::new(
            &env.optional("RAW_PREFIX").unwrap_or_else(|| "raw".into()),
            &env.optional("ERROR_PREFIX")
                .unwrap_or_else(|| "errors".into()),
        );
        // Path prefixes, compared segment-wise: `raw/errors` is inside `raw`, `raw2` is not.
        let (raw, error) = (
            format!("{}/", layout.prefix()),
            format!("{}/", layout.error_prefix()),
        );
        if raw.starts_with(&error) || error.starts_with(&raw) {
            return Err(ConfigError::new(
                "ERROR_PREFIX",
                "must differ from RAW_PREFIX and neither may contain the other, or the loader \
                 would load quarantined records",
            ));
        }
        Ok(layout)
    }

    /// The raw-zone prefix, without slashes at either end; every object key starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn error_prefix(&self) -> &str {
        &self.error_prefix
    }

    pub(crate) fn object_key(
        &self,
        group: &GroupKey,
        first_seq: &str,
        last_seq: &str,
        format: Format,
        compression: Compression,
    ) -> String {
        let mut key = String::with_capacity(128);
        push_segment(&mut key, &self.prefix);
        push_segment(&mut key, &group.table);
        push_hour(&mut key, group.hour);
        if let Some(partition) = &group.partition {
            push_segment(&mut key, partition);
        }
        key.push_str(&format!(
            "{}-{}-{}.{}{}",
            sanitize(&group.shard_id),
            first_seq,
            last_seq,
            format.extension(),
            compression.extension()
        ));
        key
    }

    /// One quarantine object per writing function, batch and shard, holding every record of it
    /// that function rejected.
    pub fn quarantine_key(
        &self,
        writer: Writer,
        shard_id: &str,
        hour: i64,
        first_seq: &str,
        last_seq: &str,
    ) -> String {
        let mut key = String::with_capacity(96);
        push_segment(&mut key, &self.error_prefix);
        push_segment(&mut key, writer.as_str());
        push_hour(&mut key, hour);
        key.push_str(&format!(
            "{}-{}-{}.ndjson.gz",
            sanitize(shard_id),
            first_seq,
            last_seq
        ));
        key
    }

    /// Reads back what the loader needs from a key this layout wrote: table, format, compression,
    /// the field partition and the path below the prefix. `None` for keys outside the prefix or
    /// of another shape; a key of another producer under the prefix is read too, without a
    /// partition unless it has this layout's hour directories and `name=value` segment.
    pub fn parse_key<'k>(&self, key: &'k str) -> Option<ParsedKey<'k>> {
        let rest = if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(self.prefix.as_str())?.strip_prefix('/')?
        };
        let (table, _) = rest.split_once('/')?;
        let file_name = rest.rsplit('/').next()?;
        let (stem, compression) = if let Some(s) = file_name.strip_suffix(".gz") {
            (s, Compression::Gzip { level: 0 })
        } else if let Some(s) = file_name.strip_suffix(".zst") {
            (s, Compression::Zstd { level: 0 })
        } else {
            (file_name, Compression::None)
        };
        let format = if stem.ends_with(".ndjson") || stem.ends_with(".json") {
            Format::Ndjson
        } else if stem.ends_with(".csv") {
            Format::Csv
        } else {
            return None;
        };
        if table.is_empty() || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return None;
        }
        Some(ParsedKey {
            table,
            format,
            compression,
            partition: parse_partition(rest),
            path: rest,
        })
    }
}

/// What a raw-zone key says about its object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParsedKey<'k> {
    /// The first segment below the prefix (letters, digits and `_` only).
    pub table: &'k str,
    /// From the file name's extension: `.ndjson` or `.json`, or `.csv`.
    pub format: Format,
    /// From the file name's last extension: `.gz`, `.zst` or none (the level is 0, unknown).
    pub compression: Compression,
    /// The `name=value` segment of a field partition, if the key has one.
    pub partition: Option<Partition<'k>>,
    /// The key below the layout's prefix.
    pub path: &'k str,
}

/// A field partition segment read back from a key: both parts as written (sanitised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition<'k> {
    /// Before the `=`: the partition's name (`PARTITION_NAME`, or the field's last token).
    pub name: &'k str,
    /// After the `=`: the field's sanitised value, `_empty` for the empty string.
    pub value: &'k str,
}

impl Partition<'_> {
    /// True for the segment the empty string is written as ([`EMPTY_VALUE`]). Sanitising is
    /// lossy, so a value that was literally `_empty` reads back the same way.
    pub fn is_empty_value(&self) -> bool {
        self.value == EMPTY_VALUE
    }
}

/// `table/yyyy/mm/dd/hh/name=value/file` → the partition; any other shape has none.
fn parse_partition(path: &str) -> Option<Partition<'_>> {
    let segments: Vec<&str> = path.split('/').collect();
    let [_, yyyy, mm, dd, hh, partition, _file] = segments[..] else {
        return None;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !(digits(yyyy, 4) && digits(mm, 2) && digits(dd, 2) && digits(hh, 2)) {
        return None;
    }
    let (name, value) = partition.split_once('=')?;
    (!name.is_empty() && !value.is_empty()).then_some(Partition { name, value })
}

/// Hours since the epoch for an arrival time in milliseconds.
pub(crate) fn hour_of(arrival_ms: i64) -> i64 {
    arrival_ms.div_euclid(3_600_000)
}

fn push_hour(key: &mut String, hour: i64) {
    let t: DateTime<Utc> = DateTime::from_timestamp(hour * 3600, 0).unwrap_or(DateTime::UNIX_EPOCH);
    key.push_str(&format!(
        "{:04}/{:02}/{:02}/{:02}/",
        t.year(),
        t.month(),
        t.day(),
        t.hour()
    ));
}

fn push_segment(key: &mut String, segment: &str) {
    if !segment.is_empty() {
        key.push_str(segment);
        key.push('/');
    }
}

fn clean_prefix(prefix: &str) -> String {
    prefix
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// The key segment value of the empty string: a key segment cannot be empty, and S3 and COPY
/// paths are clearer without `name=/`. It is made of characters [`sanitize`] keeps, so it reads
/// back unchanged.
pub(crate) const EMPTY_VALUE: &str = "_empty";

fn is_clean_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// True when [`sanitize`] returns `value` unchanged.
fn is_clean(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 100
        && value.chars().all(is_clean_char)
        && !value.starts_with('.')
}

/// Makes a field value safe as one key segment and inside COPY's quoted `FILES` list: letters,
/// digits, `-`, `_` and `.` stay; everything else becomes `_`; never a dot segment, at most 100
/// bytes; the empty string becomes [`EMPTY_VALUE`].
pub(crate) fn sanitize(value: &str) -> Cow<'_, str> {
    if is_clean(value) {
        return Cow::Borrowed(value);
    }
    if value.is_empty() {
        return Cow::Borrowed(EMPTY_VALUE);
    }
    let mut out: String = value
        .chars()
        .map(|c| if is_clean_char(c) { c } else { '_' })
        .collect();
    if out.starts_with('.') {
        out.replace_range(0..1, "_");
    }
    if out.len() > 100 {
        let mut cut = 100;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    Cow::Owned(out)
}

/// [`sanitize`] for a value held as a `Cow`: the same `Cow` (no copy) when it is already clean.
pub(crate) fn sanitize_cow(value: Cow<'_, str>) -> Cow<'_, str> {
    if is_clean(&value) {
        value
    } else {
        Cow::Owned(sanitize(&value).into_owned())
    }
}

/// `name=value` for a field partition.
pub(crate) fn partition_segment(name: &str, value: &str) -> String {
    format!("{}={}", sanitize(name), sanitize(value))
}

#[cfg(test)]
mod tests {

    #[test]
    fn error_and_raw_prefixes_may_not_contain_each_other() {
        let layout = |raw: &'static str, error: &'static str| {
            let env = [("RAW_PREFIX", raw), ("ERROR_PREFIX", error)];
            Layout::from_env(&crate::config::Env::new(&env)).map(|_| ())
        };
        for (raw, error) in [
            ("raw", "raw"),
            ("raw", "raw/errors"),
            ("data/raw", "data"),
            ("a/b", "a/b/c"),
        ] {
            assert_eq!(
                layout(raw, error).unwrap_err().var,
                "ERROR_PREFIX",
                "{raw} {error}"
            );
        }
        for (raw, error) in [
            ("raw", "errors"),
            ("raw", "raw2"),
            ("raw2", "raw"),
            ("data/raw", "data/errors"),
        ] {
            assert!(layout(raw, error).is_ok(), "{raw} {error}");
        }
    }

    use super::*;

    fn group(partition: Option<&str>) -> GroupKey {
        GroupKey {
            table: "sensor_readings".into(),
            partition: partition.map(String::from),
            hour: hour_of(1_700_000_000_123),
            shard_id: "shardId-000000000006".into(),
        }
    }

    #[test]
    fn keys_are_deterministic_and_partitioned_by_hour() {
        let layout = Layout::new("/raw/", "errors");
        let key = layout.object_key(
            &group(None),
            "1",
            "9",
            Format::Ndjson,
            Compression::Gzip { level: 1 },
        );
        assert_eq!(
            key,
            "raw/sensor_readings/2023/11/14/22/shardId-000000000006-1-9.ndjson.gz"
        );
        assert_eq!(
            key,
            layout.object_key(
                &group(None),
                "1",
                "9",
                Format::Ndjson,
                Compression::Gzip { level: 6 }
            )
        );
        let key = layout.object_key(
            &group(Some("sensorId=6")),
            "1",
            "9",
            Format::Csv,
            Compression::Zstd { level: 3 },
        );
        assert_eq!(
            key,
            "raw/sensor_readings/2023/11/14/22/sensorId=6/shardId-000000000006-1-9.csv.zst"
        );
        let key =
            Layout::new("", "e").object_key(&group(None), "1", "2", Format::Csv, Compression::None);
        assert_eq!(
            key,
            "sensor_readings/2023/11/14/22/shardId-000000000006-1-2.csv"
        );
    }

    #[test]
    fn quarantine_keys_name_the_writing_function() {
        let layout = Layout::new("raw", "/errors/x/");
        assert_eq!(
            layout.quarantine_key(Writer::Orchestrator, "shardId-1", hour_of(0), "5", "7"),
            "errors/x/orchestrator/1970/01/01/00/shardId-1-5-7.ndjson.gz"
        );
        assert_eq!(
            layout.quarantine_key(Writer::Upsert, "shardId-1", hour_of(0), "5", "7"),
            "errors/x/upsert/1970/01/01/00/shardId-1-5-7.ndjson.gz"
        );
    }

    #[test]
    fn partition_values_are_sanitised() {
        assert_eq!(partition_segment("sensorId", "6"), "sensorId=6");
        assert_eq!(
            partition_segment("city", "São Paulo/'x'"),
            "city=S_o_Paulo__x_"
        );
        assert_eq!(partition_segment("c", ""), "c=_empty");
        assert_eq!(partition_segment("c", ".."), "c=_.");
        assert_eq!(sanitize(&"x".repeat(300)).len(), 100);
    }

    #[test]
    fn the_empty_value_has_its_own_segment_and_reads_back() {
        assert_eq!(sanitize(""), EMPTY_VALUE);
        assert_eq!(partition_segment("city", ""), "city=_empty");
        assert_eq!(sanitize_cow(Cow::Borrowed("")), EMPTY_VALUE);
        assert!(matches!(
            sanitize_cow(Cow::Borrowed("ok")),
            Cow::Borrowed("ok")
        ));
        assert_eq!(sanitize_cow(Cow::Borrowed("a b")), "a_b");
        let layout = Layout::new("raw", "errors");
        let key = layout.object_key(
            &group(Some(&partition_segment("city", ""))),
            "1",
            "9",
            Format::Ndjson,
            Compression::None,
        );
        assert_eq!(
            key,
            "raw/sensor_readings/2023/11/14/22/city=_empty/shardId-000000000006-1-9.ndjson"
        );
        let parsed = layout.parse_key(&key).unwrap();
        let partition = parsed.partition.unwrap();
        assert_eq!((partition.name, partition.value), ("city", "_empty"));
        assert!(partition.is_empty_value());
        // no partition: none read back, and another producer's layout is not mistaken for one
        let key = layout.object_key(&group(None), "1", "9", Format::Csv, Compression::None);
        assert_eq!(layout.parse_key(&key).unwrap().partition, None);
        assert_eq!(
            layout
                .parse_key("raw/t/x/y/z/w/a=b/f.csv")
                .unwrap()
                .partition,
            None
        );
        assert_eq!(layout.parse_key("raw/t/a=b/f.csv").unwrap().partition, None);
    }

    #[test]
    fn parses_keys_it_wrote_and_rejects_others() {
        let layout = Layout::new("raw", "errors");
        let key = layout.object_key(
            &group(Some("sensorId=6")),
            "1",
            "9",
            Format::Csv,
            Compression::Zstd { level: 3 },
        );
        let parsed = layout.parse_key(&key).unwrap();
        assert_eq!(parsed.table, "sensor_readings");
        assert_eq!(parsed.format, Format::Csv);
        assert!(matches!(parsed.compression, Compression::Zstd { .. }));
        assert_eq!(
            parsed.path,
            "sensor_readings/2023/11/14/22/sensorId=6/shardId-000000000006-1-9.csv.zst"
        );
        assert_eq!(
            parsed.partition,
            Some(Partition {
                name: "sensorId",
                value: "6"
            })
        );
        assert!(layout.parse_key("rawx/t/a.csv").is_none());
        assert!(layout.parse_key("other/t/a.csv").is_none());
        assert!(layout.parse_key("raw/t/a.parquet").is_none());
        assert!(layout.parse_key("raw/a.csv").is_none());
    }
}
