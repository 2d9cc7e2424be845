//! Client configuration, read from the environment once at init.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{ConfigError, Env};

/// A string that never shows in `Debug` or `Display` output (keys, tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret itself; call only where it is used (signing, the Authorization header).
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self(s)
    }
}

/// Where the PKCS#8 PEM private key for key-pair authentication comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A Secrets Manager secret whose `SecretString` is the PEM itself or JSON with `private_key`
    /// and, for an encrypted key, `private_key_passphrase`.
    SecretArn(String),
    /// A PEM file (local runs).
    File(PathBuf),
    /// The PEM text (local runs, tests).
    Pem(SecretString),
    /// A key in `key` (a file or the PEM text) encrypted with `passphrase`
    /// (`SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`). A key in Secrets Manager carries its passphrase in
    /// the same secret instead (`private_key_passphrase`).
    WithPassphrase {
        /// Where the `ENCRYPTED PRIVATE KEY` PEM comes from.
        key: Box<KeySource>,
        /// What it was encrypted with.
        passphrase: SecretString,
    },
}

/// Where a bearer token (PAT, OAuth access token, or a pre-made JWT) comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    /// The token itself (`SNOWFLAKE_TOKEN`).
    Value(SecretString),
    /// A Secrets Manager secret whose `SecretString` is the token or JSON with `token`.
    SecretArn(String),
}

/// The `X-Snowflake-Authorization-Token-Type` of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// A key-pair JWT made elsewhere and passed in as a token (`KEYPAIR_JWT`).
    KeypairJwt,
    /// A programmatic access token (`SNOWFLAKE_AUTH=pat`).
    ProgrammaticAccessToken,
    /// An OAuth access token (`SNOWFLAKE_AUTH=oauth`).
    OAuth,
}

impl TokenType {
    /// The header's value for this kind of token.
    pub(crate) fn header_value(self) -> &'static str {
        match self {
            TokenType::KeypairJwt => "KEYPAIR_JWT",
            TokenType::ProgrammaticAccessToken => "PROGRAMMATIC_ACCESS_TOKEN",
            TokenType::OAuth => "OAUTH",
        }
    }
}

/// How the client authenticates.
#[derive(Debug, Clone)]
pub enum AuthConfig {
    /// Key-pair JWTs signed by the client (RS256), renewed before they expire.
    KeyPair {
        /// The Snowflake login name (`SNOWFLAKE_USER`); upper-cased into the JWT's `iss` and `sub`.
        user: String,
        /// Where the private key whose public half is set on that user comes from.
        key: KeySource,
    },
    /// A static bearer token: a programmatic access token, an OAuth access token, or a JWT made
    /// elsewhere (`TokenType::KeypairJwt`).
    Token {
        /// What the token is, sent as its `X-Snowflake-Authorization-Token-Type`.
        kind: TokenType,
        /// Where the token comes from.
        source: TokenSource,
    },
}

/// Backoff and timeouts. The defaults suit Lambda; tests may shorten them.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Full-jitter exponential backoff for 429/5xx/transport failures: attempt n sleeps a random
    /// duration in `[0, min(max, base * 2^n)]`.
    pub base: Duration,
    /// The cap on one backoff sleep.
    pub max: Duration,
    /// Polling of a running statement (after a 202): starts at `poll_initial`, doubles up to
    /// `poll_max`.
    pub poll_initial: Duration,
    /// The longest wait between two polls of a running statement.
    pub poll_max: Duration,
    /// Upper bound of one HTTP attempt (further bounded by the caller's deadline). Snowflake holds
    /// a synchronous submission up to 45 s before answering 202.
    pub http_timeout: Duration,
    /// Upper bound of the TCP and TLS handshake of a new connection.
    pub connect_timeout: Duration,
    /// Time allowed for the best-effort cancel sent after the deadline has passed.
    pub cancel_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            poll_initial: Duration::from_millis(50),
            poll_max: Duration::from_secs(1),
            http_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            cancel_timeout: Duration::from_millis(500),
        }
    }
}

