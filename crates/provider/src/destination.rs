//! Where a credential may go: the private-address refusal and the HTTP client
//! that enforces it.
//!
//! The refusal is enforced where the connection is made: the HTTP client's
//! resolver ([`CheckedResolver`]) resolves a host once, checks every address,
//! and hands the client only those it checked, so a name that answers a public
//! address to the check and a private one to the connect (DNS rebinding) gets
//! nowhere. [`check_destination`] runs first for a clear error message. The
//! client ([`client`]) follows no redirect: a credential must never follow one
//! to another host.

use credence_catalog::App;
use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// Whether an address is one a credential must never be sent to without the
/// operator's say-so: loopback, private, shared (CGNAT), link-local, "this
/// network" (0.0.0.0/8), benchmarking (198.18.0.0/15), reserved (240.0.0.0/4),
/// broadcast, multicast, unique-local; and IPv6 addresses that carry an IPv4
/// one (mapped, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) whose IPv4 is.
pub fn is_private(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => {
            let [first, second, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || first == 0
                || first == 100 && (second & 0xc0) == 64
                || first == 198 && (second & 0xfe) == 18
                || first >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let embedded = |high: u16, low: u16| {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (high >> 8) as u8,
                    high as u8,
                    (low >> 8) as u8,
                    low as u8,
                ))
            };
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (segments[0] & 0xfe00) == 0xfc00
                || (segments[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
                // NAT64 (64:ff9b::/96): the last 32 bits are the IPv4 reached.
                || segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
                    && is_private(embedded(segments[6], segments[7]))
                // 6to4 (2002::/16): bits 16..48 are the IPv4 of the relay's far end.
                || segments[0] == 0x2002 && is_private(embedded(segments[1], segments[2]))
        }
    }
}

/// The hosts that may resolve to private addresses: those the operator's apps
/// with `allow_private_hosts` name (base URLs and OAuth endpoints), and the
/// subdomains of their per-account `host_suffix`.
#[derive(Debug, Default, Clone)]
pub struct PrivateHosts {
    hosts: BTreeSet<String>,
    suffixes: BTreeSet<String>,
    /// Every host may be private (webhooks, when the operator allows it).
    any: bool,
}

impl PrivateHosts {
    pub fn of(catalog: &credence_catalog::Catalog) -> PrivateHosts {
        let mut allowed = PrivateHosts::default();
        let host_of = |url: &str| {
            reqwest::Url::parse(url)
                .ok()
                .and_then(|url| url.host_str().map(|host| host.to_ascii_lowercase()))
        };
        for app in catalog.apps().filter(|app| app.allow_private_hosts) {
            for version in &app.versions {
                match &version.account_host {
                    Some(account) => {
                        allowed
                            .suffixes
                            .insert(account.host_suffix.to_ascii_lowercase());
                    }
                    None => allowed.hosts.extend(host_of(&version.base_url)),
                }
                if let Some(oauth2) = version.auth.oauth2() {
                    let endpoints = [Some(&oauth2.token_url), oauth2.revocation_url.as_ref()];
                    for url in endpoints.into_iter().flatten() {
                        allowed.hosts.extend(host_of(url));
                    }
                }
            }
        }
        allowed
    }

    /// Every host may resolve to a private address (the operator's
    /// `webhooks_allow_private_hosts`).
    pub fn any() -> PrivateHosts {
        PrivateHosts {
            any: true,
            ..PrivateHosts::default()
        }
    }

    /// Whether `host` (a name, as the HTTP client resolves it) may be private.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.any
            || self.hosts.contains(&host)
            || self
                .suffixes
                .iter()
                .any(|suffix| host == *suffix || host.ends_with(&format!(".{suffix}")))
    }
}

/// How names become addresses: the system's resolver, or (tests) another.
pub type Lookup = Arc<
    dyn Fn(String) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

/// The system's resolver (`getaddrinfo`), port 0: the client puts in the URL's.
pub fn system_lookup() -> Lookup {
    Arc::new(|name: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((name, 0)).await?.collect()) })
    })
}

/// The resolver's refusal of a host that resolves to a private address.
#[derive(Debug)]
pub struct PrivateAddress(pub String);

impl std::fmt::Display for PrivateAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} resolves to a private address; credentials are not sent there",
            self.0
        )
    }
}

impl std::error::Error for PrivateAddress {}

