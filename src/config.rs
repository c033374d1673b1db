//! Loading and checking `config/signpost.toml`.
//!
//! The file is read into `Raw*` structs that reject unknown keys, then
//! converted into a checked [`Config`]. The conversion reports every problem
//! at once, each naming the file and the key, and Signpost refuses to start
//! on any of them: a gateway that guesses at its own configuration is a
//! gateway that loses referrals. `SIGNPOST_LISTEN` and
//! `SIGNPOST_DATABASE_URL` override the file.
//!
//! Webhook signing secrets are named here (an environment variable or a
//! file) but read only by [`Config::signing_keys`], when the application
//! starts, so that checking a configuration never touches key material.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Write as _,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use crate::security::webhooks::{Secret, SigningKeys};

/// Default configuration file, relative to the working directory.
pub const DEFAULT_CONFIG_PATH: &str = "config/signpost.toml";
/// Environment variable overriding `listen`.
pub const ENV_LISTEN: &str = "SIGNPOST_LISTEN";
/// Environment variable overriding `database_url`.
pub const ENV_DATABASE_URL: &str = "SIGNPOST_DATABASE_URL";

/// The file as written, before any checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    database_url: Option<String>,
    public_base_url: Option<String>,
    schemas_dir: Option<PathBuf>,
    mappings_dir: Option<PathBuf>,
    max_body_bytes: Option<usize>,
    max_json_depth: Option<usize>,
    database_max_connections: Option<u32>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    referrers: BTreeMap<String, RawReferrer>,
    delivery: Option<RawDelivery>,
    limits: Option<RawLimits>,
    retention_days: Option<u32>,
    tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    client_ca: Option<PathBuf>,
    #[serde(default)]
    require_client_certificate: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Option<String>,
    intake_url: Option<String>,
    /// Plain `http://` to a loopback address is refused unless this is set.
    #[serde(default)]
    allow_insecure_http: bool,
    /// A target on a private network is refused unless this is set.
    #[serde(default)]
    allow_private_network: bool,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<PathBuf>,
    /// A string or a TOML date-time: both are read as RFC 3339.
    previous_secret_until: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReferrer {
    name: Option<String>,
    #[serde(default)]
    ods_codes: Vec<String>,
    callback_url: Option<String>,
    /// DNS names (subject alternative names) of client certificates that
    /// authenticate as this referrer over mutual TLS.
    #[serde(default)]
    client_certificate_names: Vec<String>,
    /// Plain `http://` to a loopback address is refused unless this is set.
    #[serde(default)]
    allow_insecure_http: bool,
    /// A target on a private network is refused unless this is set.
    #[serde(default)]
    allow_private_network: bool,
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<PathBuf>,
    /// A string or a TOML date-time: both are read as RFC 3339.
    previous_secret_until: Option<toml::Value>,
}

/// The signing-secret keys of `[providers.<id>]` and `[referrers.<id>]`
/// (repeated in both rather than flattened: serde's `flatten` does not
/// combine with `deny_unknown_fields`).
struct RawSecrets {
    secret_env: Option<String>,
    secret_file: Option<PathBuf>,
    previous_secret_env: Option<String>,
    previous_secret_file: Option<PathBuf>,
    previous_secret_until: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDelivery {
    retry_schedule: Option<Vec<String>>,
    connect_timeout: Option<String>,
    request_timeout: Option<String>,
    max_retry_after: Option<String>,
    lease: Option<String>,
    concurrency: Option<usize>,
    poll_interval: Option<String>,
    worker: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_array_length: Option<usize>,
    requests_per_second: Option<f64>,
    burst: Option<u32>,
    max_concurrent_requests: Option<usize>,
    request_timeout: Option<String>,
    header_read_timeout: Option<String>,
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
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_array_length: 1000,
            requests_per_second: 50.0,
            burst: 100,
            max_concurrent_requests: 1024,
            request_timeout: std::time::Duration::from_secs(30),
            header_read_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl RawLimits {
    fn check(self, problems: &mut Vec<String>) -> Limits {
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
        limits
    }
}

/// A `[limits]` duration: more than zero.
fn limit_duration(
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
    fn check(self, problems: &mut Vec<String>) -> Option<Tls> {
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

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server binds (`listen`; port 0 picks a free port).
    pub listen: SocketAddr,
    /// Storage: `sqlite://path` (default `sqlite://data/signpost.db`) or
    /// `postgres://…`.
    pub database_url: String,
    /// Absolute base URL clients use to reach Signpost (`public_base_url`).
    /// Without it, `Location` headers and `fullUrl`s are server-relative.
    pub public_base_url: Option<String>,
    /// Folder holding `fhir/fhir.schema.json` and `profiles/` (`schemas_dir`,
    /// default `schemas`).
    pub schemas_dir: PathBuf,
    /// Folder holding the mapping files `<provider>.yaml` and their fixtures
    /// in `tests/` (`mappings_dir`, default `mappings`).
    pub mappings_dir: PathBuf,
    /// Largest request body accepted, in bytes (`max_body_bytes`, default 1 MiB).
    pub max_body_bytes: usize,
    /// Deepest JSON nesting accepted (`max_json_depth`, default 64).
    pub max_json_depth: usize,
    /// Database connection pool size (`database_max_connections`, default 8).
    pub database_max_connections: u32,
    /// Community providers by id (`[providers.<id>]`).
    pub providers: BTreeMap<String, Provider>,
    /// Referring organisations by id (`[referrers.<id>]`).
    pub referrers: BTreeMap<String, Referrer>,
    /// How referrals and notifications are delivered (`[delivery]`).
    pub delivery: DeliveryConfig,
    /// Request limits (`[limits]`).
    pub limits: Limits,
    /// Days after which delivered payloads, attempts' response excerpts and
    /// callback bodies are purged (`retention_days`, default 30).
    pub retention_days: u32,
    /// Serve HTTPS, optionally with client certificates (`[tls]`); plain
    /// HTTP without it.
    pub tls: Option<Tls>,
}

/// Where an endpoint's webhook signing secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// An environment variable holding `whsec_…` (`secret_env`).
    Env(String),
    /// A file holding `whsec_…` (`secret_file`); created with a new secret
    /// when missing.
    File(PathBuf),
    /// Both keys: the environment variable when it is set, else the file
    /// (so a sample configuration runs as it is, and production sets the
    /// variable).
    EnvOrFile(String, PathBuf),
    /// A secret given directly, for programmatic use such as tests; not
    /// reachable from the configuration file.
    Inline(Secret),
}

/// Delivery of referrals to providers and notifications to referrers
/// (`[delivery]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Delays before the 2nd, 3rd, … attempt; the first attempt is
    /// immediate, so there are `len() + 1` attempts in all
    /// (`retry_schedule`).
    pub retry_schedule: Vec<Duration>,
    /// Time allowed to establish a connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt, connection included
    /// (`request_timeout`).
    pub request_timeout: Duration,
    /// Longest `Retry-After` honoured; longer ones are capped to this
    /// (`max_retry_after`).
    pub max_retry_after: Duration,
    /// How long a worker holds a claimed delivery before another may take it
    /// over (`lease`); longer than `request_timeout`.
    pub lease: Duration,
    /// Requests to endpoints in flight at once (`concurrency`); an attempt
    /// frees its slot when the answer is in, before it is recorded.
    pub concurrency: usize,
    /// How often the queue is checked when nothing signals new work
    /// (`poll_interval`).
    pub poll_interval: Duration,
    /// Whether `signpost serve` runs a delivery worker (`worker`, default
    /// true). Set false to let separate `signpost worker` processes deliver.
    pub worker: bool,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        DeliveryConfig {
            retry_schedule: [
                5,
                5 * MINUTE,
                30 * MINUTE,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(6 * HOUR),
            lease: Duration::from_secs(60),
            concurrency: 64,
            poll_interval: Duration::from_secs(1),
            worker: true,
        }
    }
}

/// A community provider (`[providers.<id>]`).
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// Where referrals are delivered (`intake_url`). HTTPS, or plain HTTP to
    /// a loopback address.
    pub intake_url: Url,
    /// The webhook signing secret shared with the provider (`secret_env` or
    /// `secret_file`).
    pub secret: SecretSource,
    /// The secret being rotated out (`previous_secret_env` or
    /// `previous_secret_file`).
    pub previous_secret: Option<SecretSource>,
    /// End of the rotation's grace period (`previous_secret_until`).
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// The target may be on a private network (`allow_private_network`;
    /// see [`crate::security::egress`]).
    pub allow_private_network: bool,
}

