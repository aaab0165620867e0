//! Which URLs are on this machine: the one loopback policy of the checker, the runtime,
//! the CLI and the conformance suite (plain HTTP is allowed only there, so that a
//! credential or an agent document never crosses a network in clear text).
//!
//! A URL is judged by its parsed host (WHATWG URL parsing, the `url` crate — the same
//! parser the HTTP clients use), never by its text: `http://127.0.0.1:80@evil.example/`
//! has the host `evil.example`.

use std::net::IpAddr;

pub use url::Url;

/// Whether `url`'s host is the loopback interface: `localhost`, an address in
/// 127.0.0.0/8, `::1`, or an IPv4-mapped IPv6 form of 127.0.0.0/8.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(address)) => IpAddr::V4(address).is_loopback(),
        Some(url::Host::Ipv6(address)) => {
            address.is_loopback()
                || address
                    .to_ipv4_mapped()
                    .is_some_and(|mapped| mapped.is_loopback())
        }
        None => false,
    }
}

/// Whether `text` is a plain `http://` URL on the loopback interface.
pub fn is_loopback_http(text: &str) -> bool {
    Url::parse(text).is_ok_and(|url| url.scheme() == "http" && is_loopback(&url))
}

/// The URL a remote agent's HTTPS URL (OAS-N5: `oagent://` becomes `https://`) is fetched
/// from: itself, or, for a loopback host (a test server), its plain `http://` form.
pub fn loopback_http_url(https_url: &str) -> String {
    match (https_url.strip_prefix("https://"), Url::parse(https_url)) {
        (Some(rest), Ok(url)) if is_loopback(&url) => format!("http://{rest}"),
        _ => https_url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_loopback_policy_judges_the_parsed_host() {
        for loopback in [
            "http://127.0.0.1:8080/agents/a",
            "http://127.0.0.2/",
            "http://localhost/",
            "http://LOCALHOST:1/",
            "http://[::1]:9/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(is_loopback_http(loopback), "{loopback}");
        }
        for elsewhere in [
            // The text starts like loopback; the host is elsewhere.
            "http://127.0.0.1:80@evil.example/",
            "http://localhost@evil.example/",
            "http://127.0.0.1.evil.example/",
            "http://localhost.evil.example/",
            "http://0.0.0.0/",
            "http://10.0.0.1/",
            "http://[::2]/",
            // Loopback, but not plain HTTP.
            "https://127.0.0.1/",
            "ftp://127.0.0.1/",
            "not a url",
        ] {
            assert!(!is_loopback_http(elsewhere), "{elsewhere}");
        }
    }

    #[test]
    fn only_a_loopback_https_url_is_fetched_over_http() {
        assert_eq!(
            loopback_http_url("https://127.0.0.1:4000/agents/a"),
            "http://127.0.0.1:4000/agents/a"
        );
        assert_eq!(
            loopback_http_url("https://127.0.0.2/agents/a"),
            "http://127.0.0.2/agents/a"
        );
        for kept in [
            "https://127.0.0.1:80@evil.example/agents/a",
            "https://agents.example/a",
            "http://127.0.0.1/already-http",
        ] {
            assert_eq!(loopback_http_url(kept), kept);
        }
    }
}
