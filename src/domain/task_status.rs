//! The status of the FHIR Task that tracks a referral (the HL7 Gravity
//! referral workflow), and which changes of it the state machine allows.
//! The Task itself, and how a change is applied, are the referral domain's
//! (`referrals::task`).

use super::{UnknownCode, stored_as_text};

/// `Task.status` values of the HL7 Gravity referral workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Requested,
    Accepted,
    Rejected,
    Cancelled,
    InProgress,
    OnHold,
    Completed,
    Failed,
    EnteredInError,
}

impl std::fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for TaskStatus {
    type Err = UnknownCode;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        TaskStatus::parse(code).ok_or(UnknownCode("Task status"))
    }
}

stored_as_text!(TaskStatus);

impl TaskStatus {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
            TaskStatus::Accepted => "accepted",
            TaskStatus::Rejected => "rejected",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::InProgress => "in-progress",
            TaskStatus::OnHold => "on-hold",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::EnteredInError => "entered-in-error",
        }
    }

    /// The status with this FHIR code, if it is one Signpost uses.
    pub fn parse(code: &str) -> Option<TaskStatus> {
        use TaskStatus::*;
        [
            Requested,
            Accepted,
            Rejected,
            Cancelled,
            InProgress,
            OnHold,
            Completed,
            Failed,
            EnteredInError,
        ]
        .into_iter()
        .find(|s| s.as_str() == code)
    }

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

    /// A status whose Task must say why (`statusReason`).
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            TaskStatus::Rejected | TaskStatus::Cancelled | TaskStatus::Failed
        )
    }
}