/// A referring organisation: a practice, a PCN, a hospital team
/// (`[referrers.<id>]`).
#[derive(Debug, Clone)]
pub struct Referrer {
    pub id: String,
    /// Display name.
    pub name: Option<String>,
    /// ODS codes of the organisations whose referrals this referrer sends
    /// (`ods_codes`). A referral is attributed to the referrer that lists
    /// its requester Organization's ODS code.
    pub ods_codes: Vec<String>,
    /// Where status notifications are sent (`callback_url`).
    pub callback_url: Url,
    /// DNS names of the client certificates that authenticate as this
    /// referrer (`client_certificate_names`; see [`crate::security::client_certs`]).
    pub client_certificate_names: Vec<String>,
    /// The webhook signing secret shared with the referrer (`secret_env` or
    /// `secret_file`).
    pub secret: SecretSource,
    /// The secret being rotated out (`previous_secret_env` or
    /// `previous_secret_file`).
    pub previous_secret: Option<SecretSource>,
    /// End of the rotation's grace period (`previous_secret_until`).
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// The target may be on a private network (`allow_private_network`;
    /// see [`crate::security::egress`]).
    pub allow_private_network: bool,
}

/// Every problem found in a configuration file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration in {}:", self.file.display())?;
        for problem in &self.problems {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl Config {
    /// Read `path`, apply the environment overrides, and check everything.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let fail = |problem: String| ConfigErrors {
            file: path.to_owned(),
            problems: vec![problem],
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read the file: {e}")))?;
        let env: HashMap<String, String> = [ENV_LISTEN, ENV_DATABASE_URL]
            .into_iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), v)))
            .collect();
        Self::from_toml(&text, path, &env)
    }

    /// Parse and check configuration text; `env` holds the overriding
    /// environment variables (taken as arguments so tests need not touch the
    /// process environment).
    pub fn from_toml(
        text: &str,
        file: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Config, ConfigErrors> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigErrors {
            file: file.to_owned(),
            // toml's message names the unknown or mistyped key and its line.
            problems: vec![e.to_string().trim_end().to_owned()],
        })?;
        raw.check(env).map_err(|problems| ConfigErrors {
            file: file.to_owned(),
            problems,
        })
    }
}

impl RawConfig {
    fn check(self, env: &HashMap<String, String>) -> Result<Config, Vec<String>> {
        let mut problems = Vec::new();

        let (listen_text, listen_key) = match env.get(ENV_LISTEN) {
            Some(v) => (v.clone(), ENV_LISTEN.to_owned()),
            None => (
                self.listen.unwrap_or_else(|| "127.0.0.1:8080".into()),
                "listen".into(),
            ),
        };
        let listen = listen_text.parse::<SocketAddr>().unwrap_or_else(|_| {
            problems.push(format!(
                "`{listen_key}`: {listen_text:?} is not an address such as 127.0.0.1:8080"
            ));
            SocketAddr::from(([127, 0, 0, 1], 0))
        });

        let (database_url, db_key) = match env.get(ENV_DATABASE_URL) {
            Some(v) => (v.clone(), ENV_DATABASE_URL),
            None => (
                self.database_url
                    .unwrap_or_else(|| "sqlite://data/signpost.db".into()),
                "database_url",
            ),
        };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            problems.push(format!(
                "`{db_key}`: must start with sqlite: or postgres:// (the value is not shown: it may hold a password)"
            ));
        }

        let public_base_url = self.public_base_url.and_then(|u| match Url::parse(&u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {
                Some(u.trim_end_matches('/').to_owned())
            }
            _ => {
                problems.push(format!("`public_base_url`: {u:?} is not an http(s) URL"));
                None
            }
        });