/// Everything the client needs; see [`SnowflakeConfig::from_env`] for the variables.
#[derive(Debug, Clone)]
pub struct SnowflakeConfig {
    /// The account identifier as configured (`myorg-myaccount`, `xy12345.us-east-1`, ...).
    pub account: String,
    /// `https://<account>.snowflakecomputing.com` unless overridden; no trailing slash.
    pub base_url: String,
    /// The statement context, as configured: identifiers in SQL syntax (`ingest` is `INGEST`,
    /// `"Mixed"` is `Mixed`). [`ident`](super::ident) quotes them that way in qualified names,
    /// and the client sends them resolved (see [`Context`]).
    pub database: Option<String>,
    /// The schema statements run in (`SNOWFLAKE_SCHEMA`), the one unqualified names resolve to.
    pub schema: String,
    /// The warehouse that runs the statements; None leaves the user's default warehouse.
    pub warehouse: Option<String>,
    /// The role statements run as; None leaves the user's default role.
    pub role: Option<String>,
    /// How the client proves who it is.
    pub auth: AuthConfig,
    /// Sent as the statement `timeout`; Snowflake cancels the statement after it (HTTP 408).
    pub statement_timeout: Duration,
    /// The `User-Agent` header of every request: `kinesis-snowflake/<version>` unless a caller
    /// changes it.
    pub user_agent: String,
    /// Default `query_tag` session parameter; a statement's own tag wins.
    pub query_tag: Option<String>,
    /// Backoff between retries, statement polling and HTTP timeouts.
    pub retry: RetryPolicy,
}

/// `kinesis-snowflake/<version of this crate>`.
pub(crate) fn default_user_agent() -> String {
    format!("kinesis-snowflake/{}", env!("CARGO_PKG_VERSION"))
}

/// The default URL for an account: underscores become hyphens (Snowflake's URL form).
pub(crate) fn default_base_url(account: &str) -> String {
    format!(
        "https://{}.snowflakecomputing.com",
        account.to_ascii_lowercase().replace('_', "-")
    )
}

const KEY_VARS: [&str; 3] = [
    "SNOWFLAKE_PRIVATE_KEY_SECRET_ARN",
    "SNOWFLAKE_PRIVATE_KEY_FILE",
    "SNOWFLAKE_PRIVATE_KEY",
];
/// The passphrase of an encrypted key in a file or in `SNOWFLAKE_PRIVATE_KEY`.
pub(crate) const PASSPHRASE_VAR: &str = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE";
const TOKEN_VARS: [&str; 2] = ["SNOWFLAKE_TOKEN", "SNOWFLAKE_TOKEN_SECRET_ARN"];

fn exactly_one<'v>(
    env: &Env<'_>,
    vars: &[&'v str],
    what: &str,
) -> Result<(&'v str, String), ConfigError> {
    let set: Vec<(&str, String)> = vars
        .iter()
        .filter_map(|v| env.optional(v).map(|x| (*v, x)))
        .collect();
    match set.len() {
        1 => Ok(set.into_iter().next().expect("one")),
        0 => Err(ConfigError::new(
            vars[0],
            format!("{what}: set exactly one of {}", vars.join(", ")),
        )),
        _ => Err(ConfigError::new(
            set[1].0,
            format!(
                "{what}: set exactly one of {}, found {}",
                vars.join(", "),
                {
                    let names: Vec<&str> = set.iter().map(|(k, _)| *k).collect();
                    names.join(" and ")
                }
            ),
        )),
    }
}

fn reject_any(env: &Env<'_>, vars: &[&str], why: &str) -> Result<(), ConfigError> {
    match vars.iter().find(|v| env.optional(v).is_some()) {
        Some(v) => Err(ConfigError::new(*v, format!("must not be set {why}"))),
        None => Ok(()),
    }
}

fn check_name(var: &str, value: &str) -> Result<(), ConfigError> {
    super::ident::resolve(value)
        .map(|_| ())
        .map_err(|e| ConfigError::new(var, e.to_string()))
}

/// The `database`, `schema`, `warehouse` and `role` fields of a request, resolved as Snowflake
/// resolves the identifiers: the SQL API compares these fields case-sensitively with the stored
/// names ("The values in these fields are case-sensitive and must match the case of the field
/// returned by a SQL SHOW command",
/// https://docs.snowflake.com/en/developer-guide/sql-api/submitting-requests), so `ingest` must
/// be sent as `INGEST`, and `"Mixed"` as `Mixed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Context {
    pub database: Option<String>,
    pub schema: String,
    pub warehouse: Option<String>,
    pub role: Option<String>,
}

