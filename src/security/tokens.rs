//! Who is calling: bearer tokens for referrers (practice systems),
//! providers that collect from their inbox, operators (admins) and metrics
//! scrapers (monitors), and the [`Caller`]
//! they authenticate as. (A referrer may also authenticate with a client
//! certificate over mutual TLS, see [`super::client_certs`]; the HTTP
//! layer's extractors decide which applies.)
//!
//! A token reads `sp_<id>_<secret>`: `id` (16 hex digits) finds its row,
//! `secret` (32 random bytes, base64url) proves possession. Only a salted
//! HMAC-SHA256 of the secret is stored, and it is compared in constant
//! time. The secret has 256 bits of entropy, so a slow password hash
//! (argon2) would add nothing but latency to every request: nobody can
//! guess a secret, and the hash is useless without it. The token is shown
//! once, by `signpost tokens create`, and never logged.

use base64::{
    Engine as _,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use chrono::{SecondsFormat, Utc};
use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::{
    domain::{Actor, ProviderId, ReferrerId},
    store::{StoreError, Token, TokenStore},
};

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a token allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A referring organisation: sends referrals, sees only its own.
    Referrer(ReferrerId),
    /// A community provider collecting its referrals: its own inbox and
    /// status endpoints only (`signpost tokens create --provider ID`).
    Provider(ProviderId),
    /// A clinical service (`[clinical_services.<id>]`): reads and
    /// acknowledges the escalations sent to it, nothing else
    /// (`signpost tokens create --clinical-service ID`).
    ClinicalService(crate::domain::ClinicalServiceId),
    /// An operator: the `/admin` API and every referral.
    Admin,
    /// A metrics scraper: `GET /metrics` only (so that Prometheus never
    /// holds a token that can read or erase referrals).
    Monitor,
    /// A commissioner's or PCN's analyst: the suppressed reports only
    /// (`/reports`, the funnel Measure and its MeasureReports); every other
    /// FHIR resource and the admin API are refused.
    Analyst,
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// What authenticated the call, for logs, rate limits and the audit
    /// trail: `token:<id>` (the token's public id) or `certificate:<name>`.
    pub credential: String,
    /// The client certificate name presented with a token over mutual TLS
    /// (see [`super::client_certs::check_pair`]).
    pub certificate: Option<String>,
    pub role: Role,
}

impl Caller {
    /// The referrer this caller acts for, if a referrer.
    pub fn referrer(&self) -> Option<&str> {
        match &self.role {
            Role::Referrer(id) => Some(id.as_str()),
            Role::Provider(_)
            | Role::ClinicalService(_)
            | Role::Admin
            | Role::Monitor
            | Role::Analyst => None,
        }
    }

    /// Everything that authenticated the call, for the audit trail:
    /// `token:<id>`, `certificate:<name>`, or both
    /// (`token:<id> certificate:<name>`).
    pub fn credentials(&self) -> String {
        match &self.certificate {
            Some(name) => format!("{} certificate:{name}", self.credential),
            None => self.credential.clone(),
        }
    }

    /// The caller's name in the audit trail: `referrer:<id>`, or
    /// `admin:`/`monitor:` and the credential (operators are told apart by
    /// their tokens).
    pub fn actor(&self) -> Actor {
        match &self.role {
            Role::Referrer(id) => Actor::Referrer(id.clone()),
            Role::Provider(id) => Actor::Provider(id.clone()),
            Role::ClinicalService(id) => Actor::ClinicalService(id.clone()),
            Role::Admin => Actor::Admin(self.credential.clone()),
            Role::Monitor => Actor::Monitor(self.credential.clone()),
            Role::Analyst => Actor::Analyst(self.credential.clone()),
        }
    }
}

/// A newly issued token: the text to hand over (once) and the row to store.
pub struct Issued {
    pub token: String,
    pub row: Token,
}

/// Issue a token for `role`.
pub fn issue(role: &Role) -> Issued {
    let id: String = random::<8>().iter().map(|b| format!("{b:02x}")).collect();
    let secret = URL_SAFE_NO_PAD.encode(random::<32>());
    let salt = random::<16>();
    let (role_name, referrer_id, provider_id, clinical_service_id) = match role {
        Role::Referrer(id) => ("referrer", Some(id.clone()), None, None),
        Role::Provider(id) => ("provider", None, Some(id.clone()), None),
        Role::ClinicalService(id) => ("clinical-service", None, None, Some(id.clone())),
        Role::Admin => ("admin", None, None, None),
        Role::Monitor => ("monitor", None, None, None),
        Role::Analyst => ("analyst", None, None, None),
    };
    Issued {
        token: format!("sp_{id}_{secret}"),
        row: Token {
            id,
            role: role_name.into(),
            referrer_id,
            provider_id,
            clinical_service_id,
            salt: STANDARD.encode(salt),
            hash: STANDARD.encode(digest(&salt, secret.as_bytes()).finalize().into_bytes()),
            created_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            revoked_at: None,
        },
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    bytes
}

fn digest(salt: &[u8], secret: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(secret);
    mac
}

/// Why a request is not authenticated. The client is told only "missing"
/// (no credentials at all) or "invalid": an unknown, wrong and revoked
/// token look the same. When the token cannot be looked up (the database
/// is unavailable) nothing is known of it: that is
/// [`AuthError::Unavailable`], a `503`, never a refusal of the credential.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Invalid,
    Unavailable,
}

