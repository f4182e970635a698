//! HTTP operations a module may perform: a method and a path pattern, and the
//! matching the broker relies on to decide whether a call is allowed.
//!
//! Matching is deliberately strict, because a pattern that matches too much
//! widens what a recipient agreed to:
//! * `{param}` matches exactly one non-empty segment; a segment never contains
//!   `/`, so a parameter cannot swallow the rest of the path.
//! * a segment may put literal text around its parameter (`{id}.json`,
//!   `{range}:append`, `app{baseId}`); the parameter part must still be non-empty.
//! * literal segments compare byte for byte, case-sensitively, without decoding:
//!   `/v1/%75sers` is not `/v1/users`.
//! * a path with a `.` or `..` segment (also when percent-encoded, e.g. `%2e%2E`,
//!   or followed by `;…`), an encoded slash or backslash (`%2F`, `%5C`), a raw
//!   backslash, a malformed `%` escape, an encoded control character, a `#`, or
//!   any byte outside visible ASCII never matches anything: an upstream server
//!   could read those as a different path than the one we checked.
//! * the query string (from the first `?`) is not part of the match.
//! * a trailing slash is significant: `/v1/contacts/` does not match the pattern
//!   `/v1/contacts`, and a pattern ending in `/` matches only paths ending in `/`.
//! * methods compare exactly and case-sensitively (`GET`, not `get`); a `GET`
//!   operation does not allow `HEAD`.

use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// An HTTP method an operation may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
}

impl Method {
    pub const ALL: [Method; 6] = [
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Patch,
        Method::Delete,
        Method::Head,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Head => "HEAD",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The method names, as one string for error messages.
pub(crate) fn method_names() -> String {
    Method::ALL
        .iter()
        .map(|method| method.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for Method {
    type Err = String;

    /// Exact, uppercase names only: HTTP methods are case-sensitive.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|method| method.as_str() == value)
            .ok_or_else(|| format!("{value:?} is not one of {}", method_names()))
    }
}

/// A path pattern such as `/v1/contacts/{id}`, relative to the app version's base
/// URL. Built only by [`PathPattern::parse`], so every value obeys the rules in
/// this module's documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param {
        prefix: String,
        name: String,
        suffix: String,
    },
}

impl Segment {
    /// How much of the segment is fixed text; used to prefer `/files/export`
    /// over `/files/{id}` when both match.
    fn specificity(&self) -> u8 {
        match self {
            Segment::Literal(_) => 2,
            Segment::Param { prefix, suffix, .. } if !prefix.is_empty() || !suffix.is_empty() => 1,
            Segment::Param { .. } => 0,
        }
    }

