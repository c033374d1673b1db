//! BaRS answers: the receiver error catalogue (`REC_*`) and the shape of
//! the OperationOutcomes a BaRS receiver sends, as in the official examples
//! (`tests/fixtures/real/bars/oo-rec/`): one issue per problem, each with
//! its FHIR issue code, the `REC_*` code in `details`, and diagnostics in
//! BaRS's form, "<receiver ODS> was unable to process the request: …".
//! Diagnostics come from Signpost's own checks, which never quote
//! submitted values, so an answer never carries patient data.

use serde_json::{Value, json};

use crate::outcome::{Issue, IssueCode};

/// The code system of the `REC_*` codes. The official examples spell it
/// `…/Codesystem/…` (a known quirk); Signpost sends the canonical spelling.
pub const ERROR_CODE_SYSTEM: &str = "https://fhir.nhs.uk/CodeSystem/http-error-codes";

/// The receiver error codes Signpost answers with, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rec {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Timeout,
    Conflict,
    UnprocessableEntity,
    TooManyRequests,
    ServerError,
    NotImplemented,
    ServiceUnavailable,
}

impl Rec {
    pub fn status(self) -> u16 {
        match self {
            Rec::BadRequest => 400,
            Rec::Unauthorized => 401,
            Rec::Forbidden => 403,
            Rec::NotFound => 404,
            Rec::Timeout => 408,
            Rec::Conflict => 409,
            Rec::UnprocessableEntity => 422,
            Rec::TooManyRequests => 429,
            Rec::ServerError => 500,
            Rec::NotImplemented => 501,
            Rec::ServiceUnavailable => 503,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Rec::BadRequest => "REC_BAD_REQUEST",
            Rec::Unauthorized => "REC_UNAUTHORIZED",
            Rec::Forbidden => "REC_FORBIDDEN",
            Rec::NotFound => "REC_NOT_FOUND",
            Rec::Timeout => "REC_TIMEOUT",
            Rec::Conflict => "REC_CONFLICT",
            Rec::UnprocessableEntity => "REC_UNPROCESSABLE_ENTITY",
            // Not in the OperationOutcome examples, but in BaRS's
            // Transactional Integrity page, among the answers a sender
            // retries.
            Rec::TooManyRequests => "REC_TOO_MANY_REQUESTS",
            Rec::ServerError => "REC_SERVER_ERROR",
            Rec::NotImplemented => "REC_NOT_IMPLEMENTED",
            Rec::ServiceUnavailable => "REC_SERVICE_UNAVAILABLE",
        }
    }

    /// The receiver error for an HTTP status Signpost's shared layers
    /// answer with (authentication, media type, body limits, storage).
    pub fn for_status(status: u16) -> Rec {
        match status {
            401 => Rec::Unauthorized,
            403 => Rec::Forbidden,
            404 => Rec::NotFound,
            408 => Rec::Timeout,
            409 => Rec::Conflict,
            413 | 422 => Rec::UnprocessableEntity,
            429 => Rec::TooManyRequests,
            501 => Rec::NotImplemented,
            503 => Rec::ServiceUnavailable,
            500..=599 => Rec::ServerError,
            _ => Rec::BadRequest,
        }
    }
}

/// A refusal: the receiver error and the issues behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub rec: Rec,
    pub issues: Vec<Issue>,
}

impl Refusal {
    /// One issue.
    pub fn new(rec: Rec, code: IssueCode, text: impl Into<String>) -> Refusal {
        Refusal {
            rec,
            issues: vec![Issue::error(code, text)],
        }
    }

    /// One issue at a FHIRPath location.
    pub fn at(rec: Rec, code: IssueCode, text: impl Into<String>, at: &str) -> Refusal {
        Refusal {
            rec,
            issues: vec![Issue::error(code, text).at(at)],
        }
    }

    /// `400 REC_BAD_REQUEST` for the issues of a payload check, each
    /// issue code brought into the catalogue's set for `400` (`invalid`,
    /// `invariant`, `required`, `value`, `not-supported`).
    pub fn bad_payload(issues: Vec<Issue>) -> Refusal {
        let issues = issues
            .into_iter()
            .map(|mut issue| {
                issue.code = match issue.code {
                    IssueCode::Required => IssueCode::Required,
                    IssueCode::Value | IssueCode::CodeInvalid | IssueCode::TooLong => {
                        IssueCode::Value
                    }
                    IssueCode::Invariant | IssueCode::BusinessRule => IssueCode::Invariant,
                    IssueCode::NotSupported => IssueCode::NotSupported,
                    _ => IssueCode::Invalid,
                };
                issue
            })
            .collect();
        Refusal {
            rec: Rec::BadRequest,
            issues,
        }
    }

