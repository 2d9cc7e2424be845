//! Change-data-capture envelopes: what a Debezium or AWS DMS change event means for a row.
//!
//! With an envelope a table mapping's column paths are relative to the row image, and the
//! envelope decides the operation (upsert, delete, or a record that is only counted), which
//! image the columns come from, and the version that orders two changes of one row. This module
//! is pure: it reads values a [`Payload`] already holds and returns a decision.
//!
//! Formats:
//! - Debezium, JSON converter with or without `schema`/`payload` wrapping:
//!   <https://debezium.io/documentation/reference/stable/connectors/mysql.html#mysql-change-event-values>
//!   (`op` is `c`, `r` (snapshot read), `u`, `d` or `t` (truncate); `before`/`after` row images;
//!   `source.ts_ms`, and the source position: MySQL `file`/`pos`/`row`, Postgres `lsn`,
//!   <https://debezium.io/documentation/reference/stable/connectors/postgresql.html#postgresql-change-event-values>).
//!   A delete is followed by a tombstone (a null value) for Kafka log compaction.
//! - AWS DMS to Kinesis: `{"data": {...}, "metadata": {"timestamp", "record-type", "operation",
//!   "partition-key-type", "schema-name", "table-name", "transaction-id"?}}`,
//!   <https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Target.Kinesis.html>; `record-type` is
//!   `data` or `control` (create-table, drop-table, column changes), `operation` one of `load`,
//!   `insert`, `update`, `delete` for data. With `BeforeImageSettings` an update also carries the
//!   old values under a configured field name,
//!   <https://docs.aws.amazon.com/dms/latest/userguide/CHAP_Tasks.CustomizingTasks.TaskSettings.BeforeImage.html>.

use serde::Deserialize;

use shared::kinesis::payload::{Extractor, JsonPointer, Payload};

/// The envelope a table's records arrive in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvelopeKind {
    Debezium,
    Dms,
}

impl EnvelopeKind {
    fn name(self) -> &'static str {
        match self {
            EnvelopeKind::Debezium => "debezium",
            EnvelopeKind::Dms => "dms",
        }
    }

    /// The field that names the operation, for reasons.
    fn op_field(self) -> &'static str {
        match self {
            EnvelopeKind::Debezium => "op",
            EnvelopeKind::Dms => "metadata.operation",
        }
    }

    /// What this envelope calls `image`, for reasons.
    fn image_name(self, image: Image) -> &'static str {
        match (self, image) {
            (EnvelopeKind::Debezium, Image::New) => "after",
            (EnvelopeKind::Debezium, Image::Old) => "before",
            (EnvelopeKind::Dms, Image::New) => "data",
            (EnvelopeKind::Dms, Image::Old) => "before-image",
        }
    }
}

/// A record that is valid but changes no row: counted and logged, never applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Debezium `op: t`: applying a truncate to a merged table would need its own statement and
    /// is a decision for an operator, not for the stream.
    Truncate,
    /// A Debezium tombstone (null or empty value) that follows a delete for Kafka compaction.
    Tombstone,
    /// A DMS `record-type: control` record (table or column changes).
    Control,
}

impl Skip {
    /// The name the batch outcome and the log count it under.
    pub fn reason(self) -> &'static str {
        match self {
            Skip::Truncate => "debezium truncate",
            Skip::Tombstone => "debezium tombstone",
            Skip::Control => "dms control record",
        }
    }
}

/// An envelope that cannot be interpreted; its record is quarantined with this reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum EnvelopeError {
    #[error("{envelope} envelope: {field} is missing")]
    MissingOp {
        envelope: &'static str,
        field: &'static str,
    },
    #[error("{envelope} envelope: unknown operation {op:?}")]
    UnknownOp { envelope: &'static str, op: String },
    #[error("dms envelope: unknown record-type {0:?}")]
    UnknownRecordType(String),
    #[error("{envelope} envelope: operation {op:?} has no {image} row image")]
    MissingImage {
        envelope: &'static str,
        op: String,
        image: &'static str,
    },
}

