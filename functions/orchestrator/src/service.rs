//! The I/O: a plan's objects put in the raw zone's bucket, a few at a time, until the deadline.

use std::time::Instant;

use shared::rawzone::s3::{put_all, Destination, PutError};
use shared::rawzone::{Plan, PlannedObject};

/// The raw zone's bucket, written `concurrency` objects at a time.
pub(crate) struct RawZoneService {
    s3: aws_sdk_s3::Client,
    to: Destination,
    concurrency: usize,
}

impl RawZoneService {
    pub(crate) fn new(s3: aws_sdk_s3::Client, to: Destination, concurrency: usize) -> Self {
        Self {
            s3,
            to,
            concurrency,
        }
    }

    /// Puts the plan's data objects and its quarantine object; returns the ones not written
    /// (refused by S3, or not confirmed by `deadline`), each logged with its reason.
    pub(crate) async fn put<'p>(
        &self,
        plan: &'p Plan,
        deadline: Instant,
    ) -> Vec<(&'p PlannedObject, PutError)> {
        let objects: Vec<&PlannedObject> = plan.objects.iter().chain(&plan.quarantine).collect();
        let failures = put_all(&self.s3, &self.to, objects, self.concurrency, deadline).await;
        for (object, error) in &failures {
            tracing::error!(key = %object.key, records = object.records, error = %error, "put not confirmed; Lambda will resend from the lowest sequence number of the unconfirmed objects");
        }
        failures
    }
}
