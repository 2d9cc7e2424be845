//! The Snowflake SQL API client against the local Snowflake service (`local/stack.sh up`).
//!
//! Every test works in its own database and schema. The service's fault injection and config are
//! global, so tests that use them hold `support::snowflake_exclusive()` for their whole duration, clear what they set,
//! and assert per-requestId counters rather than global ones.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shared::config::Env;
use shared::snowflake::{
    request_id_for, AuthConfig, Binding, JwtSigner, QueryResult, RetryPolicy, SecretString,
    SnowflakeClient, SnowflakeConfig, SnowflakeError, Statement, TokenSource, TokenType,
};
use uuid::Uuid;

use crate::support;

/// A second RSA key pair (test-only, generated with `openssl genpkey`): its public key is not the
/// one the local service trusts.
const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQCu/nYFYjW/XE8m
PA+w5m0foZ/ji6bZKi6fN4ZEmVJBY/xuj732FT+TXBfm9zxupoacqnKmsrN9zJOz
fPanuvJXeTt5hkdXVfOEfmr0g9GIfchuRzfReRzyRlJcQLtRkwxsZdGfmjA23R+O
6PzB3lQ2IT1QGjkoYf/L4SZnrK6cSrKQL+TTljSp6qEYV05r/u5NzBcEreX/R422
rRf18Rs8/KgnZ69gQiTJoKvTAWD76rytiU5tsIpLrH8oM4M6BErcFeeANDxP43ds
YxNJv5l2k4q3pqRk74gOS36DpsP7BJKUEbWbYYy+IJIKFQGUFrJsc8yrTM4ldz8m
N3OWZEZtAgMBAAECggEADPrl9odENQIGrZowkG6/HboHhJbUFPFP4lJ5h0wXca9A
xv4ALqkr0o/hsVREa3FhtGw2MzmNHncsENkOPf8cFl3xNJXqY8bbLcg8wbn8sv2g
KNc9LjCoHivA1IP0AQcsbuaXMm9QRTmIq46KSmJl56/2fs27JfeC7vSv5xUZdzvk
SlatV9FrfeUUOntK9tZ6OJy0RGSmzjMfWNmv2BLSGq5v1shas31kGympES1r4iWN
rXCE7ik3u6abkJzz+cTEmT3u1Aut/2hQz+VoT6mcIk4rzWYKFZauZYSQsNi0H0fF
Id1fUQWzUOWrdMhhVCK4NnAi1AUwHBPETjMRbKPMgQKBgQDqxs4dzOP0gm4Idmjv
rgqDq1ZZmeVxR2W3x/vVuJanaJLGTmXOEaXzZ3xxDi0aSqE4DiGHr/rJuYpK/TrQ
dn1CPQDRvsFe8EH+s6jvEYrFEzcgX0ayP2tkwaA3tg2/mZhKnBbq2suZL7+6RQb2
WlpPdQN7MkD0eatCm0g0ZYolrQKBgQC+0CsWP3zKdr+aOg3AOMQmAs84LS5mS/Im
VN96KXtx3RMKhIkim5I3lf20LDSwUhX/Tv0QKQlgbxzh3xfO6Kr5UFDGIadHaccv
CTN24weBxjfjcnoubedssQBeJ5pjUpquYYF71a0UIaPoPOw6k6v0hoex7t5TYIyI
3zEqKKs7wQKBgAEuoxcPUw6GIZu1TO34CGGFWVf2KGubmm2EekYnOcr6AdMxzd1t
xVImcT/4fE2nlow7tfuC7VZastGR2Nv33MWanQhxV3Ps7cgki3M4uWQoppxpHmgD
Xb0SJIZjSkpusY+enZbtJx1MWkDL3C8dYVsJEc1rAVy5yBz7vy9UW4+5AoGARmde
jn3sWHPKLGihLDyFuxSsSqj5Bsuc1CHatyNZJeERJn9Sbg+Curm/+1uYMTqIXURS
wUSy7f7xZDHBghl9BDJrKz+9je7sjGFTuNj5qxttAaH6jOkGS6dfYF4ya9VNt2vI
r91eWCA1bvoTm2VjO/zrUm61X4QvNk1LwadxzsECgYEA1oXDcIeAjY2FsoEsfni7
hoEO7wcsIh5gAiGmbdcfJveM6rcTDqmg0afrQ3pHm/DwlmsOe8vmoBGhxkKj7ys4
irVB9RfIh2EqDxzeDxhzcJ5IuhbuULtKgzYbWdsWF80qA7XzK3kSV3xZoVqrKbHA
AjNt7nrKbEXbo2wXZsCVbXY=
-----END PRIVATE KEY-----";

