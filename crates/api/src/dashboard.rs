//! The web dashboard: a small single-page application (plain HTML, CSS
//! and JavaScript, no build step) embedded in the binary and served at
//! `/`. The assets need no credential; the pages log in with
//! `POST /api/auth/login` and call the API with the session token, so the
//! dashboard can do nothing the API would not let its user do.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

/// The page itself is revalidated on every load so that a new binary's
/// page is picked up at once; the assets it names are cached briefly.
const NO_CACHE: &str = "no-cache";
const SHORT_CACHE: &str = "public, max-age=300";

fn asset(body: &'static str, content_type: &'static str, cache: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn index() -> Response {
    // The version shows on the System page.
    let page = INDEX_HTML.replace("{{VERSION}}", env!("CARGO_PKG_VERSION"));
    let mut resp = page.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Everything the page loads comes from this server.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
        ),
    );
    resp
}

async fn app_js() -> Response {
    asset(APP_JS, "text/javascript; charset=utf-8", SHORT_CACHE)
}

async fn app_css() -> Response {
    asset(APP_CSS, "text/css; charset=utf-8", SHORT_CACHE)
}

/// The dashboard's routes: `/`, `/assets/app.js`, `/assets/app.css`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(index))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_embedded_and_typed() {
        assert!(INDEX_HTML.contains("/assets/app.js"));
        assert!(INDEX_HTML.contains("/assets/app.css"));
        let r = asset(APP_JS, "text/javascript; charset=utf-8", SHORT_CACHE);
        assert_eq!(
            r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()),
            Some(&b"text/javascript; charset=utf-8"[..])
        );
        assert!(r.headers().get(header::CACHE_CONTROL).is_some());
    }
}
