//! Address-range rule of spec §7.4 (rule 1): which IP addresses a hub must never dial on a
//! stranger's behalf.
//!
//! IPv4 is a deny-list of every special-purpose range. IPv6 is stricter: only global unicast
//! (`2000::/3`) is allowed at all, minus the special ranges inside it, and every form that
//! embeds an IPv4 address (mapped, compatible, NAT64, 6to4) is judged by the embedded address,
//! because that is where the packets actually go.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Names the forbidden range `ip` falls in, or `None` when the address may be dialled.
///
/// The name is meant for error messages ("loopback", "RFC 1918 private", ...).
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// True when `ip` is in a range that spec §7.4 forbids fetching from (see [`forbidden_range`]).
pub fn is_forbidden(ip: IpAddr) -> bool {
    forbidden_range(ip).is_some()
}

/// `(network, prefix length, name)`; checked in order, first match wins.
const V4_RANGES: &[([u8; 4], u8, &str)] = &[
    (
        [0, 0, 0, 0],
        8,
        "unspecified / \"this network\" (0.0.0.0/8)",
    ),
    ([10, 0, 0, 0], 8, "RFC 1918 private (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "carrier-grade NAT (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "RFC 1918 private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "RFC 1918 private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    // Includes the limited broadcast address 255.255.255.255.
    ([240, 0, 0, 0], 4, "reserved / broadcast (240.0.0.0/4)"),
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u32::from(ip);
    V4_RANGES.iter().find_map(|(net, len, name)| {
        let mask = u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
        (bits & mask == u32::from_be_bytes(*net) & mask).then_some(*name)
    })
}

/// IPv6 ranges refused even though they sit inside global unicast `2000::/3`.
const V6_RANGES: &[(u128, u8, &str)] = &[
    // Teredo tunnels to an arbitrary (obfuscated) IPv4 client address; nothing legitimate
    // in a federation needs it.
    (0x2001_0000 << 96, 32, "Teredo (2001::/32)"),
    (0x2001_0002 << 96, 48, "benchmarking (2001:2::/48)"),
    (0x2001_0010 << 96, 28, "ORCHID (2001:10::/28)"),
    (0x2001_0020 << 96, 28, "ORCHIDv2 (2001:20::/28)"),
    (0x2001_0db8 << 96, 32, "documentation (2001:db8::/32)"),
    (0x3fff << 112, 20, "documentation (3fff::/20)"),
];

fn in_v6(bits: u128, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    bits & mask == net & mask
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = u128::from(ip);
    if ip.is_unspecified() {
        return Some("unspecified (::)");
    }
    if ip.is_loopback() {
        return Some("loopback (::1)");
    }
    // Forms that carry an IPv4 address: judge the address the packet really goes to.
    if let Some(v4) = embedded_v4(bits) {
        return forbidden_v4(v4).map(|_| "IPv4 range embedded in an IPv6 address");
    }
    if in_v6(bits, 0x0064_ff9b_0001 << 80, 48) {
        return Some("local-use NAT64 (64:ff9b:1::/48)");
    }
    if in_v6(bits, 0xfc00 << 112, 7) {
        return Some("unique local (fc00::/7)");
    }
    if in_v6(bits, 0xfe80 << 112, 10) {
        return Some("link-local (fe80::/10)");
    }
    if in_v6(bits, 0xfec0 << 112, 10) {
        return Some("site-local (fec0::/10)");
    }
    if in_v6(bits, 0xff00 << 112, 8) {
        return Some("multicast (ff00::/8)");
    }
    if !in_v6(bits, 0x2000 << 112, 3) {
        return Some("not global unicast (outside 2000::/3)");
    }
    V6_RANGES
        .iter()
        .find_map(|(net, len, name)| in_v6(bits, *net, *len).then_some(*name))
}

/// The IPv4 address embedded in IPv4-mapped (`::ffff:0:0/96`), IPv4-compatible (`::/96`),
/// NAT64 well-known prefix (`64:ff9b::/96`) and 6to4 (`2002::/16`) addresses.
fn embedded_v4(bits: u128) -> Option<Ipv4Addr> {
    // Truncating casts are the point here: they pick out 32-bit slices of the address.
    let low = Ipv4Addr::from(bits as u32);
    if in_v6(bits, 0xffff << 32, 96) || in_v6(bits, 0, 96) || in_v6(bits, 0x0064_ff9b << 96, 96) {
        return Some(low);
    }
    if in_v6(bits, 0x2002 << 112, 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forbidden(s: &str) -> bool {
        is_forbidden(s.parse().expect("test address parses"))
    }

    #[test]
    fn refuses_special_ipv4_ranges() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(forbidden(addr), "{addr} must be refused");
        }
    }

    #[test]
    fn allows_public_ipv4_including_range_neighbours() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
        ] {
            assert!(!forbidden(addr), "{addr} must be allowed");
        }
    }

    #[test]
    fn refuses_special_ipv6_ranges() {
        for addr in [
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "3fff::1",
            "64:ff9b:1::1",
            "100::1",
            "4000::1",
        ] {
            assert!(forbidden(addr), "{addr} must be refused");
        }
    }

    #[test]
    fn judges_embedded_ipv4_by_the_embedded_address() {
        for addr in [
            "::ffff:127.0.0.1",
            "::ffff:7f00:1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::10.1.2.3",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a00:1",
            "64:ff9b::192.168.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(forbidden(addr), "{addr} must be refused");
        }
        for addr in ["::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1"] {
            assert!(!forbidden(addr), "{addr} embeds a public address");
        }
    }

    #[test]
    fn allows_global_ipv6() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860::8888",
        ] {
            assert!(!forbidden(addr), "{addr} must be allowed");
        }
    }

    #[test]
    fn names_the_range() {
        assert_eq!(
            forbidden_range(
                "127.0.0.1"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            ),
            Some("loopback (127.0.0.0/8)")
        );
    }
}
