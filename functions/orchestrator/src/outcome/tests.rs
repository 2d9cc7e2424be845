use super::*;

fn object(table: &str, records: usize, min_sequence_number: &str) -> PlannedObject {
    PlannedObject {
        key: format!("raw/{table}/{min_sequence_number}.json.gz"),
        body: vec![b'x'; 10 * records].into(),
        content_type: "application/x-ndjson",
        content_encoding: Some("gzip"),
        table: Some(table.to_string()),
        records,
        min_sequence_number: min_sequence_number.to_string(),
    }
}

fn plan(objects: Vec<PlannedObject>, quarantined: usize, records: usize) -> Plan {
    Plan {
        objects,
        quarantine: (quarantined > 0).then(|| object("quarantine", quarantined, "1")),
        records,
        quarantined,
        bytes_in: 100,
    }
}

#[test]
fn counts_written_failed_and_unconfirmed_objects() {
    let plan = plan(vec![object("a", 3, "10"), object("a", 2, "20")], 1, 6);
    let deadline = PutError::Deadline {
        bucket: "b".into(),
        key: plan.objects[1].key.clone(),
    };
    let outcome = BatchOutcome::new(&plan, &[], &[(&plan.objects[1], deadline)]);
    assert_eq!(
        (
            outcome.records,
            outcome.quarantined,
            outcome.objects_written,
            outcome.objects_failed,
            outcome.objects_unconfirmed
        ),
        (6, 1, 2, 1, 1)
    );
    assert_eq!((outcome.in_objects, outcome.mismatches), (5, 0));
    assert_eq!(outcome.bytes_out, 60);
    assert_eq!(outcome.table.as_deref(), Some("a"));
    assert_eq!(outcome.newest_arrival_ms, None);
}

#[test]
fn mixed_tables_have_no_table_and_a_lost_record_is_a_mismatch() {
    let plan = plan(vec![object("a", 1, "10"), object("b", 1, "20")], 0, 3);
    let failed = PutError::Failed {
        bucket: "b".into(),
        key: plan.objects[0].key.clone(),
        message: "denied".into(),
    };
    let outcome = BatchOutcome::new(&plan, &[], &[(&plan.objects[0], failed)]);
    assert_eq!(outcome.table, None);
    assert_eq!(
        (outcome.objects_failed, outcome.objects_unconfirmed),
        (1, 0)
    );
    let emf = outcome.metrics("Test", 0);
    assert_eq!(emf.get("ReconciliationMismatches"), Some(1.0));
    assert_eq!(emf.get("LagMs"), None);
}
