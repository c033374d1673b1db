//! Status back the BaRS way: each change of a BaRS referral's Task, as a
//! `servicerequest-response` message to the sender's `$process-message`
//! (its referrer's `callback_url`, with `notify = "bars"`).
//!
//! The message answers the request message Signpost received
//! (`bars_messages`): `MessageHeader.response.identifier` is that Bundle's
//! id, `destination.endpoint` the `source.endpoint` it came from, and the
//! `X-Correlation-Id` its correlation id. It carries the ServiceRequest
//! with its status, the receiver's Encounter (BaRS's way of saying what
//! became of the referral: `cancelled` with a `rejected-reasons-bars`
//! reason for a rejection, as in the IG's REFRESP02), and the Task itself,
//! so a Gravity-aware sender loses nothing the Subscriptions notification
//! would have said. The patient is referred to by NHS number, as the Task
//! does; the sender has the rest.
//!
//! It is built when it is sent, from the Task the outbox message carries,
//! like the Subscriptions notification (`referrals::notification`): the
//! Bundle id and `X-Request-Id` both come from the id of the outbox message
//! first sent, so every retry and a replay send the same bytes under the
//! same request id, and a receiver that already processed it answers
//! `409 duplicate`, which delivery counts as delivered.

use serde_json::{Value, json};

use super::message::{EVENT_SYSTEMS, URI_SYSTEM};
use crate::{
    config::BarsConfig, domain::TaskStatus, store::BarsExchange, validation::ODS_CODE_SYSTEM,
};

/// The MessageDefinition of a referral response (the IG's
/// `MessageDefinition-ServiceRequest-Response-Referral`).
pub const DEFINITION: &str =
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral";
/// The BaRS version the responses follow (`Bundle.meta.versionId`).
pub const VERSION: &str = "1.0.0";
/// The code system of an Encounter's rejection reason.
pub const REJECTED_REASONS: &str = "https://fhir.nhs.uk/CodeSystem/rejected-reasons-bars";
const MESSAGE_REASONS: &str = "https://fhir.nhs.uk/CodeSystem/message-reason-bars";
const DOS_SERVICE_SYSTEM: &str = "https://fhir.nhs.uk/Id/dos-service-id";
const REFERENCE_SYSTEM: &str = "https://fhir.nhs.uk/Id/signpost-referral-reference";

/// What a response answers: the request message as recorded, and the
/// referral's business identifier.
#[derive(Debug, Clone)]
pub struct Origin {
    pub exchange: BarsExchange,
    pub identifier_system: String,
    pub identifier_value: String,
}

/// A response message ready to send: its body and the BaRS headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    pub request_id: String,
    pub correlation_id: String,
}

/// The response about `task` (as changed) to the request `origin`, from
/// `receiver`, sent as message `id` (the UUID of the outbox message first
/// sent) at `timestamp` (when the change happened).
pub fn message(
    task: &Value,
    origin: &Origin,
    receiver: &BarsConfig,
    id: uuid::Uuid,
    timestamp: &str,
) -> Outgoing {
    Outgoing {
        body: bundle(task, origin, receiver, id, timestamp).to_string(),
        request_id: id.to_string(),
        correlation_id: origin.exchange.correlation_id.clone(),
    }
}

