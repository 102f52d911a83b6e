//! Who is on the other end of a request: the client address (honouring forwarding headers
//! only from trusted proxies) and the `X-API-Key` it presented. Verification of the key
//! happens in `crate::limits`; this is only the parsing at the edge.
//!
//! With no `trusted_proxies` (the default) the address is the TCP peer and `X-Forwarded-For`
//! / `X-Real-IP` / `Forwarded` are ignored, so a client cannot rotate them to dodge a limit.
//! When the peer is a trusted proxy, the hub reads the chain of addresses from `Forwarded`
//! (RFC 7239 `for=`) or, when that is absent, `X-Forwarded-For`, and takes the rightmost
//! address that is not itself a trusted proxy: everything to its left was written by
//! parties nobody vouches for. An entry that is not an IP address (`unknown`, an obfuscated
//! identifier, garbage) ends the walk at the proxy that wrote it.

use std::net::{IpAddr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderMap;

use crate::limits::Caller;
use crate::settings::TrustedProxies;

/// Most forwarding hops read: a longer chain is cut, keeping the hops nearest to the hub.
pub const MAX_HOPS: usize = 32;

/// The caller of `req`: its address and its `X-API-Key`, if any.
pub fn caller(req: &HttpRequest, trusted: &TrustedProxies) -> Caller {
    Caller {
        address: req
            .peer_addr()
            .map(|peer| client_address(peer.ip(), req.headers(), trusted)),
        api_key: req
            .headers()
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned),
    }
}

/// The client address of a request from `peer` (see the module docs).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let chain = forwarded_chain(headers);
    let mut client = peer;
    // Right to left: the nearest hop first.
    for hop in chain.iter().rev().take(MAX_HOPS) {
        let Some(addr) = hop else {
            return client;
        };
        if !trusted.contains(*addr) {
            return *addr;
        }
        client = *addr;
    }
    client
}

/// The `for` addresses of every `Forwarded` element, in order; else every
/// `X-Forwarded-For` entry. `None` marks an entry that is not an address. The whole list is
/// kept (its size is bounded by the server's header limit): cutting it from the left would
/// drop the entries the trusted proxies wrote and keep the ones a client made up.
fn forwarded_chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<Option<IpAddr>> = headers
        .get_all("forwarded")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|element| {
            element
                .split(';')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                .and_then(|(_, value)| parse_node(value))
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(parse_node)
        .collect()
}

/// One node: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`, optionally quoted.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"').trim();
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Some(addr);
    }
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    // `[v6]` without a port.
    value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_headers_are_ignored() {
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-real-ip", "2.2.2.2"),
            ("forwarded", "for=3.3.3.3"),
        ]);
        let none = TrustedProxies::default();
        assert_eq!(client_address(ip("9.9.9.9"), &h, &none), ip("9.9.9.9"));
        let other: TrustedProxies = "10.0.0.1".parse().unwrap();
        assert_eq!(client_address(ip("9.9.9.9"), &h, &other), ip("9.9.9.9"));
    }

    #[test]
    fn rightmost_untrusted_address_wins() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 5.5.5.5, 10.0.0.2")]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("5.5.5.5"));
        // Two header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "5.5.5.5:4711"),
        ]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("5.5.5.5"));
        // Only proxies: the leftmost one is the best we know.
        let h = headers(&[("x-forwarded-for", "10.0.0.9, 10.0.0.3")]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.9"));
        // Garbage stops the walk at the proxy that wrote it.
        let h = headers(&[("x-forwarded-for", "7.7.7.7, unknown, 10.0.0.3")]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("10.0.0.3"));
        // No header: the proxy itself.
        assert_eq!(
            client_address(ip("10.0.0.1"), &HeaderMap::new(), &trusted),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn forwarded_header_wins_over_x_forwarded_for() {
        let trusted: TrustedProxies = "127.0.0.1".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            (
                "forwarded",
                r#"for=192.0.2.43;proto=http, For="[2001:db8:cafe::17]:4711";by=127.0.0.1"#,
            ),
        ]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("2001:db8:cafe::17")
        );
        let h = headers(&[("forwarded", "for=_hidden, for=198.51.100.17")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("198.51.100.17")
        );
        let h = headers(&[("forwarded", "for=198.51.100.17, for=_hidden")]);
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn a_client_cannot_push_the_real_hops_out() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let fake = vec!["6.6.6.6"; 500].join(",");
        let h = headers(&[("x-forwarded-for", &format!("{fake},5.5.5.5"))]);
        assert_eq!(client_address(ip("10.0.0.1"), &h, &trusted), ip("5.5.5.5"));
    }

    #[test]
    fn long_chains_are_cut() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let chain = vec!["10.0.0.5"; 1000].join(",");
        let h = headers(&[("x-forwarded-for", &format!("8.8.8.8,{chain}"))]);
        // The real client is beyond the bound: the walk stops at a proxy.
        assert!(trusted.contains(client_address(ip("10.0.0.1"), &h, &trusted)));
    }
}
