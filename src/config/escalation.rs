//! Escalation settings (`[escalation]`): how long the target has to
//! acknowledge an escalation before it is sent again, in working days
//! (Monday to Friday), by urgency.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEscalation {
    pub(super) urgent_working_days: Option<u32>,
    pub(super) routine_working_days: Option<u32>,
}

/// Deadlines for acknowledging escalations (`[escalation]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EscalationConfig {
    /// Working days to acknowledge an urgent escalation
    /// (`urgent_working_days`, default 1).
    pub urgent_working_days: u32,
    /// Working days to acknowledge a routine escalation
    /// (`routine_working_days`, default 5).
    pub routine_working_days: u32,
}

impl Default for EscalationConfig {
    fn default() -> Self {
        EscalationConfig {
            urgent_working_days: 1,
            routine_working_days: 5,
        }
    }
}

impl RawEscalation {
    pub(super) fn check(self, problems: &mut Vec<String>) -> EscalationConfig {
        let defaults = EscalationConfig::default();
        let mut days = |key: &str, value: Option<u32>, default: u32| match value {
            // A deadline of no time would re-send an escalation at once,
            // and one of years would never hold anyone to account.
            Some(n) if !(1..=60).contains(&n) => {
                problems.push(format!(
                    "`escalation.{key}`: must be between 1 and 60 working days"
                ));
                default
            }
            Some(n) => n,
            None => default,
        };
        EscalationConfig {
            urgent_working_days: days(
                "urgent_working_days",
                self.urgent_working_days,
                defaults.urgent_working_days,
            ),
            routine_working_days: days(
                "routine_working_days",
                self.routine_working_days,
                defaults.routine_working_days,
            ),
        }
    }
}
