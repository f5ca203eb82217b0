//! Pipedrive's answer envelopes (pipedrive-api.md §5): `{success, data, additional_data}` and
//! `{success: false, error, error_info, data: null, additional_data: null}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const ERROR_INFO: &str = "Please check developers.pipedrive.com";

pub fn ok(data: Value) -> Response {
    Json(json!({"success": true, "data": data})).into_response()
}

pub fn ok_with(data: Value, additional: Value) -> Response {
    Json(json!({"success": true, "data": data, "additional_data": additional})).into_response()
}

/// A v2 list page serialized straight from borrowed views (no intermediate `Value`).
pub fn ok_page<T: serde::Serialize>(data: &[T], next_cursor: Option<String>) -> Response {
    #[derive(serde::Serialize)]
    struct Additional {
        next_cursor: Option<String>,
    }
    #[derive(serde::Serialize)]
    struct Page<'a, T> {
        success: bool,
        data: &'a [T],
        additional_data: Additional,
    }
    match serde_json::to_vec(&Page {
        success: true,
        data,
        additional_data: Additional { next_cursor },
    }) {
        Ok(body) => ([("content-type", "application/json")], body).into_response(),
        Err(e) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, format!("serializing the page failed: {e}"))
        }
    }
}

pub fn created(data: Value) -> Response {
    (StatusCode::CREATED, Json(json!({"success": true, "data": data}))).into_response()
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({"success": false, "error": message.into(), "error_info": ERROR_INFO, "data": null, "additional_data": null});
    (status, Json(body)).into_response()
}

pub fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

pub fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, format!("{what} not found"))
}

pub fn unauthorized() -> Response {
    let body = json!({"success": false, "error": "unauthorized access", "errorCode": 401, "error_info": ERROR_INFO});
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

pub fn over_limit() -> Response {
    let body = json!({"success": false, "error": "Request over limit", "errorCode": 429, "error_info": ERROR_INFO});
    (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
}

/// The abusive-traffic block is an HTML page, not JSON (§11.5).
pub fn blocked() -> Response {
    let html = "<!DOCTYPE html><html><head><title>Access denied | api.pipedrive.com used Cloudflare to restrict access</title></head>\
                <body><h1>Error 1015</h1><p>You are being rate limited.</p></body></html>";
    (StatusCode::FORBIDDEN, [("content-type", "text/html; charset=UTF-8")], html).into_response()
}

/// Parses an optional integer query value with the API's message on failure.
pub fn int_param(name: &str, raw: Option<&String>) -> Result<Option<u64>, Response> {
    match raw {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("Parameter '{name}' must be an integer"))),
    }
}

pub fn bool_param(name: &str, raw: Option<&String>) -> Result<Option<bool>, Response> {
    match raw.map(String::as_str) {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => {
            Err(bad_request(format!("Parameter '{name}' must be a boolean (true or false)")))
        }
    }
}
