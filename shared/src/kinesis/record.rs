//! Kinesis records as Lambda delivers them, decoded through a slim envelope.
//!
//! The fully typed `aws_lambda_events` event parses every field into owned values; a probe
//! measured that at 50–90% of the whole pipeline's time. This envelope reads only the fields the
//! pipeline uses and borrows strings from the event body wherever JSON escaping allows.

pub use crate::kinesis::sequence::{min_sequence_number, SequenceNumber};
use std::borrow::Cow;
use std::cmp::Ordering;

use chrono::{DateTime, Utc};

use crate::kinesis::json::{JsonError, JsonStr, Reader};
use crate::kinesis::kpl::{self, AggregateError};

/// The event body as a whole could not be read: nothing in it can be trusted to be a record.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The body is not valid JSON, or not an object whose `Records` is an array of objects.
    #[error("the event is not a Kinesis batch: {0}")]
    NotJson(#[from] JsonError),
    /// A record lacks a field every Kinesis record has (`kinesis`, its `sequenceNumber`, `data`).
    #[error("the event is not a Kinesis batch: record {index} has no {field}")]
    MissingField {
        /// The record's position in `Records`, from 0.
        index: usize,
        /// The missing field's path, e.g. `kinesis.sequenceNumber`.
        field: &'static str,
    },
}

/// Where a record came from; travels with it into files, quarantine and Snowflake lineage.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordMeta<'a> {
    /// The stream name from `eventSourceARN` (the whole ARN if it has no `:stream/`), or
    /// `unknown-stream` without one.
    pub stream: Cow<'a, str>,
    /// The shard, the part of `eventID` before its `:` (`shardId-000000000006`), or
    /// `unknown-shard`.
    pub shard_id: Cow<'a, str>,
    /// `kinesis.sequenceNumber`: the record's position in its shard, what Lambda resends from.
    pub sequence_number: SequenceNumber<'a>,
    /// `kinesis.partitionKey` (a KPL sub-record's own key); empty when absent.
    pub partition_key: Cow<'a, str>,
    /// Approximate arrival time in milliseconds since the epoch.
    pub arrival_ms: i64,
    /// The record's index in its KPL aggregate; `None` for a record that was not aggregated.
    /// Sub-records share their aggregate's sequence number (what Lambda retries from), so this
    /// orders them within it.
    pub sub_sequence: Option<u32>,
}

impl RecordMeta<'_> {
    /// The arrival time as a date; the epoch if `arrival_ms` is out of chrono's range.
    pub fn arrival(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.arrival_ms).unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// RFC 3339 with milliseconds, the form every file and table column uses.
    pub fn arrival_rfc3339(&self) -> String {
        let mut out = Vec::with_capacity(24);
        self.push_arrival(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    /// Appends the arrival time as `YYYY-MM-DDTHH:MM:SS.mmmZ`. Written by hand: it runs once per
    /// row of every file, and a formatter plus a `String` per call showed up in profiles.
    pub(crate) fn push_arrival(&self, out: &mut Vec<u8>) {
        push_rfc3339_millis(out, self.arrival_ms);
    }
}

/// Appends `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (years 0000–9999).
pub(crate) fn push_rfc3339_millis(out: &mut Vec<u8>, ms: i64) {
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + i64::from(month <= 2)).clamp(0, 9999);
    let digits = |out: &mut Vec<u8>, v: i64, width: usize| {
        let mut buf = [b'0'; 4];
        let mut v = v;
        for i in (0..width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(out, year, 4);
    out.push(b'-');
    digits(out, month, 2);
    out.push(b'-');
    digits(out, day, 2);
    out.push(b'T');
    digits(out, in_day / 3_600_000, 2);
    out.push(b':');
    digits(out, in_day / 60_000 % 60, 2);
    out.push(b':');
    digits(out, in_day / 1000 % 60, 2);
    out.push(b'.');
    digits(out, in_day % 1000, 3);
    out.push(b'Z');
}

/// Writes arrival times for the rows of one file. Consecutive records nearly always arrived in
/// the same hour, so the date and hour are formatted once per hour and only minutes, seconds and
/// milliseconds per row.
#[derive(Debug, Clone, Default)]
pub(crate) struct ArrivalFormatter {
    hour: Option<i64>,
    /// `YYYY-MM-DDTHH:` of `hour`.
    prefix: [u8; 14],
    /// The last time written and its text: records put together share one.
    last: Option<(i64, [u8; 24])>,
}

impl ArrivalFormatter {
    /// Appends `ms` since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ`, as [`push_rfc3339_millis`].
    pub fn push(&mut self, out: &mut Vec<u8>, ms: i64) {
        if let Some((last, text)) = &self.last {
            if *last == ms {
                out.extend_from_slice(text);
                return;
            }
        }
        let start = out.len();
        self.push_new(out, ms);
        self.last = out[start..].try_into().ok().map(|text| (ms, text));
    }

    fn push_new(&mut self, out: &mut Vec<u8>, ms: i64) {
        let hour = ms.div_euclid(3_600_000);
        if self.hour != Some(hour) {
            let mut text = Vec::with_capacity(24);
            push_rfc3339_millis(&mut text, hour * 3_600_000);
            self.prefix.copy_from_slice(&text[..14]);
            self.hour = Some(hour);
        }
        let in_hour = ms.rem_euclid(3_600_000);
        let (minute, second, milli) = (in_hour / 60_000, in_hour / 1000 % 60, in_hour % 1000);
        let digit = |v: i64| b'0' + v as u8;
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(&[
            digit(minute / 10),
            digit(minute % 10),
            b':',
            digit(second / 10),
            digit(second % 10),
            b'.',
            digit(milli / 100),
            digit(milli / 10 % 10),
            digit(milli % 10),
            b'Z',
        ]);
    }
}

/// One Kinesis record: its metadata and its payload bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct KinesisRecord<'a> {
    /// Where it came from.
    pub meta: RecordMeta<'a>,
    /// The base64-decoded payload (in the batch's [`PayloadBuffer`]), or the undecodable `data`
    /// text as it arrived.
    pub data: Result<&'a [u8], Cow<'a, str>>,
    /// Why a KPL aggregate could not be split: the record (`data`, the whole aggregate) is
    /// quarantined with this reason.
    pub aggregate_error: Option<AggregateError>,
}

/// The decoded payloads of one batch, in one allocation that the batch's records borrow
/// rather than one per record (or a reference count touched by every record).
#[derive(Debug, Default)]
pub struct PayloadBuffer(Vec<u8>);

/// Decodes the event body Lambda sends for a Kinesis batch.
///
/// Each record is decoded as it is read, so the batch is never held twice. A record whose `data`
/// is not base64 is still returned, so it can be quarantined with its metadata rather than
/// failing the batch.
pub fn decode_kinesis_event<'a>(
    body: &'a str,
    payloads: &'a mut PayloadBuffer,
) -> Result<Vec<KinesisRecord<'a>>, DecodeError> {
    decode_event(body, payloads, true).map(|(records, _)| records)
}

