//! The FHIR Task that tracks a referral through its life (the HL7 Gravity
//! referral workflow): created `requested` with the referral, owned by the
//! provider chosen for it.

use serde_json::{Value, json};

use crate::validation::{NHS_NUMBER_SYSTEM, ODS_CODE_SYSTEM};

/// `Task.status` values Signpost uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Requested,
}

impl TaskStatus {
    /// The FHIR code.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Requested => "requested",
        }
    }
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
