//! Which IP addresses are ordinary public Internet addresses: the one rule
//! that outbound delivery (`security::egress`, on every connection) and the
//! start-up checks (literal addresses in target URLs) share. A leaf: it
//! knows nothing else of Signpost.
//!
//! Every spelling of an address reaches the same answer: the URL parser has
//! already turned `0x7f000001`, `127.1` and `2130706433` into 127.0.0.1, and
//! here an IPv6 address that carries an IPv4 one (mapped `::ffff:a.b.c.d`,
//! compatible `::a.b.c.d`, translated `::ffff:0:a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) is judged by that IPv4
//! address. Of the rest of IPv6 only global unicast (`2000::/3`) can be
//! public, without its special-purpose blocks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is an ordinary public Internet address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

/// The address a URL names literally (`https://127.1/` names 127.0.0.1),
/// if it names one rather than a host.
pub fn literal(url: &url::Url) -> Option<IpAddr> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// Whether a host name is `localhost` or under `.localhost`, which always
/// mean this machine (RFC 6761): known not public without a lookup.
pub fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

/// Whether `ip` is this machine's loopback: 127.0.0.0/8, `::1`, or
/// 127.0.0.0/8 mapped into IPv6 (which a dual-stack socket reaches as
/// loopback). Plain HTTP is allowed only to these.
pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The IPv4 address an IPv6 address carries, for the forms that carry one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let last_two = || Ipv4Addr::from(((s[6] as u32) << 16) | s[7] as u32);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated);
        // `::` and `::1` are themselves, not 0.0.0.0 and 0.0.0.1.
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(last_two()),
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(last_two()),
        // ::ffff:0:a.b.c.d (SIIT translated, RFC 6052/7915).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(last_two()),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix, RFC 6052).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(last_two()),
        // 2002:aabb:ccdd::/48 (6to4, RFC 3056): the address in bits 16-48.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from(((hi as u32) << 16) | lo as u32)),
        _ => None,
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10 carrier-grade NAT; 192.0.0.0/24 protocol
        // assignments; 198.18.0.0/15 benchmarking; 240.0.0.0/4 reserved.
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240)
}

/// IPv6 that carries no IPv4 address: public only within global unicast
/// `2000::/3`. Everything outside it is not (`::1`, `::`, `fc00::/7`
/// unique local with AWS metadata `fd00:ec2::254`, `fe80::/10` link-local,
/// `fec0::/10` site-local, `ff00::/8` multicast, `100::/64` discard,
/// `64:ff9b:1::/48` local NAT64), nor are these blocks inside it.
fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    (first & 0xe000) == 0x2000
        // 2001::/23 IETF protocol assignments (Teredo 2001::/32 among
        // them, which hides an IPv4 address), 2001:db8::/32 and
        // 3fff::/20 documentation.
        && !(first == 0x2001 && second < 0x0200)
        && !(first == 0x2001 && second == 0x0db8)
        && !(first == 0x3fff && second < 0x1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling the review found passing as public, and the ordinary
    /// private ranges.
    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::169.254.169.254",
            "::ffff:0:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::127.0.0.1",
            "64:ff9b:1::a00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "3fff::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "51.140.1.1",
            "2a00:1450:4009:81f::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn loopback_is_127_slash_8_and_colon_colon_1_however_written() {
        for loopback in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(is_loopback(loopback.parse().unwrap()), "{loopback}");
        }
        for other in ["10.0.0.1", "::", "2002:7f00:1::", "64:ff9b::7f00:1"] {
            assert!(!is_loopback(other.parse().unwrap()), "{other}");
        }
    }
}
