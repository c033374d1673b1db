//! The FHIR Task that tracks a referral through its life (the HL7 Gravity
//! referral workflow): created `requested` with the referral, owned by the
//! provider chosen for it, and moved through the workflow's state machine.

use serde_json::{Value, json};

use crate::validation::{NHS_NUMBER_SYSTEM, ODS_CODE_SYSTEM};

pub use crate::domain::TaskStatus;

/// A change to a Task: a provider's status callback, a referrer's
/// cancellation, or Signpost's own "delivery failed".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskChange {
    /// `None`: the status stays as it is.
    pub status: Option<TaskStatus>,
    pub business_status: Option<String>,
    pub status_reason: Option<String>,
    pub note: Option<String>,
    /// `Task.output` elements to add: `{type, value[x]}` objects as the
    /// mapping wrote them, or text (kept as `valueString` of type
    /// "provider update").
    pub output: Vec<Value>,
    /// Wellbeing scores (ONS4, SWEMWBS), checked: each becomes an
    /// `Observation` contained in the Task and referenced from its
    /// `output` (README, "Reports").
    pub outcomes: Vec<crate::reports::outcomes::Outcome>,
}

/// Why a change cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a Task in status {from} cannot become {to}")]
pub struct IllegalTransition {
    pub from: &'static str,
    pub to: &'static str,
}

impl TaskChange {
    /// Read a mapping's `inbound.change` output (`status`,
    /// `businessStatus`, `statusReason`, `note`: optional strings;
    /// `output`: optional text, object or list of objects).
    pub fn from_mapping(change: &Value) -> Result<TaskChange, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match change.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) if crate::validation::structure::is_controlled(s) => Err(
                    format!("`{key}` holds control characters other than tab, CR and LF"),
                ),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(format!("`{key}` must be a string")),
            }
        };
        // A field's name may come from the callback through the mapping:
        // never quoted (nor are values, below).
        if change.as_object().is_some_and(|o| {
            o.keys().any(|k| {
                ![
                    "status",
                    "businessStatus",
                    "statusReason",
                    "note",
                    "output",
                    "outcomes",
                ]
                .contains(&k.as_str())
            })
        }) {
            return Err("a field is not a Task change field (status, businessStatus, statusReason, note, output, outcomes)".into());
        }
        let outcomes =
            crate::reports::outcomes::parse(change.get("outcomes")).map_err(|e| e.to_string())?;
        let status = text("status")?
            .map(|code| {
                code.parse::<TaskStatus>()
                    .ok()
                    .filter(|s| s.provider_may_set())
                    .ok_or_else(|| "`status` is not a status a provider can set".to_owned())
            })
            .transpose()?;
        let output = match change.get("output") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) if s.is_empty() => Vec::new(),
            Some(Value::String(s)) => vec![json!({
                "type": { "text": "provider update" },
                "valueString": s,
            })],
            Some(Value::Object(o)) => vec![Value::Object(o.clone())],
            Some(Value::Array(items)) if items.iter().all(Value::is_object) => items.clone(),
            Some(_) => {
                return Err("`output` must be text, an object or a list of objects".into());
            }
        };
        Ok(TaskChange {
            status,
            business_status: text("businessStatus")?,
            status_reason: text("statusReason")?,
            note: text("note")?,
            output,
            outcomes,
        })
    }
}

/// The next version of `task` after `change`, checked against the state
/// machine (`referrer`: the change comes from the referrer, who may only
/// cancel or mark entered-in-error). Returns the new Task and its status.
pub fn apply_change(
    task: &Value,
    change: &TaskChange,
    referrer: bool,
    now: &str,
) -> Result<(Value, TaskStatus), IllegalTransition> {
    let current = task
        .get("status")
        .and_then(Value::as_str)
        .and_then(|code| code.parse().ok())
        .unwrap_or(TaskStatus::Requested);
    let mut next = task.clone();
    let status = match change.status {
        // Repeating the current status (e.g. a second "case opened") is
        // not a transition; the rest of the change still applies.
        None => current,
        Some(to) if to == current && !current.is_terminal() => current,
        Some(to) => {
            let allowed = if referrer {
                current.referrer_may_set(to)
            } else {
                current.may_become(to)
            };
            if !allowed {
                return Err(IllegalTransition {
                    from: current.as_str(),
                    to: to.as_str(),
                });
            }
            to
        }
    };
    if status != current {
        next["status"] = json!(status.as_str());
        // A new status makes the old business status stale.
        if let Some(fields) = next.as_object_mut() {
            fields.shift_remove("businessStatus");
            fields.shift_remove("statusReason");
        }
        if status.needs_reason() || change.status_reason.is_some() {
            let reason = change
                .status_reason
                .clone()
                .unwrap_or_else(|| status.as_str().to_owned());
            next["statusReason"] = json!({ "text": reason });
            // The code GP systems count when a person declines (README,
            // "Reports"), so the practice need not enter it again.
            if !referrer
                && matches!(status, TaskStatus::Rejected | TaskStatus::Cancelled)
                && says_declined(&reason)
            {
                next["statusReason"]["coding"] = json!([{
                    "system": SNOMED_CT,
                    "code": SOCIAL_PRESCRIBING_DECLINED,
                    "display": "Social prescribing declined",
                }]);
            }
        }
    } else if let Some(reason) = &change.status_reason {
        next["statusReason"] = json!({ "text": reason });
    }
    if let Some(business) = &change.business_status {
        next["businessStatus"] = json!({ "text": business });
    }
    if let Some(note) = &change.note {
        let annotation = json!({ "time": now, "text": note });
        match next.get_mut("note").and_then(Value::as_array_mut) {
            Some(notes) => notes.push(annotation),
            None => next["note"] = json!([annotation]),
        }
    }
    if !change.output.is_empty() {
        match next.get_mut("output").and_then(Value::as_array_mut) {
            Some(outputs) => outputs.extend(change.output.iter().cloned()),
            None => next["output"] = Value::Array(change.output.clone()),
        }
    }
    add_outcomes(&mut next, &change.outcomes, now);
    let version: i64 = task
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    next["meta"]["versionId"] = json!((version + 1).to_string());
    next["meta"]["lastUpdated"] = json!(now);
    next["lastModified"] = json!(now);
    Ok((next, status))
}

