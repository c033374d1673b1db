//! NHS numbers: ten digits, the last a Modulus 11 check digit over the first
//! nine (weights 10 down to 2). A remainder giving 10 means the number was
//! never issued.

use std::{fmt, str::FromStr};

/// A number that is not a valid NHS number. It never quotes the value: an
/// NHS number is patient data, and must not reach a log or an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid NHS number (ten digits with a valid check digit)")]
pub struct InvalidNhsNumber;

/// A valid NHS number; the only way to make one is [`NhsNumber::parse`].
/// Its `Debug` hides the digits, so one in a logged struct leaks nothing.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Checks the length, the digits and the check digit.
    pub fn parse(text: &str) -> Result<Self, InvalidNhsNumber> {
        if is_valid(text) {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidNhsNumber)
        }
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NhsNumber {
    type Err = InvalidNhsNumber;
    fn from_str(text: &str) -> Result<Self, InvalidNhsNumber> {
        Self::parse(text)
    }
}

impl fmt::Debug for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NhsNumber(<redacted>)")
    }
}

/// Whether `value` is a well-formed NHS number with a valid check digit.
pub(crate) fn is_valid(value: &str) -> bool {
    let digits: Vec<u32> = value.chars().filter_map(|c| c.to_digit(10)).collect();
    if value.len() != 10 || digits.len() != 10 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip((2..=10).rev())
        .map(|(d, w)| d * w)
        .sum();
    match 11 - sum % 11 {
        11 => digits[9] == 0,
        10 => false,
        check => digits[9] == check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_examples_are_valid() {
        for n in ["9434765919", "9000000009", "9999999999", "4010232137"] {
            assert_eq!(
                NhsNumber::parse(n).map(|n| n.as_str().to_owned()),
                Ok(n.to_owned())
            );
        }
    }

    #[test]
    fn wrong_check_digits_lengths_and_characters_are_invalid() {
        for n in [
            "9434765918",
            "943476591",
            "94347659190",
            "943 476 5919",
            "94347659x9",
            "",
            // remainder 1 gives check 10: never issued
            "1000000012",
        ] {
            assert_eq!(NhsNumber::parse(n), Err(InvalidNhsNumber), "{n}");
        }
    }

    #[test]
    fn neither_the_error_nor_debug_shows_the_digits() {
        let number = NhsNumber::parse("9434765919").unwrap();
        assert!(!format!("{number:?}").contains("9434765919"));
        let error = NhsNumber::parse("9434765918").unwrap_err();
        assert!(!error.to_string().contains("943"));
    }
}
