//! The structural layer: the official FHIR R4 JSON Schema (draft-06, CC0),
//! compiled once.
//!
//! The schema's root is a `oneOf` over every resource type, which would turn
//! any mistake into one useless "matches none of 146 schemas". So each
//! resource is checked against its own type's definition, and where the
//! schema offers a `oneOf` of resources (a `contained` entry, a Bundle
//! entry's `resource`), the inner resource is checked the same way, by its
//! own `resourceType`, with its path prefixed (see `NestedResource`). Diagnostics never quote the
//! submitted values, only element names and the schema's rules.

use std::{
    collections::HashMap,
    fmt::Write as _,
    path::Path,
    sync::{Arc, OnceLock, Weak},
};

use jsonschema::{Keyword, ValidationError, Validator, error::ValidationErrorKind};
use serde_json::{Map, Value, json};

use super::{SchemaError, pointer_to_fhirpath, read_json};
use crate::outcome::{Issue, IssueCode};

/// The FHIR R4 schema, compiled per resource type.
///
/// Each type is compiled without the resources it may hold: the schema's
/// `ResourceList` (the `oneOf` over every resource type that `contained`, a
/// Bundle entry's `resource` and a Parameters `resource` refer to) is
/// replaced by a `NestedResource` keyword that checks the resource it
/// meets against that resource's own type. Compiled whole, each type pulled
/// in all 146 (about 15 MB of compiled schema per type); this way a type
/// costs about 1 MB, and it is compiled from only the definitions it refers
/// to. The types a referral is made of are compiled at start-up; any other
/// type the first time a resource of that type is met, then kept.
pub struct FhirSchema {
    types: Arc<Types>,
}

struct Types {
    /// The document's root keywords (`$schema`, `id`), without its
    /// definitions or its `oneOf` over every type.
    root: Map<String, Value>,
    /// Each definition, as compact JSON without its `description`
    /// annotations (three quarters of the document, never read by
    /// validation): 0.7 MB, where the parsed document takes 10 MB. A type
    /// is compiled from the definitions it uses, parsed again.
    definitions: HashMap<String, Box<str>>,
    validators: HashMap<String, OnceLock<Validator>>,
}

/// Types compiled at start-up: the ones every intake needs (what a referral
/// is posted as, its parts, and the Consent a provider may ask for).
const EAGER_TYPES: [&str; 7] = [
    "ServiceRequest",
    "Bundle",
    "Patient",
    "PractitionerRole",
    "Practitioner",
    "Organization",
    "Consent",
];

/// The keyword [`NestedResource`] is registered as.
const NESTED_RESOURCE: &str = "signpostNestedResource";

impl FhirSchema {
    /// Load and compile the schema at `path`.
    pub fn load(path: &Path) -> Result<FhirSchema, SchemaError> {
        let fail = |reason: String| SchemaError {
            path: path.display().to_string(),
            reason,
        };
        let Value::Object(mut root) = read_json(path)? else {
            return Err(fail("the schema is not an object".into()));
        };
        let validators = root
            .get("discriminator")
            .and_then(|d| d["mapping"].as_object())
            .map(|m| {
                m.keys()
                    .map(|t| (t.clone(), OnceLock::new()))
                    .collect::<HashMap<_, _>>()
            })
            .filter(|types| !types.is_empty())
            .ok_or_else(|| {
                fail("no resource types in discriminator.mapping: is this fhir.schema.json?".into())
            })?;
        let Some(Value::Object(mut definitions)) = root.remove("definitions") else {
            return Err(fail("no definitions: is this fhir.schema.json?".into()));
        };
        let list = definitions
            .get_mut("ResourceList")
            .ok_or_else(|| fail("no definitions.ResourceList: is this fhir.schema.json?".into()))?;
        *list = json!({ NESTED_RESOURCE: true });
        root.retain(|key, _| !matches!(key.as_str(), "oneOf" | "discriminator" | "description"));
        let definitions = definitions
            .into_iter()
            .map(|(name, mut definition)| {
                drop_descriptions(&mut definition);
                (name, definition.to_string().into_boxed_str())
            })
            .collect();
        let types = Arc::new(Types {
            root,
            definitions,
            validators,
        });
        for resource_type in EAGER_TYPES {
            let compiled = compile(&types, resource_type).map_err(fail)?;
            let _ = types.validators[resource_type].set(compiled);
        }
        Ok(FhirSchema { types })
    }

