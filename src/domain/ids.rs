//! Typed ids. A referral, a Task and an outbox message each get an id that
//! Signpost makes (time-ordered UUIDs); providers and referrers get theirs
//! from configuration. Mixing one up with another no longer compiles.

use std::{fmt, str::FromStr, sync::Arc};

use serde::{Deserialize, Serialize};

use super::stored_as_text;

/// An id that does not follow its rule; names the kind of id, never the
/// value (which may have come from a client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {0}")]
pub struct IdError(pub &'static str);

/// FHIR's `id` rule: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The configuration's rule for provider and referrer ids, which appear in
/// URLs, endpoint names and FHIR references: 1 to 64 of `a-z 0-9 -`.
pub(crate) fn is_config_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A Standard Webhooks message id as Signpost makes them: `msg_` and a
/// time-ordered UUID's 32 hex digits.
fn is_message_id(text: &str) -> bool {
    text.strip_prefix("msg_").is_some_and(|rest| {
        (1..=60).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(Arc<str>);

        impl $name {
            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                if $rule(text) {
                    Ok(Self(Arc::from(text)))
                } else {
                    Err(IdError($what))
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(text: String) -> Result<Self, IdError> {
                text.parse()
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0.as_ref().to_owned()
            }
        }

        /// Sound: the id's `Eq`, `Ord` and `Hash` are its text's, so a map
        /// keyed by the id can be searched with a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                &*self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                &*self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &*self.0 == other.as_str()
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                self.as_str() == &*other.0
            }
        }

        stored_as_text!($name);
    };
}

id_type!(
    /// A referral: the stored ServiceRequest's FHIR id.
    ReferralId, "referral id", is_fhir_id
);
id_type!(
    /// The Task that tracks a referral: its FHIR id.
    TaskId, "Task id", is_fhir_id
);
id_type!(
    /// An outbox message: the `webhook-id` sent on every attempt.
    MessageId, "message id", is_message_id
);
id_type!(
    /// A community provider, as configured (`[providers.<id>]`).
    ProviderId, "provider id", is_config_id
);
id_type!(
    /// A referrer (a practice system), as configured (`[referrers.<id>]`).
    ReferrerId, "referrer id", is_config_id
);
id_type!(
    /// A clinical service that receives escalations, as configured
    /// (`[clinical_services.<id>]`).
    ClinicalServiceId, "clinical service id", is_config_id
);

impl ReferralId {
    /// A new, time-ordered referral id.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().to_string()))
    }
}

impl TaskId {
    /// A new, time-ordered Task id.
    pub fn generate() -> Self {
        Self(Arc::from(uuid::Uuid::now_v7().to_string()))
    }
}

impl MessageId {
    /// A new message id: `msg_` and a time-ordered UUID, so ids sort in the
    /// order they were made.
    pub fn generate() -> Self {
        Self(Arc::from(format!("msg_{}", uuid::Uuid::now_v7().simple())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_follow_their_own_rules() {
        for _ in 0..3 {
            let referral = ReferralId::generate();
            assert_eq!(referral.as_str().parse::<ReferralId>(), Ok(referral));
            let message = MessageId::generate();
            assert!(message.as_str().starts_with("msg_"), "{message}");
            assert_eq!(message.as_str().parse::<MessageId>(), Ok(message));
        }
        let (a, b) = (MessageId::generate(), MessageId::generate());
        assert!(a < b, "message ids are time-ordered: {a} then {b}");
    }

    #[test]
    fn ids_breaking_their_rule_are_refused_without_quoting_them() {
        for bad in ["", "Riverside", "a b", "x_y", &"a".repeat(65)] {
            let error = bad.parse::<ProviderId>().unwrap_err();
            assert_eq!(error.to_string(), "not a valid provider id");
        }
        assert!("riverside-surgery".parse::<ReferrerId>().is_ok());
        for bad in ["", "a/b", "a b", &"a".repeat(65)] {
            assert!(bad.parse::<ReferralId>().is_err(), "{bad:?}");
        }
        assert!("A-1.b".parse::<TaskId>().is_ok());
        for bad in ["msg_", "abc", "msg_a-b", "MSG_abc"] {
            assert!(bad.parse::<MessageId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_map_keyed_by_ids_is_searched_with_text() {
        let mut map = std::collections::BTreeMap::new();
        map.insert("activelives".parse::<ProviderId>().unwrap(), 1);
        assert_eq!(map.get("activelives"), Some(&1));
        assert_eq!(map.get("greenspace"), None);
    }

    #[test]
    fn ids_travel_through_serde_as_plain_strings_and_are_checked() {
        let id: ProviderId = serde_json::from_str("\"activelives\"").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "\"activelives\"");
        assert!(serde_json::from_str::<ProviderId>("\"Active Lives\"").is_err());
    }
}
