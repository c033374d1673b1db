//! Validation of incoming referrals, in layers, each reporting every problem
//! it finds as an [`Issue`] located by FHIRPath:
//!
//! 1. [`structure`]: the official FHIR R4 JSON Schema (`schemas/fhir/`),
//!    applied to each resource by its own type, including contained
//!    resources and Bundle entries. Failures are `400`.
//! 2. [`profile`]: the social-prescribing referral profile
//!    (`schemas/profiles/`), applied to the ServiceRequest and to the
//!    resources its references resolve to, plus the checks JSON Schema
//!    cannot express (reference resolution, NHS number check digits).
//!    Failures are `422`.
//!
//! Schemas are compiled once, at start-up; a [`Validator`] is `Send + Sync`
//! and cheap to share.

pub mod document;
pub mod profile;
pub mod references;
pub mod structure;

use std::path::Path;

use serde_json::Value;

pub use self::{
    profile::{Profile, Referral},
    references::Submission,
    structure::FhirSchema,
};
use crate::outcome::Issue;

/// NHS number identifier system.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// ODS organisation code identifier system.
pub const ODS_CODE_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// SNOMED CT.
pub const SNOMED_SYSTEM: &str = "http://snomed.info/sct";

/// Why a submission was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not valid FHIR R4, or not the kind of resource this endpoint takes (`400`).
    Structure(Vec<Issue>),
    /// Valid FHIR, but not a referral Signpost can accept (`422`).
    Profile(Vec<Issue>),
}

/// Compiled schemas for every validation layer.
pub struct Validator {
    fhir: FhirSchema,
    profile: Profile,
}

/// A failure to load or compile the schemas at start-up.
#[derive(Debug, thiserror::Error)]
#[error("cannot load schema {path}: {reason}")]
pub struct SchemaError {
    pub path: String,
    pub reason: String,
}

impl Validator {
    /// Load and compile `schemas_dir/fhir/fhir.schema.json` and
    /// `schemas_dir/profiles/social-prescribing-referral.schema.json`.
    pub fn load(schemas_dir: &Path) -> Result<Validator, SchemaError> {
        Ok(Validator {
            fhir: FhirSchema::load(&schemas_dir.join("fhir/fhir.schema.json"))?,
            profile: Profile::load(
                &schemas_dir.join("profiles/social-prescribing-referral.schema.json"),
            )?,
        })
    }

    /// The structural layer alone, for any resource.
    pub fn check_structure(&self, resource: &Value) -> Vec<Issue> {
        self.fhir.check(resource)
    }

    /// Every layer, for a bare ServiceRequest or a transaction Bundle. On
    /// success, the referral's facts and where its resources are.
    pub fn check_referral<'a>(
        &self,
        submission: Submission<'a>,
    ) -> Result<Referral<'a>, Rejection> {
        let structural = self.fhir.check(submission.document());
        if !structural.is_empty() {
            return Err(Rejection::Structure(structural));
        }
        self.check_profile(submission)
    }

    /// The referral profile alone, for a submission whose document has
    /// already passed [`check_structure`](Self::check_structure) (a
    /// transaction is checked whole before its ServiceRequest is found).
    pub fn check_profile<'a>(&self, submission: Submission<'a>) -> Result<Referral<'a>, Rejection> {
        self.profile.check(submission).map_err(Rejection::Profile)
    }
}

/// Read and parse a JSON file for a schema.
fn read_json(path: &Path) -> Result<Value, SchemaError> {
    let fail = |reason: String| SchemaError {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(e.to_string()))
}

/// `/contained/0/birthDate` → `.contained[0].birthDate`: a JSON pointer as
/// the FHIRPath steps to append to a resource's path.
pub fn pointer_to_fhirpath(pointer: &str) -> String {
    let mut out = String::with_capacity(pointer.len() + 8);
    for segment in pointer.split('/').skip(1) {
        let segment = segment.replace("~1", "/").replace("~0", "~");
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&segment);
            out.push(']');
        } else {
            out.push('.');
            out.push_str(&segment);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_fhirpath_steps() {
        assert_eq!(pointer_to_fhirpath(""), "");
        assert_eq!(
            pointer_to_fhirpath("/subject/reference"),
            ".subject.reference"
        );
        assert_eq!(
            pointer_to_fhirpath("/entry/2/resource/birthDate"),
            ".entry[2].resource.birthDate"
        );
    }
}
