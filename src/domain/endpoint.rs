//! Where an outbox message goes: a provider's intake URL or a referrer's
//! notification URL. Stored, keyed and logged as `provider:<id>` or
//! `referrer:<id>`; this type is the one place that spelling is made and
//! read.

use std::{fmt, str::FromStr};

use super::{ClinicalServiceId, IdError, ProviderId, ReferrerId, stored_as_text};

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum Endpoint {
    Provider(ProviderId),
    Referrer(ReferrerId),
    /// A clinical service a referrer's escalations go to
    /// (`clinical-service:<id>`).
    ClinicalService(ClinicalServiceId),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Provider(id) => write!(f, "provider:{id}"),
            Endpoint::Referrer(id) => write!(f, "referrer:{id}"),
            Endpoint::ClinicalService(id) => write!(f, "clinical-service:{id}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        match text.split_once(':') {
            Some(("provider", id)) => Ok(Endpoint::Provider(id.parse()?)),
            Some(("referrer", id)) => Ok(Endpoint::Referrer(id.parse()?)),
            Some(("clinical-service", id)) => Ok(Endpoint::ClinicalService(id.parse()?)),
            _ => Err(IdError("endpoint (provider:<id> or referrer:<id>)")),
        }
    }
}

impl From<ProviderId> for Endpoint {
    fn from(id: ProviderId) -> Self {
        Endpoint::Provider(id)
    }
}

impl From<ReferrerId> for Endpoint {
    fn from(id: ReferrerId) -> Self {
        Endpoint::Referrer(id)
    }
}

stored_as_text!(Endpoint);

/// Serialised as its text (`provider:<id>`), as the admin API shows it.
impl serde::Serialize for Endpoint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_round_trip_through_their_stored_text() {
        for text in ["provider:activelives", "referrer:riverside-surgery"] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        let provider: ProviderId = "greenspace".parse().unwrap();
        assert_eq!(
            Endpoint::from(provider.clone()),
            Endpoint::Provider(provider)
        );
    }

    #[test]
    fn other_text_is_not_an_endpoint() {
        for bad in ["provider", "provider:", "admin:x", "provider:Big One", ":x"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?}");
        }
    }
}
