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
    pub(super) client_crl: Option<PathBuf>,
    #[serde(default)]
    pub(super) admin_certificate_names: Vec<String>,
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
    pub(super) idle_timeout: Option<String>,
    pub(super) http2_keep_alive_interval: Option<String>,
    pub(super) http2_keep_alive_timeout: Option<String>,
    pub(super) http2_max_concurrent_streams: Option<u32>,
    pub(super) max_connections: Option<usize>,
    pub(super) max_connections_per_client: Option<usize>,
    pub(super) max_requests_per_client: Option<usize>,
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
    /// A connection with no request in progress for this long is closed,
    /// HTTP/1.1 or HTTP/2 (`idle_timeout`).
    pub idle_timeout: Duration,
    /// An HTTP/2 connection is pinged when it has been silent this long
    /// (`http2_keep_alive_interval`)...
    pub http2_keep_alive_interval: Duration,
    /// ...and closed when the ping is not answered within this
    /// (`http2_keep_alive_timeout`).
    pub http2_keep_alive_timeout: Duration,
    /// Requests at once on one HTTP/2 connection
    /// (`http2_max_concurrent_streams`).
    pub http2_max_concurrent_streams: u32,
    /// Connections open at once; more are closed as they arrive
    /// (`max_connections`; lowered at start-up to fit the process's
    /// descriptor limit).
    pub max_connections: usize,
    /// Connections open at once from one client address
    /// (`max_connections_per_client`).
    pub max_connections_per_client: usize,
    /// Requests in progress at once from one client address, out of
    /// `max_concurrent_requests`; more are answered `503`
    /// (`max_requests_per_client`).
    pub max_requests_per_client: usize,
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
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Duration::from_secs(20),
            http2_keep_alive_timeout: Duration::from_secs(10),
            http2_max_concurrent_streams: 32,
            max_connections: 4096,
            max_connections_per_client: 128,
            max_requests_per_client: 256,
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
            idle_timeout: limit_duration(
                "idle_timeout",
                self.idle_timeout,
                defaults.idle_timeout,
                problems,
            ),
            http2_keep_alive_interval: limit_duration(
                "http2_keep_alive_interval",
                self.http2_keep_alive_interval,
                defaults.http2_keep_alive_interval,
                problems,
            ),
            http2_keep_alive_timeout: limit_duration(
                "http2_keep_alive_timeout",
                self.http2_keep_alive_timeout,
                defaults.http2_keep_alive_timeout,
                problems,
            ),
            http2_max_concurrent_streams: self
                .http2_max_concurrent_streams
                .unwrap_or(defaults.http2_max_concurrent_streams),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_client: self
                .max_connections_per_client
                .unwrap_or(defaults.max_connections_per_client),
            max_requests_per_client: self
                .max_requests_per_client
                .unwrap_or(defaults.max_requests_per_client),
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
        for (key, value) in [
            ("max_unverified_uploads", limits.max_unverified_uploads),
            (
                "http2_max_concurrent_streams",
                limits.http2_max_concurrent_streams as usize,
            ),
            ("max_connections", limits.max_connections),
            (
                "max_connections_per_client",
                limits.max_connections_per_client,
            ),
            ("max_requests_per_client", limits.max_requests_per_client),
        ] {
            if value == 0 {
                problems.push(format!("`limits.{key}`: must be at least 1"));
            }
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
    /// PEM certificate revocation lists from the client CA (`client_crl`;
    /// needs `client_ca`). Read at start-up: a new list needs a restart.
    pub client_crl: Option<PathBuf>,
    /// DNS names of client certificates an admin or monitor token may be
    /// used with (`admin_certificate_names`; see
    /// [`crate::security::client_certs`]).
    pub admin_certificate_names: Vec<String>,
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
        if self.client_ca.is_none() {
            if self.client_crl.is_some() {
                problems.push(
                    "`tls.client_crl`: needs `tls.client_ca`, whose certificates it revokes".into(),
                );
            }
            if !self.admin_certificate_names.is_empty() {
                problems.push(
                    "`tls.admin_certificate_names`: needs `tls.client_ca` to verify the certificates against"
                        .into(),
                );
            }
        }
        (problems.len() == before).then(|| Tls {
            certificate: self.certificate.unwrap_or_default(),
            private_key: self.private_key.unwrap_or_default(),
            client_ca: self.client_ca,
            require_client_certificate: self.require_client_certificate,
            client_crl: self.client_crl,
            admin_certificate_names: self.admin_certificate_names,
        })
    }
}
