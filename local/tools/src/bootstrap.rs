//! Applying the Snowflake setup in `sql/`: file selection, `${NAME}` substitution, statement
//! splitting, and execution through the SQL API client, one statement per request.
//!
//! Files are applied in lexical order of their names. `*.local.sql` files apply only with
//! [`Profile::Local`], `*.aws.sql` only with [`Profile::Aws`], every other `*.sql` always.
//!
//! Each file is split into statements first ([`split_statements`], which also drops comments, so
//! header comments may mention variables freely), then every statement is rendered ([`render`]).
//! Variable values are validated so that a value can never change the shape of the SQL:
//! - variables named `*_URL` or `*_ARN` are literals (used inside `'...'`): they may not contain
//!   quotes, backslashes, semicolons, whitespace, control characters, `--` or `/*`;
//! - every other variable is an identifier and must look like an unquoted Snowflake identifier
//!   (`[A-Za-z_][A-Za-z0-9_$]*`, at most 255 characters).
//!
//! Built-in defaults (`DEFAULT_VARS`): `STAGE=RAW_STAGE`, `WAREHOUSE=COMPUTE_WH`.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use shared::config::Env;
use shared::snowflake::{ident, SnowflakeClient, SnowflakeError, Statement};

/// Variables with a built-in default; the caller's values win.
pub(crate) const DEFAULT_VARS: [(&str, &str); 2] =
    [("STAGE", "RAW_STAGE"), ("WAREHOUSE", "COMPUTE_WH")];

/// Which environment-specific files apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// The local stack: `*.local.sql` (URL stage read by the local service).
    Local,
    /// Real Snowflake on AWS: `*.aws.sql` (storage integration + stage).
    Aws,
}

impl Profile {
    /// The profile's name, as `--profile` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Local => "local",
            Profile::Aws => "aws",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Profile {
    type Err = BootstrapError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "local" => Ok(Profile::Local),
            "aws" => Ok(Profile::Aws),
            _ => Err(BootstrapError::Profile(s.to_string())),
        }
    }
}

/// What went wrong bootstrapping.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// `--profile` named neither `local` nor `aws`; holds what it named.
    #[error("unknown profile {0:?} (expected local or aws)")]
    Profile(String),

    /// A statement references a variable that has no value.
    #[error("unknown variable ${{{name}}}: pass it with --var {name}=VALUE")]
    UnknownVariable {
        /// The variable's name, without `${}`.
        name: String,
    },

    /// A `${` without a closing `}`, or with a name that is not a variable name.
    #[error("malformed variable reference at byte {offset}: expected ${{NAME}} with NAME made of A-Z, 0-9 and _")]
    MalformedVariable {
        /// Byte offset of the `${` in the statement.
        offset: usize,
    },

    /// A value that could change the shape of the SQL, or a malformed `--var` argument.
    #[error("variable {name}: {reason}")]
    InvalidValue {
        /// The variable's name (the whole argument for a malformed `--var`).
        name: String,
        /// What is wrong with the value.
        reason: String,
    },

    /// The SQL directory or one of its files could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The error reading it.
        #[source]
        source: std::io::Error,
    },

    /// The directory has no `*.sql` file for the profile: most likely the wrong `--sql-dir`.
    #[error("{dir}: no .sql files apply to profile {profile}")]
    NoFiles {
        /// The SQL directory searched.
        dir: PathBuf,
        /// The profile no file applied to.
        profile: Profile,
    },

    /// A template problem in one statement of one file.
    #[error("{file}#{statement}: {source}")]
    Template {
        /// File name (without directory).
        file: String,
        /// 1-based position of the statement in its file.
        statement: usize,
        /// The problem: an unknown, malformed or invalid variable.
        #[source]
        source: Box<BootstrapError>,
    },

    /// Snowflake rejected a statement; nothing after it was applied.
    #[error("{file}#{statement} failed: {sql}: {source}")]
    Statement {
        /// File name (without directory).
        file: String,
        /// 1-based position of the statement in its file.
        statement: usize,
        /// The statement's first line.
        sql: String,
        /// Snowflake's error, or the client's.
        #[source]
        source: Box<SnowflakeError>,
    },
}

/// The outcome of one applied statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// File name (without directory).
    pub file: String,
    /// 1-based position of the statement in its file.
    pub index: usize,
    /// The statement's first line.
    pub statement: String,
    /// Snowflake's status text (first cell of the result), e.g. "Table X successfully created.".
    pub status: String,
    /// How long the statement took, request to response.
    pub ms: u64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok  {}#{}  {}  ({} ms)  {}",
            self.file, self.index, self.statement, self.ms, self.status
        )
    }
}

