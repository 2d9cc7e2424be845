use super::*;

fn column(
    name: &str,
    data_type: &str,
    length: Option<&str>,
    p: Option<&str>,
    s: Option<&str>,
) -> TableColumn {
    TableColumn::from_information_schema(name, data_type, length, p, s)
}

#[test]
fn a_field_is_named_as_case_insensitive_matching_names_it() {
    assert_eq!(column_name("priority").unwrap(), "PRIORITY");
    assert_eq!(column_name("shipTo").unwrap(), "SHIPTO");
    assert_eq!(column_name("zoë").unwrap(), "ZOË");
    assert_eq!(column_name("two words").unwrap(), "TWO WORDS");
    assert!(column_name("a\"b")
        .unwrap_err()
        .contains("cannot be a column"));
    assert!(column_name(" lead").unwrap_err().contains("whitespace"));
    assert!(column_name("").is_err());
    assert!(column_name(&"x".repeat(256)).is_err());
}

#[test]
fn a_value_is_typed_as_schema_detection_types_json() {
    let n38 = Some(ColumnType::Number {
        precision: 38,
        scale: 0,
    });
    assert_eq!(detected_type("7"), n38);
    assert_eq!(detected_type("-7"), n38);
    assert_eq!(detected_type("7.5"), Some(ColumnType::Float));
    assert_eq!(detected_type("1e3"), Some(ColumnType::Float));
    assert_eq!(detected_type(&"9".repeat(39)), Some(ColumnType::Float));
    assert_eq!(detected_type(r#""high""#), Some(ColumnType::Text));
    assert_eq!(detected_type("true"), Some(ColumnType::Boolean));
    assert_eq!(detected_type("false"), Some(ColumnType::Boolean));
    assert_eq!(detected_type(r#"{"a":1}"#), Some(ColumnType::Variant));
    assert_eq!(detected_type("[1]"), Some(ColumnType::Variant));
    assert_eq!(detected_type("null"), None);
}

#[test]
fn information_schema_types_become_column_types() {
    let c = column("N", "NUMBER", None, Some("12"), Some("2"));
    assert_eq!(
        c.ty,
        Some(ColumnType::Number {
            precision: 12,
            scale: 2
        })
    );
    assert_eq!(c.sql(), "NUMBER(12,2)");
    let t = column("T", "TEXT", Some("10"), None, None);
    assert_eq!(
        (t.ty, t.sql()),
        (Some(ColumnType::Text), "VARCHAR(10)".to_string())
    );
    assert_eq!(
        column("F", "FLOAT", None, None, None).ty,
        Some(ColumnType::Float)
    );
    assert_eq!(
        column("V", "VARIANT", None, None, None).ty,
        Some(ColumnType::Variant)
    );
    assert_eq!(
        column("O", "OBJECT", None, None, None).ty,
        Some(ColumnType::Variant)
    );
    let b = column("B", "BINARY", Some("8"), None, None);
    assert_eq!((b.ty, b.sql()), (None, "BINARY".to_string()));
}

#[test]
fn values_fit_widen_or_drift() {
    let t = "\"DB\".\"S\".\"ORDERS\"";
    let number = column("PRIORITY", "NUMBER", None, Some("38"), Some("0"));
    assert_eq!(fit(t, &number, "3"), Fit::Fits(r#""3""#.into()));
    assert_eq!(
        fit(t, &number, r#""high""#),
        Fit::Drift(r#"schema drift: table "DB"."S"."ORDERS" column "PRIORITY": NUMBER(38,0) cannot hold a VARCHAR value: expected a number, got "high""#.into())
    );
    // More precision at the same scale is a widening; a scale never changes.
    let narrow = column("QTY", "NUMBER", None, Some("4"), Some("2"));
    match fit(t, &narrow, "12345.5") {
        Fit::Widen(w) => assert_eq!(w.sql(), "NUMBER(7,2)"),
        other => panic!("{other:?}"),
    }
    assert_eq!(fit(t, &narrow, "12.345"), Fit::Fits(r#""12.35""#.into()));
    let full = column("QTY", "NUMBER", None, Some("38"), Some("0"));
    assert!(matches!(fit(t, &full, &"9".repeat(39)), Fit::Drift(r) if r.contains("out of range")));
    let short = column("NOTE", "TEXT", Some("3"), None, None);
    assert_eq!(fit(t, &short, r#""abc""#), Fit::Fits(r#""abc""#.into()));
    match fit(t, &short, r#""abcdë""#) {
        Fit::Widen(w) => assert_eq!(w.sql(), "VARCHAR(5)"),
        other => panic!("{other:?}"),
    }
    let flag = column("FLAG", "BOOLEAN", None, None, None);
    assert!(
        matches!(fit(t, &flag, "[1]"), Fit::Drift(r) if r.contains("BOOLEAN cannot hold a VARIANT value"))
    );
    let binary = column("B", "BINARY", None, None, None);
    assert!(
        matches!(fit(t, &binary, "1"), Fit::Drift(r) if r.contains("does not write this column type"))
    );
}

fn rows(rows: &[&[(&str, &'static str)]]) -> Vec<Vec<(String, &'static str)>> {
    rows.iter()
        .map(|r| r.iter().map(|(f, v)| (f.to_string(), *v)).collect())
        .collect()
}

#[test]
fn a_batch_adds_each_new_column_once_widens_to_its_largest_value_and_caps() {
    let existing = [
        column("NOTE", "TEXT", Some("3"), None, None),
        column("QTY", "NUMBER", None, Some("4"), Some("0")),
    ];
    let batch = rows(&[
        &[("priority", "1"), ("note", r#""abcd""#)],
        &[
            ("Priority", r#""high""#),
            ("note", r#""abcdef""#),
            ("qty", "12"),
        ],
        &[("tags", "[1]"), ("qty", "123456")],
        &[("color", r#""red""#)],
    ]);
    let c = changes("T", &existing, batch.iter().map(Vec::as_slice), 2);
    let added: Vec<(String, String)> = c.add.iter().map(|c| (c.name.clone(), c.sql())).collect();
    assert_eq!(
        added,
        [
            ("PRIORITY".into(), "NUMBER(38,0)".into()),
            ("TAGS".into(), "VARIANT".into())
        ]
    );
    let widened: Vec<String> = c
        .widen
        .iter()
        .map(|c| format!("{} {}", c.name, c.sql()))
        .collect();
    assert_eq!(widened, ["NOTE VARCHAR(6)", "QTY NUMBER(6,0)"]);
    assert_eq!(c.over_cap.keys().copied().collect::<Vec<_>>(), [3]);
    assert!(
        c.over_cap[&3].contains("over its cap of 2"),
        "{:?}",
        c.over_cap
    );
}

#[test]
fn row_values_follow_the_columns_and_drift_is_a_reason() {
    let columns = [
        column("PRIORITY", "NUMBER", None, Some("38"), Some("0")),
        column("TAGS", "VARIANT", None, None, None),
    ];
    let ok = rows(&[&[("tags", "[1, 2]"), ("priority", "2")]]);
    assert_eq!(
        row_values("T", &columns, &ok[0]).unwrap(),
        [r#""2""#, "[1, 2]"]
    );
    assert_eq!(row_values("T", &columns, &[]).unwrap(), ["null", "null"]);
    let drift = rows(&[&[("priority", r#""high""#)]]);
    let reason = row_values("T", &columns, &drift[0]).unwrap_err();
    assert!(
        reason.contains("column \"PRIORITY\": NUMBER(38,0) cannot hold a VARCHAR value"),
        "{reason}"
    );
}
