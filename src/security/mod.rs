//! The security core, free of HTTP: who a caller is ([`tokens`],
//! [`client_certs`]), what it may see or change ([`authz`]), how fast it
//! may ask ([`rate_limit`]), where Signpost may send data ([`egress`]), and
//! the TLS server configuration ([`tls`]). Webhook signing
//! ([`crate::webhooks`]) and the public-address rule ([`crate::addresses`])
//! are leaves beside it, because the configuration needs them too and this
//! module reads the configuration. The HTTP layer (`crate::http`) turns these into
//! extractors and middleware; the CLI and the delivery worker use them
//! directly.

pub mod authz;
pub mod client_certs;
pub mod egress;
pub mod rate_limit;
pub mod tls;
pub mod tokens;
