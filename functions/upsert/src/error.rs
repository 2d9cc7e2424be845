//! The upsert's errors: what fails an invocation as a whole, and the error type Lambda reports.

use shared::kinesis::record::DecodeError;
use shared::snowflake::streaming::StreamingError;
use shared::snowflake::SnowflakeError;

/// Why an invocation failed as a whole; Lambda retries the batch.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    /// The event is not a Kinesis batch.
    Decode(#[from] DecodeError),
    #[error("Snowflake refused the credentials or configuration: {0}")]
    /// Snowflake refused the credentials or configuration: no resend can succeed.
    Snowflake(SnowflakeError),
    #[error("Snowpipe Streaming refused the credentials or configuration: {0}")]
    /// Snowpipe Streaming refused the credentials or configuration.
    Streaming(StreamingError),
    #[error("encoding quarantined records failed: {0}")]
    /// The quarantine object could not be compressed.
    Encode(#[from] std::io::Error),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match error {
            HandlerError::Decode(_) => "InvalidEvent",
            HandlerError::Snowflake(_) | HandlerError::Streaming(_) => "SnowflakeConfiguration",
            HandlerError::Encode(_) => "EncodeError",
        };
        shared::lambda::diagnostic(error_type, &error)
    }
}
