//! The loader's I/O: COPY statements and `LOAD_HISTORY` look-ups in Snowflake, and the S3 HEAD
//! requests that tell a file missing from the stage from one left unloaded, and reconcile loaded
//! rows with the counts their writer recorded.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use shared::snowflake::{SnowflakeClient, SnowflakeError, Statement};

use crate::config::Config;
use crate::copy::{
    self, copy_report, history_statement, landed_statement, loaded_before, match_path, plan_copies,
    unreported, CopyReport, CopyStatement, CopyTarget, FileResult, FileStatus, StagedFile,
};
use crate::outcome::{failed_all, FileOutcome, Outcome};
use crate::plan::PendingFile;

/// Runs one invocation's COPY statements, before `deadline`.
pub(crate) struct CopyService<'a> {
    client: &'a SnowflakeClient,
    config: &'a Config,
    s3: &'a LazyS3,
    deadline: Instant,
}

impl<'a> CopyService<'a> {
    pub(crate) fn new(
        client: &'a SnowflakeClient,
        config: &'a Config,
        s3: &'a LazyS3,
        deadline: Instant,
    ) -> Self {
        Self {
            client,
            config,
            s3,
            deadline,
        }
    }

    /// Loads one (table, format) group; returns every path's outcome.
    pub(crate) async fn load_group(
        &self,
        target: &CopyTarget,
        files: &BTreeMap<String, PendingFile>,
        out: &mut Outcome,
    ) -> Vec<(String, FileOutcome)> {
        let staged: Vec<StagedFile> = files
            .iter()
            .map(|(path, f)| StagedFile {
                path: path.clone(),
                etag: f.etag.clone(),
            })
            .collect();
        let config = self.config;
        let statements = match plan_copies(
            target,
            &config.stage,
            &staged,
            config.on_error,
            &config.lineage,
            config.max_files_per_copy,
        ) {
            Ok(s) => s,
            Err(e) => return failed_all(files.keys().cloned(), &e.to_string()),
        };
        let mut results = Vec::with_capacity(files.len());
        for stmt in statements {
            match self.run(target, &stmt, files, out).await {
                Ok(r) => results.extend(r),
                Err(e) if stmt.files.len() > 1 && isolatable(&e) => {
                    tracing::warn!(table = %target.table, files = stmt.files.len(), error = %e, "loader: COPY failed; copying each file on its own to find the failing ones");
                    results.extend(self.isolate(target, &stmt, &staged, files, out).await);
                }
                Err(e) => {
                    tracing::error!(table = %target.table, files = stmt.files.len(), error = %e, "loader: COPY failed");
                    results.extend(failed_all(stmt.files.iter().cloned(), &e.to_string()));
                }
            }
        }
        results
    }

    /// Copies each file of a failed multi-file statement on its own, to find exactly the files
    /// that fail; files loaded meanwhile come back as already loaded.
    async fn isolate(
        &self,
        target: &CopyTarget,
        stmt: &CopyStatement,
        staged: &[StagedFile],
        files: &BTreeMap<String, PendingFile>,
        out: &mut Outcome,
    ) -> Vec<(String, FileOutcome)> {
        let by_path: BTreeMap<&str, &StagedFile> =
            staged.iter().map(|f| (f.path.as_str(), f)).collect();
        let mut results = Vec::with_capacity(stmt.files.len());
        for path in &stmt.files {
            let single = match copy::statement(
                target,
                &self.config.stage,
                &[by_path[path.as_str()]],
                self.config.on_error,
                &self.config.lineage,
            ) {
                Ok(s) => s,
                Err(e) => {
                    results.push((path.clone(), FileOutcome::failed(e)));
                    continue;
                }
            };
            match self.run(target, &single, files, out).await {
                Ok(r) => results.extend(r),
                Err(e) => results.push((path.clone(), FileOutcome::failed(e))),
            }
        }
        results
    }