        let max_body_bytes = self.max_body_bytes.unwrap_or(1024 * 1024);
        if max_body_bytes < 1024 {
            problems.push("`max_body_bytes`: must be at least 1024".into());
        }
        let max_json_depth = self.max_json_depth.unwrap_or(64);
        if !(8..=128).contains(&max_json_depth) {
            problems.push("`max_json_depth`: must be between 8 and 128".into());
        }
        let database_max_connections = self.database_max_connections.unwrap_or(8);
        if database_max_connections == 0 {
            problems.push("`database_max_connections`: must be at least 1".into());
        }

        let mut providers = BTreeMap::new();
        for (id, raw) in self.providers {
            let key = format!("providers.{id}");
            check_id(&key, &id, &mut problems);
            let intake_url = outbound_url(
                &key,
                "intake_url",
                raw.intake_url,
                raw.allow_insecure_http,
                raw.allow_private_network,
                &mut problems,
            );
            let secrets = RawSecrets {
                secret_env: raw.secret_env,
                secret_file: raw.secret_file,
                previous_secret_env: raw.previous_secret_env,
                previous_secret_file: raw.previous_secret_file,
                previous_secret_until: raw.previous_secret_until,
            }
            .check(&key, &mut problems);
            if let (Some(intake_url), Some(secrets)) = (intake_url, secrets) {
                providers.insert(
                    id.clone(),
                    Provider {
                        id,
                        name: raw.name,
                        intake_url,
                        secret: secrets.current,
                        previous_secret: secrets.previous,
                        previous_secret_until: secrets.previous_until,
                        allow_private_network: raw.allow_private_network,
                    },
                );
            }
        }

        let mut referrers = BTreeMap::new();
        let mut ods_owner: HashMap<String, String> = HashMap::new();
        for (id, raw) in self.referrers {
            let key = format!("referrers.{id}");
            check_id(&key, &id, &mut problems);
            if raw.ods_codes.is_empty() {
                problems.push(format!("`{key}.ods_codes`: list at least one ODS code"));
            }
            for code in &raw.ods_codes {
                if code.is_empty() || !code.chars().all(|c| c.is_ascii_alphanumeric()) {
                    problems.push(format!("`{key}.ods_codes`: {code:?} is not an ODS code"));
                }
                if let Some(other) = ods_owner.insert(code.clone(), id.clone()) {
                    problems.push(format!(
                        "`{key}.ods_codes`: {code:?} is also listed by referrers.{other}"
                    ));
                }
            }
            let callback_url = outbound_url(
                &key,
                "callback_url",
                raw.callback_url,
                raw.allow_insecure_http,
                raw.allow_private_network,
                &mut problems,
            );
            let secrets = RawSecrets {
                secret_env: raw.secret_env,
                secret_file: raw.secret_file,
                previous_secret_env: raw.previous_secret_env,
                previous_secret_file: raw.previous_secret_file,
                previous_secret_until: raw.previous_secret_until,
            }
            .check(&key, &mut problems);
            if let (Some(callback_url), Some(secrets)) = (callback_url, secrets) {
                referrers.insert(
                    id.clone(),
                    Referrer {
                        id,
                        name: raw.name,
                        ods_codes: raw.ods_codes,
                        callback_url,
                        client_certificate_names: raw.client_certificate_names,
                        secret: secrets.current,
                        previous_secret: secrets.previous,
                        previous_secret_until: secrets.previous_until,
                        allow_private_network: raw.allow_private_network,
                    },
                );
            }
        }

        let delivery = self
            .delivery
            .map(|raw| raw.check(&mut problems))
            .unwrap_or_default();
        let limits = self
            .limits
            .map(|raw| raw.check(&mut problems))
            .unwrap_or_default();

        let tls = self.tls.and_then(|raw| raw.check(&mut problems));
        let mut certificate_owner: HashMap<&str, &str> = HashMap::new();
        for referrer in referrers.values() {
            for name in &referrer.client_certificate_names {
                if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
                    problems.push(format!(
                        "`referrers.{}.client_certificate_names`: {name:?} is not a DNS name",
                        referrer.id
                    ));
                }
                if let Some(other) = certificate_owner.insert(name, &referrer.id) {
                    problems.push(format!(
                        "`referrers.{}.client_certificate_names`: {name:?} is also listed by referrers.{other}",
                        referrer.id
                    ));
                }
            }
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Config {
            listen,
            database_url,
            public_base_url,
            schemas_dir: self.schemas_dir.unwrap_or_else(|| "schemas".into()),
            mappings_dir: self.mappings_dir.unwrap_or_else(|| "mappings".into()),
            max_body_bytes,
            max_json_depth,
            database_max_connections,
            providers,
            referrers,
            delivery,
            limits,
            retention_days: self.retention_days.unwrap_or(30),
            tls,
        })
    }
}

/// Checked secret settings of one endpoint.
struct EndpointSecrets {
    current: SecretSource,
    previous: Option<SecretSource>,
    previous_until: Option<DateTime<Utc>>,
}

impl RawSecrets {
    fn check(self, table: &str, problems: &mut Vec<String>) -> Option<EndpointSecrets> {
        let before = problems.len();
        let current = secret_source(
            table,
            ("secret_env", self.secret_env),
            ("secret_file", self.secret_file),
            problems,
        );
        if let Ok(None) = current {
            problems.push(format!(
                "`{table}`: missing the webhook signing secret: give `secret_env` (an environment variable) or `secret_file` (a file, created when missing)"
            ));
        }
        let previous = secret_source(
            table,
            ("previous_secret_env", self.previous_secret_env),
            ("previous_secret_file", self.previous_secret_file),
            problems,
        );
        let previous_until = match self.previous_secret_until {
            None => Ok(None),
            Some(value) => {
                let text = match value {
                    toml::Value::String(text) => text,
                    toml::Value::Datetime(datetime) => datetime.to_string(),
                    _ => String::new(),
                };
                match DateTime::parse_from_rfc3339(&text) {
                    Ok(datetime) => Ok(Some(datetime.with_timezone(&Utc))),
                    Err(_) => {
                        problems.push(format!(
                            "`{table}.previous_secret_until`: not a date-time with offset such as 2026-12-01T00:00:00Z"
                        ));
                        Err(())
                    }
                }
            }
        };
        match (&previous, &previous_until) {
            (Ok(Some(_)), Ok(None)) => problems.push(format!(
                "`{table}.previous_secret_until`: missing: a previous secret needs the end of its grace period (such as 2026-12-01T00:00:00Z)"
            )),
            (Ok(None), Ok(Some(_))) => problems.push(format!(
                "`{table}.previous_secret_until`: there is no `previous_secret_env` or `previous_secret_file` for it to end"
            )),
            _ => {}
        }
        if problems.len() > before {
            return None;
        }
        Some(EndpointSecrets {
            current: current.ok()??,
            previous: previous.ok()?,
            previous_until: previous_until.ok()?,
        })
    }
}

