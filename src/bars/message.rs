//! Reading a BaRS message Bundle in BaRS's published order: the Bundle
//! and its version, the MessageHeader (destination, source, sender,
//! definition), then the workflow the MessageHeader and the ServiceRequest
//! select (the decision table, [`decide`]), then the cardinalities of the
//! MessageDefinition. Nothing here stores anything or knows about HTTP.
//!
//! Known quirks of the official BaRS examples, tolerated (the conformance
//! kit, `tests/api/bars_conformance.rs`, lists them with the examples):
//! - Q1: `eventCoding` in two code systems ([`EVENT_SYSTEMS`]);
//! - Q2: `destination.endpoint` spelt `…/Id/dos-service-id|N` (`http` or
//!   `https`), `[ODSCode]:[DoSId]` or the bare id ([`names_service`]);
//! - Q4: a cancellation to `entered-in-error` with reason `delete` and no
//!   `definition` (SERVREQ02);
//! - Q6: a `destination.receiver` Organization with no ODS code (then the
//!   service id alone names the receiver);
//! - Q7: `Bundle.meta.versionId` spelt `1.0.0-alpha`, `1.1.0-alpha`,
//!   `1.0.0-beta`: every version 1 is understood;
//! - Q9: the ODS identifier system spelt `https://fhir.nhs.uk/id/…`
//!   (lower-case `id`; [`super::headers::ods_code`]).

use std::collections::HashMap;

use serde_json::Value;

use super::{
    answer::{Rec, Refusal},
    definitions::{self, Definition},
    headers::ods_code,
};
use crate::{config::BarsConfig, outcome::IssueCode, validation::references::Submission};

/// The code systems of `MessageHeader.eventCoding`. BaRS requests use the
/// first; the API's HTTP-response examples the second (a known quirk,
/// tolerated).
pub const EVENT_SYSTEMS: [&str; 2] = [
    "https://fhir.nhs.uk/CodeSystem/message-events-bars",
    "https://fhir.nhs.uk/CodeSystem/message-event-servicerequest",
];
/// The code system of `ServiceRequest.category` that names the workflow.
pub const CATEGORY_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/message-category-servicerequest";
/// The identifier system Signpost gives a BaRS ServiceRequest that carries
/// no business identifier: BaRS identifies it by its entry's `fullUrl`
/// (`urn:uuid:…`), which a cancellation repeats.
pub const URI_SYSTEM: &str = "urn:ietf:rfc:3986";

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Workflow {
    /// A new referral.
    NewReferral,
    /// Cancel a referral: the ServiceRequest's new status (`revoked` or
    /// `entered-in-error`).
    Cancellation(String),
}

impl Workflow {
    /// As stored in `bars_messages.workflow`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Workflow::NewReferral => "referral",
            Workflow::Cancellation(_) => "cancellation",
        }
    }
}

/// The workflow variables of one message, as sent (`None` when absent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Variables<'a> {
    /// `MessageHeader.eventCoding` (system, code).
    pub event: Option<(&'a str, &'a str)>,
    /// `MessageHeader.reason.coding[0].code`.
    pub reason: Option<&'a str>,
    /// `ServiceRequest.status`.
    pub status: Option<&'a str>,
    /// Every `ServiceRequest.category` code of [`CATEGORY_SYSTEM`].
    pub category: Option<&'a str>,
}

/// The decision table: event × reason × ServiceRequest status × category
/// → workflow. Everything else is a non-standard workflow (`400
/// REC_BAD_REQUEST`, `invariant`).
pub fn decide(v: Variables<'_>) -> Result<Workflow, Refusal> {
    let event = v
        .event
        .filter(|(system, _)| EVENT_SYSTEMS.contains(system))
        .map(|(_, code)| code);
    match (event, v.reason, v.status, v.category) {
        (Some("servicerequest-request"), Some("new"), Some("active"), Some("referral")) => {
            Ok(Workflow::NewReferral)
        }
        (
            Some("servicerequest-request"),
            Some("update"),
            Some(status @ ("revoked" | "entered-in-error")),
            Some("referral"),
        ) => Ok(Workflow::Cancellation(status.to_owned())),
        // Quirk (SERVREQ02): entered-in-error sent with reason `delete`.
        (
            Some("servicerequest-request"),
            Some("delete"),
            Some("entered-in-error"),
            Some("referral"),
        ) => Ok(Workflow::Cancellation("entered-in-error".into())),
        _ => Err(Refusal::at(
            Rec::BadRequest,
            IssueCode::Invariant,
            "the combination of MessageHeader.eventCoding, MessageHeader.reason, ServiceRequest.status and ServiceRequest.category is not a workflow this receiver supports (a new referral: servicerequest-request, new, active, referral; a cancellation: servicerequest-request, update, revoked or entered-in-error, referral)",
            "Bundle.entry[0].resource.eventCoding",
        )),
    }
}

