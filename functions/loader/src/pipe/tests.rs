use super::*;

fn pipe() -> PipeName {
    pipe_for("\"DB\".\"S\".\"SENSOR_READINGS_RAW\"", "_pipe").unwrap()
}

#[test]
fn a_tables_pipe_is_beside_it_and_fully_qualified() {
    let p = pipe();
    assert_eq!(p.quoted, "\"DB\".\"S\".\"SENSOR_READINGS_RAW_PIPE\"");
    assert_eq!(p.rest, "DB.S.SENSOR_READINGS_RAW_PIPE");
    assert_eq!(
        endpoint_path(&p, Endpoint::InsertFiles),
        "/v1/data/pipes/DB.S.SENSOR_READINGS_RAW_PIPE/insertFiles"
    );
    assert_eq!(
        endpoint_path(&p, Endpoint::LoadHistoryScan),
        "/v1/data/pipes/DB.S.SENSOR_READINGS_RAW_PIPE/loadHistoryScan"
    );
    // a case-sensitive stored name keeps its case; a space is escaped in the path
    let odd = pipe_for("\"my db\".\"S\".\"t\"", "_PIPE").unwrap();
    assert_eq!(odd.rest, "my%20db.S.t_PIPE");
    assert!(pipe_for("\"S\".\"T\"", "_PIPE")
        .unwrap_err()
        .contains("fully qualified"));
    assert!(pipe_for("\"D\".\"a.b\".\"T\"", "_PIPE").is_err());
}

fn file<'a>(path: &'a str, messages: &[&'a str]) -> PipeFile<'a> {
    PipeFile {
        path,
        etag: Some("e"),
        message_ids: messages.iter().copied().collect(),
    }
}

#[test]
fn requests_are_chunks_of_5000_with_deterministic_ids() {
    let paths: Vec<String> = (0..5001).map(|i| format!("t/f{i:05}.ndjson.gz")).collect();
    let files: Vec<PipeFile<'_>> = paths.iter().rev().map(|p| file(p, &["m1"])).collect();
    let requests = insert_requests(&pipe(), &files).unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].files.len(), MAX_FILES_PER_INSERT);
    assert_eq!(requests[1].files, ["t/f05000.ndjson.gz"]);
    assert_eq!(requests[0].files[0], "t/f00000.ndjson.gz", "sorted by path");
    let body: serde_json::Value = serde_json::from_slice(&requests[1].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"files": [{"path": "t/f05000.ndjson.gz"}]})
    );
    // the same files and messages: the same ids; another message: another id
    let again = insert_requests(&pipe(), &files).unwrap();
    assert_eq!(requests[0].request_id, again[0].request_id);
    assert_ne!(requests[0].request_id, requests[1].request_id);
    let other = insert_requests(&pipe(), &[file("t/f05000.ndjson.gz", &["m2"])]).unwrap();
    assert_ne!(other[0].request_id, requests[1].request_id);
}

#[test]
fn a_path_over_1024_bytes_is_refused() {
    let long = "é".repeat(513);
    assert_eq!(
        insert_requests(&pipe(), &[file(&long, &[])]).unwrap_err(),
        PathTooLong(1026)
    );
}

fn report(json: serde_json::Value) -> Report {
    serde_json::from_value(json).unwrap()
}

#[test]
fn reports_settle_final_statuses_only() {
    let r = report(serde_json::json!({
        "pipe": "DB.S.P", "completeResult": true, "nextBeginMark": "1_7",
        "files": [
            {"path": "t/a.ndjson.gz", "status": "LOAD_IN_PROGRESS", "rowsInserted": 0},
            {"path": "t/a.ndjson.gz", "status": "LOADED", "rowsInserted": 3, "rowsParsed": 3, "complete": true},
            {"path": "t/b.ndjson.gz", "status": "LOAD_FAILED", "rowsInserted": 0, "errorsSeen": 1,
             "firstError": "Error parsing JSON: garbage", "firstErrorLineNum": 2},
            {"path": "t/c.ndjson.gz", "status": "PARTIALLY_LOADED", "rowsInserted": 1, "firstError": "bad row"},
            {"path": "t/d.ndjson.gz", "status": "LOAD_IN_PROGRESS"},
            {"path": "t/other.ndjson.gz", "status": "LOADED", "rowsInserted": 9}
        ]
    }));
    assert_eq!(r.next_mark().as_deref(), Some("1_7"));
    assert!(r.complete());
    let mut pending: BTreeSet<&str> = [
        "t/a.ndjson.gz",
        "t/b.ndjson.gz",
        "t/c.ndjson.gz",
        "t/d.ndjson.gz",
    ]
    .into();
    let settled = settle(&r, &mut pending);
    assert_eq!(settled["t/a.ndjson.gz"], FileOutcome::Loaded { rows: 3 });
    assert_eq!(
        settled["t/b.ndjson.gz"],
        FileOutcome::failed("LOAD_FAILED: Error parsing JSON: garbage (line 2)")
    );
    assert!(
        matches!(&settled["t/c.ndjson.gz"], FileOutcome::Failed { error } if error.starts_with("PARTIALLY_LOADED (1 row(s)") && error.ends_with("bad row"))
    );
    assert_eq!(
        pending,
        BTreeSet::from(["t/d.ndjson.gz"]),
        "in progress stays pending"
    );
    assert!(
        !settled.contains_key("t/other.ndjson.gz"),
        "a file not asked about is ignored"
    );
}

#[test]
fn other_spellings_of_a_report() {
    // a numeric mark, completeResult as a string, a path with the stage's prefix
    let r = report(serde_json::json!({
        "nextBeginMark": 12, "completeResult": "false",
        "files": [{"path": "raw/t/a.ndjson.gz", "status": "loaded", "rowsInserted": 2},
                  {"path": "t/b.ndjson.gz", "status": "Load failed", "systemError": "table gone"}]
    }));
    assert_eq!(r.next_mark().as_deref(), Some("12"));
    assert!(!r.complete());
    let mut pending: BTreeSet<&str> = ["t/a.ndjson.gz", "t/b.ndjson.gz"].into();
    let settled = settle(&r, &mut pending);
    assert_eq!(settled["t/a.ndjson.gz"], FileOutcome::Loaded { rows: 2 });
    assert_eq!(
        settled["t/b.ndjson.gz"],
        FileOutcome::failed("LOAD_FAILED: table gone")
    );
    assert!(report(serde_json::json!({})).files.is_empty());
}

#[test]
fn history_times_are_iso_8601_utc_with_milliseconds() {
    let t = chrono::DateTime::from_timestamp_millis(1_709_622_000_123).unwrap();
    assert_eq!(history_time(t), "2024-03-05T07:00:00.123Z");
}