/// The keys naming a secret: an environment variable, a file, or both (the
/// variable when it is set, else the file). `Ok(None)` when neither is
/// given; `Err` after reporting a problem.
fn secret_source(
    table: &str,
    (env_key, env): (&str, Option<String>),
    (file_key, file): (&str, Option<PathBuf>),
    problems: &mut Vec<String>,
) -> Result<Option<SecretSource>, ()> {
    if let Some(name) = &env {
        let ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            problems.push(format!(
                "`{table}.{env_key}`: {name:?} is not an environment variable name (letters, digits and _)"
            ));
            return Err(());
        }
    }
    if file
        .as_ref()
        .is_some_and(|path| path.as_os_str().is_empty())
    {
        problems.push(format!("`{table}.{file_key}`: empty path"));
        return Err(());
    }
    Ok(match (env, file) {
        (Some(var), Some(path)) => Some(SecretSource::EnvOrFile(var, path)),
        (Some(var), None) => Some(SecretSource::Env(var)),
        (None, Some(path)) => Some(SecretSource::File(path)),
        (None, None) => None,
    })
}

impl RawDelivery {
    fn check(self, problems: &mut Vec<String>) -> DeliveryConfig {
        let defaults = DeliveryConfig::default();
        let mut duration = |key: &str, value: Option<String>, default: Duration, positive: bool| {
            let Some(text) = value else {
                return default;
            };
            match parse_duration(&text) {
                Some(d) if positive && d.is_zero() => {
                    problems.push(format!("`delivery.{key}`: must be more than zero"));
                    default
                }
                Some(d) => d,
                None => {
                    problems.push(format!(
                        "`delivery.{key}`: {text:?} is not a duration such as 500ms, 5s, 5m or 2h"
                    ));
                    default
                }
            }
        };
        let connect_timeout = duration(
            "connect_timeout",
            self.connect_timeout,
            defaults.connect_timeout,
            true,
        );
        let request_timeout = duration(
            "request_timeout",
            self.request_timeout,
            defaults.request_timeout,
            true,
        );
        let max_retry_after = duration(
            "max_retry_after",
            self.max_retry_after,
            defaults.max_retry_after,
            false,
        );
        let lease = duration("lease", self.lease, defaults.lease, true);
        let poll_interval = duration(
            "poll_interval",
            self.poll_interval,
            defaults.poll_interval,
            true,
        );
        let retry_schedule = match self.retry_schedule {
            None => defaults.retry_schedule,
            Some(texts) => texts
                .iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    let parsed = parse_duration(text);
                    if parsed.is_none() {
                        problems.push(format!(
                            "`delivery.retry_schedule[{i}]`: {text:?} is not a duration such as 500ms, 5s, 5m or 2h"
                        ));
                    }
                    parsed
                })
                .collect(),
        };
        if lease <= request_timeout {
            problems.push(format!(
                "`delivery.lease`: must be longer than `delivery.request_timeout` ({}), or a slow attempt could be taken over while still running",
                format_duration(request_timeout)
            ));
        }
        let concurrency = self.concurrency.unwrap_or(defaults.concurrency);
        if !(1..=1024).contains(&concurrency) {
            problems.push("`delivery.concurrency`: must be between 1 and 1024".into());
        }
        DeliveryConfig {
            retry_schedule,
            connect_timeout,
            request_timeout,
            max_retry_after,
            lease,
            concurrency,
            poll_interval,
            worker: self.worker.unwrap_or(defaults.worker),
        }
    }
}

/// `<integer><unit>` with unit `ms`, `s`, `m` or `h`: `500ms`, `5s`, `5m`, `2h`.
fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// A duration in the units [`parse_duration`] reads, for messages.
fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (value, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|&(per_unit, _)| ms > 0 && ms.is_multiple_of(per_unit))
        .map_or((ms, "ms"), |(per_unit, unit)| (ms / per_unit, unit));
    format!("{value}{unit}")
}

/// Ids appear in URLs and FHIR references: keep them to lower-case letters,
/// digits and hyphens.
fn check_id(key: &str, id: &str, problems: &mut Vec<String>) {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        problems.push(format!(
            "`[{key}]`: an id may hold only a-z, 0-9 and '-', at most 64 characters"
        ));
    }
}