    fn matches(&self, segment: &str) -> bool {
        match self {
            Segment::Literal(literal) => literal == segment,
            Segment::Param { prefix, suffix, .. } => {
                segment.len() > prefix.len() + suffix.len()
                    && segment.starts_with(prefix.as_str())
                    && segment.ends_with(suffix.as_str())
            }
        }
    }
}

/// Why a path pattern was refused; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPattern(pub String);

/// Characters allowed in the literal text of a pattern: RFC 3986 `pchar` without
/// `%`, so a literal always compares against the exact text a client sends.
fn is_literal_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@".contains(c)
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

impl PathPattern {
    /// Parses a pattern: it starts with `/`, has no empty segment except a
    /// trailing one (a pattern ending in `/`), no `.` or `..` segment, no query
    /// string, and at most one `{param}` per segment with unique names.
    pub fn parse(source: &str) -> Result<Self, InvalidPattern> {
        let fail = |message: String| Err(InvalidPattern(message));
        let Some(rest) = source.strip_prefix('/') else {
            return fail(format!("{source:?} does not start with /"));
        };
        if source.contains('?') || source.contains('#') {
            return fail(format!(
                "{source:?} contains ? or #; a pattern is a path only, the query string is never matched"
            ));
        }
        let raw_segments: Vec<&str> = rest.split('/').collect();
        let last = raw_segments.len() - 1;
        let mut segments = Vec::with_capacity(raw_segments.len());
        let mut names: Vec<&str> = Vec::new();
        for (index, raw) in raw_segments.iter().enumerate() {
            if raw.is_empty() && index != last {
                return fail(format!("{source:?} has an empty segment (//)"));
            }
            if *raw == "." || *raw == ".." {
                return fail(format!("{source:?} has a {raw:?} segment"));
            }
            let segment = match raw.find('{') {
                None => {
                    if raw.contains('}') {
                        return fail(format!("{source:?} has a }} without a matching {{"));
                    }
                    Segment::Literal(raw.to_string())
                }
                Some(open) => {
                    let Some(close_offset) = raw[open..].find('}') else {
                        return fail(format!("{source:?} has a {{ without a matching }}"));
                    };
                    let close = open + close_offset;
                    let (prefix, name, suffix) =
                        (&raw[..open], &raw[open + 1..close], &raw[close + 1..]);
                    if suffix.contains('{') || suffix.contains('}') {
                        return fail(format!(
                            "{source:?} has two parameters in one segment ({raw:?}); a segment holds at most one"
                        ));
                    }
                    if !is_param_name(name) {
                        return fail(format!(
                            "{source:?} has the parameter {{{name}}}; names are letters, digits and _, starting with a letter"
                        ));
                    }
                    if names.contains(&name) {
                        return fail(format!("{source:?} uses the parameter {{{name}}} twice"));
                    }
                    names.push(name);
                    Segment::Param {
                        prefix: prefix.to_string(),
                        name: name.to_string(),
                        suffix: suffix.to_string(),
                    }
                }
            };
            let literal_text = match &segment {
                Segment::Literal(text) => text.clone(),
                Segment::Param { prefix, suffix, .. } => format!("{prefix}{suffix}"),
            };
            if let Some(bad) = literal_text.chars().find(|c| !is_literal_char(*c)) {
                return fail(format!(
                    "{source:?} contains {bad:?}; paths use letters, digits and -._~!$&'()*+,;=:@ (no % escapes)"
                ));
            }
            segments.push(segment);
        }
        Ok(PathPattern {
            source: source.to_string(),
            segments,
        })
    }

    /// The pattern as written, e.g. `/v1/contacts/{id}`; what the broker records
    /// as the call's path template.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The names of the pattern's parameters, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|segment| match segment {
            Segment::Param { name, .. } => Some(name.as_str()),
            Segment::Literal(_) => None,
        })
    }

    /// Whether `path` (a request path, possibly with a query string) matches this
    /// pattern under the rules in this module's documentation.
    pub fn matches(&self, path: &str) -> bool {
        match split_request_path(path) {
            Some(segments) => self.matches_segments(&segments),
            None => false,
        }
    }

    fn matches_segments(&self, segments: &[&str]) -> bool {
        segments.len() == self.segments.len()
            && self
                .segments
                .iter()
                .zip(segments)
                .all(|(pattern, segment)| pattern.matches(segment))
    }

    /// Orders two patterns by how much fixed text they have, segment by segment
    /// from the left; the more specific one is `Greater`.
    fn compare_specificity(&self, other: &PathPattern) -> Ordering {
        let left = self.segments.iter().map(Segment::specificity);
        let right = other.segments.iter().map(Segment::specificity);
        left.cmp(right)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Serialize for PathPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.source)
    }
}

/// Splits a request path into its segments after the leading `/`, or returns
/// `None` when the path is one we refuse to match at all (see the module doc).
fn split_request_path(path: &str) -> Option<Vec<&str>> {
    let path = match path.find('?') {
        Some(query) => &path[..query],
        None => path,
    };
    let rest = path.strip_prefix('/')?;
    if !path.bytes().all(|byte| (0x21..=0x7e).contains(&byte)) || path.contains(['#', '\\']) {
        return None;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.iter().all(|segment| is_safe_segment(segment)) {
        Some(segments)
    } else {
        None
    }
}

/// A segment is safe when its `%` escapes are well-formed, none of them decodes
/// to a slash, backslash or control character, and it is not a dot segment once
/// decoded (also before a `;`, which some servers strip as a path parameter).
fn is_safe_segment(segment: &str) -> bool {
    let Some(decoded) = percent_decode(segment) else {
        return false;
    };
    if decoded
        .iter()
        .any(|&byte| byte == b'/' || byte == b'\\' || byte < 0x20 || byte == 0x7f)
    {
        return false;
    }
    let before_parameters = match decoded.iter().position(|&byte| byte == b';') {
        Some(semicolon) => &decoded[..semicolon],
        None => &decoded[..],
    };
    let is_dots = |bytes: &[u8]| bytes == b"." || bytes == b"..";
    !is_dots(&decoded) && !is_dots(before_parameters)
}

fn percent_decode(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let high = (*bytes.get(index + 1)? as char).to_digit(16)?;
            let low = (*bytes.get(index + 2)? as char).to_digit(16)?;
            decoded.push((high * 16 + low) as u8);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    Some(decoded)
}

/// One HTTP operation: a method and a path pattern relative to the base URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    pub method: Method,
    pub path: PathPattern,
}

