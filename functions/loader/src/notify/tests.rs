use super::*;
use serde_json::json;

fn s3_event(key: &str) -> Value {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2024-03-05T07:31:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "c",
               "bucket": {"name": "raw-bucket", "arn": "arn:aws:s3:::raw-bucket"},
               "object": {"key": key, "size": 1024, "eTag": "\"abc123\"", "sequencer": "0A1B"}}
    }]})
}

fn obj(key: &str) -> ObjectRef {
    ObjectRef {
        bucket: "raw-bucket".into(),
        key: key.into(),
        size: Some(1024),
        etag: Some("abc123".into()),
    }
}

#[test]
fn decodes_plus_percent_slash_and_unicode() {
    assert_eq!(decode_key("raw%2Fa%2Fb.csv").unwrap(), "raw/a/b.csv");
    assert_eq!(
        decode_key("my+file+%C3%A9.ndjson.gz").unwrap(),
        "my file é.ndjson.gz"
    );
    assert_eq!(decode_key("a%2Bb+c").unwrap(), "a+b c");
    assert_eq!(decode_key("plain/key.csv").unwrap(), "plain/key.csv");
    assert_eq!(decode_key("100%25").unwrap(), "100%");
    assert!(matches!(decode_key("bad%FF%FE"), Err(NotifyError::Key(_))));
}

#[test]
fn direct_s3_event() {
    let inv = parse_invocation(&s3_event("raw/t/2024/01/01/00/my+file+%C3%A9.ndjson.gz")).unwrap();
    assert_eq!(inv.trigger, Trigger::S3);
    assert_eq!(inv.items.len(), 1);
    assert_eq!(inv.items[0].message_id, None);
    assert_eq!(
        inv.items[0].notification,
        Ok(Notification::Objects(vec![obj(
            "raw/t/2024/01/01/00/my file é.ndjson.gz"
        )]))
    );
}

#[test]
fn moto_style_record_without_user_identity_and_encoded_slashes() {
    let body = json!({"Records": [{"eventVersion": "2.1", "eventSource": "aws:s3",
        "awsRegion": "us-east-1", "eventTime": "2024-03-05T07:31:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": "raw-bucket"},
               "object": {"key": "raw%2Fsensor_readings%2F2024%2Fa.ndjson.gz", "size": 10}}}]});
    let n = parse_body(&body.to_string()).unwrap();
    assert_eq!(n.objects()[0].key, "raw/sensor_readings/2024/a.ndjson.gz");
    assert_eq!(n.objects()[0].etag, None);
}

#[test]
fn sqs_with_plain_sns_test_eventbridge_and_garbage_bodies() {
    let sns = json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": s3_event("raw/t/x+y.csv").to_string()});
    let test = json!({"Service": "Amazon S3", "Event": "s3:TestEvent", "Time": "2024-03-05T07:31:00Z",
        "Bucket": "raw-bucket", "RequestId": "r", "HostId": "h"});
    let eb = json!({"version": "0", "id": "e", "detail-type": "Object Created", "source": "aws.s3",
        "account": "1", "time": "2024-03-05T07:31:00Z", "region": "us-east-1", "resources": [],
        "detail": {"version": "0", "bucket": {"name": "raw-bucket"},
                   "object": {"key": "raw/t/a b+c.csv", "size": 5, "etag": "e1"}}});
    let msg = |id: &str, body: String| {
        json!({"messageId": id, "receiptHandle": "rh", "body": body,
        "attributes": {}, "messageAttributes": {}, "md5OfBody": "x", "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:1:q", "awsRegion": "us-east-1"})
    };
    let event = json!({"Records": [
        msg("1", s3_event("raw%2Ft%2Fa.csv").to_string()),
        msg("2", sns.to_string()),
        msg("3", test.to_string()),
        msg("4", eb.to_string()),
        msg("5", "not json".into()),
        msg("6", json!({"hello": 1}).to_string()),
    ]});
    let inv = parse_invocation(&event).unwrap();
    assert_eq!(inv.trigger, Trigger::Sqs);
    let ids: Vec<_> = inv
        .items
        .iter()
        .map(|i| i.message_id.clone().unwrap())
        .collect();
    assert_eq!(ids, ["1", "2", "3", "4", "5", "6"]);
    assert_eq!(
        inv.items[0].notification.as_ref().unwrap().objects()[0].key,
        "raw/t/a.csv"
    );
    assert_eq!(
        inv.items[1].notification.as_ref().unwrap().objects()[0].key,
        "raw/t/x y.csv"
    );
    assert_eq!(inv.items[2].notification, Ok(Notification::TestEvent));
    let eb_obj = &inv.items[3].notification.as_ref().unwrap().objects()[0];
    assert_eq!(
        eb_obj.key, "raw/t/a b+c.csv",
        "EventBridge keys are not URL-decoded"
    );
    assert_eq!(eb_obj.etag.as_deref(), Some("e1"));
    assert!(matches!(
        inv.items[4].notification,
        Err(NotifyError::Json(_))
    ));
    assert!(matches!(
        inv.items[5].notification,
        Err(NotifyError::Shape(_))
    ));
}