/// Signpost sends patient data to these URLs: HTTPS only, except plain HTTP
/// to a loopback address when the table says `allow_insecure_http = true`
/// (local testing and side-car proxies that add TLS).
fn outbound_url(
    table: &str,
    field: &str,
    value: Option<String>,
    allow_insecure_http: bool,
    allow_private_network: bool,
    problems: &mut Vec<String>,
) -> Option<Url> {
    let Some(text) = value else {
        problems.push(format!("`{table}.{field}`: missing"));
        return None;
    };
    let url = match Url::parse(&text) {
        Ok(url) => url,
        Err(e) => {
            problems.push(format!("`{table}.{field}`: {text:?} is not a URL ({e})"));
            return None;
        }
    };
    // A literal address needs no lookup to know it is private (host names
    // are resolved and checked at start-up and on every connection).
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal
        && !ip.is_loopback()
        && !crate::security::egress::is_public(ip)
        && !allow_private_network
    {
        problems.push(format!(
            "`{table}.{field}`: {ip} is a private, link-local or reserved address; set `allow_private_network = true` if that is intended"
        ));
        return None;
    }
    match url.scheme() {
        "https" => Some(url),
        "http" if is_loopback(&url) && allow_insecure_http => Some(url),
        "http" if is_loopback(&url) => {
            problems.push(format!(
                "`{table}.{field}`: plain http needs `allow_insecure_http = true` (loopback only); use https"
            ));
            None
        }
        "http" => {
            problems.push(format!(
                "`{table}.{field}`: plain http is allowed only to a loopback address; use https"
            ));
            None
        }
        other => {
            problems.push(format!(
                "`{table}.{field}`: scheme {other:?} is not supported; use https"
            ));
            None
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

impl Config {
    /// The referrer that lists `ods_code`, if any.
    pub fn referrer_for_ods(&self, ods_code: &str) -> Option<&Referrer> {
        self.referrers
            .values()
            .find(|r| r.ods_codes.iter().any(|c| c.eq_ignore_ascii_case(ods_code)))
    }
}

impl Config {
    /// Read every endpoint's webhook signing secrets, keyed
    /// `provider:<id>` and `referrer:<id>`. A `secret_file` that does not
    /// exist yet is created with a new secret (mode 0600), and a warning
    /// names it so it can be shared with the endpoint. Problems name the
    /// configuration key and the variable or file, never the secret.
    pub fn signing_keys(&self) -> Result<BTreeMap<String, Arc<SigningKeys>>, Vec<String>> {
        self.signing_keys_with(&|name| {
            // Not valid Unicode: the replacement characters make it fail to
            // parse, reported like any other bad value.
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// [`Config::signing_keys`] with the environment given as a lookup
    /// (tests pass a map rather than touch the process environment).
    fn signing_keys_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, Arc<SigningKeys>>, Vec<String>> {
        let providers = self.providers.values().map(|p| {
            (
                format!("provider:{}", p.id),
                format!("providers.{}", p.id),
                &p.secret,
                &p.previous_secret,
                p.previous_secret_until,
            )
        });
        let referrers = self.referrers.values().map(|r| {
            (
                format!("referrer:{}", r.id),
                format!("referrers.{}", r.id),
                &r.secret,
                &r.previous_secret,
                r.previous_secret_until,
            )
        });
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, table, secret, previous, previous_until) in providers.chain(referrers) {
            let current = read_secret(&table, "", secret, env, &mut problems);
            // `None`: unreadable (reported); `Some(None)`: no rotation.
            let previous = match previous {
                Some(source) => {
                    read_secret(&table, "previous_", source, env, &mut problems).map(Some)
                }
                None => Some(None),
            };
            if let (Some(current), Some(previous)) = (current, previous) {
                keys.insert(
                    name,
                    Arc::new(SigningKeys {
                        current,
                        previous,
                        previous_until,
                    }),
                );
            }
        }
        if problems.is_empty() {
            Ok(keys)
        } else {
            Err(problems)
        }
    }
}

/// Read one secret. `prefix` is `""` for the current secret and
/// `"previous_"` for the one being rotated out; only a missing current
/// `secret_file` is created.
fn read_secret(
    table: &str,
    prefix: &str,
    source: &SecretSource,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Vec<String>,
) -> Option<Secret> {
    match source {
        SecretSource::Inline(secret) => Some(secret.clone()),
        SecretSource::EnvOrFile(var, path) => {
            let from = if env(var).is_some() {
                SecretSource::Env(var.clone())
            } else {
                SecretSource::File(path.clone())
            };
            read_secret(table, prefix, &from, env, problems)
        }
        SecretSource::Env(var) => {
            let key = format!("{table}.{prefix}secret_env");
            let Some(text) = env(var) else {
                problems.push(format!("`{key}`: environment variable {var} is not set"));
                return None;
            };
            Secret::parse(&text)
                .map_err(|e| {
                    problems.push(format!(
                        "`{key}`: environment variable {var} does not hold a signing secret: {e}"
                    ));
                })
                .ok()
        }
        SecretSource::File(path) => {
            let key = format!("{table}.{prefix}secret_file");
            let shown = path.display();
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    warn_if_readable_by_others(path);
                    Secret::parse(&text)
                        .map_err(|e| {
                            problems.push(format!(
                                "`{key}`: {shown} does not hold a signing secret: {e}"
                            ));
                        })
                        .ok()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && prefix.is_empty() => {
                    match create_secret_file(path) {
                        Ok(secret) => {
                            tracing::warn!(
                                endpoint = table,
                                path = %shown,
                                "created a new webhook signing secret in {shown} for `{table}`: share it with the endpoint so it can verify Signpost's requests and sign its own"
                            );
                            Some(secret)
                        }
                        Err(e) => {
                            problems.push(format!("`{key}`: cannot create {shown}: {e}"));
                            None
                        }
                    }
                }
                Err(e) => {
                    problems.push(format!("`{key}`: cannot read {shown}: {e}"));
                    None
                }
            }
        }
    }
}

/// Write a new secret to `path`, which must not exist, readable by the
/// owner only; parent folders are created.
fn create_secret_file(path: &Path) -> std::io::Result<Secret> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let secret = Secret::generate();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(format!("{}\n", secret.to_whsec()).as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}

/// A secret file others can read is worth a warning, not a refusal.
fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(metadata) = std::fs::metadata(path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the webhook signing secret file {} is accessible to other users; restrict it with chmod 600",
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        Config::from_toml(text, Path::new("test.toml"), &HashMap::new())
    }

    #[test]
    fn the_sample_configuration_is_valid() {
        let text = include_str!("../config/signpost.toml");
        let config = load(text).expect("sample config loads");
        assert_eq!(config.providers.len(), 3);
        assert!(config.providers.contains_key("activelives"));
        assert!(config.providers.contains_key("community-connect"));
        assert!(config.providers.contains_key("grow-together"));
        assert_eq!(config.referrers.len(), 1);
    }

    #[test]
    fn an_unknown_key_is_refused_naming_the_key_and_file() {
        let err = load("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("test.toml"), "{text}");
        assert!(text.contains("listen_adress"), "{text}");
    }

    #[test]
    fn an_unknown_key_inside_a_provider_table_is_refused() {
        let err = load("[providers.x]\nintake_url = \"https://x.example/\"\nintake_ulr = \"y\"\n")
            .unwrap_err();
        assert!(err.to_string().contains("intake_ulr"), "{err}");
    }

    #[test]
    fn limits_are_read_and_checked() {
        let config = load(
            "[limits]\nmax_array_length = 10\nrequests_per_second = 2.5\nburst = 4\nmax_concurrent_requests = 8\nrequest_timeout = \"5s\"\nheader_read_timeout = \"2s\"\n",
        )
        .unwrap();
        assert_eq!(
            config.limits,
            Limits {
                max_array_length: 10,
                requests_per_second: 2.5,
                burst: 4,
                max_concurrent_requests: 8,
                request_timeout: std::time::Duration::from_secs(5),
                header_read_timeout: std::time::Duration::from_secs(2),
            }
        );
        assert_eq!(load("").unwrap().limits, Limits::default());
        let err =
            load("[limits]\nrequests_per_second = 0.0\nburst = 0\nrequest_timeout = \"soon\"\nheader_read_timeout = \"0s\"\n")
                .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
    }

    #[test]
    fn tls_and_client_certificate_names_are_checked() {
        let referrer = |names: &str| {
            format!(
                "[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\nsecret_env = \"R\"\nclient_certificate_names = {names}\n"
            )
        };
        let config = load(&format!(
            "[tls]\ncertificate = \"s.pem\"\nprivate_key = \"s.key\"\nclient_ca = \"ca.pem\"\n{}",
            referrer("[\"gp.example.nhs.uk\"]")
        ))
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
        assert!(!tls.require_client_certificate);
        assert_eq!(
            config.referrers["r"].client_certificate_names,
            ["gp.example.nhs.uk"]
        );

        let err = load("[tls]\nrequire_client_certificate = true\n").unwrap_err();
        assert_eq!(
            err.problems,
            [
                "`tls.certificate`: missing (a PEM certificate chain)",
                "`tls.private_key`: missing (a PEM private key)",
                "`tls.require_client_certificate`: needs `tls.client_ca` to verify the certificates against",
            ]
        );
        let err = load(&referrer("[\"not a name\"]")).unwrap_err();
        assert!(
            err.problems[0].starts_with("`referrers.r.client_certificate_names`"),
            "{err}"
        );
    }

    #[test]
    fn private_and_metadata_addresses_need_an_explicit_allowance() {
        let table = |url: &str, extra: &str| {
            format!("[providers.a]\nintake_url = \"{url}\"\nsecret_env = \"A\"\n{extra}\n")
        };
        for url in [
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/intake",
            "https://[fd00:ec2::254]/",
        ] {
            let err = load(&table(url, "")).unwrap_err();
            assert!(
                err.to_string().contains("allow_private_network"),
                "{url}: {err}"
            );
            assert!(
                load(&table(url, "allow_private_network = true")).is_ok(),
                "{url}"
            );
        }
        assert!(load(&table("https://51.140.1.1/intake", "")).is_ok());
    }

    #[test]
    fn plain_http_to_loopback_needs_an_explicit_allowance() {
        let table = |extra: &str| {
            format!(
                "[providers.a]\nintake_url = \"http://127.0.0.1:9/x\"\nsecret_env = \"A\"\n{extra}\n"
            )
        };
        let err = load(&table("")).unwrap_err();
        assert!(err.to_string().contains("allow_insecure_http"), "{err}");
        assert!(load(&table("allow_insecure_http = true")).is_ok());
        let err = load(
            "[providers.a]\nintake_url = \"http://provider.example/x\"\nsecret_env = \"A\"\nallow_insecure_http = true\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("only to a loopback"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load(
            r#"
            listen = "nowhere"
            [providers.a]
            intake_url = "http://provider.example/intake"
            secret_env = "A_SECRET"
            [providers.b]
            secret_env = "B_SECRET"
            [referrers.r]
            ods_codes = ["A81001"]
            callback_url = "ftp://x"
            secret_env = "R_SECRET"
            [referrers.s]
            ods_codes = ["A81001"]
            callback_url = "https://s.example/cb"
            secret_env = "S_SECRET"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "`listen`",
            "`providers.a.intake_url`: plain http",
            "`providers.b.intake_url`: missing",
            "`referrers.r.callback_url`: scheme",
            "also listed by referrers.r",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 5, "{text}");
    }

    #[test]
    fn environment_variables_override_the_file() {
        let env = HashMap::from([
            (ENV_LISTEN.to_owned(), "127.0.0.1:9999".to_owned()),
            (
                ENV_DATABASE_URL.to_owned(),
                "postgres://db.example/x".to_owned(),
            ),
        ]);
        let config = Config::from_toml(
            "listen = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://a.db\"\n",
            Path::new("t.toml"),
            &env,
        )
        .unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.database_url, "postgres://db.example/x");
    }

    #[test]
    fn a_bad_database_url_does_not_echo_its_password() {
        let err = load("database_url = \"mysql://u:hunter2@h/db\"\n").unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    /// A provider table with the given secret lines.
    fn provider_with(lines: &str) -> String {
        format!("[providers.p]\nintake_url = \"https://p.example/intake\"\n{lines}\n")
    }

    #[test]
    fn a_secret_must_be_named() {
        let neither = load(&provider_with("")).unwrap_err();
        assert_eq!(neither.problems.len(), 1, "{neither}");
        assert!(
            neither.problems[0].starts_with("`providers.p`: missing the webhook signing secret")
        );

        let referrer = load(
            "[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\n",
        )
        .unwrap_err();
        assert!(
            referrer.problems[0].starts_with("`referrers.r`: missing"),
            "{referrer}"
        );
    }

    #[test]
    fn a_secret_variable_must_be_a_variable_name() {
        let err = load(&provider_with("secret_env = \"$P SECRET\"")).unwrap_err();
        assert!(
            err.problems[0].starts_with("`providers.p.secret_env`:"),
            "{err}"
        );
    }

    #[test]
    fn a_rotation_names_the_previous_secret_and_the_end_of_its_grace_period() {
        let config = load(&provider_with(
            "secret_env = \"P_NEW\"\nprevious_secret_env = \"P_OLD\"\nprevious_secret_until = \"2026-12-01T00:00:00Z\"",
        ))
        .unwrap();
        let p = &config.providers["p"];
        assert!(matches!(&p.secret, SecretSource::Env(v) if v == "P_NEW"));
        assert!(matches!(&p.previous_secret, Some(SecretSource::Env(v)) if v == "P_OLD"));
        assert_eq!(
            p.previous_secret_until.unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );

        // A TOML date-time (unquoted) works as well, with any offset.
        let config = load(&provider_with(
            "secret_env = \"P_NEW\"\nprevious_secret_file = \"old.whsec\"\nprevious_secret_until = 2026-12-01T01:00:00+01:00",
        ))
        .unwrap();
        let p = &config.providers["p"];
        assert!(
            matches!(&p.previous_secret, Some(SecretSource::File(f)) if f == Path::new("old.whsec"))
        );
        assert_eq!(
            p.previous_secret_until.unwrap().to_rfc3339(),
            "2026-12-01T00:00:00+00:00"
        );
    }

    #[test]
    fn rotation_problems_name_the_key() {
        let cases = [
            (
                "previous_secret_env = \"P_OLD\"",
                "`providers.p.previous_secret_until`: missing",
            ),
            (
                "previous_secret_until = \"2026-12-01T00:00:00Z\"",
                "`providers.p.previous_secret_until`: there is no",
            ),
            (
                "previous_secret_env = \"P_OLD\"\nprevious_secret_until = \"next week\"",
                "`providers.p.previous_secret_until`: not a date-time",
            ),
            (
                // No offset: ambiguous, refused.
                "previous_secret_env = \"P_OLD\"\nprevious_secret_until = 2026-12-01T00:00:00",
                "`providers.p.previous_secret_until`: not a date-time",
            ),
        ];
        for (lines, expected) in cases {
            let err =
                load(&provider_with(&format!("secret_env = \"P_NEW\"\n{lines}"))).unwrap_err();
            assert_eq!(err.problems.len(), 1, "{err}");
            assert!(err.problems[0].starts_with(expected), "{lines}:\n{err}");
        }
    }

    /// The TOML form of a path.
    fn toml_path(path: &Path) -> String {
        toml::Value::String(path.display().to_string()).to_string()
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_sample_configuration_reads_secrets_from_variables_else_files_under_data() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
        let text = std::fs::read_to_string(&path).unwrap();
        let secret = regex::Regex::new("whsec_[A-Za-z0-9+/=]{16,}").unwrap();
        assert!(!secret.is_match(&text), "a secret is written in the sample");
        let config = Config::from_toml(&text, &path, &HashMap::new()).unwrap();
        let sources = config
            .providers
            .values()
            .map(|p| (&p.id, &p.secret))
            .chain(config.referrers.values().map(|r| (&r.id, &r.secret)));
        for (id, source) in sources {
            let variable = format!(
                "SIGNPOST_SECRET_{}",
                id.to_ascii_uppercase().replace('-', "_")
            );
            let file = PathBuf::from(format!("data/secrets/{id}.whsec"));
            assert!(
                matches!(source, SecretSource::EnvOrFile(v, f) if *v == variable && *f == file),
                "{source:?}"
            );
        }
        assert!(
            config
                .providers
                .values()
                .all(|p| p.previous_secret.is_none())
        );
        assert_eq!(config.delivery, DeliveryConfig::default());
    }

    #[test]
    fn with_both_keys_the_variable_wins_and_the_file_is_the_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.whsec");
        let config = load(&provider_with(&format!(
            "secret_env = \"P_SECRET\"\nsecret_file = {}",
            toml_path(&path)
        )))
        .unwrap();
        let from_env = Secret::generate();
        let env = HashMap::from([("P_SECRET".to_owned(), from_env.to_whsec())]);

        let keys = config.signing_keys_with(&|v| env.get(v).cloned()).unwrap();
        assert_eq!(keys["provider:p"].current.to_whsec(), from_env.to_whsec());
        assert!(
            !path.exists(),
            "no file is created when the variable is set"
        );

        let keys = config.signing_keys_with(&no_env).unwrap();
        let written = Secret::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(keys["provider:p"].current.to_whsec(), written.to_whsec());
        assert_ne!(written.to_whsec(), from_env.to_whsec());
    }

    #[test]
    fn a_missing_secret_file_is_created_with_a_new_secret_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/secrets/p.whsec");
        let config = load(&provider_with(&format!(
            "secret_file = {}",
            toml_path(&path)
        )))
        .unwrap();

        let keys = config.signing_keys_with(&no_env).unwrap();

        let text = std::fs::read_to_string(&path).expect("secret file created");
        assert!(text.ends_with('\n'));
        let written = Secret::parse(&text).unwrap();
        assert_eq!(keys["provider:p"].current.to_whsec(), written.to_whsec());
        assert!(keys["provider:p"].previous.is_none());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Started again: the same secret, read back.
        let again = config.signing_keys_with(&no_env).unwrap();
        assert_eq!(again["provider:p"].current.to_whsec(), written.to_whsec());
    }

    #[test]
    fn secrets_are_read_from_files_and_variables_with_the_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let old = Secret::generate();
        let new = Secret::generate();
        let referrer_secret = Secret::generate();
        let old_path = dir.path().join("old.whsec");
        std::fs::write(&old_path, format!("\n  {}  \n", old.to_whsec())).unwrap();
        let text = format!(
            "{}\n[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\nsecret_env = \"R_SECRET\"\n",
            provider_with(&format!(
                "secret_env = \"P_SECRET\"\nprevious_secret_file = {}\nprevious_secret_until = \"2026-12-01T00:00:00Z\"",
                toml_path(&old_path)
            ))
        );
        let config = load(&text).unwrap();
        let env = HashMap::from([
            ("P_SECRET".to_owned(), new.to_whsec()),
            (
                "R_SECRET".to_owned(),
                format!("{}\n", referrer_secret.to_whsec()),
            ),
        ]);

        let keys = config.signing_keys_with(&|v| env.get(v).cloned()).unwrap();

        assert_eq!(keys.len(), 2);
        let p = &keys["provider:p"];
        assert_eq!(p.current.to_whsec(), new.to_whsec());
        assert_eq!(p.previous.as_ref().unwrap().to_whsec(), old.to_whsec());
        assert_eq!(
            p.previous_until,
            config.providers["p"].previous_secret_until
        );
        assert_eq!(
            keys["referrer:r"].current.to_whsec(),
            referrer_secret.to_whsec()
        );
    }

    #[test]
    fn unreadable_secrets_are_all_reported_naming_key_and_source_but_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let bad_file = dir.path().join("bad.whsec");
        std::fs::write(&bad_file, "whsec_hunter2 is my password\n").unwrap();
        let missing_previous = dir.path().join("no-such-old.whsec");
        let text = format!(
            "[providers.a]\nintake_url = \"https://a.example/\"\nsecret_env = \"A_SECRET\"\n\
             [providers.b]\nintake_url = \"https://b.example/\"\nsecret_env = \"B_SECRET\"\n\
             [providers.c]\nintake_url = \"https://c.example/\"\nsecret_file = {}\n\
             previous_secret_file = {}\nprevious_secret_until = \"2026-12-01T00:00:00Z\"\n",
            toml_path(&bad_file),
            toml_path(&missing_previous),
        );
        let config = load(&text).unwrap();
        let env = HashMap::from([("B_SECRET".to_owned(), "sk_live_hunter2".to_owned())]);

        let problems = config
            .signing_keys_with(&|v| env.get(v).cloned())
            .unwrap_err();

        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert_eq!(
            problems[0],
            "`providers.a.secret_env`: environment variable A_SECRET is not set"
        );
        assert!(
            problems[1].starts_with("`providers.b.secret_env`: environment variable B_SECRET does not hold a signing secret"),
            "{}",
            problems[1]
        );
        assert!(
            problems[2].starts_with("`providers.c.secret_file`: "),
            "{}",
            problems[2]
        );
        assert!(problems[2].contains("bad.whsec"), "{}", problems[2]);
        assert!(
            problems[3].starts_with("`providers.c.previous_secret_file`: cannot read "),
            "{}",
            problems[3]
        );
        // A missing previous secret is a mistake, not something to invent.
        assert!(!missing_previous.exists());
        for problem in &problems {
            assert!(!problem.contains("hunter2"), "{problem}");
        }
    }

    #[test]
    fn inline_secrets_are_used_as_given() {
        let mut config = load(include_str!("../config/signpost.toml")).unwrap();
        let secret = Secret::generate();
        for provider in config.providers.values_mut() {
            provider.secret = SecretSource::Inline(secret.clone());
        }
        for referrer in config.referrers.values_mut() {
            referrer.secret = SecretSource::Inline(secret.clone());
        }
        let keys = config.signing_keys_with(&no_env).unwrap();
        assert_eq!(keys.len(), 4);
        assert!(keys.contains_key("provider:activelives"));
        assert!(keys.contains_key("referrer:riverside-surgery"));
        assert!(
            keys.values()
                .all(|k| k.current.to_whsec() == secret.to_whsec())
        );
    }

    #[test]
    fn delivery_defaults_follow_the_svix_schedule() {
        let d = DeliveryConfig::default();
        let secs: Vec<u64> = d.retry_schedule.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(d.connect_timeout, Duration::from_secs(5));
        assert_eq!(d.request_timeout, Duration::from_secs(30));
        assert_eq!(d.max_retry_after, Duration::from_secs(6 * 3600));
        assert_eq!(d.lease, Duration::from_secs(60));
        assert_eq!(d.concurrency, 64);
        assert_eq!(d.poll_interval, Duration::from_secs(1));
        assert_eq!(load("").unwrap().delivery, d);
        assert_eq!(load("[delivery]\n").unwrap().delivery, d);
    }

    #[test]
    fn delivery_settings_are_read() {
        let config = load(
            r#"
            [delivery]
            retry_schedule = ["500ms", "2s", "1m", "1h"]
            connect_timeout = "250ms"
            request_timeout = "2s"
            max_retry_after = "0s"
            lease = "3s"
            concurrency = 4
            poll_interval = "50ms"
            worker = false
            "#,
        )
        .unwrap();
        assert_eq!(
            config.delivery,
            DeliveryConfig {
                retry_schedule: vec![
                    Duration::from_millis(500),
                    Duration::from_secs(2),
                    Duration::from_secs(60),
                    Duration::from_secs(3600),
                ],
                connect_timeout: Duration::from_millis(250),
                request_timeout: Duration::from_secs(2),
                max_retry_after: Duration::ZERO,
                lease: Duration::from_secs(3),
                concurrency: 4,
                poll_interval: Duration::from_millis(50),
                worker: false,
            }
        );
        let once = load("[delivery]\nretry_schedule = []\n").unwrap();
        assert!(once.delivery.retry_schedule.is_empty());
    }

    #[test]
    fn delivery_problems_are_all_reported_naming_the_key() {
        let err = load(
            r#"
            [delivery]
            retry_schedule = ["5s", "5 minutes", "1d"]
            connect_timeout = "0s"
            request_timeout = "90s"
            max_retry_after = "-1h"
            lease = "1m"
            concurrency = 0
            poll_interval = "1.5s"
            "#,
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "`delivery.retry_schedule[1]`: \"5 minutes\" is not a duration",
            "`delivery.retry_schedule[2]`: \"1d\"",
            "`delivery.connect_timeout`: must be more than zero",
            "`delivery.max_retry_after`: \"-1h\"",
            "`delivery.lease`: must be longer than `delivery.request_timeout` (90s)",
            "`delivery.concurrency`: must be between 1 and 1024",
            "`delivery.poll_interval`: \"1.5s\"",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
        }
        assert_eq!(err.problems.len(), 7, "{text}");
        assert!(load("[delivery]\nconcurrency = 1025\n").is_err());
        assert!(load("[delivery]\nlease = \"30s\"\n").is_err());
        let unknown = load("[delivery]\nretries = 3\n").unwrap_err();
        assert!(unknown.to_string().contains("retries"), "{unknown}");
    }

    #[test]
    fn durations_are_an_integer_and_a_unit() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "5",
            "s",
            "5S",
            " 5s",
            "5s ",
            "+5s",
            "5.0s",
            "5sec",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        assert_eq!(parse_duration(&format!("{}h", u64::MAX / 1000)), None);
    }
}