/// A message that passed the envelope checks.
#[derive(Debug, Clone)]
pub struct Message {
    /// `Bundle.id`: the `response.identifier` of every response.
    pub bundle_id: String,
    /// `MessageHeader.source.endpoint`: where responses go.
    pub source_endpoint: String,
    /// The ODS code of `MessageHeader.sender`.
    pub sender_ods: String,
    /// `Bundle.entry` index of the ServiceRequest in focus.
    pub service_request: usize,
    pub workflow: Workflow,
    pub definition: Option<&'static Definition>,
}

/// Check the envelope of a message Bundle addressed to `receiver`.
pub fn read(bundle: &Value, receiver: &BarsConfig) -> Result<Message, Refusal> {
    let entries = bundle_entries(bundle)?;
    version(bundle)?;
    let bundle_id = bundle
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| {
            Refusal::at(
                Rec::BadRequest,
                IssueCode::Required,
                "the Bundle has no id: responses name it",
                "Bundle.id",
            )
        })?
        .to_owned();
    let header = &entries[0]["resource"];
    let submission = Submission::Bundle {
        bundle,
        service_request: 0,
    };
    let header_at = "Bundle.entry[0].resource";
    let resolve_organisation = |reference: Option<&str>| {
        let target = submission.resolve(&submission.service_request(), reference?)?;
        ods_code(target.resource)
    };

    // Destination: this receiver's Organization and service.
    let destinations = header
        .get("destination")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let for_us = destinations.iter().any(|d| {
        let organisation = d
            .pointer("/receiver/reference")
            .and_then(Value::as_str)
            .and_then(|reference| submission.resolve(&submission.service_request(), reference))
            .filter(|target| target.resource_type() == "Organization");
        // Quirk Q6: the official examples' receiver Organization carries
        // no ODS code; then the service id alone names the receiver.
        let ods_matches = organisation.is_some_and(|target| {
            ods_code(target.resource)
                .is_none_or(|ods| ods.eq_ignore_ascii_case(&receiver.receiver_ods))
        });
        let endpoint = d.get("endpoint").and_then(Value::as_str).unwrap_or("");
        ods_matches && names_service(endpoint, &receiver.service_id)
    });
    if !for_us {
        return Err(Refusal::at(
            Rec::BadRequest,
            IssueCode::Invalid,
            "MessageHeader.destination does not name this receiver: its receiver must reference the Organization with this receiver's ODS code and its endpoint must carry this receiver's service id",
            &format!("{header_at}.destination"),
        ));
    }
    let source_endpoint = header
        .pointer("/source/endpoint")
        .and_then(Value::as_str)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Refusal::at(
                Rec::BadRequest,
                IssueCode::Required,
                "MessageHeader.source.endpoint is required: responses are sent there",
                &format!("{header_at}.source.endpoint"),
            )
        })?
        .to_owned();
    let sender_ods = resolve_organisation(
        header.pointer("/sender/reference").and_then(Value::as_str),
    )
    .ok_or_else(|| {
        Refusal::at(
            Rec::BadRequest,
            IssueCode::Required,
            "MessageHeader.sender must reference an Organization in the Bundle with an ODS code",
            &format!("{header_at}.sender"),
        )
    })?;
    let definition = match header.get("definition").and_then(Value::as_str) {
        Some(url) => Some(definitions::find(url).ok_or_else(|| {
            Refusal::at(
                Rec::BadRequest,
                IssueCode::NotSupported,
                "MessageHeader.definition is not a MessageDefinition this receiver supports (see GET /fhir/MessageDefinition)",
                &format!("{header_at}.definition"),
            )
        })?),
        None => None,
    };

    // The focus: one ServiceRequest entry.
    let focus = header
        .pointer("/focus/0/reference")
        .and_then(Value::as_str)
        .and_then(|reference| submission.resolve(&submission.service_request(), reference))
        .filter(|target| target.resource_type() == "ServiceRequest")
        .and_then(|target| target.entry)
        .ok_or_else(|| {
            Refusal::at(
                Rec::BadRequest,
                IssueCode::Invalid,
                "MessageHeader.focus must reference the ServiceRequest entry",
                &format!("{header_at}.focus"),
            )
        })?;
    let service_request = &entries[focus]["resource"];
    let category = service_request
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|c| c.get("system").and_then(Value::as_str) == Some(CATEGORY_SYSTEM))
        .and_then(|c| c.get("code").and_then(Value::as_str));
    let variables = Variables {
        event: header
            .get("eventCoding")
            .and_then(|c| Some((c.get("system")?.as_str()?, c.get("code")?.as_str()?))),
        reason: header
            .pointer("/reason/coding/0/code")
            .and_then(Value::as_str),
        status: service_request.get("status").and_then(Value::as_str),
        category,
    };
    let workflow = decide(variables)?;

    // The definition must be one for this workflow; a new referral must
    // name it (a cancellation without one is a known quirk, tolerated).
    match (&workflow, definition) {
        (Workflow::NewReferral, None) => {
            return Err(Refusal::at(
                Rec::BadRequest,
                IssueCode::Required,
                "MessageHeader.definition is required",
                &format!("{header_at}.definition"),
            ));
        }
        (workflow, Some(definition)) if definition.workflow != workflow.as_str() => {
            return Err(Refusal::at(
                Rec::BadRequest,
                IssueCode::Invariant,
                "MessageHeader.definition is not the MessageDefinition of this workflow",
                &format!("{header_at}.definition"),
            ));
        }
        _ => {}
    }
    let cardinalities = definition.unwrap_or(&definitions::CANCELLATION);
    check_cardinalities(entries, cardinalities)?;
    Ok(Message {
        bundle_id,
        source_endpoint,
        sender_ods,
        service_request: focus,
        workflow,
        definition,
    })
}

