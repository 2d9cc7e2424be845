//! Writing raw-zone objects to S3.

use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::rawzone::object::PlannedObject;

/// An object that could not be written after the SDK's own retries.
#[derive(Debug, thiserror::Error)]
#[error("put s3://{bucket}/{key} failed: {message}")]
pub struct PutError {
    pub bucket: String,
    pub key: String,
    pub message: String,
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
        .body(ByteStream::from(object.body.clone()));
    if let Some(enc) = object.content_encoding {
        req = req.content_encoding(enc);
    }
    req.send().await.map(|_| ()).map_err(|e| PutError {
        bucket: bucket.to_string(),
        key: object.key.clone(),
        message: aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
    })
}

/// Puts every object, at most `concurrency` at a time; returns the failures.
pub async fn put_all<'o>(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    objects: Vec<&'o PlannedObject>,
    concurrency: usize,
) -> Vec<(&'o PlannedObject, PutError)> {
    // A named async fn rather than closures returning async blocks: the latter trip the
    // compiler's higher-ranked lifetime checks when callers need the future to be `Send`.
    async fn put_one<'o>(
        client: &aws_sdk_s3::Client,
        bucket: &str,
        object: &'o PlannedObject,
    ) -> (&'o PlannedObject, Result<(), PutError>) {
        (object, put_object(client, bucket, object).await)
    }
    let mut objects = objects.into_iter();
    let mut pending = FuturesUnordered::new();
    for object in objects.by_ref().take(concurrency.max(1)) {
        pending.push(put_one(client, bucket, object));
    }
    let mut failures = Vec::new();
    while let Some((object, result)) = pending.next().await {
        if let Err(e) = result {
            failures.push((object, e));
        }
        if let Some(next) = objects.next() {
            pending.push(put_one(client, bucket, next));
        }
    }
    failures
}
