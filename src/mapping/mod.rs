//! Mapping files (`mappings/<provider>.yaml`): which referrals a provider
//! takes, how a referral becomes the provider's own payload, and how the
//! provider's status callbacks become Task changes. Integrators edit them;
//! everything in them is declarative (FHIRPath and FPML templates, code
//! tables), compiled once at load and checked against the provider's output
//! JSON Schema in `schemas/providers/` and the fixtures in
//! `mappings/tests/<provider>/`.
//!
//! A referral a mapping cannot fill is refused, never sent half-empty: a
//! render error (an unknown code with no default, …) or a payload that
//! fails the provider's schema becomes a `422` naming the provider field and
//! the FHIRPath it was read from.

pub mod fixtures;
pub mod fpml;
pub mod reload;
pub mod set_check;
pub mod tables;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Deserialize;
use serde_json::Value;

use self::{
    fpml::{Template, TemplateError},
    tables::{LOOKUP, Table, Tables},
};
use crate::{
    domain::TaskStatus,
    fhirpath::{Env, Expr},
    outcome::{Issue, IssueCode},
    validation::ODS_CODE_SYSTEM,
};

/// A mapping file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    provider: String,
    version: String,
    #[serde(default)]
    description: Option<String>,
    output_schema: String,
    status_schema: String,
    route: RouteFile,
    #[serde(default)]
    tables: BTreeMap<String, Table>,
    outbound: Value,
    /// What the provider is sent when the referrer cancels the referral;
    /// absent for a provider with no cancellation message.
    #[serde(default)]
    cancel: Option<Value>,
    inbound: InboundFile,
    /// What the provider is sent when the referrer answers one of its
    /// escalations, rendered over the answered child Task; absent: the
    /// provider sees the answer in the portal only.
    #[serde(default)]
    escalation_outcome: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFile {
    accepts: String,
    #[serde(default)]
    performer_ods: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InboundFile {
    referral: String,
    change: Value,
    /// An escalation to a clinician the callback asks for, beside or
    /// instead of its change: `{reason, urgency, note}` (see
    /// `referrals::escalation`); rendering to nothing means none.
    #[serde(default)]
    escalation: Option<Value>,
}

/// A problem in a mapping file, located for the integrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappingError {
    pub file: PathBuf,
    /// 1-based, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for MappingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, ": {}", self.message)
    }
}

/// A compiled mapping for one provider.
pub struct Mapping {
    pub provider: String,
    pub version: String,
    pub description: Option<String>,
    /// The file it came from, and the SHA-256 of its bytes.
    pub file: PathBuf,
    pub sha256: String,
    /// Where `provider:` and `route.accepts` are written in the file, for
    /// the errors of the checks across the set.
    provider_at: Place,
    accepts_at: Place,
    accepts: Expr,
    performer_ods: Vec<String>,
    tables: Arc<Tables>,
    outbound: Template,
    cancel: Option<Template>,
    escalation_outcome: Option<Template>,
    inbound_referral: Expr,
    inbound_change: Template,
    inbound_escalation: Option<Template>,
    output_schema: jsonschema::Validator,
    output_schema_document: Value,
    status_schema: jsonschema::Validator,
}

/// A Task change a provider's status callback asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// Signpost's id of the referral the callback is about.
    pub referral_id: String,
    /// The body `inbound.change` rendered: `status` (absent: unchanged),
    /// `businessStatus`, `statusReason`, `note`, `output`.
    pub change: Value,
    /// `inbound.escalation` rendered, when the mapping has one and it
    /// rendered to something: `{reason, urgency, note}`.
    pub escalation: Option<Value>,
}

