//! Applies the Snowflake setup in `sql/` through the SQL API client, one statement per request,
//! printing each statement's outcome; exits non-zero at the first failure.
//!
//! ```text
//! bootstrap [--sql-dir DIR] [--profile local|aws] [--var NAME=VALUE]... [--streaming]
//! ```
//!
//! `--streaming`: then, for every table of the upsert function's mapping (`UPSERT_TABLES` and
//! `TABLE` or `ROUTE_*`, as the function reads them, with `WRITE_MODE=streaming`), its change
//! table and the Dynamic Table of its latest state (the function's `LATEST_TARGET_LAG`, default
//! `1 minute`, refreshed by its `SNOWFLAKE_WAREHOUSE`).
//!
//! Connection: the `SNOWFLAKE_*` variables of the functions (`SNOWFLAKE_ACCOUNT`, `SNOWFLAKE_URL`,
//! `SNOWFLAKE_SCHEMA`, `SNOWFLAKE_AUTH`, key or token, ...; see `SnowflakeConfig::from_env`).
//! Variables: `DATABASE` ← `SNOWFLAKE_DATABASE`, `SCHEMA` ← `SNOWFLAKE_SCHEMA`, `WAREHOUSE` ←
//! `SNOWFLAKE_WAREHOUSE`, `STAGE_URL`, `STAGE`, `STORAGE_INTEGRATION`, `SNOWFLAKE_ROLE_ARN` from
//! the environment; `--var` wins; `STAGE` defaults to RAW_STAGE, `WAREHOUSE` to COMPUTE_WH.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use shared::config::{Env, ProcessEnv};
use shared::snowflake::{SnowflakeClient, SnowflakeConfig};
use tools::bootstrap::{self, Profile};

const USAGE: &str =
    "usage: bootstrap [--sql-dir DIR] [--profile local|aws] [--var NAME=VALUE]... [--streaming]";

struct Args {
    sql_dir: PathBuf,
    profile: Profile,
    vars: HashMap<String, String>,
    /// Whether the change tables and latest-state Dynamic Tables are wanted.
    streaming: bool,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        sql_dir: PathBuf::from("sql"),
        profile: Profile::Local,
        vars: HashMap::new(),
        streaming: false,
    };
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--sql-dir" => args.sql_dir = PathBuf::from(value()?),
            "--profile" => args.profile = value()?.parse().map_err(|e| format!("{e}"))?,
            "--streaming" => args.streaming = true,
            "--var" => {
                let (k, v) = bootstrap::parse_var(&value()?).map_err(|e| e.to_string())?;
                args.vars.insert(k, v);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(args))
}

async fn run(args: Args) -> Result<usize, String> {
    let env = Env::new(&ProcessEnv);
    let vars = bootstrap::vars_from_env(&env, &args.vars);
    // fail on a missing/invalid variable before connecting
    bootstrap::plan(&args.sql_dir, args.profile, &vars).map_err(|e| e.to_string())?;
    let config = SnowflakeConfig::from_env(&env).map_err(|e| e.to_string())?;
    let aws = shared::aws::load_config().await;
    let client = SnowflakeClient::new(config, Some(&aws))
        .await
        .map_err(|e| e.to_string())?;
    let outcomes = bootstrap::apply_dir_with(&client, &args.sql_dir, args.profile, &vars, |o| {
        println!("{o}")
    })
    .await
    .map_err(|e| e.to_string())?;
    let mut applied = outcomes.len();
    if args.streaming {
        applied += streaming_objects(&client, &env).await?;
    }
    Ok(applied)
}

/// The change table and latest-state Dynamic Table of every mapped table
/// ([`tools::bootstrap::streaming_statements`]).
async fn streaming_objects(client: &SnowflakeClient, env: &Env<'_>) -> Result<usize, String> {
    let config = upsert::Config::from_env(env).map_err(|e| e.to_string())?;
    let statements = tools::bootstrap::streaming_statements(&config)?;
    for (logical, sql) in &statements {
        client
            .execute(
                &shared::snowflake::Statement::new(sql.clone()),
                std::time::Instant::now() + std::time::Duration::from_secs(60),
            )
            .await
            .map_err(|e| format!("{logical}: {e}\n  {sql}"))?;
        println!(
            "ok      {logical}: {}",
            sql.chars().take(100).collect::<String>()
        );
    }
    Ok(statements.len())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("bootstrap: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let profile = args.profile;
    match run(args).await {
        Ok(n) => {
            println!("bootstrap: {n} statement(s) applied (profile {profile})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAILED  {e}");
            ExitCode::FAILURE
        }
    }
}