/// [`decode_kinesis_event`], optionally without reading records through a [`Template`], so tests
/// can compare the two ways; also returns how many records a template read.
fn decode_event<'a>(
    body: &'a str,
    payloads: &'a mut PayloadBuffer,
    templates: bool,
) -> Result<(Vec<KinesisRecord<'a>>, usize), DecodeError> {
    let mut reader = Reader::new(body);
    payloads.0.clear();
    let mut batch = Decoding {
        body,
        records: Vec::new(),
        payloads: &mut payloads.0,
        spans: Vec::new(),
        templates,
        template: None,
        template_reads: 0,
        last_arrival: None,
        last_stream: None,
    };
    reader.object(|r, key| {
        if !key.eq_str("Records") {
            return Ok(r.skip()?);
        }
        // Sized from the body so nothing is moved while decoding: Lambda's envelope alone is
        // about 500 bytes per record, and base64 decodes to at most 3/4 of its length.
        batch.records.reserve(body.len() / 500 + 1);
        batch.spans.reserve(body.len() / 500 + 1);
        batch.payloads.reserve(body.len() / 4 * 3 + 3);
        r.array(|r, index| read_record(r, index, &mut batch))
    })?;
    reader.end()?;
    let template_reads = batch.template_reads;
    Ok((batch.finish(), template_reads))
}

/// Records as they are read, their payloads decoded into one buffer: one allocation per batch
/// rather than one per record, each record's bytes a view of the shared buffer.
struct Decoding<'a> {
    body: &'a str,
    records: Vec<KinesisRecord<'a>>,
    payloads: &'a mut Vec<u8>,
    /// Where each record's payload is in `payloads`.
    spans: Vec<(usize, usize)>,
    /// Whether to learn and use templates.
    templates: bool,
    /// The shape of the last record read in full.
    template: Option<Template<'a>>,
    template_reads: usize,
    /// The last arrival time converted: its text and milliseconds.
    last_arrival: Option<(&'a str, i64)>,
    /// The last `eventSourceARN` and its stream name.
    last_stream: Option<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Decoding<'a> {
    /// Decodes `data` onto the shared buffer: `Ok` with the record's payload still to be
    /// attached by [`Decoding::finish`], or the undecodable text.
    fn decode(&mut self, data: JsonStr<'a>) -> Result<&'a [u8], Cow<'a, str>> {
        let text = data.value();
        let start = self.payloads.len();
        // SIMD base64: decoding was a third of the envelope's cost with the scalar decoder.
        let decoded = base64_simd::STANDARD.decode_append(text.as_bytes(), &mut *self.payloads);
        self.spans.push((start, self.payloads.len()));
        decoded.map(|()| &[][..]).map_err(|_| text)
    }

    fn finish(self) -> Vec<KinesisRecord<'a>> {
        // Written in full: from here on the buffer is only read, for as long as the records.
        let payloads: &'a [u8] = self.payloads;
        let mut records = self.records;
        let mut aggregates = false;
        for (record, (start, end)) in records.iter_mut().zip(self.spans) {
            if let Ok(data) = &mut record.data {
                *data = &payloads[start..end];
                aggregates |= kpl::is_aggregated(data);
            }
        }
        if aggregates {
            deaggregate(records)
        } else {
            records
        }
    }
}

