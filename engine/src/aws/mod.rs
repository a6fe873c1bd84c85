//! The AWS side: one SDK configuration for every client, and SDK errors turned into
//! classified errors.
//!
//! Region, credentials and endpoints come from the standard chain and variables
//! (`AWS_REGION`, `AWS_PROFILE`, the ECS task role, `AWS_ENDPOINT_URL`,
//! `AWS_ENDPOINT_URL_DYNAMODB`, …): nothing here invents its own.

pub mod dynamo;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use tokio::sync::OnceCell;

use crate::error::{Error, ErrorClass};

/// The SDK configuration, loaded once per process.
/// An S3 bucket through `object_store`: credentials, region and endpoint from the
/// standard AWS variables; an endpoint given as http:// (a local S3 such as moto or
/// MinIO) is meant.
pub fn s3_store(bucket: &str) -> crate::error::Result<object_store::aws::AmazonS3> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let plain_http = [AmazonS3ConfigKey::S3Endpoint, AmazonS3ConfigKey::Endpoint]
        .iter()
        .filter_map(|k| builder.get_config_value(k))
        .next()
        .is_some_and(|e| e.starts_with("http://"));
    builder
        .with_allow_http(plain_http)
        .build()
        .map_err(|e| crate::error::classify_object_store(e, &format!("opening bucket {bucket}")))
}

pub async fn config() -> &'static aws_config::SdkConfig {
    static CONFIG: OnceCell<aws_config::SdkConfig> = OnceCell::const_new();
    CONFIG
        .get_or_init(|| aws_config::load_defaults(aws_config::BehaviorVersion::latest()))
        .await
}

/// Error codes that say "slow down" or "try again": retryable, like a dropped connection.
const TRANSIENT_CODES: [&str; 9] = [
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
];

/// Classifies an SDK error: network failures, timeouts, throttling and 5xx answers are
/// retryable (`External`); anything the service refused (access denied, a missing table,
/// an invalid request) needs a person (`User`).
pub fn classify_sdk<E>(err: SdkError<E, HttpResponse>, doing: &str) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let class = match &err {
        SdkError::ConstructionFailure(_) => ErrorClass::User,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorClass::External
        }
        SdkError::ServiceError(service) => {
            let transient = service
                .err()
                .code()
                .is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || service.raw().status().is_server_error();
            if transient {
                ErrorClass::External
            } else {
                ErrorClass::User
            }
        }
        _ => ErrorClass::External,
    };
    let detail = match err.as_service_error() {
        Some(e) => format!(
            "{}: {}",
            e.code().unwrap_or("error"),
            e.message().unwrap_or("(no message)")
        ),
        None => DisplayErrorContext(&err).to_string(),
    };
    Error::new(class, format!("{doing}: {detail}"))
}

/// The error code of a service error, for the few codes callers handle themselves.
pub fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    err.as_service_error().and_then(|e| e.code())
}

/// The text of a Secrets Manager secret (a binary secret is refused).
pub async fn secret_string(secret_id: &str) -> crate::error::Result<String> {
    let client = aws_sdk_secretsmanager::Client::new(config().await);
    let out = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| classify_sdk(e, &format!("reading secret `{secret_id}`")))?;
    out.secret_string().map(str::to_string).ok_or_else(|| {
        Error::user(format!(
            "secret `{secret_id}` holds binary data; a connection secret is JSON text"
        ))
    })
}
