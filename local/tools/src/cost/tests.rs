use super::measured::{Batch, Case, Measurements, Requests, Workload};
use super::model::*;
use super::prices::Prices;
use super::*;

fn case(function: &str, mode: &str, unit: &str, points: &[(u64, u64)]) -> Case {
    Case {
        function: function.into(),
        mode: mode.into(),
        workload: "sensor".into(),
        unit: unit.into(),
        init_ms: 10.0,
        batches: points
            .iter()
            .map(|&(units, ms)| Batch {
                units,
                records: units,
                bytes: units * 60,
                billed_ms: vec![ms, ms + 2, ms - 2],
            })
            .collect(),
        requests: Requests {
            invocations: 10,
            units: 10,
            s3_put: if function == "orchestrator" { 10 } else { 0 },
            s3_get: if function == "loader" { 10 } else { 0 },
            other: 0,
        },
    }
}

fn measured() -> Measurements {
    Measurements {
        measured_at: "2026-12-07T00:00:00Z".into(),
        machine: "test".into(),
        commit: "0".into(),
        binaries: "release".into(),
        workloads: vec![Workload {
            name: "sensor".into(),
            record_bytes: 60.0,
            file_bytes_per_record: 300.0,
        }],
        cases: vec![
            case("orchestrator", "-", "record", &[(1_000, 12), (10_000, 30)]),
            case("loader", "copy", "file", &[(1, 40), (5, 80)]),
            case("upsert", "merge", "record", &[(100, 20), (1_000, 50)]),
            case("upsert", "streaming", "record", &[(100, 300), (1_000, 400)]),
        ],
    }
}

fn sensors(rate: f64) -> Scenario {
    Scenario {
        name: "sensors".into(),
        record_bytes: 60.0,
        rate,
        hours_per_day: 24.0,
        workload: "sensor".into(),
    }
}

const DAY: f64 = 86_400.0;

#[test]
fn a_load_every_minute_keeps_the_warehouse_up_all_day() {
    // COPY of 2 s every 60 s with AUTO_SUSPEND 60: it never suspends, 24 credits a day (X-Small).
    assert_eq!(warehouse_seconds(1.0 / 60.0, 2.0, 60.0, DAY), DAY);
    // Every 10 minutes it suspends between loads: 144 resumes of 62 s.
    let ten = warehouse_seconds(1.0 / 600.0, 2.0, 60.0, DAY);
    assert!((ten - 144.0 * 62.0).abs() < 1e-6, "{ten}");
}

#[test]
fn each_resume_bills_at_least_sixty_seconds() {
    // 1 s statements with AUTO_SUSPEND 10: awake 11 s, billed 60 s per resume.
    let s = warehouse_seconds(1.0 / 600.0, 1.0, 10.0, DAY);
    assert!((s - 144.0 * 60.0).abs() < 1e-6, "{s}");
    assert_eq!(warehouse_seconds(0.0, 1.0, 10.0, DAY), 0.0);
}

#[test]
fn firehose_rounds_each_record_up_to_5_kb() {
    assert_eq!(firehose_billed_bytes(100.0), 5_120.0);
    assert_eq!(firehose_billed_bytes(5_120.0), 5_120.0);
    assert_eq!(firehose_billed_bytes(5_121.0), 10_240.0);
    // 60-byte readings cost Firehose as much as 5 KB records.
    let (m, setup, p) = (measured(), Setup::default(), Prices::default());
    let small = estimate(Path::Firehose, &sensors(1_000.0), &setup, &m, &p)
        .cost
        .firehose;
    let big = Scenario {
        record_bytes: 5_000.0,
        ..sensors(1_000.0)
    };
    assert_eq!(
        estimate(Path::Firehose, &big, &setup, &m, &p).cost.firehose,
        small
    );
    // 1,000/s for a month at 5 KB each: 2.63e9 records × 5,120 B / 2^30 × $0.029.
    let expected = 1_000.0 * 730.0 * 3600.0 * 5_120.0 / 1024f64.powi(3) * 0.029;
    assert!((small - expected).abs() < 1e-6, "{small} {expected}");
}

#[test]
fn copy_pays_off_only_above_several_terabytes_a_day() {
    let (setup, p) = (Setup::default(), Prices::default());
    // 24 credits a day / 0.0037 credits per GB.
    let breakeven = copy_breakeven_gb_per_day(&setup, &p, 24.0);
    assert!((breakeven - 24.0 / 0.0037).abs() < 1e-9 && breakeven > 6_000.0);
    // Snowflake's side of the two paths crosses there: below, Snowpipe's credits are less than
    // the warehouse's; above, more (file bytes are 300 per record in the fixture).
    let m = measured();
    let rate_at = |gb_per_day: f64| gb_per_day * 1024f64.powi(3) / 300.0 / DAY;
    for (gb, snowpipe_cheaper) in [(breakeven * 0.9, true), (breakeven * 1.1, false)] {
        let s = sensors(rate_at(gb));
        let copy = estimate(Path::Copy, &s, &setup, &m, &p).cost.warehouse;
        let pipe = estimate(Path::Snowpipe, &s, &setup, &m, &p).cost.ingest;
        assert_eq!(
            pipe < copy,
            snowpipe_cheaper,
            "{gb} GB/day: {pipe} vs {copy}"
        );
    }
}

