//! The status of the FHIR Task that tracks a referral (the HL7 Gravity
//! referral workflow), and which changes of it the state machine allows.
//! The Task itself, and how a change is applied, are the referral domain's
//! (`referrals::task`).

use std::{fmt, str::FromStr};

use super::{UnknownCode, message::coded_enum, stored_as_text};

coded_enum!(
    /// `Task.status` values of the HL7 Gravity referral workflow, by their
    /// FHIR codes.
    TaskStatus, "Task status" {
        Requested => "requested",
        Accepted => "accepted",
        Rejected => "rejected",
        Cancelled => "cancelled",
        InProgress => "in-progress",
        OnHold => "on-hold",
        Completed => "completed",
        Failed => "failed",
        EnteredInError => "entered-in-error",
    }
);

impl TaskStatus {
    /// No further change is possible (except a referrer's
    /// `entered-in-error`).
    pub fn is_terminal(self) -> bool {
        use TaskStatus::*;
        matches!(
            self,
            Rejected | Cancelled | Completed | Failed | EnteredInError
        )
    }

    /// Whether the Gravity referral state machine allows `self → to`.
    /// `entered-in-error` is not reachable here: only the referrer may set
    /// it, from any state (see [`TaskStatus::referrer_may_set`]).
    pub fn may_become(self, to: TaskStatus) -> bool {
        use TaskStatus::*;
        match self {
            Requested => matches!(to, Accepted | Rejected | Cancelled),
            Accepted => matches!(to, InProgress | OnHold | Completed | Failed | Cancelled),
            InProgress => matches!(to, OnHold | Completed | Failed | Cancelled),
            OnHold => matches!(to, InProgress | Completed | Failed | Cancelled),
            Rejected | Cancelled | Completed | Failed | EnteredInError => false,
        }
    }

    /// Whether the referrer may move a Task in `self` to `to`: cancel it
    /// while it is not finished, or mark it entered-in-error at any time.
    pub fn referrer_may_set(self, to: TaskStatus) -> bool {
        match to {
            TaskStatus::EnteredInError => self != TaskStatus::EnteredInError,
            TaskStatus::Cancelled => self.may_become(to),
            _ => false,
        }
    }

    /// Whether a provider's status callback may ask for this status: every
    /// one but the starting `requested` and the referrer's
    /// `entered-in-error`.
    pub fn provider_may_set(self) -> bool {
        !matches!(self, TaskStatus::Requested | TaskStatus::EnteredInError)
    }

    /// A status whose Task must say why (`statusReason`).
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            TaskStatus::Rejected | TaskStatus::Cancelled | TaskStatus::Failed
        )
    }
}
