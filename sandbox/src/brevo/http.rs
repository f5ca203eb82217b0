//! Brevo's wire conventions shared by every handler: the `{code, message}` error body, lenient
//! JSON/query extraction that answers in Brevo's error shape, and date-time rendering.

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::{format_description, offset};
use time::{Date, OffsetDateTime};

/// An error answer. Body is Brevo's `errorModel` `{code, message}` (reference §1.3), plus the optional
/// `metadata` of `contactErrorModel` on contacts endpoints.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub metadata: Option<Value>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), metadata: None }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameter", message)
    }
    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "missing_parameter", message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "document_not_found", message)
    }
    /// Duplicate identifier on a contact write (reference §2.1, §2.7): the message names the
    /// colliding identifiers and `metadata.duplicate_identifiers` lists them.
    pub fn duplicate(verb: &str, identifiers: &[&str]) -> Self {
        let message = match identifiers {
            [one] => format!(
                "Unable to {verb} contact, {one} is already associated with another Contact"
            ),
            many => format!(
                "Unable to {verb} contact, {} are already associated with another Contact",
                many.join(" or ")
            ),
        };
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "duplicate_parameter",
            message,
            metadata: Some(json!({ "duplicate_identifiers": identifiers })),
        }
    }
    pub fn contact_not_found() -> Self {
        // Observed wording (reference §1.3 table).
        Self::not_found("Contact does not exist")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "code": self.code, "message": self.message });
        if let Some(metadata) = self.metadata {
            body["metadata"] = metadata;
        }
        (self.status, axum::Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T = Response> = Result<T, ApiError>;

/// A JSON body parsed without axum's own (plain-text) rejections, so malformed input gets a Brevo
/// error body. The content type is not checked: clients that forget it still get answers.
pub(crate) struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send + 'static> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_request", "Unable to read the request body")
        })?;
        parse_body_off_workers(bytes).await.map(Body)
    }
}

/// [`parse_body`], on a blocking thread when the body is large (a bulk import carries megabytes):
/// parsed on the runtime's workers it would hold up every other request, Pipedrive's included.
pub(crate) async fn parse_body_off_workers<T: DeserializeOwned + Send + 'static>(
    bytes: axum::body::Bytes,
) -> Result<T, ApiError> {
    if bytes.len() < LARGE_BODY {
        return parse_body(&bytes);
    }
    tokio::task::spawn_blocking(move || parse_body(&bytes)).await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "Unable to read the request body",
        )
    })?
}

/// Bodies from this size on are parsed off the async workers.
const LARGE_BODY: usize = 64 * 1024;

/// A JSON body as `T`, in one pass: malformed JSON and a JSON of the wrong shape get Brevo's two
/// different messages. An empty body is `{}`.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
        serde_json::from_slice(b"{}")
    } else {
        serde_json::from_slice(bytes)
    };
    parsed.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::invalid(format!("Invalid parameter: {e}")),
        _ => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Input must be a valid JSON object",
        ),
    })
}

/// Query parameters as ordered pairs (repeated keys kept, e.g. `listIds=1&listIds=2`).
pub(crate) struct Params(pub Vec<(String, String)>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(pairs) =
            axum::extract::Query::<Vec<(String, String)>>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::invalid("Invalid query string"))?;
        Ok(Params(pairs))
    }
}