#[test]
fn batches_are_capped_by_batch_size_and_lambdas_6_mb() {
    let setup = Setup::default();
    assert_eq!(shards(1_000.0, 60.0), 1.0);
    assert_eq!(shards(1_001.0, 60.0), 2.0);
    assert_eq!(shards(500.0, 5_000.0), 3.0); // 2.4 MB/s
    assert_eq!(
        kinesis_batch_records(1_000.0, 60.0, &setup.orchestrator),
        10_000.0
    );
    assert_eq!(
        kinesis_batch_records(10.0, 60.0, &setup.orchestrator),
        600.0
    );
    // 5 KB records: 6,668 base64 bytes + 420 of JSON each, 887 fit in 6 MB.
    assert_eq!(
        kinesis_batch_records(100.0, 5_000.0, &setup.orchestrator),
        887.0
    );
    assert_eq!(kinesis_batch_records(0.01, 60.0, &setup.upsert), 1.0);
    assert_eq!(sqs_batch_messages(1.0 / 60.0, &setup.loader), 1.0);
    assert_eq!(sqs_batch_messages(50.0, &setup.loader), 100.0);
}

#[test]
fn lambda_cost_comes_from_the_measured_line_through_the_batches() {
    let m = measured();
    let fit = m.case("orchestrator", "-", "sensor").unwrap().fit();
    assert!(
        (fit.fixed_ms - 10.0).abs() < 1e-9 && (fit.per_unit_ms - 0.002).abs() < 1e-12,
        "{fit:?}"
    );
    // 1,000/s: a 10,000-record batch (an object) every 10 s, 30 ms at 1 GB; the copy loader every
    // 20 s (its window) with two files, 30 + 2 × 10 ms at 0.25 GB.
    let (setup, p) = (Setup::default(), Prices::default());
    let e = estimate(Path::Copy, &sensors(1_000.0), &setup, &m, &p);
    let month = 730.0 * 3600.0;
    let orchestrator = month / 10.0 * (0.030 * 1.0 * 0.000_013_333_4 + 0.2e-6);
    let loader = month / 20.0 * (0.050 * 0.25 * 0.000_013_333_4 + 0.2e-6);
    assert!(
        (e.cost.lambda - orchestrator - loader).abs() < 1e-6,
        "{e:?}"
    );
    assert!(e.notes.is_empty());
    // One warehouse all month, X-Small at $2 a credit.
    assert!((e.cost.warehouse - 730.0 * 2.0).abs() < 1e-6);
}

#[test]
fn an_unmeasured_snowpipe_loader_borrows_the_copy_loaders_timing_and_says_so() {
    let (m, setup, p) = (measured(), Setup::default(), Prices::default());
    let e = estimate(Path::Snowpipe, &sensors(1_000.0), &setup, &m, &p);
    assert_eq!(e.cost.warehouse, 0.0);
    assert!(
        e.notes[0].contains("loader snowpipe not measured"),
        "{:?}",
        e.notes
    );
    assert!(e.cost.lambda > 0.0 && e.cost.ingest > 0.0);
    // The loader's 50 ms (two files, the copy loader's line) plus Snowpipe's 60 s latency, every
    // 20 s, at 0.25 GB; the orchestrator as in copy mode.
    let copy = estimate(Path::Copy, &sensors(1_000.0), &setup, &m, &p);
    let waiting = 730.0 * 3600.0 / 20.0 * 60.0 * 0.25 * 0.000_013_333_4;
    assert!(
        (e.cost.lambda - copy.cost.lambda - waiting).abs() < 1e-6,
        "{e:?}"
    );
}