fn is_var_name(name: &str) -> bool {
    let mut c = name.chars();
    matches!(c.next(), Some(x) if x.is_ascii_uppercase() || x == '_')
        && c.all(|x| x.is_ascii_uppercase() || x.is_ascii_digit() || x == '_')
}

/// True for variables used as string literals (`*_URL`, `*_ARN`); all others are identifiers.
pub(crate) fn is_literal_var(name: &str) -> bool {
    name.ends_with("_URL") || name.ends_with("_ARN")
}

/// Checks that `value` is safe for variable `name` (see the module documentation).
pub(crate) fn validate_value(name: &str, value: &str) -> Result<(), BootstrapError> {
    let bad = |reason: &str| {
        Err(BootstrapError::InvalidValue {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if value.is_empty() {
        return bad("is empty");
    }
    if is_literal_var(name) {
        if let Some(c) = value.chars().find(|c| {
            matches!(c, '\'' | '"' | '\\' | ';' | '`') || c.is_whitespace() || c.is_control()
        }) {
            return bad(&format!(
                "{value:?} contains {c:?} (quotes, backslashes, semicolons and whitespace are not allowed)"
            ));
        }
        if value.contains("--") || value.contains("/*") {
            return bad(&format!("{value:?} contains a comment marker"));
        }
        Ok(())
    } else {
        if !ident::is_unquoted_style(value) {
            return bad(&format!(
                "{value:?} is not a plain identifier (letters, digits, _ and $, not starting with a digit or $)"
            ));
        }
        if value.len() > ident::MAX_LEN {
            return bad("is longer than 255 characters");
        }
        Ok(())
    }
}

/// Substitutes every `${NAME}` in `template` with `vars[NAME]` (validated with
/// `validate_value`). A `$` not followed by `{` is kept as is (`SYSTEM$STREAM_HAS_DATA`,
/// `METADATA$FILENAME`, `$1`). An unknown name is an error naming it.
pub fn render(template: &str, vars: &HashMap<String, String>) -> Result<String, BootstrapError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut offset = 0;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let end = after.find('}').ok_or(BootstrapError::MalformedVariable {
            offset: offset + pos,
        })?;
        let name = &after[..end];
        if !is_var_name(name) {
            return Err(BootstrapError::MalformedVariable {
                offset: offset + pos,
            });
        }
        let value = vars
            .get(name)
            .ok_or_else(|| BootstrapError::UnknownVariable {
                name: name.to_string(),
            })?;
        validate_value(name, value)?;
        out.push_str(value);
        let consumed = pos + 2 + end + 1;
        offset += consumed;
        rest = &rest[consumed..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Splits a SQL script into statements on `;`, ignoring semicolons inside single-quoted strings
/// (with `''` and backslash escapes), double-quoted identifiers, `$$...$$` blocks, and comments.
/// Comments (`--`, `//` to the end of the line, `/* ... */`) are removed; statements are trimmed,
/// and empty ones dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut cur = String::new();
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => push_single_quoted(&mut chars, &mut cur),
            '"' => push_double_quoted(&mut chars, &mut cur),
            '$' if chars.peek() == Some(&'$') => {
                chars.next();
                push_dollar_quoted(&mut chars, &mut cur);
            }
            '-' if chars.peek() == Some(&'-') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars),
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                skip_block_comment(&mut chars);
                cur.push(' ');
            }
            ';' => flush_statement(&mut cur, &mut statements),
            _ => cur.push(c),
        }
    }
    flush_statement(&mut cur, &mut statements);
    statements
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

/// Ends the current statement: kept trimmed, dropped when empty.
fn flush_statement(cur: &mut String, statements: &mut Vec<String>) {
    let s = cur.trim();
    if !s.is_empty() {
        statements.push(s.to_string());
    }
    cur.clear();
}