impl Context {
    pub(crate) fn of(config: &SnowflakeConfig) -> Result<Self, super::ident::IdentError> {
        use super::ident::resolve;
        let optional = |v: &Option<String>| v.as_deref().map(resolve).transpose();
        Ok(Self {
            database: optional(&config.database)?,
            schema: resolve(&config.schema)?,
            warehouse: optional(&config.warehouse)?,
            role: optional(&config.role)?,
        })
    }
}

impl SnowflakeConfig {
    /// The key-pair user, if the client authenticates with a key pair.
    pub fn user(&self) -> Option<&str> {
        match &self.auth {
            AuthConfig::KeyPair { user, .. } => Some(user),
            AuthConfig::Token { .. } => None,
        }
    }

    /// Reads:
    /// - `SNOWFLAKE_ACCOUNT` (required), `SNOWFLAKE_URL` (optional, default
    ///   `https://<account>.snowflakecomputing.com`; the local service is `http://127.0.0.1:8787`),
    /// - `SNOWFLAKE_SCHEMA` (required), `SNOWFLAKE_DATABASE`, `SNOWFLAKE_WAREHOUSE`,
    ///   `SNOWFLAKE_ROLE` (optional): identifiers as written in SQL, unquoted (`ingest`, resolved
    ///   to `INGEST`) or double-quoted (`"Mixed Case"`, kept as written),
    /// - `SNOWFLAKE_AUTH` = `keypair` (default) | `pat` | `oauth`,
    /// - key pair: `SNOWFLAKE_USER` (required) and exactly one of
    ///   `SNOWFLAKE_PRIVATE_KEY_SECRET_ARN`, `SNOWFLAKE_PRIVATE_KEY_FILE`, `SNOWFLAKE_PRIVATE_KEY`;
    ///   `SNOWFLAKE_PRIVATE_KEY_PASSPHRASE` for an encrypted key in a file or the variable (a
    ///   secret holds its passphrase itself),
    /// - pat/oauth: exactly one of `SNOWFLAKE_TOKEN`, `SNOWFLAKE_TOKEN_SECRET_ARN`,
    /// - `SNOWFLAKE_STATEMENT_TIMEOUT_SECS` (default 300), `SNOWFLAKE_QUERY_TAG` (optional).
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let account = account_from_env(env)?;
        let base_url = base_url_from_env(env, &account)?;
        let schema = env.required("SNOWFLAKE_SCHEMA")?;
        check_name("SNOWFLAKE_SCHEMA", &schema)?;
        let database = env.optional("SNOWFLAKE_DATABASE");
        let warehouse = env.optional("SNOWFLAKE_WAREHOUSE");
        let role = env.optional("SNOWFLAKE_ROLE");
        for (var, v) in [
            ("SNOWFLAKE_DATABASE", &database),
            ("SNOWFLAKE_WAREHOUSE", &warehouse),
            ("SNOWFLAKE_ROLE", &role),
        ] {
            if let Some(v) = v {
                check_name(var, v)?;
            }
        }
        let auth = AuthConfig::from_env(env)?;
        let statement_timeout = statement_timeout_from_env(env)?;
        Ok(Self {
            account,
            base_url,
            database,
            schema,
            warehouse,
            role,
            auth,
            statement_timeout,
            user_agent: default_user_agent(),
            query_tag: env.optional("SNOWFLAKE_QUERY_TAG"),
            retry: RetryPolicy::default(),
        })
    }
}

/// `SNOWFLAKE_ACCOUNT`, which goes into URLs and JWT claims: letters, digits, `-`, `_`, `.`.
fn account_from_env(env: &Env<'_>) -> Result<String, ConfigError> {
    let account = env.required("SNOWFLAKE_ACCOUNT")?;
    if !account
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ConfigError::new(
            "SNOWFLAKE_ACCOUNT",
            "may contain only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(account)
}

/// `SNOWFLAKE_URL` without its trailing slash, or the account's default URL.
fn base_url_from_env(env: &Env<'_>, account: &str) -> Result<String, ConfigError> {
    let Some(url) = env.optional("SNOWFLAKE_URL") else {
        return Ok(default_base_url(account));
    };
    let url = url.trim_end_matches('/').to_string();
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| ConfigError::new("SNOWFLAKE_URL", format!("invalid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(ConfigError::new(
            "SNOWFLAKE_URL",
            "must be an http(s) URL with a host",
        ));
    }
    Ok(url)
}