/// The resolver's refusal inside an HTTP client error, if that is its cause.
pub fn private_address_in(error: &reqwest::Error) -> Option<&PrivateAddress> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(refusal) = cause.downcast_ref::<PrivateAddress>() {
            return Some(refusal);
        }
        source = cause.source();
    }
    None
}

/// The HTTP client's resolver: resolves once, refuses the whole answer when
/// any address is private (unless [`PrivateHosts`] allows the name), and gives
/// the client exactly the addresses it checked to connect to. The URL's host
/// stays the request's `Host` and TLS name. (An IP literal is never resolved;
/// [`check_destination`] checks it.)
pub struct CheckedResolver {
    pub lookup: Lookup,
    pub private_hosts: Arc<PrivateHosts>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let allowed = self.private_hosts.allows(&host);
        let lookup = (self.lookup)(host.clone());
        Box::pin(async move {
            let addresses = lookup.await?;
            if !allowed && addresses.iter().any(|address| is_private(address.ip())) {
                return Err(
                    Box::new(PrivateAddress(host)) as Box<dyn std::error::Error + Send + Sync>
                );
            }
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Checks that `url` may receive a credential of `app`: https, and a host that
/// resolves only to public addresses, unless the operator's app allows private
/// hosts (self-hosted software).
pub async fn check_destination(app: &App, url: &reqwest::Url) -> Result<(), String> {
    if app.allow_private_hosts {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err(format!(
            "{} must be reached over https",
            url.host_str().unwrap_or("the app")
        ));
    }
    let host = url.host_str().ok_or("the app's URL has no host")?;
    let port = url.port_or_known_default().unwrap_or(443);
    let addresses = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| format!("cannot resolve {host}"))?;
    for address in addresses {
        if is_private(address.ip()) {
            return Err(format!(
                "{host} resolves to a private address; credentials are not sent there"
            ));
        }
    }
    Ok(())
}

/// The checks of [`check_destination`] that need no lookup: https, and no
/// private IP literal (the client's resolver never sees a literal), unless
/// the operator's app allows private hosts. A name is checked by
/// [`CheckedResolver`] on the addresses the client connects to, so a proxied
/// call costs no extra lookup.
pub fn check_literal(app: &App, url: &reqwest::Url) -> Result<(), String> {
    if app.allow_private_hosts {
        return Ok(());
    }
    let host = url.host_str().unwrap_or("the app");
    if url.scheme() != "https" {
        return Err(format!("{host} must be reached over https"));
    }
    // An IPv6 literal comes bracketed.
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    if literal.is_ok_and(is_private) {
        return Err(format!(
            "{host} is a private address; credentials are not sent there"
        ));
    }
    Ok(())
}

/// The client for calls to apps: no redirects (a credential must never follow
/// one to another host), bounded time, and a resolver that connects only to
/// the addresses it checked (private ones only for the operator's apps with
/// `allow_private_hosts`).
pub fn client(catalog: &credence_catalog::Catalog) -> reqwest::Result<reqwest::Client> {
    client_with(system_lookup(), catalog)
}

/// [`client`] with another way to resolve names (tests: a rebinding one).
pub fn client_with(
    lookup: Lookup,
    catalog: &credence_catalog::Catalog,
) -> reqwest::Result<reqwest::Client> {
    checked_builder(lookup, PrivateHosts::of(catalog))
        .timeout(std::time::Duration::from_secs(30))
        .build()
}

/// The client that delivers webhooks: the same checks as [`client`] (no
/// redirect, no proxy, the resolver refusing private addresses unless
/// `allow_private_hosts`), with `timeout` for a whole delivery.
pub fn webhook_client(
    allow_private_hosts: bool,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    let private_hosts = if allow_private_hosts {
        PrivateHosts::any()
    } else {
        PrivateHosts::default()
    };
    checked_builder(system_lookup(), private_hosts)
        .timeout(timeout)
        .build()
}

/// Checks a webhook URL before it is stored and before each delivery: https
/// (plain http only when the operator allows private hosts, for a receiver on
/// their own network), a host, no user name or password in it, and unless
/// allowed no private IP literal; with `resolve`, a name must resolve, and
/// only to public addresses (the client's resolver checks again at every
/// connection).
pub async fn check_webhook_url(
    url: &reqwest::Url,
    allow_private_hosts: bool,
    resolve: bool,
) -> Result<(), String> {
    let allowed_schemes: &[&str] = if allow_private_hosts {
        &["https", "http"]
    } else {
        &["https"]
    };
    if !allowed_schemes.contains(&url.scheme()) {
        return Err(format!(
            "url must start with https:// (it starts with {}://); plain http is accepted only when the operator sets webhooks_allow_private_hosts",
            url.scheme()
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| "url names no host".to_string())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry a user name or password".into());
    }
    if allow_private_hosts {
        return Ok(());
    }
    let refusal = || {
        format!("{host} is a private, loopback or link-local address; webhooks are not sent there unless the operator sets webhooks_allow_private_hosts")
    };
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>();
    match literal {
        Ok(address) if is_private(address) => return Err(refusal()),
        Ok(_) => return Ok(()),
        Err(_) => {}
    }
    if resolve {
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| format!("cannot resolve {host}; check the url"))?;
        for address in addresses {
            if is_private(address.ip()) {
                return Err(refusal());
            }
        }
    }
    Ok(())
}

/// A client builder with [`CheckedResolver`] over `lookup`, no redirects, no
/// proxy and a bounded connect time.
fn checked_builder(lookup: Lookup, private_hosts: PrivateHosts) -> reqwest::ClientBuilder {
    let resolver = CheckedResolver {
        lookup,
        private_hosts: Arc::new(private_hosts),
    };
    reqwest::Client::builder()
        .dns_resolver(Arc::new(resolver))
        // A proxy (HTTPS_PROXY in the environment) would resolve the app's host
        // itself, out of the resolver's reach: calls go direct.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        // Servers close idle kept-alive connections after a while (Node.js, a
        // common stack for apps, after 5 s); a request sent on one at that
        // moment is reset after it left, and cannot be retried safely. Drop
        // idle connections before the shortest usual server timeout.
        .pool_idle_timeout(std::time::Duration::from_secs(4))
        .user_agent(concat!("Credence/", env!("CARGO_PKG_VERSION")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private(text: &str) -> bool {
        is_private(text.parse().unwrap())
    }

    #[test]
    fn every_range_that_reaches_inside_is_private() {
        for address in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            // 0.0.0.0/8, "this network": Linux connects 0.x.y.z to the host itself.
            "0.1.2.3",
            // 198.18.0.0/15, benchmarking.
            "198.18.0.1",
            "198.19.255.254",
            // 240.0.0.0/4, reserved, and the broadcast address.
            "240.0.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            // 64:ff9b::/96, NAT64 to 127.0.0.1 and to 10.0.0.1.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            // 2002::/16, 6to4 relaying to 127.0.0.1 and to 192.168.0.1.
            "2002:7f00:1::",
            "2002:c0a8:1::1",
        ] {
            assert!(private(address), "{address} should be private");
        }
    }

    #[test]
    fn public_addresses_are_not_private() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "198.17.255.255",
            "198.20.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!private(address), "{address} should be public");
        }
    }

    #[test]
    fn private_hosts_are_the_names_and_suffixes_of_operator_apps_that_allow_them() {
        let allowed = PrivateHosts {
            hosts: ["localhost".to_string()].into(),
            suffixes: ["corp.example".to_string()].into(),
            any: false,
        };
        assert!(allowed.allows("localhost"));
        assert!(allowed.allows("LOCALHOST."));
        assert!(allowed.allows("crm.corp.example"));
        assert!(!allowed.allows("evilcorp.example"));
        assert!(!allowed.allows("api.example.com"));
    }

    #[tokio::test]
    async fn a_webhook_url_must_be_https_public_and_without_credentials() {
        let check = |url: &str, allow: bool| {
            let url = reqwest::Url::parse(url).unwrap();
            async move { check_webhook_url(&url, allow, true).await }
        };
        for refused in [
            "http://hooks.example.com/in",
            "https://127.0.0.1/in",
            "https://10.0.0.8/in",
            "https://169.254.169.254/latest",
            "https://[::1]/in",
            "https://localhost/in",
            "https://user:pw@hooks.example.com/in",
            "ftp://hooks.example.com/in",
        ] {
            assert!(check(refused, false).await.is_err(), "{refused} accepted");
        }
        assert!(check("https://93.184.215.14/in", false).await.is_ok());
        assert!(check("http://127.0.0.1:9/in", true).await.is_ok());
        assert!(check("https://localhost/in", true).await.is_ok());
        assert!(check("ftp://127.0.0.1/in", true).await.is_err());
        assert!(check("http://user@127.0.0.1/in", true).await.is_err());
    }
}
