//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`
//! with a 4xx status for anything the client sent, so that a client library
//! raises its usual exception with our message in it.

use crate::error::{Error, ErrorKind};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    param: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), param: None }
    }

    /// A 400 about the request field `param`.
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, message: message.into(), param: Some(param) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// A 500: a fault of kioku, never of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Runs a library call on a model thread: its input errors become 4xx,
    /// anything else (a panic included) a 500, and the server keeps serving.
    pub fn guard<T>(work: impl FnOnce() -> anyhow::Result<T>) -> Result<T, Self> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
            Ok(outcome) => outcome.map_err(Self::from_library),
            Err(_) => Err(Self::internal("kioku failed on this request (a bug); the server keeps running")),
        }
    }

    /// A failure of the library on input that passed validation: a fault of
    /// kioku or the model, never of the request (those are mapped to 4xx).
    pub fn from_library(error: anyhow::Error) -> Self {
        match error.downcast_ref::<Error>().map(Error::kind) {
            Some(ErrorKind::NoSpeech | ErrorKind::Input) => Self::bad_request(format!("{error:#}")),
            _ => Self::internal(format!("{error:#}")),
        }
    }

    #[cfg(test)]
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body, also sent as an SSE event when a stream fails midway.
    pub fn body(&self) -> serde_json::Value {
        let kind = match self.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::SERVICE_UNAVAILABLE => "server_overloaded",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request_error",
        };
        json!({ "error": { "message": self.message, "type": kind, "param": self.param, "code": self.status.as_u16() } })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("kioku serve: {} {}", self.status.as_u16(), self.message);
        }
        (self.status, Json(self.body())).into_response()
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}