/// Which image of a layout the columns are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Image {
    /// Debezium `after`, DMS `data`.
    New,
    /// Debezium `before`, DMS before-image.
    Old,
}

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Upsert from the new image; `old` names an old image whose key, when it differs, must be
    /// deleted (a primary-key change that DMS reports as one update).
    Upsert { old: Option<Image> },
    /// Delete the key of this image.
    Delete(Image),
}

/// The slots of one way an envelope can be laid out (Debezium has two: plain and wrapped).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Layout {
    op: usize,
    record_type: Option<usize>,
    /// Slots of the new and old image objects.
    images: [usize; 2],
    /// Slots of every mapped column inside the new and old image.
    columns: [Vec<usize>; 2],
    /// The image pointers, for quarantine reasons.
    image_paths: [String; 2],
    /// Version parts in order of significance.
    version: Vec<usize>,
}

/// Where an envelope kind keeps its fields, relative to the root of one layout.
struct Fields {
    op: &'static str,
    record_type: Option<&'static str>,
    /// The new and old image.
    images: [String; 2],
    /// Version parts in order of significance.
    version: &'static [&'static str],
}

impl Fields {
    /// `before_image` is the field DMS writes the before-image to.
    fn of(kind: EnvelopeKind, before_image: &str) -> Self {
        match kind {
            EnvelopeKind::Debezium => Fields {
                op: "/op",
                record_type: None,
                images: ["/after".into(), "/before".into()],
                version: &[
                    "/source/file",
                    "/source/pos",
                    "/source/row",
                    "/source/lsn",
                    "/source/ts_ms",
                ],
            },
            EnvelopeKind::Dms => Fields {
                op: "/metadata/operation",
                record_type: Some("/metadata/record-type"),
                images: [
                    "/data".into(),
                    // the configured field name as one pointer token (RFC 6901 escapes)
                    format!("/{}", before_image.replace('~', "~0").replace('/', "~1")),
                ],
                version: &["/metadata/timestamp", "/metadata/transaction-id"],
            },
        }
    }
}

impl Layout {
    /// Registers `fields` under `prefix`, then every column path under each image.
    fn register(
        prefix: &str,
        fields: &Fields,
        columns: &[&JsonPointer],
        x: &mut Extractor,
    ) -> Result<Self, String> {
        let mut slot = |p: &str| pointer(prefix, p).map(|p| x.slot(&p));
        let op = slot(fields.op)?;
        let record_type = fields.record_type.map(&mut slot).transpose()?;
        let version = fields
            .version
            .iter()
            .map(|v| slot(v))
            .collect::<Result<_, _>>()?;
        let images = &fields.images;
        let image_slots = [slot(&images[0])?, slot(&images[1])?];
        let mut cols: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for (i, image) in images.iter().enumerate() {
            for c in columns {
                cols[i].push(slot(&format!("{image}{}", c.as_str()))?);
            }
        }
        Ok(Layout {
            op,
            record_type,
            images: image_slots,
            columns: cols,
            image_paths: [
                format!("{prefix}{}", images[0]),
                format!("{prefix}{}", images[1]),
            ],
            version,
        })
    }

    /// The slot of column `i` in `image`.
    pub(crate) fn column_slot(&self, image: Image, i: usize) -> usize {
        self.columns[image as usize][i]
    }

    /// The pointer of `image`, e.g. `/payload/before`.
    pub(crate) fn image_path(&self, image: Image) -> &str {
        &self.image_paths[image as usize]
    }
}

/// An envelope's pointers, compiled into the batch's extractor at configuration time.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub kind: EnvelopeKind,
    layouts: Vec<Layout>,
    /// Debezium: the slot of `/payload`, whose presence means the wrapped layout.
    wrapper: Option<usize>,
}

