//! What the portal shows of a referral: exactly what the provider's
//! mapping would send it (the payload rendered from the stored
//! ServiceRequest with the provider's current mapping), never more.
//! Each field of the payload becomes a labelled row; nested objects
//! become sections.

use serde_json::Value;

/// One labelled value, or a titled group of them.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Value { label: String, text: String },
    Group { label: String, fields: Vec<Field> },
}

/// The payload's fields, labelled.
pub fn fields(payload: &Value) -> Vec<Field> {
    match payload {
        Value::Object(map) => map
            .iter()
            .filter_map(|(key, value)| field(&label(key), value))
            .collect(),
        other => field("Details", other).into_iter().collect(),
    }
}

fn field(label: &str, value: &Value) -> Option<Field> {
    match value {
        Value::Null => None,
        Value::Object(_) => Some(Field::Group {
            label: label.to_owned(),
            fields: fields(value),
        }),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            let texts: Vec<String> = items.iter().filter_map(scalar).collect();
            (!texts.is_empty()).then(|| Field::Value {
                label: label.to_owned(),
                text: texts.join("\n"),
            })
        }
        Value::Array(items) => Some(Field::Group {
            label: label.to_owned(),
            fields: items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| field(&format!("{label} {}", i + 1), item))
                .collect(),
        }),
        other => scalar(other).map(|text| Field::Value {
            label: label.to_owned(),
            text,
        }),
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(true) => Some("Yes".into()),
        Value::Bool(false) => Some("No".into()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A key as a label: known abbreviations spelled out, `snake_case` and
/// `camelCase` as words, the first letter capital.
pub fn label(key: &str) -> String {
    let known = match key.to_ascii_lowercase().replace(['_', '-'], "").as_str() {
        "nhs" | "nhsnumber" | "nhsno" => Some("NHS number"),
        "dob" | "dateofbirth" | "birthdate" => Some("Date of birth"),
        "ref" | "reference" | "referralref" | "externalid" => Some("Reference"),
        "ods" | "practiceods" => Some("ODS code"),
        "why" => Some("Why they were referred"),
        _ => None,
    };
    if let Some(known) = known {
        return known.to_owned();
    }
    let mut words = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if c == '_' || c == '-' {
            words.push(' ');
            previous_lower = false;
        } else if c.is_uppercase() && previous_lower {
            words.push(' ');
            words.extend(c.to_lowercase());
            previous_lower = false;
        } else {
            words.push(c);
            previous_lower = c.is_lowercase();
        }
    }
    let mut chars = words.trim().chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The person's name as the payload gives it: a `name` text, or the
/// first/given and last/family names found, searched depth first.
pub fn person_name(payload: &Value) -> Option<String> {
    fn find<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a str> {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    let key = key.to_ascii_lowercase().replace('_', "");
                    if keys.contains(&key.as_str())
                        && let Some(text) = v.as_str()
                    {
                        return Some(text);
                    }
                }
                map.values().find_map(|v| find(v, keys))
            }
            _ => None,
        }
    }
    let given = find(payload, &["givenname", "firstname", "first", "given"]);
    let family = find(
        payload,
        &["familyname", "lastname", "last", "family", "surname"],
    );
    match (given, family) {
        (Some(g), Some(f)) => Some(format!("{g} {f}")),
        _ => find(payload, &["name", "fullname"]).map(str::to_owned),
    }
}

/// Whether the payload flags a safeguarding concern (a field whose name
/// mentions safeguarding, set to something other than false or empty).
pub fn safeguarding(payload: &Value) -> bool {
    match payload {
        Value::Object(map) => map.iter().any(|(key, value)| {
            (key.to_ascii_lowercase().contains("safeguard")
                && !matches!(value, Value::Null | Value::Bool(false))
                && value.as_str() != Some(""))
                || safeguarding(value)
        }),
        Value::Array(items) => items.iter().any(safeguarding),
        _ => false,
    }
}

/// Whether a search matches: the words of `query` all appear in the
/// payload's text or the reference, ignoring case, and digits also with
/// spaces ignored (an NHS number typed "999 123 4567" or "9991234567").
pub fn matches(query: &str, reference: &str, payload: &Value) -> bool {
    let query = query.trim().to_lowercase();
    if query.is_empty() {
        return true;
    }
    let mut text = reference.to_lowercase();
    collect_text(payload, &mut text);
    let digits_of = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let query_digits = digits_of(&query);
    if query_digits.len() >= 6
        && query_digits.len() == query.chars().filter(|c| !c.is_whitespace()).count()
    {
        // Field by field, so digits of neighbouring fields never join up.
        return text
            .lines()
            .any(|field| digits_of(field).contains(&query_digits));
    }
    query.split_whitespace().all(|word| text.contains(word))
}

fn collect_text(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push('\n');
            out.push_str(&s.to_lowercase());
        }
        Value::Number(n) => {
            out.push('\n');
            out.push_str(&n.to_string());
        }
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out)),
        Value::Object(map) => map.values().for_each(|v| collect_text(v, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn labels_read_as_words() {
        assert_eq!(label("nhs"), "NHS number");
        assert_eq!(label("date_of_birth"), "Date of birth");
        assert_eq!(label("clinician_role"), "Clinician role");
        assert_eq!(label("opened_by"), "Opened by");
        assert_eq!(label("birthDate"), "Date of birth");
        assert_eq!(label("referredOn"), "Referred on");
    }

    #[test]
    fn names_and_searches_come_from_the_payload() {
        let flat = json!({"name": "Tomasz Nowak", "nhs": "999 651 3742"});
        let nested = json!({"participant": {"given_name": "Maureen", "family_name": "Fairbrother", "nhs_number": "9990124833"}});
        assert_eq!(person_name(&flat).as_deref(), Some("Tomasz Nowak"));
        assert_eq!(person_name(&nested).as_deref(), Some("Maureen Fairbrother"));
        assert!(matches("nowak", "r1", &flat));
        assert!(matches("9996513742", "r1", &flat));
        assert!(matches("999 012 4833", "r1", &nested));
        assert!(!matches("9990124833", "r1", &flat));
        assert!(matches("R1", "r1", &flat));
    }
}