#[test]
fn the_chart_is_well_formed_svg_with_one_polyline_per_path() {
    let (m, setup, p) = (measured(), Setup::default(), Prices::default());
    let big = Scenario {
        record_bytes: 5_000.0,
        ..sensors(1.0)
    };
    let charts = [
        chart(&sensors(1.0), &setup, &m, &p),
        chart(&big, &setup, &m, &p),
    ];
    let svg = crate::svg::side_by_side(&charts);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert_eq!(svg.matches("<polyline").count(), 2 * Path::ALL.len());
    for path in Path::ALL {
        let legend = format!(">{}</text>", path.label().replace('&', "&amp;"));
        assert_eq!(svg.matches(&legend).count(), 2, "{legend}");
    }
    assert_eq!(svg.matches(">records per second<").count(), 2);
    assert_eq!(svg.matches(">USD per month<").count(), 2);
    // Log-log: a tick per decade of rate, 1 to 100k, and of cost.
    assert!(svg.contains(">100k</text>") && svg.contains(">1k</text>"));
    assert_balanced(&svg);
    // Every polyline has a point per rate on the chart.
    for points in svg.split("<polyline").skip(1) {
        let points = points
            .split("points=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert_eq!(points.split(' ').count(), chart_rates().len(), "{points}");
    }
}

/// Every element opened is closed, in order; attributes quoted; no bare `&` or `<` in text.
fn assert_balanced(svg: &str) {
    let mut open: Vec<String> = Vec::new();
    let mut rest = svg;
    while let Some(start) = rest.find('<') {
        assert!(
            !rest[..start].contains('>'),
            "stray > before {}",
            &rest[start..]
        );
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unquoted attribute in <{tag}>"
        );
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(open.pop().as_deref(), Some(name), "</{name}>");
        } else if !tag.ends_with('/') {
            open.push(tag.split_whitespace().next().unwrap().to_string());
        }
        rest = &rest[end + 1..];
        let text_end = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..text_end];
        assert!(
            text.replace("&amp;", "")
                .replace("&lt;", "")
                .replace("&gt;", "")
                .find('&')
                .is_none(),
            "{text}"
        );
    }
    assert!(open.is_empty(), "unclosed: {open:?}");
}

#[test]
fn the_table_marks_the_cheapest_path() {
    let (m, setup, p) = (measured(), Setup::default(), Prices::default());
    let s = sensors(1_000.0);
    let all = estimates(&s, &setup, &m, &p);
    let text = table(&s, &all);
    let cheapest = all
        .iter()
        .min_by(|a, b| a.cost.total().total_cmp(&b.cost.total()))
        .unwrap();
    let row = text
        .lines()
        .find(|l| l.starts_with(&format!("| {} |", cheapest.path.label())))
        .unwrap();
    assert!(row.ends_with("** |"), "{row}");
    assert_eq!(text.matches("** |").count(), 1, "{text}");
}

#[test]
fn requests_are_counted_from_the_aws_stand_ins_log() {
    let log = std::env::temp_dir().join(format!("cost-moto-{}.log", std::process::id()));
    std::fs::write(
        &log,
        concat!(
            "127.0.0.1 - - [07/Dec/2026 19:31:53] \"GET /moto-api/ HTTP/1.1\" 200 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"PUT /raw-zone/raw/sensor_readings/a.ndjson.gz HTTP/1.1\" 200 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"GET /raw-zone/raw/sensor_readings/a.ndjson.gz HTTP/1.1\" 200 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"HEAD /raw-zone/raw/b.gz HTTP/1.1\" 200 -\n",
            // werkzeug colours a ranged GET (206) and an error
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"\u{1b}[35m\u{1b}[1mGET /raw-zone/raw/b.gz HTTP/1.1\u{1b}[0m\" 206 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"\u{1b}[31m\u{1b}[1mPOST / HTTP/1.1\u{1b}[0m\" 400 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"GET /raw-zone?list-type=2&prefix=raw HTTP/1.1\" 200 -\n",
            "127.0.0.1 - - [07/Dec/2026 19:31:58] \"POST / HTTP/1.1\" 200 -\n",
        ),
    )
    .unwrap();
    let r = measure::requests_in(&log, 0).unwrap();
    std::fs::remove_file(&log).unwrap();
    assert_eq!((r.s3_put, r.s3_get, r.other), (2, 3, 2));
}

#[test]
fn a_function_slower_than_its_shards_batches_is_said_to_fall_behind() {
    // Streaming at 1,000/s: 1,000-record batches a second on one shard, each billed 400 ms.
    let (m, setup, p) = (measured(), Setup::default(), Prices::default());
    let ok = estimate(Path::Streaming, &sensors(1_000.0), &setup, &m, &p);
    assert!(ok.notes.is_empty(), "{:?}", ok.notes);
    let mut slow = measured();
    slow.cases[3] = case(
        "upsert",
        "streaming",
        "record",
        &[(100, 1_000), (1_000, 4_000)],
    );
    let behind = estimate(Path::Streaming, &sensors(1_000.0), &setup, &slow, &p);
    assert!(
        behind.notes[0].contains("falls behind"),
        "{:?}",
        behind.notes
    );
}

#[test]
fn a_price_is_set_by_name_and_an_unknown_name_is_an_error() {
    let mut p = Prices::default();
    p.set("snowflake_credit", 3.0).unwrap();
    assert_eq!(p.snowflake_credit.value, 3.0);
    let (name, price) = p.all()[8];
    assert_eq!((name, price.value), ("snowflake_credit", 3.0));
    assert!(p.set("no_such", 1.0).unwrap_err().contains("no_such"));
}
