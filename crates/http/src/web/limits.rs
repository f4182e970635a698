//! Who is signing in, for the sign-in limits (`service::sign_in_limits`): the
//! client's address. Behind a load balancer the TCP peer is the balancer, so
//! its forwarding header is read — but only when the peer is one of the
//! configured `trusted_proxies`, since anyone else can write any header. The
//! client is then the rightmost address in the header that is not a trusted
//! proxy: each proxy appends the address it saw, so everything left of that is
//! the client's own say and can be forged.

use crate::ForwardedHeader;
use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The client's address: the TCP `peer`, or — when the peer is a trusted proxy —
/// the rightmost untrusted hop of `header`. A hop that cannot be read (e.g.
/// `unknown`, or bytes that are not text) ends the walk at the proxy that wrote
/// it; a hop left of it never matters.
pub fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted_proxies: &[IpNet],
    header: ForwardedHeader,
) -> IpAddr {
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    let mut client = peer.to_canonical();
    if !trusted(&client) {
        return client;
    }
    for hop in forwarded_hops(headers, header).into_iter().rev() {
        match hop {
            Some(address) => {
                client = address.to_canonical();
                if !trusted(&client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The addresses a forwarding header lists, leftmost (the client's claim)
/// first, over every line of the header; `None` for a hop that is not an address.
fn forwarded_hops(headers: &HeaderMap, header: ForwardedHeader) -> Vec<Option<IpAddr>> {
    let name = match header {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
    };
    let mut hops = Vec::new();
    for line in headers.get_all(name) {
        // Each element is read on its own: a proxy appends to the client's own
        // line (nginx's `$proxy_add_x_forwarded_for`), so a junk byte the client
        // put in its part must not make the proxy's part unreadable too.
        for element in line.as_bytes().split(|byte| *byte == b',') {
            let Ok(element) = std::str::from_utf8(element) else {
                hops.push(None);
                continue;
            };
            let hop = match header {
                ForwardedHeader::XForwardedFor => parse_node(element),
                // `for=…` among the `;`-separated pairs of an element (RFC 7239 §4).
                ForwardedHeader::Forwarded => element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_node(value)),
            };
            hops.push(hop);
        }
    }
    hops
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`,
/// `[2001:db8::1]:4711`, optionally in double quotes (RFC 7239 §6).
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(address) = value.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = value.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    value
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|inner| inner.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let proxies = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let forged_then_real = headers("x-forwarded-for", &["1.1.1.1, 203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client_address(
                peer,
                &forged_then_real,
                &proxies,
                ForwardedHeader::XForwardedFor
            ),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        let rfc = headers(
            "forwarded",
            &["for=1.1.1.1, For=\"[2001:db8::7]:4711\";proto=https, for=10.0.0.7"],
        );
        assert_eq!(
            client_address(peer, &rfc, &proxies, ForwardedHeader::Forwarded),
            "2001:db8::7".parse::<IpAddr>().unwrap()
        );
        // The other header is the client's own: ignored.
        assert_eq!(
            client_address(peer, &rfc, &proxies, ForwardedHeader::XForwardedFor),
            peer
        );
        let unknown = headers("forwarded", &["for=unknown"]);
        assert_eq!(
            client_address(peer, &unknown, &proxies, ForwardedHeader::Forwarded),
            peer
        );
    }

    #[test]
    fn a_junk_byte_in_the_clients_part_of_a_line_does_not_hide_the_hop_the_proxy_appended() {
        let proxies = nets(&["10.0.0.0/8"]);
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        for (name, line, kind) in [
            (
                "x-forwarded-for",
                &b"\x80, 203.0.113.9"[..],
                ForwardedHeader::XForwardedFor,
            ),
            (
                "x-forwarded-for",
                &b"1.1.1.1\xff\xfe, 203.0.113.9, 10.0.0.7"[..],
                ForwardedHeader::XForwardedFor,
            ),
            (
                "forwarded",
                &b"for=\x80, for=203.0.113.9"[..],
                ForwardedHeader::Forwarded,
            ),
        ] {
            let mut map = HeaderMap::new();
            map.append(
                axum::http::HeaderName::from_static(name),
                axum::http::HeaderValue::from_bytes(line).unwrap(),
            );
            assert_eq!(
                client_address(peer, &map, &proxies, kind),
                client,
                "{line:?}"
            );
        }
        // An unreadable element right of the client still ends the walk there.
        let mut map = HeaderMap::new();
        map.append(
            "x-forwarded-for",
            axum::http::HeaderValue::from_bytes(b"203.0.113.9, \x80").unwrap(),
        );
        assert_eq!(
            client_address(peer, &map, &proxies, ForwardedHeader::XForwardedFor),
            peer
        );
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_says() {
        let peer: IpAddr = "198.51.100.1".parse().unwrap();
        let claim = headers("x-forwarded-for", &["203.0.113.9"]);
        assert_eq!(
            client_address(
                peer,
                &claim,
                &nets(&["10.0.0.0/8"]),
                ForwardedHeader::XForwardedFor
            ),
            peer
        );
        assert_eq!(
            client_address(peer, &claim, &[], ForwardedHeader::XForwardedFor),
            peer
        );
    }
}
