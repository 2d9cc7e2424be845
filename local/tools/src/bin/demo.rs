//! `make demo`: the whole pipeline on the local stack (see `tools::demo`).
//!
//! demo [--sensors 5000] [--orders 2000] [--changes 2000] [--bad 4] [--sql-dir sql]

use tools::args::Args;
use tools::demo::{run, DemoOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let opts = DemoOptions {
        sensors: args.parse_or("sensors", 5_000)?,
        orders: args.parse_or("orders", 2_000)?,
        changes: args.parse_or("changes", 2_000)?,
        bad_records: args.parse_or("bad", 4)?,
        snowflake_url: std::env::var("LOCAL_SF_URL")
            .unwrap_or_else(|_| "http://127.0.0.1:8787".into()),
        key_file: std::env::var("SNOWFLAKE_PRIVATE_KEY_FILE")
            .unwrap_or_else(|_| "local/keys/snowflake_test_key.p8".into()),
        region: std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()),
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
    };
    run(opts).await.map(|_| ())
}
