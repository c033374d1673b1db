//! Providers and referrers (`[providers.<id>]`, `[referrers.<id>]`): their
//! ids, and the outbound URLs Signpost sends patient data to.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use url::Url;

use super::SecretSource;
use crate::domain::{ClinicalServiceId, ProviderId, ReferrerId};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProvider {
    pub(super) name: Option<String>,
    /// `"webhook"` (the default: pushed to `intake_url`) or `"inbox"`
    /// (collected by the provider: see [`crate::referrals::inbox`]).
    pub(super) delivery: Option<String>,
    pub(super) intake_url: Option<String>,
    /// Inbox providers: how long a referral may wait uncollected before
    /// the referrer is told (default `24h`).
    pub(super) inbox_nudge_after: Option<String>,
    /// Inbox providers: how long before an uncollected message is
    /// dead-lettered (default `5d`).
    pub(super) inbox_expire_after: Option<String>,
    /// Plain `http://` to a loopback address is refused unless this is set.
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    /// A target on a private network is refused unless this is set.
    #[serde(default)]
    pub(super) allow_private_network: bool,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) previous_secret_env: Option<String>,
    pub(super) previous_secret_file: Option<PathBuf>,
    /// A string or a TOML date-time: both are read as RFC 3339.
    pub(super) previous_secret_until: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReferrer {
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) ods_codes: Vec<String>,
    pub(super) callback_url: Option<String>,
    /// How status goes back: `subscription` (the default) or `bars`.
    pub(super) notify: Option<String>,
    /// The clinical service its escalations go to (`[clinical_services.<id>]`).
    pub(super) escalate_to: Option<String>,
    /// DNS names (subject alternative names) of client certificates that
    /// authenticate as this referrer over mutual TLS.
    #[serde(default)]
    pub(super) client_certificate_names: Vec<String>,
    /// Plain `http://` to a loopback address is refused unless this is set.
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    /// A target on a private network is refused unless this is set.
    #[serde(default)]
    pub(super) allow_private_network: bool,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) previous_secret_env: Option<String>,
    pub(super) previous_secret_file: Option<PathBuf>,
    /// A string or a TOML date-time: both are read as RFC 3339.
    pub(super) previous_secret_until: Option<toml::Value>,
}

/// `[clinical_services.<id>]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClinicalService {
    pub(super) name: Option<String>,
    pub(super) ods_code: Option<String>,
    pub(super) callback_url: Option<String>,
    #[serde(default)]
    pub(super) allow_insecure_http: bool,
    #[serde(default)]
    pub(super) allow_private_network: bool,
    pub(super) secret_env: Option<String>,
    pub(super) secret_file: Option<PathBuf>,
    pub(super) previous_secret_env: Option<String>,
    pub(super) previous_secret_file: Option<PathBuf>,
    pub(super) previous_secret_until: Option<toml::Value>,
}

/// A clinical service that receives escalations in place of a referrer
/// (`[clinical_services.<id>]`, named by a referrer's `escalate_to`): the
/// PCN's occupational therapy team, say.
#[derive(Debug, Clone)]
pub struct ClinicalService {
    pub id: ClinicalServiceId,
    /// Display name.
    pub name: Option<String>,
    /// Its organisation's ODS code (`ods_code`): the child Task's owner.
    pub ods_code: String,
    /// Where escalations are sent (`callback_url`).
    pub callback_url: Url,
    /// The webhook signing secret (`secret_env` or `secret_file`).
    pub secret: SecretSource,
    pub previous_secret: Option<SecretSource>,
    pub previous_secret_until: Option<DateTime<Utc>>,
    /// The target may be on a private network (`allow_private_network`).
    pub allow_private_network: bool,
}

/// A community provider (`[providers.<id>]`).
#[derive(Debug, Clone)]
pub struct Provider {
    pub id: ProviderId,
    /// Display name.
    pub name: Option<String>,
    /// How its messages reach it (`delivery`, `intake_url`, `inbox_*`).
    pub delivery: ProviderDelivery,
    /// The webhook signing secret shared with the provider (`secret_env` or
    /// `secret_file`): it signs what is pushed, and the provider's status
    /// callbacks.
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

/// How a provider's messages (referrals, cancellations) reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderDelivery {
    /// Pushed, signed, to its `intake_url` (HTTPS, or plain HTTP to a
    /// loopback address) by the delivery worker.
    Webhook { intake_url: Url },
    /// Queued in its inbox, for it to collect (`delivery = "inbox"`; see
    /// [`crate::referrals::inbox`]).
    Inbox {
        /// A referral uncollected this long puts "not yet collected by
        /// provider" on its Task (`inbox_nudge_after`, default 24h).
        nudge_after: Duration,
        /// A message uncollected this long is dead-lettered and the
        /// referrer told (`inbox_expire_after`, default 5d).
        expire_after: Duration,
    },
}

impl ProviderDelivery {
    /// Default `inbox_nudge_after`.
    pub const NUDGE_AFTER: Duration = Duration::from_secs(24 * 3600);
    /// Default `inbox_expire_after`.
    pub const EXPIRE_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

    /// The URL messages are pushed to; `None` for an inbox provider.
    pub fn intake_url(&self) -> Option<&Url> {
        match self {
            ProviderDelivery::Webhook { intake_url } => Some(intake_url),
            ProviderDelivery::Inbox { .. } => None,
        }
    }

    /// Whether the provider collects its messages from its inbox.
    pub fn is_inbox(&self) -> bool {
        matches!(self, ProviderDelivery::Inbox { .. })
    }
}

