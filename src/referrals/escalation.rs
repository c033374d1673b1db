//! Escalation (issue 18): when a person's needs go beyond what a provider
//! can safely handle, the provider asks for a clinician. An escalation is a
//! child Task of the referral's Task (`partOf`, Gravity's sub-task
//! pattern) with its own deadline, a Communication carrying the provider's
//! words and, for a safeguarding concern, a Flag; the referral's Task goes
//! `on-hold` through the same state machine as every other change, and the
//! referrer is told through the same signed notifications, the escalation's
//! resources carried beside the Task. The referrer acknowledges the child
//! Task (accepted, rejected, completed with a decision); an escalation not
//! acknowledged by its deadline is sent again ([`Referrals::sweep_escalations`]).
//!
//! Refusals never quote what was submitted (it may be about the patient).

use chrono::{Datelike, Weekday};
use serde_json::{Value, json};

use super::{
    MayConflict, Referrals,
    lifecycle::{ChangeError, new_message},
    notification, retry_on_conflict,
    task::{PROVIDER_SYSTEM, SNOMED_CT, TaskChange, TaskStatus},
};
use crate::{
    config::Notify,
    domain::{
        Actor, ClinicalServiceId, Endpoint, MessageKind, ProviderId, ReferralId, ReferrerId,
        TaskId, Timestamp,
        model::{AuditRecord, Escalation, Notification, Referral},
    },
    store::StoreError,
};

/// Signpost's CodeSystem of escalation reasons.
pub const REASON_SYSTEM: &str = "https://signpost.example/CodeSystem/escalation-reason";
/// Signpost's CodeSystem of the decisions that complete an escalation.
pub const DECISION_SYSTEM: &str = "https://signpost.example/CodeSystem/escalation-decision";
/// BaRS safeguarding codes (NHS Digital, `safeguarding-codes-bars` 1.0.0).
pub const SAFEGUARDING_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/safeguarding-codes-bars";
/// BaRS flag categories: `SG` "Safeguarding Concern".
pub const FLAG_CATEGORY_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/flag-categories-bars";

/// The referral's Task while escalated.
pub const ESCALATED: &str = "escalated to clinician";
/// Its `statusReason` then.
pub const BEYOND_COMPETENCE: &str = "needs beyond provider's competence";

/// Why a provider escalates: Signpost's CodeSystem (see README,
/// "Escalation"), each with a SNOMED CT code where one fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reason {
    pub code: &'static str,
    pub display: &'static str,
    /// `(code, display)` in SNOMED CT, where a concept fits the reason as
    /// a whole (none is claimed where it would say more than the reason).
    pub snomed: Option<(&'static str, &'static str)>,
}

/// Every reason. SNOMED CT codes: 314529007 as recorded in Synthea-made
/// records; 766561000000109 from the BaRS safeguarding CodeSystem
/// (`tests/fixtures/real/bars/`). Functional decline, mental-health risk
/// and physical deterioration carry none: the concepts found (at risk for
/// falls, at risk of self-harm) are narrower than the reasons.
pub const REASONS: &[Reason] = &[
    Reason {
        code: "functional-decline",
        display: "Functional decline, falls or daily-living needs (occupational therapy)",
        snomed: None,
    },
    Reason {
        code: "mental-health-risk",
        display: "Mental-health risk",
        snomed: None,
    },
    Reason {
        code: "safeguarding",
        display: "Safeguarding concern",
        snomed: Some(("766561000000109", "Adult safeguarding concern (finding)")),
    },
    Reason {
        code: "physical-deterioration",
        display: "Physical-health deterioration",
        snomed: None,
    },
    Reason {
        code: "medication-concern",
        display: "Medication concern",
        snomed: Some(("314529007", "Medication review due (situation)")),
    },
    Reason {
        code: "other",
        display: "Other need beyond the provider's competence",
        snomed: None,
    },
];

impl Reason {
    pub fn parse(code: &str) -> Option<&'static Reason> {
        REASONS.iter().find(|r| r.code == code)
    }

    fn is_safeguarding(&self) -> bool {
        self.code == "safeguarding"
    }

    /// As a CodeableConcept.
    fn concept(&self) -> Value {
        let mut coding =
            vec![json!({ "system": REASON_SYSTEM, "code": self.code, "display": self.display })];
        if let Some((code, display)) = self.snomed {
            coding.push(json!({ "system": SNOMED_CT, "code": code, "display": display }));
        }
        json!({ "coding": coding, "text": self.display })
    }
}

/// The BaRS safeguarding codes a Flag may carry (the codes and displays of
/// NHS Digital's `safeguarding-codes-bars` CodeSystem 1.0.0, from
/// NHSDigital/NHSDigital-FHIR-BookingAndReferrals @ 0cf8fdaa,
/// `CodeSystem/safeguarding-codes-bars.xml`). The file itself is not in
/// this repository: the BaRS guide's repository states no licence. A unit
/// test checks each code is a well-formed SNOMED CT concept identifier
/// (BaRS's own `U` apart). `U` when the provider does not say.
pub const SAFEGUARDING_CODES: &[(&str, &str)] = &[
    (
        "836881000000105",
        "Child is cause for safeguarding concern (finding)",
    ),
    ("U", "Unspecified Safeguarding Concern Identified"),
    (
        "297591000000108",
        "Alleged victim of sexual assault (situation)",
    ),
    ("736792008", "At risk of honor based violence (finding)"),
    ("401206008", "At risk for deliberate self harm (finding)"),
    ("702953007", "Suspected victim of child neglect (situation)"),
    ("702579009", "Suspected victim of sexual abuse (situation)"),
    ("707087005", "At risk of domestic violence (finding)"),
    (
        "881081000000100",
        "Domestic abuse victim in household (finding)",
    ),
    (
        "838481000000106",
        "At risk of institutional abuse (finding)",
    ),
    (
        "697951004",
        "Suspected victim of emotional abuse (situation)",
    ),
    ("697950003", "Suspected domestic abuse (situation)"),
    (
        "697949003",
        "Suspected victim of physical abuse (situation)",
    ),
    ("1054321000000100", "At risk of forced marriage (finding)"),
    ("766969008", "At risk of radicalization (finding)"),
    ("415685003", "Suspected alcohol abuse (situation)"),
    ("761571000000106", "At risk of financial abuse (finding)"),
    ("449889006", "Delay in seeking medical advice (finding)"),
    ("300731000000106", "Family is cause for concern (finding)"),
    (
        "878111000000109",
        "Unborn child is cause for safeguarding concern (finding)",
    ),
    (
        "713201008",
        "At risk of female genital mutilation (finding)",
    ),
    (
        "919461000000108",
        "At risk of sexual exploitation (finding)",
    ),
    (
        "700254002",
        "Suspected victim of child sexual abuse (situation)",
    ),
    (
        "700253008",
        "Suspected victim of sexual grooming (situation)",
    ),
    (
        "700255001",
        "Suspected non-accidental injury to child (situation)",
    ),
    (
        "1076171000000100",
        "Carer behavior is cause for safeguarding concern (situation)",
    ),
    (
        "293161000000103",
        "Family history of alcohol misuse (situation)",
    ),
    ("416936003", "At risk of physical abuse (finding)"),
    ("766561000000109", "Adult safeguarding concern (finding)"),
    ("417361000", "At risk of sexual abuse (finding)"),
];

