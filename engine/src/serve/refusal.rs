//! An answer that is not a result: its HTTP status (Flight SQL maps it to a gRPC code), a
//! stable code and what to do. Both front ends refuse with these, so a client sees the
//! same reasons over HTTP and over Flight SQL.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorClass};

#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds for `Retry-After` (a 503 says 1 when none is given).
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Tells the client when to try again.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no valid API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY` (Flight SQL: the key as the password of the handshake, or as the bearer token)",
        )
    }

    pub fn busy(slots: usize) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!("all {slots} query slots are busy; try again"),
        )
    }

    /// One key's share of the slots is taken (the others' are not: 429, not 503).
    pub fn key_busy(name: &str, slots: usize) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "key_busy",
            format!(
                "key `{name}` already runs {slots} queries, the most one key may run at once (--max-concurrent-per-key); wait for one to end"
            ),
        )
    }

    pub fn answer_limit(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "answer_limit",
            format!(
                "the answer is larger than {limit} bytes, the most one answer may carry (--max-page-bytes for a page, --max-answer-bytes for a stream); page it with a smaller limit, select fewer or shorter columns, or aggregate"
            ),
        )
    }

    pub fn time_limit(limit: std::time::Duration) -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "time_limit",
            format!(
                "the query ran past the time limit ({limit:?}); narrow it (a partition filter, fewer columns) or page it"
            ),
        )
    }

    pub fn row_limit(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "row_limit",
            format!(
                "the result has more than {limit} rows, the most one answer may stream; page it (limit and next) or aggregate"
            ),
        )
    }

    /// The error as JSON, for a body or an NDJSON stream's last line.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.json())).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        let retry_after = self.retry_after.or(matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        )
        .then_some(1));
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A sluice error as an answer: the user's is the request's fault, anything else ours.
impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match e.class {
            ErrorClass::User => Self::bad(e.message),
            // The detail names the lake's place (a bucket, a path): logged, not told.
            ErrorClass::External => {
                tracing::warn!(error = %e.report(), "the lake could not be read");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the lake could not be read just now (logged); try again",
                )
            }
            _ => {
                tracing::error!(error = %e.report(), "query failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the query failed inside sluice (logged)",
                )
            }
        }
    }
}
