//! Cross-site request forgery protection for every state-changing request.
//!
//! Session cookies are `SameSite=Lax`, which already keeps them off cross-site POSTs in current
//! browsers. On top of that, a request with an unsafe method must prove it comes from our own
//! pages: either the browser's `Sec-Fetch-Site` says `same-origin` (or `none`: typed by the user),
//! or its `Origin` is ours (the public URL, or the `Host` it was sent to). A request with neither
//! header is refused: every browser that can carry our cookie sends one of them. This is the
//! "verify origin with standard headers" and "Fetch Metadata" defence from OWASP's CSRF sheet, and
//! needs no token in the forms. Paths that take no cookies (webhooks, later) are exempt.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

#[derive(Clone)]
pub struct CsrfConfig {
    pub public_origin: String,
}

pub async fn protect(State(config): State<CsrfConfig>, request: Request, next: Next) -> Response {
    if is_safe(request.method()) || allowed(&config, request.headers()) {
        return next.run(request).await;
    }
    tracing::warn!(path = %request.uri().path(), "cross-site request refused");
    (
        StatusCode::FORBIDDEN,
        Html(
            "<!DOCTYPE html><html lang=\"en\"><meta charset=\"utf-8\"><title>Request refused</title>\
             <p>This request did not come from a pipebridge page, so it was refused to protect \
             your account. Go back, reload the page and try again.</p></html>",
        ),
    )
        .into_response()
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE)
}

fn allowed(config: &CsrfConfig, headers: &HeaderMap) -> bool {
    let get = |name| headers.get(name).and_then(|v| v.to_str().ok());
    // `same-site` or `cross-site` fall through to the Origin check (a sibling subdomain is not
    // us; but a proxy may legitimately rewrite hosts, which the Origin check covers).
    if let Some(site) = get("sec-fetch-site")
        && (site == "same-origin" || site == "none")
    {
        return true;
    }
    let Some(origin) = get(header::ORIGIN.as_str()) else {
        return false;
    };
    if origin == config.public_origin {
        return true;
    }
    let host = get(header::HOST.as_str());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn config() -> CsrfConfig {
        CsrfConfig { public_origin: "https://sync.example.com".into() }
    }

    #[test]
    fn same_origin_fetch_metadata_passes() {
        assert!(allowed(&config(), &headers(&[("sec-fetch-site", "same-origin")])));
    }

    #[test]
    fn cross_site_is_refused_even_with_a_matching_host() {
        let h = headers(&[
            ("sec-fetch-site", "cross-site"),
            ("origin", "https://evil.example"),
            ("host", "sync.example.com"),
        ]);
        assert!(!allowed(&config(), &h));
    }

    #[test]
    fn origin_equal_to_public_url_or_host_passes() {
        assert!(allowed(&config(), &headers(&[("origin", "https://sync.example.com")])));
        assert!(allowed(
            &config(),
            &headers(&[("origin", "http://127.0.0.1:3000"), ("host", "127.0.0.1:3000")])
        ));
    }

    #[test]
    fn no_origin_no_metadata_is_refused() {
        assert!(!allowed(&config(), &headers(&[("host", "sync.example.com")])));
        assert!(!allowed(&config(), &headers(&[("origin", "null"), ("host", "sync.example.com")])));
    }
}
