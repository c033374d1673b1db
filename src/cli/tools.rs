//! The integrators' offline tools: `validate`, `mappings check|test`,
//! `translate`, `fhirpath` and `fpml`. They need no configuration or
//! database.

use std::{path::Path, process::ExitCode};

use serde_json::Value;

use super::{MappingsCommand, fail, print_json};
use crate::{
    mapping::{MappingSet, fixtures, fpml::Template},
    outcome::{Issue, IssueCode, Severity, operation_outcome},
    validation::{Rejection, Validator},
};

pub(super) fn validate(file: &Path, schemas: &Path) -> ExitCode {
    let document: Value = match std::fs::read_to_string(file)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| format!("malformed JSON: {e}")))
    {
        Ok(document) => document,
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
    let issues = crate::validation::document::check(&validator, &document);
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
    MappingSet::load(mappings, schemas).map_err(|errors| {
        for error in &errors {
            eprintln!("{error}");
        }
        eprintln!("{} problem(s)", errors.len());
        ExitCode::FAILURE
    })
}

pub(super) fn mappings(command: MappingsCommand) -> ExitCode {
    match command {
        MappingsCommand::Check { mappings, schemas } => match load_mapping_set(&mappings, &schemas)
        {
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
        },
        MappingsCommand::Test { mappings, schemas } => {
            let set = match load_mapping_set(&mappings, &schemas) {
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
    }
}

pub(super) fn translate(
    provider: Option<&str>,
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
    match crate::referrals::translate(&validator, &set, body, provider) {
        Ok((provider, payload)) => {
            eprintln!("provider: {provider}");
            print_json(&payload);
            ExitCode::SUCCESS
        }
        Err(crate::referrals::IntakeError::Rejected(
            Rejection::Structure(issues) | Rejection::Profile(issues),
        )) => {
            print_json(&operation_outcome(&issues));
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
