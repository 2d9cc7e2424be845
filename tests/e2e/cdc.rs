//! The table-equality test of the change-data-capture path: a seeded workload of 20,000 row
//! changes on the local stack's MariaDB, captured from its binlog as DMS and as Debezium records
//! (`local/tools/cdc.py`) with redeliveries, the local event source mapping forcing whole and
//! partial resends, and the upsert; the source gains a column and widens another half-way, and
//! the targets evolve with it; then every Snowflake target must equal its MariaDB table.
//! Needs MariaDB (`local/stack.sh mariadb-up`, or `WITH_MARIADB=1` as `make test` sets).

use crate::support;

#[tokio::test]
async fn snowflake_equals_mariadb_after_20000_changes_through_dms_and_debezium() {
    let _g = support::snowflake_shared().await;
    support::aws_env();
    let root = support::repo_root();
    let opts = tools::cdc::CdcOptions {
        ops: 20_000,
        seed_rows: 500,
        seed: 20_261_203,
        redeliver_every: 400,
        resend_every: 7,
        python: root.join(".venv/bin/python"),
        script: root.join("local/tools/cdc.py"),
        sql_dir: root.join("sql"),
        snowflake_url: support::snowflake_url(),
        key_file: support::snowflake_key_file(),
        region: "us-east-1".into(),
        name: support::unique("cdc"),
    };
    let report = tools::cdc::run(opts)
        .await
        .unwrap_or_else(|e| panic!("CDC run (is MariaDB up? local/stack.sh mariadb-up): {e}"));
    tools::cdc::print_report(&report);
    assert!(report.workload["ops"].as_u64().unwrap_or(0) >= 20_000);
    assert!(report.capture["redelivered"].as_u64().unwrap_or(0) > 0);
    assert!(report.forced_resends > 0);
    assert_eq!(report.tables.len(), 4);
    for t in &report.tables {
        assert!(
            t.source_rows > 0 && t.equal(),
            "{} {}: {} MariaDB rows, {} Snowflake rows, differences {:#?}",
            t.envelope,
            t.table,
            t.source_rows,
            t.target_rows,
            t.differences
        );
    }
}