/// Copies a `'...'` string (its opening quote already read) through its closing quote, so its
/// semicolons and comment markers stay text: `''` and backslash escapes do not close it.
fn push_single_quoted(chars: &mut Chars<'_>, cur: &mut String) {
    cur.push('\'');
    while let Some(d) = chars.next() {
        cur.push(d);
        match d {
            '\\' => {
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            '\'' => {
                if chars.peek() == Some(&'\'') {
                    cur.push(chars.next().expect("peeked"));
                } else {
                    break;
                }
            }
            _ => {}
        }
    }
}

/// Copies a `"..."` identifier (its opening quote already read) through its closing quote; `""`
/// does not close it.
fn push_double_quoted(chars: &mut Chars<'_>, cur: &mut String) {
    cur.push('"');
    while let Some(d) = chars.next() {
        cur.push(d);
        if d == '"' {
            if chars.peek() == Some(&'"') {
                cur.push(chars.next().expect("peeked"));
            } else {
                break;
            }
        }
    }
}

/// Copies a `$$...$$` block (its opening `$$` already read) through its closing `$$`.
fn push_dollar_quoted(chars: &mut Chars<'_>, cur: &mut String) {
    cur.push_str("$$");
    let mut prev = '\0';
    for d in chars.by_ref() {
        cur.push(d);
        if prev == '$' && d == '$' {
            break;
        }
        prev = d;
    }
}

/// Skips a `/* ... */` comment (its opening `/*` already read) through its closing `*/`.
fn skip_block_comment(chars: &mut Chars<'_>) {
    let mut prev = '\0';
    for d in chars.by_ref() {
        if prev == '*' && d == '/' {
            break;
        }
        prev = d;
    }
}

fn skip_line(chars: &mut Chars<'_>) {
    while let Some(&d) = chars.peek() {
        if d == '\n' {
            break;
        }
        chars.next();
    }
}

/// The `*.sql` files of `dir` that apply to `profile`, sorted by file name.
pub(crate) fn files(dir: &Path, profile: Profile) -> Result<Vec<PathBuf>, BootstrapError> {
    let io = |e| BootstrapError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".sql") || !path.is_file() {
            continue;
        }
        if applies(name, profile) {
            out.push(path);
        }
    }
    out.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(out)
}

/// Whether a file name applies to a profile (`*.local.sql`, `*.aws.sql`, or any other `*.sql`).
pub(crate) fn applies(name: &str, profile: Profile) -> bool {
    if name.ends_with(".local.sql") {
        profile == Profile::Local
    } else if name.ends_with(".aws.sql") {
        profile == Profile::Aws
    } else {
        name.ends_with(".sql")
    }
}

/// [`DEFAULT_VARS`] overlaid with `vars`.
pub(crate) fn with_defaults(vars: &HashMap<String, String>) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = DEFAULT_VARS
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.extend(vars.iter().map(|(k, v)| (k.clone(), v.clone())));
    all
}

/// Variables taken from the environment when not given explicitly: `DATABASE` ←
/// `SNOWFLAKE_DATABASE`, `SCHEMA` ← `SNOWFLAKE_SCHEMA`, `WAREHOUSE` ← `SNOWFLAKE_WAREHOUSE`, and
/// `STAGE_URL`, `STAGE`, `STORAGE_INTEGRATION`, `SNOWFLAKE_ROLE_ARN` from variables of the same
/// name, `LOADER_ROLE` ← `SNOWFLAKE_ROLE` (granted the pipes, `sql/36_pipe_grants.aws.sql`).
/// `explicit` (from `--var`) wins.
pub fn vars_from_env(env: &Env<'_>, explicit: &HashMap<String, String>) -> HashMap<String, String> {
    const FROM_ENV: [(&str, &str); 8] = [
        ("DATABASE", "SNOWFLAKE_DATABASE"),
        ("SCHEMA", "SNOWFLAKE_SCHEMA"),
        ("WAREHOUSE", "SNOWFLAKE_WAREHOUSE"),
        ("STAGE_URL", "STAGE_URL"),
        ("STAGE", "STAGE"),
        ("STORAGE_INTEGRATION", "STORAGE_INTEGRATION"),
        ("SNOWFLAKE_ROLE_ARN", "SNOWFLAKE_ROLE_ARN"),
        ("LOADER_ROLE", "SNOWFLAKE_ROLE"),
    ];
    let mut vars = HashMap::new();
    for (var, env_name) in FROM_ENV {
        if let Some(v) = env.optional(env_name) {
            vars.insert(var.to_string(), v);
        }
    }
    vars.extend(explicit.iter().map(|(k, v)| (k.clone(), v.clone())));
    vars
}

/// Parses `NAME=VALUE` (a `--var` argument).
pub fn parse_var(arg: &str) -> Result<(String, String), BootstrapError> {
    match arg.split_once('=') {
        Some((name, value)) if is_var_name(name) => Ok((name.to_string(), value.to_string())),
        _ => Err(BootstrapError::InvalidValue {
            name: arg.to_string(),
            reason: "expected NAME=VALUE with NAME made of A-Z, 0-9 and _".into(),
        }),
    }
}

/// One statement ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// File name (without directory).
    pub file: String,
    /// 1-based position of the statement in its file.
    pub index: usize,
    /// The rendered statement.
    pub sql: String,
}

