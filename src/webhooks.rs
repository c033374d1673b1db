//! Signing and verifying webhooks the Standard Webhooks way
//! (<https://www.standardwebhooks.com/>).
//!
//! Every request Signpost sends to a provider or a referrer's callback
//! endpoint, and every status callback a provider sends back, carries three
//! headers: `webhook-id` (unique per message, the same on every retry),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`: one or more
//! space-separated `v1,<base64 HMAC-SHA256>` over `{id}.{timestamp}.{body}`,
//! keyed with the endpoint's shared secret `whsec_<base64>`.
//!
//! Secrets rotate with a grace period: until `previous_until`, Signpost signs
//! with both the new and the old secret (so an endpoint still holding the old
//! one keeps accepting) and accepts either on incoming requests.
//!
//! Key material never reaches a log or an error message: [`Secret`] prints
//! as `Secret(redacted)`, and errors describe the problem, not the input.

use std::{fmt, time::Duration};

// The `http` crate's header map (as reqwest re-exports it): the same type
// the HTTP layer hands over, without this module depending on axum.
use base64::{
    Engine as _,
    engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD},
};
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// How far `webhook-timestamp` may be from the current time, either way,
/// before a request is refused as a possible replay.
pub const TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Header carrying the message id.
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the Unix time of signing, in seconds.
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix of a serialized secret.
const SECRET_PREFIX: &str = "whsec_";
/// Version tag of an HMAC-SHA256 signature.
const SIGNATURE_VERSION: &str = "v1";
/// Accepted secret sizes, in bytes. The spec's own example is 24 bytes.
const SECRET_LEN: std::ops::RangeInclusive<usize> = 24..=64;
/// Size of a generated secret.
const GENERATED_LEN: usize = 32;

/// Standard base64, accepting input with or without `=` padding (other
/// implementations differ on whether they pad).
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A signing secret, `whsec_<base64>`. Debug and Display never show the key.
#[derive(Clone)]
pub struct Secret {
    key: Vec<u8>,
}

/// Why a text is not a signing secret. The messages never echo the text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a signing secret starts with `whsec_`")]
    MissingPrefix,
    #[error("the part after `whsec_` is not valid base64")]
    NotBase64,
    #[error("the key is {0} bytes; a signing secret holds 24 to 64 bytes")]
    BadLength(usize),
}

impl Secret {
    /// Read `whsec_<base64>`, ignoring surrounding whitespace (a secret file
    /// usually ends in a newline).
    pub fn parse(text: &str) -> Result<Secret, SecretError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = LENIENT_BASE64
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !SECRET_LEN.contains(&key.len()) {
            return Err(SecretError::BadLength(key.len()));
        }
        Ok(Secret { key })
    }

    /// A new secret of 32 bytes from the operating system's CSPRNG.
    ///
    /// # Panics
    /// If the operating system has no random source to offer, which leaves
    /// nothing safe to sign with.
    pub fn generate() -> Secret {
        let mut key = vec![0u8; GENERATED_LEN];
        getrandom::fill(&mut key).expect("the operating system's random number generator");
        Secret { key }
    }

    /// The serialized form, `whsec_<base64>`, to share with the endpoint.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// The HMAC of `{msg_id}.{timestamp}.{body}`, before finalisation.
    fn mac(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any size");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// One `v1,<base64>` signature.
    fn signature(&self, msg_id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = self.mac(msg_id, timestamp, body).finalize().into_bytes();
        format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

/// The keys of one endpoint: the current secret, and during a rotation's
/// grace period the previous one.
#[derive(Debug, Clone)]
pub struct SigningKeys {
    pub current: Secret,
    pub previous: Option<Secret>,
    /// End of the grace period (exclusive). `None` with a `previous` secret:
    /// the previous secret stays in use until it is removed from the
    /// configuration.
    pub previous_until: Option<DateTime<Utc>>,
}

/// Why an incoming webhook was refused. The messages are safe to show the
/// caller: they name the header, never a secret or an expected signature.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("the `{0}` header is missing or unreadable")]
    MissingHeader(&'static str),
    #[error("the `webhook-timestamp` header is not a Unix time in seconds")]
    BadTimestamp,
    #[error(
        "the `webhook-timestamp` header is more than 5 minutes away from the current time; sign each attempt afresh and check the sender's clock"
    )]
    TimestampOutsideTolerance,
    #[error(
        "no `webhook-signature` matches: expected `v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the shared secret"
    )]
    NoMatchingSignature,
}

