//! Time-based one-time passwords (RFC 6238, with the defaults every
//! authenticator app uses: HMAC-SHA1, 30-second steps, 6 digits), on the
//! HMAC and SHA-1 crates the gateway already has. The secret is 20 random
//! bytes, shown to the user as unpadded base32 (RFC 4648).

use hmac::{KeyInit, Mac};

/// Seconds per time step.
pub const STEP_SECONDS: i64 = 30;
/// Steps either side of now a code may come from (clock drift, typing time).
const DRIFT_STEPS: i64 = 1;

/// A new secret, as base32 text.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    data_encoding::BASE32_NOPAD.encode(&bytes)
}

/// The time step of a Unix time in milliseconds.
pub fn step_at(unix_millis: i64) -> i64 {
    unix_millis.div_euclid(1000).div_euclid(STEP_SECONDS)
}

/// The 6-digit code for `step` (RFC 4226 HOTP with the step as counter).
pub fn code(secret: &[u8], step: i64) -> String {
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let value = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!("{:06}", value % 1_000_000)
}

/// The step whose code `entered` is, within the drift allowed around
/// `now_millis`; `None` when it is none of them (or the secret is not
/// base32). Spaces in what was typed are ignored.
pub fn matching_step(secret_base32: &str, entered: &str, now_millis: i64) -> Option<i64> {
    let secret = data_encoding::BASE32_NOPAD
        .decode(secret_base32.as_bytes())
        .ok()?;
    let entered: String = entered.chars().filter(|c| !c.is_whitespace()).collect();
    if entered.len() != 6 || !entered.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(now_millis);
    (now - DRIFT_STEPS..=now + DRIFT_STEPS).find(|&step| {
        let expected = code(&secret, step);
        // Constant time: compare every byte.
        expected
            .bytes()
            .zip(entered.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    })
}

/// The `otpauth://` URI authenticator apps read from the QR code.
pub fn provisioning_uri(secret_base32: &str, account: &str) -> String {
    let label: String =
        url::form_urlencoded::byte_serialize(format!("Signpost:{account}").as_bytes())
            .collect::<String>()
            .replace('+', "%20");
    format!(
        "otpauth://totp/{label}?secret={secret_base32}&issuer=Signpost&algorithm=SHA1&digits=6&period={STEP_SECONDS}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (8 digits there; the last 6 here).
    #[test]
    fn rfc_6238_test_vectors() {
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59i64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code(secret, step_at(time * 1000)), eight[2..], "T = {time}");
        }
    }

    #[test]
    fn a_code_matches_within_one_step_either_side_only() {
        let secret = new_secret();
        let raw = data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .unwrap();
        let now = 1_700_000_000_000;
        let step = step_at(now);
        assert_eq!(matching_step(&secret, &code(&raw, step), now), Some(step));
        assert_eq!(
            matching_step(&secret, &code(&raw, step - 1), now),
            Some(step - 1)
        );
        assert_eq!(matching_step(&secret, &code(&raw, step + 2), now), None);
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }
}
