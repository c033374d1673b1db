//! Whom a client certificate names (mutual TLS; see [`super::tls`] for the
//! handshake that verifies the certificate first), and the one rule for a
//! certificate and a token on the same request.
//!
//! A verified certificate names the referrer whose
//! `client_certificate_names` lists one of the DNS names in its subject
//! alternative names, or an operator when one of them is in
//! `[tls] admin_certificate_names`. Names are compared exactly, ignoring
//! case (no wildcards: a certificate for `*.example.nhs.uk` names nobody).
//! A certificate whose names belong to two identities names nobody: it
//! must not act as whichever comes first. (Start-up refuses a name listed
//! twice, and names no certificate could match: `crate::config`.)
//!
//! The rule ([`check_pair`]): a certificate presented with a token must
//! name the token's holder: that referrer for a referrer's token, an
//! operator's name for an admin or monitor token. Anything else is refused
//! (`403`), so a practice's certificate cannot be used with another
//! practice's (or an operator's) stolen token, and a certificate from the
//! trusted CA that names nobody adds nothing to an admin token. Without a
//! token, a referrer's certificate authenticates that referrer; an
//! operator's certificate alone authenticates nobody (the admin API always
//! needs a token). So with `require_client_certificate`, an admin token is
//! accepted only with an operator's certificate.

use std::collections::HashMap;

use rustls::pki_types::CertificateDer;

use super::tokens::{Caller, Role};
use crate::{config::Config, domain::ReferrerId};

/// Whom a name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Named {
    Referrer(ReferrerId),
    Operator,
}

/// Client certificate DNS names → whom they name, from
/// `client_certificate_names` and `[tls] admin_certificate_names`.
#[derive(Debug, Default)]
pub struct ClientIdentities {
    by_name: HashMap<String, Named>,
}

/// Whom a verified client certificate names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A referrer, by the name that matched.
    Referrer(ReferrerId, String),
    /// An operator, by the name that matched.
    Operator(String),
    /// Nobody: no name is configured, or its names belong to two
    /// identities.
    Nobody,
}

impl ClientIdentities {
    pub fn new(config: &Config) -> ClientIdentities {
        let referrers = config.referrers.values().flat_map(|r| {
            r.client_certificate_names
                .iter()
                .map(|name| (name.to_ascii_lowercase(), Named::Referrer(r.id.clone())))
        });
        let operators = config
            .tls
            .iter()
            .flat_map(|tls| &tls.admin_certificate_names)
            .map(|name| (name.to_ascii_lowercase(), Named::Operator));
        ClientIdentities {
            by_name: referrers.chain(operators).collect(),
        }
    }

    /// Whom a connection's (already verified) end-entity client
    /// certificate, in DER, names.
    pub fn presented(&self, certificate: &[u8]) -> Presented {
        let der = CertificateDer::from(certificate);
        let Ok(certificate) = webpki::EndEntityCert::try_from(&der) else {
            return Presented::Nobody;
        };
        // Exact names, not `verify_is_valid_for_subject_name`, which would
        // let a wildcard certificate stand for every referrer under it.
        let mut found: Option<(&Named, &str)> = None;
        for name in certificate.valid_dns_names() {
            let Some((name, named)) = self.by_name.get_key_value(&name.to_ascii_lowercase()) else {
                continue;
            };
            match found {
                Some((first, _)) if first != named => {
                    tracing::warn!(
                        certificate_name = %name,
                        "client certificate names two identities; it authenticates nobody"
                    );
                    return Presented::Nobody;
                }
                Some(_) => {}
                None => found = Some((named, name)),
            }
        }
        match found {
            Some((Named::Referrer(id), name)) => Presented::Referrer(id.clone(), name.to_owned()),
            Some((Named::Operator, name)) => Presented::Operator(name.to_owned()),
            None => Presented::Nobody,
        }
    }
}

/// Why a certificate and a token may not go together.
#[derive(Debug, PartialEq, Eq)]
pub struct Mismatch;

/// The caller of a request that sent a token (`caller`) over a connection
/// that presented a certificate (`presented`): the same caller, its
/// certificate noted, when the certificate names the token's holder;
/// otherwise [`Mismatch`].
pub fn check_pair(mut caller: Caller, presented: &Presented) -> Result<Caller, Mismatch> {
    let name = match (presented, &caller.role) {
        (Presented::Referrer(id, name), Role::Referrer(token_for)) if id == token_for => name,
        (Presented::Operator(name), Role::Admin | Role::Monitor) => name,
        _ => return Err(Mismatch),
    };
    caller.certificate = Some(name.clone());
    Ok(caller)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            credential: "token:0123456789abcdef".into(),
            certificate: None,
            role,
        }
    }

    #[test]
    fn a_certificate_must_name_the_tokens_holder() {
        let riverside: ReferrerId = "riverside".parse().unwrap();
        let hillside: ReferrerId = "hillside".parse().unwrap();
        let riverside_certificate = Presented::Referrer(riverside.clone(), "r.example".into());
        let operator_certificate = Presented::Operator("ops.example".into());
        let paired = check_pair(
            caller(Role::Referrer(riverside.clone())),
            &riverside_certificate,
        )
        .unwrap();
        assert_eq!(paired.certificate.as_deref(), Some("r.example"));
        for (role, presented) in [
            (Role::Referrer(hillside), &riverside_certificate),
            (Role::Admin, &riverside_certificate),
            (Role::Monitor, &riverside_certificate),
            (Role::Admin, &Presented::Nobody),
            (Role::Referrer(riverside.clone()), &Presented::Nobody),
            (Role::Referrer(riverside), &operator_certificate),
        ] {
            assert_eq!(
                check_pair(caller(role.clone()), presented),
                Err(Mismatch),
                "{role:?} with {presented:?}"
            );
        }
        assert!(check_pair(caller(Role::Admin), &operator_certificate).is_ok());
    }
}