/// Replaces every KPL aggregate by its sub-records, each with its own partition key and index;
/// their bytes stay views of the batch's buffer. An aggregate that cannot be split stays one
/// record carrying the reason.
fn deaggregate(records: Vec<KinesisRecord<'_>>) -> Vec<KinesisRecord<'_>> {
    let mut out = Vec::with_capacity(records.len());
    for mut record in records {
        let data = match record.data {
            Ok(data) if kpl::is_aggregated(data) => data,
            _ => {
                out.push(record);
                continue;
            }
        };
        match kpl::deaggregate(data) {
            Ok(subs) => {
                for (i, sub) in subs.into_iter().enumerate() {
                    let mut meta = record.meta.clone();
                    meta.partition_key = Cow::Borrowed(sub.partition_key);
                    // An aggregate holds at most 1 MB of records, far fewer than u32::MAX.
                    meta.sub_sequence = Some(u32::try_from(i).unwrap_or(u32::MAX));
                    out.push(KinesisRecord {
                        meta,
                        data: Ok(sub.data),
                        aggregate_error: None,
                    });
                }
            }
            Err(e) => {
                record.aggregate_error = Some(e);
                out.push(record);
            }
        }
    }
    out
}

/// The values of one record the pipeline uses.
#[derive(Default)]
struct Fields<'a> {
    kinesis: bool,
    partition_key: Option<JsonStr<'a>>,
    sequence_number: Option<JsonStr<'a>>,
    data: Option<JsonStr<'a>>,
    arrival: Option<&'a str>,
    event_id: Option<JsonStr<'a>>,
    event_source_arn: Option<JsonStr<'a>>,
}

/// A value of [`Fields`], naming a slot of a [`Template`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    PartitionKey,
    SequenceNumber,
    Data,
    Arrival,
    EventId,
    EventSourceArn,
}

const FIELD_COUNT: usize = 6;

impl<'a> Fields<'a> {
    /// Reads the value of `field` at the reader's position.
    #[inline]
    fn read(&mut self, r: &mut Reader<'a>, field: Field) -> Result<(), JsonError> {
        let slot = match field {
            Field::Arrival => {
                self.arrival = Some(r.number()?);
                return Ok(());
            }
            Field::PartitionKey => &mut self.partition_key,
            Field::SequenceNumber => &mut self.sequence_number,
            Field::Data => &mut self.data,
            Field::EventId => &mut self.event_id,
            Field::EventSourceArn => &mut self.event_source_arn,
        };
        *slot = Some(r.str()?);
        Ok(())
    }
}

