//! The command line: `signpost serve`, `signpost migrate`,
//! `signpost validate FILE`.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::{
    config::{Config, DEFAULT_CONFIG_PATH},
    outcome::{Issue, IssueCode, Severity, operation_outcome},
    startup::{Application, shutdown_signal},
    telemetry,
    validation::{Rejection, Submission, Validator},
};

/// Signpost: social-prescribing referral gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Configuration file (for `database_url`).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Validate a FHIR JSON file offline and print the OperationOutcome.
    /// Exit status 0 when valid, 1 when not, 2 when the file cannot be read.
    Validate {
        /// The JSON file: a referral (ServiceRequest or transaction Bundle)
        /// is checked against every layer, any other resource against the
        /// FHIR R4 schema.
        file: PathBuf,
        /// Folder holding the schemas.
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
}

/// Run one command.
pub fn run(cli: Cli) -> ExitCode {
    telemetry::init();
    match cli.command {
        Command::Serve { config } => with_runtime(async move {
            let config = Config::load(&config)?;
            let app = Application::build(config).await?;
            app.run_until_stopped(shutdown_signal()).await?;
            Ok(())
        }),
        Command::Migrate { config } => with_runtime(async move {
            let config = Config::load(&config)?;
            crate::store::open(&config.database_url, 1).await?;
            println!("database is up to date");
            Ok(())
        }),
        Command::Validate { file, schemas } => validate(&file, &schemas),
    }
}

fn with_runtime(work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("signpost: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signpost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(file: &Path, schemas: &Path) -> ExitCode {
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
    let issues = check_document(&validator, &document);
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

/// Every layer that applies to `document`.
fn check_document(validator: &Validator, document: &Value) -> Vec<Issue> {
    let resource_type = document.get("resourceType").and_then(Value::as_str);
    let transaction_sr = (resource_type == Some("Bundle")
        && document.get("type").and_then(Value::as_str) == Some("transaction"))
    .then(|| {
        document["entry"].as_array().and_then(|entries| {
            let found: Vec<usize> = entries
                .iter()
                .enumerate()
                .filter(|(_, e)| {
                    e.pointer("/resource/resourceType") == Some(&"ServiceRequest".into())
                })
                .map(|(i, _)| i)
                .collect();
            (found.len() == 1).then(|| found[0])
        })
    })
    .flatten();
    let submission = match (resource_type, transaction_sr) {
        (Some("ServiceRequest"), _) => Submission::ServiceRequest(document),
        (_, Some(service_request)) => Submission::Bundle {
            bundle: document,
            service_request,
        },
        _ => return validator.check_structure(document),
    };
    match validator.check_referral(submission) {
        Ok(_) => Vec::new(),
        Err(Rejection::Structure(issues) | Rejection::Profile(issues)) => issues,
    }
}