fn key_file() -> String {
    support::repo_root()
        .join("local/keys/snowflake_test_key.p8")
        .display()
        .to_string()
}

fn key_pem() -> String {
    std::fs::read_to_string(key_file()).expect("test key fixture")
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
        poll_initial: Duration::from_millis(20),
        poll_max: Duration::from_millis(200),
        ..RetryPolicy::default()
    }
}

/// The configuration a Lambda would read, for `database`/`schema`, with key-pair auth.
fn config(database: Option<&str>, schema: &str) -> SnowflakeConfig {
    let url = support::snowflake_url();
    let key = key_file();
    let mut vars = vec![
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", schema),
        ("SNOWFLAKE_PRIVATE_KEY_FILE", key.as_str()),
        ("SNOWFLAKE_QUERY_TAG", "e2e-snowflake-client"),
    ];
    if let Some(db) = database {
        vars.push(("SNOWFLAKE_DATABASE", db));
    }
    let mut c = SnowflakeConfig::from_env(&Env::new(&vars)).expect("config");
    c.retry = fast_retries();
    c
}

fn with_auth(mut c: SnowflakeConfig, auth: AuthConfig) -> SnowflakeConfig {
    c.auth = auth;
    c
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(30)
}

async fn run(client: &SnowflakeClient, sql: &str) -> QueryResult {
    client
        .execute(&Statement::new(sql), soon())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A client working in a new database and schema, plus the database name.
async fn fresh() -> (SnowflakeClient, String) {
    let db = format!("SFC_{}", &Uuid::new_v4().simple().to_string()[..12]).to_uppercase();
    let boot = SnowflakeClient::new(config(None, "PUBLIC"), None)
        .await
        .expect("client");
    run(&boot, &format!("CREATE DATABASE IF NOT EXISTS {db}")).await;
    run(&boot, &format!("CREATE SCHEMA IF NOT EXISTS {db}.TEST")).await;
    let client = SnowflakeClient::new(config(Some(&db), "TEST"), None)
        .await
        .expect("client");
    (client, db)
}

async fn admin(path: &str, body: Value) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", support::snowflake_url()))
        .json(&body)
        .send()
        .await
        .expect("admin request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
}

async fn stats() -> Value {
    reqwest::get(format!("{}/admin/stats", support::snowflake_url()))
        .await
        .expect("stats")
        .json()
        .await
        .expect("stats JSON")
}

async fn executions_of(id: Uuid) -> u64 {
    stats().await["by_request_id"][id.to_string()]
        .as_u64()
        .unwrap_or(0)
}

async fn clear_faults() {
    // each named fault is set with the given count: 0 disarms all three
    admin(
        "/admin/faults",
        json!({"status": 503, "delay_ms": 0, "drop_connection": true, "count": 0}),
    )
    .await;
}

fn column(r: &QueryResult, name: &str) -> Vec<Option<String>> {
    let i = r.column(name).unwrap_or_else(|| panic!("no column {name}"));
    r.rows.iter().map(|row| row[i].clone()).collect()
}

#[tokio::test]
async fn hostile_strings_round_trip_as_bound_values() {
    let _g = support::snowflake_shared().await;
    let (client, _db) = fresh().await;
    run(&client, "CREATE TABLE hostile (id INT, v TEXT)").await;
    let values: Vec<Option<&str>> = vec![
        Some("it's a \"quote\""),
        Some("'; DROP TABLE hostile; --"),
        Some("Grüße, 世界, emoji 🦀, RTL \u{202E}abc"),
        Some("line one\nline two\r\n\ttabbed"),
        Some(r"back\slash \\ and \' and \n literal"),
        Some(""),
        None,
        Some("?"),
        Some("$1 :name %s {0}"),
        Some("NULL"),
    ];
    let mut st = Statement::new(format!(
        "INSERT INTO hostile (id, v) VALUES {}",
        vec!["(?, ?)"; values.len()].join(", ")
    ));
    for (i, v) in values.iter().enumerate() {
        st = st
            .bind(Binding::int(i as i64))
            .bind(Binding::Text(v.map(String::from)));
    }
    let inserted = client.execute(&st, soon()).await.expect("insert");
    assert_eq!(
        inserted.stats.expect("DML stats").inserted,
        values.len() as u64
    );
    let r = run(&client, "SELECT id, v FROM hostile ORDER BY id").await;
    let expected: Vec<Option<String>> = values.iter().map(|v| v.map(String::from)).collect();
    assert_eq!(column(&r, "v"), expected);
    // the table survived the would-be injection
    assert_eq!(
        run(&client, "SELECT COUNT(*) AS n FROM hostile")
            .await
            .value(0, "N"),
        Some("10")
    );
}

#[tokio::test]
async fn typed_bindings_and_nulls_of_every_type() {
    let _g = support::snowflake_shared().await;
    let (client, _db) = fresh().await;
    run(
        &client,
        "CREATE TABLE typed (n NUMBER(38,0), d NUMBER(10,2), r FLOAT, b BOOLEAN, ts TIMESTAMP_NTZ)",
    )
    .await;
    let ts = chrono::NaiveDate::from_ymd_opt(2024, 5, 6)
        .unwrap()
        .and_hms_milli_opt(7, 8, 9, 123)
        .unwrap();
    let st = Statement::new("INSERT INTO typed VALUES (?, ?, ?, ?, ?), (?, ?, ?, ?, ?)")
        .bind(Binding::int(-42))
        .bind(Binding::Fixed(Some("12.50".into())))
        .bind(Binding::real(0.25))
        .bind(Binding::boolean(true))
        .bind(Binding::timestamp_ntz(ts))
        .bind(Binding::Fixed(None))
        .bind(Binding::Fixed(None))
        .bind(Binding::Real(None))
        .bind(Binding::Boolean(None))
        .bind(Binding::TimestampNtz(None));
    client
        .execute(&st, soon())
        .await
        .expect("insert typed values and typed nulls");
    let r = run(
        &client,
        "SELECT n, d, r, b, ts FROM typed ORDER BY n NULLS LAST",
    )
    .await;
    assert_eq!(
        r.columns
            .iter()
            .map(|c| c.type_name.as_str())
            .collect::<Vec<_>>(),
        ["FIXED", "FIXED", "REAL", "BOOLEAN", "TIMESTAMP_NTZ"]
    );
    let expected_ts = format!("{}.123000000", ts.and_utc().timestamp());
    assert_eq!(
        r.rows[0],
        vec![
            Some("-42".into()),
            Some("12.50".into()),
            Some("0.25".into()),
            Some("true".into()),
            Some(expected_ts)
        ]
    );
    assert_eq!(r.rows[1], vec![None; 5]);
}

#[tokio::test]
async fn sql_error_is_surfaced_with_its_code() {
    let _g = support::snowflake_shared().await;
    let (client, _db) = fresh().await;
    let err = client
        .execute(&Statement::new("SELECT * FROM no_such_table"), soon())
        .await
        .unwrap_err();
    match &err {
        SnowflakeError::Sql {
            code,
            sql_state,
            message,
            statement_handle,
        } => {
            assert_eq!(code, "002003", "{err}");
            assert_eq!(sql_state, "42S02", "{err}");
            assert!(message.to_uppercase().contains("NO_SUCH_TABLE"), "{err}");
            assert!(statement_handle.is_some());
        }
        other => panic!("expected a SQL error, got {other:?}"),
    }
    assert!(!err.is_retryable());
}

async fn expect_unauthorized(auth: AuthConfig) -> String {
    let client = SnowflakeClient::new(with_auth(config(None, "PUBLIC"), auth), None)
        .await
        .expect("client");
    let t0 = Instant::now();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(5));
    match err {
        SnowflakeError::Unauthorized(msg) => msg,
        other => panic!("expected Unauthorized, got {other:?}"),
    }
}