impl Mapping {
    /// Load and compile one mapping file.
    pub fn load(path: &Path, schemas_dir: &Path) -> Result<Mapping, Vec<MappingError>> {
        let located = |line: Option<usize>, column: Option<usize>, message: String| MappingError {
            file: path.to_owned(),
            line,
            column,
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| vec![located(None, None, e.to_string())])?;
        let text = String::from_utf8(bytes.clone())
            .map_err(|_| vec![located(None, None, "not UTF-8 text".into())])?;
        let file: MappingFile = serde_saphyr::from_str(&text).map_err(|e| {
            let (line, column) = yaml_location(&e);
            vec![located(line, column, e.to_string())]
        })?;
        let sha256 = sha256_hex(&bytes);

        let mut errors = Vec::new();
        // An expression's line is where its text first appears in the file;
        // the column is then its column there plus the column within it.
        let place = |expression: &str| locate(&text, expression);
        let mut expr =
            |what: &str, source: &str| match Expr::parse_with_functions(source, &[LOOKUP]) {
                Ok(expr) => Some(expr),
                Err(e) => {
                    let (line, column) = place(source);
                    errors.push(located(
                        line,
                        column.map(|c| c + e.column - 1),
                        format!("{what}: `{source}`: {}", e.message),
                    ));
                    None
                }
            };
        let accepts = expr("route.accepts", &file.route.accepts);
        let inbound_referral = expr("inbound.referral", &file.inbound.referral);
        let mut template =
            |what: &str, value: &Value| match Template::compile_strict(value, &[LOOKUP], &[]) {
                Ok(template) => Some(template),
                Err(problems) => {
                    for problem in problems {
                        let (line, column) =
                            problem.expression.as_deref().map_or((None, None), place);
                        errors.push(located(line, column, format!("{what}.{problem}")));
                    }
                    None
                }
            };
        let outbound = template("outbound", &file.outbound);
        let inbound_change = template("inbound.change", &file.inbound.change);
        let cancel = file
            .cancel
            .as_ref()
            .map(|cancel| template("cancel", cancel));
        let inbound_escalation = file
            .inbound
            .escalation
            .as_ref()
            .map(|escalation| template("inbound.escalation", escalation));
        let escalation_outcome = file
            .escalation_outcome
            .as_ref()
            .map(|outcome| template("escalation_outcome", outcome));
        let templates = [
            ("outbound", outbound.as_ref()),
            ("inbound.change", inbound_change.as_ref()),
            ("cancel", cancel.as_ref().and_then(Option::as_ref)),
            (
                "inbound.escalation",
                inbound_escalation.as_ref().and_then(Option::as_ref),
            ),
            (
                "escalation_outcome",
                escalation_outcome.as_ref().and_then(Option::as_ref),
            ),
        ];
        let sources = [
            ("route.accepts", file.route.accepts.as_str()),
            ("inbound.referral", file.inbound.referral.as_str()),
        ]
        .into_iter()
        .chain(templates.into_iter().flat_map(|(what, template)| {
            template
                .into_iter()
                .flat_map(Template::expressions)
                .map(move |source| (what, source))
        }));
        for (what, source) in sources {
            for problem in tables::check_lookups(source, &file.tables) {
                let (line, column) = place(source);
                errors.push(located(
                    line,
                    column,
                    format!("{what}: `{source}`: {problem}"),
                ));
            }
        }
        for (value, problem) in literal_status_problems(&file.inbound.change) {
            let (line, column) = locate_after(&text, "inbound:", &value);
            errors.push(located(line, column, format!("inbound.change: {problem}")));
        }
        let schema = |name: &str, errors: &mut Vec<MappingError>| {
            let schema_path = schemas_dir.join("providers").join(name);
            let document = std::fs::read_to_string(&schema_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                .and_then(|doc| {
                    jsonschema::options()
                        .offline()
                        .build(&doc)
                        .map(|v| (v, doc))
                        .map_err(|e| e.to_string())
                });
            document
                .map_err(|e| {
                    let (line, column) = place(name);
                    errors.push(located(
                        line,
                        column,
                        format!("schema {}: {e}", schema_path.display()),
                    ));
                })
                .ok()
        };
        let output = schema(&file.output_schema, &mut errors);
        let status = schema(&file.status_schema, &mut errors);
        if file.provider.is_empty()
            || !file
                .provider
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            let (line, column) = place("provider:");
            errors.push(located(
                line,
                column,
                "provider: an id of a-z, 0-9 and '-'".into(),
            ));
        }
        let (
            Some(accepts),
            Some(inbound_referral),
            Some(outbound),
            Some(inbound_change),
            Some((output_schema, output_schema_document)),
            Some((status_schema, _)),
        ) = (
            accepts,
            inbound_referral,
            outbound,
            inbound_change,
            output,
            status,
        )
        else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let cancel = cancel.flatten();
        let inbound_escalation = inbound_escalation.flatten();
        let escalation_outcome = escalation_outcome.flatten();
        let provider_at = place("provider:");
        let accepts_at = locate_after(&text, "accepts:", &file.route.accepts);
        Ok(Mapping {
            provider: file.provider,
            version: file.version,
            description: file.description,
            file: path.to_owned(),
            sha256,
            provider_at,
            accepts_at,
            accepts,
            performer_ods: file.route.performer_ods,
            tables: Arc::new(Tables(file.tables)),
            outbound,
            cancel,
            escalation_outcome,
            inbound_referral,
            inbound_change,
            inbound_escalation,
            output_schema,
            output_schema_document,
            status_schema,
        })
    }

