//! `make cost`: the monthly cost of each path — orchestrator + loader (`copy`, `snowpipe`),
//! upsert (`merge`, `streaming` + Dynamic Table) and Amazon Data Firehose — for a record size,
//! rate and hours a day, from what the real function binaries billed per batch on the local
//! stack (`measure`, written to `local/cost/measured.json`) and public prices (`prices`).

pub mod measure;
pub mod measured;
pub mod model;
pub mod prices;

use std::fmt::Write as _;

use crate::svg::{Chart, Series};
use measured::Measurements;
use model::{estimate, Estimate, Path, Scenario, Setup};
use prices::Prices;

/// The three scenarios, with the measured workloads' record sizes.
pub fn scenarios(m: &Measurements) -> Vec<Scenario> {
    let size = |name: &str, fallback: f64| m.workload(name).map_or(fallback, |w| w.record_bytes);
    vec![
        Scenario {
            name: "small sensor readings at 1,000/s".into(),
            record_bytes: size("sensor", 60.0),
            rate: 1_000.0,
            hours_per_day: 24.0,
            workload: "sensor".into(),
        },
        Scenario {
            name: "5 KB events at 100/s".into(),
            record_bytes: size("event5k", 5_000.0),
            rate: 100.0,
            hours_per_day: 24.0,
            workload: "event5k".into(),
        },
        Scenario {
            name: "CDC changes at 500/s".into(),
            record_bytes: size("cdc", 150.0),
            rate: 500.0,
            hours_per_day: 24.0,
            workload: "cdc".into(),
        },
    ]
}

/// Every path's estimate for `s`.
pub fn estimates(s: &Scenario, setup: &Setup, m: &Measurements, p: &Prices) -> Vec<Estimate> {
    Path::ALL
        .iter()
        .map(|&path| estimate(path, s, setup, m, p))
        .collect()
}

fn usd(v: f64) -> String {
    if v == 0.0 {
        "–".into()
    } else if v < 10.0 {
        format!("${v:.2}")
    } else {
        format!("${v:.0}")
    }
}

/// `s`'s estimates as a Markdown table, cheapest marked, then any notes.
pub fn table(s: &Scenario, estimates: &[Estimate]) -> String {
    let mut out = format!(
        "**{}** ({:.0} B records, {} h/day), USD per month:\n\n",
        s.name, s.record_bytes, s.hours_per_day
    );
    out.push_str("| path | Lambda | S3 + SQS requests | Kinesis | Firehose | warehouse | Snowpipe / Streaming credits | total |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    let cheapest = estimates
        .iter()
        .map(|e| e.cost.total())
        .fold(f64::MAX, f64::min);
    for e in estimates {
        let c = &e.cost;
        let total = usd(c.total());
        let total = if c.total() == cheapest {
            format!("**{total}**")
        } else {
            total
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            e.path.label(),
            usd(c.lambda),
            usd(c.requests),
            usd(c.kinesis),
            usd(c.firehose),
            usd(c.warehouse),
            usd(c.ingest),
            total
        );
    }
    for note in estimates.iter().flat_map(|e| &e.notes) {
        let _ = writeln!(out, "\n_{note}_");
    }
    out
}

/// Records per second the chart spans: 1, 2, 5, 10, ... 100,000.
pub fn chart_rates() -> Vec<f64> {
    (0..5)
        .flat_map(|e| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(e)))
        .chain([100_000.0])
        .collect()
}

const COLOURS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];

/// Every path's monthly cost against records per second for `s`'s record size, log-log.
pub fn chart(s: &Scenario, setup: &Setup, m: &Measurements, p: &Prices) -> Chart {
    let series = Path::ALL
        .iter()
        .zip(COLOURS)
        .map(|(&path, colour)| Series {
            name: path.label().into(),
            colour,
            points: chart_rates()
                .into_iter()
                .map(|rate| {
                    let at = Scenario { rate, ..s.clone() };
                    (rate, estimate(path, &at, setup, m, p).cost.total())
                })
                .collect(),
        })
        .collect();
    Chart {
        title: format!("{:.0} B records, {} h/day", s.record_bytes, s.hours_per_day),
        x_label: "records per second".into(),
        y_label: "USD per month".into(),
        x_ticks: (0..=5).map(|e| 10f64.powi(e)).collect(),
        log_x: true,
        log_y: true,
        series,
    }
}

#[cfg(test)]
mod tests;
