//! The small, strict URL reading the catalog needs: base URLs and OAuth endpoints
//! are checked at load so that the broker never has to wonder where a credential
//! goes. Only canonical forms are accepted (lowercase host, no user info, no
//! fragment), which keeps the checks here and the broker's URL parser in
//! agreement about what the host is.

/// What a URL may be, beyond being well formed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlRules {
    /// `http`, IP literals, `localhost` and single-label hosts are allowed; only
    /// an operator's file may ask for this (`allow_private_hosts = true`).
    pub(crate) allow_private_hosts: bool,
    pub(crate) allow_query: bool,
    /// A base URL: its path is a prefix that operations are appended to, so it
    /// must not end with `/`.
    pub(crate) is_base: bool,
}

/// Checks an absolute URL against `rules`; the error says what to change.
pub(crate) fn check_url(text: &str, rules: UrlRules) -> Result<(), String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!(
            "{text:?} is not an absolute URL (https://host/path)"
        ));
    };
    match scheme {
        "https" => {}
        "http" if rules.allow_private_hosts => {}
        "http" => {
            return Err(format!(
                "{text:?} uses http; credentials travel only over https (an operator's own app may set allow_private_hosts = true to use http on a private network)"
            ))
        }
        _ => return Err(format!("{text:?} must start with https://")),
    }
    if text.bytes().any(|byte| !(0x21..=0x7e).contains(&byte)) {
        return Err(format!(
            "{text:?} contains spaces, control or non-ASCII characters"
        ));
    }
    if text.contains('#') {
        return Err(format!("{text:?} has a #fragment"));
    }
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(authority_end);
    let (path, query) = match after.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (after, None),
    };
    if authority.contains('@') {
        return Err(format!(
            "{text:?} has user info (user@host); put credentials in auth, not in the URL"
        ));
    }
    let (host, port) =
        split_port(authority).ok_or_else(|| format!("{text:?} has a malformed port"))?;
    if port.is_some_and(|port| port == 0) {
        return Err(format!("{text:?} has port 0"));
    }
    check_host(host, rules.allow_private_hosts).map_err(|why| format!("{text:?}: {why}"))?;
    if query.is_some() && !rules.allow_query {
        return Err(format!(
            "{text:?} has a query string, which is not allowed here"
        ));
    }
    if rules.is_base && path.ends_with('/') {
        return Err(format!(
            "{text:?} ends with /; operation paths start with /, so write the base URL without it"
        ));
    }
    if path.contains("/./")
        || path.contains("/../")
        || path.ends_with("/.")
        || path.ends_with("/..")
    {
        return Err(format!("{text:?} has a . or .. segment"));
    }
    Ok(())
}

/// Splits `host:port`, keeping a bracketed IPv6 literal whole. `None` when the
/// port is not a number in 1..=65535.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']')?;
        let (host, rest) = authority.split_at(close + 1);
        match rest.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if rest.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    match port {
        None => Some((host, None)),
        Some(port) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            Some((host, Some(port.parse().ok()?)))
        }
        Some(_) => None,
    }
}

/// A host must be a lowercase DNS name. Unless private hosts are allowed it must
/// also have a dot and not be an IP literal, `localhost` or a `.local`,
/// `.localhost` or `.internal` name: those point inside the operator's network.
pub(crate) fn check_host(host: &str, allow_private_hosts: bool) -> Result<(), String> {
    if host.starts_with('[') {
        return if allow_private_hosts {
            Ok(())
        } else {
            Err(format!(
                "the host {host} is an IP address; use the provider's DNS name"
            ))
        };
    }
    check_dns_name(host)?;
    if allow_private_hosts {
        return Ok(());
    }
    let is_ip = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if is_ip {
        return Err(format!(
            "the host {host} is an IP address; use the provider's DNS name"
        ));
    }
    if !host.contains('.') {
        return Err(format!(
            "the host {host:?} has no dot; private and single-label hosts need allow_private_hosts = true in an operator's file"
        ));
    }
    let private_suffixes = [".localhost", ".local", ".internal"];
    if host == "localhost" || private_suffixes.iter().any(|suffix| host.ends_with(suffix)) {
        return Err(format!(
            "the host {host} is a private name; it needs allow_private_hosts = true in an operator's file"
        ));
    }
    Ok(())
}

/// Lowercase labels of letters, digits and `-`, joined by dots; each label 1..=63
/// characters, not starting or ending with `-`; 253 characters at most.
pub(crate) fn check_dns_name(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    if host.len() > 253 {
        return Err(format!(
            "the host is {} characters; the limit is 253",
            host.len()
        ));
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(format!(
                "{host:?} is not a host name (lowercase letters, digits and -, in dot-separated labels)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PUBLIC_BASE: UrlRules = UrlRules {
        allow_private_hosts: false,
        allow_query: false,
        is_base: true,
    };
    const PRIVATE_BASE: UrlRules = UrlRules {
        allow_private_hosts: true,
        allow_query: false,
        is_base: true,
    };

    #[test]
    fn public_base_urls_must_be_https_dns_names() {
        assert_eq!(
            check_url("https://api.acme.example/v2", PUBLIC_BASE),
            Ok(())
        );
        assert_eq!(
            check_url("https://api.acme.example:8443", PUBLIC_BASE),
            Ok(())
        );
        for (url, why) in [
            ("http://api.acme.example", "uses http"),
            ("ftp://api.acme.example", "must start with https://"),
            ("api.acme.example", "absolute URL"),
            ("https://user:pw@api.acme.example", "user info"),
            ("https://api.acme.example/", "ends with /"),
            ("https://api.acme.example?x=1", "query string"),
            ("https://api.acme.example#x", "fragment"),
            ("https://API.acme.example", "not a host name"),
            ("https://127.0.0.1", "IP address"),
            ("https://[::1]", "IP address"),
            ("https://localhost", "no dot"),
            ("https://crm.internal", "private name"),
            ("https://api.acme.example:0", "port 0"),
            ("https://api.acme.example:x", "malformed port"),
            ("https://api.acme.example/a/../b", ". or .."),
        ] {
            let error = check_url(url, PUBLIC_BASE).unwrap_err();
            assert!(error.contains(why), "{url}: {error}");
        }
    }

    #[test]
    fn private_hosts_and_http_need_the_operator_flag() {
        for url in [
            "http://localhost:8080",
            "http://10.0.0.5/api",
            "http://[::1]:9000",
            "https://crm.internal",
        ] {
            assert!(check_url(url, PRIVATE_BASE).is_ok(), "{url}");
            assert!(check_url(url, PUBLIC_BASE).is_err(), "{url}");
        }
    }
}
