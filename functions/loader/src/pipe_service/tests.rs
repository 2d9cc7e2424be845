use super::*;
use crate::notify::{Notification, Receipt};

fn item(receipt: Option<Receipt>) -> Item {
    Item {
        message_id: Some("m".into()),
        receipt,
        notification: Ok(Notification::Objects(vec![])),
    }
}

fn files(items: &[usize]) -> BTreeMap<String, PendingFile> {
    BTreeMap::from([(
        "t/a.ndjson.gz".to_string(),
        PendingFile {
            key: "raw/t/a.ndjson.gz".into(),
            etag: None,
            items: items.iter().copied().collect(),
        },
    )])
}

#[test]
fn a_first_receipt_is_not_a_redelivery_and_the_window_starts_before_it_was_sent() {
    let sent = chrono::Utc::now() - chrono::Duration::minutes(40);
    let receipt = |count| {
        Some(Receipt {
            receive_count: Some(count),
            sent_at_ms: Some(sent.timestamp_millis()),
        })
    };
    let items = [item(receipt(1)), item(receipt(3)), item(None)];
    let (redelivered, since) = receipt_window(&files(&[0]), &items);
    assert!(!redelivered);
    assert_eq!(
        since.timestamp_millis(),
        (sent - CLOCK_SKEW).timestamp_millis()
    );
    assert!(receipt_window(&files(&[0, 1]), &items).0);
    // a direct invocation: maybe a retry, and no sent time: 6 hours back
    let (redelivered, since) = receipt_window(&files(&[2]), &items);
    assert!(redelivered);
    assert!(chrono::Utc::now() - since >= chrono::Duration::hours(6));
}

#[test]
fn errors_say_what_to_do() {
    let http = |status| PipeError::Http {
        status,
        message: String::new(),
    };
    for s in [408, 429, 500, 503] {
        assert_eq!(http(s).recovery(), Recovery::Retry, "{s}");
    }
    assert_eq!(http(401).recovery(), Recovery::Fatal);
    assert_eq!(http(404).recovery(), Recovery::Reopen);
    assert_eq!(http(400).recovery(), Recovery::Reopen);
    assert_eq!(
        PipeError::Transport("reset".into()).recovery(),
        Recovery::Retry
    );
    match http_error(
        404,
        br#"{"data":null,"code":"390404","message":"Pipe not found","success":false}"#,
    ) {
        PipeError::Http {
            status: 404,
            message,
        } => assert_eq!(message, "390404: Pipe not found"),
        e => panic!("{e:?}"),
    }
}

#[test]
fn unreported_files_end_pending_never_loaded() {
    let files = files(&[0]);
    let run = Run {
        pipe: crate::pipe::pipe_for("\"D\".\"S\".\"T\"", "_PIPE").unwrap(),
        files: &files,
        pending: ["t/a.ndjson.gz"].into(),
        settled: BTreeMap::new(),
        since: String::new(),
    };
    let out = finish(run);
    assert!(
        matches!(&out[..], [(p, FileOutcome::Pending { reason })] if p == "t/a.ndjson.gz" && reason.contains("\"D\".\"S\".\"T_PIPE\""))
    );
}