/// The `servicerequest-response` message Bundle.
pub fn bundle(
    task: &Value,
    origin: &Origin,
    receiver: &BarsConfig,
    id: uuid::Uuid,
    timestamp: &str,
) -> Value {
    let status = task
        .get("status")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(TaskStatus::Requested);
    let referral_id = origin.exchange.referral_id.as_str();
    // The sender's own ServiceRequest: by the `urn:uuid` it was sent under
    // when it had no business identifier, else under one of ours.
    let service_request_url = if origin.identifier_system == URI_SYSTEM {
        origin.identifier_value.clone()
    } else {
        format!("urn:uuid:{}", derived(id, 1))
    };
    let encounter_url = format!("urn:uuid:{}", derived(id, 2));
    let organization_url = format!("urn:uuid:{}", derived(id, 3));
    let task_url = format!("urn:uuid:{}", derived(id, 4));
    let header_url = format!("urn:uuid:{}", derived(id, 5));
    let patient = task.get("for").cloned().unwrap_or_else(|| json!({}));
    let reference = super::answer::referral_reference(referral_id);

    let header = json!({
        "resourceType": "MessageHeader",
        "id": header_url.trim_start_matches("urn:uuid:"),
        "meta": { "profile": ["https://fhir.nhs.uk/StructureDefinition/BARSMessageHeader-servicerequest-response"] },
        "eventCoding": { "system": EVENT_SYSTEMS[0], "code": "servicerequest-response" },
        "destination": [{ "endpoint": origin.exchange.source_endpoint }],
        "sender": { "reference": organization_url },
        "source": {
            "name": "Signpost",
            "software": "Signpost",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoint": format!("{DOS_SERVICE_SYSTEM}|{}", receiver.service_id),
        },
        "reason": { "coding": [{
            "system": MESSAGE_REASONS,
            // The first answer to the referral is new; later ones update it.
            "code": if matches!(status, TaskStatus::Accepted | TaskStatus::Rejected) { "new" } else { "update" },
        }]},
        "response": { "identifier": origin.exchange.bundle_id, "code": "ok" },
        "focus": [{ "reference": service_request_url }, { "reference": encounter_url }],
        "definition": DEFINITION,
    });
    let mut service_request = json!({
        "resourceType": "ServiceRequest",
        "meta": { "profile": ["https://fhir.nhs.uk/StructureDefinition/BARSServiceRequest-request-referral"] },
        "status": service_request_status(status),
        "intent": "plan",
        "subject": patient,
    });
    if origin.identifier_system != URI_SYSTEM {
        service_request["identifier"] = json!([{
            "system": origin.identifier_system,
            "value": origin.identifier_value,
        }]);
    }
    let mut encounter = json!({
        "resourceType": "Encounter",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Encounter"] },
        "identifier": [{ "system": REFERENCE_SYSTEM, "value": reference }],
        "status": encounter_status(status),
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "AMB",
            "display": "ambulatory"
        },
        "subject": patient,
        "basedOn": [{ "reference": service_request_url }],
        "period": { "start": timestamp },
    });
    if matches!(status, TaskStatus::Rejected | TaskStatus::Failed) {
        let said = task.pointer("/statusReason/text").and_then(Value::as_str);
        let (code, display) = rejected_reason(said.unwrap_or(""));
        let mut reason = json!({ "coding": [{
            "system": REJECTED_REASONS,
            "code": code,
            "display": display,
        }]});
        if let Some(text) = said {
            reason["text"] = json!(text);
        }
        encounter["reasonCode"] = json!([reason]);
    }
    let organization = json!({
        "resourceType": "Organization",
        "meta": { "profile": ["https://fhir.hl7.org.uk/StructureDefinition/UKCore-Organization"] },
        "identifier": [{ "system": ODS_CODE_SYSTEM, "value": receiver.receiver_ods }],
        "name": "Signpost",
    });
    let entry = |url: &str, resource: Value| json!({ "fullUrl": url, "resource": resource });
    json!({
        "resourceType": "Bundle",
        "id": id.to_string(),
        "meta": {
            "versionId": VERSION,
            "lastUpdated": timestamp,
            "profile": ["https://fhir.nhs.uk/StructureDefinition/BARSBundleMessage"],
        },
        "type": "message",
        "timestamp": timestamp,
        "entry": [
            entry(&header_url, header),
            entry(&service_request_url, service_request),
            entry(&encounter_url, encounter),
            entry(&organization_url, organization),
            entry(&task_url, task.clone()),
        ],
    })
}

/// The ServiceRequest's status once the Task is in `status`: active until
/// the referral is finished; `completed` when done; `revoked` when it will
/// not be (rejected, failed, cancelled: as the IG's REFRESP01 revokes a
/// referral the patient did not attend).
fn service_request_status(status: TaskStatus) -> &'static str {
    use TaskStatus::*;
    match status {
        Requested | Accepted | InProgress | OnHold => "active",
        Completed => "completed",
        Rejected | Failed | Cancelled => "revoked",
        EnteredInError => "entered-in-error",
    }
}

/// The receiver's Encounter status for a Task in `status`.
fn encounter_status(status: TaskStatus) -> &'static str {
    use TaskStatus::*;
    match status {
        Requested | Accepted => "planned",
        InProgress => "in-progress",
        OnHold => "onleave",
        Completed => "finished",
        Rejected | Failed | Cancelled => "cancelled",
        EnteredInError => "entered-in-error",
    }
}

/// The `rejected-reasons-bars` code for a provider's reason, as Signpost
/// keeps it (`Task.statusReason.text`, from the provider's mapping): `RRNA`
/// when the provider has no room or time for it, `FC` when it could not
/// reach the patient, `OTH` for anything else (the text goes along).
pub fn rejected_reason(said: &str) -> (&'static str, &'static str) {
    let said = said.to_ascii_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| said.contains(w));
    if any(&[
        "contact",
        "no answer",
        "unreachable",
        "not reach",
        "could not reach",
        "no response",
        "did not respond",
        "did not attend",
    ]) {
        ("FC", "Failed Contact")
    } else if any(&[
        "capacity",
        "waiting list",
        "full",
        "not available",
        "unavailable",
        "no space",
        "no places",
        "timescale",
    ]) {
        ("RRNA", "Requested resource not available within timescale")
    } else {
        ("OTH", "Other")
    }
}

/// A UUID for entry `n` of the message `id`, the same on every send.
fn derived(id: uuid::Uuid, n: u8) -> uuid::Uuid {
    let mut bytes = *id.as_bytes();
    bytes[15] ^= n;
    // Keep it a version 4 (random) UUID with the RFC 4122 variant.
    bytes[6] = (bytes[6] & 0x0F) | 0x40;
    bytes[8] = (bytes[8] & 0x3F) | 0x80;
    uuid::Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_fall_into_the_bars_codes() {
        assert_eq!(rejected_reason("No capacity this month").0, "RRNA");
        assert_eq!(rejected_reason("waiting list full").0, "RRNA");
        assert_eq!(rejected_reason("Could not contact the patient").0, "FC");
        assert_eq!(rejected_reason("did not attend").0, "FC");
        assert_eq!(rejected_reason("rejected").0, "OTH");
        assert_eq!(rejected_reason("").0, "OTH");
    }

    #[test]
    fn entry_ids_are_stable_and_distinct() {
        let id = uuid::Uuid::now_v7();
        let all: std::collections::HashSet<_> = (1..=5).map(|n| derived(id, n)).collect();
        assert_eq!(all.len(), 5);
        assert_eq!(derived(id, 3), derived(id, 3));
        assert!(!all.contains(&id));
    }
}
