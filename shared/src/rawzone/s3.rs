//! Writing raw-zone objects to S3.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::rawzone::object::PlannedObject;

/// An object that was not written.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// S3 refused it, or could not be reached, after the SDK's own retries.
    #[error("put s3://{bucket}/{key} failed: {message}")]
    Failed {
        /// The bucket it was put in.
        bucket: String,
        /// The object's key.
        key: String,
        /// The SDK error with its sources (service code and message, or the transport failure).
        message: String,
    },
    /// Not started, or started but not confirmed, before the deadline. A PUT is atomic, so S3
    /// holds either the whole object or nothing; the retry writes the same key with the same
    /// bytes either way.
    #[error("put s3://{bucket}/{key} not confirmed before the invocation's deadline")]
    Deadline {
        /// The bucket it was to be put in.
        bucket: String,
        /// The object's key.
        key: String,
    },
}

/// Puts one planned object with its content type and encoding.
pub async fn put_object(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    object: &PlannedObject,
) -> Result<(), PutError> {
    let mut req = client
        .put_object()
        .bucket(bucket)
        .key(&object.key)
        .content_type(object.content_type)
        // What the loader reconciles COPY's rows_loaded against (x-amz-meta-row-count).
        .metadata("row-count", object.records.to_string())
        .body(ByteStream::from(object.body.clone()));
    if let Some(enc) = object.content_encoding {
        req = req.content_encoding(enc);
    }
    req.send().await.map(|_| ()).map_err(|e| PutError::Failed {
        bucket: bucket.to_string(),
        key: object.key.clone(),
        message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
    })
}

/// Puts every object, at most `concurrency` at a time, and returns the ones not written.
///
/// Nothing is started at or after `deadline`, and puts still running then are abandoned: they
/// are returned as [`PutError::Deadline`] so the caller can report them to Lambda as a partial
/// failure instead of being cut off by the function's time-out (which makes Lambda retry, and
/// with bisect-on-error split, the whole batch).
pub async fn put_all<'o>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    objects: Vec<&'o PlannedObject>,
    concurrency: usize,
    deadline: Instant,
) -> Vec<(&'o PlannedObject, PutError)> {
    // A named async fn rather than closures returning async blocks: the latter trip the
    // compiler's higher-ranked lifetime checks when callers need the future to be `Send`.
    async fn put_one(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        index: usize,
        object: &PlannedObject,
    ) -> (usize, Result<(), PutError>) {
        (index, put_object(client, bucket, object).await)
    }
    let mut waiting = objects.into_iter().enumerate();
    // What is in flight, by index, so it can be reported when the deadline cuts it off.
    let mut in_flight: HashMap<usize, &'o PlannedObject> = HashMap::new();
    let mut pending = FuturesUnordered::new();
    let mut failures = Vec::new();
    let stop = tokio::time::Instant::from_std(deadline);
    loop {
        while in_flight.len() < concurrency.max(1) && Instant::now() < deadline {
            let Some((i, object)) = waiting.next() else {
                break;
            };
            in_flight.insert(i, object);
            pending.push(put_one(client, bucket, i, object));
        }
        if pending.is_empty() {
            break;
        }
        match tokio::time::timeout_at(stop, pending.next()).await {
            Ok(Some((i, result))) => {
                let object = in_flight.remove(&i);
                if let (Some(object), Err(e)) = (object, result) {
                    failures.push((object, e));
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Dropping the futures abandons the puts still running.
    drop(pending);
    let mut unconfirmed: Vec<(usize, &'o PlannedObject)> =
        in_flight.into_iter().chain(waiting).collect();
    unconfirmed.sort_by_key(|(i, _)| *i);
    failures.extend(unconfirmed.into_iter().map(|(_, object)| {
        (
            object,
            PutError::Deadline {
                bucket: bucket.to_string(),
                key: object.key.clone(),
            },
        )
    }));
    failures
}
