//! `GET /fhir/metadata`: a CapabilityStatement of exactly what this server
//! supports, no more.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::FHIR_JSON;

/// The CapabilityStatement.
pub async fn capability_statement() -> Response {
    let statement = json!({
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
            "documentation": "Referrals are accepted as a ServiceRequest with its Patient, PractitionerRole, Practitioner and Organization contained, or as a transaction Bundle holding them; either way they are stored as one ServiceRequest with contained resources. Every accepted referral has a Task tracking it.",
            "resource": [
                {
                    "type": "ServiceRequest",
                    "interaction": [
                        { "code": "create" },
                        { "code": "read" },
                        { "code": "vread" },
                        { "code": "search-type" }
                    ],
                    "versioning": "versioned",
                    "readHistory": false,
                    "updateCreate": false,
                    "conditionalCreate": true,
                    "searchParam": [
                        { "name": "identifier", "type": "token", "documentation": "system|value, |value or value" }
                    ]
                },
                {
                    "type": "Task",
                    "interaction": [
                        { "code": "read" },
                        { "code": "search-type" }
                    ],
                    "searchParam": [
                        { "name": "focus", "type": "reference", "documentation": "ServiceRequest/{id}" }
                    ]
                }
            ],
            "interaction": [
                { "code": "transaction", "documentation": "one referral per Bundle: one ServiceRequest entry and the entries it references, all with request.method POST" }
            ]
        }]
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        statement.to_string(),
    )
        .into_response()
}