/// How a record is to be applied.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision<'l> {
    Skip(Skip),
    Apply {
        change: Change,
        layout: &'l Layout,
        /// Ordered text of the envelope's version (see [`Envelope::interpret`]); `None` when
        /// the envelope carries none of its version fields.
        version: Option<String>,
    },
}

fn pointer(prefix: &str, rest: &str) -> Result<JsonPointer, String> {
    format!("{prefix}{rest}").parse()
}

impl Envelope {
    /// `debezium` or `dms`, for reasons and logs.
    pub fn kind_name(&self) -> &'static str {
        self.kind.name()
    }

    /// Registers the envelope's fields and every column path (relative to the row image) under
    /// each image. `before_image` is the field DMS writes the before-image to.
    pub(crate) fn new(
        kind: EnvelopeKind,
        columns: &[&JsonPointer],
        before_image: &str,
        x: &mut Extractor,
    ) -> Result<Self, String> {
        let fields = Fields::of(kind, before_image);
        let mut layout = |prefix: &str| Layout::register(prefix, &fields, columns, x);
        let (layouts, wrapper) = match kind {
            EnvelopeKind::Debezium => {
                let plain = layout("")?;
                let wrapped = layout("/payload")?;
                (vec![plain, wrapped], Some(x.slot(&"/payload".parse()?)))
            }
            EnvelopeKind::Dms => (vec![layout("")?], None),
        };
        Ok(Self {
            kind,
            layouts,
            wrapper,
        })
    }

    /// Interprets a record. Debezium: `c`, `r`, `u` upsert from `after`, `d` deletes the key of
    /// `before`, `t` is skipped, a wrapped null payload is a tombstone. DMS: `load`, `insert`,
    /// `update` upsert from `data` (an update with a before-image also deletes the old key when
    /// it differs), `delete` deletes the key of `data`, control records are skipped.
    ///
    /// The version is text that orders as the changes happened: Debezium's source position
    /// fields present (MySQL/MariaDB binlog `file`, `pos`, `row`; Postgres `lsn`), then
    /// `source.ts_ms`; DMS `metadata.timestamp` then `transaction-id`. Numbers are zero-padded
    /// and timestamps normalised so text order is numeric order; the Kinesis sequence number
    /// breaks ties.
    ///
    /// Debezium's position comes first because `ts_ms` cannot order a snapshot against the
    /// changes after it: a snapshot row carries the time it was read (milliseconds), a binlog
    /// change the time of its event (whole seconds on MySQL/MariaDB), so a change committed in
    /// the same second just after the snapshot read looked older than the snapshot's row and
    /// was dropped (the MariaDB table-equality run found it). The position of a snapshot row is
    /// the binlog position streaming resumes from, so every later change is past it.
    pub(crate) fn interpret<'l>(
        &'l self,
        payload: &Payload<'_>,
    ) -> Result<Decision<'l>, EnvelopeError> {
        let envelope = self.kind.name();
        let layout = match self.layout_of(payload) {
            Ok(layout) => layout,
            Err(skip) => return Ok(Decision::Skip(skip)),
        };
        if let Some(rt) = layout.record_type {
            match payload.text_of(rt).as_deref() {
                Some("control") => return Ok(Decision::Skip(Skip::Control)),
                Some("data") | None => {}
                Some(other) => return Err(EnvelopeError::UnknownRecordType(other.to_string())),
            }
        }
        let op = payload.text_of(layout.op).ok_or(EnvelopeError::MissingOp {
            envelope,
            field: self.kind.op_field(),
        })?;
        let change = match (self.kind, op.as_ref()) {
            (EnvelopeKind::Debezium, "c" | "r" | "u") => Change::Upsert { old: None },
            (EnvelopeKind::Debezium, "d") => Change::Delete(Image::Old),
            (EnvelopeKind::Debezium, "t") => return Ok(Decision::Skip(Skip::Truncate)),
            (EnvelopeKind::Dms, "load" | "insert") => Change::Upsert { old: None },
            (EnvelopeKind::Dms, "update") => Change::Upsert {
                old: has_object(payload, layout.images[Image::Old as usize]).then_some(Image::Old),
            },
            (EnvelopeKind::Dms, "delete") => Change::Delete(Image::New),
            (_, other) => {
                return Err(EnvelopeError::UnknownOp {
                    envelope,
                    op: other.to_string(),
                })
            }
        };
        let needed = match change {
            Change::Upsert { .. } => Image::New,
            Change::Delete(image) => image,
        };
        if !has_object(payload, layout.images[needed as usize]) {
            return Err(EnvelopeError::MissingImage {
                envelope,
                op: op.into_owned(),
                image: self.kind.image_name(needed),
            });
        }
        Ok(Decision::Apply {
            change,
            layout,
            version: version_text(self.kind, payload, &layout.version),
        })
    }

    /// The new row image of an upsert (Debezium `after`, DMS `data`) as raw JSON; None for a
    /// delete, a skipped record or one that cannot be interpreted.
    pub(crate) fn new_image<'p>(&self, payload: &Payload<'p>) -> Option<&'p str> {
        match self.interpret(payload).ok()? {
            Decision::Apply {
                change: Change::Upsert { .. },
                layout,
                ..
            } => payload.value(layout.images[Image::New as usize]),
            _ => None,
        }
    }

    /// The layout a record is in, or the skip a Debezium tombstone is. Wrapped when the plain
    /// op is absent and `payload` is there (the JSON converter with schemas enabled).
    fn layout_of(&self, payload: &Payload<'_>) -> Result<&Layout, Skip> {
        match self.wrapper {
            Some(w) if payload.value(self.layouts[0].op).is_none() => match payload.value(w) {
                Some("null") => Err(Skip::Tombstone),
                Some(_) => Ok(&self.layouts[1]),
                None => Ok(&self.layouts[0]),
            },
            _ => Ok(&self.layouts[0]),
        }
    }
}

