//! NHS numbers: ten digits, the last a Modulus 11 check digit over the first
//! nine (weights 10 down to 2). A remainder giving 10 means the number was
//! never issued.

/// Whether `value` is a well-formed NHS number with a valid check digit.
pub fn is_valid(value: &str) -> bool {
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
    use super::is_valid;

    #[test]
    fn published_examples_are_valid() {
        for n in ["9434765919", "9000000009", "9999999999", "4010232137"] {
            assert!(is_valid(n), "{n}");
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
            assert!(!is_valid(n), "{n}");
        }
    }
}