    /// Runs one COPY and maps its result to the statement's files: a file the result names has
    /// its status; a file it leaves out is already loaded if `LOAD_HISTORY` shows its load into
    /// `target`, not in the stage if S3 has no object under its key, and failed (to be retried)
    /// otherwise.
    async fn run(
        &self,
        target: &CopyTarget,
        stmt: &CopyStatement,
        files: &BTreeMap<String, PendingFile>,
        out: &mut Outcome,
    ) -> Result<Vec<(String, FileOutcome)>, SnowflakeError> {
        out.statements += 1;
        let result = self
            .client
            .execute(
                &Statement::new(stmt.sql.clone()).with_request_id(stmt.request_id),
                self.deadline,
            )
            .await?;
        let paths: Vec<&str> = stmt.files.iter().map(String::as_str).collect();
        let report = match copy_report(&result) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(table = %target.table, error = %e, "loader: COPY result not understood; its files are reported as failed");
                return Ok(failed_all(stmt.files.iter().cloned(), &e.to_string()));
            }
        };
        let mut outcomes = reported(&report, &paths);
        let missing = unreported(&paths, &report);
        if !missing.is_empty() {
            outcomes.extend(self.verify_unreported(target, &missing, files, out).await);
        }
        Ok(paths
            .iter()
            .map(|p| {
                let outcome = outcomes
                    .remove(p)
                    .unwrap_or_else(|| FileOutcome::failed("no outcome for the file"));
                (p.to_string(), outcome)
            })
            .collect())
    }

    /// Files a COPY left out: already loaded when `LOAD_HISTORY` shows a load into `target`,
    /// not in the stage when S3 has no object under the key (COPY leaves out a named file its
    /// listing of the stage does not find), failed otherwise, and failed when the history cannot
    /// be read (never assumed loaded).
    async fn verify_unreported<'p>(
        &self,
        target: &CopyTarget,
        missing: &[&'p str],
        files: &BTreeMap<String, PendingFile>,
        out: &mut Outcome,
    ) -> Vec<(&'p str, FileOutcome)> {
        let statement = match history_statement(&target.table, missing) {
            Ok(s) => s,
            Err(e) => {
                return failed_all(
                    missing.iter().copied(),
                    &format!(
                        "COPY did not report the file, and its load history cannot be asked: {e}"
                    ),
                )
            }
        };
        out.history_queries += 1;
        let history = match self.client.execute(&statement, self.deadline).await {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(table = %target.table, files = missing.len(), error = %e, "loader: files COPY did not report, and LOAD_HISTORY could not be read; reported as failed");
                return failed_all(
                    missing.iter().copied(),
                    &format!(
                        "COPY did not report the file, and its load history could not be read: {e}"
                    ),
                );
            }
        };
        let loaded = loaded_before(&history, missing);
        let not_loaded: Vec<&str> = missing
            .iter()
            .copied()
            .filter(|p| !loaded.contains(p))
            .collect();
        let absent = self.absent(&not_loaded, files).await;
        missing
            .iter()
            .map(|p| {
                let outcome = if loaded.contains(p) {
                    FileOutcome::AlreadyLoaded
                } else if absent.contains(p) {
                    FileOutcome::NotInStage {
                        reason: format!(
                            "COPY did not report the file, LOAD_HISTORY shows no load of it into {} and S3 has no object s3://{}/{}: not loaded, not retried",
                            target.table, self.config.bucket, files[*p].key
                        ),
                    }
                } else {
                    FileOutcome::failed(format!(
                        "COPY did not report the file and LOAD_HISTORY shows no load of it into {} (last 14 days): not loaded; retried",
                        target.table
                    ))
                };
                (*p, outcome)
            })
            .collect()
    }
}

