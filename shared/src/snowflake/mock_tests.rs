//! The client against a scripted in-process HTTP server: the exact requests it sends (headers,
//! requestId/retry, polling, partitions) for responses the local service cannot produce on demand.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

#[derive(Debug, Clone)]
struct Req {
    method: String,
    target: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Req {
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }
    fn query(&self, key: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&').find_map(|kv| {
            kv.split_once('=')
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

type Reply = (u16, Vec<u8>);
type Script = Box<dyn Fn(&Req, usize) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server; `script(request, index)` answers each request.
struct Mock {
    url: String,
    log: Arc<Mutex<Vec<Req>>>,
}

impl Mock {
    fn start(script: impl Fn(&Req, usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log: Arc<Mutex<Vec<Req>>> = Arc::default();
        let script: Arc<Script> = Arc::new(Box::new(script));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (log, script) = (log2.clone(), script.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let (method, target) = (
                            parts.next().unwrap_or("").to_string(),
                            parts.next().unwrap_or("").to_string(),
                        );
                        let mut headers = HashMap::new();
                        loop {
                            let mut h = String::new();
                            reader.read_line(&mut h).unwrap();
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                            }
                        }
                        let n: usize = headers
                            .get("content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        let mut body = vec![0; n];
                        reader.read_exact(&mut body).unwrap();
                        let req = Req {
                            method,
                            target,
                            headers,
                            body,
                        };
                        let index = {
                            let mut l = log.lock().unwrap();
                            l.push(req.clone());
                            l.len() - 1
                        };
                        let (status, body) = script(&req, index);
                        let head = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                            body.len()
                        );
                        if out
                            .write_all(head.as_bytes())
                            .and_then(|_| out.write_all(&body))
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        Mock { url, log }
    }

    fn requests(&self) -> Vec<Req> {
        self.log.lock().unwrap().clone()
    }
}

fn json_reply(status: u16, v: Value) -> Reply {
    (status, v.to_string().into_bytes())
}

fn config(url: &str, auth: AuthConfig) -> SnowflakeConfig {
    SnowflakeConfig {
        account: "localtest".into(),
        base_url: url.into(),
        database: None,
        schema: "RAW".into(),
        warehouse: Some("WH".into()),
        role: None,
        auth,
        statement_timeout: std::time::Duration::from_secs(30),
        user_agent: "kinesis-snowflake/test".into(),
        query_tag: None,
        retry: RetryPolicy {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            poll_initial: Duration::from_millis(5),
            poll_max: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
    }
}

fn pat() -> AuthConfig {
    AuthConfig::Token {
        kind: TokenType::ProgrammaticAccessToken,
        source: TokenSource::Value(SecretString::new("tok")),
    }
}

const H: &str = "01b2c3d4-0000-4000-8000-000000000001";

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

#[tokio::test]
async fn resend_after_503_then_202_poll_and_partitions() {
    let mock = Mock::start(|req, i| {
        match (req.method.as_str(), req.path(), req.query("partition")) {
            ("POST", "/api/v2/statements", _) if i == 0 => {
                json_reply(503, json!({"message": "busy"}))
            }
            ("POST", "/api/v2/statements", _) => json_reply(
                202,
                json!({"code": "333334", "statementHandle": H, "statementStatusUrl": format!("/api/v2/statements/{H}")}),
            ),
            ("GET", _, None) if i == 2 => {
                json_reply(202, json!({"code": "333334", "statementHandle": H}))
            }
            ("GET", _, None) => json_reply(
                200,
                json!({
                    "statementHandle": H,
                    "resultSetMetaData": {
                        "numRows": 5,
                        "rowType": [{"name": "ID", "type": "FIXED"}],
                        "partitionInfo": [{"rowCount": 2}, {"rowCount": 2}, {"rowCount": 1}],
                    },
                    "data": [["0"], ["1"]],
                }),
            ),
            ("GET", _, Some(p)) if p == "1" => {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                enc.write_all(json!({"data": [["2"], [null]]}).to_string().as_bytes())
                    .unwrap();
                (200, enc.finish().unwrap())
            }
            ("GET", _, Some(p)) if p == "2" => json_reply(200, json!({"data": [["4"]]})),
            _ => json_reply(404, json!({"message": "unexpected"})),
        }
    });
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    let r = client
        .execute(&Statement::new("SELECT id FROM t"), soon())
        .await
        .unwrap();
    let ids: Vec<Option<&str>> = r.rows.iter().map(|row| row[0].as_deref()).collect();
    assert_eq!(ids, [Some("0"), Some("1"), Some("2"), None, Some("4")]);
    assert_eq!(r.statement_handle, H);
    assert_eq!(r.http_requests, 6);

    let reqs = mock.requests();
    let (first, second) = (&reqs[0], &reqs[1]);
    let id = first.query("requestId").expect("requestId");
    assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 4);
    assert_eq!(
        first.query("retry"),
        None,
        "a first attempt of a random id is not a retry"
    );
    assert_eq!(
        second.query("requestId"),
        Some(id),
        "the resend reuses the requestId"
    );
    assert_eq!(second.query("retry").as_deref(), Some("true"));
    assert_eq!(first.body, second.body);
    for r in &reqs {
        assert_eq!(r.header("authorization"), Some("Bearer tok"));
        assert_eq!(
            r.header("x-snowflake-authorization-token-type"),
            Some("PROGRAMMATIC_ACCESS_TOKEN")
        );
        assert_eq!(r.header("user-agent"), Some("kinesis-snowflake/test"));
        assert_eq!(r.header("accept"), Some("application/json"));
    }
    assert_eq!(first.header("content-type"), Some("application/json"));
    let body: Value = serde_json::from_slice(&first.body).unwrap();
    assert_eq!(
        body,
        json!({"statement": "SELECT id FROM t", "timeout": 30, "schema": "RAW", "warehouse": "WH"})
    );
    assert_eq!(reqs[2].target, format!("/api/v2/statements/{H}"));
    let mut partitions: Vec<String> = reqs[4..].iter().map(|r| r.target.clone()).collect();
    partitions.sort();
    assert_eq!(
        partitions,
        [
            format!("/api/v2/statements/{H}?partition=1"),
            format!("/api/v2/statements/{H}?partition=2")
        ]
    );
}

#[tokio::test]
async fn caller_supplied_request_id_is_always_a_retry() {
    let mock = Mock::start(|_, _| {
        json_reply(
            200,
            json!({"statementHandle": H, "resultSetMetaData": {"numRows": 0, "rowType": [{"name": "X", "type": "TEXT"}]}, "data": []}),
        )
    });
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    let id = request_id_for(&["batch", "1"]);
    let r = client
        .execute(&Statement::new("SELECT 1").with_request_id(id), soon())
        .await
        .unwrap();
    assert_eq!(r.request_id, id);
    assert!(r.rows.is_empty());
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].query("requestId"), Some(id.to_string()));
    assert_eq!(reqs[0].query("retry").as_deref(), Some("true"));
}

#[tokio::test]
async fn a_401_gets_one_new_jwt_then_unauthorized() {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../local/keys/snowflake_test_key.p8"),
    )
    .unwrap();
    let keypair = || AuthConfig::KeyPair {
        user: "loader".into(),
        key: KeySource::Pem(SecretString::new(pem.clone())),
    };