/// How soon the escalation needs a clinician: the child Task's `priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    Routine,
    Urgent,
}

impl Urgency {
    pub fn parse(code: &str) -> Option<Urgency> {
        match code {
            "routine" => Some(Urgency::Routine),
            "urgent" => Some(Urgency::Urgent),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
        }
    }
}

/// Why an escalation request or acknowledgement was refused. Texts never
/// quote what was sent.
#[derive(Debug, thiserror::Error)]
pub enum EscalationError {
    /// No such referral or escalation for this caller (`404`).
    #[error("{0}")]
    NotFound(String),
    /// The referral or escalation cannot take it in its state (`409`).
    #[error("{0}")]
    Conflict(String),
    /// A field is missing or not one Signpost knows (`422`), named.
    #[error("{text}")]
    Invalid { field: &'static str, text: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl MayConflict for EscalationError {
    fn is_conflict(&self) -> bool {
        matches!(self, EscalationError::Store(StoreError::Conflict))
    }
}

impl From<ChangeError> for EscalationError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound(text) => EscalationError::NotFound(text),
            ChangeError::Conflict(text) | ChangeError::Unprocessable(text) => {
                EscalationError::Conflict(text)
            }
            ChangeError::Store(e) => EscalationError::Store(e),
        }
    }
}

fn invalid(field: &'static str, text: impl Into<String>) -> EscalationError {
    EscalationError::Invalid {
        field,
        text: text.into(),
    }
}

/// Longest note kept (characters).
const MAX_NOTE: usize = 10_000;

/// What a provider asks for: `{"referral", "reason", "urgency", "note",
/// "safeguarding"?}` (the last a BaRS safeguarding code, for the Flag).
#[derive(Debug, Clone)]
pub struct RaiseRequest {
    pub referral: String,
    pub reason: &'static Reason,
    pub urgency: Urgency,
    pub note: String,
    pub safeguarding: Option<(&'static str, &'static str)>,
}

