//! Loading and checking `config/signpost.toml`.
//!
//! The file is read into `Raw*` structs that reject unknown keys, then
//! converted into a checked [`Config`]. The conversion reports every problem
//! at once, each naming the file and the key, and Signpost refuses to start
//! on any of them: a gateway that guesses at its own configuration is a
//! gateway that loses referrals. `SIGNPOST_LISTEN` and
//! `SIGNPOST_DATABASE_URL` override the file.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
};

use serde::Deserialize;
use url::Url;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    name: Option<String>,
    intake_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReferrer {
    name: Option<String>,
    #[serde(default)]
    ods_codes: Vec<String>,
    callback_url: Option<String>,
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
            let intake_url = outbound_url(&key, "intake_url", raw.intake_url, &mut problems);
            if let Some(intake_url) = intake_url {
                providers.insert(
                    id.clone(),
                    Provider {
                        id,
                        name: raw.name,
                        intake_url,
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
            let callback_url = outbound_url(&key, "callback_url", raw.callback_url, &mut problems);
            if let Some(callback_url) = callback_url {
                referrers.insert(
                    id.clone(),
                    Referrer {
                        id,
                        name: raw.name,
                        ods_codes: raw.ods_codes,
                        callback_url,
                    },
                );
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
        })
    }
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
/// to a loopback address (local testing and side-car proxies).
fn outbound_url(
    table: &str,
    field: &str,
    value: Option<String>,
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
    match url.scheme() {
        "https" => Some(url),
        "http" if is_loopback(&url) => Some(url),
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
    fn every_problem_is_reported_at_once() {
        let err = load(
            r#"
            listen = "nowhere"
            [providers.a]
            intake_url = "http://provider.example/intake"
            [providers.b]
            [referrers.r]
            ods_codes = ["A81001"]
            callback_url = "ftp://x"
            [referrers.s]
            ods_codes = ["A81001"]
            callback_url = "https://s.example/cb"
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
}