    /// `route.accepts` as written.
    pub fn accepts_source(&self) -> &str {
        self.accepts.source()
    }

    /// The ODS codes that name this provider in `performer`.
    pub fn performer_ods(&self) -> &[String] {
        &self.performer_ods
    }

    /// An error located at `route.accepts` in this mapping's file.
    pub fn error_at_accepts(&self, message: String) -> MappingError {
        self.error_at(self.accepts_at, message)
    }

    /// An error located at `provider:` in this mapping's file.
    pub fn error_at_provider(&self, message: String) -> MappingError {
        self.error_at(self.provider_at, message)
    }

    fn error_at(&self, (line, column): Place, message: String) -> MappingError {
        MappingError {
            file: self.file.clone(),
            line,
            column,
            message,
        }
    }

    fn env<'a>(&self, resource: &'a Value) -> Env<'a> {
        Env::new()
            .with_resource(resource)
            .with_function(LOOKUP, self.tables.lookup_function())
    }

    /// Whether `accepts` holds for the (canonical) ServiceRequest.
    pub fn accepts(&self, service_request: &Value) -> Result<bool, Issue> {
        let result = self
            .accepts
            .evaluate(service_request, &self.env(service_request))
            .map_err(|e| {
                Issue::error(
                    IssueCode::Exception,
                    format!("mapping {}: route.accepts failed: {e}", self.provider),
                )
            })?;
        Ok(result.first() == Some(&Value::Bool(true)))
    }

    /// The provider's payload for a canonical ServiceRequest, checked
    /// against the provider's schema; or the issues that refuse it.
    pub fn translate(&self, service_request: &Value) -> Result<Value, Vec<Issue>> {
        let payload = self.render(service_request)?;
        let issues: Vec<Issue> = self
            .output_schema
            .iter_errors(&payload)
            .map(|error| self.schema_issue(&error))
            .collect();
        if issues.is_empty() {
            Ok(payload)
        } else {
            Err(issues)
        }
    }

    /// The cancellation message for a (revoked) ServiceRequest, if this
    /// provider has one.
    pub fn cancellation(&self, service_request: &Value) -> Result<Option<Value>, Vec<Issue>> {
        let Some(cancel) = &self.cancel else {
            return Ok(None);
        };
        let env = self.env(service_request);
        match cancel.render(service_request, &env) {
            Ok(payload) => Ok(Some(
                payload.unwrap_or_else(|| Value::Object(Default::default())),
            )),
            Err(e) => Err(vec![self.render_issue(&e)]),
        }
    }

    /// The message telling the provider how one of its escalations was
    /// answered (`escalation_outcome`, rendered over the answered child
    /// Task), if this mapping has one.
    pub fn escalation_outcome(&self, child_task: &Value) -> Result<Option<Value>, Vec<Issue>> {
        let Some(template) = &self.escalation_outcome else {
            return Ok(None);
        };
        let env = self.env(child_task);
        match template.render(child_task, &env) {
            Ok(payload) => Ok(Some(
                payload.unwrap_or_else(|| Value::Object(Default::default())),
            )),
            Err(e) => Err(vec![self.render_issue(&e)]),
        }
    }

    /// The outbound template rendered, not yet checked against the
    /// provider's schema (use [`Mapping::translate`] for a payload to send).
    pub fn render(&self, service_request: &Value) -> Result<Value, Vec<Issue>> {
        let env = self.env(service_request);
        match self.outbound.render(service_request, &env) {
            Ok(Some(payload)) => Ok(payload),
            Ok(None) => Ok(Value::Object(Default::default())),
            Err(e) => Err(vec![self.render_issue(&e)]),
        }
    }

    /// The Task change a status callback asks for, after checking the
    /// callback against the provider's status schema.
    pub fn status_change(&self, callback: &Value) -> Result<StatusChange, Vec<Issue>> {
        let issues: Vec<Issue> = self
            .status_schema
            .iter_errors(callback)
            .map(|e| {
                // jsonschema's own message quotes the callback's values.
                Issue::error(
                    IssueCode::Invalid,
                    format!(
                        "the status callback breaks the {} schema: {}",
                        self.provider,
                        describe_callback_error(e.kind())
                    ),
                )
                .at(dotted(e.instance_path().as_str()))
            })
            .collect();
        if !issues.is_empty() {
            return Err(issues);
        }
        let env = self.env(callback);
        let referral_id = self
            .inbound_referral
            .evaluate(callback, &env)
            .ok()
            .and_then(|r| r.into_iter().next())
            .and_then(|v| v.as_str().map(str::to_owned))
            .ok_or_else(|| {
                vec![Issue::error(
                    IssueCode::Required,
                    format!(
                        "the callback names no referral (`{}`)",
                        self.inbound_referral.source()
                    ),
                )]
            })?;
        let change = self
            .inbound_change
            .render(callback, &env)
            .map_err(|e| vec![self.render_issue(&e)])?
            .unwrap_or_else(|| Value::Object(Default::default()));
        let escalation = match &self.inbound_escalation {
            Some(template) => template
                .render(callback, &env)
                .map_err(|e| vec![self.render_issue(&e)])?
                .filter(|v| v.as_object().is_some_and(|o| !o.is_empty())),
            None => None,
        };
        Ok(StatusChange {
            referral_id,
            change,
            escalation,
        })
    }

    fn render_issue(&self, error: &TemplateError) -> Issue {
        let source = error
            .expression
            .as_deref()
            .map(|e| format!(" (read with `{e}`)"))
            .unwrap_or_default();
        let issue = Issue::error(
            IssueCode::BusinessRule,
            format!(
                "{} field `{}` cannot be filled{source}: {}",
                self.provider, error.path, error.message
            ),
        );
        // The expression is the FHIRPath the field is read from.
        match &error.expression {
            Some(expression) => issue.at(expression.clone()),
            None => issue,
        }
    }

    fn schema_issue(&self, error: &jsonschema::ValidationError<'_>) -> Issue {
        use jsonschema::error::ValidationErrorKind as K;
        let base = dotted(error.instance_path().as_str());
        let under = |name: &str| {
            if base.is_empty() {
                name.to_owned()
            } else {
                format!("{base}.{name}")
            }
        };
        let mut field = base.clone();
        match error.kind() {
            K::Required { property } => field = under(property.as_str().unwrap_or_default()),
            // "one of these fields" rules: name the fields the branches require.
            K::AnyOf { context } | K::OneOfNotValid { context } => {
                let names: Vec<String> = context
                    .iter()
                    .flatten()
                    .filter_map(|e| match e.kind() {
                        K::Required { property } => property.as_str().map(under),
                        _ => None,
                    })
                    .collect();
                if !names.is_empty() {
                    let fields = names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(" or ");
                    let issue = Issue::error(
                        IssueCode::BusinessRule,
                        format!(
                            "{} needs {fields}, and this referral can fill none of them",
                            self.provider
                        ),
                    );
                    // Where the first of them is read from.
                    return match names.iter().find_map(|n| self.outbound.expression_at(n)) {
                        Some(expression) => issue.at(expression),
                        None => issue,
                    };
                }
            }
            _ => {}
        }
        let read_from = self.outbound.expression_at(&field);
        let source = read_from
            .map(|e| format!("; it is read from `{e}`"))
            .unwrap_or_default();
        let rule = self
            .output_schema_document
            .pointer(&format!(
                "/properties/{}",
                field.replace('.', "/properties/")
            ))
            .and_then(|p| p.get("description"))
            .and_then(Value::as_str)
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        let issue = Issue::error(
            IssueCode::BusinessRule,
            format!(
                "{} field `{field}`{rule} cannot be filled from this referral{source}: {}",
                self.provider,
                describe_kind(error.kind())
            ),
        );
        match read_from {
            Some(expression) => issue.at(expression),
            None => issue,
        }
    }
}