impl CopyService<'_> {
    /// Of `paths`, those whose object S3 answers 404 for. A HEAD that fails otherwise proves
    /// nothing: that file stays failed and is retried.
    async fn absent<'p>(
        &self,
        paths: &[&'p str],
        files: &BTreeMap<String, PendingFile>,
    ) -> BTreeSet<&'p str> {
        if paths.is_empty() {
            return BTreeSet::new();
        }
        let s3 = self.s3.get().await;
        let bucket = &self.config.bucket;
        let heads = paths.iter().map(|p| async move {
            let key = files[*p].key.as_str();
            let head = s3.head_object().bucket(bucket).key(key).send().await;
            (*p, head)
        });
        let mut absent = BTreeSet::new();
        let mut bucket_checked = None;
        for (path, head) in futures_util::future::join_all(heads).await {
            match head {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {
                    // a HEAD's 404 has no body: a missing bucket answers it too, and that is a
                    // misconfiguration to retry, not a file to give up on
                    if *bucket_checked.get_or_insert(self.bucket_exists(s3).await) {
                        absent.insert(path);
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "loader: could not tell whether a file COPY left out is in the stage; reported as failed")
                }
            }
        }
        absent
    }

    /// The keys of `files` whose rows are in `target` already (by the source file each row
    /// carries), asked in chunks of the COPY size.
    pub(crate) async fn landed(
        &self,
        target: &CopyTarget,
        files: &BTreeMap<String, PendingFile>,
    ) -> Result<BTreeSet<String>, String> {
        let all: Vec<(&String, &PendingFile)> = files.iter().collect();
        let mut landed = BTreeSet::new();
        for chunk in all.chunks(self.config.max_files_per_copy) {
            // each file by its key and by its path below the stage (see landed_statement)
            let names: Vec<&str> = chunk
                .iter()
                .flat_map(|(path, f)| [f.key.as_str(), path.as_str()])
                .collect();
            let statement = landed_statement(target, &self.config.lineage, &names)
                .map_err(|e| e.to_string())?;
            let result = self
                .client
                .execute(&statement, self.deadline)
                .await
                .map_err(|e| format!("{}: which files have rows: {e}", target.table))?;
            let found: BTreeSet<String> = result
                .rows
                .iter()
                .filter_map(|r| r.first().cloned().flatten())
                .collect();
            for (path, f) in chunk {
                if found.contains(&f.key) || found.contains(*path) {
                    landed.insert(f.key.clone());
                }
            }
        }
        Ok(landed)
    }

    /// `results` with each pending file (no pipe report named its load) whose rows `target`
    /// holds already turned into [`FileOutcome::AlreadyLoaded`]. A notification that comes again
    /// in a message sent after the load (S3 delivering twice, a redrive) names a file the pipe
    /// skips without an `insertReport` event and whose load is older than the message's
    /// `loadHistoryScan` window: without this it would stay pending on every receive and end in
    /// the DLQ although it landed. The rows' lineage is the lasting record (see [`Self::landed`]);
    /// one query on the warehouse, only when a file is pending. A failed query leaves them pending.
    pub(crate) async fn settle_pending(
        &self,
        target: &CopyTarget,
        files: &BTreeMap<String, PendingFile>,
        results: Vec<(String, FileOutcome)>,
    ) -> Vec<(String, FileOutcome)> {
        let pending: BTreeMap<String, PendingFile> = results
            .iter()
            .filter(|(_, o)| matches!(o, FileOutcome::Pending { .. }))
            .map(|(p, _)| (p.clone(), files[p].clone()))
            .collect();
        if pending.is_empty() {
            return results;
        }
        let landed = match self.landed(target, &pending).await {
            Ok(landed) => landed,
            Err(e) => {
                tracing::warn!(table = %target.table, error = %e, "loader: could not tell whether pending files landed; they stay pending");
                return results;
            }
        };
        let settle = |(p, o): (String, FileOutcome)| match o {
            FileOutcome::Pending { .. } if landed.contains(&files[&p].key) => {
                (p, FileOutcome::AlreadyLoaded)
            }
            o => (p, o),
        };
        results.into_iter().map(settle).collect()
    }

    /// Whether the raw bucket exists (HeadBucket), logged when it cannot be confirmed.
    async fn bucket_exists(&self, s3: &aws_sdk_s3::Client) -> bool {
        match s3.head_bucket().bucket(&self.config.bucket).send().await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(bucket = %self.config.bucket, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "loader: the raw bucket cannot be confirmed; files COPY left out are reported as failed");
                false
            }
        }
    }
}

/// A HEAD answered 404: no object under the key (HEAD responses carry no error code, so the
/// status is what tells).
fn is_not_found(
    e: &aws_sdk_s3::error::SdkError<aws_sdk_s3::operation::head_object::HeadObjectError>,
) -> bool {
    e.as_service_error().is_some_and(|se| se.is_not_found())
        || e.raw_response().map(|r| r.status().as_u16()) == Some(404)
}

