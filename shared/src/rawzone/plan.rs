//! A Kinesis batch planned as raw-zone objects: pure, no I/O.
//!
//! Records are validated, routed and grouped by (table, field partition, arrival hour, shard);
//! each group becomes one object whose key depends only on its records, and every record that
//! cannot be used goes to one quarantine object with its reason.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::Write;

use crate::config::{ConfigError, Env};
use crate::kinesis::payload::{Extractor, JsonPointer, Payload, PayloadParser};
use crate::kinesis::record::KinesisRecord;
use crate::kinesis::route::{route_record, Router};
use crate::kinesis::scan::same_text;
use crate::kinesis::sequence::sequence_bounds;
use crate::rawzone::encode::csv::CsvMappings;
use crate::rawzone::encode::{flat, ndjson, Compression, Format, RowLineage};
use crate::rawzone::layout::{
    hour_of, partition_segment, sanitize, sanitize_cow, GroupKey, Layout, Writer,
};
use crate::rawzone::object::PlannedObject;
use crate::rawzone::quarantine::{self, RecordData, Rejected};
use crate::rawzone::s3::Destination;

/// Everything that decides what the orchestrator writes where.
#[derive(Debug, Clone)]
pub struct RawZoneConfig {
    /// The S3 bucket of the raw zone (`RAW_BUCKET`) and its objects' KMS key (`KMS_KEY_ID`).
    pub destination: Destination,
    /// The prefixes and key scheme of objects and quarantine objects.
    pub layout: Layout,
    /// Which table each record belongs to.
    pub router: Router,
    /// The text format of the objects (`FORMAT`).
    pub format: Format,
    /// The columns of each table's CSV files; None unless `FORMAT=csv`.
    pub csv: Option<CsvMappings>,
    /// Tables loaded by column name (`MATCH_BY_NAME_TABLES`, which the loader reads too): their
    /// NDJSON lines are flat, the record's fields then its lineage (see [`flat`]).
    pub match_by_name: BTreeSet<String>,
    /// How objects are compressed (`COMPRESSION`, `COMPRESSION_LEVEL`).
    pub compression: Compression,
    /// The field objects are also partitioned by (`PARTITION_FIELD`); None when unset.
    pub partition: Option<FieldPartition>,
    /// Every field the above reads, resolved in one pass per record.
    pub extractor: Extractor,
}

/// Optional partitioning of objects by a record field, like Firehose dynamic partitioning.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldPartition {
    /// The `name` of `name=value` in keys (`PARTITION_NAME`, default the field's last token),
    /// sanitised.
    pub name: String,
    /// Where the value is in the payload (`PARTITION_FIELD`).
    pub path: JsonPointer,
    slot: usize,
}

impl RawZoneConfig {
    /// `RAW_BUCKET` (required), `KMS_KEY_ID` and the variables of the layout, router, format, compression and
    /// field partition, every field they read registered in one extractor.
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let destination = Destination::from_env(env, "RAW_BUCKET")?;
        let layout = Layout::from_env(env)?;
        let mut extractor = Extractor::new();
        let router = Router::from_env(env, &mut extractor)?;
        let format = Format::from_env(env)?;
        let csv = match format {
            Format::Csv => Some(CsvMappings::from_env(
                env,
                &router.tables(),
                &mut extractor,
            )?),
            Format::Ndjson => None,
        };
        let match_by_name = match_by_name(env, format)?;
        let compression = Compression::from_env(env)?;
        let partition = match env.optional("PARTITION_FIELD") {
            None => None,
            Some(field) => {
                let path: JsonPointer = field
                    .parse()
                    .map_err(|e| ConfigError::new("PARTITION_FIELD", e))?;
                let default_name = path
                    .as_str()
                    .rsplit('/')
                    .next()
                    .unwrap_or("partition")
                    .to_string();
                // Sanitised once here, so grouping can compare names without re-sanitising.
                let name =
                    sanitize(&env.optional("PARTITION_NAME").unwrap_or(default_name)).into_owned();
                let slot = extractor.slot(&path);
                Some(FieldPartition { name, path, slot })
            }
        };
        Ok(Self {
            destination,
            layout,
            router,
            format,
            csv,
            match_by_name,
            compression,
            partition,
            extractor,
        })
    }

    /// Whether `table`'s lines are flat; a lookup only when some table is.
    fn is_flat(&self, table: &str) -> bool {
        !self.match_by_name.is_empty() && self.match_by_name.contains(table)
    }
}

