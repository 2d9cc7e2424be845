//! What the functions' `main` does when initialisation fails: Lambda's Runtime API has an
//! endpoint for exactly that, <https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html#runtimes-api-initerror>,
//! so the error (a configuration variable named, a key that does not parse) reaches the caller
//! and CloudWatch as `Runtime.InitError` with its message, instead of "Runtime exited".

use std::time::Duration;

/// Logs `error`, reports it to the Runtime API when there is one, and exits.
pub async fn init_failed(error: impl std::fmt::Display) -> ! {
    let message = error.to_string();
    tracing::error!(error = %message, "initialisation failed");
    if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
        let body = serde_json::json!({ "errorMessage": message, "errorType": "Runtime.InitError" });
        if let Ok(client) = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
        {
            let _ = client
                .post(format!("http://{api}/2018-06-01/runtime/init/error"))
                .header("Lambda-Runtime-Function-Error-Type", "Runtime.InitError")
                .json(&body)
                .send()
                .await;
        }
    }
    std::process::exit(1)
}