    fn validator(&self, resource_type: &str) -> Option<&Validator> {
        validator(&self.types, resource_type)
    }

    /// Every structural problem in `resource`, located from its own type
    /// (`Patient.birthDate`, `Bundle.entry[1].resource.gender`).
    pub fn check(&self, resource: &Value) -> Vec<Issue> {
        let mut issues = Vec::new();
        let root = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .filter(|t| self.types.validators.contains_key(*t))
            .unwrap_or("Resource")
            .to_owned();
        self.check_at(resource, &root, &mut issues);
        // Paths are built only for a document that has something to report.
        if holds_control_characters(resource) {
            control_characters(resource, &mut root.clone(), &mut issues);
        }
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
            if is_nested_resource_error(error.kind())
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

/// A validator for one resource type: the schema's root pointed at that
/// type's definition, with the definitions it refers to, directly or not.
fn compile(types: &Arc<Types>, resource_type: &str) -> Result<Validator, String> {
    let mut definitions = Map::new();
    let mut pending = vec![resource_type.to_owned()];
    while let Some(name) = pending.pop() {
        if definitions.contains_key(&name) {
            continue;
        }
        let text = types
            .definitions
            .get(&name)
            .ok_or_else(|| format!("no definition {name}"))?;
        let definition: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        references(&definition, &mut pending);
        definitions.insert(name, definition);
    }
    let mut root = types.root.clone();
    root.insert("definitions".into(), definitions.into());
    root.insert(
        "$ref".into(),
        format!("#/definitions/{resource_type}").into(),
    );
    // Weak: the validators hold the keyword, and `Types` holds the validators.
    let nested = Arc::downgrade(types);
    jsonschema::options()
        .offline()
        .with_draft(jsonschema::Draft::Draft6)
        .with_keyword(NESTED_RESOURCE, move |_, _, _| {
            Ok(Box::new(NestedResource {
                types: nested.clone(),
            }))
        })
        .build(&root.into())
        .map_err(|e| e.to_string())
}

/// The definitions a schema refers to (`"$ref": "#/definitions/Meta"`).
fn references(schema: &Value, names: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/definitions/") {
                            names.push(name.to_owned());
                        }
                    }
                    _ => references(value, names),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, names)),
        _ => {}
    }
}

fn validator<'t>(types: &'t Arc<Types>, resource_type: &str) -> Option<&'t Validator> {
    let cell = types.validators.get(resource_type)?;
    if let Some(validator) = cell.get() {
        return Some(validator);
    }
    // The schema compiled for the eager types, so it compiles for this one.
    let compiled = compile(types, resource_type).ok()?;
    Some(cell.get_or_init(|| compiled))
}

/// Where the schema takes any resource: valid when the value is a resource
/// valid against its own `resourceType`, as the `oneOf` it replaces.
struct NestedResource {
    types: Weak<Types>,
}

/// The [`NestedResource`] error for a value that is not an object: every
/// resource type's schema accepts it (none says `"type": "object"`), so the
/// `oneOf` it replaces failed with "more than one valid".
const NOT_AN_OBJECT: &str = "not an object";
const NOT_A_VALID_RESOURCE: &str = "not a valid resource";

