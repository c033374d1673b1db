//! The social-prescribing referral profile: `schemas/profiles/
//! social-prescribing-referral.schema.json` holds one definition per resource
//! of a referral, with the client-facing diagnostic of each rule in its
//! `description`; this module applies each definition to the resource that
//! plays that part, following the references JSON Schema cannot follow, and
//! checks NHS number check digits.

use std::path::Path;

use jsonschema::{ValidationError, Validator as Compiled, error::ValidationErrorKind};
use serde_json::Value;

use super::{
    NHS_NUMBER_SYSTEM, ODS_CODE_SYSTEM, SchemaError, pointer_to_fhirpath, read_json,
    references::{Located, Submission},
};
use crate::outcome::{Issue, IssueCode};

/// The parts of a referral, each checked against its definition.
const PARTS: [&str; 5] = [
    "ServiceRequest",
    "Patient",
    "PractitionerRole",
    "Practitioner",
    "Organization",
];

/// The compiled profile.
pub struct Profile {
    /// `(definition name, its schema, compiled)`, in [`PARTS`] order.
    parts: Vec<(&'static str, Value, Compiled)>,
}

/// A referral that passed every layer, with its resources located and the
/// facts the domain needs read out.
#[derive(Debug, Clone)]
pub struct Referral<'a> {
    pub submission: Submission<'a>,
    pub service_request: Located<'a>,
    pub patient: Located<'a>,
    pub practitioner_role: Located<'a>,
    pub practitioner: Located<'a>,
    pub organization: Located<'a>,
    /// The first business identifier with both system and value.
    pub identifier_system: String,
    pub identifier_value: String,
    pub nhs_number: String,
    /// The requester Organization's ODS code.
    pub ods_code: String,
}

impl Profile {
    /// Load and compile the profile at `path`.
    pub fn load(path: &Path) -> Result<Profile, SchemaError> {
        let document = read_json(path)?;
        let fail = |reason: String| SchemaError {
            path: path.display().to_string(),
            reason,
        };
        let mut parts = Vec::new();
        for name in PARTS {
            let schema = document["definitions"]
                .get(name)
                .cloned()
                .ok_or_else(|| fail(format!("no definitions.{name}")))?;
            let compiled = jsonschema::options()
                .offline()
                .with_draft(jsonschema::Draft::Draft7)
                .build(&schema)
                .map_err(|e| fail(format!("definitions.{name}: {e}")))?;
            parts.push((name, schema, compiled));
        }
        Ok(Profile { parts })
    }

    /// Check a structurally valid submission against the profile.
    pub fn check<'a>(&self, submission: Submission<'a>) -> Result<Referral<'a>, Vec<Issue>> {
        let mut issues = Vec::new();
        let sr = submission.service_request();
        self.apply("ServiceRequest", &sr, &mut issues);

        let patient = self.follow(submission, &sr, "subject", "Patient", &mut issues);
        let role = self.follow(
            submission,
            &sr,
            "requester",
            "PractitionerRole",
            &mut issues,
        );
        let (practitioner, organization) = match &role {
            Some(role) => (
                self.follow(
                    submission,
                    role,
                    "practitioner",
                    "Practitioner",
                    &mut issues,
                ),
                self.follow(
                    submission,
                    role,
                    "organization",
                    "Organization",
                    &mut issues,
                ),
            ),
            None => (None, None),
        };
        if let Some(patient) = &patient {
            check_nhs_numbers(patient, &mut issues);
        }

        let (Some(patient), Some(role), Some(practitioner), Some(organization)) =
            (patient, role, practitioner, organization)
        else {
            return Err(issues);
        };
        if !issues.is_empty() {
            return Err(issues);
        }
        // The schema guaranteed these exist; read them out once.
        let (identifier_system, identifier_value) =
            first_identifier(sr.resource, None).unwrap_or_default();
        let nhs_number = first_identifier(patient.resource, Some(NHS_NUMBER_SYSTEM))
            .map(|(_, v)| v)
            .unwrap_or_default();
        let ods_code = first_identifier(organization.resource, Some(ODS_CODE_SYSTEM))
            .map(|(_, v)| v)
            .unwrap_or_default();
        Ok(Referral {
            submission,
            service_request: sr,
            patient,
            practitioner_role: role,
            practitioner,
            organization,
            identifier_system,
            identifier_value,
            nhs_number,
            ods_code,
        })
    }

    /// Resolve `from.element.reference`, require it to be `expected`, and
    /// apply that part's definition to it.
    fn follow<'a>(
        &self,
        submission: Submission<'a>,
        from: &Located<'a>,
        element: &str,
        expected: &str,
        issues: &mut Vec<Issue>,
    ) -> Option<Located<'a>> {
        // A missing reference was already reported by the schema.
        let reference = from.resource.get(element)?.get("reference")?.as_str()?;
        let at = format!("{}.{element}.reference", from.path);
        let Some(target) = submission.resolve(from, reference) else {
            let hint = match submission {
                Submission::ServiceRequest(_) => {
                    "a referral posted alone must carry it as a contained resource ('#id')"
                }
                Submission::Bundle { .. } => {
                    "reference another entry by its fullUrl or as Type/id, or a contained resource by '#id'"
                }
            };
            issues.push(
                Issue::error(
                    IssueCode::NotFound,
                    format!("{element} does not resolve to a resource in the submission: {hint}"),
                )
                .at(at),
            );
            return None;
        };
        if target.resource_type() != expected {
            issues.push(
                Issue::error(
                    IssueCode::Invalid,
                    format!(
                        "{element} must reference a {expected}, not a {}",
                        target.resource_type()
                    ),
                )
                .at(at),
            );
            return None;
        }
        self.apply(expected, &target, issues);
        Some(target)
    }

    fn apply(&self, part: &str, target: &Located<'_>, issues: &mut Vec<Issue>) {
        let Some((_, schema, compiled)) = self.parts.iter().find(|(name, ..)| *name == part) else {
            return;
        };
        for error in compiled.iter_errors(target.resource) {
            issues.push(describe(schema, &error, &target.path));
        }
    }
}