impl Operation {
    /// Parses `"METHOD /path"`, e.g. `"GET /v1/contacts/{id}"`: one method in
    /// capitals, one space, one pattern.
    pub fn parse(text: &str) -> Result<Self, InvalidPattern> {
        let not_method_path =
            |why: String| InvalidPattern(format!("{text:?} is not \"METHOD /path\": {why}"));
        let Some((method, path)) = text.split_once(' ') else {
            return Err(not_method_path(
                "write the method, one space, then the path".to_string(),
            ));
        };
        let method = method
            .parse::<Method>()
            .map_err(|why| not_method_path(format!("the method {why}")))?;
        let path = PathPattern::parse(path).map_err(|why| not_method_path(why.0))?;
        Ok(Operation { method, path })
    }

    /// Whether a call with this exact method and path is this operation.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.method.as_str() == method && self.path.matches(path)
    }

    pub(crate) fn compare_specificity(&self, other: &Operation) -> Ordering {
        self.path.compare_specificity(&other.path)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> PathPattern {
        PathPattern::parse(text).unwrap()
    }

    #[test]
    fn a_parameter_matches_exactly_one_non_empty_segment() {
        let contact = pattern("/v1/contacts/{id}");
        assert!(contact.matches("/v1/contacts/42"));
        assert!(contact.matches("/v1/contacts/jane%40acme.example"));
        assert!(!contact.matches("/v1/contacts/42/notes"), "extra segment");
        assert!(!contact.matches("/v1/contacts"), "missing segment");
        assert!(!contact.matches("/v1/contacts/"), "empty parameter");
        assert!(!contact.matches("/v1//42"), "empty literal segment");
    }

    #[test]
    fn literal_segments_compare_exactly() {
        let contacts = pattern("/v1/contacts");
        assert!(contacts.matches("/v1/contacts"));
        assert!(!contacts.matches("/v1/Contacts"));
        assert!(!contacts.matches("/v1/contact"));
        assert!(!contacts.matches("/v1/%63ontacts"), "encoded literal");
        assert!(!contacts.matches("/v2/contacts"));
        assert!(!contacts.matches("v1/contacts"), "relative path");
    }

    #[test]
    fn dot_segments_never_match_even_when_encoded() {
        let any_two = pattern("/files/{a}/{b}");
        assert!(any_two.matches("/files/x/y"));
        for path in [
            "/files/../admin",
            "/files/x/..",
            "/files/./y",
            "/files/%2e%2e/admin",
            "/files/%2E./admin",
            "/files/..;/admin",
            "/files/.%2e;x/admin",
        ] {
            assert!(!any_two.matches(path), "{path} must not match");
        }
        // Dots inside a segment are ordinary characters.
        assert!(any_two.matches("/files/report..pdf/v1.2"));
    }

    #[test]
    fn encoded_slashes_and_backslashes_never_match() {
        let file = pattern("/files/{id}");
        for path in [
            "/files/a%2Fb",
            "/files/a%2fb",
            "/files/a%5Cb",
            "/files/a\\b",
            "/files/a%00",
            "/files/a%0d%0aX",
            "/files/a%2",
            "/files/a%zz",
            "/files/a b",
            "/files/é",
            "/files/a#fragment",
        ] {
            assert!(!file.matches(path), "{path} must not match");
        }
        assert!(file.matches("/files/a%20b"));
    }

    #[test]
    fn the_query_string_is_not_part_of_the_match() {
        let messages = pattern("/gmail/v1/users/me/messages");
        assert!(messages.matches("/gmail/v1/users/me/messages?q=from:jane&maxResults=10"));
        assert!(messages.matches("/gmail/v1/users/me/messages?"));
        assert!(!messages.matches("/gmail/v1/users/me/messages/x?q=1"));
        // A query string cannot smuggle a path past the check.
        assert!(!pattern("/a/{id}").matches("/a/b/c?/a/b"));
    }

    #[test]
    fn a_trailing_slash_is_significant() {
        assert!(!pattern("/v1/contacts").matches("/v1/contacts/"));
        let with_slash = pattern("/3.0/");
        assert!(with_slash.matches("/3.0/"));
        assert!(!with_slash.matches("/3.0"));
        assert!(pattern("/").matches("/"));
        assert!(!pattern("/").matches("/x"));
    }

    #[test]
    fn text_around_a_parameter_must_be_present() {
        let order = pattern("/admin/api/{version}/orders/{order_id}.json");
        assert!(order.matches("/admin/api/2025-01/orders/450789469.json"));
        assert!(!order.matches("/admin/api/2025-01/orders/450789469"));
        assert!(
            !order.matches("/admin/api/2025-01/orders/.json"),
            "empty id"
        );
        let append = pattern("/v4/spreadsheets/{spreadsheetId}/values/{range}:append");
        assert!(append.matches("/v4/spreadsheets/abc/values/Sheet1!A1:C1:append"));
        assert!(!append.matches("/v4/spreadsheets/abc/values/Sheet1!A1:C1"));
        let base = pattern("/v0/app{baseId}/{table}");
        assert!(base.matches("/v0/appXYZ/tblABC"));
        assert!(!base.matches("/v0/meta/bases"));
        assert!(
            !base.matches("/v0/app/tblABC"),
            "empty parameter after prefix"
        );
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        for (text, why) in [
            ("v1/x", "does not start with /"),
            ("/v1//x", "empty segment"),
            ("/v1/../x", "\"..\" segment"),
            ("/v1/x?y=1", "query string"),
            ("/v1/{id", "without a matching"),
            ("/v1/id}", "without a matching"),
            ("/v1/{a}{b}", "two parameters"),
            ("/v1/{a}/{a}", "twice"),
            ("/v1/{}", "parameter {}"),
            ("/v1/{1x}", "parameter {1x}"),
            ("/v1/a%2Fb", "no % escapes"),
            ("/v1/a b", "no % escapes"),
        ] {
            let error = PathPattern::parse(text).unwrap_err().0;
            assert!(error.contains(why), "{text}: {error}");
        }
    }

    #[test]
    fn operations_parse_method_and_path() {
        let operation = Operation::parse("GET /v1/contacts/{id}").unwrap();
        assert_eq!(operation.method, Method::Get);
        assert_eq!(operation.path.params().collect::<Vec<_>>(), ["id"]);
        assert_eq!(operation.to_string(), "GET /v1/contacts/{id}");
        assert!(operation.matches("GET", "/v1/contacts/7"));
        assert!(!operation.matches("get", "/v1/contacts/7"));
        assert!(!operation.matches("HEAD", "/v1/contacts/7"));
        assert!(!operation.matches("POST", "/v1/contacts/7"));

        let error = Operation::parse("FETCH /x").unwrap_err().0;
        assert!(
            error.starts_with("\"FETCH /x\" is not \"METHOD /path\""),
            "{error}"
        );
        assert!(Operation::parse("GET  /x").is_err());
        assert!(Operation::parse("GET").is_err());
        assert!(Operation::parse("get /x").is_err());
    }

    #[test]
    fn literal_segments_are_more_specific_than_parameters() {
        let search = Operation::parse("GET /v1/customers/search").unwrap();
        let by_id = Operation::parse("GET /v1/customers/{id}").unwrap();
        let json = Operation::parse("GET /v1/customers/{id}.json").unwrap();
        assert_eq!(search.compare_specificity(&by_id), Ordering::Greater);
        assert_eq!(json.compare_specificity(&by_id), Ordering::Greater);
        assert_eq!(search.compare_specificity(&json), Ordering::Greater);
    }
}
