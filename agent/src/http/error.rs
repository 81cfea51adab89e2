//! The one place where errors become HTTP statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::ErrorBody;
use shared::command::{ErrorClass, MetaError};

use crate::node::meta_client::MetaClientError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// An API error: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }

    /// 404 with a code and message.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code,
            message: message.into(),
        }
    }

    /// An extractor's rejection (body too large, bad query, wrong method) as a JSON error.
    pub fn rejected(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            _ => "InvalidRequest",
        };
        ApiError {
            status,
            code,
            message,
        }
    }

    /// 503: no leader, or the local replica is not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ServiceUnavailable",
            message: message.into(),
        }
    }

    /// 404 for an unknown table.
    pub fn table_not_found(name: &str) -> Self {
        MetaError::TableNotFound(name.to_string()).into()
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let status = match e.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
        };
        ApiError {
            status,
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl From<MetaClientError> for ApiError {
    fn from(e: MetaClientError) -> Self {
        match e {
            MetaClientError::NoLeader(_) => ApiError::unavailable(e.to_string()),
            // Not 503: the write may have applied, so a blind retry is not safe to invite.
            MetaClientError::Unknown(_) => ApiError {
                status: StatusCode::GATEWAY_TIMEOUT,
                code: "OutcomeUnknown",
                message: format!("{e}; read the resource to learn whether the change applied"),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(ErrorBody::new(self.code, self.message));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        response
    }
}