impl RawProvider {
    /// The checked delivery settings of `[{key}]`, problems noted.
    pub(super) fn delivery(
        &mut self,
        key: &str,
        problems: &mut Vec<String>,
    ) -> Option<ProviderDelivery> {
        let inbox_keys = self.inbox_nudge_after.is_some() || self.inbox_expire_after.is_some();
        match self.delivery.as_deref().unwrap_or("webhook") {
            "webhook" => {
                if inbox_keys {
                    problems.push(format!(
                        "`{key}`: `inbox_nudge_after` and `inbox_expire_after` apply only with `delivery = \"inbox\"`"
                    ));
                }
                outbound_url(
                    key,
                    "intake_url",
                    self.intake_url.take(),
                    self.allow_insecure_http,
                    self.allow_private_network,
                    problems,
                )
                .map(|intake_url| ProviderDelivery::Webhook { intake_url })
            }
            "inbox" => {
                if self.intake_url.is_some() {
                    problems.push(format!(
                        "`{key}.intake_url`: an inbox provider collects its messages; remove `intake_url` or set `delivery = \"webhook\"`"
                    ));
                }
                let mut duration =
                    |field: &str, value: &Option<String>, default: Duration| match value {
                        None => Some(default),
                        Some(text) => match super::delivery::parse_duration(text) {
                            Some(d) if !d.is_zero() => Some(d),
                            _ => {
                                problems.push(format!(
                                "`{key}.{field}`: {text:?} is not a duration such as 30m, 24h or 5d"
                            ));
                                None
                            }
                        },
                    };
                let nudge_after = duration(
                    "inbox_nudge_after",
                    &self.inbox_nudge_after,
                    ProviderDelivery::NUDGE_AFTER,
                );
                let expire_after = duration(
                    "inbox_expire_after",
                    &self.inbox_expire_after,
                    ProviderDelivery::EXPIRE_AFTER,
                );
                let (nudge_after, expire_after) = (nudge_after?, expire_after?);
                if expire_after <= nudge_after {
                    problems.push(format!(
                        "`{key}.inbox_expire_after`: must be longer than `inbox_nudge_after`"
                    ));
                    return None;
                }
                Some(ProviderDelivery::Inbox {
                    nudge_after,
                    expire_after,
                })
            }
            other => {
                problems.push(format!(
                    "`{key}.delivery`: {other:?} is not \"webhook\" or \"inbox\""
                ));
                None
            }
        }
    }
}

/// A referring organisation: a practice, a PCN, a hospital team
/// (`[referrers.<id>]`).
#[derive(Debug, Clone)]
pub struct Referrer {
    pub id: ReferrerId,
    /// Display name.
    pub name: Option<String>,
    /// ODS codes of the organisations whose referrals this referrer sends
    /// (`ods_codes`). A referral is attributed to the referrer that lists
    /// its requester Organization's ODS code.
    pub ods_codes: Vec<String>,
    /// Where status notifications are sent (`callback_url`): for
    /// [`Notify::Bars`], the referrer's BaRS `$process-message` endpoint.
    pub callback_url: Url,
    /// How status goes back to it (`notify`).
    pub notify: Notify,
    /// Where its providers' escalations go (`escalate_to`): a clinical
    /// service; `None`: to the referrer itself.
    pub escalate_to: Option<ClinicalServiceId>,
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

/// How a referrer is told of its referrals' Task changes (`notify`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Notify {
    /// A Subscriptions-backport notification Bundle per change
    /// (`subscription`, the default; [`crate::referrals::notification`]).
    #[default]
    Subscription,
    /// A BaRS `servicerequest-response` message per change, for referrals
    /// that came by BaRS (`bars`; [`crate::bars::response`]).
    Bars,
}

impl Notify {
    /// `notify` as configured, or the problem with it.
    pub(super) fn parse(key: &str, raw: Option<&str>) -> Result<Notify, String> {
        match raw {
            None | Some("subscription") => Ok(Notify::Subscription),
            Some("bars") => Ok(Notify::Bars),
            Some(_) => Err(format!(
                "`{key}.notify`: \"subscription\" (the default) or \"bars\""
            )),
        }
    }
}

/// Ids appear in URLs and FHIR references: keep them to lower-case letters,
/// digits and hyphens (the rule of [`ProviderId`] and [`ReferrerId`]). The
/// id, or `None` with the problem noted.
pub(super) fn check_id<T: std::str::FromStr>(
    key: &str,
    id: &str,
    problems: &mut Vec<String>,
) -> Option<T> {
    let checked = id.parse().ok();
    if checked.is_none() {
        problems.push(format!(
            "`[{key}]`: an id may hold only a-z, 0-9 and '-', at most 64 characters"
        ));
    }
    checked
}

/// Signpost sends patient data to these URLs: HTTPS only, except plain HTTP
/// to a loopback address when the table says `allow_insecure_http = true`
/// (local testing and side-car proxies that add TLS).
pub(super) fn outbound_url(
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
    // A literal address needs no lookup to know it is not public, however
    // it is spelt (the URL parser reads `127.1` and `0x7f000001` as
    // 127.0.0.1; `addresses` unwraps IPv4 inside IPv6). Loopback is not
    // public either: one rule, the same as for a host name that resolves to
    // it (`security::egress`).
    let non_public = match crate::addresses::literal(&url) {
        Some(ip) => !crate::addresses::is_public(ip),
        None => url.host_str().is_some_and(crate::addresses::is_localhost),
    };
    if non_public && !allow_private_network {
        problems.push(format!(
            "`{table}.{field}`: {} is a loopback, private, link-local or reserved address; set `allow_private_network = true` if that is intended",
            url.host_str().unwrap_or_default()
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

/// Plain HTTP is allowed only to this machine: `localhost` or a loopback
/// address.
pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => crate::addresses::is_localhost(d),
        _ => crate::addresses::literal(url).is_some_and(crate::addresses::is_loopback),
    }
}