/// Reads, splits and renders every applicable file (no I/O beyond reading the files), so a
/// missing or invalid variable fails before anything is sent to Snowflake.
pub fn plan(
    dir: &Path,
    profile: Profile,
    vars: &HashMap<String, String>,
) -> Result<Vec<Planned>, BootstrapError> {
    let vars = with_defaults(vars);
    let paths = files(dir, profile)?;
    if paths.is_empty() {
        return Err(BootstrapError::NoFiles {
            dir: dir.to_path_buf(),
            profile,
        });
    }
    let mut out = Vec::new();
    for path in paths {
        let file = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| BootstrapError::Io {
            path: path.clone(),
            source: e,
        })?;
        for (i, stmt) in split_statements(&text).into_iter().enumerate() {
            let sql = render(&stmt, &vars).map_err(|e| BootstrapError::Template {
                file: file.clone(),
                statement: i + 1,
                source: Box::new(e),
            })?;
            out.push(Planned {
                file: file.clone(),
                index: i + 1,
                sql,
            });
        }
    }
    Ok(out)
}

/// The first line of a statement, shortened for display.
pub(crate) fn first_line(sql: &str) -> String {
    let line = sql.lines().next().unwrap_or_default().trim();
    let more = sql.lines().nth(1).is_some();
    if line.chars().count() > 100 {
        format!("{}...", line.chars().take(100).collect::<String>())
    } else if more {
        format!("{line} ...")
    } else {
        line.to_string()
    }
}

/// Applies the files of `dir` for `profile` with `vars` (plus `DEFAULT_VARS`): one SQL API
/// request per statement, in order, stopping at the first failure. `on_outcome` sees each
/// statement's outcome as it completes (for printing progress).
pub async fn apply_dir_with(
    client: &SnowflakeClient,
    dir: &Path,
    profile: Profile,
    vars: &HashMap<String, String>,
    mut on_outcome: impl FnMut(&Outcome),
) -> Result<Vec<Outcome>, BootstrapError> {
    let planned = plan(dir, profile, vars)?;
    let per_statement = client.config().statement_timeout + Duration::from_secs(30);
    let mut outcomes = Vec::with_capacity(planned.len());
    for p in planned {
        let started = Instant::now();
        let result = client
            .execute(&Statement::new(p.sql.clone()), started + per_statement)
            .await
            .map_err(|e| BootstrapError::Statement {
                file: p.file.clone(),
                statement: p.index,
                sql: first_line(&p.sql),
                source: Box::new(e),
            })?;
        let status = result
            .rows
            .first()
            .and_then(|r| r.first())
            .cloned()
            .flatten()
            .unwrap_or_default();
        let outcome = Outcome {
            file: p.file,
            index: p.index,
            statement: first_line(&p.sql),
            status,
            ms: started.elapsed().as_millis() as u64,
        };
        on_outcome(&outcome);
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// [`apply_dir_with`] without progress reporting.
pub async fn apply_dir(
    client: &SnowflakeClient,
    dir: &Path,
    profile: Profile,
    vars: &HashMap<String, String>,
) -> Result<Vec<Outcome>, BootstrapError> {
    apply_dir_with(client, dir, profile, vars, |_| {}).await
}

/// The statements `bootstrap --streaming` applies: per mapped table, `(table, statement)` for its
/// change table and its latest-state Dynamic Table, named with the function's suffixes, with its
/// own `TARGET_LAG` and warehouse (`LATEST_TARGET_LAG`, `SNOWFLAKE_WAREHOUSE`), so a re-create
/// after schema evolution keeps what bootstrap made. An error for a merge-mode configuration.
pub fn streaming_statements(config: &upsert::Config) -> Result<Vec<(String, String)>, String> {
    use upsert::changes::{change_table_ddl, latest_ddl, ChangeObjects};
    let upsert::WriteMode::Streaming(s) = &config.write_mode else {
        return Err(
            "--streaming needs WRITE_MODE=streaming (and the function's UPSERT_TABLES)".into(),
        );
    };
    let mut statements = Vec::new();
    for (logical, mapping) in config.tables.iter() {
        let objects = ChangeObjects::of(mapping, &s.change_suffix, &s.latest_suffix);
        let latest = latest_ddl(mapping, &objects, &s.latest_target_lag, &s.latest_warehouse);
        statements.push((logical.to_string(), change_table_ddl(mapping, &objects)));
        statements.push((logical.to_string(), latest));
    }
    Ok(statements)
}

#[cfg(test)]
mod tests;