/// The error's diagnostic is the `description` nearest to the failing rule.
fn describe(schema: &Value, error: &ValidationError<'_>, path: &str) -> Issue {
    let mut location = format!(
        "{path}{}",
        pointer_to_fhirpath(error.instance_path().as_str())
    );
    let (code, description) = match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            location = format!("{location}.{name}");
            let text = schema["properties"][name]["description"].as_str();
            (IssueCode::Required, text.map(str::to_owned))
        }
        kind => {
            let code = match kind {
                ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. } => {
                    IssueCode::Value
                }
                _ => IssueCode::Invariant,
            };
            (
                code,
                nearest_description(schema, error.schema_path().as_str()),
            )
        }
    };
    let diagnostics = description.unwrap_or_else(|| {
        format!(
            "breaks the referral profile's '{}' rule",
            error.kind().keyword()
        )
    });
    Issue::error(code, diagnostics).at(location)
}

fn nearest_description(schema: &Value, schema_path: &str) -> Option<String> {
    let mut pointer = schema_path;
    loop {
        if let Some(text) = schema
            .pointer(pointer)
            .and_then(|node| node.get("description"))
            .and_then(Value::as_str)
        {
            return Some(text.to_owned());
        }
        let (parent, _) = pointer.rsplit_once('/')?;
        pointer = parent;
    }
}

/// Every NHS number on the Patient must have a valid check digit.
fn check_nhs_numbers(patient: &Located<'_>, issues: &mut Vec<Issue>) {
    let identifiers = patient.resource.get("identifier").and_then(Value::as_array);
    for (index, identifier) in identifiers.into_iter().flatten().enumerate() {
        if identifier.get("system").and_then(Value::as_str) != Some(NHS_NUMBER_SYSTEM) {
            continue;
        }
        if let Some(value) = identifier.get("value").and_then(Value::as_str)
            && crate::domain::NhsNumber::parse(value).is_err()
        {
            issues.push(
                Issue::error(
                    IssueCode::Value,
                    "not a valid NHS number: 10 digits whose last is the Modulus 11 check digit",
                )
                .at(format!("{}.identifier[{index}].value", patient.path)),
            );
        }
    }
}

/// The first identifier (of `system`, if given) with both system and value.
pub(crate) fn first_identifier(resource: &Value, system: Option<&str>) -> Option<(String, String)> {
    resource
        .get("identifier")?
        .as_array()?
        .iter()
        .find_map(|identifier| {
            let s = identifier.get("system")?.as_str()?;
            let v = identifier.get("value")?.as_str()?;
            (system.is_none_or(|wanted| wanted == s)).then(|| (s.to_owned(), v.to_owned()))
        })
}