/// What is wrong with a status callback, never quoting it (a field the
/// schema does not define is not named: the name is the provider's text).
fn describe_callback_error(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::Required { property } => format!(
            "the required field {} is missing",
            property.as_str().unwrap_or("")
        ),
        K::AdditionalProperties { .. } => "a field is not defined by the schema".into(),
        other => describe_kind(other),
    }
}

fn describe_kind(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::ValidationErrorKind as K;
    match kind {
        K::Required { .. } => "the provider requires it and there is nothing to fill it".into(),
        K::Constant { expected_value } => format!("the provider accepts only {expected_value}"),
        K::Enum { options } => format!("the provider accepts only {options}"),
        K::Type { .. } => "the value has the wrong type for the provider".into(),
        K::Pattern { pattern } => {
            format!("the value does not have the provider's format ({pattern})")
        }
        K::AdditionalProperties { unexpected } => {
            format!("the provider does not accept {}", unexpected.join(", "))
        }
        other => format!("breaks the provider's '{}' rule", other.keyword()),
    }
}

/// `/case/reasons/0/code` → `case.reasons[0].code`.
fn dotted(pointer: &str) -> String {
    crate::validation::pointer_to_fhirpath(pointer)
        .trim_start_matches('.')
        .to_owned()
}

/// A 1-based line and column in a file, when known.
pub type Place = (Option<usize>, Option<usize>);

