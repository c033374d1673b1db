//! The structural layer: the official FHIR R4 JSON Schema (draft-06, CC0),
//! compiled once.
//!
//! The schema's root is a `oneOf` over every resource type, which would turn
//! any mistake into one useless "matches none of 146 schemas". So each
//! resource is checked against its own type's definition, and where the
//! schema offers a `oneOf` of resources (a `contained` entry, a Bundle
//! entry's `resource`), the inner resource is checked the same way, by its
//! own `resourceType`, with its path prefixed. Diagnostics never quote the
//! submitted values, only element names and the schema's rules.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, OnceLock},
};

use jsonschema::{ValidationError, Validator, error::ValidationErrorKind};
use serde_json::Value;

use super::{SchemaError, pointer_to_fhirpath, read_json};
use crate::outcome::{Issue, IssueCode};

/// The FHIR R4 schema, compiled per resource type.
///
/// Compiling a type pulls in most of the 3 MB schema (every resource is
/// reachable through `contained`), about 60 ms each in a release build, so
/// only the types a referral is posted as are compiled at start-up; any other
/// type is compiled the first time a resource of that type needs its own
/// errors located, then kept.
pub struct FhirSchema {
    schema: Arc<serde_json::Value>,
    validators: HashMap<String, OnceLock<Validator>>,
}

/// Types compiled at start-up: the ones every intake needs.
const EAGER_TYPES: [&str; 2] = ["ServiceRequest", "Bundle"];

impl FhirSchema {
    /// Load and compile the schema at `path`.
    pub fn load(path: &Path) -> Result<FhirSchema, SchemaError> {
        let schema = read_json(path)?;
        let validators = schema["discriminator"]["mapping"]
            .as_object()
            .map(|m| {
                m.keys()
                    .map(|t| (t.clone(), OnceLock::new()))
                    .collect::<HashMap<_, _>>()
            })
            .filter(|types| !types.is_empty())
            .ok_or_else(|| SchemaError {
                path: path.display().to_string(),
                reason: "no resource types in discriminator.mapping: is this fhir.schema.json?"
                    .into(),
            })?;
        let fhir = FhirSchema {
            schema: Arc::new(schema),
            validators,
        };
        for resource_type in EAGER_TYPES {
            let compiled = fhir.compile(resource_type).map_err(|reason| SchemaError {
                path: path.display().to_string(),
                reason,
            })?;
            let _ = fhir.validators[resource_type].set(compiled);
        }
        Ok(fhir)
    }

    /// A validator for one resource type: the whole schema document with its
    /// root pointed at that type's definition.
    fn compile(&self, resource_type: &str) -> Result<Validator, String> {
        let mut root = (*self.schema).clone();
        let object = root.as_object_mut().ok_or("the schema is not an object")?;
        object.remove("oneOf");
        object.remove("discriminator");
        object.insert(
            "$ref".into(),
            format!("#/definitions/{resource_type}").into(),
        );
        jsonschema::options()
            .offline()
            .with_draft(jsonschema::Draft::Draft6)
            .build(&root)
            .map_err(|e| e.to_string())
    }

    fn validator(&self, resource_type: &str) -> Option<&Validator> {
        let cell = self.validators.get(resource_type)?;
        if let Some(validator) = cell.get() {
            return Some(validator);
        }
        // The schema compiled for the eager types, so it compiles for this one.
        let compiled = self.compile(resource_type).ok()?;
        Some(cell.get_or_init(|| compiled))
    }

    /// Every structural problem in `resource`, located from its own type
    /// (`Patient.birthDate`, `Bundle.entry[1].resource.gender`).
    pub fn check(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        let root = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|t| self.validators.contains_key(*t))
            .unwrap_or("Resource")
            .to_owned();
        self.check_at(resource, &root, &mut issues);
        control_characters(resource, &mut root.clone(), &mut issues);
        issues
    }

    fn check_at(&self, resource: &Value, path: &str, issues: &mut Vec<Issue>) {
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            issues.push(
                Issue::error(
                    IssueCode::Required,
                    "missing resourceType: every FHIR resource names its type",
                )
                .at(format!("{path}.resourceType")),
            );
            return;
        };
        let Some(validator) = self.validator(resource_type) else {
            issues.push(
                Issue::error(
                    IssueCode::NotSupported,
                    "resourceType is not a FHIR R4 resource type",
                )
                .at(format!("{path}.resourceType")),
            );
            return;
        };
        for error in validator.iter_errors(resource) {
            let pointer = error.instance_path().as_str();
            let location = format!("{path}{}", pointer_to_fhirpath(pointer));
            if let ValidationErrorKind::OneOfNotValid { .. } = error.kind()
                && let Some(inner) = resource.pointer(pointer)
                && inner.get("resourceType").is_some()
            {
                self.check_at(inner, &location, issues);
                continue;
            }
            issues.extend(describe(&error, &location));
        }
    }
}

/// Turn one schema error into issues, without quoting the instance.
fn describe(error: &ValidationError<'_>, location: &str) -> Vec<Issue> {
    use ValidationErrorKind as K;
    let one = |code, text: String| vec![Issue::error(code, text).at(location)];
    match error.kind() {
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| {
                Issue::error(
                    IssueCode::Structure,
                    format!("unknown element '{name}': FHIR R4 does not define it here"),
                )
                .at(format!("{location}.{name}"))
            })
            .collect(),
        K::Required { property } => {
            let name = property.as_str().unwrap_or_default();
            vec![
                Issue::error(
                    IssueCode::Required,
                    format!("missing required element '{name}'"),
                )
                .at(format!("{location}.{name}")),
            ]
        }
        K::Type { kind } => one(
            IssueCode::Structure,
            format!("wrong JSON type: FHIR R4 expects {}", type_name(kind)),
        ),
        K::Enum { options } => one(
            IssueCode::CodeInvalid,
            format!("code is not one of the allowed values {options}"),
        ),
        K::Constant { expected_value } => {
            one(IssueCode::Value, format!("value must be {expected_value}"))
        }
        K::Pattern { pattern } => one(
            IssueCode::Value,
            format!("value does not have the FHIR data type's format (pattern {pattern})"),
        ),
        K::MinItems { limit } => one(
            IssueCode::Required,
            format!("array must hold at least {limit} item(s); FHIR forbids empty arrays"),
        ),
        K::MinLength { .. } | K::MinProperties { .. } => one(
            IssueCode::Value,
            "empty value: FHIR forbids empty strings and objects".into(),
        ),
        K::OneOfNotValid { .. } | K::AnyOf { .. } => one(
            IssueCode::Structure,
            "value matches none of the forms FHIR R4 allows here".into(),
        ),
        other => one(
            IssueCode::Structure,
            format!(
                "value breaks the FHIR R4 schema's '{}' rule",
                other.keyword()
            ),
        ),
    }
}

fn type_name(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(set) => format!("{set:?}"),
    }
}

/// FHIR strings may not hold characters below U+0020 other than tab, CR and
/// LF (R4 2.6.2, "string"); the JSON schema cannot say so, and a NUL would
/// otherwise reach the database.
fn control_characters(value: &Value, path: &mut String, issues: &mut Vec<Issue>) {
    let len = path.len();
    match value {
        Value::String(text)
            if text
                .chars()
                .any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n')) =>
        {
            issues.push(
                Issue::error(
                    IssueCode::Value,
                    "FHIR strings may not hold control characters other than tab, CR and LF",
                )
                .at(path.clone()),
            );
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push_str(&format!("[{index}]"));
                control_characters(item, path, issues);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push('.');
                path.push_str(key);
                control_characters(item, path, issues);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