/// Each outcome as an `Observation` contained in the Task (numbered after
/// those already there), and an `output` referencing it, typed by
/// instrument and time point (e.g. `swemwbs-end`).
fn add_outcomes(task: &mut Value, outcomes: &[crate::reports::outcomes::Outcome], now: &str) {
    use crate::reports::outcomes::WELLBEING_CODES;
    if outcomes.is_empty() {
        return;
    }
    // No `subject`: a contained resource is about what its Task is
    // `for`, and erasure, which replaces the Task, then leaves no copy of
    // the NHS number behind.
    let mut number = task
        .get("contained")
        .and_then(Value::as_array)
        .map_or(0, |c| {
            c.iter()
                .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Observation"))
                .count()
        });
    for outcome in outcomes {
        number += 1;
        let id = format!("outcome-{number}");
        let observation = outcome.observation(&id, None, now);
        match task.get_mut("contained").and_then(Value::as_array_mut) {
            Some(contained) => contained.push(observation),
            None => task["contained"] = json!([observation]),
        }
        let kind = format!(
            "{}-{}",
            outcome.instrument.as_str(),
            outcome.timepoint.as_str()
        );
        let output = json!({
            "type": {"coding": [{"system": WELLBEING_CODES, "code": kind}], "text": kind},
            "valueReference": {"reference": format!("#{id}")},
        });
        match task.get_mut("output").and_then(Value::as_array_mut) {
            Some(outputs) => outputs.push(output),
            None => task["output"] = json!([output]),
        }
    }
}

/// SNOMED CT's URI.
pub const SNOMED_CT: &str = "http://snomed.info/sct";
/// SNOMED CT UK "Referral to social prescribing service": on every Task
/// (`reasonCode`), so that a GP system can record it from the Task.
pub const REFERRAL_TO_SOCIAL_PRESCRIBING: &str = "871731000000106";
/// SNOMED CT UK "Social prescribing declined".
pub const SOCIAL_PRESCRIBING_DECLINED: &str = "871711000000103";

/// Whether a provider's reason for closing a referral says the person
/// declined (e.g. Community Connect's "declined by person"). Reports count
/// these as declined; the Task carries the declined code.
pub fn says_declined(reason: &str) -> bool {
    reason.to_ascii_lowercase().contains("declin")
}

/// Identifier system for Signpost's provider ids.
pub const PROVIDER_SYSTEM: &str = "https://signpost.example/Id/provider";

/// The provider that owns a Task.
pub struct Owner<'a> {
    pub provider_id: &'a str,
    pub name: Option<&'a str>,
}

/// What a new Task is built from.
pub struct NewTask<'a> {
    pub id: &'a str,
    pub referral_id: &'a str,
    pub nhs_number: &'a str,
    pub requester_ods: &'a str,
    /// The provider the referral was routed to.
    pub owner: Option<Owner<'a>>,
    pub now: &'a str,
}