/// `MATCH_BY_NAME_TABLES`: a JSON array of tables; only NDJSON loads by column name, so with
/// `FORMAT=csv` any table listed is a mistake, caught here rather than by a failing COPY.
fn match_by_name(env: &Env<'_>, format: Format) -> Result<BTreeSet<String>, ConfigError> {
    const VAR: &str = "MATCH_BY_NAME_TABLES";
    let tables: BTreeSet<String> = env.json_optional(VAR)?.unwrap_or_default();
    if format != Format::Ndjson && !tables.is_empty() {
        return Err(ConfigError::new(
            VAR,
            format!(
                "tables {tables:?} are loaded by column name, which needs NDJSON files, but \
                 FORMAT is {}",
                format.extension()
            ),
        ));
    }
    Ok(tables)
}

/// What one batch becomes.
#[derive(Debug, Default)]
pub struct Plan {
    /// One object per group, in group order (table, partition, hour, shard).
    pub objects: Vec<PlannedObject>,
    /// The batch's rejected records with their reasons; None when every record was accepted.
    pub quarantine: Option<PlannedObject>,
    /// Records in the batch, KPL sub-records counted one by one.
    pub records: usize,
    /// Records in the quarantine object.
    pub quarantined: usize,
    /// Payload bytes read, before encoding and compression.
    pub bytes_in: usize,
}

impl Plan {
    /// Bytes to put: every object's compressed body, the quarantine object's included.
    pub fn bytes_out(&self) -> usize {
        self.objects
            .iter()
            .chain(&self.quarantine)
            .map(|o| o.body.len())
            .sum()
    }
}

struct Accepted<'a, 'r> {
    record: &'r KinesisRecord<'a>,
    payload: Payload<'r>,
}

/// Plans the objects for a batch.
pub fn plan(config: &RawZoneConfig, records: &[KinesisRecord<'_>]) -> std::io::Result<Plan> {
    // A batch has few groups and consecutive records usually share one, so the last group is
    // tried first and a key is only allocated for a new group. Groups hold indices into one
    // vector of accepted records, sized once for the batch.
    let mut accepted: Vec<Accepted<'_, '_>> = Vec::with_capacity(records.len());
    let mut groups: Vec<(GroupKey, Vec<u32>)> = Vec::new();
    let mut last = 0;
    let mut rejected = Vec::new();
    let mut bytes_in = 0;
    let mut parser = config.extractor.parser();

    for record in records {
        bytes_in += record.data.as_ref().map_or_else(|t| t.len(), |b| b.len());
        match classify(config, &mut parser, record) {
            Ok((group, payload)) => {
                let found = groups
                    .get(last)
                    .filter(|(g, _)| group.matches(g))
                    .map(|_| last)
                    .or_else(|| groups.iter().position(|(g, _)| group.matches(g)));
                last = found.unwrap_or_else(|| {
                    groups.push((group.to_key(), Vec::new()));
                    groups.len() - 1
                });
                groups[last].1.push(accepted.len() as u32);
                accepted.push(Accepted { record, payload });
            }
            Err(reason) => rejected.push(Rejected {
                meta: record.meta.clone(),
                reason,
                data: RecordData::from_record(&record.data),
            }),
        }
    }

    groups.sort_by(|a, b| a.0.cmp(&b.0));
    let mut objects = Vec::with_capacity(groups.len());
    for (group, members) in groups {
        let members: Vec<&Accepted<'_, '_>> =
            members.iter().map(|i| &accepted[*i as usize]).collect();
        objects.push(encode_group(config, &group, &members)?);
    }
    let quarantine = quarantine::object(&config.layout, Writer::Orchestrator, &rejected)?;
    Ok(Plan {
        objects,
        quarantine,
        records: records.len(),
        quarantined: rejected.len(),
        bytes_in,
    })
}

/// A record's group, borrowed: compared against existing groups without allocating.
struct GroupRef<'r> {
    table: &'r str,
    /// (name, sanitised value) of the field partition.
    partition: Option<(&'r str, Cow<'r, str>)>,
    hour: i64,
    shard_id: &'r str,
}

