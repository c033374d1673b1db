//! Webhook signing secrets: named in the configuration (an environment
//! variable or a file), read only when the application starts.

use std::{
    collections::BTreeMap,
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, Utc};

use crate::{
    domain::Endpoint,
    webhooks::{Secret, SigningKeys},
};

use super::Config;

/// The signing-secret keys of `[providers.<id>]` and `[referrers.<id>]`
/// (repeated in both rather than flattened: serde's `flatten` does not
/// combine with `deny_unknown_fields`).
pub(super) struct RawSecrets {
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) previous_secret_env: Option<String>,
    pub(super) previous_secret_file: Option<PathBuf>,
    pub(super) previous_secret_until: Option<toml::Value>,
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

/// Checked secret settings of one endpoint.
pub(super) struct EndpointSecrets {
    pub(super) current: SecretSource,
    pub(super) previous: Option<SecretSource>,
    pub(super) previous_until: Option<DateTime<Utc>>,
}

impl RawSecrets {
    pub(super) fn check(self, table: &str, problems: &mut Vec<String>) -> Option<EndpointSecrets> {
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
pub(super) fn secret_source(
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

impl Config {
    /// Read every endpoint's webhook signing secrets, keyed by endpoint. A `secret_file` that does not
    /// exist yet is created with a new secret (mode 0600), and a warning
    /// names it so it can be shared with the endpoint. Problems name the
    /// configuration key and the variable or file, never the secret.
    pub fn signing_keys(&self) -> Result<BTreeMap<Endpoint, Arc<SigningKeys>>, Vec<String>> {
        self.signing_keys_with(&|name| {
            // Not valid Unicode: the replacement characters make it fail to
            // parse, reported like any other bad value.
            std::env::var_os(name).map(|v| v.to_string_lossy().into_owned())
        })
    }

    /// [`Config::signing_keys`] with the environment given as a lookup
    /// (tests pass a map rather than touch the process environment).
    pub(super) fn signing_keys_with(
        &self,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<Endpoint, Arc<SigningKeys>>, Vec<String>> {
        let providers = self.providers.values().map(|p| {
            (
                Endpoint::Provider(p.id.clone()),
                format!("providers.{}", p.id),
                &p.secret,
                &p.previous_secret,
                p.previous_secret_until,
            )
        });
        let referrers = self.referrers.values().map(|r| {
            (
                Endpoint::Referrer(r.id.clone()),
                format!("referrers.{}", r.id),
                &r.secret,
                &r.previous_secret,
                r.previous_secret_until,
            )
        });
        let services = self.clinical_services.values().map(|c| {
            (
                Endpoint::ClinicalService(c.id.clone()),
                format!("clinical_services.{}", c.id),
                &c.secret,
                &c.previous_secret,
                c.previous_secret_until,
            )
        });
        let mut keys = BTreeMap::new();
        let mut problems = Vec::new();
        for (name, table, secret, previous, previous_until) in
            providers.chain(referrers).chain(services)
        {
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
pub(super) fn read_secret(
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
/// owner only; missing parent folders are created owner-only too (on a
/// fresh clone this creates `data/`, where the database then goes).
pub(super) fn create_secret_file(path: &Path) -> std::io::Result<Secret> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        let mut folders = std::fs::DirBuilder::new();
        folders.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut folders, 0o700);
        folders.create(parent)?;
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
pub(super) fn warn_if_readable_by_others(path: &Path) {
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

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::create_secret_file;

    #[test]
    fn a_new_secret_and_the_folders_made_for_it_are_owner_only() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("data/secrets/provider.whsec");
        create_secret_file(&file).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&root.path().join("data/secrets")), 0o700);
        assert_eq!(mode(&root.path().join("data")), 0o700);
    }
}