    // 401 once, then success
    let mock = Mock::start(|_, i| {
        if i == 0 {
            json_reply(
                401,
                json!({"code": "390144", "message": "JWT token is invalid."}),
            )
        } else {
            json_reply(200, json!({"statementHandle": H, "data": [["1"]]}))
        }
    });
    let client = SnowflakeClient::new(config(&mock.url, keypair()), None)
        .await
        .unwrap();
    client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].query("retry").as_deref(), Some("true"));
    for r in &reqs {
        assert_eq!(
            r.header("x-snowflake-authorization-token-type"),
            Some("KEYPAIR_JWT")
        );
        assert!(r.header("authorization").unwrap().starts_with("Bearer eyJ"));
    }

    // 401 always: exactly two attempts, then Unauthorized without token material
    let mock = Mock::start(|_, _| {
        json_reply(
            401,
            json!({"code": "390144", "message": "JWT token is invalid."}),
        )
    });
    let client = SnowflakeClient::new(config(&mock.url, keypair()), None)
        .await
        .unwrap();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::Unauthorized(m) if m == "390144: JWT token is invalid."),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 2);
    assert!(!format!("{err:?} {client:?}").contains("eyJ"));
}

fn key_fixture(name: &str) -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../local/keys")
            .join(name),
    )
    .unwrap()
}

