//! The web client and the JavaScript SDK, embedded in the binary.
//!
//! `natter serve` alone serves a complete chat client at `/`: the files of
//! `web/` and the SDK (`sdk/js/natter.js` at `/sdk/natter.js`) are compiled
//! in, so running the server needs no npm, no build step and no internet.
//! Every file goes out with its content type, a strong `ETag` (answered
//! with 304 when it matches) and a strict Content-Security-Policy: scripts,
//! styles and connections only from this origin, nothing inline, no
//! frames, and Trusted Types so that no string can ever become HTML.
//!
//! The router reaches this module through its fallback: anything that is
//! not an API route and is a `GET`/`HEAD` of an embedded file is served
//! from here; the rest keeps the API's JSON 404.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};
use sha2::{Digest, Sha256};

use crate::ApiError;

static WEB: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web");
static SDK_JS: &[u8] = include_bytes!("../../../sdk/js/natter.js");
static SDK_DTS: &[u8] = include_bytes!("../../../sdk/js/natter.d.ts");

/// The policy of every page. `connect-src 'self'` covers the WebSocket to
/// this origin in browsers that implement CSP 3 (all current ones).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; font-src 'self'; connect-src 'self'; \
     manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'; require-trusted-types-for 'script'; trusted-types 'none'";

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

/// The embedded files by URL path, hashed once on first use.
fn assets() -> &'static HashMap<String, Asset> {
    static ASSETS: OnceLock<HashMap<String, Asset>> = OnceLock::new();
    ASSETS.get_or_init(|| {
        let mut map = HashMap::new();
        let mut add = |path: String, body: &'static [u8]| {
            let digest = Sha256::digest(body);
            let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
            let asset = Asset {
                body,
                content_type: content_type(&path),
                etag: HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header"),
            };
            map.insert(path, asset);
        };
        let mut stack = vec![&WEB];
        while let Some(dir) = stack.pop() {
            for file in dir.files() {
                let path = file.path().to_string_lossy().replace('\\', "/");
                add(format!("/{path}"), file.contents());
            }
            stack.extend(dir.dirs());
        }
        add("/sdk/natter.js".into(), SDK_JS);
        add("/sdk/natter.d.ts".into(), SDK_DTS);
        map
    })
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("json") => "application/json",
        Some("webmanifest") => "application/manifest+json",
        Some("woff2") => "font/woff2",
        Some("ts" | "md" | "txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The router's fallback: an embedded file, or the API's JSON errors.
pub async fn fallback(req: Request) -> Response {
    let path = req.uri().path();
    if path == "/api" || path.starts_with("/api/") {
        return ApiError::not_found("no such endpoint").into_response();
    }
    let path = if path == "/" { "/index.html" } else { path };
    let Some(asset) = assets().get(path) else {
        return ApiError::not_found("no such endpoint").into_response();
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this endpoint",
        )
        .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::ETAG, asset.etag.clone());
    // revalidate every time (cheap with the ETag), so an upgraded server
    // never runs with a stale client
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == asset.etag)
        });
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    if req.method() == Method::HEAD {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        return (StatusCode::OK, headers).into_response();
    }
    (StatusCode::OK, headers, asset.body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_and_the_sdk_are_embedded() {
        let a = assets();
        for path in ["/index.html", "/app.js", "/style.css", "/sdk/natter.js"] {
            assert!(a.contains_key(path), "{path} is not embedded");
        }
        assert_eq!(a["/app.js"].content_type, "text/javascript; charset=utf-8");
    }

    #[test]
    fn the_policy_allows_nothing_inline() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
        assert!(CONTENT_SECURITY_POLICY.contains("default-src 'self'"));
    }
}
