//! Who did something, as the audit trail and the Task history record it.

use std::{fmt, str::FromStr};

use super::{ClinicalServiceId, IdError, ProviderId, ReferrerId, stored_as_text};

/// Who caused a change or made a request. Stored as `referrer:<id>`,
/// `admin:<token id>`, `monitor:<token id>`, `analyst:<token id>`,
/// `provider:<id>`, `cli:<user>`, `portal:<user id>`, `signpost:<part>` or
/// `unauthenticated`.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Actor {
    Referrer(ReferrerId),
    /// An admin, by the public id of the token (or certificate) used.
    Admin(String),
    /// A monitoring client, by the public id of its token.
    Monitor(String),
    /// A reports analyst, by the public id of its token.
    Analyst(String),
    /// A provider, by its verified status callback.
    Provider(ProviderId),
    /// A clinical service, by its token (answering an escalation).
    ClinicalService(ClinicalServiceId),
    /// An operator at the command line, by their operating-system user.
    Cli(String),
    /// A provider's user, signed in to the portal, by their account id.
    PortalUser(String),
    /// Signpost itself: `delivery` (the delivery worker), …
    Signpost(&'static str),
    /// A request whose caller could not be authenticated.
    Unauthenticated,
}

impl Actor {
    /// The delivery worker (a dead-lettered referral changes its Task).
    pub const DELIVERY: Actor = Actor::Signpost("delivery");
    /// The escalation deadline sweep (re-sends).
    pub const ESCALATION: Actor = Actor::Signpost("escalation");
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Referrer(id) => write!(f, "referrer:{id}"),
            Actor::Admin(credential) => write!(f, "admin:{credential}"),
            Actor::Monitor(credential) => write!(f, "monitor:{credential}"),
            Actor::Analyst(credential) => write!(f, "analyst:{credential}"),
            Actor::Provider(id) => write!(f, "provider:{id}"),
            Actor::ClinicalService(id) => write!(f, "clinical-service:{id}"),
            Actor::Cli(user) => write!(f, "cli:{user}"),
            Actor::PortalUser(user) => write!(f, "portal:{user}"),
            Actor::Signpost(part) => write!(f, "signpost:{part}"),
            Actor::Unauthenticated => f.write_str("unauthenticated"),
        }
    }
}

impl FromStr for Actor {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let bad = || IdError("actor");
        if text == "unauthenticated" {
            return Ok(Actor::Unauthenticated);
        }
        let (kind, name) = text.split_once(':').ok_or_else(bad)?;
        if name.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "referrer" => Actor::Referrer(name.parse()?),
            "provider" => Actor::Provider(name.parse()?),
            "clinical-service" => Actor::ClinicalService(name.parse()?),
            "admin" => Actor::Admin(name.to_owned()),
            "monitor" => Actor::Monitor(name.to_owned()),
            "analyst" => Actor::Analyst(name.to_owned()),
            "cli" => Actor::Cli(name.to_owned()),
            "portal" => Actor::PortalUser(name.to_owned()),
            "signpost" if name == "delivery" => Actor::DELIVERY,
            "signpost" if name == "escalation" => Actor::ESCALATION,
            _ => return Err(bad()),
        })
    }
}

stored_as_text!(Actor);

/// Serialised as its text (`referrer:<id>`), as the admin API shows it.
impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_round_trip_through_their_stored_text() {
        for text in [
            "referrer:riverside-surgery",
            "admin:sp_abc",
            "monitor:sp_def",
            "provider:activelives",
            "cli:root",
            "portal:usr-1",
            "signpost:delivery",
            "unauthenticated",
        ] {
            let actor: Actor = text.parse().unwrap();
            assert_eq!(actor.to_string(), text);
        }
        assert!("nobody:x".parse::<Actor>().is_err());
        assert!("cli:".parse::<Actor>().is_err());
    }
}