impl GroupRef<'_> {
    fn matches(&self, key: &GroupKey) -> bool {
        let partition_matches = match (&self.partition, &key.partition) {
            (None, None) => true,
            (Some((name, value)), Some(segment)) => {
                segment.len() == name.len() + 1 + value.len()
                    && segment.starts_with(name)
                    && segment.as_bytes()[name.len()] == b'='
                    && segment.ends_with(value.as_ref())
            }
            _ => false,
        };
        self.hour == key.hour
            && same_text(self.table, &key.table)
            && same_text(self.shard_id, &key.shard_id)
            && partition_matches
    }

    fn to_key(&self) -> GroupKey {
        GroupKey {
            table: self.table.to_string(),
            partition: self
                .partition
                .as_ref()
                .map(|(name, value)| partition_segment(name, value)),
            hour: self.hour,
            shard_id: self.shard_id.to_string(),
        }
    }
}

fn classify<'a, 'r>(
    config: &'r RawZoneConfig,
    parser: &mut PayloadParser<'_, 'r>,
    record: &'r KinesisRecord<'a>,
) -> Result<(GroupRef<'r>, Payload<'r>), String> {
    let (table, payload) = route_record(&config.router, parser, record)?;
    let partition = match &config.partition {
        None => None,
        Some(p) => {
            // Missing or null is not a value: quarantined. The empty string is one, and like
            // every value it is compared in its sanitised form (`_empty`), so all of a group's
            // empty values share one object.
            let value = payload
                .text_of(p.slot)
                .ok_or_else(|| format!("partition field {} is missing or null", p.path))?;
            Some((p.name.as_str(), sanitize_cow(value)))
        }
    };
    if let Some(mapping) = config.csv.as_ref().and_then(|m| m.get(table)) {
        mapping.check(&payload).map_err(|e| e.to_string())?;
    }
    if config.is_flat(table) {
        flat::check_keys(payload.text())?;
    }
    let group = GroupRef {
        table,
        partition,
        hour: hour_of(record.meta.arrival_ms),
        shard_id: &record.meta.shard_id,
    };
    Ok((group, payload))
}

/// Lines are built in a small buffer and handed to the compressor in chunks, so a batch is never
/// held uncompressed in full.
const CHUNK: usize = 64 * 1024;