#[tokio::test]
async fn lower_case_context_names_reach_a_database_created_unquoted() {
    let _g = support::snowflake_shared().await;
    // created as `CREATE DATABASE lower_…` without quotes: stored upper-cased
    let db = format!("lower_{}", &Uuid::new_v4().simple().to_string()[..12]);
    let boot = SnowflakeClient::new(config(None, "PUBLIC"), None)
        .await
        .expect("client");
    run(&boot, &format!("CREATE DATABASE IF NOT EXISTS {db}")).await;
    run(&boot, &format!("CREATE SCHEMA IF NOT EXISTS {db}.landing")).await;

    // configured the way an operator writes it in SQL: lower case, unquoted
    let vars = support::snowflake_vars(&db, "landing");
    let config = SnowflakeConfig::from_env(&Env::new(&support::as_pairs(&vars))).unwrap();
    let client = SnowflakeClient::new(config, None).await.expect("client");
    let body = client.request_body(&Statement::new("SELECT 1"));
    assert_eq!(body["database"], json!(db.to_uppercase()));
    assert_eq!(body["schema"], json!("LANDING"));

    // unqualified names resolve in that context ...
    run(&client, "CREATE TABLE readings (v TEXT)").await;
    client
        .execute(
            &Statement::new("INSERT INTO readings (v) VALUES (?)").bind(Binding::text("x")),
            soon(),
        )
        .await
        .unwrap();
    // ... to the database and schema created unquoted, also as the functions qualify them
    let qualified = shared::snowflake::ident::qualified(&[&db, "landing", "readings"]).unwrap();
    assert_eq!(
        qualified,
        format!("\"{}\".\"LANDING\".\"READINGS\"", db.to_uppercase())
    );
    for sql in [
        format!("SELECT v FROM {}.LANDING.READINGS", db.to_uppercase()),
        format!("SELECT v FROM {qualified}"),
    ] {
        assert_eq!(column(&run(&boot, &sql).await, "V"), vec![Some("x".into())]);
    }
}

