//! The I/O of merge mode: a table's statements run in order over the SQL API, with what each
//! failure means for the batch (Snowflake classifies its own errors: [`Recovery`]).

use std::collections::VecDeque;
use std::time::Instant;

use shared::rawzone::quarantine::Rejected;
use shared::snowflake::{Recovery, SnowflakeClient, SnowflakeError};

use crate::error::HandlerError;
use crate::evolution::UNKNOWN_COLUMN;
use crate::merge::{Candidate, Chunk};
use crate::outcome::TableOutcome;
use crate::plan::TablePlan;

/// Why a table's rows did not all land.
pub(crate) enum TableFailure {
    /// Credentials or configuration: no retry of the batch can succeed until someone fixes it.
    Fatal(HandlerError),
    /// Lambda resends the batch from the table's lowest sequence number.
    Retry(TableOutcome),
}

/// What a table wrote, and the rows Snowflake refused (for the quarantine).
pub(crate) type TableResult<'r> = Result<(TableOutcome, Vec<Rejected<'r>>), TableFailure>;

/// Runs a table's MERGEs in order. A statement Snowflake refuses for its data is split in
/// halves until the refused rows stand alone; they are returned for the quarantine and the
/// rest lands, so one bad value cannot block a table on every retry.
pub(crate) async fn merge_table<'r>(
    snowflake: &SnowflakeClient,
    mut plan: TablePlan<'r, '_>,
    deadline: Instant,
) -> TableResult<'r> {
    let table = plan.logical();
    let mut outcome = TableOutcome {
        rows: plan.rows.len(),
        duplicates: plan.duplicates,
        ..TableOutcome::default()
    };
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut pending: VecDeque<Chunk> = std::mem::take(&mut plan.chunks).into();
    while let Some(chunk) = pending.pop_front() {
        let (start, rows) = (chunk.start, chunk.rows);
        let first = chunk.first_sequence_number.clone();
        let error = match snowflake.execute(&plan.statement(chunk), deadline).await {
            Ok(result) => {
                outcome.add_statement(&result);
                continue;
            }
            Err(e) => e,
        };
        match error.recovery() {
            Recovery::Fatal => return Err(TableFailure::Fatal(HandlerError::Snowflake(error))),
            Recovery::Isolate if rows == 1 => {
                outcome.statements += 1;
                tracing::warn!(table, error = %error, sequence_number = %first, "Snowflake refused a row; quarantining it");
                refused.push((start, refusal_reason(&error)));
                outcome.refused += 1;
            }
            Recovery::Isolate => {
                outcome.statements += 1;
                tracing::warn!(table, rows, error = %error, "Snowflake refused the data of a MERGE; splitting it to isolate the rows");
                for half in plan.halves(start, rows).into_iter().rev() {
                    pending.push_front(half);
                }
            }
            Recovery::Retry | Recovery::Reopen => {
                tracing::error!(table, error = %error, "MERGE failed; Lambda will resend from this table's lowest sequence number");
                outcome.columns_changed = error.sql_code() == Some(UNKNOWN_COLUMN);
                outcome.error = Some(error.to_string());
                return Err(TableFailure::Retry(outcome));
            }
        }
    }
    Ok((outcome, take_refused(plan.rows, refused)))
}

/// The refused rows as quarantine records, each with Snowflake's reason.
pub(crate) fn take_refused<'r>(
    rows: Vec<Candidate<'r>>,
    refused: Vec<(usize, String)>,
) -> Vec<Rejected<'r>> {
    let mut slots: Vec<Option<Candidate<'r>>> = rows.into_iter().map(Some).collect();
    refused
        .into_iter()
        .filter_map(|(i, reason)| {
            let c = slots[i].take()?;
            Some(Rejected {
                meta: c.meta,
                reason,
                data: c.data,
            })
        })
        .collect()
}

/// The quarantine reason of a row Snowflake refused.
fn refusal_reason(error: &SnowflakeError) -> String {
    match error {
        SnowflakeError::Sql {
            code,
            sql_state,
            message,
            ..
        } => format!("Snowflake refused the row: {code} ({sql_state}): {message}"),
        other => format!("Snowflake refused the row: {other}"),
    }
}
