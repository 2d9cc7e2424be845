//! AWS SDK configuration shared by every function.
//!
//! The SDK reads `AWS_ENDPOINT_URL` (and per-service `AWS_ENDPOINT_URL_S3`, ...) itself, which is
//! how the same code talks to AWS and to the local stack. S3 additionally needs path-style
//! addressing when the endpoint is a plain host such as `localhost` or `127.0.0.1`.

/// Loads the SDK configuration from the environment (region, credentials, endpoints).
pub async fn load_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// An S3 client; path-style when an endpoint override is configured (the local stack, MinIO).
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let endpoint_overridden = std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
        || std::env::var_os("AWS_ENDPOINT_URL").is_some()
        || config.endpoint_url().is_some();
    let force_path_style = endpoint_overridden
        || std::env::var("S3_FORCE_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
    let s3_config = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}