fn encode_group(
    config: &RawZoneConfig,
    group: &GroupKey,
    members: &[&Accepted<'_, '_>],
) -> std::io::Result<PlannedObject> {
    let (min, max) = sequence_bounds(
        members
            .iter()
            .map(|m| m.record.meta.sequence_number.as_ref()),
    )
    .unwrap_or(("0", "0"));
    let key = config
        .layout
        .object_key(group, min, max, config.format, config.compression);
    let mut out = config.compression.writer(members.len() * 64)?;
    let mut chunk = Vec::with_capacity(CHUNK + 4096);
    let csv = match config.format {
        Format::Csv => config.csv.as_ref().and_then(|m| m.get(&group.table)),
        Format::Ndjson => None,
    };
    if let Some(mapping) = csv {
        mapping.push_header(&mut chunk);
    }
    let flat = csv.is_none() && config.is_flat(&group.table);
    let mut lineage = match flat {
        true => RowLineage::flat(),
        false => RowLineage::new(config.format, &key),
    };
    for (i, m) in members.iter().enumerate() {
        let (meta, row) = (&m.record.meta, i as u64 + 1);
        match csv {
            Some(mapping) => mapping.push_row(&mut chunk, &m.payload, meta, &mut lineage, row),
            None if flat => flat::push_line(&mut chunk, &m.payload, meta, &mut lineage),
            None => ndjson::push_line(&mut chunk, &m.payload, meta, &mut lineage, row),
        }
        if chunk.len() >= CHUNK {
            out.write_all(&chunk)?;
            chunk.clear();
        }
    }
    out.write_all(&chunk)?;
    Ok(PlannedObject {
        key,
        body: out.finish()?.into(),
        content_type: config.format.content_type(),
        content_encoding: config.compression.content_encoding(),
        table: Some(group.table.clone()),
        records: members.len(),
        min_sequence_number: min.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinesis::record::{decode_kinesis_event, PayloadBuffer};
    use crate::rawzone::encode::decompress;

    fn config(vars: &[(&str, &str)]) -> RawZoneConfig {
        let mut all = vec![("RAW_BUCKET", "b")];
        all.extend_from_slice(vars);
        RawZoneConfig::from_env(&Env::new(&all)).unwrap()
    }

    fn text(object: &PlannedObject, c: Compression) -> String {
        String::from_utf8(decompress(c, &object.body).unwrap()).unwrap()
    }

    #[test]
    fn a_kpl_aggregated_sample_lands_the_same_lines_with_sub_record_lineage() {
        let body = include_str!("../../../events/kinesis-sensors.json");
        let aggregated = crate::sample::kpl_aggregated_event(body, usize::MAX);
        let originals: serde_json::Value = serde_json::from_str(body).unwrap();
        let originals = originals["Records"].as_array().unwrap();
        let config = config(&[
            ("TABLE", "sensor_readings"),
            ("PARTITION_FIELD", "/sensorId"),
        ]);
        let lines_of = |body: &str| {
            let mut payloads = PayloadBuffer::default();
            let records = decode_kinesis_event(body, &mut payloads).unwrap();
            let plan = plan(&config, &records).unwrap();
            let objects: Vec<(String, Vec<serde_json::Value>)> = plan
                .objects
                .iter()
                .map(|o| {
                    let lines = text(o, Compression::Gzip { level: 0 })
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect();
                    (o.key.clone(), lines)
                })
                .collect();
            objects
        };
        let (plain, kpl) = (lines_of(body), lines_of(&aggregated));
        assert_eq!(
            kpl,
            lines_of(&aggregated),
            "keys and lines are deterministic"
        );
        assert_eq!(plain.len(), kpl.len());
        for ((_, p), (_, k)) in plain.iter().zip(&kpl) {
            let payloads = |ls: &[serde_json::Value]| {
                ls.iter().map(|l| l["payload"].clone()).collect::<Vec<_>>()
            };
            assert_eq!(payloads(p), payloads(k));
            for (pl, kl) in p.iter().zip(k) {
                assert_eq!(
                    pl["metadata"]["partition_key"],
                    kl["metadata"]["partition_key"]
                );
                assert_eq!(
                    kl["metadata"]["sequence_number"],
                    originals[0]["kinesis"]["sequenceNumber"]
                );
                assert!(kl["metadata"]["sub_sequence"].is_u64());
                assert!(pl["metadata"].get("sub_sequence").is_none());
            }
        }
    }

    #[test]
    fn sample_sensor_event_becomes_one_object_per_partition() {
        let body = include_str!("../../../events/kinesis-sensors.json");
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(body, &mut payloads).unwrap();
        let plan = plan(
            &config(&[
                ("TABLE", "sensor_readings"),
                ("PARTITION_FIELD", "/sensorId"),
            ]),
            &records,
        )
        .unwrap();
        let keys: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "raw/sensor_readings/2024/11/21/14/sensorId=6/shardId-000000000000-49590338271490256608559692538361571095921575989136588800-49590338271490256608559692538361571095921575989136588805.ndjson.gz",
                "raw/sensor_readings/2024/11/21/14/sensorId=7/shardId-000000000000-49590338271490256608559692538361571095921575989136588801-49590338271490256608559692538361571095921575989136588804.ndjson.gz",
                "raw/sensor_readings/2024/11/21/14/sensorId=8/shardId-000000000000-49590338271490256608559692538361571095921575989136588803-49590338271490256608559692538361571095921575989136588803.ndjson.gz",
            ]
        );
        assert_eq!(
            plan.objects.iter().map(|o| o.records).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert!(plan.quarantine.is_none());
        let lines = text(&plan.objects[0], Compression::Gzip { level: 0 });
        let rows: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            rows.iter()
                .map(|r| r["payload"]["currentTemperature"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            [64, 65, 66]
        );
        assert_eq!(
            rows.iter()
                .map(|r| r["metadata"]["row"].as_i64().unwrap())
                .collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }

    #[test]
    fn sample_bad_records_are_quarantined_with_reasons() {
        let body = include_str!("../../../events/kinesis-bad-records.json");
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(body, &mut payloads).unwrap();
        let plan = plan(&config(&[("TABLE", "sensor_readings")]), &records).unwrap();
        assert_eq!((plan.records, plan.quarantined), (6, 4));
        assert_eq!(plan.objects.len(), 1);
        assert_eq!(plan.objects[0].records, 2);
        let q = plan.quarantine.as_ref().unwrap();
        assert_eq!(
            q.min_sequence_number,
            "49590338271490256608559692538361571095921575989136589001"
        );
        assert!(q
            .key
            .starts_with("errors/orchestrator/2024/11/21/14/shardId-000000000000-"));
        let reasons: Vec<String> = text(q, Compression::Gzip { level: 0 })
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(reasons.len(), 4);
        assert!(reasons[0].starts_with("payload is not valid JSON"));
        assert_eq!(
            reasons[1..],
            [
                "payload is not UTF-8",
                "payload is JSON but not an object",
                "data is not valid base64"
            ]
        );
    }

    /// A Kinesis event of `payloads`, sequence numbers 1, 2, … on shard `shardId-1`.
    fn event(payloads: &[&str]) -> String {
        let records: Vec<String> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| {
                use base64::Engine as _;
                format!(
                    r#"{{"kinesis":{{"partitionKey":"a","sequenceNumber":"{}","data":"{}","approximateArrivalTimestamp":0.5}},"eventID":"shardId-1:{}","eventSourceARN":"arn:aws:kinesis:r:1:stream/s"}}"#,
                    i + 1,
                    base64::engine::general_purpose::STANDARD.encode(p),
                    i + 1
                )
            })
            .collect();
        format!(r#"{{"Records":[{}]}}"#, records.join(","))
    }

    #[test]
    fn match_by_name_tables_get_flat_lines_and_lineage_collisions_are_quarantined() {
        let event = event(&[
            r#"{"n":1,"t":"a"}"#,
            r#"{"n":2,"Kinesis_Shard_Id":"mine"}"#,
            "{ }",
            "[1]",
        ]);
        let mut buffer = PayloadBuffer::default();
        let records = decode_kinesis_event(&event, &mut buffer).unwrap();
        let config = config(&[
            ("TABLE", "flat"),
            ("MATCH_BY_NAME_TABLES", r#"["flat","unrouted"]"#),
            ("COMPRESSION", "none"),
        ]);
        let plan = plan(&config, &records).unwrap();
        assert_eq!((plan.records, plan.quarantined), (4, 2));
        let lines: Vec<serde_json::Value> = text(&plan.objects[0], Compression::None)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let lineage = |seq: &str| {
            serde_json::json!({"KINESIS_STREAM":"s","KINESIS_SHARD_ID":"shardId-1",
                "KINESIS_SEQUENCE_NUMBER":seq,"KINESIS_PARTITION_KEY":"a",
                "KINESIS_ARRIVAL_TIME":"1970-01-01T00:00:00.500Z"})
        };
        let mut first = lineage("1");
        first["n"] = 1.into();
        first["t"] = "a".into();
        assert_eq!(lines, [first, lineage("3")]);
        let reasons: Vec<String> = text(
            plan.quarantine.as_ref().unwrap(),
            Compression::Gzip { level: 0 },
        )
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["reason"].to_string())
        .collect();
        assert!(reasons[0].contains("Kinesis_Shard_Id") && reasons[0].contains("KINESIS_SHARD_ID"));
        assert!(reasons[1].contains("not an object"), "{reasons:?}");
    }

    #[test]
    fn match_by_name_tables_need_ndjson() {
        let vars = [
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("FORMAT", "csv"),
            ("CSV_COLUMNS", r#"{"t":[{"name":"a","path":"/a"}]}"#),
            ("MATCH_BY_NAME_TABLES", r#"["t"]"#),
        ];
        let err = RawZoneConfig::from_env(&Env::new(&vars)).unwrap_err();
        assert_eq!(err.var, "MATCH_BY_NAME_TABLES", "{err}");
        let vars = [
            ("RAW_BUCKET", "b"),
            ("TABLE", "t"),
            ("MATCH_BY_NAME_TABLES", "t"),
        ];
        let err = RawZoneConfig::from_env(&Env::new(&vars)).unwrap_err();
        assert_eq!(err.var, "MATCH_BY_NAME_TABLES", "not JSON: {err}");
    }

    #[test]
    fn empty_partition_values_share_one_object_per_table_hour_and_shard() {
        // "" three times between other values, and a record without the field
        let payloads = [
            r#"{"city":"","n":1}"#,
            r#"{"city":"Oslo","n":2}"#,
            r#"{"city":"","n":3}"#,
            r#"{"n":4}"#,
            r#"{"city":"","n":5}"#,
        ];
        let event = event(&payloads);
        let mut buffer = PayloadBuffer::default();
        let records = decode_kinesis_event(&event, &mut buffer).unwrap();
        let plan = plan(
            &config(&[
                ("TABLE", "t"),
                ("PARTITION_FIELD", "/city"),
                ("COMPRESSION", "none"),
            ]),
            &records,
        )
        .unwrap();
        let objects: Vec<(&str, usize)> = plan
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.records))
            .collect();
        assert_eq!(
            objects,
            [
                ("raw/t/1970/01/01/00/city=Oslo/shardId-1-2-2.ndjson", 1),
                ("raw/t/1970/01/01/00/city=_empty/shardId-1-1-5.ndjson", 3),
            ]
        );
        let ns: Vec<i64> = text(&plan.objects[1], Compression::None)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["payload"]["n"]
                    .as_i64()
                    .unwrap()
            })
            .collect();
        assert_eq!(ns, [1, 3, 5]);
        assert_eq!(
            plan.quarantined, 1,
            "a missing field is not the empty value"
        );
    }

    #[test]
    fn groups_split_at_the_hour_and_keep_the_lowest_sequence_number() {
        let event = r#"{"Records":[
            {"kinesis":{"partitionKey":"a","sequenceNumber":"10","data":"eyJ4IjoxfQ==","approximateArrivalTimestamp":3599.5},"eventID":"shardId-1:10","eventSourceARN":"arn:aws:kinesis:r:1:stream/s"},
            {"kinesis":{"partitionKey":"a","sequenceNumber":"11","data":"eyJ4IjoyfQ==","approximateArrivalTimestamp":3600.5},"eventID":"shardId-1:11","eventSourceARN":"arn:aws:kinesis:r:1:stream/s"}]}"#;
        let mut payloads = PayloadBuffer::default();
        let records = decode_kinesis_event(event, &mut payloads).unwrap();
        let plan = plan(
            &config(&[("TABLE", "t"), ("COMPRESSION", "none")]),
            &records,
        )
        .unwrap();
        let keys: Vec<&str> = plan.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "raw/t/1970/01/01/00/shardId-1-10-10.ndjson",
                "raw/t/1970/01/01/01/shardId-1-11-11.ndjson"
            ]
        );
        assert_eq!(plan.objects[1].min_sequence_number, "11");
        assert_eq!(plan.bytes_in, 14);
    }
}