#[tokio::test]
async fn wrong_key_is_unauthorized() {
    let _g = support::snowflake_shared().await;
    let msg = expect_unauthorized(AuthConfig::KeyPair {
        user: "loader".into(),
        key: shared::snowflake::KeySource::Pem(SecretString::new(OTHER_KEY)),
    })
    .await;
    assert!(msg.contains("390144"), "{msg}");
}

#[tokio::test]
async fn wrong_fingerprint_is_unauthorized() {
    let _g = support::snowflake_shared().await;
    // signed with the right key, but the issuer names another key's fingerprint
    let signer = JwtSigner::from_pem(&key_pem(), "localtest", "loader").unwrap();
    let other = JwtSigner::from_pem(OTHER_KEY, "localtest", "loader").unwrap();
    assert_ne!(signer.fingerprint(), other.fingerprint());
    let mut claims = signer.claims_at(chrono::Utc::now().timestamp());
    claims.iss = format!("LOCALTEST.LOADER.{}", other.fingerprint());
    let token = signer.sign(&claims).unwrap();
    let msg = expect_unauthorized(AuthConfig::Token {
        kind: TokenType::KeypairJwt,
        source: TokenSource::Value(SecretString::new(token)),
    })
    .await;
    assert!(msg.contains("fingerprint"), "{msg}");
}

#[tokio::test]
async fn expired_token_is_unauthorized() {
    let _g = support::snowflake_shared().await;
    let signer = JwtSigner::from_pem(&key_pem(), "localtest", "loader").unwrap();
    let claims = signer.claims_at(chrono::Utc::now().timestamp() - 3600); // expired a minute ago
    let token = signer.sign(&claims).unwrap();
    let msg = expect_unauthorized(AuthConfig::Token {
        kind: TokenType::KeypairJwt,
        source: TokenSource::Value(SecretString::new(token)),
    })
    .await;
    assert!(msg.contains("expired"), "{msg}");
}