impl RaiseRequest {
    /// Read a request body; each refusal names its field (never its
    /// value).
    pub fn parse(body: &Value) -> Result<RaiseRequest, EscalationError> {
        let Some(fields) = body.as_object() else {
            return Err(invalid("body", "the body must be a JSON object"));
        };
        if fields.keys().any(|k| {
            !["referral", "reason", "urgency", "note", "safeguarding"].contains(&k.as_str())
        }) {
            return Err(invalid(
                "body",
                "a field is not an escalation field (referral, reason, urgency, note, safeguarding)",
            ));
        }
        let text = |key: &'static str| -> Result<Option<&str>, EscalationError> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
                Some(Value::String(s)) if crate::validation::structure::is_controlled(s) => {
                    Err(invalid(
                        key,
                        format!("`{key}` holds control characters other than tab, CR and LF"),
                    ))
                }
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(invalid(key, format!("`{key}` must be a string"))),
            }
        };
        let referral = text("referral")?
            .ok_or_else(|| invalid("referral", "`referral` (the referral's id) is required"))?;
        let reason = text("reason")?.ok_or_else(|| invalid("reason", "`reason` is required"))?;
        let reason = Reason::parse(reason).ok_or_else(|| {
            invalid(
                "reason",
                format!(
                    "`reason` is not a known escalation reason ({})",
                    REASONS
                        .iter()
                        .map(|r| r.code)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        let urgency =
            text("urgency")?.ok_or_else(|| invalid("urgency", "`urgency` is required"))?;
        let urgency = Urgency::parse(urgency)
            .ok_or_else(|| invalid("urgency", "`urgency` must be routine or urgent"))?;
        let note = text("note")?
            .ok_or_else(|| invalid("note", "`note` (what was observed) is required"))?;
        if note.chars().count() > MAX_NOTE {
            return Err(invalid(
                "note",
                format!("`note` is longer than {MAX_NOTE} characters"),
            ));
        }
        let safeguarding = match text("safeguarding")? {
            None if reason.is_safeguarding() => Some(SAFEGUARDING_CODES[1]),
            None => None,
            Some(_) if !reason.is_safeguarding() => {
                return Err(invalid(
                    "safeguarding",
                    "`safeguarding` goes only with the reason safeguarding",
                ));
            }
            Some(code) => Some(
                *SAFEGUARDING_CODES
                    .iter()
                    .find(|(c, _)| *c == code)
                    .ok_or_else(|| {
                        invalid(
                            "safeguarding",
                            "`safeguarding` is not a BaRS safeguarding code",
                        )
                    })?,
            ),
        };
        Ok(RaiseRequest {
            referral: referral.to_owned(),
            reason,
            urgency,
            note: note.to_owned(),
            safeguarding,
        })
    }
}

/// `days` working days (Monday to Friday) after `at`, at the same time of
/// day. Bank holidays are not known to Signpost.
pub fn add_working_days(at: Timestamp, days: u32) -> Timestamp {
    let mut t = at.to_datetime();
    let mut left = days;
    while left > 0 {
        t += chrono::Duration::days(1);
        if !matches!(t.weekday(), Weekday::Sat | Weekday::Sun) {
            left -= 1;
        }
    }
    Timestamp::from(t)
}

/// What the referrer says of an escalation (the child Task's new status).
#[derive(Debug, Clone, PartialEq)]
pub struct Acknowledgement {
    pub status: TaskStatus,
    /// Why it was rejected.
    pub reason: Option<String>,
    /// `Task.output` elements (the decision and a note).
    pub output: Vec<Value>,
    /// `Task.note` as the patch leaves it, when it changed it.
    pub note: Option<Value>,
}

/// What a completed escalation decides for the referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The provider carries on: the referral's Task resumes (`in-progress`).
    Resume,
    /// The referral ends here (the clinician takes over): its Task is
    /// cancelled.
    Close,
}

impl Acknowledgement {
    /// Apply a JSON Patch to the child Task as stored and read what it
    /// asks: only `status`, `statusReason`, `output` and `note` may change
    /// (`test` operations are checked).
    pub fn from_patch(
        task: &Value,
        operations: &Value,
    ) -> Result<Acknowledgement, EscalationError> {
        let Some(operations) = operations.as_array() else {
            return Err(invalid(
                "body",
                "the body must be a JSON Patch (an array of operations)",
            ));
        };
        let mut patched = task.clone();
        for (index, op) in operations.iter().enumerate() {
            let path = op.get("path").and_then(Value::as_str).unwrap_or_default();
            let value = op.get("value");
            let field = path
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            match (op.get("op").and_then(Value::as_str), value) {
                (Some("test"), Some(expected)) => {
                    if patched.pointer(path) != Some(expected) {
                        return Err(EscalationError::Conflict(format!(
                            "JSON Patch operation {index}: its test failed"
                        )));
                    }
                }
                (Some("replace" | "add"), Some(value))
                    if ["status", "statusReason", "output", "note"].contains(&field) =>
                {
                    if field == "output" && path == "/output/-" {
                        match patched["output"].as_array_mut() {
                            Some(list) => list.push(value.clone()),
                            None => patched["output"] = json!([value]),
                        }
                    } else if path == format!("/{field}") {
                        patched[field] = value.clone();
                    } else {
                        return Err(invalid(
                            "body",
                            format!(
                                "JSON Patch operation {index}: replace a whole field (/status, /statusReason, /output, /output/-, /note)"
                            ),
                        ));
                    }
                }
                _ => {
                    return Err(invalid(
                        "body",
                        format!(
                            "JSON Patch operation {index}: only status, statusReason, output and note can change"
                        ),
                    ));
                }
            }
        }
        let status = patched["status"]
            .as_str()
            .and_then(|s| s.parse::<TaskStatus>().ok())
            .filter(|s| {
                matches!(
                    s,
                    TaskStatus::Accepted | TaskStatus::Rejected | TaskStatus::Completed
                )
            })
            .ok_or_else(|| {
                invalid(
                    "status",
                    "`status` must become accepted, rejected or completed",
                )
            })?;
        let reason = patched
            .pointer("/statusReason/text")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .map(str::to_owned);
        if status == TaskStatus::Rejected && reason.is_none() {
            return Err(invalid(
                "statusReason",
                "a rejection needs `statusReason.text`",
            ));
        }
        let before = task["output"].as_array().map_or(0, Vec::len);
        let output: Vec<Value> = patched["output"]
            .as_array()
            .map(|o| o.iter().skip(before).cloned().collect())
            .unwrap_or_default();
        if output.iter().any(|o| !o.is_object()) {
            return Err(invalid("output", "each `output` must be an object"));
        }
        if patched.get("note").is_some_and(|n| !n.is_array()) {
            return Err(invalid("note", "`note` must be a list of annotations"));
        }
        let note = (patched.get("note") != task.get("note")).then(|| patched["note"].clone());
        let acknowledgement = Acknowledgement {
            status,
            reason,
            output,
            note,
        };
        if status == TaskStatus::Completed && acknowledgement.decision().is_none() {
            return Err(invalid(
                "output",
                format!(
                    "a completed escalation needs an `output` with the decision ({DECISION_SYSTEM}: resume or close)"
                ),
            ));
        }
        Ok(acknowledgement)
    }

    /// The decision among the outputs.
    pub fn decision(&self) -> Option<Decision> {
        self.output.iter().find_map(|o| {
            o.pointer("/valueCodeableConcept/coding")?
                .as_array()?
                .iter()
                .filter(|c| c["system"] == DECISION_SYSTEM)
                .find_map(|c| match c["code"].as_str()? {
                    "resume" => Some(Decision::Resume),
                    "close" => Some(Decision::Close),
                    _ => None,
                })
        })
    }
}

/// A reference to a provider, as a Task's `requester`.
fn provider_reference(id: &ProviderId, name: Option<&str>) -> Value {
    let mut reference = json!({
        "type": "Organization",
        "identifier": { "system": PROVIDER_SYSTEM, "value": id.as_str() },
    });
    if let Some(name) = name {
        reference["display"] = json!(name);
    }
    reference
}

fn bump(resource: &mut Value, at: &str) {
    let version: i64 = resource
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    resource["meta"]["versionId"] = json!((version + 1).to_string());
    resource["meta"]["lastUpdated"] = json!(at);
    if resource["resourceType"] == "Task" {
        resource["lastModified"] = json!(at);
    }
}

/// The message sending `e` to the clinical service it targets, if it
/// targets one: a `collection` Bundle of its ServiceRequest (`proposal`),
/// child Task, Communication and any Flag.
fn to_service(e: &Escalation, at: Timestamp) -> Option<crate::domain::model::NewMessage> {
    let Endpoint::ClinicalService(_) = &e.target else {
        return None;
    };
    let proposal: Value = serde_json::from_str(e.service_request.as_deref()?).ok()?;
    let entries: Vec<Value> = std::iter::once(proposal)
        .chain(resources(e))
        .map(|resource| json!({ "resource": resource }))
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "type": "collection",
        "timestamp": at.to_string(),
        "entry": entries,
    });
    let mut message = new_message(
        &e.referral_id,
        e.target.clone(),
        MessageKind::Escalation,
        bundle.to_string(),
        at,
    );
    message.priority = priority(e);
    Some(message)
}