impl<'i> Keyword<'i> for NestedResource {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        if !instance.is_object() {
            Err(ValidationError::custom(NOT_AN_OBJECT))
        } else if self.is_valid(instance) {
            Ok(())
        } else {
            Err(ValidationError::custom(NOT_A_VALID_RESOURCE))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        // Upgrading cannot fail: a validator runs only while `Types` is alive.
        let Some(types) = self.types.upgrade() else {
            return false;
        };
        instance
            .get("resourceType")
            .and_then(Value::as_str)
            .and_then(|resource_type| validator(&types, resource_type))
            .is_some_and(|validator| validator.is_valid(instance))
    }
}

/// A resource where the schema takes any resource that is not valid against
/// its own type: its own errors are located from it.
fn is_nested_resource_error(kind: &ValidationErrorKind) -> bool {
    matches!(kind, ValidationErrorKind::Custom { keyword, message }
        if keyword == NESTED_RESOURCE && message == NOT_A_VALID_RESOURCE)
}

/// Remove the `description` annotations from a schema: validation never reads
/// them. A description is a string; an element named `description` (in
/// `properties`) is a schema, and stays. `retain` keeps the keys' order.
fn drop_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            map.retain(|key, value| !(key == "description" && value.is_string()));
            map.values_mut().for_each(drop_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_descriptions),
        _ => {}
    }
}

/// Whether `key` is shaped like a FHIR element name (`birthDate`,
/// `_birthDate`, `valueString`): ASCII letters and digits, at most 64.
/// Unknown elements are named in issues only if they are (the element's
/// name is then its location); anything else sent as a key is a value and
/// is never quoted.
fn is_element_name(key: &str) -> bool {
    let name = key.strip_prefix('_').unwrap_or(key);
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Turn one schema error into issues, without quoting the instance.
fn describe(error: &ValidationError<'_>, location: &str) -> Vec<Issue> {
    use ValidationErrorKind as K;
    let one = |code, text: String| vec![Issue::error(code, text).at(location)];
    match error.kind() {
        K::AdditionalProperties { unexpected } => unexpected
            .iter()
            .map(|name| match name.as_str() {
                name if is_element_name(name) => Issue::error(
                    IssueCode::Structure,
                    format!("unknown element '{name}': FHIR R4 does not define it here"),
                )
                .at(format!("{location}.{name}")),
                // Not even shaped like an element name: a value sent as a
                // key, not quoted.
                _ => Issue::error(
                    IssueCode::Structure,
                    "an element here has a name that is not a FHIR element name",
                )
                .at(location),
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
        // What the `ResourceList` `oneOf` said before [`NestedResource`]
        // replaced it.
        K::Custom { keyword, message } if keyword == NESTED_RESOURCE => one(
            IssueCode::Structure,
            if message == NOT_AN_OBJECT {
                "value breaks the FHIR R4 schema's 'oneOf' rule".into()
            } else {
                "value matches none of the forms FHIR R4 allows here".into()
            },
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

/// Whether `text` holds a control character other than tab, CR and LF:
/// C0 (below U+0020), DEL and C1 (U+0080-U+009F), which a terminal or a
/// log reader may act on (U+009B is a one-character escape sequence).
pub fn is_controlled(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
}

fn holds_control_characters(value: &Value) -> bool {
    match value {
        Value::String(text) => is_controlled(text),
        Value::Array(items) => items.iter().any(holds_control_characters),
        Value::Object(map) => map.values().any(holds_control_characters),
        _ => false,
    }
}

/// FHIR strings may not hold characters below U+0020 other than tab, CR and
/// LF (R4 2.6.2, "string"); the JSON schema cannot say so, and a NUL would
/// otherwise reach the database. DEL and C1 controls are refused with them
/// (see [`is_controlled`]).
fn control_characters(value: &Value, path: &mut String, issues: &mut Vec<Issue>) {
    let len = path.len();
    match value {
        Value::String(text) if is_controlled(text) => {
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
                // Writing to a String cannot fail.
                let _ = write!(path, "[{index}]");
                control_characters(item, path, issues);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                path.push('.');
                path.push_str(if is_element_name(key) { key } else { "*" });
                control_characters(item, path, issues);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
