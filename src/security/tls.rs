//! Serving HTTPS, and mutual TLS for practice systems that authenticate
//! with a client certificate instead of a bearer token: the rustls server
//! configuration for `[tls]`.
//!
//! `[tls]` names the server's certificate chain and key. With `client_ca`,
//! the handshake asks for a client certificate and rustls verifies it
//! against that CA (chain, validity dates, key usage) and, with
//! `client_crl`, against that file's revocation lists (read once at
//! start-up: a new list takes effect on restart); a certificate that does
//! not verify, or is revoked, ends the handshake. Whom a verified
//! certificate names is [`super::client_certs`]' business.

use std::{path::Path, sync::Arc};

use anyhow::Context;
use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::config::Tls;

/// The rustls server configuration for `[tls]`.
pub fn server_config(tls: &Tls) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = certificates(&tls.certificate, "tls.certificate")?;
    let key = PrivateKeyDer::from_pem_file(&tls.private_key).with_context(|| {
        format!(
            "`tls.private_key`: cannot read a PEM private key from {}",
            tls.private_key.display()
        )
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for certificate in certificates(path, "tls.client_ca")? {
                roots.add(certificate).with_context(|| {
                    format!("`tls.client_ca`: {} holds an unusable CA", path.display())
                })?;
            }
            let mut verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if let Some(path) = &tls.client_crl {
                verifier = verifier.with_crls(revocation_lists(path)?);
            }
            let verifier = if tls.require_client_certificate {
                verifier
            } else {
                // Bearer-token clients share the port.
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(verifier.build().context("`tls.client_ca`")?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).with_context(|| {
        format!(
            "`tls.private_key`: {} does not match `tls.certificate`",
            tls.private_key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn revocation_lists(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    let read = || -> Result<Vec<_>, rustls::pki_types::pem::Error> {
        CertificateRevocationListDer::pem_file_iter(path)?.collect()
    };
    let lists = read().with_context(|| {
        format!(
            "`tls.client_crl`: cannot read PEM revocation lists from {}",
            path.display()
        )
    })?;
    anyhow::ensure!(
        !lists.is_empty(),
        "`tls.client_crl`: {} holds no PEM revocation list (X509 CRL)",
        path.display()
    );
    Ok(lists)
}

fn certificates(path: &Path, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let read = || -> Result<Vec<_>, rustls::pki_types::pem::Error> {
        CertificateDer::pem_file_iter(path)?.collect()
    };
    let chain = read().with_context(|| {
        format!(
            "`{key}`: cannot read PEM certificates from {}",
            path.display()
        )
    })?;
    anyhow::ensure!(
        !chain.is_empty(),
        "`{key}`: {} holds no PEM certificate",
        path.display()
    );
    Ok(chain)
}
