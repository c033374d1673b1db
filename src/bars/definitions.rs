//! The MessageDefinitions this receiver supports: the two BaRS requests it
//! acts on (a referral, a cancellation), and Signpost's proposal for the
//! use case BaRS does not have, a referral from primary care or an allied
//! health professional to social prescribing (modelled on Application 5,
//! "Primary Care to Community Pharmacy"). Each with the cardinalities of
//! its `focus` resources, which [`super::message`] checks.

use serde_json::{Value, json};

/// One supported MessageDefinition.
#[derive(Debug)]
pub struct Definition {
    pub url: &'static str,
    pub name: &'static str,
    pub title: &'static str,
    /// The workflow it carries (`referral` or `cancellation`).
    pub workflow: &'static str,
    /// `(resource type, min, max)`; `None`: unbounded.
    pub focus: &'static [(&'static str, usize, Option<usize>)],
    /// `useContext` workflow codes (`usecases-categories-bars`), and
    /// whether the definition is Signpost's proposal rather than BaRS's.
    pub use_context: &'static [&'static str],
    pub proposal: bool,
}

/// BaRS's referral request cardinalities (BaRS Core 1.5.0,
/// `bars-message-servicerequest-request-referral`), for the resources it
/// bounds; others may appear freely.
const REFERRAL_FOCUS: &[(&str, usize, Option<usize>)] = &[
    ("MessageHeader", 1, Some(1)),
    ("ServiceRequest", 1, Some(1)),
    ("Patient", 1, Some(1)),
    ("Encounter", 1, Some(1)),
    ("CarePlan", 1, Some(1)),
    ("Organization", 2, None),
    ("Practitioner", 1, None),
    ("PractitionerRole", 1, None),
    ("Consent", 1, None),
    ("HealthcareService", 1, None),
    ("Device", 0, Some(1)),
];

pub static REFERRAL: Definition = Definition {
    url: "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral",
    name: "BARSMessageDefinitionServiceRequestRequestReferral",
    title: "BaRS ServiceRequest request: referral",
    workflow: "referral",
    focus: REFERRAL_FOCUS,
    use_context: &[],
    proposal: false,
};

pub static CANCELLATION: Definition = Definition {
    url: "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled",
    name: "BARSMessageDefinitionServiceRequestRequestCancelled",
    title: "BaRS ServiceRequest request: cancellation",
    workflow: "cancellation",
    focus: &[
        ("MessageHeader", 1, Some(1)),
        ("ServiceRequest", 1, Some(1)),
        ("Patient", 1, Some(1)),
        ("Organization", 2, None),
    ],
    use_context: &[],
    proposal: false,
};

/// The use-case code Signpost proposes for social prescribing, next to
/// Application 5's `a5t1`…`a5t3` in `usecases-categories-bars`.
pub const SOCIAL_PRESCRIBING_USE_CASE: &str = "a5t4";

pub static SOCIAL_PRESCRIBING: Definition = Definition {
    url: "https://signpost.example/MessageDefinition/bars-message-servicerequest-request-social-prescribing",
    name: "SignpostMessageDefinitionServiceRequestRequestSocialPrescribing",
    title: "Proposal: BaRS ServiceRequest request, primary care or allied health professional to social prescribing",
    workflow: "referral",
    focus: REFERRAL_FOCUS,
    use_context: &[SOCIAL_PRESCRIBING_USE_CASE],
    proposal: true,
};

/// Every supported definition.
pub static ALL: [&Definition; 3] = [&REFERRAL, &CANCELLATION, &SOCIAL_PRESCRIBING];

/// The supported definition with this canonical URL (a `|version` suffix
/// is ignored).
pub fn find(url: &str) -> Option<&'static Definition> {
    let url = url.split('|').next().unwrap_or(url);
    ALL.iter().copied().find(|d| d.url == url)
}

impl Definition {
    /// As a FHIR R4 MessageDefinition.
    pub fn to_fhir(&self) -> Value {
        let id = self.url.rsplit('/').next().unwrap_or(self.name);
        let mut definition = json!({
            "resourceType": "MessageDefinition",
            "id": id,
            "url": self.url,
            "name": self.name,
            "title": self.title,
            "status": if self.proposal { "draft" } else { "active" },
            "experimental": self.proposal,
            "date": "2026-12-07",
            "publisher": if self.proposal { "Signpost" } else { "NHS England (served by Signpost as a receiver)" },
            "eventCoding": {
                "system": "https://fhir.nhs.uk/CodeSystem/message-events-bars",
                "code": "servicerequest-request",
            },
            "category": "notification",
            "focus": self.focus.iter().map(|(code, min, max)| json!({
                "code": code,
                "min": min,
                "max": max.map_or("*".to_owned(), |m| m.to_string()),
            })).collect::<Vec<_>>(),
            "responseRequired": "always",
        });
        if !self.use_context.is_empty() {
            definition["useContext"] = json!(self.use_context.iter().map(|code| json!({
                "code": {
                    "system": "http://terminology.hl7.org/CodeSystem/usage-context-type",
                    "code": "workflow",
                },
                "valueCodeableConcept": { "coding": [{
                    "system": "https://fhir.nhs.uk/CodeSystem/usecases-categories-bars",
                    "code": code,
                    "display": "Primary Care or Allied Health Professional to Social Prescribing (proposed)",
                }]},
            })).collect::<Vec<_>>());
            definition["purpose"] = json!(
                "Proposed upstream: BaRS has no social-prescribing use case. A GP practice, PCN or allied health professional refers a person to a social prescribing service (link worker, exercise on referral, community groups) with the payload of Application 5 (a referral ServiceRequest with status active and category referral, the Patient with an NHS number, the requesting PractitionerRole, Practitioner and Organization, Encounter, CarePlan, Consent and the HealthcareService referred to), and a SNOMED CT ServiceRequest.code naming the service (e.g. 871731000000106 Referral to social prescribing service)."
            );
        }
        definition
    }
}
