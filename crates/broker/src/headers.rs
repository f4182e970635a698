//! Header hygiene, both ways. To the app go only the caller's end-to-end
//! headers that say nothing about the caller's own credentials: never its
//! `Authorization`, `Cookie`, `Proxy-*`, hop-by-hop headers (and those its
//! `Connection` header names), forwarding headers, Credence's own
//! `X-Credence-*`, nor any header the app injects itself; nor its `Range`
//! and `If-Range`, and its `Accept-Encoding` becomes `identity`: the answer
//! must come whole and uncompressed for the scrub of secrets to read it
//! (`scrub`; a slice of an echoed key would pass as no key). Back to the caller
//! go the app's headers without hop-by-hop ones and without `Set-Cookie`
//! (a cookie of the app's session is a credential too).

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) and their usual companions.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-connection",
    "http2-settings",
];

/// Headers of the caller that must not reach the app.
fn never_forwarded(name: &HeaderName) -> bool {
    let name = name.as_str();
    HOP_BY_HOP.contains(&name)
        || name.starts_with("proxy-")
        || name.starts_with("x-credence-")
        || name.starts_with("x-forwarded-")
        || matches!(
            name,
            "authorization"
                | "cookie"
                | "host"
                | "forwarded"
                | "x-real-ip"
                | "via"
                | "range"
                | "if-range"
                | "accept-encoding"
        )
}

/// The names a `Connection` header lists: hop-by-hop for this one message.
fn named_by_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// The caller's headers that go to the app; `injected` are the names the app
/// sets itself.
pub fn to_upstream(headers: &HeaderMap, injected: &[HeaderName]) -> HeaderMap {
    let listed = named_by_connection(headers);
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        if never_forwarded(name)
            || injected.contains(name)
            || listed.iter().any(|listed| listed == name.as_str())
        {
            continue;
        }
        kept.append(name.clone(), value.clone());
    }
    kept.insert(
        header::ACCEPT_ENCODING,
        HeaderValue::from_static("identity"),
    );
    kept
}

/// The app's headers that go back to the caller.
pub fn to_caller(headers: &HeaderMap) -> HeaderMap {
    let listed = named_by_connection(headers);
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let dropped = HOP_BY_HOP.contains(&name.as_str())
            || name == header::SET_COOKIE
            || name.as_str().starts_with("proxy-")
            || listed.iter().any(|listed| listed == name.as_str());
        if !dropped {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_credentials_and_hop_by_hop_headers_stay_behind() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Token mine"),
            ("cookie", "session=1"),
            ("proxy-authorization", "Basic eA=="),
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("x-credence-consumer", "agent"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-api-key", "caller's own"),
            ("accept", "application/json"),
            ("accept-encoding", "gzip, br"),
            ("range", "bytes=0-9"),
            ("if-range", "\"v1\""),
            ("content-type", "application/json"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let kept = to_upstream(&headers, &[HeaderName::from_static("x-api-key")]);
        let names: Vec<&str> = kept.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["accept", "content-type", "accept-encoding"]);
        assert_eq!(kept[header::ACCEPT_ENCODING], "identity");
    }

    #[test]
    fn the_apps_cookies_do_not_come_back() {
        let mut headers = HeaderMap::new();
        headers.append(header::SET_COOKIE, HeaderValue::from_static("sid=1"));
        headers.append(header::LOCATION, HeaderValue::from_static("/elsewhere"));
        headers.append(header::CONNECTION, HeaderValue::from_static("close"));
        let kept = to_caller(&headers);
        let names: Vec<&str> = kept.keys().map(|name| name.as_str()).collect();
        assert_eq!(names, ["location"]);
    }
}