/// The `iss` claim of the bearer JWT a request carries (read, not verified).
fn issuer(req: &Req) -> String {
    use base64::Engine as _;
    let token = req
        .header("authorization")
        .unwrap()
        .trim_start_matches("Bearer ");
    let claims = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    claims["iss"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_401_reads_a_rotated_key_again_once() {
    // The service trusts only the fixture key; the client starts with another one in its file.
    let trusted = key_fixture("FINGERPRINT").trim().to_string();
    let accepts = {
        let trusted = trusted.clone();
        move |req: &Req, _: usize| {
            if issuer(req).ends_with(&trusted) {
                json_reply(200, json!({"statementHandle": H, "data": [["1"]]}))
            } else {
                json_reply(
                    401,
                    json!({"code": "390144", "message": "JWT token is invalid."}),
                )
            }
        }
    };
    let file = std::env::temp_dir().join(format!("sf-key-{}.p8", uuid::Uuid::new_v4()));
    std::fs::write(&file, key_fixture("untrusted_test_key.p8")).unwrap();
    let keypair = AuthConfig::KeyPair {
        user: "loader".into(),
        key: KeySource::File(file.clone()),
    };
    let mock = Mock::start(accepts.clone());
    let client = SnowflakeClient::new(config(&mock.url, keypair.clone()), None)
        .await
        .unwrap();

    // Not rotated yet: the 401 makes the client read the file again, sign with what it finds
    // (the same key) and retry once; then it gives up.
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(matches!(err, SnowflakeError::Unauthorized(_)), "{err:?}");
    assert_eq!(mock.requests().len(), 2);

    // The key is rotated in place: the next 401 picks it up, without a new client.
    std::fs::write(&file, key_fixture("snowflake_test_key.p8")).unwrap();
    let result = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap();
    assert_eq!(result.rows, vec![vec![Some("1".to_string())]]);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 4);
    assert!(
        !issuer(&reqs[2]).ends_with(&trusted),
        "signed with the old key first"
    );
    assert!(
        issuer(&reqs[3]).ends_with(&trusted),
        "then with the rotated one"
    );
    assert_eq!(reqs[3].query("retry").as_deref(), Some("true"));
    // and it stays in use: no more 401s
    client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap();
    assert_eq!(mock.requests().len(), 5);

    // A key given in the configuration cannot change: no re-read, the same two attempts.
    let mock = Mock::start(accepts);
    let client = SnowflakeClient::new(
        config(
            &mock.url,
            AuthConfig::KeyPair {
                user: "loader".into(),
                key: KeySource::Pem(SecretString::new(key_fixture("untrusted_test_key.p8"))),
            },
        ),
        None,
    )
    .await
    .unwrap();
    assert!(client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .is_err());
    assert_eq!(mock.requests().len(), 2);

    // A key file that has become unreadable is reported as such.
    let mock = Mock::start(|_, _| {
        json_reply(
            401,
            json!({"code": "390144", "message": "JWT token is invalid."}),
        )
    });
    let client = SnowflakeClient::new(config(&mock.url, keypair), None)
        .await
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::Key(m) if m.contains("cannot read")),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_status_url_on_another_host_is_not_followed() {
    let mock = Mock::start(|req, _| match req.method.as_str() {
        "POST" => json_reply(
            202,
            json!({"statementHandle": H, "statementStatusUrl": format!("http://evil.example/api/v2/statements/{H}")}),
        ),
        _ => json_reply(200, json!({"statementHandle": H, "data": []})),
    });
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap();
    let reqs = mock.requests();
    assert_eq!(reqs[1].method, "GET");
    assert_eq!(reqs[1].target, format!("/api/v2/statements/{H}"));
}

#[tokio::test]
async fn polling_stops_at_the_deadline_and_cancels() {
    let mock = Mock::start(
        |req, _| match (req.method.as_str(), req.path().ends_with("/cancel")) {
            ("POST", true) => json_reply(
                200,
                json!({"statementHandle": H, "message": "successfully canceled"}),
            ),
            _ => json_reply(202, json!({"code": "333334", "statementHandle": H})),
        },
    );
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    let t0 = Instant::now();
    let err = client
        .execute(&Statement::new("SELECT 1"), t0 + Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::DeadlineExceeded { last, .. } if last.contains("still running")),
        "{err:?}"
    );
    assert!(
        t0.elapsed() < Duration::from_millis(450),
        "{:?}",
        t0.elapsed()
    );
    let reqs = mock.requests();
    assert!(reqs.iter().filter(|r| r.method == "GET").count() >= 3);
    let last = reqs.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.target.as_str()),
        ("POST", format!("/api/v2/statements/{H}/cancel").as_str())
    );
}

