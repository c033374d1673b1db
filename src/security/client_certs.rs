//! Which referrer a client certificate stands for (mutual TLS; see
//! [`super::tls`] for the handshake that verifies the certificate first).
//!
//! A verified certificate authenticates as the referrer whose
//! `client_certificate_names` lists one of the DNS names in its subject
//! alternative names. Names are compared exactly (no wildcards): a
//! certificate for `*.example.nhs.uk` is nobody.

use std::collections::HashMap;

use rustls::pki_types::CertificateDer;

use crate::{config::Config, domain::ReferrerId};

/// Client certificate DNS names → referrer id, from
/// `client_certificate_names`.
#[derive(Debug, Default)]
pub struct ClientIdentities {
    by_name: HashMap<String, ReferrerId>,
}

impl ClientIdentities {
    pub fn new(config: &Config) -> ClientIdentities {
        ClientIdentities {
            by_name: config
                .referrers
                .values()
                .flat_map(|r| {
                    r.client_certificate_names
                        .iter()
                        .map(|name| (name.to_ascii_lowercase(), r.id.clone()))
                })
                .collect(),
        }
    }

    /// The referrer a connection's (already verified) end-entity client
    /// certificate, in DER, authenticates, with the name that matched.
    pub fn referrer(&self, certificate: &[u8]) -> Option<(&ReferrerId, &str)> {
        let der = CertificateDer::from(certificate);
        let certificate = webpki::EndEntityCert::try_from(&der).ok()?;
        // Exact names, not `verify_is_valid_for_subject_name`, which would
        // let a wildcard certificate stand for every referrer under it.
        certificate.valid_dns_names().find_map(|name| {
            self.by_name
                .get_key_value(&name.to_ascii_lowercase())
                .map(|(name, referrer)| (referrer, name.as_str()))
        })
    }
}
