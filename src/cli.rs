//! The command line: `signpost serve`, `signpost worker`, `signpost
//! migrate`, operators' `deliveries` and `endpoints` commands, and the
//! integrators' tooling (`validate`, `mappings`, `translate`, `fhirpath`,
//! `fpml`).

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Parser, Subcommand};
use serde_json::Value;

use crate::{
    config::{Config, DEFAULT_CONFIG_PATH},
    mapping::{MappingSet, fixtures, fpml::Template},
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
    /// Run only the delivery worker (to scale delivery out beside the
    /// servers; on PostgreSQL, any number of workers share the outbox).
    Worker {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Operators: outbox messages and their delivery attempts.
    Deliveries {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Erase everything held about a patient, leaving tombstones and an
    /// audit record.
    Erase {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[arg(long)]
        nhs_number: String,
    },
    /// Purge now what is past `retention_days` (a running server also does
    /// this every hour).
    Purge {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// Purge what is older than this many days instead of
        /// `retention_days`.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Bearer tokens for referrers and operators.
    Tokens {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Operators: endpoints disabled after answering 410 Gone.
    Endpoints {
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// Configuration file (for `database_url`).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Integrator tooling for mapping files.
    Mappings {
        #[command(subcommand)]
        command: MappingsCommand,
    },
    /// Dry run: print the payload a referral (JSON file) would be sent as, or
    /// the OperationOutcome refusing it. Stores and sends nothing.
    Translate {
        /// Map for this provider instead of routing.
        #[arg(long)]
        provider: Option<String>,
        file: PathBuf,
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
    /// Evaluate a FHIRPath expression against a JSON or YAML resource (or an
    /// empty object) and print the results as a JSON array.
    Fhirpath {
        expression: String,
        file: Option<PathBuf>,
    },
    /// Render an FPML template (YAML or JSON) against a resource and print the
    /// JSON result.
    Fpml {
        #[arg(long)]
        template: PathBuf,
        /// Variables for the template (`%name`), as a YAML or JSON object.
        #[arg(long)]
        context: Option<PathBuf>,
        file: PathBuf,
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

#[derive(Debug, Subcommand)]
enum DeliveriesCommand {
    /// List messages, newest first, as JSON.
    List {
        /// pending, delivered or dead.
        #[arg(long)]
        state: Option<String>,
        /// A provider id.
        #[arg(long)]
        provider: Option<String>,
        /// An endpoint (`provider:<id>` or `referrer:<id>`).
        #[arg(long)]
        endpoint: Option<String>,
        /// A referral (ServiceRequest) id.
        #[arg(long)]
        referral: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// One message with its payload and every attempt.
    Show { id: String },
    /// Send a delivered or dead-lettered message again, as a new message.
    Replay {
        id: String,
        /// Build the payload again with the current mapping instead of
        /// resending it as it was.
        #[arg(long)]
        remap: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokensCommand {
    /// Issue a token and print it, once (only a salted hash is kept).
    Create {
        /// For this referrer (`[referrers.<id>]`): it may send referrals for
        /// its organisations and see only its own.
        #[arg(long, required_unless_present_any = ["admin", "monitor"])]
        referrer: Option<String>,
        /// For an operator: the /admin API and every referral.
        #[arg(long, conflicts_with_all = ["referrer", "monitor"])]
        admin: bool,
        /// For a metrics scraper (Prometheus): GET /metrics only.
        #[arg(long, conflicts_with_all = ["referrer", "admin"])]
        monitor: bool,
    },
    /// List tokens (ids, roles, dates; never the tokens), as JSON.
    List,
    /// Revoke a token by its id (the 16 hex digits after `sp_`).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum EndpointsCommand {
    /// List disabled endpoints.
    List,
    /// Re-enable an endpoint (`provider:<id>` or `referrer:<id>`); its
    /// waiting messages are sent.
    Enable { endpoint: String },
}

#[derive(Debug, Subcommand)]
enum MappingsCommand {
    /// Load every mapping, compile every expression and schema; report
    /// errors with file, line and column.
    Check {
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
    /// Run the fixtures beside every mapping (`mappings/tests/<provider>/`);
    /// print a diff for each failure; non-zero exit on any failure.
    Test {
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
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
        Command::Worker { config } => with_runtime(async move {
            let config = Config::load(&config)?;
            let components = crate::startup::Components::build(config).await?;
            components.worker.run_until_stopped(shutdown_signal()).await;
            Ok(())
        }),
        Command::Deliveries { config, command } => with_runtime(deliveries(config, command)),
        Command::Endpoints { config, command } => with_runtime(endpoints(config, command)),
        Command::Tokens { config, command } => with_runtime(tokens(config, command)),
        Command::Erase { config, nhs_number } => with_runtime(async move {
            if nhs_number.len() != 10 || !nhs_number.bytes().all(|b| b.is_ascii_digit()) {
                anyhow::bail!("--nhs-number is 10 digits, without spaces");
            }
            let crate::startup::Domain { referrals, .. } =
                crate::startup::domain(Config::load(&config)?).await?;
            let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
            let erased = referrals
                .erase_patient(&nhs_number, &format!("cli:{user}"))
                .await?;
            println!("{} referral(s) erased", erased.len());
            Ok(())
        }),
        Command::Purge { config, days } => with_runtime(async move {
            let mut config = Config::load(&config)?;
            if let Some(days) = days {
                config.retention_days = days;
            }
            let crate::startup::Domain { referrals, .. } = crate::startup::domain(config).await?;
            let purged = referrals.purge_expired().await?;
            println!("{purged} record(s) purged");
            Ok(())
        }),
        Command::Migrate { config } => with_runtime(async move {
            let config = Config::load(&config)?;
            crate::store::open(&config.database_url, 1).await?;
            println!("database is up to date");
            Ok(())
        }),
        Command::Validate { file, schemas } => validate(&file, &schemas),
        Command::Mappings { command } => mappings(command),
        Command::Translate {
            provider,
            file,
            mappings,
            schemas,
        } => translate(provider.as_deref(), &file, &mappings, &schemas),
        Command::Fhirpath { expression, file } => fhirpath(&expression, file.as_deref()),
        Command::Fpml {
            template,
            context,
            file,
        } => fpml(&template, context.as_deref(), &file),
    }
}

async fn deliveries(config: PathBuf, command: DeliveriesCommand) -> anyhow::Result<()> {
    use crate::referrals::deliveries::{Replay, message_json};
    let crate::startup::Domain {
        referrals, store, ..
    } = crate::startup::domain(Config::load(&config)?).await?;
    match command {
        DeliveriesCommand::List {
            state,
            provider,
            endpoint,
            referral,
            limit,
        } => {
            let mut params = std::collections::HashMap::new();
            for (key, value) in [
                ("state", state),
                ("provider", provider),
                ("endpoint", endpoint),
                ("referral", referral),
                ("limit", Some(limit.to_string())),
            ] {
                if let Some(value) = value {
                    params.insert(key.to_owned(), value);
                }
            }
            let filter = crate::referrals::deliveries::message_filter(&params).map_err(|_| {
                anyhow::anyhow!("state is pending, delivered or dead; limit 1 to 1000")
            })?;
            let messages = referrals.messages(&filter).await?;
            let list: Vec<Value> = messages.iter().map(|m| message_json(m, None)).collect();
            print_json(&Value::Array(list));
        }
        DeliveriesCommand::Show { id } => {
            let (message, attempts) = referrals
                .message(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no message {id}"))?;
            print_json(&message_json(&message, Some(&attempts)));
        }
        DeliveriesCommand::Replay { id, remap } => {
            let how = if remap {
                Replay::Remapped
            } else {
                Replay::AsSent
            };
            let replayed = referrals.replay(&id, how).await;
            audit_command(
                store.as_ref(),
                if remap {
                    "deliveries replay --remap"
                } else {
                    "deliveries replay"
                },
                Some(format!("outbox/{id}")),
                replayed.as_ref().ok().map(|m| m.referral_id.to_string()),
                match &replayed {
                    Ok(message) => message.id.as_str(),
                    Err(_) => "refused",
                },
            )
            .await?;
            print_json(&message_json(&replayed?, None));
        }
    }
    Ok(())
}

/// Record an operator's command in the audit trail, as `cli:<user>`.
async fn audit_command(
    store: &dyn crate::store::AuditTrail,
    action: &str,
    resource: Option<String>,
    referral_id: Option<String>,
    outcome: &str,
) -> anyhow::Result<()> {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    store
        .append_audit(&[crate::store::AuditRow {
            seq: 0,
            at: crate::audit::now(),
            actor: format!("cli:{user}"),
            client: Some("local".into()),
            request_id: None,
            action: action.into(),
            resource,
            referral_id,
            outcome: outcome.into(),
        }])
        .await?;
    Ok(())
}

async fn tokens(config: PathBuf, command: TokensCommand) -> anyhow::Result<()> {
    use crate::security::tokens::{Role, issue, revoke};
    let config = Config::load(&config)?;
    let store = crate::store::open(&config.database_url, 1).await?;
    match command {
        TokensCommand::Create {
            referrer,
            admin,
            monitor,
        } => {
            let role = match (referrer, admin, monitor) {
                (Some(id), false, false) => {
                    if !config.referrers.contains_key(&id) {
                        anyhow::bail!("no [referrers.{id}] in the configuration");
                    }
                    Role::Referrer(id)
                }
                (None, true, false) => Role::Admin,
                (None, false, true) => Role::Monitor,
                _ => anyhow::bail!("give one of --referrer ID, --admin and --monitor"),
            };
            let issued = issue(&role);
            store.insert_token(issued.row.clone()).await?;
            audit_command(
                store.as_ref(),
                &format!("tokens create {}", issued.row.role),
                Some(format!("token/{}", issued.row.id)),
                None,
                "created",
            )
            .await?;
            eprintln!(
                "token {} issued; it is shown once, store it now:",
                issued.row.id
            );
            println!("{}", issued.token);
        }
        TokensCommand::List => {
            let list: Vec<Value> = store
                .tokens()
                .await?
                .iter()
                .map(|t| {
                    serde_json::json!({
                        "id": t.id, "role": t.role, "referrer": t.referrer_id,
                        "created_at": t.created_at, "revoked_at": t.revoked_at,
                    })
                })
                .collect();
            print_json(&Value::Array(list));
        }
        TokensCommand::Revoke { id } => {
            let revoked = revoke(store.as_ref(), &id).await?;
            audit_command(
                store.as_ref(),
                "tokens revoke",
                Some(format!("token/{id}")),
                None,
                if revoked { "revoked" } else { "not found" },
            )
            .await?;
            if !revoked {
                anyhow::bail!("no unrevoked token {id}");
            }
            println!("token {id} revoked");
        }
    }
    Ok(())
}

async fn endpoints(config: PathBuf, command: EndpointsCommand) -> anyhow::Result<()> {
    let crate::startup::Domain {
        referrals, store, ..
    } = crate::startup::domain(Config::load(&config)?).await?;
    match command {
        EndpointsCommand::List => {
            let disabled = referrals.disabled_endpoints().await?;
            let list: Vec<Value> = disabled
                .iter()
                .map(|d| serde_json::json!({ "endpoint": d.endpoint, "disabled_at": d.disabled_at, "reason": d.reason }))
                .collect();
            print_json(&Value::Array(list));
        }
        EndpointsCommand::Enable { endpoint } => {
            let enabled = referrals.enable_endpoint(&endpoint).await?;
            audit_command(
                store.as_ref(),
                "endpoints enable",
                Some(format!("endpoint/{endpoint}")),
                None,
                if enabled { "enabled" } else { "not disabled" },
            )
            .await?;
            if !enabled {
                anyhow::bail!("{endpoint} is not disabled");
            }
            println!("{endpoint} re-enabled");
        }
    }
    Ok(())
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

/// A JSON file, or YAML for any other extension.
fn read_document(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(|e| format!("{}: malformed JSON: {e}", path.display()))
    } else {
        serde_saphyr::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("signpost: {message}");
    ExitCode::from(2)
}

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
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

fn mappings(command: MappingsCommand) -> ExitCode {
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

fn translate(provider: Option<&str>, file: &Path, mappings: &Path, schemas: &Path) -> ExitCode {
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

fn fhirpath(expression: &str, file: Option<&Path>) -> ExitCode {
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

fn fpml(template: &Path, context: Option<&Path>, file: &Path) -> ExitCode {
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
