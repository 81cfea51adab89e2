//! Requests refused for their shape before routing, each with the JSON error shape: a
//! request target too long (414), too many or too large header fields (431), a path that
//! is not percent-encoded UTF-8 (400). hyper answers the first two itself, without a
//! body, only past its own much higher limits (a 64 KiB target; `HYPER_MAX_HEADERS`
//! fields or about 400 KiB of headers), and axum answered the third in plain text.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::error::ApiError;

/// Longest request target (path and query) served.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header bytes (names and values) served.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most header fields served.
pub const MAX_HEADER_FIELDS: usize = 64;
/// hyper's own field limit, above ours so that ours answers first.
pub const HYPER_MAX_HEADERS: usize = 256;

/// Refuses a request whose target, headers or path encoding is out of bounds.
pub async fn check_request_shape(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |target| target.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::rejected(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are served"),
        )
        .into_response();
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADER_FIELDS || bytes > MAX_HEADER_BYTES {
        return ApiError::rejected(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} header fields of {bytes} bytes; at most {MAX_HEADER_FIELDS} fields of \
                 {MAX_HEADER_BYTES} bytes are served",
                headers.len()
            ),
        )
        .into_response();
    }
    if percent_encoding::percent_decode_str(request.uri().path())
        .decode_utf8()
        .is_err()
    {
        return ApiError::bad_request(
            "InvalidPath",
            "the path does not decode (percent-encoded) to UTF-8",
        )
        .into_response();
    }
    next.run(request).await
}