/// `Bundle` of `type` `message` whose first entry is a MessageHeader.
fn bundle_entries(bundle: &Value) -> Result<&[Value], Refusal> {
    let invalid = |text: &str, at: &str| Refusal::at(Rec::BadRequest, IssueCode::Invalid, text, at);
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle")
        || bundle.get("type").and_then(Value::as_str) != Some("message")
    {
        return Err(invalid(
            "$process-message takes a Bundle of type message",
            "Bundle.type",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if entries
        .first()
        .and_then(|e| e.pointer("/resource/resourceType"))
        .and_then(Value::as_str)
        != Some("MessageHeader")
    {
        return Err(invalid(
            "the first entry of a message Bundle must be its MessageHeader",
            "Bundle.entry[0]",
        ));
    }
    Ok(entries)
}

/// `Bundle.meta.versionId`: present (`400`, `invariant`), and a BaRS
/// version this receiver understands: major version 1 (`422`,
/// `not-supported`).
fn version(bundle: &Value) -> Result<(), Refusal> {
    let Some(version) = bundle.pointer("/meta/versionId").and_then(Value::as_str) else {
        return Err(Refusal::at(
            Rec::BadRequest,
            IssueCode::Invariant,
            "Bundle.meta.versionId is required: the BaRS version the message follows",
            "Bundle.meta.versionId",
        ));
    };
    if version.split(['.', '-']).next() != Some("1") {
        return Err(Refusal::at(
            Rec::UnprocessableEntity,
            IssueCode::NotSupported,
            "the versioning specified is not supported: this receiver supports BaRS version 1",
            "Bundle.meta.versionId",
        ));
    }
    Ok(())
}

/// Whether a `destination.endpoint` carries `service_id`, in any of the
/// official spellings: `https://fhir.nhs.uk/Id/dos-service-id|<id>` (or
/// `http://`), `<ODS code>:<id>`, or the bare id.
pub fn names_service(endpoint: &str, service_id: &str) -> bool {
    let id = match endpoint.rsplit_once('|') {
        Some((system, id)) if system.ends_with("/Id/dos-service-id") => id,
        Some(_) => return false,
        None => match endpoint.rsplit_once(':') {
            Some((ods, id)) if ods.chars().all(|c| c.is_ascii_alphanumeric()) => id,
            Some(_) => return false,
            None => endpoint,
        },
    };
    id == service_id
}

/// Each resource type's number of entries within the definition's bounds.
fn check_cardinalities(entries: &[Value], definition: &Definition) -> Result<(), Refusal> {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for entry in entries {
        if let Some(t) = entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
        {
            *counts.entry(t).or_default() += 1;
        }
    }
    let mut issues = Vec::new();
    for &(resource_type, min, max) in definition.focus {
        let n = counts.get(resource_type).copied().unwrap_or(0);
        if n < min {
            issues.push(
                crate::outcome::Issue::error(
                    IssueCode::Required,
                    format!(
                        "the message holds {n} {resource_type} entries; its MessageDefinition requires at least {min}"
                    ),
                )
                .at("Bundle.entry"),
            );
        } else if max.is_some_and(|max| n > max) {
            issues.push(
                crate::outcome::Issue::error(
                    IssueCode::Invariant,
                    format!(
                        "the message holds {n} {resource_type} entries; its MessageDefinition allows at most {}",
                        max.unwrap_or_default()
                    ),
                )
                .at("Bundle.entry"),
            );
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(Refusal {
            rec: Rec::BadRequest,
            issues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_official_spelling_of_the_service_id_is_understood() {
        for endpoint in [
            "https://fhir.nhs.uk/Id/dos-service-id|2000072489",
            "http://fhir.nhs.uk/Id/dos-service-id|2000072489",
            "X26:2000072489",
            "2000072489",
        ] {
            assert!(names_service(endpoint, "2000072489"), "{endpoint}");
        }
        for endpoint in [
            "https://fhir.nhs.uk/Id/dos-service-id|111111111",
            "https://example.org/other|2000072489",
            "urn:uuid:2000072489",
            "",
        ] {
            assert!(!names_service(endpoint, "2000072489"), "{endpoint}");
        }
    }
}
