//! `GET /api/docs`: the reference page generated from the route table.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value as Json;

use super::{error_codes, operation_id, path_params, schemas::schemas, tags, ROUTES};
use crate::ApiState;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `GET /api/docs`: the reference page, HTML with inline CSS, no scripts.
pub(crate) async fn docs(State(_): State<Arc<ApiState>>) -> Response {
    let mut resp = (StatusCode::OK, docs_html()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

pub(super) fn docs_html() -> String {
    let mut h = String::from(concat!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        "<title>Millwright API reference</title><style>",
        "body{font:16px/1.5 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:1rem 2rem;color:#111;background:#fff}",
        "h1{margin-bottom:.2rem}h2{border-bottom:2px solid #333;margin-top:2.5rem;text-transform:capitalize}",
        "nav a{margin-right:1rem;color:#0645ad}a{color:#0645ad}",
        "section.op{border:1px solid #bbb;border-radius:6px;padding:.6rem 1rem;margin:1rem 0}",
        "code{font:15px ui-monospace,monospace}pre{overflow-x:auto;background:#f4f4f4;padding:.5rem}",
        ".m{display:inline-block;min-width:4.5rem;font-weight:700;color:#fff;border-radius:4px;padding:0 .4rem;text-align:center}",
        ".GET{background:#0b5394}.POST{background:#1e6b24}.PATCH{background:#7a4a00}.PUT{background:#5b2c83}.DELETE{background:#a30000}",
        ".role{float:right;font-weight:600}table{border-collapse:collapse;margin:.4rem 0}td,th{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}",
        "</style></head><body><h1>Millwright API reference</h1>",
        "<p>Generated from the route table, like <a href=\"/api/openapi.json\">the OpenAPI 3.1 document</a>. ",
        "Send <code>Authorization: Bearer &lt;token&gt;</code>; roles are ordered viewer &lt; operator &lt; admin. ",
        "Errors are <code>application/problem+json</code> with <code>type, title, status, detail, code</code> and often <code>field</code>.</p><nav>",
    ));
    let tags = tags();
    for t in &tags {
        let _ = write!(h, "<a href=\"#{0}\">{0}</a>", esc(t));
    }
    h.push_str("</nav>");
    for t in &tags {
        let _ = write!(h, "<h2 id=\"{0}\">{0}</h2>", esc(t));
        for r in ROUTES.iter().filter(|r| r.tag == *t) {
            let _ = write!(
                h,
                "<section class=\"op\" id=\"{id}\"><span class=\"role\">role: {role}</span>\
                 <span class=\"m {m}\">{m}</span> <code>{path}</code><p>{summary}</p>",
                id = operation_id(r),
                role = r.access.as_str(),
                m = r.method,
                path = esc(r.path),
                summary = esc(r.summary),
            );
            let pp = path_params(r.path);
            if !pp.is_empty() || !r.query.is_empty() {
                h.push_str("<table><tr><th>parameter</th><th>in</th><th>description</th></tr>");
                for p in pp {
                    let _ = write!(
                        h,
                        "<tr><td><code>{}</code></td><td>path</td><td>required</td></tr>",
                        esc(p)
                    );
                }
                for (n, d) in r.query {
                    let _ = write!(
                        h,
                        "<tr><td><code>{}</code></td><td>query</td><td>{}</td></tr>",
                        esc(n),
                        esc(d)
                    );
                }
                h.push_str("</table>");
            }
            if let Some(b) = r.body {
                let _ = write!(
                    h,
                    "<p>Body: <a href=\"#schema-{0}\"><code>{0}</code></a></p>",
                    esc(b)
                );
            }
            h.push_str("<p>Responses: ");
            for (code, schema) in r.ok {
                match schema {
                    Some(s) => {
                        let _ = write!(
                            h,
                            "<code>{code}</code> <a href=\"#schema-{0}\"><code>{0}</code></a>; ",
                            esc(s)
                        );
                    }
                    None => {
                        let _ = write!(h, "<code>{code}</code> no body; ");
                    }
                }
            }
            let list: Vec<String> = error_codes(r).iter().map(u16::to_string).collect();
            let _ = write!(
                h,
                "errors {} as <a href=\"#schema-Problem\"><code>Problem</code></a></p></section>",
                list.join(", ")
            );
        }
    }
    h.push_str("<h2 id=\"schemas\">schemas</h2>");
    if let Json::Object(m) = schemas() {
        for (name, schema) in m {
            let pretty = serde_json::to_string_pretty(&schema).unwrap_or_default();
            let _ = write!(
                h,
                "<section class=\"op\" id=\"schema-{0}\"><h3><code>{0}</code></h3><pre><code>{1}</code></pre></section>",
                esc(&name),
                esc(&pretty)
            );
        }
    }
    h.push_str("</body></html>");
    h
}