fn has_object(payload: &Payload<'_>, slot: usize) -> bool {
    payload.value(slot).is_some_and(|v| v.starts_with('{'))
}

/// The version parts present joined with `/`, each made to order as text: digits zero-padded
/// to 20 (a u64), DMS timestamps as `YYYY-MM-DDTHH:MM:SS.nnnnnnnnn`. `None` when no part is
/// there, or (DMS) without the timestamp.
fn version_text(kind: EnvelopeKind, payload: &Payload<'_>, slots: &[usize]) -> Option<String> {
    let mut out = String::new();
    for (i, slot) in slots.iter().enumerate() {
        let Some(text) = payload.text_of(*slot) else {
            if i == 0 && kind == EnvelopeKind::Dms {
                return None;
            }
            continue;
        };
        if !out.is_empty() {
            out.push('/');
        }
        let text = text.trim();
        if !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("{text:0>20}"));
        } else if kind == EnvelopeKind::Dms && i == 0 {
            out.push_str(&dms_timestamp(text));
        } else {
            out.push_str(text);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// DMS writes `2019-10-31T22:37:59.791519Z`; normalised to nine fraction digits so shorter
/// fractions still order as times. Text that is not such a timestamp is kept as it is.
fn dms_timestamp(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| {
            t.with_timezone(&chrono::Utc)
                .format("%Y-%m-%dT%H:%M:%S%.9f")
                .to_string()
        })
        .or_else(|_| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string())
        })
        .unwrap_or_else(|_| text.to_string())
}