/// The outbox priority of an escalation's messages: an urgent one is sent
/// ahead of routine traffic (the issue's "urgent escalations are sent
/// ahead"); per-referral order still holds.
fn priority(e: &Escalation) -> i64 {
    i64::from(e.urgency == Urgency::Urgent.as_str())
}

/// Who is reading or answering escalations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// An admin: every one.
    All,
    /// A referrer: those of its referrals.
    Referrer(ReferrerId),
    /// A clinical service: those sent to it.
    Service(ClinicalServiceId),
}

impl Viewer {
    fn sees(&self, e: &Escalation) -> bool {
        match self {
            Viewer::All => true,
            Viewer::Referrer(id) => *id == e.referrer_id,
            Viewer::Service(id) => e.target == Endpoint::ClinicalService(id.clone()),
        }
    }
}

/// Whether the escalation's referral was erased (its resources are gone:
/// `store/retention.rs`): it is then not found.
fn is_erased(e: &Escalation) -> bool {
    e.task.is_empty()
}

/// The resources an escalation is sent with, child Task first.
pub fn resources(e: &Escalation) -> Vec<Value> {
    std::iter::once(&e.task)
        .chain(std::iter::once(&e.communication))
        .chain(e.flag.iter())
        .filter_map(|text| serde_json::from_str(text).ok())
        .collect()
}

impl Referrals {
    /// A provider raises an escalation about a referral sent to it: the
    /// child Task, Communication and any Flag stored with the referral's
    /// Task change (`on-hold`, "escalated to clinician") and the referrer's
    /// notification carrying them all, in one transaction. Nothing is
    /// written on any refusal.
    pub async fn raise_escalation(
        &self,
        provider_id: &ProviderId,
        actor: Actor,
        request: &RaiseRequest,
    ) -> Result<Escalation, EscalationError> {
        self.raise_escalation_once(provider_id, actor, request, None)
            .await
            .map(|(e, _)| e)
    }

    /// [`Referrals::raise_escalation`] for a request the provider may send
    /// again (its `webhook-id`, `request_id`): the same request again is
    /// answered with the escalation it raised (`false`: not new), changing
    /// nothing.
    pub async fn raise_escalation_once(
        &self,
        provider_id: &ProviderId,
        actor: Actor,
        request: &RaiseRequest,
        request_id: Option<&str>,
    ) -> Result<(Escalation, bool), EscalationError> {
        let again = || async {
            Ok::<_, StoreError>(match request_id {
                Some(rid) => self
                    .store
                    .escalation_by_request(provider_id, rid)
                    .await?
                    .filter(|e| e.referral_id.as_str() == request.referral)
                    // (After an erasure there is nothing to answer with.)
                    .filter(|e| !is_erased(e)),
                None => None,
            })
        };
        if let Some(first) = again().await? {
            return Ok((first, false));
        }
        let not_found = || {
            EscalationError::NotFound(format!(
                "no referral with this id was sent to provider {provider_id}"
            ))
        };
        let referral_id: ReferralId = request.referral.parse().map_err(|_| not_found())?;
        let referral_id = &referral_id;
        retry_on_conflict(|| {
            let actor = actor.clone();
            async move {
                let referral = self
                    .store
                    .referral(referral_id)
                    .await?
                    .filter(|r| r.provider_id.as_ref() == Some(provider_id))
                    .ok_or_else(not_found)?;
                if referral.is_erased() {
                    return Err(EscalationError::Conflict(
                        "this referral was erased; it cannot be escalated".into(),
                    ));
                }
                let (task, current) = self.current_task(&referral).await?;
                let (mut escalation, update) = self
                    .prepare_escalation(&referral, task, &current, provider_id, actor, request)
                    .await?;
                escalation.request_id = request_id.map(str::to_owned);
                if !self.store.record_escalation(escalation.clone(), update).await? {
                    // The same request, concurrently: its escalation.
                    if let Some(first) = again().await? {
                        return Ok((first, false));
                    }
                    return Err(EscalationError::Conflict(
                        "this referral already has an open escalation with this reason (another needs a different reason), or this request's webhook-id was used for another referral".into(),
                    ));
                }
                Ok((escalation, true))
            }
        })
        .await
    }

    /// The escalation `request` makes of `referral`, whose Task is `task`
    /// (its resource `current`), and the change to that Task: `on-hold`
    /// where the state machine allows it (accepted or in progress; a
    /// referral not yet accepted keeps its status and shows the escalation
    /// in its business status), with the referrer's notification carrying
    /// the escalation's resources. Nothing is written.
    pub(super) async fn prepare_escalation(
        &self,
        referral: &Referral,
        task: crate::domain::model::Task,
        current: &Value,
        provider_id: &ProviderId,
        actor: Actor,
        request: &RaiseRequest,
    ) -> Result<(Escalation, crate::domain::model::TaskUpdate), EscalationError> {
        if task.status.is_terminal() {
            return Err(EscalationError::Conflict(format!(
                "the referral is finished (its Task is {}); it cannot be escalated",
                task.status
            )));
        }
        let change = TaskChange {
            status: task
                .status
                .may_become(TaskStatus::OnHold)
                .then_some(TaskStatus::OnHold),
            status_reason: Some(BEYOND_COMPETENCE.into()),
            business_status: Some(ESCALATED.into()),
            ..TaskChange::default()
        };
        let mut update = self
            .update_from(referral, task, current, &change, actor, false)
            .await?;
        let at = update.task.last_updated;
        let parent: Value = serde_json::from_str(&update.task.resource)
            .map_err(|_| EscalationError::Conflict("stored Task unreadable".into()))?;
        let escalation = self.new_escalation(referral, &parent, provider_id, request, at);
        let context = resources(&escalation);
        if let Some(n) = update.notification.as_mut() {
            n.message.payload = self.payload_for(referral, &parent, &context);
            n.message.priority = priority(&escalation);
        }
        update.messages.extend(to_service(&escalation, at));
        Ok((escalation, update))
    }