/// `SNOWFLAKE_STATEMENT_TIMEOUT_SECS`: 300 unless set, at most Snowflake's 7 days.
fn statement_timeout_from_env(env: &Env<'_>) -> Result<Duration, ConfigError> {
    let timeout_secs: u64 = env.parse_or("SNOWFLAKE_STATEMENT_TIMEOUT_SECS", 300)?;
    if timeout_secs > 604_800 {
        return Err(ConfigError::new(
            "SNOWFLAKE_STATEMENT_TIMEOUT_SECS",
            "at most 604800 (7 days)",
        ));
    }
    Ok(Duration::from_secs(timeout_secs))
}

/// `key` with the passphrase of [`PASSPHRASE_VAR`], when set. Not with a secret: its passphrase
/// belongs in the same secret, not in the function's environment (readable by whoever may read
/// the function's configuration). Like every variable, the value is trimmed.
fn with_passphrase(env: &Env<'_>, key: KeySource) -> Result<KeySource, ConfigError> {
    let Some(passphrase) = env.optional(PASSPHRASE_VAR) else {
        return Ok(key);
    };
    if matches!(key, KeySource::SecretArn(_)) {
        return Err(ConfigError::new(
            PASSPHRASE_VAR,
            "must not be set with SNOWFLAKE_PRIVATE_KEY_SECRET_ARN: put the passphrase in the \
             secret's private_key_passphrase field",
        ));
    }
    Ok(KeySource::WithPassphrase {
        key: Box::new(key),
        passphrase: SecretString(passphrase),
    })
}

