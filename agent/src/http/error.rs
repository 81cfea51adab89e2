//! The one place where errors become HTTP statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shared::api::auth::{ACCESS_DENIED_CODE, UNAUTHENTICATED_CODE};
use shared::api::{ErrorBody, ITEM_NOT_FOUND_CODE, PARTITION_EPOCH_HEADER, WRONG_PARTITION_CODE};
use shared::command::{ErrorClass, MetaError};
use shared::data::ItemError;

use crate::meta::rpc::LeaderCallError;
use crate::seam::MetaClientError;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// What every handler returns.
pub type ApiResult<T> = Result<T, ApiError>;

/// An API error: status, stable code and message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `X-Partition-Epoch` of a `WrongPartition` answer.
    partition_epoch: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            partition_epoch: None,
        }
    }

    /// 400 with a code and message.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 404 with a code and message.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 409 with a code and message.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, message)
    }

    /// An extractor's rejection (body too large, bad query, wrong method) as a JSON error.
    pub fn rejected(status: StatusCode, message: String) -> Self {
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "PayloadTooLarge",
            StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
            StatusCode::URI_TOO_LONG => "UriTooLong",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "HeadersTooLarge",
            _ => "InvalidRequest",
        };
        ApiError::new(status, code, message)
    }

    /// 503: no leader, or the local replica is not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        )
    }

    /// 404 for an unknown table.
    pub fn table_not_found(name: &str) -> Self {
        MetaError::TableNotFound(name.to_string()).into()
    }

    /// 404 for a missing item.
    pub fn item_not_found(message: impl Into<String>) -> Self {
        ApiError::not_found(ITEM_NOT_FOUND_CODE, message)
    }

    /// 413 for an item value over the limit (or a body too large to be one).
    pub fn value_too_large(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "ValueTooLarge", message)
    }

    /// 401: no credential or secret, or one that does not authenticate.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, UNAUTHENTICATED_CODE, message)
    }

    /// 403: authenticated, but not allowed to do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, ACCESS_DENIED_CODE, message)
    }

    /// 500: the server broke a promise of its own (never the client's fault).
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message)
    }
}

impl From<ItemError> for ApiError {
    fn from(e: ItemError) -> Self {
        let message = e.to_string();
        match e {
            ItemError::WrongPartition {
                current_epoch,
                primary,
            } => ApiError {
                partition_epoch: current_epoch,
                ..ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    WRONG_PARTITION_CODE,
                    wrong_partition_message(current_epoch, primary),
                )
            },
            ItemError::TableNotFound(name) => ApiError::table_not_found(&name),
            ItemError::TableNotWritable { name, status } => {
                let status = serde_json::to_value(status).unwrap_or_default();
                let status = status.as_str().unwrap_or("not writable");
                let message = format!("table {name} is {status}; writes need ACTIVE or SCALING");
                ApiError::new(StatusCode::CONFLICT, "TableNotWritable", message)
            }
            ItemError::ValueTooLarge { .. } => ApiError::value_too_large(message),
            ItemError::Invalid(_) => ApiError::bad_request("InvalidRequest", message),
            // Retry-After is added to every 503 by `into_response`.
            ItemError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "PartitionUnavailable",
                message,
            ),
            // As for metadata writes: the client must read before deciding to retry.
            ItemError::OutcomeUnknown(_) => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "OutcomeUnknown", message)
            }
        }
    }
}

fn wrong_partition_message(current_epoch: Option<u64>, primary: Option<u64>) -> String {
    let epoch = current_epoch.map_or("unknown".to_string(), |e| e.to_string());
    let primary = primary.map_or("unknown".to_string(), |n| format!("node {n}"));
    format!(
        "this agent is not the primary of the key's partition at the epoch given \
         (current epoch {epoch}, primary {primary}); refresh the routes and retry"
    )
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        let status = match e.class() {
            ErrorClass::BadRequest => StatusCode::BAD_REQUEST,
            ErrorClass::NotFound => StatusCode::NOT_FOUND,
            ErrorClass::Conflict => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<MetaClientError> for ApiError {
    fn from(e: MetaClientError) -> Self {
        match e {
            MetaClientError::NoLeader(_) => ApiError::unavailable(e.to_string()),
            // Not 503: the write may have applied, so a blind retry is not safe to invite.
            MetaClientError::Unknown(_) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "OutcomeUnknown",
                format!("{e}; read the resource to learn whether the change applied"),
            ),
        }
    }
}

impl From<LeaderCallError> for ApiError {
    fn from(e: LeaderCallError) -> Self {
        match e {
            LeaderCallError::Invalid(m) => ApiError::bad_request("InvalidRequest", m),
            LeaderCallError::NotFound { code, message } => {
                let code = match code.as_str() {
                    "TableNotFound" => "TableNotFound",
                    "PrincipalNotFound" => "PrincipalNotFound",
                    _ => "NotFound",
                };
                ApiError::not_found(code, message)
            }
            LeaderCallError::Forbidden(m) => ApiError::forbidden(m),
            LeaderCallError::Forward(f) => ApiError::unavailable(f.to_string()),
            LeaderCallError::Unavailable(m) => ApiError::unavailable(m),
        }
    }
}

/// The challenge of a 401: principals use Basic, item requests a Bearer credential.
const WWW_AUTHENTICATE: &str = "Basic realm=\"agent\", Bearer realm=\"agent\"";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(ErrorBody::new(self.code, self.message));
        let mut response = (self.status, body).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        if let Some(epoch) = self.partition_epoch {
            response
                .headers_mut()
                .insert(PARTITION_EPOCH_HEADER, HeaderValue::from(epoch));
        }
        response
    }
}
