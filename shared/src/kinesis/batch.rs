//! Lambda's partial batch responses.

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

#[cfg(test)]
mod tests {
    use super::*;

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
