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
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;
use url::Url;

use crate::domain::{ClinicalServiceId, ProviderId, ReferrerId};

mod bars;
mod database;
mod delivery;
mod endpoints;
mod escalation;
mod secrets;
mod serving;

pub use self::{
    bars::BarsConfig,
    database::DatabaseSettings,
    delivery::{DeliveryConfig, parse_duration},
    endpoints::{ClinicalService, Notify, Provider, ProviderDelivery, Referrer},
    escalation::EscalationConfig,
    secrets::SecretSource,
    serving::{Limits, Tls},
};
use self::{
    bars::RawBars, database::RawDatabase, delivery::*, endpoints::*, escalation::RawEscalation,
    secrets::*, serving::*,
};

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
    database: Option<RawDatabase>,
    #[serde(default)]
    providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    referrers: BTreeMap<String, RawReferrer>,
    #[serde(default)]
    clinical_services: BTreeMap<String, RawClinicalService>,
    delivery: Option<RawDelivery>,
    limits: Option<RawLimits>,
    retention_days: Option<u32>,
    tls: Option<RawTls>,
    bars: Option<RawBars>,
    reports: Option<RawReports>,
    escalation: Option<RawEscalation>,
}

/// `[reports]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReports {
    suppression: Option<crate::reports::suppression::Suppression>,
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
    /// Waits on the database (`[database]`).
    pub database: DatabaseSettings,
    /// Community providers by id (`[providers.<id>]`).
    pub providers: BTreeMap<ProviderId, Provider>,
    /// Referring organisations by id (`[referrers.<id>]`).
    pub referrers: BTreeMap<ReferrerId, Referrer>,
    /// Clinical services that receive referrers' escalations
    /// (`[clinical_services.<id>]`).
    pub clinical_services: BTreeMap<ClinicalServiceId, ClinicalService>,
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
    /// Signpost as a BaRS receiver (`[bars]`); `None`: BaRS is not enabled.
    pub bars: Option<BarsConfig>,
    /// `[reports] suppression`, `nhs` (the default) or `none`: what admins
    /// get. Analysts always get `nhs`.
    pub report_suppression: crate::reports::suppression::Suppression,
    /// Deadlines for acknowledging escalations (`[escalation]`).
    pub escalation: EscalationConfig,
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
        let max_json_depth = self
            .max_json_depth
            .unwrap_or(crate::validation::document::DEFAULT_MAX_DEPTH);
        if !(8..=128).contains(&max_json_depth) {
            problems.push("`max_json_depth`: must be between 8 and 128".into());
        }
        let database_max_connections = self.database_max_connections.unwrap_or(8);
        if database_max_connections == 0 {
            problems.push("`database_max_connections`: must be at least 1".into());
        }

        let mut providers = BTreeMap::new();
        for (id, mut raw) in self.providers {
            let key = format!("providers.{id}");
            let checked_id = check_id::<ProviderId>(&key, &id, &mut problems);
            let delivery = raw.delivery(&key, &mut problems);
            let secrets = RawSecrets {
                secret_env: raw.secret_env,
                secret_file: raw.secret_file,
                previous_secret_env: raw.previous_secret_env,
                previous_secret_file: raw.previous_secret_file,
                previous_secret_until: raw.previous_secret_until,
            }
            .check(&key, &mut problems);
            if let (Some(id), Some(delivery), Some(secrets)) = (checked_id, delivery, secrets) {
                providers.insert(
                    id.clone(),
                    Provider {
                        id,
                        name: raw.name,
                        delivery,
                        secret: secrets.current,
                        previous_secret: secrets.previous,
                        previous_secret_until: secrets.previous_until,
                        allow_private_network: raw.allow_private_network,
                    },
                );
            }
        }

        let mut clinical_services = BTreeMap::new();
        for (id, raw) in self.clinical_services {
            let key = format!("clinical_services.{id}");
            let checked_id = check_id::<ClinicalServiceId>(&key, &id, &mut problems);
            let ods_code = match raw.ods_code {
                Some(code) if is_ods_code(&code) => Some(code),
                Some(_) => {
                    problems.push(format!("`{key}.ods_code`: not an ODS code"));
                    None
                }
                None => {
                    problems.push(format!(
                        "`{key}.ods_code`: required (the child Task's owner)"
                    ));
                    None
                }
            };
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
            if let (Some(id), Some(ods_code), Some(callback_url), Some(secrets)) =
                (checked_id, ods_code, callback_url, secrets)
            {
                clinical_services.insert(
                    id.clone(),
                    ClinicalService {
                        id,
                        name: raw.name,
                        ods_code,
                        callback_url,
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
            let checked_id = check_id::<ReferrerId>(&key, &id, &mut problems);
            if raw.ods_codes.is_empty() {
                problems.push(format!("`{key}.ods_codes`: list at least one ODS code"));
            }
            for code in &raw.ods_codes {
                if !is_ods_code(code) {
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
            let escalate_to = match raw.escalate_to {
                None => Some(None),
                Some(service) => match service.parse::<ClinicalServiceId>() {
                    Ok(id) if clinical_services.contains_key(&id) => Some(Some(id)),
                    _ => {
                        problems.push(format!(
                            "`{key}.escalate_to`: {service:?} is not a [clinical_services.<id>]"
                        ));
                        None
                    }
                },
            };
            let notify = Notify::parse(&key, raw.notify.as_deref())
                .map_err(|problem| problems.push(problem))
                .ok();
            if notify == Some(Notify::Bars) && self.bars.is_none() {
                problems.push(format!(
                    "`{key}.notify = \"bars\"`: BaRS responses come from this gateway as a BaRS receiver; configure `[bars]`"
                ));
            }
            let secrets = RawSecrets {
                secret_env: raw.secret_env,
                secret_file: raw.secret_file,
                previous_secret_env: raw.previous_secret_env,
                previous_secret_file: raw.previous_secret_file,
                previous_secret_until: raw.previous_secret_until,
            }
            .check(&key, &mut problems);
            if let (Some(id), Some(callback_url), Some(notify), Some(secrets), Some(escalate_to)) =
                (checked_id, callback_url, notify, secrets, escalate_to)
            {
                referrers.insert(
                    id.clone(),
                    Referrer {
                        id,
                        name: raw.name,
                        ods_codes: raw.ods_codes,
                        callback_url,
                        notify,
                        escalate_to,
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
        let database = self
            .database
            .map(|raw| raw.check(&mut problems))
            .unwrap_or_default();
        let limits = self
            .limits
            .map(|raw| raw.check(&mut problems))
            .unwrap_or_default();

        let escalation = self
            .escalation
            .map(|raw| raw.check(&mut problems))
            .unwrap_or_default();
        let tls = self.tls.and_then(|raw| raw.check(&mut problems));
        let bars = self.bars.and_then(|raw| raw.check(&mut problems));
        check_certificate_names(&referrers, tls.as_ref(), &mut problems);

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
            database,
            providers,
            referrers,
            clinical_services,
            delivery,
            limits,
            retention_days: self.retention_days.unwrap_or(30),
            tls,
            bars,
            report_suppression: self.reports.and_then(|r| r.suppression).unwrap_or_default(),
            escalation,
        })
    }
}

impl Config {
    /// Signpost's public FHIR base URL (`public_base_url` and `/fhir`),
    /// when configured: what notifications to referrers refer to.
    pub fn public_fhir_base(&self) -> Option<String> {
        self.public_base_url.as_ref().map(|b| format!("{b}/fhir"))
    }

    /// The referrer that lists `ods_code`, if any.
    pub fn referrer_for_ods(&self, ods_code: &str) -> Option<&Referrer> {
        self.referrers
            .values()
            .find(|r| r.ods_codes.iter().any(|c| c.eq_ignore_ascii_case(ods_code)))
    }
}

/// An ODS organisation code as configured: letters and digits.
fn is_ods_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 16 && code.chars().all(|c| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests;

/// Client certificate names (`referrers.<id>.client_certificate_names`,
/// `tls.admin_certificate_names`): each must be a DNS name a certificate
/// can carry and [`crate::security::client_certs`] can match exactly (not
/// a wildcard, an IP address, or a name with a trailing dot), and no name
/// may stand for two identities, in any case: a certificate must never
/// act as whichever identity comes first.
fn check_certificate_names(
    referrers: &BTreeMap<ReferrerId, Referrer>,
    tls: Option<&Tls>,
    problems: &mut Vec<String>,
) {
    let referrers = referrers.values().map(|r| {
        (
            format!("referrers.{}", r.id),
            format!("referrers.{}.client_certificate_names", r.id),
            &r.client_certificate_names,
        )
    });
    let operators = tls.map(|tls| {
        (
            "tls.admin_certificate_names".to_owned(),
            "tls.admin_certificate_names".to_owned(),
            &tls.admin_certificate_names,
        )
    });
    let mut owner: HashMap<String, String> = HashMap::new();
    for (who, key, names) in referrers.chain(operators) {
        for name in names {
            if let Some(why) = unmatchable(name) {
                problems.push(format!(
                    "`{key}`: {name:?} can never match a client certificate ({why})"
                ));
            }
            if let Some(other) = owner.insert(name.to_ascii_lowercase(), who.clone())
                && other != who
            {
                problems.push(format!("`{key}`: {name:?} is also listed by {other}"));
            }
        }
    }
}

/// Why a client certificate name could never match, if so.
fn unmatchable(name: &str) -> Option<&'static str> {
    if name.contains('*') {
        Some("wildcards are not matched: list each name")
    } else if name.parse::<std::net::IpAddr>().is_ok() {
        Some("certificates are matched by DNS name, not IP address")
    } else if name.ends_with('.') {
        Some("certificate names carry no trailing dot")
    } else if rustls::pki_types::DnsName::try_from(name).is_err() {
        Some("not a DNS name")
    } else {
        None
    }
}
