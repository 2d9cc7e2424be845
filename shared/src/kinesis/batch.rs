//! Lambda's partial batch responses.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::streams::KinesisEventResponse;

use crate::kinesis::record::min_sequence_number;

/// The response for a Kinesis batch: empty on success, or the lowest failed sequence number.
/// Lambda resends the batch from that record, so one item is all it reads.
pub fn kinesis_response<'s>(
    failed_sequence_numbers: impl IntoIterator<Item = &'s str>,
) -> KinesisEventResponse {
    let mut response = KinesisEventResponse::default();
    if let Some(seq) = min_sequence_number(failed_sequence_numbers) {
        response.add_failure(seq);
    }
    response
}

/// Lambda's deadline (milliseconds since the epoch, from the invocation context) as an
/// `Instant`, less `margin` so a failure can still be reported before Lambda ends the invocation.
pub fn deadline_from(deadline_ms: u64, margin: Duration) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Instant::now()
        + Duration::from_millis(deadline_ms.saturating_sub(now_ms)).saturating_sub(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_keeps_the_margin() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let d = deadline_from(now_ms + 10_000, Duration::from_secs(3));
        let left = d.saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_millis(6_500) && left <= Duration::from_secs(7),
            "{left:?}"
        );
        assert!(
            deadline_from(now_ms - 5_000, Duration::from_secs(3)) <= Instant::now(),
            "a passed deadline stays passed"
        );
    }

    #[test]
    fn reports_the_lowest_failed_sequence_number() {
        let r = kinesis_response(["30", "4", "200"]);
        assert_eq!(r.batch_item_failures.len(), 1);
        assert_eq!(
            r.batch_item_failures[0].item_identifier.as_deref(),
            Some("4")
        );
        assert!(kinesis_response([]).batch_item_failures.is_empty());
        let json = serde_json::to_value(kinesis_response(["7"])).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"batchItemFailures":[{"itemIdentifier":"7"}]})
        );
    }
}