#[test]
fn direct_eventbridge_and_other_detail_types() {
    let eb = json!({"detail-type": "Object Created", "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "raw/t/%41.csv"}}});
    let inv = parse_invocation(&eb).unwrap();
    assert_eq!(inv.trigger, Trigger::EventBridge);
    assert_eq!(
        inv.items[0].notification.as_ref().unwrap().objects()[0].key,
        "raw/t/%41.csv"
    );
    let deleted = json!({"detail-type": "Object Deleted", "source": "aws.s3",
        "detail": {"bucket": {"name": "b"}, "object": {"key": "k"}}});
    assert_eq!(
        parse_invocation(&deleted).unwrap().items[0].notification,
        Ok(Notification::Objects(vec![]))
    );
}

#[test]
fn removed_objects_are_not_loaded_and_sns_invocations_work() {
    let mut ev = s3_event("raw/t/a.csv");
    ev["Records"][0]["eventName"] = json!("ObjectRemoved:Delete");
    assert_eq!(
        parse_invocation(&ev).unwrap().items[0].notification,
        Ok(Notification::Objects(vec![]))
    );
    let sns = json!({"Records": [{"EventSource": "aws:sns", "Sns": {"Type": "Notification",
        "Message": s3_event("raw/t/a.csv").to_string()}}]});
    let inv = parse_invocation(&sns).unwrap();
    assert_eq!(inv.trigger, Trigger::Sns);
    assert_eq!(
        inv.items[0].notification.as_ref().unwrap().objects()[0].key,
        "raw/t/a.csv"
    );
}

#[test]
fn unknown_shapes_are_errors() {
    assert!(parse_invocation(&json!({"foo": 1})).is_err());
    assert!(parse_invocation(&json!([1, 2])).is_err());
    assert!(parse_body("{\"Records\": 5}").is_err());
}

#[test]
fn sample_events_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    for (file, trigger, keys) in [
        (
            "s3-put.json",
            Trigger::S3,
            vec!["raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz"],
        ),
        (
            "sqs-s3-notification.json",
            Trigger::Sqs,
            vec![
                "raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz",
                "raw/order_events/2024/03/05/07/shardId-000000000001-7-9.csv.gz",
            ],
        ),
        (
            "sqs-sns-s3-notification.json",
            Trigger::Sqs,
            vec!["raw/sensor_readings/2024/03/05/07/my file é.ndjson.gz"],
        ),
        (
            "eventbridge-object-created.json",
            Trigger::EventBridge,
            vec!["raw/sensor_readings/2024/03/05/07/shardId-000000000000-101-103.ndjson.gz"],
        ),
    ] {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        let inv = parse_invocation(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(inv.trigger, trigger, "{file}");
        let got: Vec<String> = inv
            .items
            .iter()
            .flat_map(|i| i.notification.as_ref().expect(file).objects().to_vec())
            .map(|o| o.key)
            .collect();
        assert_eq!(got, keys, "{file}");
    }
}