impl Params {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// All values of a repeatable parameter; comma-separated values are split too.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name || k == &format!("{name}[]"))
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    pub fn int(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(format!("{name} must be an integer"))),
        }
    }

    /// `limit`/`offset` paging with the endpoint's default and maximum (from the spec's parameter
    /// schema); above the maximum Brevo refuses rather than clamps.
    pub fn paging(&self, default_limit: i64, max_limit: i64) -> ApiResult<(usize, usize)> {
        let limit = self.int("limit")?.unwrap_or(default_limit);
        let offset = self.int("offset")?.unwrap_or(0);
        if !(0..=max_limit).contains(&limit) {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "out_of_range",
                format!("limit should be between 0 and {max_limit}"),
            ));
        }
        if offset < 0 {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "out_of_range",
                "offset should be positive",
            ));
        }
        Ok((limit as usize, offset as usize))
    }

    /// `sort=asc|desc`; every list endpoint defaults to descending creation order.
    pub fn descending(&self) -> ApiResult<bool> {
        match self.get("sort") {
            None | Some("desc") => Ok(true),
            Some("asc") => Ok(false),
            Some(_) => Err(ApiError::invalid("sort must be one of asc, desc")),
        }
    }

    /// A date-time filter such as `modifiedSince`. The spec asks for URL-encoded
    /// `YYYY-MM-DDTHH:mm:ss.SSSZ` (reference §2.6); an unencoded `+` offset arrives as a space and is
    /// refused, which is the mistake this check exists to surface.
    pub fn datetime(&self, name: &str) -> ApiResult<Option<OffsetDateTime>> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => OffsetDateTime::parse(v, &Rfc3339).map(Some).map_err(|_| {
                ApiError::invalid(format!(
                    "{name} should be a valid UTC date-time (YYYY-MM-DDTHH:mm:ss.SSSZ), URL-encoded"
                ))
            }),
        }
    }
}

/// Parses an integer path segment (list, folder, process, webhook ids).
pub(crate) fn path_id(raw: &str, what: &str) -> ApiResult<i64> {
    raw.parse().map_err(|_| ApiError::invalid(format!("{what} must be an integer")))
}

/// Renders a timestamp the way live Brevo does: milliseconds and an explicit offset (the account's
/// timezone, fixed at +01:00 here), not `Z` (reference §2.3). Clients must parse offsets.
pub(crate) fn render_time(t: OffsetDateTime) -> String {
    let local = t.to_offset(offset!(+1));
    local
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]+01:00"
        ))
        .unwrap_or_default()
}

/// `YYYY-MM-DD HH:mm:ss` in the account's local time, as marketing webhooks carry it (reference §8.2).
pub(crate) fn render_local(t: OffsetDateTime) -> String {
    t.to_offset(offset!(+1))
        .format(format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"))
        .unwrap_or_default()
}

pub(crate) fn is_date(s: &str) -> bool {
    Date::parse(s, format_description!("[year]-[month]-[day]")).is_ok()
}

/// Brevo's email check is stricter than most (reference §2.8); this is a plain structural check.
pub(crate) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let tld_ok = domain
        .rsplit_once('.')
        .is_some_and(|(_, tld)| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()));
    !local.is_empty()
        && local.len() <= 64
        && s.len() <= 254
        && !s.chars().any(|c| c.is_whitespace() || c == ',' || c == ';' || c == '<' || c == '>')
        && !domain.contains('@')
        && domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'))
        && tld_ok
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
}

/// Normalises a phone identifier (`SMS`, `WHATSAPP`, `LANDLINE_NUMBER`). Brevo accepts `91xxxxxxxxxx`,
/// `+91xxxxxxxxxx` and `0091xxxxxxxxxx`: the country code is mandatory and a national `0…` form is
/// refused (reference §2.7). Stored as digits without `+`, as the spec's examples show.
pub(crate) fn normalize_phone(raw: &str) -> Option<String> {
    let compact: String =
        raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')')).collect();
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else {
        compact.as_str()
    };
    let plausible = (8..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0');
    plausible.then(|| digits.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        assert_eq!(normalize_phone("+33 6 12 34 56 78").as_deref(), Some("33612345678"));
        assert_eq!(normalize_phone("0033612345678").as_deref(), Some("33612345678"));
        assert_eq!(normalize_phone("33612345678").as_deref(), Some("33612345678"));
        assert_eq!(normalize_phone("0612345678"), None);
        assert_eq!(normalize_phone("+1234"), None);
        assert_eq!(normalize_phone("abc"), None);
    }

    #[test]
    fn emails() {
        assert!(valid_email("ada+tag@example.co.uk"));
        assert!(!valid_email("ada@example"));
        assert!(!valid_email("ada example@x.com"));
        assert!(!valid_email("@x.com"));
    }
}
