//! Text shown to people (CLI output, admin views): characters that change
//! how text around them is displayed without being seen themselves are
//! written visibly as `\uXXXX`. A patient or organisation name holding a
//! right-to-left override (U+202E) could otherwise show an operator
//! something other than what is stored, and a zero-width space makes two
//! different names look the same.

use std::borrow::Cow;

use serde_json::Value;

/// Bidirectional controls and zero-width characters.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{061C}'              // Arabic letter mark
        | '\u{200B}'..='\u{200F}' // zero-width space, (non-)joiner, LRM, RLM
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{2064}' // word joiner, invisible operators
        | '\u{2066}'..='\u{2069}' // isolates
        | '\u{FEFF}'              // zero-width no-break space
    )
}

/// `text` with every invisible character written as `\uXXXX`.
pub fn escape_invisible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_invisible) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_invisible(c) {
            out.push_str(&format!("\\u{:04X}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `value` as pretty JSON in which invisible characters are JSON escapes
/// (`\u202E`): the same data to a JSON reader, visible to a person.
pub fn visible_json(value: &Value) -> String {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    // They can only occur inside JSON strings, where `\uXXXX` means them.
    escape_invisible(&text).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bidi_and_zero_width_characters_are_shown_escaped() {
        let name = "Maureen\u{202E}rehtorbriaF\u{200B}";
        assert_eq!(
            escape_invisible(name),
            "Maureen\\u202Erehtorbriaf\\u200B".replace("rehtorbriaf", "rehtorbriaF")
        );
        let json = visible_json(&serde_json::json!({ "family": name }));
        assert!(!json.chars().any(is_invisible), "{json}");
        let back: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back["family"], name, "the escapes are JSON: same data");
        assert_eq!(escape_invisible("Ordinary, café"), "Ordinary, café");
    }
}