#[tokio::test]
async fn programmatic_access_token_is_accepted_and_a_wrong_one_is_not() {
    let _g = support::snowflake_shared().await;
    let url = support::snowflake_url();
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN", "local-dev-token"),
    ];
    let client = SnowflakeClient::new(SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(), None)
        .await
        .unwrap();
    let r = run(&client, "SELECT 1 AS one, 'x' AS s").await;
    assert_eq!(r.value(0, "one"), Some("1"));
    assert_eq!(r.value(0, "S"), Some("x"));

    let msg = expect_unauthorized(AuthConfig::Token {
        kind: TokenType::ProgrammaticAccessToken,
        source: TokenSource::Value(SecretString::new("not-the-token")),
    })
    .await;
    assert!(!msg.contains("not-the-token"), "{msg}");
}

#[tokio::test]
async fn async_execution_is_polled_to_completion() {
    let _g = support::snowflake_exclusive().await;
    let (client, _db) = fresh().await;
    run(&client, "CREATE TABLE slow (id INT)").await;
    let before = stats().await;
    admin("/admin/config", json!({"async_after_ms": 0})).await;
    let result = client
        .execute(
            &Statement::new("INSERT INTO slow VALUES (?), (?)")
                .bind(Binding::int(1))
                .bind(Binding::int(2)),
            soon(),
        )
        .await;
    admin(
        "/admin/config",
        json!({"async_after_ms": before["async_after_ms"]}),
    )
    .await;
    let r = result.expect("insert via 202 + poll");
    assert!(
        r.http_requests >= 2,
        "a 202 then at least one poll: {}",
        r.http_requests
    );
    assert_eq!(r.stats.expect("stats").inserted, 2);
    assert_eq!(executions_of(r.request_id).await, 1);
    assert_eq!(
        run(&client, "SELECT COUNT(*) AS n FROM slow")
            .await
            .value(0, "n"),
        Some("2")
    );
}

#[tokio::test]
async fn multi_partition_results_are_fetched_in_order() {
    let _g = support::snowflake_exclusive().await;
    let (client, _db) = fresh().await;
    run(&client, "CREATE TABLE many (id INT, v TEXT)").await;
    let mut st = Statement::new(format!(
        "INSERT INTO many VALUES {}",
        vec!["(?, ?)"; 50].join(", ")
    ));
    for i in 0..50 {
        st = st.bind(Binding::int(i)).bind(if i % 5 == 0 {
            Binding::null()
        } else {
            Binding::text(format!("v{i}"))
        });
    }
    client.execute(&st, soon()).await.expect("insert 50 rows");
    let before = stats().await;
    admin("/admin/config", json!({"partition_rows": 7})).await;
    let result = client
        .execute(
            &Statement::new("SELECT id, v FROM many ORDER BY id"),
            soon(),
        )
        .await;
    admin(
        "/admin/config",
        json!({"partition_rows": before["partition_rows"]}),
    )
    .await;
    let r = result.expect("select");
    assert_eq!(r.rows.len(), 50);
    assert!(
        r.http_requests >= 8,
        "1 submission + 7 partition GETs, got {}",
        r.http_requests
    );
    let ids: Vec<String> = column(&r, "ID").into_iter().map(|v| v.unwrap()).collect();
    assert_eq!(ids, (0..50).map(|i| i.to_string()).collect::<Vec<_>>());
    assert_eq!(r.rows[5][1], None);
    assert_eq!(r.rows[49][1].as_deref(), Some("v49"));
}

#[tokio::test]
async fn throttling_is_retried_and_the_statement_runs_once() {
    let _g = support::snowflake_exclusive().await;
    let (client, _db) = fresh().await;
    run(&client, "CREATE TABLE once (id INT)").await;
    admin("/admin/faults", json!({"status": 429, "count": 3})).await;
    let result = client
        .execute(
            &Statement::new("INSERT INTO once VALUES (?)").bind(Binding::int(7)),
            soon(),
        )
        .await;
    clear_faults().await;
    let r = result.expect("insert after three 429s");
    assert!(r.http_requests >= 2, "{}", r.http_requests);
    assert_eq!(executions_of(r.request_id).await, 1);
    let rows = run(&client, "SELECT id FROM once").await;
    assert_eq!(rows.rows, vec![vec![Some("7".to_string())]]);
}

