#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use super::*;

const STRICT: UrlPolicy = UrlPolicy::STRICT;
const PRIVATE_OK: UrlPolicy = UrlPolicy {
    allow_private: true,
};

fn refused(raw: &str) -> UrlError {
    match STRICT.parse(raw, false) {
        Ok(url) => panic!("{raw:?} was accepted as {url}"),
        Err(e) => e,
    }
}

#[test]
fn ipv4_spellings_are_normalised_then_refused() {
    // Every one of these is 127.0.0.1 (or another loopback / zero address) to a socket.
    for raw in [
        "http://127.0.0.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://0x7f.0.0.1/",
        "http://0177.0.0.1/",
        "http://0177.1/",
        "http://017700000001/",
        "http://127.1/",
        "http://127.0.1/",
        "http://127.000.000.001/",
        "http://%31%32%37.0.0.1/",
        "http://0/",
        "http://0.0.0.0:8080/",
        "https://[::1]/",
        "https://[::ffff:127.0.0.1]/",
        "https://[::ffff:7f00:1]/",
        "https://[0:0:0:0:0:ffff:7f00:1]/",
        "https://[64:ff9b::7f00:1]/",
        "https://[2002:7f00:1::]/",
        "https://[::127.0.0.1]/",
    ] {
        let url = SafeUrl::parse(raw).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        let ip = url
            .ip()
            .unwrap_or_else(|| panic!("{raw:?} not seen as an IP literal"));
        assert!(is_forbidden(ip), "{raw:?} -> {ip} should be forbidden");
        assert!(
            matches!(refused(raw), UrlError::ForbiddenAddress { .. }),
            "{raw:?}"
        );
    }
}

#[test]
fn normalisation_is_visible_in_the_url() {
    for (raw, host) in [
        ("http://2130706433/x", "127.0.0.1"),
        ("http://0x7f.1/", "127.0.0.1"),
        ("http://0177.0.0.1/", "127.0.0.1"),
        ("http://127.1/", "127.0.0.1"),
        ("http://0xa.0xa.0xa.0xa/", "10.10.10.10"),
        ("http://3232235777/", "192.168.1.1"),
        ("http://[0:0::1]/", "[::1]"),
        ("HTTP://EXAMPLE.com./", "example.com."),
    ] {
        assert_eq!(SafeUrl::parse(raw).unwrap().host_str(), host, "{raw}");
    }
}

#[test]
fn private_ranges_refused_in_every_family() {
    for raw in [
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://192.0.2.1/",
        "http://198.18.0.1/",
        "http://[fe80::1]/",
        "http://[fd00::1]/",
        "http://[fec0::1]/",
        "http://[ff02::1]/",
        "http://[2001:db8::1]/",
        "http://[::]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
    ] {
        assert!(
            matches!(refused(raw), UrlError::ForbiddenAddress { .. }),
            "{raw}"
        );
    }
}

#[test]
fn public_urls_pass() {
    for raw in [
        "https://hub.example.com",
        "https://hub.example.com/.well-known/ai-market.json",
        "http://8.8.8.8:8080/x?y=1",
        "https://[2606:4700:4700::1111]/",
        "https://bücher.example/",
    ] {
        STRICT
            .parse(raw, false)
            .unwrap_or_else(|e| panic!("{raw}: {e}"));
    }
}

#[test]
fn local_names_refused() {
    for raw in [
        "http://localhost/",
        "http://LOCALHOST:8080/",
        "http://localhost./",
        "http://api.localhost/",
        "http://intranet/",
        "http://db:5432/",
    ] {
        assert!(matches!(refused(raw), UrlError::LocalName { .. }), "{raw}");
    }
}

