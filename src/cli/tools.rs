//! The integrators' offline tools: `validate`, `mappings check|test`,
//! `translate`, `fhirpath` and `fpml`. They need no database, and no
//! configuration unless `--referrer` asks for the attribution check.

use std::{path::Path, process::ExitCode};

use serde_json::Value;

use super::{MappingsCommand, fail, print_json};
use crate::{
    config::Config,
    mapping::{MappingError, MappingSet, fixtures, fpml::Template, set_check},
    outcome::{Issue, IssueCode, Severity, operation_outcome},
    referrals::{IntakeError, checks},
    validation::{Rejection, Validator, document},
};

/// `--referrer ID` with the configuration file naming it.
pub(super) type Sender<'a> = Option<(&'a str, &'a Path)>;

pub(super) fn validate(file: &Path, schemas: &Path, mappings: &Path, sender: Sender) -> ExitCode {
    let bytes = match std::fs::read(file) {
        Ok(bytes) => bytes,
        Err(e) => {
            eprintln!("signpost: {}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let validator = match Validator::load(schemas) {
        Ok(validator) => validator,
        Err(e) => {
            eprintln!("signpost: {e}");
            return ExitCode::from(2);
        }
    };
    // Read as intake reads a body, under the server's default limits (and
    // with texts that never quote the document).
    let parsed = document::parse(
        &bytes,
        document::DEFAULT_MAX_DEPTH,
        document::DEFAULT_MAX_ARRAY,
    );
    let issues = match parsed {
        Err(e) => vec![Issue::error(IssueCode::Structure, e.to_string())],
        Ok(document) if is_referral(&document) => {
            // Every check intake makes (see `referrals::checks`).
            let Ok(set) = load_mapping_set(mappings, schemas) else {
                return ExitCode::from(2);
            };
            let Ok(config) = sender.map(|(_, path)| Config::load(path)).transpose() else {
                eprintln!("signpost: --referrer needs a valid --config; see `signpost serve`");
                return ExitCode::from(2);
            };
            let referrer = sender.map(|(id, _)| id);
            match checks::dry_run(&validator, &set, config.as_ref(), referrer, document, None) {
                Ok((provider, _)) => vec![Issue {
                    severity: Severity::Information,
                    code: IssueCode::Informational,
                    diagnostics: format!("valid: routed to provider {provider}"),
                    expression: None,
                }],
                Err(IntakeError::Rejected(Rejection::Structure(i) | Rejection::Profile(i))) => i,
                Err(IntakeError::Forbidden(what)) => vec![Issue::error(IssueCode::Forbidden, what)],
                Err(e) => {
                    eprintln!("signpost: {e}");
                    return ExitCode::from(2);
                }
            }
        }
        Ok(document) => validator.check_structure(&document),
    };
    let valid = issues.iter().all(|i| i.severity != Severity::Error);
    let issues = if issues.is_empty() {
        vec![Issue {
            severity: Severity::Information,
            code: IssueCode::Informational,
            diagnostics: "valid".into(),
            expression: None,
        }]
    } else {
        issues
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&operation_outcome(&issues)).unwrap_or_default()
    );
    if valid {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A referral is a ServiceRequest or a transaction Bundle; any other
/// resource is only checked against the FHIR R4 schema.
fn is_referral(document: &Value) -> bool {
    match document.get("resourceType").and_then(Value::as_str) {
        Some("ServiceRequest") => true,
        Some("Bundle") => document.get("type").and_then(Value::as_str) == Some("transaction"),
        _ => false,
    }
}

/// A JSON file, or YAML for any other extension.
fn read_document(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: malformed JSON: {e}", path.display()))
    } else {
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn load_mapping_set(mappings: &Path, schemas: &Path) -> Result<MappingSet, ExitCode> {
    MappingSet::load(mappings, schemas).map_err(|errors| report_problems(&errors))
}

fn report_problems(errors: &[MappingError]) -> ExitCode {
    for error in errors {
        eprintln!("{error}");
    }
    eprintln!("{} problem(s)", errors.len());
    ExitCode::FAILURE
}

/// The provider ids of the configuration file, to check the mappings
/// against; `None` (said on stderr) when there is no such file. Only the
/// `[providers.*]` names are read: no secret is touched.
fn configured_providers(config: &Path) -> Result<Option<Vec<String>>, String> {
    let text = match std::fs::read_to_string(config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "note: no configuration at {} (give --config FILE): the mappings are not checked against the configured providers",
                config.display()
            );
            return Ok(None);
        }
        Err(e) => return Err(format!("{}: {e}", config.display())),
    };
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| format!("{}: {e}", config.display()))?;
    Ok(Some(
        table
            .get("providers")
            .and_then(toml::Value::as_table)
            .map(|providers| providers.keys().cloned().collect())
            .unwrap_or_default(),
    ))
}

/// Load every mapping and check the set as a whole: what `mappings check`
/// does, and what `mappings test` does first.
fn checked_mapping_set(
    mappings: &Path,
    schemas: &Path,
    config: &Path,
) -> Result<MappingSet, ExitCode> {
    let configured = configured_providers(config).map_err(fail)?;
    let set = load_mapping_set(mappings, schemas)?;
    let errors = set_check::check(&set, &mappings.join("tests"), configured.as_deref());
    if errors.is_empty() {
        Ok(set)
    } else {
        Err(report_problems(&errors))
    }
}

pub(super) fn mappings(command: MappingsCommand, config: &Path) -> ExitCode {
    match command {
        MappingsCommand::Check { mappings, schemas } => {
            match checked_mapping_set(&mappings, &schemas, config) {
                Ok(set) => {
                    for mapping in set.mappings.values() {
                        println!(
                            "ok  {} {} ({})",
                            mapping.provider,
                            mapping.version,
                            mapping.file.display()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            }
        }
        MappingsCommand::Test { mappings, schemas } => {
            let set = match checked_mapping_set(&mappings, &schemas, config) {
                Ok(set) => set,
                Err(code) => return code,
            };
            let (mut passed, mut failed) = (0, 0);
            for mapping in set.mappings.values() {
                let report = fixtures::run(mapping, &mappings.join("tests"));
                passed += report.passed;
                failed += report.failures.len();
                println!(
                    "{}: {} passed, {} failed",
                    report.provider,
                    report.passed,
                    report.failures.len()
                );
                for failure in &report.failures {
                    println!("FAIL {failure}");
                }
            }
            println!("{passed} passed, {failed} failed");
            if failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        MappingsCommand::New {
            provider,
            mappings,
            schemas,
        } => super::scaffold::new_provider(&provider, &mappings, &schemas),
    }
}

pub(super) fn translate(
    provider: Option<&str>,
    sender: Sender,
    file: &Path,
    mappings: &Path,
    schemas: &Path,
) -> ExitCode {
    let body = match read_document(file) {
        Ok(body) => body,
        Err(e) => return fail(e),
    };
    let validator = match Validator::load(schemas) {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let set = match load_mapping_set(mappings, schemas) {
        Ok(set) => set,
        Err(code) => return code,
    };
    let config = match sender.map(|(_, path)| Config::load(path)).transpose() {
        Ok(config) => config,
        Err(e) => return fail(e),
    };
    let referrer = sender.map(|(id, _)| id);
    match checks::dry_run(&validator, &set, config.as_ref(), referrer, body, provider) {
        Ok((provider, payload)) => {
            eprintln!("provider: {provider}");
            print_json(&payload);
            ExitCode::SUCCESS
        }
        Err(IntakeError::Rejected(Rejection::Structure(issues) | Rejection::Profile(issues))) => {
            print_json(&operation_outcome(&issues));
            ExitCode::FAILURE
        }
        Err(IntakeError::Forbidden(what)) => {
            print_json(&operation_outcome(&[Issue::error(
                IssueCode::Forbidden,
                what,
            )]));
            ExitCode::FAILURE
        }
        Err(e) => fail(e),
    }
}

pub(super) fn fhirpath(expression: &str, file: Option<&Path>) -> ExitCode {
    let resource = match file.map(read_document).transpose() {
        Ok(resource) => resource.unwrap_or_else(|| Value::Object(Default::default())),
        Err(e) => return fail(e),
    };
    let expr = match crate::fhirpath::Expr::parse(expression) {
        Ok(expr) => expr,
        Err(e) => return fail(format!("cannot parse the expression: {e}")),
    };
    let env = crate::fhirpath::Env::new().with_resource(&resource);
    match expr.evaluate(&resource, &env) {
        Ok(results) => {
            print_json(&Value::Array(results));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signpost: evaluation failed: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(super) fn fpml(template: &Path, context: Option<&Path>, file: &Path) -> ExitCode {
    let (template, resource) = match (read_document(template), read_document(file)) {
        (Ok(t), Ok(r)) => (t, r),
        (Err(e), _) | (_, Err(e)) => return fail(e),
    };
    let compiled = match Template::compile(&template, &[]) {
        Ok(compiled) => compiled,
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            return ExitCode::FAILURE;
        }
    };
    let mut env = crate::fhirpath::Env::new().with_resource(&resource);
    if let Some(context) = context {
        match read_document(context) {
            Ok(Value::Object(variables)) => {
                for (name, value) in variables {
                    let collection = match value {
                        Value::Array(items) => items,
                        Value::Null => Vec::new(),
                        one => vec![one],
                    };
                    env = env.with_variable(&name, collection);
                }
            }
            Ok(_) => return fail("the context must be an object of variables"),
            Err(e) => return fail(e),
        }
    }
    match compiled.render(&resource, &env) {
        Ok(result) => {
            print_json(&result.unwrap_or(Value::Null));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("signpost: {e}");
            ExitCode::FAILURE
        }
    }
}