    /// The OperationOutcome, from the receiver with this ODS code.
    pub fn outcome(&self, receiver_ods: &str) -> Value {
        let issues = self.issues.iter().map(Issue::to_fhir).collect();
        shaped(self.rec, issues, receiver_ods)
    }
}

/// An OperationOutcome answered with `status` by a layer shared with the
/// rest of the API (admission control's `408` and `503`, the rate limit's
/// `429`, authentication, routing), in BaRS's shape: each issue keeps its
/// code and text, and gains the `REC_*` code and BaRS's diagnostics form.
/// Anything that is not an OperationOutcome becomes one issue saying what
/// the status means.
pub fn reshape(status: u16, outcome: &Value, receiver_ods: &str) -> Value {
    let rec = Rec::for_status(status);
    let issues: Vec<Value> = outcome
        .get("issue")
        .and_then(Value::as_array)
        .filter(|issues| !issues.is_empty())
        .cloned()
        .unwrap_or_else(|| {
            vec![json!({
                "severity": "error",
                "code": if status >= 500 { "exception" } else { "processing" },
                "diagnostics": format!("the request was refused with HTTP status {status}"),
            })]
        });
    shaped(rec, issues, receiver_ods)
}

/// `issues` (`OperationOutcome.issue` elements) as a BaRS receiver's
/// OperationOutcome.
fn shaped(rec: Rec, issues: Vec<Value>, receiver_ods: &str) -> Value {
    let issues: Vec<Value> = issues
        .into_iter()
        .map(|mut fhir| {
            fhir["details"] = json!({ "coding": [{
                "system": ERROR_CODE_SYSTEM,
                "code": rec.code(),
            }]});
            let said = fhir
                .get("diagnostics")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            fhir["diagnostics"] = json!(format!(
                "{receiver_ods} was unable to process the request: {said}"
            ));
            fhir
        })
        .collect();
    json!({
        "resourceType": "OperationOutcome",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "profile": [
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"
        ]},
        "issue": issues,
    })
}

/// Signpost's human-readable reference for a referral (BaRS Applications 5
/// and 8 want one in the synchronous answer): `SP-` and the last twelve
/// hex digits of its id (the random part of a time-ordered UUID), in three
/// groups, upper case. Derived, so never stored and never out of step.
pub fn referral_reference(referral_id: &str) -> String {
    let hex: Vec<char> = referral_id
        .chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let tail = &hex[hex.len().saturating_sub(12)..];
    let groups: Vec<String> = tail.chunks(4).map(|c| c.iter().collect()).collect();
    format!("SP-{}", groups.join("-"))
}

/// The answer to an accepted message: an informational OperationOutcome
/// carrying the referral's reference and its ServiceRequest.
pub fn accepted(what: &str, referral_id: &str) -> Value {
    let reference = referral_reference(referral_id);
    json!({
        "resourceType": "OperationOutcome",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": { "profile": [
            "https://fhir.hl7.org.uk/StructureDefinition/UKCore-OperationOutcome"
        ]},
        "issue": [{
            "severity": "information",
            "code": "informational",
            "details": {
                "coding": [{
                    "system": "https://fhir.nhs.uk/Id/signpost-referral-reference",
                    "code": reference,
                }],
                "text": format!("Signpost referral reference {reference}"),
            },
            "diagnostics": format!("{what}: Signpost referral reference {reference}"),
            "expression": [format!("ServiceRequest/{referral_id}")],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_is_the_ids_random_tail_in_groups() {
        assert_eq!(
            referral_reference("0190f3a2-7b1c-7def-8a12-3456789abcde"),
            "SP-3456-789A-BCDE"
        );
    }

    #[test]
    fn payload_issue_codes_are_brought_into_the_catalogue() {
        let refusal = Refusal::bad_payload(vec![
            Issue::error(IssueCode::Structure, "a"),
            Issue::error(IssueCode::BusinessRule, "b"),
            Issue::error(IssueCode::Required, "c"),
        ]);
        let codes: Vec<IssueCode> = refusal.issues.iter().map(|i| i.code).collect();
        assert_eq!(
            codes,
            [
                IssueCode::Invalid,
                IssueCode::Invariant,
                IssueCode::Required
            ]
        );
        let outcome = refusal.outcome("X26");
        assert_eq!(
            outcome["issue"][0]["details"]["coding"][0]["code"],
            "REC_BAD_REQUEST"
        );
        assert!(
            outcome["issue"][1]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("X26 was unable to process the request: ")
        );
    }
}