/// A record's text cut around the values the pipeline uses: `(text before the value, field)`
/// for each value in the order written, then the text after the last one.
///
/// Lambda writes every record of a batch with the same keys in the same order and mostly the
/// same other values (event source, region, role), so the next record is nearly always this text
/// with other values in the slots. Comparing the text between slots and reading only the slot
/// values accepts exactly what reading the whole record would (the text in between was read and
/// validated before, in the same place), and skips scanning and matching every key, which was
/// most of the envelope's cost. A record that differs anywhere is read in full and becomes the
/// next template.
struct Template<'a> {
    slots: [(&'a str, Field); FIELD_COUNT],
    len: usize,
    tail: &'a str,
    /// `eventSourceARN`, which is part of the compared text: one batch comes from one stream.
    event_source_arn: Option<JsonStr<'a>>,
}

impl<'a> Template<'a> {
    /// The record's values if the text at `r` has this shape; otherwise `None`, with `r` where
    /// it was.
    #[inline]
    fn read(&self, r: &mut Reader<'a>) -> Option<Fields<'a>> {
        let start = r.value_start();
        let mut fields = Fields {
            kinesis: true,
            event_source_arn: self.event_source_arn,
            ..Fields::default()
        };
        let matched = self.slots[..self.len]
            .iter()
            .all(|(text, field)| r.eat_text(text) && fields.read(r, *field).is_ok())
            && r.eat_text(self.tail);
        if matched {
            Some(fields)
        } else {
            r.rewind(start);
            None
        }
    }

    /// The template of a record read in full from `start` to `end` of `body`, with its values'
    /// spans in the order read; `None` when a value appeared twice (the shape would be ambiguous).
    fn learn(
        body: &'a str,
        start: usize,
        end: usize,
        spans: &[(Field, usize, usize)],
        event_source_arn: Option<JsonStr<'a>>,
    ) -> Option<Self> {
        let mut slots = [("", Field::Data); FIELD_COUNT];
        let mut len = 0;
        let mut at = start;
        for (i, (field, from, to)) in spans.iter().enumerate() {
            if spans[..i].iter().any(|(seen, ..)| seen == field) {
                return None;
            }
            if *field != Field::EventSourceArn {
                slots[len] = (&body[at..*from], *field);
                len += 1;
                at = *to;
            }
        }
        Some(Self {
            slots,
            len,
            tail: &body[at..end],
            event_source_arn,
        })
    }
}

/// Reads one element of `Records` onto `records`: only the fields the pipeline uses are kept,
/// the rest are skipped.
fn read_record<'a>(
    r: &mut Reader<'a>,
    index: usize,
    batch: &mut Decoding<'a>,
) -> Result<(), DecodeError> {
    let fields = batch.read_fields(r)?;
    let missing = |field| DecodeError::MissingField { index, field };
    if !fields.kinesis {
        return Err(missing("kinesis"));
    }
    let sequence_number = fields
        .sequence_number
        .ok_or_else(|| missing("kinesis.sequenceNumber"))?;
    let data = fields.data.ok_or_else(|| missing("kinesis.data"))?;
    let arn = fields
        .event_source_arn
        .map(|s| s.value())
        .unwrap_or_default();
    let stream = batch.stream(arn);
    let event_id = fields.event_id.map(|s| s.value()).unwrap_or_default();
    let shard_id = batch.shard(event_id);
    let arrival_ms = fields.arrival.map_or(0, |text| batch.arrival(text));
    let data = batch.decode(data);
    batch.records.push(KinesisRecord {
        meta: RecordMeta {
            stream,
            shard_id,
            sequence_number: sequence_number.value().into(),
            partition_key: fields.partition_key.map(|s| s.value()).unwrap_or_default(),
            arrival_ms,
            sub_sequence: None,
        },
        data,
        aggregate_error: None,
    });
    Ok(())
}

// The steps of `read_record` that reuse what the batch's earlier records found. They run once
// per record, so each is `#[inline]`: split out and inlined, `read_record` ran 0.3 % fewer
// instructions per record than written in one piece (callgrind on the `pipeline` and `upsert`
// benches; wall-clock on the shared 2-core machine varied by 20–70 % between runs).
impl<'a> Decoding<'a> {
    /// The record's values, through the template when the record has its shape, otherwise read
    /// in full (and, when templates are on, the record becomes the template).
    #[inline]
    fn read_fields(&mut self, r: &mut Reader<'a>) -> Result<Fields<'a>, JsonError> {
        if let Some(fields) = self.template.as_ref().and_then(|t| t.read(r)) {
            self.template_reads += 1;
            return Ok(fields);
        }
        let (fields, template) = read_record_in_full(r, self.body)?;
        if self.templates {
            self.template = template;
        }
        Ok(fields)
    }

    /// The stream `arn` names. Every record of a batch comes from one stream: the name is found
    /// once per ARN, which a template passes on by address.
    #[inline]
    fn stream(&mut self, arn: Cow<'a, str>) -> Cow<'a, str> {
        match &self.last_stream {
            Some((last, stream)) if crate::kinesis::scan::same_text(last, &arn) => share(stream),
            _ => {
                let stream = stream_name(arn.clone());
                self.last_stream = Some((arn, stream.clone()));
                stream
            }
        }
    }

    /// The shard of `event_id`, shared with the previous record's when it is the same shard.
    #[inline]
    fn shard(&self, event_id: Cow<'a, str>) -> Cow<'a, str> {
        match self.records.last() {
            Some(prev) if is_shard_of(&prev.meta.shard_id, &event_id) => share(&prev.meta.shard_id),
            _ => shard_id(event_id),
        }
    }

    /// [`arrival_ms`] of `text`, remembered: records put together often share an arrival time.
    #[inline]
    fn arrival(&mut self, text: &'a str) -> i64 {
        match self.last_arrival {
            Some((last, ms)) if crate::kinesis::scan::same_text(text, last) => ms,
            _ => {
                let ms = arrival_ms(text);
                self.last_arrival = Some((text, ms));
                ms
            }
        }
    }
}

/// `Cow::clone`, inlined: per record it is nearly always a borrowed string, a copy of two words.
#[inline(always)]
fn share<'a>(text: &Cow<'a, str>) -> Cow<'a, str> {
    match text {
        Cow::Borrowed(text) => Cow::Borrowed(text),
        Cow::Owned(text) => Cow::Owned(text.clone()),
    }
}

/// Whether [`shard_id`] of `event_id` is `shard`, without searching `event_id` again.
fn is_shard_of(shard: &str, event_id: &str) -> bool {
    // A shard id never holds ':' (it is what comes before the first one), so `shard` followed
    // by ':' is exactly where the search would stop.
    event_id.as_bytes().get(shard.len()) == Some(&b':')
        && crate::kinesis::scan::starts_with_at(event_id.as_bytes(), 0, shard.as_bytes())
}

/// Reads a record key by key, and the template of its text (see [`Template`]).
fn read_record_in_full<'a>(
    r: &mut Reader<'a>,
    body: &'a str,
) -> Result<(Fields<'a>, Option<Template<'a>>), JsonError> {
    let mut fields = Fields::default();
    let mut spans = [(Field::Data, 0, 0); FIELD_COUNT];
    let mut seen = 0;
    let mut read = |r: &mut Reader<'a>, fields: &mut Fields<'a>, field| {
        let from = r.value_start();
        fields.read(r, field)?;
        if let Some(span) = spans.get_mut(seen) {
            *span = (field, from, r.position());
        }
        seen += 1;
        Ok::<_, JsonError>(())
    };
    let start = r.value_start();
    r.object(|r, key| {
        match &*key.value() {
            "kinesis" => {
                fields.kinesis = true;
                r.object(|r, key| match &*key.value() {
                    "partitionKey" => read(r, &mut fields, Field::PartitionKey),
                    "sequenceNumber" => read(r, &mut fields, Field::SequenceNumber),
                    "data" => read(r, &mut fields, Field::Data),
                    "approximateArrivalTimestamp" => read(r, &mut fields, Field::Arrival),
                    _ => r.skip(),
                })?;
            }
            "eventID" => read(r, &mut fields, Field::EventId)?,
            "eventSourceARN" => read(r, &mut fields, Field::EventSourceArn)?,
            _ => r.skip()?,
        }
        Ok::<_, JsonError>(())
    })?;
    let template = (fields.kinesis && seen <= FIELD_COUNT)
        .then(|| {
            let end = r.position();
            Template::learn(body, start, end, &spans[..seen], fields.event_source_arn)
        })
        .flatten();
    Ok((fields, template))
}

/// `approximateArrivalTimestamp` (seconds, e.g. `1545084650.987`) in milliseconds. Plain
/// decimals are converted exactly, without a float; other forms (`1.545084650987E9`) are parsed.
fn arrival_ms(seconds: &str) -> i64 {
    // A byte loop: the '.' is ten bytes in, where a string searcher's set-up dominates.
    let (whole, fraction) = match seconds.bytes().position(|b| b == b'.') {
        Some(dot) => (&seconds[..dot], &seconds[dot + 1..]),
        None => (seconds, ""),
    };
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !whole.is_empty() && whole.len() <= 12 && plain(whole) && plain(fraction) {
        let digit = |i: usize| {
            fraction
                .as_bytes()
                .get(i)
                .map_or(0, |b| i64::from(b - b'0'))
        };
        let whole: i64 = whole.parse().unwrap_or(0);
        let round_up = i64::from(digit(3) >= 5);
        return whole * 1000 + digit(0) * 100 + digit(1) * 10 + digit(2) + round_up;
    }
    seconds
        .parse::<f64>()
        .map_or(0, |s| (s * 1000.0).round() as i64)
}

/// `arn:aws:kinesis:us-east-1:123456789012:stream/NAME` (or `.../stream/NAME/consumer/C:1` for
/// enhanced fan-out) → `NAME`.
fn stream_name(arn: Cow<'_, str>) -> Cow<'_, str> {
    let name_of = |s: &str| -> Option<(usize, usize)> {
        let start = s.find(":stream/")? + ":stream/".len();
        let len = s[start..].find('/').unwrap_or(s.len() - start);
        Some((start, start + len))
    };
    match (name_of(&arn), arn) {
        (Some((a, b)), Cow::Borrowed(s)) => Cow::Borrowed(&s[a..b]),
        (Some((a, b)), Cow::Owned(s)) => Cow::Owned(s[a..b].to_string()),
        (None, arn) if arn.is_empty() => Cow::Borrowed("unknown-stream"),
        (None, arn) => arn,
    }
}

/// `shardId-000000000006:49590338271490256608559692538361571095921575989136588898` →
/// `shardId-000000000006`.
fn shard_id(event_id: Cow<'_, str>) -> Cow<'_, str> {
    // A plain byte loop: the ':' is ~20 bytes in, where a string searcher's set-up dominates.
    let end = event_id
        .bytes()
        .position(|b| b == b':')
        .unwrap_or(event_id.len());
    if end == 0 {
        return Cow::Borrowed("unknown-shard");
    }
    match event_id {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(s) => Cow::Owned(s[..end].to_string()),
    }
}

/// Orders two records as they were written: by sequence number, then by index within a KPL
/// aggregate.
pub fn cmp_positions(a: &RecordMeta<'_>, b: &RecordMeta<'_>) -> Ordering {
    a.sequence_number
        .cmp(&b.sequence_number)
        .then(a.sub_sequence.cmp(&b.sub_sequence))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes into a buffer of its own that lives as long as the test process.
    fn decode_kinesis_event(body: &str) -> Result<Vec<KinesisRecord<'_>>, DecodeError> {
        super::decode_kinesis_event(body, Box::leak(Box::default()))
    }

    fn decode_event(
        body: &str,
        templates: bool,
    ) -> Result<(Vec<KinesisRecord<'_>>, usize), DecodeError> {
        super::decode_event(body, Box::leak(Box::default()), templates)
    }

    fn event(records: &[(&str, &str, &str, &str)]) -> String {
        let recs: Vec<String> = records
            .iter()
            .map(|(shard, seq, pk, data)| {
                format!(
                    r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"{pk}","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":1700000000.123}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"{shard}:{seq}","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/r","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/sensors"}}"#
                )
            })
            .collect();
        format!(r#"{{"Records":[{}]}}"#, recs.join(","))
    }

    #[test]
    fn decodes_metadata_and_payload() {
        let body = event(&[(
            "shardId-000000000006",
            "49590338271490256608559692538361571095921575989136588898",
            "6",
            "eyJhIjoxfQ==",
        )]);
        let recs = decode_kinesis_event(&body).unwrap();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!(r.meta.stream, "sensors");
        assert_eq!(r.meta.shard_id, "shardId-000000000006");
        assert_eq!(
            r.meta.sequence_number,
            "49590338271490256608559692538361571095921575989136588898"
        );
        assert_eq!(r.meta.partition_key, "6");
        assert_eq!(r.meta.arrival_ms, 1_700_000_000_123);
        assert_eq!(r.meta.arrival_rfc3339(), "2023-11-14T22:13:20.123Z");
        assert_eq!(r.data.as_deref().unwrap(), br#"{"a":1}"#);
        assert!(
            matches!(r.meta.stream, Cow::Borrowed(_)),
            "strings are borrowed from the body"
        );
    }

    /// Decodes `body` with and without templates; both must agree, records or error.
    fn decode_both_ways(body: &str) -> Result<(Vec<KinesisRecord<'_>>, usize), String> {
        let fast = decode_event(body, true).map_err(|e| e.to_string());
        let full = decode_event(body, false).map_err(|e| e.to_string());
        assert_eq!(
            fast.as_ref().map(|(records, _)| records),
            full.as_ref().map(|(records, _)| records),
            "{body}"
        );
        fast
    }

    /// Records of one batch in the shapes a template must tell apart: Lambda's own, the same
    /// with other values, whitespace, another key order, escapes, duplicate and missing keys.
    fn varied_records() -> Vec<String> {
        let lambda = |seq: &str, pk: &str, data: &str, ts: &str| {
            format!(
                r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"{pk}","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":{ts}}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000001:{seq}","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::1:role/r","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}}"#
            )
        };
        vec![
            lambda("1", "a", "eyJhIjoxfQ==", "1700000000.123"),
            lambda("2", "bb", "e30=", "1700000001"),
            lambda("3", "", "", "1.7e9"),
            lambda("4", "a\\\"b\\u00e9", "bm90IGpzb24=", "1700000002.5"),
            lambda("5", "k", "not base64!", "1700000003.25"),
            lambda("6", "k", "e30=", "1700000003.25").replace(r#""awsRegion":"us-east-1""#, r#""awsRegion":"eu-west-1""#),
            lambda("7", "k", "e30=", "1700000004").replace(',', ", ").replace(':', " : "),
            lambda("8", "k", "e30=", "1700000004").replace(',', ", ").replace(':', " : "),
            r#"{"eventSourceARN":"arn:aws:kinesis:r:1:stream/t","eventID":"shardId-2:9","kinesis":{"data":"e30=","sequenceNumber":"9"}}"#.into(),
            r#"{"eventSourceARN":"arn:aws:kinesis:r:1:stream/t","eventID":"shardId-2:10","kinesis":{"data":"e30=","sequenceNumber":"10"}}"#.into(),
            r#"{"kinesis":{"sequenceNumber":"11","data":"e30=","data":"eyJhIjoxfQ=="}}"#.into(),
            r#"{"kinesis":{"sequenceNumber":"12","data":"e30=","data":"eyJhIjoxfQ=="}}"#.into(),
            r#"{"kinesis":{"sequenceNumber":"13","d\u0061ta":"e30="},"eventID":"shardId-3:13"}"#.into(),
            r#"{"kinesis":{"sequenceNumber":"14","d\u0061ta":"e30="},"eventID":"shardId-3:14"}"#.into(),
            lambda("15", "k", "e30=", "1700000005"),
            lambda("16", "k", "e30=", "1700000006"),
        ]
    }

    #[test]
    fn templates_read_what_a_full_read_does() {
        let records = varied_records();
        let body = format!(r#"{{"Records":[{}]}}"#, records.join(","));
        let (decoded, template_reads) = decode_both_ways(&body).unwrap();
        assert_eq!(decoded.len(), records.len());
        let seqs: Vec<&str> = decoded.iter().map(|r| &*r.meta.sequence_number).collect();
        assert_eq!(seqs, (1..=16).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(decoded[3].meta.partition_key, "a\"bé");
        assert_eq!(decoded[2].meta.arrival_ms, 1_700_000_000_000);
        assert_eq!(decoded[11].data.as_deref().unwrap(), br#"{"a":1}"#);
        let shards: Vec<&str> = decoded.iter().map(|r| &*r.meta.shard_id).collect();
        let mut expected = vec!["shardId-000000000001"; 6];
        // Records 7 and 8 have spaces around every ':', in values too.
        expected.extend(["shardId-000000000001 "; 2]);
        expected.extend(["shardId-2", "shardId-2", "unknown-shard", "unknown-shard"]);
        expected.extend(["shardId-3", "shardId-3"]);
        expected.extend(["shardId-000000000001"; 2]);
        assert_eq!(shards, expected);
        let arrivals: Vec<i64> = decoded.iter().map(|r| r.meta.arrival_ms).collect();
        let base = 1_700_000_000_000;
        let mut expected = vec![base + 123, base + 1000, base, base + 2500, base + 3250];
        expected.extend([base + 3250, base + 4000, base + 4000, 0, 0, 0, 0, 0, 0]);
        expected.extend([base + 5000, base + 6000]);
        assert_eq!(arrivals, expected);
        // Records 2-5, 8, 10, 14 and 16 have the shape of the record before them; 12 does too,
        // but 11 repeats a key the template needs, so it leaves no template.
        assert_eq!(template_reads, 8);
    }

    #[test]
    fn templates_reject_what_a_full_read_rejects() {
        // Every one-byte change, removal and insertion in the later records of a batch: the
        // template path must accept and reject exactly what the full read does.
        let records = varied_records();
        let body = format!(
            r#"{{"Records":[{},{}]}}"#,
            records[0],
            records[1..3].join(",")
        );
        let from = body.find(r#""sequenceNumber":"2""#).unwrap() - 40;
        let mut rejected = 0;
        for at in from..body.len() {
            let mut variants: Vec<String> = b"\"\\ x1.e-}],:{\x01"
                .iter()
                .map(|b| {
                    let mut v = body.clone().into_bytes();
                    v[at] = *b;
                    String::from_utf8(v).unwrap()
                })
                .collect();
            variants.push(format!("{}{}", &body[..at], &body[at + 1..]));
            variants.push(format!("{}0{}", &body[..at], &body[at..]));
            for variant in &variants {
                rejected += usize::from(decode_both_ways(variant).is_err());
            }
        }
        assert!(rejected > 1000, "{rejected}");
    }

    #[test]
    fn kpl_aggregates_become_their_sub_records() {
        let agg = crate::kinesis::kpl::aggregate(&[
            ("k1", &br#"{"a":1}"#[..]),
            ("k2", &br#"{"a":2}"#[..]),
            ("k1", &br#"{"a":3}"#[..]),
        ]);
        let mut corrupt = agg.clone();
        corrupt[6] ^= 0x40;
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(b)
        };
        let body = event(&[
            ("shardId-000000000000", "1", "plain", "eyJhIjowfQ=="),
            ("shardId-000000000000", "2", "outer", &b64(&agg)),
            ("shardId-000000000000", "3", "bad", &b64(&corrupt)),
            ("shardId-000000000000", "4", "plain", "eyJhIjo0fQ=="),
        ]);
        let recs = decode_kinesis_event(&body).unwrap();
        let seen: Vec<(&str, &str, Option<u32>)> = recs
            .iter()
            .map(|r| {
                (
                    &*r.meta.sequence_number,
                    &*r.meta.partition_key,
                    r.meta.sub_sequence,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("1", "plain", None),
                ("2", "k1", Some(0)),
                ("2", "k2", Some(1)),
                ("2", "k1", Some(2)),
                ("3", "bad", None),
                ("4", "plain", None),
            ]
        );
        assert_eq!(recs[3].data.as_deref().unwrap(), br#"{"a":3}"#);
        assert_eq!(recs[4].aggregate_error, Some(AggregateError::Digest));
        assert_eq!(recs[4].data.as_deref().unwrap(), &corrupt[..]);
        assert!(cmp_positions(&recs[2].meta, &recs[3].meta).is_lt());
        assert!(cmp_positions(&recs[3].meta, &recs[5].meta).is_lt());
    }

    #[test]
    fn bad_base64_is_kept_for_quarantine() {
        let body = event(&[("shardId-000000000000", "1", "k", "not base64!")]);
        let recs = decode_kinesis_event(&body).unwrap();
        assert_eq!(recs[0].data.as_ref().unwrap_err(), "not base64!");
    }

    #[test]
    fn payloads_after_an_undecodable_record_keep_their_own_bytes() {
        let body = event(&[
            ("shardId-000000000000", "1", "a", "eyJhIjoxfQ=="),
            ("shardId-000000000000", "2", "b", "not base64!"),
            ("shardId-000000000000", "3", "c", ""),
            ("shardId-000000000000", "4", "d", "eyJiIjoyfQ=="),
        ]);
        let recs = decode_kinesis_event(&body).unwrap();
        let data: Vec<Result<&[u8], &str>> = recs
            .iter()
            .map(|r| r.data.as_deref().map_err(|t| t.as_ref()))
            .collect();
        assert_eq!(
            data,
            [
                Ok(&br#"{"a":1}"#[..]),
                Err("not base64!"),
                Ok(&b""[..]),
                Ok(&br#"{"b":2}"#[..]),
            ]
        );
    }

    #[test]
    fn escaped_strings_are_unescaped() {
        let body = r#"{"Records":[{"kinesis":{"partitionKey":"a\/b","sequenceNumber":"1","data":"e30=","approximateArrivalTimestamp":1.5},"eventID":"shardId-1:1","eventSourceARN":"arn:aws:kinesis:eu-west-1:1:stream\/s1\/consumer\/c:1"}]}"#;
        let recs = decode_kinesis_event(body).unwrap();
        assert_eq!(recs[0].meta.partition_key, "a/b");
        assert_eq!(recs[0].meta.stream, "s1");
        assert_eq!(recs[0].meta.arrival_ms, 1500);
    }

    #[test]
    fn each_record_keeps_its_own_stream() {
        let rec = |arn: &str| {
            format!(
                r#"{{"kinesis":{{"sequenceNumber":"1","data":"e30="}},"eventID":"shardId-1:1","eventSourceARN":"{arn}"}}"#
            )
        };
        let body = format!(
            r#"{{"Records":[{},{},{},{}]}}"#,
            rec("arn:aws:kinesis:r:1:stream/a"),
            rec("arn:aws:kinesis:r:1:stream/a"),
            rec("arn:aws:kinesis:r:1:stream/ba"),
            rec("arn:aws:kinesis:r:1:stream/b/consumer/c:1")
        );
        let names: Vec<String> = decode_kinesis_event(&body)
            .unwrap()
            .iter()
            .map(|r| r.meta.stream.to_string())
            .collect();
        assert_eq!(names, ["a", "a", "ba", "b"]);
    }

    #[test]
    fn not_a_kinesis_event_is_an_error() {
        assert!(decode_kinesis_event("[1,2]").is_err());
        assert_eq!(
            decode_kinesis_event("{\"Records\":[{\"kinesis\":{\"data\":\"e30=\"}}]}")
                .unwrap_err()
                .to_string(),
            "the event is not a Kinesis batch: record 0 has no kinesis.sequenceNumber"
        );
        assert!(matches!(
            decode_kinesis_event("{\"Records\":[{}]}"),
            Err(DecodeError::MissingField {
                field: "kinesis",
                ..
            })
        ));
        assert!(matches!(
            decode_kinesis_event(&event(&[("s", "1", "k", "e30=")]).replace("]}", "],}")),
            Err(DecodeError::NotJson(_))
        ));
        assert!(decode_kinesis_event(
            "{\"Records\":[{\"kinesis\":{\"sequenceNumber\":1,\"data\":\"\"}}]}"
        )
        .is_err());
        assert_eq!(decode_kinesis_event("{}").unwrap().len(), 0);
    }

    #[test]
    fn arrival_seconds_become_milliseconds_exactly() {
        for (seconds, ms) in [
            ("1700000000.123", 1_700_000_000_123),
            ("1700000000", 1_700_000_000_000),
            ("1700000000.1", 1_700_000_000_100),
            ("1700000000.1235", 1_700_000_000_124),
            ("1700000000.1234999", 1_700_000_000_123),
            ("1.700000000123E9", 1_700_000_000_123),
            ("1.7e9", 1_700_000_000_000),
            ("0.001", 1),
        ] {
            assert_eq!(arrival_ms(seconds), ms, "{seconds}");
        }
    }

    #[test]
    fn matches_aws_lambda_events_on_the_same_event() {
        let body = event(&[("shardId-000000000001", "42", "pk", "aGVsbG8=")]);
        let typed: aws_lambda_events::event::kinesis::KinesisEvent =
            serde_json::from_str(&body).unwrap();
        let slim = decode_kinesis_event(&body).unwrap();
        let t = &typed.records[0];
        assert_eq!(
            t.kinesis.sequence_number,
            slim[0].meta.sequence_number.as_str()
        );
        assert_eq!(t.kinesis.partition_key, slim[0].meta.partition_key);
        assert_eq!(t.kinesis.data.0, *slim[0].data.as_ref().unwrap());
        assert!(t
            .event_id
            .as_deref()
            .unwrap()
            .starts_with(&*slim[0].meta.shard_id));
    }

    #[test]
    fn arrival_format_matches_chrono() {
        let mut ms: i64 = -86_400_000 * 400;
        while ms < 4_102_444_800_000 {
            let meta = RecordMeta {
                stream: Cow::Borrowed(""),
                shard_id: Cow::Borrowed(""),
                sequence_number: "".into(),
                partition_key: Cow::Borrowed(""),
                arrival_ms: ms,
                sub_sequence: None,
            };
            let expected = meta
                .arrival()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            assert_eq!(meta.arrival_rfc3339(), expected);
            ms += 7_777_777_777 + 123;
        }
    }

    #[test]
    fn the_arrival_formatter_writes_what_the_plain_function_does() {
        let mut formatter = ArrivalFormatter::default();
        let mut ms: i64 = -86_400_000 * 400;
        while ms < 4_102_444_800_000 {
            // Runs of nearby times, as in a batch, then a jump.
            for step in [0, 0, 1, 1, 999, 59_000, 3_600_000, 3_600_000] {
                let (mut plain, mut cached) = (Vec::new(), Vec::new());
                push_rfc3339_millis(&mut plain, ms + step);
                formatter.push(&mut cached, ms + step);
                assert_eq!(plain, cached, "{}", ms + step);
            }
            ms += 7_777_777_777 + 123;
        }
    }
}
