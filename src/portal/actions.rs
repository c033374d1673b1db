//! What a provider's user can do to a referral in the portal. Each action
//! is one Task change, applied through the same state machine and relayed
//! to the referrer the same way as a provider's signed status callback
//! ([`crate::referrals::Referrals::portal_change`]). Which actions are
//! offered follows from the state machine, not from a list of our own.

use crate::referrals::task::{TaskChange, TaskStatus};

/// Reasons a referral is declined (the portal's list; the user may add
/// text).
pub const DECLINE_REASONS: &[&str] = &[
    "Not eligible for this service",
    "No capacity at the moment",
    "Service not suitable for this person's needs",
    "Person declined the service",
    "Other",
];

/// Reasons a referral is put on hold.
pub const HOLD_REASONS: &[&str] = &[
    "Person unwell",
    "Person away",
    "Waiting for a place",
    "Other",
];

/// Outcomes recorded at completion.
pub const OUTCOMES: &[&str] = &[
    "Completed the programme",
    "Attended some sessions",
    "Stopped attending",
    "Referred on to another service",
];

/// One portal action, with what its form asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Accept,
    Decline {
        reason: String,
        text: String,
    },
    RecordContact {
        reached: bool,
    },
    RecordFirstSession,
    PutOnHold {
        reason: String,
    },
    /// With the wellbeing scores at the end of support the form took
    /// (optional; checked).
    Complete {
        outcome: String,
        scores: Vec<crate::reports::outcomes::Outcome>,
    },
    AddNote {
        text: String,
    },
}

/// An action's kind: what the portal offers, and what its URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    Accept,
    Decline,
    RecordContact,
    RecordFirstSession,
    PutOnHold,
    Complete,
    AddNote,
}

impl ActionKind {
    pub const ALL: &[ActionKind] = &[
        ActionKind::Accept,
        ActionKind::Decline,
        ActionKind::RecordContact,
        ActionKind::RecordFirstSession,
        ActionKind::PutOnHold,
        ActionKind::Complete,
        ActionKind::AddNote,
    ];

    /// The path segment of its form's URL.
    pub fn slug(self) -> &'static str {
        match self {
            ActionKind::Accept => "accept",
            ActionKind::Decline => "decline",
            ActionKind::RecordContact => "contact",
            ActionKind::RecordFirstSession => "first-session",
            ActionKind::PutOnHold => "hold",
            ActionKind::Complete => "complete",
            ActionKind::AddNote => "note",
        }
    }

    pub fn from_slug(slug: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|k| k.slug() == slug)
    }

    /// Its button's text (the name screen readers and the tests use).
    pub fn button(self) -> &'static str {
        match self {
            ActionKind::Accept => "Accept",
            ActionKind::Decline => "Decline",
            ActionKind::RecordContact => "Record contact",
            ActionKind::RecordFirstSession => "Record first session",
            ActionKind::PutOnHold => "Put on hold",
            ActionKind::Complete => "Complete",
            ActionKind::AddNote => "Add note",
        }
    }

    /// The status it moves the Task to, if it moves it.
    fn target(self) -> Option<TaskStatus> {
        match self {
            ActionKind::Accept => Some(TaskStatus::Accepted),
            ActionKind::Decline => Some(TaskStatus::Rejected),
            ActionKind::RecordFirstSession => Some(TaskStatus::InProgress),
            ActionKind::PutOnHold => Some(TaskStatus::OnHold),
            ActionKind::Complete => Some(TaskStatus::Completed),
            ActionKind::RecordContact | ActionKind::AddNote => None,
        }
    }

    /// Whether the state machine allows it from `current`. Actions that keep
    /// the status need a Task still open; contact is recorded once the
    /// referral has been accepted.
    pub fn allowed_from(self, current: TaskStatus) -> bool {
        match self.target() {
            Some(to) => current.may_become(to),
            None if current.is_terminal() => false,
            None if self == ActionKind::RecordContact => current != TaskStatus::Requested,
            None => true,
        }
    }
}

/// The actions the state machine allows from `current`, in the order the
/// page shows them.
pub fn allowed(current: TaskStatus) -> Vec<ActionKind> {
    ActionKind::ALL
        .iter()
        .copied()
        .filter(|k| k.allowed_from(current))
        .collect()
}

impl Action {
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Accept => ActionKind::Accept,
            Action::Decline { .. } => ActionKind::Decline,
            Action::RecordContact { .. } => ActionKind::RecordContact,
            Action::RecordFirstSession => ActionKind::RecordFirstSession,
            Action::PutOnHold { .. } => ActionKind::PutOnHold,
            Action::Complete { .. } => ActionKind::Complete,
            Action::AddNote { .. } => ActionKind::AddNote,
        }
    }

    /// The Task change it makes.
    pub fn change(&self) -> TaskChange {
        let status = self.kind().target();
        match self {
            Action::Accept => TaskChange {
                status,
                ..TaskChange::default()
            },
            Action::Decline { reason, text } => TaskChange {
                status,
                status_reason: Some(if text.trim().is_empty() {
                    reason.clone()
                } else {
                    format!("{reason}: {}", text.trim())
                }),
                ..TaskChange::default()
            },
            Action::RecordContact { reached } => TaskChange {
                business_status: Some(
                    if *reached {
                        "contacted"
                    } else {
                        "could not contact"
                    }
                    .into(),
                ),
                ..TaskChange::default()
            },
            Action::RecordFirstSession => TaskChange {
                status,
                business_status: Some("first session attended".into()),
                ..TaskChange::default()
            },
            Action::PutOnHold { reason } => TaskChange {
                status,
                status_reason: Some(reason.clone()),
                ..TaskChange::default()
            },
            Action::Complete { outcome, scores } => TaskChange {
                status,
                business_status: Some(outcome.clone()),
                outcomes: scores.clone(),
                ..TaskChange::default()
            },
            Action::AddNote { text } => TaskChange {
                note: Some(text.trim().to_owned()),
                ..TaskChange::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_actions_follow_the_state_machine() {
        use ActionKind::*;
        assert_eq!(
            allowed(TaskStatus::Requested),
            vec![Accept, Decline, AddNote]
        );
        assert_eq!(
            allowed(TaskStatus::Accepted),
            vec![
                RecordContact,
                RecordFirstSession,
                PutOnHold,
                Complete,
                AddNote
            ]
        );
        assert_eq!(
            allowed(TaskStatus::InProgress),
            vec![RecordContact, PutOnHold, Complete, AddNote]
        );
        assert!(allowed(TaskStatus::Completed).is_empty());
        assert!(allowed(TaskStatus::Rejected).is_empty());
        for kind in ActionKind::ALL {
            assert_eq!(ActionKind::from_slug(kind.slug()), Some(*kind));
        }
    }
}