impl SigningKeys {
    /// Keys with no rotation under way.
    pub fn new(current: Secret) -> SigningKeys {
        SigningKeys {
            current,
            previous: None,
            previous_until: None,
        }
    }

    /// The previous secret, if its grace period holds at `now`.
    fn previous_in_grace(&self, now: DateTime<Utc>) -> Option<&Secret> {
        let previous = self.previous.as_ref()?;
        match self.previous_until {
            Some(until) if now >= until => None,
            _ => Some(previous),
        }
    }

    /// The `webhook-signature` header value: `v1,<base64>` with the current
    /// secret, followed by ` v1,<base64>` with the previous one during the
    /// grace period.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8], now: DateTime<Utc>) -> String {
        let timestamp = timestamp.to_string();
        let mut header = self.current.signature(msg_id, &timestamp, body);
        if let Some(previous) = self.previous_in_grace(now) {
            header.push(' ');
            header.push_str(&previous.signature(msg_id, &timestamp, body));
        }
        header
    }

    /// Check the `webhook-id`, `webhook-timestamp` and `webhook-signature`
    /// headers of an incoming request: the timestamp within [`TOLERANCE`] of
    /// `now`, and at least one `v1,` signature made with the current secret
    /// or, during the grace period, the previous one. Returns the
    /// `webhook-id`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, VerifyError> {
        self.verify_body(&SignedHeaders::check(headers, now)?, body, now)
    }

    /// Whether one of the `signed` headers' signatures is `body`'s, made
    /// with the current secret or, during the grace period, the previous
    /// one. Returns the `webhook-id`.
    pub fn verify_body(
        &self,
        signed: &SignedHeaders<'_>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<String, VerifyError> {
        let keys = std::iter::once(&self.current).chain(self.previous_in_grace(now));
        for key in keys {
            let mac = key.mac(signed.msg_id, signed.timestamp, body);
            if signed
                .offered
                .iter()
                .any(|tag| mac.clone().verify_slice(tag).is_ok())
            {
                return Ok(signed.msg_id.to_owned());
            }
        }
        Err(VerifyError::NoMatchingSignature)
    }
}

/// The Standard Webhooks headers of an incoming request, checked as far as
/// they can be without the body: so that a request that cannot verify is
/// refused before its body is read.
#[derive(Debug)]
pub struct SignedHeaders<'a> {
    msg_id: &'a str,
    timestamp: &'a str,
    /// The `v1` signatures offered, decoded.
    offered: Vec<Vec<u8>>,
}

impl<'a> SignedHeaders<'a> {
    /// `webhook-id` present, `webhook-timestamp` a Unix time within
    /// [`TOLERANCE`] of `now`, and at least one well-formed `v1,`
    /// signature (base64 of an HMAC-SHA256) in `webhook-signature`.
    pub fn check(headers: &'a HeaderMap, now: DateTime<Utc>) -> Result<Self, VerifyError> {
        let msg_id = header_text(headers, HEADER_ID)?;
        let timestamp_text = header_text(headers, HEADER_TIMESTAMP)?;
        let timestamp: i64 = timestamp_text
            .parse()
            .map_err(|_| VerifyError::BadTimestamp)?;
        if now.timestamp().abs_diff(timestamp) > TOLERANCE.as_secs() {
            return Err(VerifyError::TimestampOutsideTolerance);
        }
        let mut signatures = headers.get_all(HEADER_SIGNATURE).iter().peekable();
        if signatures.peek().is_none() {
            return Err(VerifyError::MissingHeader(HEADER_SIGNATURE));
        }
        // Decode the offered signatures first; unknown versions are skipped,
        // as the spec asks, and so are tags of the wrong length (none could
        // match).
        let offered: Vec<Vec<u8>> = signatures
            .filter_map(|value| value.to_str().ok())
            .flat_map(str::split_ascii_whitespace)
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == SIGNATURE_VERSION)
            .filter_map(|(_, encoded)| LENIENT_BASE64.decode(encoded).ok())
            .filter(|tag| tag.len() == TAG_LEN)
            .collect();
        if offered.is_empty() {
            return Err(VerifyError::NoMatchingSignature);
        }
        Ok(SignedHeaders {
            msg_id,
            timestamp: timestamp_text,
            offered,
        })
    }
}