#[tokio::test]
async fn dropped_connections_are_retried() {
    let _g = support::snowflake_exclusive().await;
    let (client, _db) = fresh().await;
    run(&client, "CREATE TABLE dropped (id INT)").await;
    admin(
        "/admin/faults",
        json!({"drop_connection": true, "count": 2}),
    )
    .await;
    let result = client
        .execute(
            &Statement::new("INSERT INTO dropped VALUES (?)").bind(Binding::int(1)),
            soon(),
        )
        .await;
    clear_faults().await;
    let r = result.expect("insert after dropped connections");
    assert_eq!(executions_of(r.request_id).await, 1);
    assert_eq!(
        run(&client, "SELECT COUNT(*) AS n FROM dropped")
            .await
            .value(0, "n"),
        Some("1")
    );
}

#[tokio::test]
async fn persistent_unavailability_ends_at_the_deadline() {
    let _g = support::snowflake_exclusive().await;
    let client = SnowflakeClient::new(config(None, "PUBLIC"), None)
        .await
        .unwrap();
    admin("/admin/faults", json!({"status": 503, "count": 100})).await;
    let t0 = Instant::now();
    let result = client
        .execute(
            &Statement::new("SELECT 1"),
            t0 + Duration::from_millis(1500),
        )
        .await;
    let elapsed = t0.elapsed();
    clear_faults().await;
    match result {
        Err(SnowflakeError::DeadlineExceeded { attempts, last }) => {
            assert!(attempts >= 3, "{attempts}");
            // the last attempt may be cut short by the deadline; the 503 is then quoted after it
            assert!(last.contains("503"), "{last}");
        }
        other => panic!("expected DeadlineExceeded, got {other:?}"),
    }
    assert!(elapsed <= Duration::from_millis(1600), "{elapsed:?}");
}

#[tokio::test]
async fn a_running_statement_is_canceled_at_the_deadline() {
    let _g = support::snowflake_exclusive().await;
    let client = SnowflakeClient::new(config(None, "PUBLIC"), None)
        .await
        .unwrap();
    let before = stats().await;
    admin("/admin/config", json!({"async_after_ms": 50})).await;
    // minutes of work for DuckDB; the service runs one statement at a time, so it must be canceled
    let slow =
        Statement::new("SELECT SUM(SEQ8()) AS s FROM TABLE(GENERATOR(ROWCOUNT => 1000000000))");
    let t0 = Instant::now();
    let result = client.execute(&slow, t0 + Duration::from_millis(800)).await;
    let elapsed = t0.elapsed();
    admin(
        "/admin/config",
        json!({"async_after_ms": before["async_after_ms"]}),
    )
    .await;
    assert!(
        matches!(result, Err(SnowflakeError::DeadlineExceeded { .. })),
        "{result:?}"
    );
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    // the cancel freed the service: the next statement runs at once
    let t1 = Instant::now();
    client
        .execute(&Statement::new("SELECT 1"), t1 + Duration::from_secs(3))
        .await
        .expect("service not blocked");
    assert!(t1.elapsed() < Duration::from_secs(2), "{:?}", t1.elapsed());
}

#[tokio::test]
async fn a_caller_supplied_request_id_executes_once() {
    let _g = support::snowflake_shared().await;
    let (client, db) = fresh().await;
    run(&client, "CREATE TABLE idem (id INT)").await;
    let id = request_id_for(&["e2e", &db, "batch-1"]);
    let st = Statement::new("INSERT INTO idem VALUES (?)")
        .bind(Binding::int(1))
        .with_request_id(id);
    let first = client.execute(&st, soon()).await.expect("first");
    // a re-invoked Lambda: a new client, the same statement and requestId
    let again = SnowflakeClient::new(config(Some(&db), "TEST"), None)
        .await
        .unwrap();
    let second = again.execute(&st, soon()).await.expect("second");
    assert_eq!(
        first.statement_handle, second.statement_handle,
        "the stored outcome is returned"
    );
    assert_eq!(executions_of(id).await, 1);
    assert_eq!(
        run(&client, "SELECT COUNT(*) AS n FROM idem")
            .await
            .value(0, "n"),
        Some("1")
    );
}

