//! `GET /fhir/metadata`: a CapabilityStatement of exactly what this server
//! supports, no more.

use axum::{
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde_json::json;

use super::base_url;
use crate::{
    bars::definitions,
    http::{AppState, FhirResponse},
};

/// The CapabilityStatement; it declares BaRS messaging when `[bars]` is
/// configured.
pub(super) async fn capability_statement(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> FhirResponse {
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Signpost",
        "kind": "instance",
        "software": { "name": "Signpost", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Signpost social-prescribing referral gateway" },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Referrals are accepted as a ServiceRequest with its Patient, PractitionerRole, Practitioner and Organization contained, or as a transaction Bundle holding them; either way they are stored as one ServiceRequest with contained resources. Every accepted referral has a Task tracking it; every change of the Task is sent to the referrer's configured callback URL as a Subscriptions-backport full-resource notification (topic https://signpost.example/SubscriptionTopic/referral-task-status).",
            "resource": [
                {
                    "type": "ServiceRequest",
                    "interaction": [
                        { "code": "create" },
                        { "code": "read" },
                        { "code": "vread" },
                        { "code": "update", "documentation": "only to cancel: status revoked or entered-in-error" },
                        { "code": "patch", "documentation": "JSON Patch replacing /status: only to cancel" },
                        { "code": "search-type" }
                    ],
                    "versioning": "versioned-update",
                    "conditionalUpdate": false,
                    "readHistory": false,
                    "updateCreate": false,
                    "conditionalCreate": true,
                    "searchParam": [
                        { "name": "identifier", "type": "token", "documentation": "system|value, |value or value" }
                    ]
                },
                {
                    "type": "Task",
                    "documentation": "A referral's Task, and an escalation's child Task (partOf the referral's Task: a provider's request back to a clinician, see the README's Escalation). The referrer, or the clinical service it sends escalations to (with its own token), acknowledges a child Task with PATCH (application/json-patch+json): status accepted, rejected (with statusReason) or completed (with an output whose valueCodeableConcept is https://signpost.example/CodeSystem/escalation-decision resume or close).",
                    "interaction": [
                        { "code": "read" },
                        { "code": "patch", "documentation": "an escalation's child Task only, by its referrer" },
                        { "code": "search-type" }
                    ],
                    "searchParam": [
                        { "name": "focus", "type": "reference", "documentation": "ServiceRequest/{id}" },
                        { "name": "_lastUpdated", "type": "date", "documentation": "gt or ge an instant: the Tasks changed since" },
                        { "name": "part-of", "type": "reference", "documentation": "Task/{id}: the escalations of a referral's Task (alone)" }
                    ]
                },
                {
                    "type": "Communication",
                    "documentation": "What a provider observed when it escalated a referral (about and basedOn the ServiceRequest); the referrer's own only.",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": [
                        { "name": "based-on", "type": "reference", "documentation": "ServiceRequest/{id}" },
                        { "name": "about", "type": "reference", "documentation": "ServiceRequest/{id}" }
                    ]
                },
                {
                    "type": "Flag",
                    "documentation": "A safeguarding concern raised with an escalation (BaRS flag category SG, BaRS safeguarding codes); the referrer's own only.",
                    "interaction": [{ "code": "search-type" }],
                    "searchParam": [
                        { "name": "subject:identifier", "type": "token", "documentation": "the patient's NHS number: system|value or value (also patient:identifier)" }
                    ]
                },
                {
                    "type": "MessageDefinition",
                    "documentation": "the BaRS messages this receiver supports (see messaging)",
                    "interaction": [
                        { "code": "read" },
                        { "code": "search-type" }
                    ]
                },
                {
                    "type": "Subscription",
                    "supportedProfile": ["http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription"],
                    "documentation": "One per referrer (id: the referrer's id), read-only, made from its configuration; a referrer sees its own.",
                    "interaction": [{ "code": "read" }],
                    "operation": [
                        { "name": "status", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-status" },
                        { "name": "events", "definition": "http://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition/backport-subscription-events", "documentation": "eventsSinceNumber, eventsUntilNumber (inclusive), content; at most 100 events per answer" }
                    ]
                }
            ],
            "interaction": [
                { "code": "transaction", "documentation": "one referral per Bundle: one ServiceRequest entry and the entries it references, all with request.method POST" }
            ]
        }]
    });
    if app.config.bars.is_some() {
        let base = base_url(&app.config, &headers);
        statement["rest"][0]["operation"] = json!([{
            "name": "process-message",
            "definition": "http://hl7.org/fhir/OperationDefinition/MessageHeader-process-message",
            "documentation": "NHS BaRS receiver: a message Bundle with X-Request-Id and X-Correlation-Id (GUIDs); answers are BaRS receiver errors (REC_*) or 200 with Signpost's referral reference"
        }]);
        statement["messaging"] = json!([{
            "endpoint": [{
                "protocol": {
                    "system": "http://terminology.hl7.org/CodeSystem/message-transport",
                    "code": "http"
                },
                "address": format!("{base}/$process-message")
            }],
            "reliableCache": 0,
            "documentation": "NHS Booking and Referral Standard (BaRS) 1.x receiver: new referrals and their cancellation; a processed X-Request-Id is answered 409 REC_CONFLICT duplicate. To a referrer configured with notify = \"bars\", each Task change of a referral it sent by BaRS is sent as a servicerequest-response message.",
            "supportedMessage": definitions::ALL.iter().map(|d| json!({
                "mode": "receiver",
                "definition": d.url
            })).chain(std::iter::once(json!({
                "mode": "sender",
                "definition": crate::bars::response::DEFINITION
            }))).collect::<Vec<_>>()
        }]);
    }
    FhirResponse::new(StatusCode::OK, statement.to_string())
}
