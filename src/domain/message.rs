//! What an outbox message is (its kind) and where it stands (its state).

use std::{fmt, str::FromStr};

use super::stored_as_text;

/// A code that is not one of an enum's; names the enum, not the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a known {0}")]
pub struct UnknownCode(pub &'static str);

/// Declares a fieldless enum with one text code per variant, `as_str`,
/// `Display`, `FromStr`, `ALL`, and storage as that text.
macro_rules! coded_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident => $code:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The code as stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $code),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownCode;
            fn from_str(text: &str) -> Result<Self, UnknownCode> {
                match text {
                    $($code => Ok($name::$variant),)+
                    _ => Err(UnknownCode($what)),
                }
            }
        }

        stored_as_text!($name);

        /// Serialised as its code, as the admin API shows it.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

pub(super) use coded_enum;

coded_enum!(
    /// What an outbox message carries.
    MessageKind, "message kind" {
        /// A new referral, in the provider's own format.
        Referral => "referral",
        /// The referrer cancelled: the provider's cancel message.
        Cancel => "cancel",
        /// A Task change, as a Subscriptions notification to the referrer.
        Notification => "notification",
        /// An escalation answered: the provider's `escalation_outcome`
        /// message (`referrals::escalation`).
        EscalationOutcome => "escalation-outcome",
        /// An escalation to a clinical service: its ServiceRequest
        /// (`proposal`), child Task, Communication and Flag.
        Escalation => "escalation",
    }
);

coded_enum!(
    /// Where an outbox message stands.
    MessageState, "message state" {
        /// Waiting for its next attempt (or for its endpoint to be enabled).
        Pending => "pending",
        /// The endpoint answered `2xx`.
        Delivered => "delivered",
        /// No more attempts: in the dead letter, until replayed.
        Dead => "dead",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_ones_are_refused() {
        for kind in MessageKind::ALL {
            assert_eq!(kind.as_str().parse::<MessageKind>(), Ok(*kind));
        }
        for state in MessageState::ALL {
            assert_eq!(state.to_string().parse::<MessageState>(), Ok(*state));
        }
        assert_eq!(
            "sent".parse::<MessageState>().unwrap_err().to_string(),
            "not a known message state"
        );
        assert!("Referral".parse::<MessageKind>().is_err());
    }
}