/// Where `needle` first appears in `text`.
pub fn locate(text: &str, needle: &str) -> Place {
    text.find(needle)
        .map_or((None, None), |offset| place_of(text, offset))
}

/// Where `needle` first appears in `text` after `anchor` (or anywhere,
/// when the anchor is not there).
fn locate_after(text: &str, anchor: &str, needle: &str) -> Place {
    let from = text.find(anchor).unwrap_or(0);
    text[from..]
        .find(needle)
        .map_or_else(|| locate(text, needle), |i| place_of(text, from + i))
}

fn place_of(text: &str, offset: usize) -> Place {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    (Some(line), Some(column))
}

/// The literal `status:` values of an `inbound.change` template that are
/// not Task statuses a provider can set (`in_progress`, `requested`), each
/// with what is wrong. Computed values are checked by the fixtures.
fn literal_status_problems(change: &Value) -> Vec<(String, String)> {
    fn visit(value: &Value, problems: &mut Vec<(String, String)>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    if key == "status"
                        && let Value::String(status) = value
                        && !status.contains("{{")
                        && !status.contains("{[")
                        && !status
                            .parse::<TaskStatus>()
                            .is_ok_and(TaskStatus::provider_may_set)
                    {
                        let settable: Vec<&str> = TaskStatus::ALL
                            .iter()
                            .filter(|s| s.provider_may_set())
                            .map(|s| s.as_str())
                            .collect();
                        problems.push((
                            status.clone(),
                            format!(
                                "`status: {status}` is not a FHIR Task status a provider can set; use one of {}",
                                settable.join(", ")
                            ),
                        ));
                    }
                    visit(value, problems);
                }
            }
            Value::Array(items) => items.iter().for_each(|item| visit(item, problems)),
            _ => {}
        }
    }
    let mut problems = Vec::new();
    visit(change, &mut problems);
    problems
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn yaml_location(error: &serde_saphyr::Error) -> (Option<usize>, Option<usize>) {
    match error.location() {
        Some(location) => (
            Some(location.line() as usize),
            Some(location.column() as usize),
        ),
        None => (None, None),
    }
}

/// Every mapping in `mappings_dir` (`*.yaml`), by provider id.
pub struct MappingSet {
    pub mappings: BTreeMap<String, Arc<Mapping>>,
}