/// The outcome of each requested path a COPY result names.
fn reported<'p>(report: &CopyReport, paths: &[&'p str]) -> BTreeMap<&'p str, FileOutcome> {
    let mut outcomes = BTreeMap::new();
    for r in report.files() {
        let Some(path) = match_path(&r.file, paths) else {
            tracing::warn!(file = %r.file, status = %r.raw_status, "loader: COPY reported a file that was not requested");
            continue;
        };
        outcomes.insert(path, file_outcome(r));
    }
    outcomes
}

/// One row of a COPY result as the file's outcome.
fn file_outcome(r: &FileResult) -> FileOutcome {
    let error = || {
        let mut e = r
            .first_error
            .clone()
            .unwrap_or_else(|| r.raw_status.clone());
        if let Some(line) = r.first_error_line {
            e.push_str(&format!(" (line {line})"));
        }
        format!("{}: {e}", r.raw_status)
    };
    match r.status {
        FileStatus::Loaded => FileOutcome::Loaded {
            rows: r.rows_loaded,
        },
        FileStatus::AlreadyLoaded => FileOutcome::AlreadyLoaded,
        FileStatus::PartiallyLoaded => FileOutcome::PartiallyLoaded {
            rows: r.rows_loaded,
            error: error(),
        },
        FileStatus::Failed => FileOutcome::Failed { error: error() },
    }
}

/// A SQL error that may come from one file's contents (worth copying each file on its own), as
/// opposed to one of the statement itself: syntax or access rule violations (SQLSTATE class 42:
/// missing table, stage or file format) and unsupported features (0A) fail every file alike.
fn isolatable(e: &SnowflakeError) -> bool {
    match e {
        SnowflakeError::Sql { sql_state, .. } => {
            !(sql_state.starts_with("42") || sql_state.starts_with("0A"))
        }
        _ => false,
    }
}

/// An S3 client made when first needed, not at init: most invocations need none (only row-count
/// reconciliation and files COPY left out do).
pub(crate) struct LazyS3(tokio::sync::OnceCell<aws_sdk_s3::Client>);

impl LazyS3 {
    /// `s3`, or a client made from the default AWS configuration when first needed.
    pub(crate) fn new(s3: Option<aws_sdk_s3::Client>) -> Self {
        Self(match s3 {
            Some(c) => tokio::sync::OnceCell::new_with(Some(c)),
            None => tokio::sync::OnceCell::new(),
        })
    }

    pub(crate) async fn get(&self) -> &aws_sdk_s3::Client {
        self.0
            .get_or_init(|| async { shared::aws::s3_client(&shared::aws::load_config().await) })
            .await
    }
}

/// Files whose loaded rows differ from the row count the orchestrator recorded on the object
/// (`x-amz-meta-row-count`). Objects without one (written by other tools) and failed look-ups
/// are not mismatches; the latter are logged.
pub(crate) async fn row_count_mismatches(s3: &LazyS3, bucket: &str, out: &Outcome) -> usize {
    let loaded = out.loaded_files();
    if loaded.is_empty() {
        return 0;
    }
    let s3 = s3.get().await;
    let heads = loaded.iter().map(|(key, rows)| async move {
        let recorded = s3
            .head_object()
            .bucket(bucket)
            .key(key.as_str())
            .send()
            .await
            .map(|h| {
                h.metadata()
                    .and_then(|m| m.get("row-count"))
                    .and_then(|v| v.parse::<u64>().ok())
            });
        (key, *rows, recorded)
    });
    let mut mismatches = 0;
    for (key, rows, recorded) in futures_util::future::join_all(heads).await {
        match recorded {
            Ok(Some(expected)) if expected != rows => {
                mismatches += 1;
                tracing::error!(key = %key, rows_recorded = expected, rows_loaded = rows, "reconciliation mismatch: the file loaded a different number of rows than its writer recorded");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key = %key, error = %aws_sdk_s3::error::DisplayErrorContext(&e), "row count of a loaded file could not be read; not reconciled")
            }
        }
    }
    mismatches
}
