//! How Signpost serves: request limits (`[limits]`) and HTTPS with optional
//! client certificates (`[tls]`).

use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use super::delivery::parse_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    pub(super) certificate: Option<PathBuf>,
    pub(super) private_key: Option<PathBuf>,
    pub(super) client_ca: Option<PathBuf>,
    #[serde(default)]
    pub(super) require_client_certificate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) max_array_length: Option<usize>,
    pub(super) requests_per_second: Option<f64>,
    pub(super) burst: Option<u32>,
    pub(super) max_concurrent_requests: Option<usize>,
    pub(super) request_timeout: Option<String>,
    pub(super) header_read_timeout: Option<String>,
    pub(super) max_unverified_uploads: Option<usize>,
    pub(super) unverified_body_timeout: Option<String>,
}

/// Request limits (`[limits]`), beside `max_body_bytes` and
/// `max_json_depth`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Longest JSON array accepted in a request body (`max_array_length`).
    pub max_array_length: usize,
    /// Sustained requests per second per token (`requests_per_second`).
    pub requests_per_second: f64,
    /// Requests a token may send at once above the rate (`burst`).
    pub burst: u32,
    /// Requests handled at once; more are answered `503`
    /// (`max_concurrent_requests`).
    pub max_concurrent_requests: usize,
    /// Time allowed for a whole request, body upload included; then `408`
    /// (`request_timeout`).
    pub request_timeout: std::time::Duration,
    /// Time allowed for a connection to send a request's headers (and, on a
    /// new connection, the TLS handshake); then the connection is closed
    /// (`header_read_timeout`). Stops slow-loris clients from holding
    /// connections open.
    pub header_read_timeout: std::time::Duration,
    /// Requests at once that may be receiving a body before their sender
    /// is known: provider callbacks, whose signature covers the body
    /// (`max_unverified_uploads`). More are answered `503`; the rest of
    /// `max_concurrent_requests` stays for authenticated callers.
    pub max_unverified_uploads: usize,
    /// Time allowed to receive such a body; then `408`
    /// (`unverified_body_timeout`, capped by `request_timeout`).
    pub unverified_body_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_array_length: crate::validation::document::DEFAULT_MAX_ARRAY,
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(30),
            header_read_timeout: std::time::Duration::from_secs(10),
            max_unverified_uploads: 64,
            unverified_body_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl RawLimits {
    pub(super) fn check(self, problems: &mut Vec<String>) -> Limits {
        let defaults = Limits::default();
        let limits = Limits {
            max_array_length: self.max_array_length.unwrap_or(defaults.max_array_length),
            requests_per_second: self
                .requests_per_second
                .unwrap_or(defaults.requests_per_second),
            burst: self.burst.unwrap_or(defaults.burst),
            max_concurrent_requests: self
                .max_concurrent_requests
                .unwrap_or(defaults.max_concurrent_requests),
            request_timeout: limit_duration(
                "request_timeout",
                self.request_timeout,
                defaults.request_timeout,
                problems,
            ),
            header_read_timeout: limit_duration(
                "header_read_timeout",
                self.header_read_timeout,
                defaults.header_read_timeout,
                problems,
            ),
            max_unverified_uploads: self
                .max_unverified_uploads
                .unwrap_or(defaults.max_unverified_uploads),
            unverified_body_timeout: limit_duration(
                "unverified_body_timeout",
                self.unverified_body_timeout,
                defaults.unverified_body_timeout,
                problems,
            ),
        };
        if limits.max_array_length == 0 {
            problems.push("`limits.max_array_length`: must be at least 1".into());
        }
        if !(limits.requests_per_second > 0.0 && limits.requests_per_second.is_finite()) {
            problems.push("`limits.requests_per_second`: must be a positive number".into());
        }
        if limits.burst == 0 {
            problems.push("`limits.burst`: must be at least 1".into());
        }
        if limits.max_concurrent_requests == 0 {
            problems.push("`limits.max_concurrent_requests`: must be at least 1".into());
        }
        if limits.max_unverified_uploads == 0 {
            problems.push("`limits.max_unverified_uploads`: must be at least 1".into());
        }
        limits
    }
}

/// A `[limits]` duration: more than zero.
pub(super) fn limit_duration(
    key: &str,
    text: Option<String>,
    default: Duration,
    problems: &mut Vec<String>,
) -> Duration {
    match text {
        None => default,
        Some(text) => parse_duration(&text)
            .filter(|d| !d.is_zero())
            .unwrap_or_else(|| {
                problems.push(format!(
                    "`limits.{key}`: {text:?} is not a duration such as 500ms, 30s or 2m"
                ));
                default
            }),
    }
}

/// Serving HTTPS (`[tls]`): the server's certificate chain and key, and
/// optionally the CA whose client certificates are accepted (mutual TLS).
#[derive(Debug, Clone, PartialEq)]
pub struct Tls {
    /// PEM certificate chain, leaf first (`certificate`).
    pub certificate: PathBuf,
    /// PEM private key (`private_key`).
    pub private_key: PathBuf,
    /// PEM CA certificates that client certificates must chain to
    /// (`client_ca`). Without it, no client certificate is asked for.
    pub client_ca: Option<PathBuf>,
    /// Refuse the TLS handshake without a client certificate
    /// (`require_client_certificate`; needs `client_ca`). Off by default,
    /// so that bearer-token clients can share the port.
    pub require_client_certificate: bool,
}

impl RawTls {
    pub(super) fn check(self, problems: &mut Vec<String>) -> Option<Tls> {
        let before = problems.len();
        if self.certificate.is_none() {
            problems.push("`tls.certificate`: missing (a PEM certificate chain)".into());
        }
        if self.private_key.is_none() {
            problems.push("`tls.private_key`: missing (a PEM private key)".into());
        }
        if self.require_client_certificate && self.client_ca.is_none() {
            problems.push(
                "`tls.require_client_certificate`: needs `tls.client_ca` to verify the certificates against"
                    .into(),
            );
        }
        (problems.len() == before).then(|| Tls {
            certificate: self.certificate.unwrap_or_default(),
            private_key: self.private_key.unwrap_or_default(),
            client_ca: self.client_ca,
            require_client_certificate: self.require_client_certificate,
        })
    }
}
