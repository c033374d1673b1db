//! Authorisation: which referrals a [`Caller`] may see or change. One set
//! of rules for every way in (the FHIR API, the admin API, and the CLI as
//! it grows), so that no handler decides it on its own.
//!
//! A referrer sees only the referrals it sent, and only a referrer sends or
//! withdraws one; an admin sees every referral; a monitor sees none. A
//! referral the caller may not see is reported exactly as one that does not
//! exist, so nothing about other referrers' data leaks.

use super::tokens::{Caller, Role};
use crate::{
    domain::{ReferralId, model::Referral},
    referrals::Referrals,
    store::StoreError,
};

/// Why a caller may not have what it asked for.
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// No such referral, or not one the caller may see (not told apart).
    /// Holds what was asked for, e.g. `ServiceRequest/<id>`.
    /// Names the resource type only: the id is the caller's, not quoted.
    #[error("no {0} has this id")]
    NotFound(String),
    /// Only a referrer may do this (an admin's token may not).
    #[error("referrals are sent with a referrer's token, not an admin's")]
    NotAReferrer,
    #[error("storage failed")]
    Store(#[from] StoreError),
}

/// The referrals a caller may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visible<'a> {
    /// Every referral (an admin).
    All,
    /// Those this referrer sent.
    SentBy(&'a str),
    /// None (a monitor's token reads metrics only).
    Nothing,
}

impl Visible<'_> {
    /// Whether a referral sent by `referrer_id` is among them.
    pub fn includes(self, referrer_id: &str) -> bool {
        match self {
            Visible::All => true,
            Visible::SentBy(id) => id == referrer_id,
            Visible::Nothing => false,
        }
    }
}

/// The referrals `caller` may see.
pub fn visible(caller: &Caller) -> Visible<'_> {
    match &caller.role {
        Role::Referrer(id) => Visible::SentBy(id.as_str()),
        Role::Admin => Visible::All,
        Role::Provider(_) | Role::ClinicalService(_) | Role::Monitor | Role::Analyst => {
            Visible::Nothing
        }
    }
}

/// The referrer a caller sends referrals as: only referrers' tokens may.
pub fn sending_referrer(caller: &Caller) -> Result<&str, Denied> {
    caller.referrer().ok_or(Denied::NotAReferrer)
}

/// Referral `id` if `caller` may see it; otherwise [`Denied::NotFound`],
/// exactly as if it did not exist.
pub async fn visible_referral(
    referrals: &Referrals,
    caller: &Caller,
    id: &ReferralId,
) -> Result<Referral, Denied> {
    referrals
        .referral(id)
        .await?
        .filter(|r| visible(caller).includes(r.referrer_id.as_str()))
        .ok_or_else(|| Denied::NotFound("ServiceRequest".into()))
}

/// Referral `id` if `caller` may withdraw it: only the referrer that sent
/// it. Someone else's referral is not found; a referral an admin can see
/// but may not withdraw is [`Denied::NotAReferrer`].
pub async fn withdrawable_referral(
    referrals: &Referrals,
    caller: &Caller,
    id: &ReferralId,
) -> Result<Referral, Denied> {
    let referral = visible_referral(referrals, caller, id).await?;
    sending_referrer(caller)?;
    Ok(referral)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role) -> Caller {
        Caller {
            credential: "token:0123456789abcdef".into(),
            certificate: None,
            role,
        }
    }

    #[test]
    fn a_referrer_sees_only_its_own_referrals_an_admin_all_a_monitor_none() {
        let referrer = caller(Role::Referrer("riverside".parse().unwrap()));
        assert!(visible(&referrer).includes("riverside"));
        assert!(!visible(&referrer).includes("hillside"));
        assert!(visible(&caller(Role::Admin)).includes("hillside"));
        assert!(!visible(&caller(Role::Monitor)).includes("riverside"));
    }

    #[test]
    fn only_a_referrer_sends_referrals() {
        let referrer = caller(Role::Referrer("riverside".parse().unwrap()));
        assert_eq!(sending_referrer(&referrer).ok(), Some("riverside"));
        assert!(matches!(
            sending_referrer(&caller(Role::Admin)),
            Err(Denied::NotAReferrer)
        ));
    }
}