/// Whether a record's bytes are a Debezium tombstone: an empty or `null` value, or the JSON
/// converter's wrapping of one (`{"schema": null, "payload": null}`). Checked before routing,
/// since a tombstone has no field to route by.
pub fn is_tombstone(bytes: &[u8]) -> bool {
    let t = bytes.trim_ascii();
    if t.is_empty() || t == b"null" {
        return true;
    }
    // Only short objects can be a wrapped tombstone: real records are never parsed twice.
    t.len() <= 64
        && t.starts_with(b"{")
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(t)
            .is_ok_and(|m| m.contains_key("payload") && m.values().all(serde_json::Value::is_null))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(kind: EnvelopeKind) -> (Envelope, Extractor) {
        let mut x = Extractor::new();
        let cols: Vec<JsonPointer> = vec!["/id".parse().unwrap(), "/name".parse().unwrap()];
        let refs: Vec<&JsonPointer> = cols.iter().collect();
        let e = Envelope::new(kind, &refs, "before-image", &mut x).unwrap();
        (e, x)
    }

    fn decide(
        e: &Envelope,
        x: &Extractor,
        json: &str,
    ) -> Result<(Change, Option<String>, String), String> {
        let p = x.parse(json.as_bytes()).map_err(|e| e.to_string())?;
        match e.interpret(&p).map_err(|e| e.to_string())? {
            Decision::Skip(s) => Err(s.reason().into()),
            Decision::Apply {
                change,
                layout,
                version,
            } => {
                let image = match change {
                    Change::Upsert { .. } => Image::New,
                    Change::Delete(i) => i,
                };
                let id = p
                    .text_of(layout.column_slot(image, 0))
                    .map(|v| v.into_owned())
                    .unwrap_or_default();
                Ok((change, version, id))
            }
        }
    }

    #[test]
    fn a_debezium_change_just_after_a_snapshot_is_newer_than_the_snapshot_row() {
        let (e, x) = envelope(EnvelopeKind::Debezium);
        // Read at .700 of a second; changed in the same second, after the snapshot's position:
        // the binlog event's time is the whole second.
        let snapshot = r#"{"after":{"id":1},"op":"r","source":{"ts_ms":1700000000700,"snapshot":"true","file":"binlog.000001","pos":154,"row":0}}"#;
        let change = r#"{"before":{"id":1},"after":{"id":1},"op":"u","source":{"ts_ms":1700000000000,"file":"binlog.000001","pos":980,"row":0}}"#;
        let (_, snapshot, _) = decide(&e, &x, snapshot).unwrap();
        let (_, change, _) = decide(&e, &x, change).unwrap();
        assert!(change > snapshot, "{change:?} <= {snapshot:?}");
        let (_, none, _) = decide(&e, &x, r#"{"after":{"id":1},"op":"c","source":{}}"#).unwrap();
        assert_eq!(none, None);
    }

    #[test]
    fn debezium_operations() {
        let (e, x) = envelope(EnvelopeKind::Debezium);
        let src = r#""source":{"ts_ms":1700000000000,"file":"mysql-bin.000003","pos":154,"row":0}"#;
        let c = decide(
            &e,
            &x,
            &format!(r#"{{"before":null,"after":{{"id":1,"name":"a"}},"op":"c",{src}}}"#),
        )
        .unwrap();
        assert_eq!(c.0, Change::Upsert { old: None });
        assert_eq!(c.2, "1");
        assert_eq!(
            c.1.as_deref(),
            Some("mysql-bin.000003/00000000000000000154/00000000000000000000/00000001700000000000")
        );
        let d = decide(
            &e,
            &x,
            &format!(r#"{{"before":{{"id":2}},"after":null,"op":"d",{src}}}"#),
        )
        .unwrap();
        assert_eq!((d.0, d.2.as_str()), (Change::Delete(Image::Old), "2"));
        let r = decide(
            &e,
            &x,
            r#"{"after":{"id":3},"op":"r","source":{"ts_ms":5,"lsn":99}}"#,
        )
        .unwrap();
        assert_eq!(
            r.1.as_deref(),
            Some("00000000000000000099/00000000000000000005")
        );
        assert_eq!(
            decide(&e, &x, r#"{"op":"t","source":{"ts_ms":5}}"#).unwrap_err(),
            "debezium truncate"
        );
        // Wrapped by the JSON converter with schemas enabled.
        let w = decide(&e, &x, r#"{"schema":{"type":"struct"},"payload":{"before":{"id":4},"after":{"id":4,"name":"b"},"op":"u","source":{"ts_ms":7}}}"#).unwrap();
        assert_eq!((w.0, w.2.as_str()), (Change::Upsert { old: None }, "4"));
        assert_eq!(
            decide(&e, &x, r#"{"schema":null,"payload":null}"#).unwrap_err(),
            "debezium tombstone"
        );
        assert!(decide(&e, &x, r#"{"op":"x"}"#)
            .unwrap_err()
            .contains("unknown operation \"x\""));
        assert!(decide(&e, &x, r#"{"after":{"id":1}}"#)
            .unwrap_err()
            .contains("op is missing"));
        assert!(decide(&e, &x, r#"{"op":"d","before":null,"after":null}"#)
            .unwrap_err()
            .contains("operation \"d\" has no before row image"));
        assert!(decide(&e, &x, r#"{"op":"c","after":null}"#)
            .unwrap_err()
            .contains("no after row image"));
        assert!(is_tombstone(b"") && is_tombstone(b" null\n") && !is_tombstone(b"{}"));
        assert!(is_tombstone(br#"{"schema": null, "payload": null}"#));
        assert!(!is_tombstone(
            br#"{"schema": null, "payload": {"op": "c"}}"#
        ));
        assert!(!is_tombstone(br#"{"op": null}"#));
    }

    #[test]
    fn dms_operations() {
        let (e, x) = envelope(EnvelopeKind::Dms);
        let meta = |op: &str, rt: &str| {
            format!(
                r#""metadata":{{"timestamp":"2019-10-31T22:37:59.791519Z","record-type":"{rt}","operation":"{op}","partition-key-type":"primary-key","schema-name":"shop","table-name":"orders","transaction-id":8590720868}}"#
            )
        };
        for op in ["load", "insert", "update"] {
            let u = decide(
                &e,
                &x,
                &format!(r#"{{"data":{{"id":1}},{}}}"#, meta(op, "data")),
            )
            .unwrap();
            assert_eq!((u.0, u.2.as_str()), (Change::Upsert { old: None }, "1"));
            assert_eq!(
                u.1.as_deref(),
                Some("2019-10-31T22:37:59.791519000/00000000008590720868")
            );
        }
        let d = decide(
            &e,
            &x,
            &format!(r#"{{"data":{{"id":2}},{}}}"#, meta("delete", "data")),
        )
        .unwrap();
        assert_eq!(d.0, Change::Delete(Image::New));
        let bi = decide(
            &e,
            &x,
            &format!(
                r#"{{"data":{{"id":3}},"before-image":{{"id":2}},{}}}"#,
                meta("update", "data")
            ),
        )
        .unwrap();
        assert_eq!(
            bi.0,
            Change::Upsert {
                old: Some(Image::Old)
            }
        );
        assert_eq!(
            decide(
                &e,
                &x,
                &format!(r#"{{"control":{{}},{}}}"#, meta("create-table", "control"))
            )
            .unwrap_err(),
            "dms control record"
        );
        assert!(decide(
            &e,
            &x,
            &format!(r#"{{"data":{{"id":1}},{}}}"#, meta("merge", "data"))
        )
        .unwrap_err()
        .contains("unknown operation \"merge\""));
        assert!(decide(
            &e,
            &x,
            &format!(r#"{{"data":{{"id":1}},{}}}"#, meta("insert", "ddl"))
        )
        .unwrap_err()
        .contains("unknown record-type"));
        assert!(
            decide(&e, &x, &format!(r#"{{{}}}"#, meta("insert", "data")))
                .unwrap_err()
                .contains("has no data row image")
        );
        // Shorter fractions still order as times.
        assert!(
            dms_timestamp("2019-10-31T22:37:59.8Z") > dms_timestamp("2019-10-31T22:37:59.791519Z")
        );
    }
}
