//! `make demo`: the whole pipeline on the local stack (see `tools::demo`).
//!
//! demo [--sensors 5000] [--orders 2000] [--changes 2000] [--bad 4] [--sql-dir sql]
//!      [--load-mode copy|snowpipe]

use tools::args::{Args, LocalStack};
use tools::demo::{run, DemoOptions};

#[tokio::main]
async fn main() -> Result<(), String> {
    let args = Args::parse(&[])?;
    let local = LocalStack::from_env();
    let opts = DemoOptions {
        sensors: args.parse_or("sensors", 5_000)?,
        orders: args.parse_or("orders", 2_000)?,
        changes: args.parse_or("changes", 2_000)?,
        bad_records: args.parse_or("bad", 4)?,
        snowflake_url: local.snowflake_url,
        key_file: local.key_file,
        region: local.region,
        sql_dir: args.get("sql-dir").unwrap_or("sql").into(),
        load_mode: args.get("load-mode").unwrap_or("copy").into(),
    };
    run(opts).await.map(|_| ())
}
