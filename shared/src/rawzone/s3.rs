//! Writing raw-zone objects to S3.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{FuturesUnordered, StreamExt};

use crate::config::{ConfigError, Env};
use crate::rawzone::object::PlannedObject;

/// Where objects are put: a bucket, and the customer-managed KMS key S3 encrypts them with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The bucket's name.
    pub bucket: String,
    /// `KMS_KEY_ID` (a key ARN, key id or alias ARN): every object is put with
    /// `ServerSideEncryption=aws:kms`, this `SSEKMSKeyId` and the bucket key on, so an object is
    /// encrypted with the key even where the bucket's default says otherwise, and a bucket policy
    /// can require it. None: the bucket's default encryption.
    pub kms_key_id: Option<String>,
}

impl Destination {
    /// The bucket named by `bucket_var` (required) and `KMS_KEY_ID` (optional).
    pub fn from_env(env: &Env<'_>, bucket_var: &str) -> Result<Self, ConfigError> {
        let kms_key_id = env.optional("KMS_KEY_ID");
        if let Some(key) = &kms_key_id {
            if key.chars().any(char::is_whitespace) {
                return Err(ConfigError::new(
                    "KMS_KEY_ID",
                    "must be a KMS key ARN, key id or alias ARN",
                ));
            }
        }
        Ok(Self {
            bucket: env.required(bucket_var)?,
            kms_key_id,
        })
    }
}

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

/// Puts one planned object with its content type and encoding, encrypted as `to` says.
pub async fn put_object(
    client: &aws_sdk_s3::Client,
    to: &Destination,
    object: &PlannedObject,
) -> Result<(), PutError> {
    let bucket = to.bucket.as_str();
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
    if let Some(key) = &to.kms_key_id {
        // https://docs.aws.amazon.com/AmazonS3/latest/userguide/specifying-kms-encryption.html;
        // the bucket key: https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucket-key.html
        req = req
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
            .ssekms_key_id(key)
            .bucket_key_enabled(true);
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
    to: &Destination,
    objects: Vec<&'o PlannedObject>,
    concurrency: usize,
    deadline: Instant,
) -> Vec<(&'o PlannedObject, PutError)> {
    // A named async fn rather than closures returning async blocks: the latter trip the
    // compiler's higher-ranked lifetime checks when callers need the future to be `Send`.
    async fn put_one(
        client: &aws_sdk_s3::Client,
        to: &Destination,
        index: usize,
        object: &PlannedObject,
    ) -> (usize, Result<(), PutError>) {
        (index, put_object(client, to, object).await)
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
            pending.push(put_one(client, to, i, object));
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
                bucket: to.bucket.clone(),
                key: object.key.clone(),
            },
        )
    }));
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kms_key_is_read_with_the_bucket_once() {
        let env = [
            ("RAW_BUCKET", "raw-bucket"),
            ("KMS_KEY_ID", " arn:aws:kms:us-east-1:1:key/k "),
        ];
        let to = Destination::from_env(&Env::new(&env), "RAW_BUCKET").unwrap();
        assert_eq!(to.bucket, "raw-bucket");
        assert_eq!(
            to.kms_key_id.as_deref(),
            Some("arn:aws:kms:us-east-1:1:key/k")
        );
        let to =
            Destination::from_env(&Env::new(&[("ERROR_BUCKET", "b")]), "ERROR_BUCKET").unwrap();
        assert_eq!(to.kms_key_id, None);
        let env = [("ERROR_BUCKET", "b"), ("KMS_KEY_ID", "alias/my key")];
        let err = Destination::from_env(&Env::new(&env), "ERROR_BUCKET").unwrap_err();
        assert_eq!(err.var, "KMS_KEY_ID");
        assert_eq!(
            Destination::from_env(&Env::new(&env), "RAW_BUCKET")
                .unwrap_err()
                .var,
            "KMS_KEY_ID"
        );
    }
}
