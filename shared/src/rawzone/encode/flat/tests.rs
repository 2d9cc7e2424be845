use std::borrow::Cow;

use serde_json::{json, Map, Value};

use super::*;
use crate::kinesis::payload::Extractor;
use crate::sample::{cdc_change, order_event, sensor_reading, Rng};

fn meta(sub_sequence: Option<u32>) -> RecordMeta<'static> {
    RecordMeta {
        stream: Cow::Borrowed("sensors"),
        shard_id: Cow::Borrowed("shardId-000000000000"),
        sequence_number: "49590338271490256608559692538361571095921575989136588800".into(),
        partition_key: Cow::Borrowed("p\"k"),
        arrival_ms: 1_700_000_000_123,
        sub_sequence,
    }
}

/// The encoder's line for `text`, as one line of text.
fn line(text: &str, meta: &RecordMeta<'_>) -> String {
    let payload = Extractor::new().parse(text.as_bytes()).unwrap();
    let mut out = Vec::new();
    push_line(&mut out, &payload, meta, &mut RowLineage::flat());
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.ends_with("}\n") && out.matches('\n').count() == 1,
        "{out}"
    );
    out
}

/// The reference: serde_json parses the record and builds the same flat object.
fn reference(text: &str, meta: &RecordMeta<'_>) -> Value {
    let Value::Object(mut fields) = serde_json::from_str(text).unwrap() else {
        panic!("a record is an object")
    };
    let mut lineage = Map::new();
    lineage.insert(table::STREAM.into(), json!(meta.stream));
    lineage.insert(table::SHARD_ID.into(), json!(meta.shard_id));
    lineage.insert(
        table::SEQUENCE_NUMBER.into(),
        json!(meta.sequence_number.as_ref()),
    );
    lineage.insert(table::PARTITION_KEY.into(), json!(meta.partition_key));
    if let Some(sub) = meta.sub_sequence {
        lineage.insert(table::SUB_SEQUENCE.into(), json!(sub));
    }
    lineage.insert(
        table::ARRIVAL_TIME.into(),
        json!(chrono::DateTime::from_timestamp_millis(meta.arrival_ms)
            .unwrap()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()),
    );
    fields.extend(lineage);
    Value::Object(fields)
}

/// Whether the reference finds a top-level key that is a lineage key in any case.
fn reference_collides(text: &str) -> bool {
    let fields: Map<String, Value> = serde_json::from_str(text).unwrap();
    fields
        .keys()
        .any(|k| table::FLAT.iter().any(|n| k.eq_ignore_ascii_case(n)))
}

/// Generated records, and the shapes a text-level encoder can get wrong.
fn records() -> Vec<String> {
    let mut rng = Rng::new(7);
    let mut all: Vec<String> = (0..200)
        .flat_map(|n| {
            [
                sensor_reading(&mut rng, 50),
                order_event(&mut rng, n),
                cdc_change(&mut rng, 10, n),
            ]
        })
        .collect();
    all.extend(
        [
            "{}",
            "{ }",
            " {\n\t}\r\n",
            "{\"a\":1 }",
            "{\"a\":{\"b\":{}}}",
            "{\"a\":[1,{}]\n}",
            "\t{\"a\":\"}\" , \"b\" : null\r\n}  ",
            "{\"s\":\"\\u00e9\\\"\\\\\",\"n\":12345678901234567890123}",
            "{\"kinesis\":{\"KINESIS_SHARD_ID\":1},\"x_kinesis_y\":2}",
            "{\"source\":\"kinesis_stream\"}",
        ]
        .map(String::from),
    );
    all
}

#[test]
fn lines_equal_the_reference_for_every_record() {
    for sub in [None, Some(3)] {
        let meta = meta(sub);
        for text in records() {
            let got: Value = serde_json::from_str(&line(&text, &meta)).unwrap();
            assert_eq!(got, reference(&text, &meta), "{text}");
        }
    }
}

#[test]
fn the_record_is_copied_not_reserialised_and_lineage_comes_last_in_order() {
    let text = "{\"big\": 12345678901234567890123, \"z\":1.50 ,\"a\":2\n}";
    let got = line(text, &meta(Some(0)));
    assert!(got.starts_with("{\"big\": 12345678901234567890123, \"z\":1.50 ,\"a\":2,\"KINESIS_"));
    let keys: Vec<usize> = table::FLAT
        .iter()
        .map(|n| got.find(&format!("\"{n}\":")).unwrap())
        .collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{got}");
}

#[test]
fn collisions_equal_the_reference_and_name_the_key() {
    let mut texts = records();
    texts.extend(
        [
            r#"{"a":1,"kinesis_shard_id":"x"}"#,
            r#"{"KINESIS_STREAM":"x"}"#,
            r#"{"Kinesis_Arrival_Time":"x","b":2}"#,
            r#"{"KINESIS_SUB_SEQUENCE":0}"#,
            r#"{"kinesis_partition_key":null}"#,
            r#"{"kinesis_sequence_number":[]}"#,
            r#"{"\u004bINESIS_SHARD_ID":"escaped K"}"#,
            r#"{"KINESIS\u005fSHARD_ID":"escaped _"}"#,
            r#"{"a":"with \" escape","KINESIS_SHARD_IDS":1}"#,
            r#"{"nested":{"KINESIS_SHARD_ID":1},"KINESIS_X":2}"#,
            r#"{"a":"x\\","kinesis_shard_id":1}"#,
            r#"{"a":"\\u004b","KINESIS_X":1}"#,
            r#"{"a":"\"\\\/\b\f\n\r\t","KINESIS_STREAM":1}"#,
        ]
        .map(String::from),
    );
    for text in &texts {
        let got = check_keys(text);
        assert_eq!(got.is_err(), reference_collides(text), "{text}: {got:?}");
    }
    let reason = check_keys(r#"{"a":1,"kinesis_shard_id":"x"}"#).unwrap_err();
    assert!(
        reason.contains("\"kinesis_shard_id\"") && reason.contains(table::SHARD_ID),
        "{reason}"
    );
    assert!(check_keys(r#"{"\u004bINESIS_SHARD_ID":1}"#)
        .unwrap_err()
        .contains("\"KINESIS_SHARD_ID\""));
}

#[test]
fn searched_text_starts_every_lineage_key() {
    for name in table::FLAT {
        let start = &name.as_bytes()[..=SEARCHED.len()];
        assert!(
            start[..SEARCHED.len()].eq_ignore_ascii_case(SEARCHED),
            "{name}"
        );
        assert_eq!(start[SEARCHED.len()], b'_', "{name}");
    }
}