/// Creates a secret on moto (the local AWS) through its JSON API; returns the ARN.
async fn create_secret(value: &str) -> String {
    let resp: Value = reqwest::Client::new()
        .post(support::moto_url())
        .header("X-Amz-Target", "secretsmanager.CreateSecret")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .json(&json!({"Name": support::unique("snowflake-e2e"), "SecretString": value}))
        .send()
        .await
        .expect("create secret on moto")
        .json()
        .await
        .expect("CreateSecret response");
    resp["ARN"].as_str().expect("ARN").to_string()
}

/// A new version of a secret on moto (what a rotation writes).
async fn put_secret_value(arn: &str, value: &str) {
    let resp = reqwest::Client::new()
        .post(support::moto_url())
        .header("X-Amz-Target", "secretsmanager.PutSecretValue")
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0",
        )
        .json(&json!({"SecretId": arn, "SecretString": value}))
        .send()
        .await
        .expect("put secret value on moto");
    assert!(resp.status().is_success(), "{}", resp.status());
}

#[tokio::test]
async fn a_key_rotated_in_secrets_manager_is_used_after_a_401_without_a_new_client() {
    let _g = support::snowflake_shared().await;
    let sdk = support::sdk_config().await;
    let url = support::snowflake_url();
    // The client starts with a key the service does not trust (the old key, say) ...
    let arn = create_secret(&json!({"private_key": OTHER_KEY}).to_string()).await;
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_PRIVATE_KEY_SECRET_ARN", arn.as_str()),
    ];
    let client = SnowflakeClient::new(
        SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(),
        Some(&sdk),
    )
    .await
    .unwrap();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(matches!(err, SnowflakeError::Unauthorized(_)), "{err:?}");

    // ... then the secret is rotated to the registered key: the same client's next statement
    // is rejected once, reads the secret again and succeeds.
    put_secret_value(&arn, &json!({"private_key": key_pem()}).to_string()).await;
    let rotated = run(&client, "SELECT 1 AS one").await;
    assert_eq!(rotated.value(0, "ONE"), Some("1"));
    assert_eq!(
        rotated.http_requests, 2,
        "one 401, one retry with the key read again"
    );
    assert_eq!(run(&client, "SELECT 2 AS two").await.http_requests, 1);
}

#[tokio::test]
async fn key_and_token_are_read_from_secrets_manager() {
    let _g = support::snowflake_shared().await;
    let sdk = support::sdk_config().await;
    let url = support::snowflake_url();

    // the key as JSON {"private_key": "<PEM>"}
    let key_arn = create_secret(&json!({"private_key": key_pem()}).to_string()).await;
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_PRIVATE_KEY_SECRET_ARN", key_arn.as_str()),
    ];
    let client = SnowflakeClient::new(
        SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(),
        Some(&sdk),
    )
    .await
    .unwrap();
    assert_eq!(
        run(&client, "SELECT 1 AS one").await.value(0, "ONE"),
        Some("1")
    );

    // the key as the PEM itself
    let pem_arn = create_secret(&key_pem()).await;
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_PRIVATE_KEY_SECRET_ARN", pem_arn.as_str()),
    ];
    let client = SnowflakeClient::new(
        SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(),
        Some(&sdk),
    )
    .await
    .unwrap();
    run(&client, "SELECT 1").await;

    // a PAT as the plain secret
    let token_arn = create_secret("local-dev-token").await;
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_AUTH", "pat"),
        ("SNOWFLAKE_TOKEN_SECRET_ARN", token_arn.as_str()),
    ];
    let client = SnowflakeClient::new(
        SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(),
        Some(&sdk),
    )
    .await
    .unwrap();
    run(&client, "SELECT 1").await;

    // a missing secret is a typed error naming the ARN only
    let missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-abcdef";
    let vars = [
        ("SNOWFLAKE_ACCOUNT", "localtest"),
        ("SNOWFLAKE_USER", "loader"),
        ("SNOWFLAKE_URL", url.as_str()),
        ("SNOWFLAKE_SCHEMA", "PUBLIC"),
        ("SNOWFLAKE_PRIVATE_KEY_SECRET_ARN", missing),
    ];
    let err = SnowflakeClient::new(
        SnowflakeConfig::from_env(&Env::new(&vars)).unwrap(),
        Some(&sdk),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::Secret { arn, .. } if arn == missing),
        "{err:?}"
    );
}