/// The first Task of a referral: `requested`, intent `order`, code `fulfill`.
/// `for` and `requester` are logical references (identifiers), since the
/// Patient and Organization live inside the ServiceRequest.
pub fn new_task(task: &NewTask<'_>) -> Value {
    let mut resource = json!({
        "resourceType": "Task",
        "id": task.id,
        "meta": { "versionId": "1", "lastUpdated": task.now },
        "status": TaskStatus::Requested.as_str(),
        "intent": "order",
        "code": { "coding": [{
            "system": "http://hl7.org/fhir/CodeSystem/task-code",
            "code": "fulfill",
            "display": "Fulfill the focal request"
        }]},
        "focus": { "reference": format!("ServiceRequest/{}", task.referral_id) },
        "for": { "type": "Patient", "identifier": { "system": NHS_NUMBER_SYSTEM, "value": task.nhs_number } },
        "reasonCode": { "coding": [{
            "system": SNOMED_CT,
            "code": REFERRAL_TO_SOCIAL_PRESCRIBING,
            "display": "Referral to social prescribing service"
        }]},
        "authoredOn": task.now,
        "lastModified": task.now,
        "requester": { "type": "Organization", "identifier": { "system": ODS_CODE_SYSTEM, "value": task.requester_ods } }
    });
    if let Some(owner) = &task.owner {
        resource["owner"] = json!({
            "type": "Organization",
            "identifier": { "system": PROVIDER_SYSTEM, "value": owner.provider_id },
        });
        if let Some(name) = owner.name {
            resource["owner"]["display"] = json!(name);
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskStatus::*;

    const ALL: &[TaskStatus] = TaskStatus::ALL;

    #[test]
    fn the_state_machine_is_the_gravity_referral_workflow() {
        let allowed: Vec<(TaskStatus, TaskStatus)> = ALL
            .iter()
            .flat_map(|from| ALL.iter().map(move |to| (*from, *to)))
            .filter(|(from, to)| from.may_become(*to))
            .collect();
        let expected = vec![
            (Requested, Accepted),
            (Requested, Rejected),
            (Requested, Cancelled),
            (Accepted, Cancelled),
            (Accepted, InProgress),
            (Accepted, OnHold),
            (Accepted, Completed),
            (Accepted, Failed),
            (InProgress, Cancelled),
            (InProgress, OnHold),
            (InProgress, Completed),
            (InProgress, Failed),
            (OnHold, Cancelled),
            (OnHold, InProgress),
            (OnHold, Completed),
            (OnHold, Failed),
        ];
        assert_eq!(allowed, expected);
        for &status in ALL {
            assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
        }
    }

    #[test]
    fn the_referrer_may_cancel_an_unfinished_task_and_mark_any_entered_in_error() {
        for &from in ALL {
            assert_eq!(
                from.referrer_may_set(Cancelled),
                !from.is_terminal(),
                "{from:?}"
            );
            assert_eq!(
                from.referrer_may_set(EnteredInError),
                from != EnteredInError
            );
            assert!(!from.referrer_may_set(Completed));
        }
    }

    fn task(status: &str) -> Value {
        json!({"resourceType": "Task", "id": "t", "meta": {"versionId": "3"}, "status": status,
               "businessStatus": {"text": "booked"}})
    }

    #[test]
    fn a_change_bumps_the_version_and_clears_a_stale_business_status() {
        let change = TaskChange {
            status: Some(Rejected),
            ..TaskChange::default()
        };
        let (next, status) = apply_change(
            &task("requested"),
            &change,
            false,
            "2026-11-22T10:00:00.000Z",
        )
        .unwrap();
        assert_eq!(status, Rejected);
        assert_eq!(next["meta"]["versionId"], "4");
        assert_eq!(next["lastModified"], "2026-11-22T10:00:00.000Z");
        assert!(next.get("businessStatus").is_none());
        // A rejection always says why, even when the provider did not.
        assert_eq!(next["statusReason"]["text"], "rejected");
    }

    #[test]
    fn a_business_event_keeps_the_status_and_appends_notes() {
        let change = TaskChange {
            business_status: Some("did not attend".into()),
            note: Some("missed Tuesday".into()),
            ..TaskChange::default()
        };
        let (next, status) = apply_change(&task("in-progress"), &change, false, "now").unwrap();
        assert_eq!(status, InProgress);
        assert_eq!(next["businessStatus"]["text"], "did not attend");
        assert_eq!(next["note"][0]["text"], "missed Tuesday");
        let (again, _) = apply_change(&next, &change, false, "later").unwrap();
        assert_eq!(again["note"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn illegal_transitions_are_refused() {
        let reopen = TaskChange {
            status: Some(Accepted),
            ..TaskChange::default()
        };
        let error = apply_change(&task("completed"), &reopen, false, "now").unwrap_err();
        assert_eq!((error.from, error.to), ("completed", "accepted"));
        // A provider cannot mark entered-in-error, nor set requested.
        assert!(TaskChange::from_mapping(&json!({"status": "entered-in-error"})).is_err());
        assert!(TaskChange::from_mapping(&json!({"status": "requested"})).is_err());
        assert!(TaskChange::from_mapping(&json!({"colour": "red"})).is_err());
        assert!(TaskChange::from_mapping(&json!({"output": 3})).is_err());
        let with_output = TaskChange::from_mapping(&json!({"output": "case CC-1"})).unwrap();
        let (next, _) = apply_change(&task("accepted"), &with_output, false, "now").unwrap();
        assert_eq!(next["output"][0]["valueString"], "case CC-1");
        assert_eq!(
            TaskChange::from_mapping(&json!({"status": null, "businessStatus": "allocated"}))
                .unwrap(),
            TaskChange {
                business_status: Some("allocated".into()),
                ..TaskChange::default()
            }
        );
    }
}