#[tokio::test]
async fn non_retryable_statuses_fail_at_once() {
    let mock = Mock::start(|_, _| {
        json_reply(400, json!({"code": "390400", "message": "Invalid request"}))
    });
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::Http { status: 400, message } if message.contains("Invalid request")),
        "{err:?}"
    );
    assert_eq!(mock.requests().len(), 1);

    let mock =
        Mock::start(|_, _| json_reply(408, json!({"statementHandle": H, "message": "timeout"})));
    let client = SnowflakeClient::new(config(&mock.url, pat()), None)
        .await
        .unwrap();
    let err = client
        .execute(&Statement::new("SELECT 1"), soon())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SnowflakeError::StatementTimeout { statement_handle: Some(h), .. } if h == H),
        "{err:?}"
    );
}

/// The streaming client reads a plain-text hostname, asks for a token scoped to the role and
/// the host, and appends with the first and last offset tokens.
#[tokio::test]
async fn streaming_reads_a_plain_hostname_scopes_the_role_and_sends_both_offset_tokens() {
    let mock = Mock::start(move |req, _| match (req.method.as_str(), req.path()) {
        ("GET", "/v2/streaming/hostname") => {
            let host = req.header("host").unwrap_or_default().to_string();
            (200, host.into_bytes())
        }
        ("POST", "/oauth/token") => (200, b"scoped".to_vec()),
        ("PUT", _) => json_reply(
            200,
            json!({"next_continuation_token": "c1", "channel_status": {"channel_status_code": "SUCCESS", "last_committed_offset_token": null}}),
        ),
        ("POST", p) if p.ends_with("/rows") => {
            json_reply(200, json!({"next_continuation_token": "c2"}))
        }
        _ => json_reply(404, json!({"message": "unexpected"})),
    });
    let mut config = config(&mock.url, pat());
    config.role = Some("loader_role".into());
    let client = SnowflakeClient::new(config, None).await.unwrap();
    let streaming = streaming::StreamingClient::new(&client);
    let mut channel = streaming
        .open_channel("DB", "S", "P", "C", soon())
        .await
        .unwrap();
    streaming
        .append(&mut channel, b"{}\n{}\n", ("10", "11"), soon())
        .await
        .unwrap();
    let reqs = mock.requests();
    let token = reqs.iter().find(|r| r.path() == "/oauth/token").unwrap();
    let form = String::from_utf8(token.body.clone()).unwrap();
    let form = percent_encoding::percent_decode_str(&form).decode_utf8_lossy();
    let host = mock.url.trim_start_matches("http://");
    assert!(
        form.ends_with(&format!("&scope=session:role:LOADER_ROLE {host}")),
        "{form}"
    );
    let append = reqs.iter().find(|r| r.path().ends_with("/rows")).unwrap();
    assert_eq!(append.query("startOffsetToken").as_deref(), Some("10"));
    assert_eq!(append.query("endOffsetToken").as_deref(), Some("11"));
    assert_eq!(append.query("offsetToken"), None);
    assert_eq!(append.query("continuationToken").as_deref(), Some("c1"));
}
