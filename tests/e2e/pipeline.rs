//! The whole pipeline, event-driven, as `make demo` runs it: load generator → Kinesis → local
//! event source mapping → orchestrator and upsert → S3 → SQS → loader → Snowflake.

use std::collections::HashSet;

use tools::demo::{run, DemoOptions};
use tools::loadgen::{Generator, Template};

use crate::support;

#[tokio::test]
async fn both_paths_land_the_same_records() {
    both_paths_land_the_same_records_in("copy").await;
}

/// `make demo DEMO_ARGS="--load-mode snowpipe"`: the micro-batch path through the local pipes.
#[tokio::test]
async fn both_paths_land_the_same_records_through_snowpipe() {
    both_paths_land_the_same_records_in("snowpipe").await;
}

async fn both_paths_land_the_same_records_in(load_mode: &str) {
    let _g = support::snowflake_shared().await;
    support::aws_env();
    let (sensors, orders, changes, bad) = (600, 300, 300, 4);
    let landed = run(DemoOptions {
        sensors,
        orders,
        changes,
        bad_records: bad,
        snowflake_url: support::snowflake_url(),
        key_file: support::snowflake_key_file(),
        region: "us-east-1".into(),
        sql_dir: support::repo_root().join("sql"),
        load_mode: load_mode.into(),
    })
    .await
    .expect("the pipeline runs");

    // The demo generates with seed 42 and 50 sensor ids.
    let mut generator = Generator::new(Template::Sensor, 42, 50);
    let distinct: HashSet<String> = (0..sensors).map(|_| generator.next_record().0).collect();

    // Half the malformed records are not JSON (quarantined by both functions), half have a
    // non-numeric sensorId (kept by the raw zone, quarantined by the upsert's coercion).
    assert_eq!(landed.rejected_by_orchestrator, bad / 2);
    assert_eq!(landed.rejected_by_upsert, bad);
    assert_eq!(landed.sensor_readings_raw, sensors + bad / 2);
    assert_eq!(landed.order_events_raw, orders);
    assert_eq!(landed.sensor_readings, distinct.len() as u64);
    assert_eq!(
        landed.sensors_matching_raw, landed.sensor_readings,
        "the streaming table holds the newest raw reading of every sensor"
    );
    assert!(
        landed.orders > 0 && landed.orders <= 200,
        "CDC over 200 keys: {}",
        landed.orders
    );
    assert_eq!(landed.discarded_batches, 0);
    assert_eq!(
        landed.columns_added,
        ["BATTERY", "FIRMWARE"],
        "readings gained two fields; the upsert made them columns"
    );
}