impl MappingSet {
    /// Load every mapping file; all errors from all files.
    pub fn load(mappings_dir: &Path, schemas_dir: &Path) -> Result<MappingSet, Vec<MappingError>> {
        let mut errors = Vec::new();
        let mut mappings = BTreeMap::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(mappings_dir)
            .map_err(|e| {
                vec![MappingError {
                    file: mappings_dir.to_owned(),
                    line: None,
                    column: None,
                    message: e.to_string(),
                }]
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for file in files {
            match Mapping::load(&file, schemas_dir) {
                Ok(mapping) => {
                    if let Some(other) = mappings.get(&mapping.provider) {
                        let other: &Arc<Mapping> = other;
                        errors.push(MappingError {
                            file: file.clone(),
                            line: None,
                            column: None,
                            message: format!(
                                "provider {} is already mapped by {}",
                                mapping.provider,
                                other.file.display()
                            ),
                        });
                        continue;
                    }
                    mappings.insert(mapping.provider.clone(), Arc::new(mapping));
                }
                Err(mut e) => errors.append(&mut e),
            }
        }
        if errors.is_empty() {
            Ok(MappingSet { mappings })
        } else {
            Err(errors)
        }
    }

    /// The providers that would take a canonical ServiceRequest: those its
    /// `performer` names by ODS code, and those whose `route.accepts` holds.
    pub fn takers(&self, service_request: &Value) -> Result<Takers, Issue> {
        Ok(Takers {
            by_performer: self.named_by_performer(service_request),
            by_accepts: self.accepting(service_request)?,
        })
    }

    /// The providers a ServiceRequest's `performer` names by ODS code.
    fn named_by_performer(&self, service_request: &Value) -> Vec<Arc<Mapping>> {
        let named = performer_ods_codes(service_request);
        self.mappings
            .values()
            .filter(|m| {
                m.performer_ods
                    .iter()
                    .any(|code| named.iter().any(|n| n.eq_ignore_ascii_case(code)))
            })
            .cloned()
            .collect()
    }

    /// The providers whose `route.accepts` holds for a ServiceRequest.
    fn accepting(&self, service_request: &Value) -> Result<Vec<Arc<Mapping>>, Issue> {
        let mut accepting = Vec::new();
        for mapping in self.mappings.values() {
            if mapping.accepts(service_request)? {
                accepting.push(Arc::clone(mapping));
            }
        }
        Ok(accepting)
    }

    /// The provider for a canonical ServiceRequest: the one its `performer`
    /// names by ODS code, else the one whose `route.accepts` holds. None or
    /// several is a `422` issue saying why. `route.accepts` is evaluated
    /// only when `performer` names no provider, so another provider's
    /// expression failing cannot refuse a referral that names its own.
    pub fn route(&self, service_request: &Value) -> Result<Arc<Mapping>, Vec<Issue>> {
        match self.named_by_performer(service_request).as_slice() {
            [one] => return Ok(Arc::clone(one)),
            [] => {}
            several => {
                return Err(vec![
                    Issue::error(
                        IssueCode::BusinessRule,
                        format!(
                            "performer names several providers ({}); name one",
                            names(several)
                        ),
                    )
                    .at("ServiceRequest.performer"),
                ]);
            }
        }
        match self
            .accepting(service_request)
            .map_err(|issue| vec![issue])?
            .as_slice()
        {
            [one] => Ok(Arc::clone(one)),
            [] => Err(vec![
                Issue::error(
                    IssueCode::BusinessRule,
                    "no community provider takes a referral with this code; name one in performer, or check the SNOMED CT code",
                )
                .at("ServiceRequest.code"),
            ]),
            several => Err(vec![
                Issue::error(
                    IssueCode::BusinessRule,
                    format!(
                        "several providers take a referral with this code ({}); name one in performer",
                        names(several)
                    ),
                )
                .at("ServiceRequest.code"),
            ]),
        }
    }
}

/// Which providers would take a referral, and why.
pub struct Takers {
    /// Named by the referral's `performer` (these win).
    pub by_performer: Vec<Arc<Mapping>>,
    /// Whose `route.accepts` holds for it.
    pub by_accepts: Vec<Arc<Mapping>>,
}

fn names(mappings: &[Arc<Mapping>]) -> String {
    mappings
        .iter()
        .map(|m| m.provider.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// ODS codes named by `performer`: as the reference's identifier, or on the
/// contained resource it references.
fn performer_ods_codes(service_request: &Value) -> Vec<String> {
    let contained = service_request.get("contained").and_then(Value::as_array);
    let ods_of = |resource: &Value| -> Vec<String> {
        let identifiers: Vec<&Value> = match resource.get("identifier") {
            Some(Value::Array(items)) => items.iter().collect(),
            Some(one @ Value::Object(_)) => vec![one],
            _ => Vec::new(),
        };
        identifiers
            .into_iter()
            .filter(|i| i.get("system").and_then(Value::as_str) == Some(ODS_CODE_SYSTEM))
            .filter_map(|i| i.get("value").and_then(Value::as_str).map(str::to_owned))
            .collect()
    };
    let mut codes = Vec::new();
    for performer in service_request
        .get("performer")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        codes.extend(ods_of(performer));
        if let Some(local) = performer
            .get("reference")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            && let Some(resource) = contained
                .into_iter()
                .flatten()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(local))
        {
            codes.extend(ods_of(resource));
        }
    }
    codes
}
