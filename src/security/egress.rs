//! Where Signpost may send patient data: the outbound address policy
//! (a guard against server-side request forgery).
//!
//! Targets come only from the configuration. A target must be an ordinary
//! public Internet address, however it is written (a literal address in
//! any spelling, or a host name that resolves to one), unless its
//! configuration table says `allow_private_network = true` (an endpoint on
//! an internal network such as HSCN, or a stand-in on this machine).
//! Loopback is no exception: `https://127.0.0.1`, `https://[::1]` and
//! `https://localhost` need the allowance as a name that resolves to
//! 127.0.0.1 does. [`crate::addresses`] is the rule. It is checked at
//! start-up for every target, and again on every connection by the HTTP
//! client's resolver for host names, so a DNS answer that changes later
//! (DNS rebinding) cannot redirect a delivery. (A literal address is never
//! resolved, and cannot change: the start-up check is its check.)

use std::{collections::BTreeSet, net::SocketAddr, sync::Arc};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::{
    addresses::{is_public, literal},
    config::Config,
};

/// Every configured target: (config key, URL, allow_private_network).
fn targets(config: &Config) -> Vec<(String, &Url, bool)> {
    let providers = config.providers.values().filter_map(|p| {
        Some((
            format!("providers.{}.intake_url", p.id),
            p.delivery.intake_url()?,
            p.allow_private_network,
        ))
    });
    let referrers = config.referrers.values().map(|r| {
        (
            format!("referrers.{}.callback_url", r.id),
            &r.callback_url,
            r.allow_private_network,
        )
    });
    let services = config.clinical_services.values().map(|c| {
        (
            format!("clinical_services.{}.callback_url", c.id),
            &c.callback_url,
            c.allow_private_network,
        )
    });
    providers.chain(referrers).chain(services).collect()
}

/// The resolver for delivery: host names resolve only to public addresses,
/// except the hosts of targets allowed a private network.
pub fn resolver(config: &Config) -> Arc<GuardedResolver> {
    let exempt = targets(config)
        .into_iter()
        .filter(|(_, _, allowed)| *allowed)
        .filter_map(|(_, url, _)| url.host_str().map(|h| h.to_ascii_lowercase()))
        .collect();
    Arc::new(GuardedResolver { exempt })
}

/// Check every target not allowed a private network: a literal address must
/// be public, and a host name must resolve to a public address now. A host
/// that does not resolve at all is only logged: the endpoint may be down,
/// and every attempt is checked anyway.
pub async fn check_targets(config: &Config) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let refused = |key: &str, what: &str| {
        format!(
            "`{key}`: {what} a loopback, private, link-local or reserved address; set `allow_private_network = true` in its table if that is intended"
        )
    };
    for (key, url, allowed) in targets(config) {
        if allowed {
            continue;
        }
        if let Some(ip) = literal(url) {
            if !is_public(ip) {
                problems.push(refused(&key, &format!("{ip} is")));
            }
            continue;
        }
        let Some(host) = url.host_str() else {
            continue;
        };
        match tokio::net::lookup_host((host, 0)).await {
            Ok(addrs) => {
                let addrs: Vec<SocketAddr> = addrs.collect();
                if !addrs.is_empty() && !addrs.iter().any(|a| is_public(a.ip())) {
                    problems.push(refused(&key, &format!("{host} resolves only to")));
                }
            }
            Err(e) => {
                tracing::warn!(target_key = %key, error = %e, "cannot resolve an endpoint's host at start-up");
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A DNS resolver that drops non-public addresses for guarded hosts.
pub struct GuardedResolver {
    exempt: BTreeSet<String>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let exempt = self.exempt.contains(&host);
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| exempt || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address; refused (allow_private_network)"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_leads_to_loopback() {
        use std::str::FromStr;
        let guarded = GuardedResolver {
            exempt: BTreeSet::new(),
        };
        let refused = guarded.resolve(Name::from_str("localhost").unwrap()).await;
        assert!(refused.is_err());
        let exempt = GuardedResolver {
            exempt: ["localhost".to_owned()].into(),
        };
        let allowed = exempt
            .resolve(Name::from_str("localhost").unwrap())
            .await
            .map_err(|e| e.to_string())
            .unwrap();
        assert!(allowed.into_iter().all(|a| a.ip().is_loopback()));
    }
}