    /// Whether the referral has an open escalation with this reason.
    pub(super) async fn has_open_escalation(
        &self,
        referral_id: &ReferralId,
        reason: &Reason,
    ) -> Result<bool, StoreError> {
        Ok(self
            .store
            .escalations_for_referral(referral_id)
            .await?
            .iter()
            .any(|e| e.is_open() && e.reason == reason.code))
    }

    /// A notification's payload: the Task with `context`, or the Task
    /// alone for a referrer told the BaRS way (a BaRS response carries
    /// the Task only).
    fn payload_for(&self, referral: &Referral, task: &Value, context: &[Value]) -> String {
        match self.config.referrers.get(&referral.referrer_id) {
            Some(r) if r.notify == Notify::Bars => task.to_string(),
            _ => notification::with_context(task, context),
        }
    }

    /// The escalation's resources, built from the referral's Task as
    /// changed (`parent`).
    fn new_escalation(
        &self,
        referral: &Referral,
        parent: &Value,
        provider_id: &ProviderId,
        request: &RaiseRequest,
        at: Timestamp,
    ) -> Escalation {
        let now = at.to_string();
        let days = match request.urgency {
            Urgency::Urgent => self.config.escalation.urgent_working_days,
            Urgency::Routine => self.config.escalation.routine_working_days,
        };
        let deadline = add_working_days(at, days);
        let id = TaskId::generate();
        let communication_id = uuid::Uuid::now_v7().to_string();
        let flag_id = request
            .safeguarding
            .is_some()
            .then(|| uuid::Uuid::now_v7().to_string());
        let provider_name = self
            .config
            .providers
            .get(provider_id)
            .and_then(|p| p.name.as_deref());
        let requester = provider_reference(provider_id, provider_name);
        // The target: the clinical service the referrer names
        // (`escalate_to`), else the referring organisation (its Task's
        // requester).
        let referrer = self.config.referrers.get(&referral.referrer_id);
        let service = referrer
            .and_then(|r| r.escalate_to.as_ref())
            .and_then(|id| self.config.clinical_services.get(id));
        let (mut owner, target) = match service {
            Some(service) => (
                json!({
                    "type": "Organization",
                    "identifier": { "system": crate::validation::ODS_CODE_SYSTEM, "value": service.ods_code },
                }),
                Endpoint::ClinicalService(service.id.clone()),
            ),
            None => (
                parent["requester"].clone(),
                Endpoint::Referrer(referral.referrer_id.clone()),
            ),
        };
        if let Some(name) = service
            .and_then(|s| s.name.as_deref())
            .or_else(|| referrer.and_then(|r| r.name.as_deref()))
        {
            owner["display"] = json!(name);
        }
        let service_request = json!({ "reference": format!("ServiceRequest/{}", referral.id) });
        let reason = request.reason.concept();
        let mut input = vec![json!({
            "type": { "text": "what the provider observed" },
            "valueReference": { "reference": format!("Communication/{communication_id}") },
        })];
        let flag = request.safeguarding.zip(flag_id.as_ref()).map(|((code, display), flag_id)| {
            input.push(json!({
                "type": { "text": "safeguarding flag" },
                "valueReference": { "reference": format!("Flag/{flag_id}") },
            }));
            json!({
                "resourceType": "Flag",
                "id": flag_id,
                "meta": { "versionId": "1", "lastUpdated": now },
                "status": "active",
                "category": [{ "coding": [{ "system": FLAG_CATEGORY_SYSTEM, "code": "SG", "display": "Safeguarding Concern" }] }],
                "code": { "coding": [{ "system": SAFEGUARDING_SYSTEM, "code": code, "display": display }] },
                "subject": parent["for"],
                "period": { "start": now },
                "author": requester,
            })
        });
        let task = json!({
            "resourceType": "Task",
            "id": id.as_str(),
            "meta": { "versionId": "1", "lastUpdated": now },
            "basedOn": [service_request],
            "partOf": [{ "reference": format!("Task/{}", parent["id"].as_str().unwrap_or_default()) }],
            "status": "requested",
            "intent": "order",
            "priority": request.urgency.as_str(),
            "code": { "coding": [{
                "system": "http://hl7.org/fhir/CodeSystem/task-code",
                "code": "fulfill",
                "display": "Fulfill the focal request"
            }]},
            "description": format!("Escalation to a clinician: {}", request.reason.display),
            "focus": service_request,
            "for": parent["for"],
            "authoredOn": now,
            "lastModified": now,
            "requester": requester,
            "owner": owner,
            "reasonCode": reason,
            "restriction": { "period": { "end": deadline.to_string() } },
            "input": input,
        });
        let communication = json!({
            "resourceType": "Communication",
            "id": communication_id,
            "meta": { "versionId": "1", "lastUpdated": now },
            "basedOn": [service_request],
            "partOf": [{ "reference": format!("Task/{id}") }],
            "status": "completed",
            "category": [{ "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/communication-category",
                "code": if request.urgency == Urgency::Urgent { "alert" } else { "notification" },
            }]}],
            "priority": request.urgency.as_str(),
            "subject": parent["for"],
            "about": [service_request],
            "sent": now,
            "recipient": [owner],
            "sender": requester,
            "reasonCode": [reason],
            "payload": [{ "contentString": request.note }],
        });
        Escalation {
            id,
            referral_id: referral.id.clone(),
            referrer_id: referral.referrer_id.clone(),
            provider_id: provider_id.clone(),
            reason: request.reason.code.to_owned(),
            urgency: request.urgency.as_str().to_owned(),
            state: TaskStatus::Requested,
            version_id: 1,
            deadline,
            created_at: at,
            last_updated: at,
            acknowledged_at: None,
            sends: 1,
            task: task.to_string(),
            communication_id: communication
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            communication: communication.to_string(),
            flag_id,
            flag: flag.map(|f| f.to_string()),
            request_id: None,
            service_request: service.map(|_| {
                json!({
                    "resourceType": "ServiceRequest",
                    "id": uuid::Uuid::now_v7().to_string(),
                    "meta": { "versionId": "1", "lastUpdated": now },
                    "basedOn": [service_request],
                    "status": "active",
                    "intent": "proposal",
                    "priority": request.urgency.as_str(),
                    "code": { "text": "Clinical review of a social prescribing referral" },
                    "subject": parent["for"],
                    "authoredOn": now,
                    "requester": requester,
                    "performer": [owner],
                    "reasonCode": [reason],
                    "supportingInfo": [{ "reference": format!("Communication/{communication_id}") }],
                })
                .to_string()
            }),
            target,
        }
    }

    /// One escalation, if `viewer` may see it: a referrer its own, a
    /// clinical service those sent to it; anyone else's is not found.
    pub async fn escalation_for(
        &self,
        id: &TaskId,
        viewer: &Viewer,
    ) -> Result<Option<Escalation>, StoreError> {
        Ok(self
            .store
            .escalation(id)
            .await?
            .filter(|e| viewer.sees(e))
            .filter(|e| !is_erased(e)))
    }

    /// A referral's escalations (the caller has checked it may see it).
    pub async fn escalations_of_referral(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Vec<Escalation>, StoreError> {
        let mut found = self.store.escalations_for_referral(referral_id).await?;
        found.retain(|e| !is_erased(e));
        Ok(found)
    }

    /// A referrer's escalations that raised a Flag, newest first, at most
    /// `limit`.
    pub async fn escalations_of_referrer(
        &self,
        referrer_id: &ReferrerId,
        limit: i64,
    ) -> Result<Vec<Escalation>, StoreError> {
        let mut found = self
            .store
            .escalations_of_referrer(referrer_id, limit)
            .await?;
        found.retain(|e| !is_erased(e));
        Ok(found)
    }

    /// The referrer (`None`: an admin) answers an escalation: the child
    /// Task takes the acknowledgement; a rejection or a completion that
    /// resumes puts the referral's Task back `in-progress` (unless another
    /// escalation of it is still open), a completion that closes cancels
    /// it; the provider sees it in the portal.
    pub async fn acknowledge_escalation(
        &self,
        id: &TaskId,
        viewer: &Viewer,
        actor: Actor,
        patch: &Value,
    ) -> Result<Escalation, EscalationError> {
        let not_found = || EscalationError::NotFound("no Task has this id".into());
        retry_on_conflict(|| {
            let actor = actor.clone();
            async move {
                let e = self
                    .escalation_for(id, viewer)
                    .await?
                    .ok_or_else(not_found)?;
                let task: Value = serde_json::from_str(&e.task)
                    .map_err(|_| EscalationError::Conflict("stored Task unreadable".into()))?;
                let ack = Acknowledgement::from_patch(&task, patch)?;
                let allowed = match e.state {
                    TaskStatus::Requested => true,
                    TaskStatus::Accepted => ack.status != TaskStatus::Accepted,
                    _ => false,
                };
                if !allowed {
                    return Err(EscalationError::Conflict(format!(
                        "this escalation is {}; it cannot become {}",
                        e.state, ack.status
                    )));
                }
                let at = self.clock.now();
                let now = at.to_string();
                let mut next = task.clone();
                next["status"] = json!(ack.status.as_str());
                if let Some(fields) = next.as_object_mut() {
                    fields.shift_remove("businessStatus");
                }
                if let Some(reason) = &ack.reason {
                    next["statusReason"] = json!({ "text": reason });
                }
                if let Some(note) = &ack.note {
                    next["note"] = note.clone();
                }
                if !ack.output.is_empty() {
                    match next["output"].as_array_mut() {
                        Some(list) => list.extend(ack.output.iter().cloned()),
                        None => next["output"] = Value::Array(ack.output.clone()),
                    }
                }
                bump(&mut next, &now);
                let acknowledged = Escalation {
                    state: ack.status,
                    version_id: e.version_id + 1,
                    last_updated: at,
                    acknowledged_at: e.acknowledged_at.or(Some(at)),
                    task: next.to_string(),
                    ..e.clone()
                };
                let parent = match ack.status {
                    TaskStatus::Accepted => None,
                    TaskStatus::Rejected => {
                        self.after_escalation(&acknowledged, Decision::Resume, actor)
                            .await?
                    }
                    _ => {
                        let decision = ack.decision().unwrap_or(Decision::Resume);
                        self.after_escalation(&acknowledged, decision, actor)
                            .await?
                    }
                };
                let told = self.outcome_message(&acknowledged, &next, at);
                self.store
                    .update_escalation(
                        acknowledged.clone(),
                        e.version_id,
                        parent,
                        None,
                        told.into_iter().collect(),
                        Vec::new(),
                    )
                    .await?;
                Ok(acknowledged)
            }
        })
        .await
    }

    /// The provider's `escalation_outcome` message for `e` as answered
    /// (`task`, its child Task), when its mapping has that template. One
    /// that cannot be rendered is not sent (the portal still shows the
    /// answer): the referrer's answer does not wait on the provider's
    /// mapping.
    fn outcome_message(
        &self,
        e: &Escalation,
        task: &Value,
        at: Timestamp,
    ) -> Option<crate::domain::model::NewMessage> {
        let mapping = self.provider_mapping(&e.provider_id)?;
        match mapping.escalation_outcome(task) {
            Ok(Some(payload)) => Some(new_message(
                &e.referral_id,
                Endpoint::Provider(e.provider_id.clone()),
                MessageKind::EscalationOutcome,
                payload.to_string(),
                at,
            )),
            Ok(None) => None,
            Err(_) => {
                tracing::warn!(provider_id = %e.provider_id, escalation_id = %e.id, "escalation_outcome cannot be rendered for this answer; the provider is not sent it");
                None
            }
        }
    }

    /// The referral's Task change once `e` is answered: resumed
    /// (`in-progress`, unless another escalation is still open) or
    /// cancelled; `None` when its Task is finished already. Its
    /// notification carries the child Task as answered.
    async fn after_escalation(
        &self,
        e: &Escalation,
        decision: Decision,
        actor: Actor,
    ) -> Result<Option<crate::domain::model::TaskUpdate>, EscalationError> {
        let Some(referral) = self.store.referral(&e.referral_id).await? else {
            return Ok(None);
        };
        let (task, current) = self.current_task(&referral).await?;
        if task.status.is_terminal() || referral.is_erased() {
            return Ok(None);
        }
        let others_open = self
            .store
            .escalations_for_referral(&e.referral_id)
            .await?
            .iter()
            .any(|other| other.id != e.id && other.is_open());
        let (change, by_referrer) = match decision {
            Decision::Close => (
                TaskChange {
                    status: Some(TaskStatus::Cancelled),
                    status_reason: Some("closed after escalation: the clinician's decision".into()),
                    ..TaskChange::default()
                },
                true,
            ),
            Decision::Resume if others_open => (
                TaskChange {
                    business_status: Some(ESCALATED.into()),
                    note: Some("one escalation was answered; another is still open".into()),
                    ..TaskChange::default()
                },
                false,
            ),
            Decision::Resume => (
                TaskChange {
                    status: (task.status == TaskStatus::OnHold).then_some(TaskStatus::InProgress),
                    business_status: Some("escalation answered: provider continues".into()),
                    ..TaskChange::default()
                },
                false,
            ),
        };
        let mut update = self
            .update_from(&referral, task, &current, &change, actor, by_referrer)
            .await?;
        let parent: Value = serde_json::from_str(&update.task.resource)
            .map_err(|_| EscalationError::Conflict("stored Task unreadable".into()))?;
        let context = resources(e);
        if let Some(n) = update.notification.as_mut() {
            n.message.payload = self.payload_for(&referral, &parent, &context);
        }
        Ok(Some(update))
    }

    /// Send again, to the referrer, every escalation not acknowledged by
    /// its deadline, each with a new deadline as long as its first;
    /// counted (`signpost_escalations_resent_total`) and audited. Returns
    /// how many were sent again.
    pub async fn sweep_escalations(&self) -> Result<usize, StoreError> {
        const BATCH: i64 = 100;
        let mut resent = 0;
        for e in self.store.escalations_due(self.clock.now(), BATCH).await? {
            match retry_on_conflict(|| self.resend(&e.id)).await {
                Ok(true) => {
                    resent += 1;
                    self.metrics.escalation_resent(&e.urgency);
                    tracing::warn!(escalation_id = %e.id, referral_id = %e.referral_id, urgency = %e.urgency, "escalation not acknowledged by its deadline; sent again");
                }
                Ok(false) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(resent)
    }

    /// Send one escalation again if it is still due (`false`: it was
    /// acknowledged, or sent again, meanwhile).
    async fn resend(&self, id: &TaskId) -> Result<bool, StoreError> {
        let Some(e) = self.store.escalation(id).await? else {
            return Ok(false);
        };
        let at = self.clock.now();
        if e.state != TaskStatus::Requested || e.deadline > at {
            return Ok(false);
        }
        let Some(referral) = self.store.referral(&e.referral_id).await? else {
            return Ok(false);
        };
        let now = at.to_string();
        let mut task: Value = serde_json::from_str(&e.task).unwrap_or(Value::Null);
        let parent_task = self
            .store
            .tasks_for_referral(&referral.id)
            .await?
            .into_iter()
            .next();
        if parent_task.as_ref().is_some_and(|t| t.status.is_terminal()) {
            // The referral ended (cancelled, completed, …) before anyone
            // answered: the escalation is closed, not sent again (else it
            // would be, at every deadline, for ever).
            if task.is_object() {
                task["status"] = json!("cancelled");
                task["businessStatus"] =
                    json!({ "text": "closed unanswered: the referral has ended" });
                bump(&mut task, &now);
            }
            let closed = Escalation {
                version_id: e.version_id + 1,
                state: TaskStatus::Cancelled,
                last_updated: at,
                task: task.to_string(),
                ..e.clone()
            };
            let audit = AuditRecord {
                seq: 0,
                at,
                actor: Actor::ESCALATION,
                credential: None,
                client: None,
                request_id: None,
                action: "close escalation".into(),
                resource: Some(format!("/fhir/Task/{}", e.id)),
                referral_id: Some(referral.id.clone()),
                outcome: "closed unanswered: the referral has ended".into(),
            };
            self.store
                .update_escalation(closed, e.version_id, None, None, Vec::new(), vec![audit])
                .await?;
            return Ok(false);
        }
        let sends = e.sends + 1;
        task["businessStatus"] = json!({ "text": format!("not acknowledged by its deadline; sent again ({sends} sends)") });
        bump(&mut task, &now);
        let days = if e.urgency == Urgency::Urgent.as_str() {
            self.config.escalation.urgent_working_days
        } else {
            self.config.escalation.routine_working_days
        };
        let next = Escalation {
            version_id: e.version_id + 1,
            deadline: add_working_days(at, days),
            last_updated: at,
            sends,
            task: task.to_string(),
            ..e.clone()
        };
        // The referral's Task as it stands, with the escalation as now. (A
        // BaRS referrer's copy becomes a BaRS response about the Task, as
        // the first one did.)
        let parent = match parent_task {
            Some(t) => serde_json::from_str::<Value>(&t.resource).unwrap_or(Value::Null),
            None => Value::Null,
        };
        // Sent again to its target: a clinical service, or the referrer.
        let to_service = if referral.is_erased() {
            None
        } else {
            to_service(&next, at)
        };
        let to_referrer = matches!(next.target, Endpoint::Referrer(_));
        let notification =
            (to_referrer && !referral.is_erased() && parent.is_object()).then(|| Notification {
                referrer_id: referral.referrer_id.clone(),
                message: crate::domain::model::NewMessage {
                    priority: priority(&next),
                    ..new_message(
                        &referral.id,
                        Endpoint::Referrer(referral.referrer_id.clone()),
                        MessageKind::Notification,
                        self.payload_for(&referral, &parent, &resources(&next)),
                        at,
                    )
                },
            });
        let audit = AuditRecord {
            seq: 0,
            at,
            actor: Actor::ESCALATION,
            credential: None,
            client: None,
            request_id: None,
            action: "resend escalation".into(),
            resource: Some(format!("/fhir/Task/{}", e.id)),
            referral_id: Some(referral.id.clone()),
            outcome: format!("sent again ({sends} sends)"),
        };
        self.store
            .update_escalation(
                next,
                e.version_id,
                None,
                notification,
                to_service.into_iter().collect(),
                vec![audit],
            )
            .await?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_days_skip_the_weekend() {
        let friday: Timestamp = "2026-12-04T10:00:00.000Z".parse().unwrap();
        assert_eq!(
            add_working_days(friday, 1).to_string(),
            "2026-12-07T10:00:00.000Z"
        );
        assert_eq!(
            add_working_days(friday, 5).to_string(),
            "2026-12-11T10:00:00.000Z"
        );
        let saturday: Timestamp = "2026-12-05T10:00:00.000Z".parse().unwrap();
        assert_eq!(
            add_working_days(saturday, 1).to_string(),
            "2026-12-07T10:00:00.000Z"
        );
    }

    /// Whether `id` is a SNOMED CT concept identifier: digits, its
    /// partition (the two digits before the last) a concept's (`00`, or `10`
    /// in an extension's namespace), and its last digit the Verhoeff check
    /// digit of the rest (SNOMED CT Technical Implementation Guide, 6.3).
    fn is_snomed_concept_id(id: &str) -> bool {
        const D: [[u8; 10]; 10] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
            [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
            [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
            [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
            [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
            [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
            [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
            [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
            [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
        ];
        const P: [[u8; 10]; 8] = [
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
            [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
            [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
            [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
            [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
            [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
            [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
        ];
        if !(6..=18).contains(&id.len()) || !id.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        let partition = &id[id.len() - 3..id.len() - 1];
        let check = id.bytes().rev().enumerate().fold(0u8, |c, (i, b)| {
            D[c as usize][P[i % 8][(b - b'0') as usize] as usize]
        });
        (partition == "00" || partition == "10") && check == 0
    }

    #[test]
    fn the_check_rejects_a_mistyped_identifier() {
        assert!(is_snomed_concept_id("871731000000106"));
        assert!(is_snomed_concept_id("718466001"));
        // One digit changed, two swapped, a description's partition.
        assert!(!is_snomed_concept_id("871731000000107"));
        assert!(!is_snomed_concept_id("781466001"));
        assert!(!is_snomed_concept_id("871731000000011"));
    }

    /// The BaRS safeguarding CodeSystem's file is not in the repository
    /// (the guide's repository states no licence), so its codes, copied
    /// into [`SAFEGUARDING_CODES`], are checked as what they must be: every
    /// one but BaRS's own `U` a SNOMED CT concept identifier, none twice.
    /// One code is kept as BaRS publishes it although its check digit is
    /// wrong (a receiver matches BaRS's spelling), and is listed here.
    #[test]
    fn the_safeguarding_codes_are_snomed_concepts_but_u() {
        // Two of the codes kept fail the Verhoeff check, as published in
        // safeguarding-codes-bars 1.0.0: they look cut to 15 significant
        // digits, as a spreadsheet does (1054321000000107 would pass).
        const AS_PUBLISHED: [&str; 2] = ["1054321000000100", "1076171000000100"];
        let mut seen = std::collections::HashSet::new();
        for (code, display) in SAFEGUARDING_CODES {
            assert!(seen.insert(code), "{code} twice");
            assert!(!display.is_empty(), "{code}");
            if *code != "U" && !AS_PUBLISHED.contains(code) {
                assert!(is_snomed_concept_id(code), "{code} {display}");
            }
        }
        for code in AS_PUBLISHED {
            assert!(!is_snomed_concept_id(code), "{code} is well formed now");
            assert!(seen.contains(&code), "{code} is no longer listed");
        }
        assert!(seen.contains(&"U"), "the default code is listed");
        // And the reasons' own SNOMED CT codes.
        for (code, display) in REASONS.iter().filter_map(|r| r.snomed) {
            assert!(is_snomed_concept_id(code), "{code} {display}");
        }
    }

    #[test]
    fn refusals_name_the_field_and_never_quote_it() {
        let base = json!({"referral": "r1", "reason": "safeguarding", "urgency": "urgent", "note": "seen"});
        assert!(RaiseRequest::parse(&base).is_ok());
        for (field, value) in [
            ("reason", json!("SECRET-1")),
            ("urgency", json!("SECRET-2")),
            ("safeguarding", json!("SECRET-3")),
            ("note", json!(null)),
        ] {
            let mut body = base.clone();
            body[field] = value;
            match RaiseRequest::parse(&body) {
                Err(EscalationError::Invalid { field: named, text }) => {
                    assert_eq!(named, field);
                    assert!(!text.contains("SECRET"), "{text}");
                }
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_completion_needs_a_decision_and_a_rejection_a_reason() {
        let task = json!({"resourceType": "Task", "status": "requested"});
        let reject = json!([{"op": "replace", "path": "/status", "value": "rejected"}]);
        assert!(matches!(
            Acknowledgement::from_patch(&task, &reject),
            Err(EscalationError::Invalid {
                field: "statusReason",
                ..
            })
        ));
        let complete = json!([{"op": "replace", "path": "/status", "value": "completed"},
            {"op": "add", "path": "/output", "value": [{"type": {"text": "decision"},
              "valueCodeableConcept": {"coding": [{"system": DECISION_SYSTEM, "code": "close"}]}}]}]);
        let ack = Acknowledgement::from_patch(&task, &complete).unwrap();
        assert_eq!(ack.decision(), Some(Decision::Close));
        let other = json!([{"op": "replace", "path": "/owner", "value": {}}]);
        assert!(Acknowledgement::from_patch(&task, &other).is_err());
    }
}