impl AuthConfig {
    /// `SNOWFLAKE_AUTH` and the variables of the method it names (see
    /// [`SnowflakeConfig::from_env`]).
    fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let method = env
            .optional("SNOWFLAKE_AUTH")
            .map(|m| m.to_ascii_lowercase());
        match method.as_deref().unwrap_or("keypair") {
            "keypair" | "key_pair" | "key-pair" | "jwt" => Self::key_pair_from_env(env),
            m @ ("pat" | "oauth") => Self::token_from_env(env, m),
            other => Err(ConfigError::new(
                "SNOWFLAKE_AUTH",
                format!("expected keypair, pat or oauth, got {other:?}"),
            )),
        }
    }

    /// `SNOWFLAKE_USER` and exactly one of [`KEY_VARS`]; no token variable.
    fn key_pair_from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        reject_any(env, &TOKEN_VARS, "with SNOWFLAKE_AUTH=keypair")?;
        let user = env.required("SNOWFLAKE_USER")?;
        let (var, value) = exactly_one(env, &KEY_VARS, "key-pair authentication")?;
        let key = match var {
            "SNOWFLAKE_PRIVATE_KEY_SECRET_ARN" => KeySource::SecretArn(value),
            "SNOWFLAKE_PRIVATE_KEY_FILE" => KeySource::File(PathBuf::from(value)),
            _ => {
                // env values are trimmed; PEM parsing tolerates that. Also accept "\n"
                // escapes, which is how a PEM usually ends up in a one-line variable.
                KeySource::Pem(SecretString(value.replace("\\n", "\n")))
            }
        };
        Ok(AuthConfig::KeyPair {
            user,
            key: with_passphrase(env, key)?,
        })
    }

    /// Exactly one of [`TOKEN_VARS`] for `SNOWFLAKE_AUTH` `method` (`pat` or `oauth`); no key
    /// variable.
    fn token_from_env(env: &Env<'_>, method: &str) -> Result<Self, ConfigError> {
        let why = format!("with SNOWFLAKE_AUTH={method}");
        reject_any(env, &KEY_VARS, &why)?;
        reject_any(env, &[PASSPHRASE_VAR], &why)?;
        let kind = if method == "pat" {
            TokenType::ProgrammaticAccessToken
        } else {
            TokenType::OAuth
        };
        let (var, value) = exactly_one(env, &TOKEN_VARS, "token authentication")?;
        let source = if var == "SNOWFLAKE_TOKEN" {
            TokenSource::Value(SecretString(value))
        } else {
            TokenSource::SecretArn(value)
        };
        Ok(AuthConfig::Token { kind, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<SnowflakeConfig, ConfigError> {
        let src: Vec<(&str, &str)> = pairs.to_vec();
        SnowflakeConfig::from_env(&Env::new(&src))
    }

    const BASE: [(&str, &str); 3] = [
        ("SNOWFLAKE_ACCOUNT", "xy12345.us-east-1"),
        ("SNOWFLAKE_SCHEMA", "RAW"),
        ("SNOWFLAKE_USER", "loader"),
    ];

    #[test]
    fn keypair_from_file_with_defaults() {
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/keys/k.p8"));
        let c = cfg(&env).unwrap();
        assert_eq!(
            c.base_url,
            "https://xy12345.us-east-1.snowflakecomputing.com"
        );
        assert_eq!(c.statement_timeout, Duration::from_secs(300));
        assert!(c.user_agent.starts_with("kinesis-snowflake/"));
        assert!(
            matches!(c.auth, AuthConfig::KeyPair { ref user, key: KeySource::File(ref p) } if user == "loader" && p.to_str() == Some("/keys/k.p8"))
        );
        assert_eq!(c.database, None);
    }

    #[test]
    fn pem_in_env_is_redacted_in_debug() {
        let mut env = BASE.to_vec();
        env.push((
            "SNOWFLAKE_PRIVATE_KEY",
            "-----BEGIN PRIVATE KEY-----\\nSECRETSTUFF\\n-----END PRIVATE KEY-----",
        ));
        let c = cfg(&env).unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("SECRETSTUFF"), "{dbg}");
        match c.auth {
            AuthConfig::KeyPair {
                key: KeySource::Pem(p),
                ..
            } => assert!(p.expose().contains("\nSECRETSTUFF\n")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exactly_one_key_source() {
        let err = cfg(&BASE).unwrap_err();
        assert_eq!(err.var, "SNOWFLAKE_PRIVATE_KEY_SECRET_ARN");
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"));
        env.push(("SNOWFLAKE_PRIVATE_KEY", "pem"));
        let err = cfg(&env).unwrap_err();
        assert_eq!(err.var, "SNOWFLAKE_PRIVATE_KEY");
        assert!(
            err.reason
                .contains("SNOWFLAKE_PRIVATE_KEY_FILE and SNOWFLAKE_PRIVATE_KEY"),
            "{err}"
        );
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"));
        env.push(("SNOWFLAKE_TOKEN", "t"));
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_TOKEN");
    }

    #[test]
    fn a_passphrase_goes_with_a_key_file_or_text_never_with_a_secret_or_token() {
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/keys/k.p8"));
        env.push((PASSPHRASE_VAR, "pass-secret"));
        let c = cfg(&env).unwrap();
        assert!(!format!("{c:?}").contains("pass-secret"));
        assert!(matches!(
            c.auth,
            AuthConfig::KeyPair { key: KeySource::WithPassphrase { ref key, ref passphrase }, .. }
                if matches!(**key, KeySource::File(_)) && passphrase.expose() == "pass-secret"
        ));
        let mut env = BASE.to_vec();
        env.push((
            "SNOWFLAKE_PRIVATE_KEY_SECRET_ARN",
            "arn:aws:secretsmanager:us-east-1:1:secret:k",
        ));
        env.push((PASSPHRASE_VAR, "pass-secret"));
        let err = cfg(&env).unwrap_err();
        assert_eq!(err.var, PASSPHRASE_VAR);
        assert!(
            err.reason.contains("private_key_passphrase") && !err.reason.contains("pass-secret")
        );
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "RAW"),
            ("SNOWFLAKE_AUTH", "pat"),
            ("SNOWFLAKE_TOKEN", "t"),
            (PASSPHRASE_VAR, "p"),
        ];
        assert_eq!(cfg(&env).unwrap_err().var, PASSPHRASE_VAR);
    }

    #[test]
    fn required_variables_are_named() {
        assert_eq!(cfg(&[]).unwrap_err().var, "SNOWFLAKE_ACCOUNT");
        assert_eq!(
            cfg(&[("SNOWFLAKE_ACCOUNT", "a")]).unwrap_err().var,
            "SNOWFLAKE_SCHEMA"
        );
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "s"),
            ("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"),
        ];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_USER");
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "s"),
            ("SNOWFLAKE_AUTH", "kerberos"),
        ];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_AUTH");
        let env = [("SNOWFLAKE_ACCOUNT", "a/b"), ("SNOWFLAKE_SCHEMA", "s")];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_ACCOUNT");
        let env = [("SNOWFLAKE_ACCOUNT", "a"), ("SNOWFLAKE_SCHEMA", "s\"x")];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_SCHEMA");
    }

    #[test]
    fn pat_and_oauth() {
        let env = [
            ("SNOWFLAKE_ACCOUNT", "myorg-my_acct"),
            ("SNOWFLAKE_SCHEMA", "RAW"),
            ("SNOWFLAKE_DATABASE", "INGEST"),
            ("SNOWFLAKE_AUTH", "PAT"),
            ("SNOWFLAKE_TOKEN", "tok-secret"),
            ("SNOWFLAKE_URL", "http://127.0.0.1:8787/"),
            ("SNOWFLAKE_STATEMENT_TIMEOUT_SECS", "60"),
            ("SNOWFLAKE_QUERY_TAG", "upsert"),
        ];
        let c = cfg(&env).unwrap();
        assert_eq!(c.base_url, "http://127.0.0.1:8787");
        assert_eq!(c.statement_timeout, Duration::from_secs(60));
        assert_eq!(c.query_tag.as_deref(), Some("upsert"));
        assert!(matches!(
            c.auth,
            AuthConfig::Token {
                kind: TokenType::ProgrammaticAccessToken,
                source: TokenSource::Value(_)
            }
        ));
        assert!(!format!("{c:?}").contains("tok-secret"));
        assert_eq!(
            default_base_url("myorg-my_acct"),
            "https://myorg-my-acct.snowflakecomputing.com"
        );

        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "RAW"),
            ("SNOWFLAKE_AUTH", "oauth"),
            (
                "SNOWFLAKE_TOKEN_SECRET_ARN",
                "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ),
        ];
        assert!(matches!(
            cfg(&env).unwrap().auth,
            AuthConfig::Token {
                kind: TokenType::OAuth,
                source: TokenSource::SecretArn(_)
            }
        ));
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "RAW"),
            ("SNOWFLAKE_AUTH", "oauth"),
        ];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_TOKEN");
        let env = [
            ("SNOWFLAKE_ACCOUNT", "a"),
            ("SNOWFLAKE_SCHEMA", "RAW"),
            ("SNOWFLAKE_AUTH", "pat"),
            ("SNOWFLAKE_TOKEN", "t"),
            ("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"),
        ];
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_PRIVATE_KEY_FILE");
    }

    #[test]
    fn context_names_resolve_like_snowflake_identifiers() {
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"));
        env.extend([
            ("SNOWFLAKE_DATABASE", "ingest"),
            ("SNOWFLAKE_WAREHOUSE", "compute_wh"),
            ("SNOWFLAKE_ROLE", "\"Loader Role\""),
        ]);
        env[1] = ("SNOWFLAKE_SCHEMA", "raw");
        let c = cfg(&env).unwrap();
        // kept as configured, for qualified names in SQL ...
        assert_eq!(c.database.as_deref(), Some("ingest"));
        // ... and resolved for the request fields
        assert_eq!(
            Context::of(&c).unwrap(),
            Context {
                database: Some("INGEST".into()),
                schema: "RAW".into(),
                warehouse: Some("COMPUTE_WH".into()),
                role: Some("Loader Role".into()),
            }
        );
        for var in [
            "SNOWFLAKE_DATABASE",
            "SNOWFLAKE_SCHEMA",
            "SNOWFLAKE_WAREHOUSE",
            "SNOWFLAKE_ROLE",
        ] {
            for bad in ["my-db", "\"a\"b\"", "\"\"", "a b"] {
                let mut env = BASE.to_vec();
                env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"));
                env.retain(|(k, _)| *k != var);
                env.push((var, bad));
                assert_eq!(cfg(&env).unwrap_err().var, var, "{var}={bad}");
            }
        }
    }

    #[test]
    fn bad_url_and_timeout() {
        let mut env = BASE.to_vec();
        env.push(("SNOWFLAKE_PRIVATE_KEY_FILE", "/k"));
        env.push(("SNOWFLAKE_URL", "ftp://x"));
        assert_eq!(cfg(&env).unwrap_err().var, "SNOWFLAKE_URL");
        env.pop();
        env.push(("SNOWFLAKE_STATEMENT_TIMEOUT_SECS", "ten"));
        assert_eq!(
            cfg(&env).unwrap_err().var,
            "SNOWFLAKE_STATEMENT_TIMEOUT_SECS"
        );
    }
}
