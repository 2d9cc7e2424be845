//! `make cost`: the monthly cost of each path for the README's three scenarios (and one of your
//! own), from measured billed durations and public prices; writes the charts (see `tools::cost`).
//!
//! cost [--measure [--bin-dir $CARGO_TARGET_DIR/release] [--repeats 2]]
//!      [--measured local/cost/measured.json] [--out local/cost]
//!      [--record-bytes N --rate N [--hours 24] [--workload sensor|event5k|cdc]]
//!      [--price name=value,...] [--prices] [--auto-suspend 60] [--warehouse-size 1]
//!      [--target-lag 60] [--snowpipe-latency 60] [--copy-query 2] [--merge-query 1]
//!      [--refresh-query 2]

use std::path::PathBuf;

use tools::args::{Args, LocalStack};
use tools::cost::measure::{self, MeasureOptions};
use tools::cost::measured::Measurements;
use tools::cost::model::{copy_breakeven_gb_per_day, Scenario, Setup};
use tools::cost::prices::Prices;
use tools::cost::{chart, estimates, scenarios, table};
use tools::svg::side_by_side;

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&["measure", "prices"])?;
    let prices = prices(&args)?;
    if args.flag("prices") {
        for (name, p) in prices.all() {
            println!("{name:<26} {:<12} {:<48} {}", p.value, p.unit, p.source);
        }
        return Ok(());
    }
    let measured_path = PathBuf::from(args.get("measured").unwrap_or("local/cost/measured.json"));
    let out = PathBuf::from(args.get("out").unwrap_or("local/cost"));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    if args.flag("measure") {
        let m = measure::run(&measure_options(&args)?).await?;
        let text = serde_json::to_string_pretty(&m).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&measured_path, text)
            .map_err(|e| format!("{}: {e}", measured_path.display()))?;
        println!("wrote {}\n", measured_path.display());
    }
    let text = std::fs::read_to_string(&measured_path).map_err(|e| {
        format!(
            "{}: {e} (make cost MEASURE=1 measures)",
            measured_path.display()
        )
    })?;
    let m: Measurements =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", measured_path.display()))?;
    let setup = setup(&args)?;
    println!(
        "measured {} on {} (commit {}, {} binaries)\n",
        m.measured_at, m.machine, m.commit, m.binaries
    );
    let mut all = scenarios(&m);
    all.extend(own_scenario(&args, &m)?);
    for s in &all {
        println!("{}", table(s, &estimates(s, &setup, &m, &prices)));
    }
    println!(
        "A warehouse kept running 24 h a day costs as much as Snowpipe loading {:.0} GB a day.\n",
        copy_breakeven_gb_per_day(&setup, &prices, 24.0)
    );
    let charts: Vec<_> = all
        .iter()
        .take(2)
        .map(|s| chart(s, &setup, &m, &prices))
        .collect();
    let path = out.join("cost.svg");
    std::fs::write(&path, side_by_side(&charts)).map_err(|e| format!("{}: {e}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

fn prices(args: &Args) -> Result<Prices, String> {
    let mut prices = Prices::default();
    for pair in args.get("price").into_iter().flat_map(|v| v.split(',')) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--price {pair}: name=value"))?;
        let value = value
            .parse()
            .map_err(|_| format!("--price {pair}: not a number"))?;
        prices.set(name, value)?;
    }
    Ok(prices)
}

fn setup(args: &Args) -> Result<Setup, String> {
    let d = Setup::default();
    Ok(Setup {
        auto_suspend_s: args.parse_or("auto-suspend", d.auto_suspend_s)?,
        warehouse_size: args.parse_or("warehouse-size", d.warehouse_size)?,
        target_lag_s: args.parse_or("target-lag", d.target_lag_s)?,
        snowpipe_latency_s: args.parse_or("snowpipe-latency", d.snowpipe_latency_s)?,
        copy_query_s: args.parse_or("copy-query", d.copy_query_s)?,
        merge_query_s: args.parse_or("merge-query", d.merge_query_s)?,
        refresh_query_s: args.parse_or("refresh-query", d.refresh_query_s)?,
        ..d
    })
}

/// `--record-bytes`/`--rate`/`--hours`: timings of `--workload`, or of the measured workload
/// nearest in record size.
fn own_scenario(args: &Args, m: &Measurements) -> Result<Option<Scenario>, String> {
    if args.get("record-bytes").is_none() && args.get("rate").is_none() {
        return Ok(None);
    }
    let record_bytes: f64 = args.parse_or("record-bytes", 200.0)?;
    let workload = match args.get("workload") {
        Some(w) => w.to_string(),
        None => m
            .nearest_workload(record_bytes)
            .map(|w| w.name.clone())
            .ok_or("no workloads measured")?,
    };
    let (rate, hours) = (
        args.parse_or("rate", 1_000.0)?,
        args.parse_or("hours", 24.0)?,
    );
    Ok(Some(Scenario {
        name: format!("{rate} records/s (timings of the {workload} workload)"),
        record_bytes,
        rate,
        hours_per_day: hours,
        workload,
    }))
}

fn measure_options(args: &Args) -> Result<MeasureOptions, String> {
    let local = LocalStack::from_env();
    let target =
        PathBuf::from(std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into()));
    Ok(MeasureOptions {
        bin_dir: args
            .get("bin-dir")
            .map_or(target.join("release"), PathBuf::from),
        tools_dir: args
            .get("tools-dir")
            .map_or(target.join("debug"), PathBuf::from),
        python: args.get("python").unwrap_or(".venv/bin/python").into(),
        invoke_py: "local/tools/invoke.py".into(),
        run_dir: std::env::var("RUN_DIR")
            .unwrap_or_else(|_| "local/.run".into())
            .into(),
        snowflake_url: local.snowflake_url,
        key_file: local.key_file,
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
        repeats: args.parse_or("repeats", 2)?,
    })
}