/// Bytes in an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// A header's value as text, trimmed; missing, empty or not visible ASCII
/// count as missing.
fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, VerifyError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingHeader(name))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::header::HeaderValue;

    use super::*;

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn at(ts: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(ts, 0).unwrap()
    }

    fn spec_keys() -> SigningKeys {
        SigningKeys::new(Secret::parse(SPEC_SECRET).unwrap())
    }

    fn headers(id: &str, ts: &str, signature: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_ID, HeaderValue::from_str(id).unwrap());
        headers.insert(HEADER_TIMESTAMP, HeaderValue::from_str(ts).unwrap());
        headers.insert(HEADER_SIGNATURE, HeaderValue::from_str(signature).unwrap());
        headers
    }

    fn spec_headers() -> HeaderMap {
        headers(SPEC_ID, &SPEC_TS.to_string(), SPEC_SIGNATURE)
    }

    #[test]
    fn signing_matches_the_published_vector() {
        let signature = spec_keys().sign(SPEC_ID, SPEC_TS, SPEC_BODY, at(SPEC_TS));
        assert_eq!(signature, SPEC_SIGNATURE);
    }

    #[test]
    fn verify_accepts_the_published_vector_and_returns_the_id() {
        let id = spec_keys().verify(&spec_headers(), SPEC_BODY, at(SPEC_TS));
        assert_eq!(id.as_deref(), Ok(SPEC_ID));
    }

    #[test]
    fn verify_rejects_a_changed_body() {
        let result = spec_keys().verify(&spec_headers(), br#"{"test": 2432232315}"#, at(SPEC_TS));
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_rejects_a_changed_id() {
        let h = headers(
            "msg_p5jXN8AQM9LWM0D4loKWxJeK",
            &SPEC_TS.to_string(),
            SPEC_SIGNATURE,
        );
        let result = spec_keys().verify(&h, SPEC_BODY, at(SPEC_TS));
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_rejects_a_changed_timestamp_within_tolerance() {
        let h = headers(SPEC_ID, &(SPEC_TS + 1).to_string(), SPEC_SIGNATURE);
        let result = spec_keys().verify(&h, SPEC_BODY, at(SPEC_TS));
        assert_eq!(result, Err(VerifyError::NoMatchingSignature));
    }

    #[test]
    fn verify_rejects_stale_and_future_timestamps() {
        let keys = spec_keys();
        let limit = TOLERANCE.as_secs() as i64;
        // At the edge of the tolerance: still fine both ways.
        assert!(
            keys.verify(&spec_headers(), SPEC_BODY, at(SPEC_TS + limit))
                .is_ok()
        );
        assert!(
            keys.verify(&spec_headers(), SPEC_BODY, at(SPEC_TS - limit))
                .is_ok()
        );
        // Stale: signed more than five minutes ago.
        assert_eq!(
            keys.verify(&spec_headers(), SPEC_BODY, at(SPEC_TS + limit + 1)),
            Err(VerifyError::TimestampOutsideTolerance)
        );
        // From the future.
        assert_eq!(
            keys.verify(&spec_headers(), SPEC_BODY, at(SPEC_TS - limit - 1)),
            Err(VerifyError::TimestampOutsideTolerance)
        );
    }

    #[test]
    fn verify_rejects_a_timestamp_that_is_not_a_number() {
        for bad in ["soon", "1614265330.5", "99999999999999999999"] {
            let h = headers(SPEC_ID, bad, SPEC_SIGNATURE);
            assert_eq!(
                spec_keys().verify(&h, SPEC_BODY, at(SPEC_TS)),
                Err(VerifyError::BadTimestamp),
                "{bad}"
            );
        }
    }

    #[test]
    fn verify_names_a_missing_header() {
        for name in [HEADER_ID, HEADER_TIMESTAMP, HEADER_SIGNATURE] {
            let mut h = spec_headers();
            h.remove(name);
            let err = spec_keys().verify(&h, SPEC_BODY, at(SPEC_TS)).unwrap_err();
            assert_eq!(err, VerifyError::MissingHeader(name));
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn verify_rejects_a_wrong_secret() {
        let keys = SigningKeys::new(Secret::generate());
        assert_eq!(
            keys.verify(&spec_headers(), SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn verify_finds_the_matching_signature_among_several_and_skips_other_versions() {
        let h = headers(
            SPEC_ID,
            &SPEC_TS.to_string(),
            &format!("v1a,abcd v1,bm90IGl0 garbage v1,!!! {SPEC_SIGNATURE}  v2,Zm9v"),
        );
        assert!(spec_keys().verify(&h, SPEC_BODY, at(SPEC_TS)).is_ok());
        let only_other_versions = headers(
            SPEC_ID,
            &SPEC_TS.to_string(),
            &SPEC_SIGNATURE.replacen("v1,", "v1a,", 1),
        );
        assert_eq!(
            spec_keys().verify(&only_other_versions, SPEC_BODY, at(SPEC_TS)),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn headers_that_cannot_verify_are_refused_without_the_body() {
        let now = at(SPEC_TS);
        assert!(SignedHeaders::check(&spec_headers(), now).is_ok());
        // No `v1` tag of an HMAC-SHA256's length: nothing could match.
        for signature in ["v1,Zm9yZ2Vk", "v2,Zm9v", "v1,!!!", "garbage"] {
            let h = headers(SPEC_ID, &SPEC_TS.to_string(), signature);
            assert_eq!(
                SignedHeaders::check(&h, now).unwrap_err(),
                VerifyError::NoMatchingSignature,
                "{signature}"
            );
        }
        let stale = headers(SPEC_ID, &(SPEC_TS - 301).to_string(), SPEC_SIGNATURE);
        assert_eq!(
            SignedHeaders::check(&stale, now).unwrap_err(),
            VerifyError::TimestampOutsideTolerance
        );
        let mut no_id = spec_headers();
        no_id.remove(HEADER_ID);
        assert_eq!(
            SignedHeaders::check(&no_id, now).unwrap_err(),
            VerifyError::MissingHeader(HEADER_ID)
        );
    }

    #[test]
    fn errors_do_not_reveal_the_expected_signature() {
        let err = SigningKeys::new(Secret::generate())
            .verify(&spec_headers(), SPEC_BODY, at(SPEC_TS))
            .unwrap_err()
            .to_string();
        assert!(!err.contains(SPEC_SIGNATURE), "{err}");
    }

    fn rotating(until: Option<i64>) -> (Secret, Secret, SigningKeys) {
        let old = Secret::generate();
        let new = Secret::generate();
        let keys = SigningKeys {
            current: new.clone(),
            previous: Some(old.clone()),
            previous_until: until.map(at),
        };
        (old, new, keys)
    }

    #[test]
    fn during_a_rotation_both_secrets_sign_until_the_grace_period_ends() {
        let until = SPEC_TS + 3600;
        let (old, new, keys) = rotating(Some(until));

        let during = keys.sign(SPEC_ID, SPEC_TS, SPEC_BODY, at(until - 1));
        let parts: Vec<&str> = during.split(' ').collect();
        assert_eq!(parts.len(), 2, "{during}");
        let ts = SPEC_TS.to_string();
        assert_eq!(parts[0], new.signature(SPEC_ID, &ts, SPEC_BODY));
        assert_eq!(parts[1], old.signature(SPEC_ID, &ts, SPEC_BODY));

        let after = keys.sign(SPEC_ID, SPEC_TS, SPEC_BODY, at(until));
        assert_eq!(after, new.signature(SPEC_ID, &ts, SPEC_BODY));
    }

    #[test]
    fn a_previous_secret_without_an_end_signs_always() {
        let (_, _, keys) = rotating(None);
        let signature = keys.sign(SPEC_ID, SPEC_TS, SPEC_BODY, at(i32::MAX as i64));
        assert_eq!(signature.split(' ').count(), 2);
    }

    #[test]
    fn verify_accepts_the_previous_secret_only_during_the_grace_period() {
        let until = SPEC_TS + 60;
        let (old, new, keys) = rotating(Some(until));
        let ts = SPEC_TS + 100;
        let signed_with = |secret: &Secret| {
            headers(
                SPEC_ID,
                &ts.to_string(),
                &SigningKeys::new(secret.clone()).sign(SPEC_ID, ts, SPEC_BODY, at(ts)),
            )
        };
        // The new secret works throughout.
        assert!(
            keys.verify(&signed_with(&new), SPEC_BODY, at(until - 1))
                .is_ok()
        );
        assert!(
            keys.verify(&signed_with(&new), SPEC_BODY, at(until + 1))
                .is_ok()
        );
        // The old one only before `until`.
        assert!(
            keys.verify(&signed_with(&old), SPEC_BODY, at(until - 1))
                .is_ok()
        );
        assert_eq!(
            keys.verify(&signed_with(&old), SPEC_BODY, at(until)),
            Err(VerifyError::NoMatchingSignature)
        );
    }

    #[test]
    fn debug_and_display_do_not_reveal_the_key() {
        let secret = Secret::parse(SPEC_SECRET).unwrap();
        let keys = SigningKeys {
            current: secret.clone(),
            previous: Some(secret.clone()),
            previous_until: None,
        };
        for text in [
            format!("{secret:?}"),
            format!("{secret}"),
            format!("{keys:?}"),
            format!("{keys:#?}"),
        ] {
            assert!(!text.contains("MfKQ9r8G"), "{text}");
            assert!(text.contains("Secret(redacted)"), "{text}");
        }
    }

    #[test]
    fn parse_round_trips_and_ignores_surrounding_whitespace() {
        let secret = Secret::parse(&format!("  {SPEC_SECRET}\n")).unwrap();
        assert_eq!(secret.to_whsec(), SPEC_SECRET);
        let generated = Secret::generate();
        let again = Secret::parse(&generated.to_whsec()).unwrap();
        assert_eq!(again.key, generated.key);
        assert_eq!(generated.key.len(), 32);
        // Unpadded base64 of a 32-byte key is accepted too.
        let unpadded = generated.to_whsec().trim_end_matches('=').to_owned();
        assert_eq!(Secret::parse(&unpadded).unwrap().key, generated.key);
    }

    #[test]
    fn generated_secrets_differ() {
        assert_ne!(Secret::generate().key, Secret::generate().key);
    }

    #[test]
    fn parse_refuses_malformed_secrets_without_echoing_them() {
        let cases = [
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::MissingPrefix,
            ),
            (
                "whsek_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::MissingPrefix,
            ),
            (
                "whsec_MfKQ9r8G*YqrTwjUPD8ILPZIo2LaLaSw",
                SecretError::NotBase64,
            ),
            ("whsec_", SecretError::BadLength(0)),
            ("whsec_c2hvcnQ=", SecretError::BadLength(5)),
            (
                &format!("whsec_{}", STANDARD.encode([7u8; 65])),
                SecretError::BadLength(65),
            ),
        ];
        for (text, expected) in cases {
            let err = Secret::parse(text).err();
            assert_eq!(err.as_ref(), Some(&expected), "{text}");
            let message = expected.to_string();
            assert!(!message.contains("MfKQ9r8G") && !message.contains("c2hvcnQ"));
        }
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 64]))).is_ok());
        assert!(Secret::parse(&format!("whsec_{}", STANDARD.encode([7u8; 24]))).is_ok());
    }
}