#[test]
fn syntax_rules() {
    assert!(matches!(
        refused("http://exa\tmple.com/"),
        UrlError::ControlCharacter { code: 9, .. }
    ));
    assert!(matches!(
        refused("http://example.com/\n.well-known"),
        UrlError::ControlCharacter { code: 10, .. }
    ));
    assert!(matches!(
        refused("http://example.com/\u{7f}"),
        UrlError::ControlCharacter { .. }
    ));
    assert!(matches!(
        refused("http://example.com/\u{85}"),
        UrlError::ControlCharacter { .. }
    ));
    assert!(matches!(
        refused("http://example.com/\0"),
        UrlError::ControlCharacter { code: 0, .. }
    ));
    assert!(matches!(
        refused(" http://example.com/"),
        UrlError::Whitespace { position: 0 }
    ));
    assert!(matches!(
        refused("http://example.com/a b"),
        UrlError::Whitespace { .. }
    ));
    assert!(matches!(
        refused("http://example.com/\u{3000}"),
        UrlError::Whitespace { .. }
    ));
    assert!(matches!(refused("ftp://example.com/"), UrlError::Scheme(s) if s == "ftp"));
    assert!(matches!(refused("file:///etc/passwd"), UrlError::Scheme(_)));
    assert!(matches!(
        refused("gopher://example.com/"),
        UrlError::Scheme(_)
    ));
    assert!(matches!(
        refused("javascript:alert(1)"),
        UrlError::Scheme(_)
    ));
    assert!(matches!(
        refused("http://user:pw@example.com/"),
        UrlError::Credentials
    ));
    assert!(matches!(
        refused("http://user@example.com/"),
        UrlError::Credentials
    ));
    assert!(matches!(
        refused("http://:pw@example.com/"),
        UrlError::Credentials
    ));
    // WHATWG skips the extra slashes: this is host "path", a single-label local name.
    assert!(matches!(refused("http:///path"), UrlError::LocalName { host } if host == "path"));
    assert!(matches!(refused("http://"), UrlError::Parse(_)));
    assert!(matches!(refused("/relative"), UrlError::Parse(_)));
    assert!(matches!(refused(""), UrlError::Parse(_)));
    // A zone id is not part of a URL host; the parser refuses it.
    assert!(matches!(
        refused("http://[fe80::1%25eth0]/"),
        UrlError::Parse(_)
    ));
    assert!(matches!(
        refused("http://[fe80::1%eth0]/"),
        UrlError::Parse(_)
    ));
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(matches!(refused(&long), UrlError::TooLong { .. }));
}

#[test]
fn fragment_dropped_and_origin_normalised() {
    let url = SafeUrl::parse("https://Hub.Example.com:443/a/b?c#frag").unwrap();
    assert_eq!(url.as_str(), "https://hub.example.com/a/b?c");
    assert_eq!(url.origin(), "https://hub.example.com");
    assert_eq!(url.authority(), "hub.example.com:443");
    assert!(!url.is_bare_origin());
    let url = SafeUrl::parse("http://127.0.0.1:8080").unwrap();
    assert_eq!(url.origin(), "http://127.0.0.1:8080");
    assert!(url.is_bare_origin());
    assert_eq!(url.origin_url().as_str(), "http://127.0.0.1:8080/");
}

#[test]
fn allow_private_lifts_only_the_range_rule() {
    for raw in [
        "http://127.0.0.1:9/",
        "http://localhost/",
        "http://[::1]/",
        "http://hub2/",
    ] {
        PRIVATE_OK.parse(raw, false).unwrap();
        STRICT.parse(raw, true).unwrap();
    }
    for raw in [
        "http://127.0.0.1/\t",
        "ftp://127.0.0.1/",
        "http://u:p@127.0.0.1/",
    ] {
        assert!(PRIVATE_OK.parse(raw, false).is_err(), "{raw}");
        assert!(STRICT.parse(raw, true).is_err(), "{raw}");
    }
}

#[test]
fn join_rechecks_the_target() {
    let base = SafeUrl::parse("https://hub.example.com/a/b").unwrap();
    assert_eq!(
        base.join("../c").unwrap().as_str(),
        "https://hub.example.com/c"
    );
    let target = base.join("http://2130706433/").unwrap();
    assert!(STRICT.check(&target, false).is_err());
    assert!(matches!(
        base.join("/x\r\nHost: evil"),
        Err(UrlError::ControlCharacter { .. })
    ));
    assert!(matches!(
        base.join("ftp://x.example/"),
        Err(UrlError::Scheme(_))
    ));
}

#[test]
fn check_resolved_names_the_address() {
    let addr: IpAddr = "10.1.2.3".parse().unwrap();
    let err = STRICT
        .check_resolved("evil.example", addr, false)
        .unwrap_err();
    assert!(err.to_string().contains("10.1.2.3"), "{err}");
    assert!(STRICT.check_resolved("evil.example", addr, true).is_ok());
    assert!(
        PRIVATE_OK
            .check_resolved("evil.example", addr, false)
            .is_ok()
    );
}

#[tokio::test]
async fn resolver_refuses_forbidden_literals_and_hosts_file_names() {
    let resolver = PinnedResolver::new(STRICT, false).unwrap();
    assert!(matches!(
        resolver.resolve_checked("127.0.0.1").await,
        Err(resolver::ResolveError::Refused(_))
    ));
    assert!(matches!(
        resolver.resolve_checked("[::1]").await,
        Err(resolver::ResolveError::Refused(_))
    ));
    // `localhost` comes from the hosts file, so this needs no network.
    assert!(matches!(
        resolver.resolve_checked("localhost").await,
        Err(resolver::ResolveError::Refused(_))
    ));
    let exempt = PinnedResolver::new(STRICT, true).unwrap();
    let addrs = exempt.resolve_checked("localhost").await.unwrap();
    assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
}