/// The caller presenting `token` (`sp_<id>_<secret>`, as sent in
/// `Authorization: Bearer <token>`). An unknown, wrong or revoked token is
/// [`AuthError::Invalid`], alike.
pub async fn authenticate(store: &dyn TokenStore, token: &str) -> Result<Caller, AuthError> {
    let (id, secret) = token
        .strip_prefix("sp_")
        .and_then(|t| t.split_once('_'))
        .filter(|(id, _)| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or(AuthError::Invalid)?;
    let row = store.token(id).await.map_err(|e| {
        tracing::warn!(error = %e, token_id = id, "cannot look up a token; answering 503");
        AuthError::Unavailable
    })?;
    // Compute the HMAC whether or not the id exists, so that timing does not
    // tell a wrong secret from an unknown id.
    let (salt, expected) = match &row {
        Some(row) => (
            STANDARD.decode(&row.salt).unwrap_or_default(),
            STANDARD.decode(&row.hash).unwrap_or_default(),
        ),
        None => (vec![0u8; 16], vec![0u8; 32]),
    };
    let matches = digest(&salt, secret.as_bytes())
        .verify_slice(&expected)
        .is_ok();
    match row {
        Some(row) if matches && row.revoked_at.is_none() => Ok(Caller {
            certificate: None,
            credential: format!("token:{}", row.id),
            role: match (row.referrer_id, row.provider_id) {
                _ if row.role == "clinical-service" => match row.clinical_service_id {
                    Some(id) => Role::ClinicalService(id),
                    None => return Err(AuthError::Invalid),
                },
                // (Tokens are issued only to configured referrers and
                // providers.)
                (Some(referrer), _) if row.role == "referrer" => Role::Referrer(referrer),
                (_, Some(provider)) if row.role == "provider" => Role::Provider(provider),
                _ if row.role == "admin" => Role::Admin,
                _ if row.role == "monitor" => Role::Monitor,
                _ if row.role == "analyst" => Role::Analyst,
                _ => return Err(AuthError::Invalid),
            },
        }),
        _ => Err(AuthError::Invalid),
    }
}

/// Unrevoked referrer tokens whose referrer is not `configured` (any
/// more): they are refused, and start-up warns about each, by id.
pub fn orphaned(tokens: &[Token], configured: impl Fn(&ReferrerId) -> bool) -> Vec<&Token> {
    tokens
        .iter()
        .filter(|t| t.revoked_at.is_none())
        .filter(|t| t.referrer_id.as_ref().is_some_and(|r| !configured(r)))
        .collect()
}

/// Revoke a token by id.
pub async fn revoke(store: &dyn TokenStore, id: &str) -> Result<bool, StoreError> {
    store
        .revoke_token(id, &Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_against_its_stored_hash_and_nothing_else() {
        let issued = issue(&Role::Referrer("r".parse().unwrap()));
        let (id, secret) = issued.token["sp_".len()..].split_once('_').unwrap();
        assert_eq!(id, issued.row.id);
        let salt = STANDARD.decode(&issued.row.salt).unwrap();
        let hash = STANDARD.decode(&issued.row.hash).unwrap();
        assert!(digest(&salt, secret.as_bytes()).verify_slice(&hash).is_ok());
        assert!(digest(&salt, b"guess").verify_slice(&hash).is_err());
        assert!(
            !issued.row.hash.contains(secret),
            "the secret is not stored"
        );
        assert!(!format!("{:?}", issued.row).contains(&issued.row.hash));
        // Two tokens never share an id, salt or secret.
        let other = issue(&Role::Admin);
        assert_ne!(other.row.id, issued.row.id);
        assert_ne!(other.row.salt, issued.row.salt);
    }

    #[test]
    fn tokens_of_referrers_no_longer_configured_are_found_unless_revoked() {
        let kept = issue(&Role::Referrer("kept".parse().unwrap())).row;
        let gone = issue(&Role::Referrer("gone".parse().unwrap())).row;
        let mut revoked = issue(&Role::Referrer("gone".parse().unwrap())).row;
        revoked.revoked_at = Some("2026-01-01T00:00:00Z".into());
        let admin = issue(&Role::Admin).row;
        let tokens = [kept, gone.clone(), revoked, admin];
        let found = orphaned(&tokens, |r| r.as_str() == "kept");
        assert_eq!(found, vec![&gone]);
    }
}
