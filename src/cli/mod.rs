//! The command line: `signpost serve`, `signpost worker`, `signpost
//! migrate`, operators' `deliveries`, `endpoints`, `tokens`, `erase` and
//! `purge` commands, and the integrators' tooling (`validate`, `mappings`,
//! `translate`, `fhirpath`, `fpml`), and the newcomer's `sandbox` and
//! `simulate status`.
//!
//! This file holds the clap definitions and the dispatch; each command group
//! runs in its own file: `server` (serve, worker, migrate), `operations`
//! (deliveries, endpoints, erase, purge, and the audit record of every
//! operator command), `tokens`, `users` (portal accounts), `tools` (the offline integrator tools),
//! `scaffold` (mappings new) and `sandbox` (sandbox, simulate).

mod operations;
mod report;
mod sandbox;
mod scaffold;
mod server;
mod tokens;
mod tools;
mod users;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

use crate::{config::DEFAULT_CONFIG_PATH, telemetry};

/// Signpost: social-prescribing referral gateway.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// Configuration file, for the commands that serve or use the database
    /// (accepted after any subcommand).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve,
    /// Run only the delivery worker (to scale delivery out beside the
    /// servers; on PostgreSQL, any number of workers share the outbox).
    Worker,
    /// Operators: outbox messages and their delivery attempts.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Erase everything held about a patient, leaving tombstones and an
    /// audit record.
    Erase {
        #[arg(long)]
        nhs_number: String,
        /// Do not ask for confirmation (needed when stdin is not a terminal).
        #[arg(long)]
        yes: bool,
    },
    /// Purge now what is past `retention_days` (a running server also does
    /// this every hour).
    Purge {
        /// Purge what is older than this many days instead of
        /// `retention_days`.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Reports: the referral funnel, suppressed as `[reports] suppression`
    /// says (the CLI is an operator's tool, on the server).
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Bearer tokens for referrers and operators.
    Tokens {
        #[command(subcommand)]
        command: TokensCommand,
    },
    /// Accounts for the providers' web portal (`/portal`).
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Operators: endpoints disabled after answering 410 Gone.
    Endpoints {
        #[command(subcommand)]
        command: EndpointsCommand,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Try the whole loop: the gateway with stand-ins for every provider
    /// and referrer in the configuration, which verify signatures, print
    /// what they receive and walk each referral through its statuses.
    Sandbox {
        /// Milliseconds between a stand-in provider's status callbacks.
        #[arg(long, default_value_t = 3000, hide = true)]
        step_ms: u64,
    },
    /// Integrators: send what a provider would send to a running Signpost.
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
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
        /// Check too that this referrer (`[referrers.<id>]` of `--config`)
        /// may send the referral, as intake does.
        #[arg(long)]
        referrer: Option<String>,
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
        /// Folder holding the mapping files a referral is routed and mapped
        /// with.
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        /// Check too that this referrer (`[referrers.<id>]` of `--config`)
        /// may send the referral, as intake does.
        #[arg(long)]
        referrer: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum DeliveriesCommand {
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
    /// Send a pending message now instead of at its next attempt (a
    /// running server's worker sends it within its poll interval).
    Retry { id: String },
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
pub(super) enum SimulateCommand {
    /// Send one of a provider's status fixtures
    /// (`mappings/tests/<provider>/status/<fixture>.json`) for a referral,
    /// signed with the provider's configured secret, and print the answer.
    Status {
        #[arg(long)]
        provider: String,
        /// The referral's (ServiceRequest's) id.
        #[arg(long)]
        referral: String,
        /// The fixture's name, e.g. `booked`.
        #[arg(long)]
        fixture: String,
        /// Signpost's base URL (default: `public_base_url`, else
        /// `http://` and `listen`).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum ReportCommand {
    /// The referral funnel over a period.
    Funnel {
        /// First day (YYYY-MM-DD) or instant (RFC 3339).
        #[arg(long)]
        from: String,
        /// Last day, included (YYYY-MM-DD), or instant, excluded.
        #[arg(long)]
        to: String,
        /// Strata: a comma-separated list of provider, scheme, ods,
        /// profession, age_band, sex, month.
        #[arg(long, default_value = "")]
        by: String,
        /// table, csv, json or fhir (a MeasureReport).
        #[arg(long, default_value = "table")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
pub(super) enum TokensCommand {
    /// Issue a token and print it, once (only a salted hash is kept).
    Create {
        /// For this referrer (`[referrers.<id>]`): it may send referrals for
        /// its organisations and see only its own.
        #[arg(long, required_unless_present_any = ["provider", "admin", "monitor", "analyst", "clinical_service"])]
        referrer: Option<String>,
        /// For this inbox provider (`[providers.<id>]` with `delivery =
        /// "inbox"`): its own inbox and status endpoints only.
        #[arg(long, conflicts_with_all = ["referrer", "admin", "monitor"])]
        provider: Option<String>,
        /// For an operator: the /admin API and every referral.
        #[arg(long, conflicts_with_all = ["referrer", "provider", "monitor", "analyst"])]
        admin: bool,
        /// For a metrics scraper (Prometheus): GET /metrics only.
        #[arg(long, conflicts_with_all = ["referrer", "provider", "admin", "analyst"])]
        monitor: bool,
        /// For an analyst: the suppressed reports only (/reports, the
        /// funnel Measure and MeasureReports).
        #[arg(long, conflicts_with_all = ["referrer", "admin", "monitor"])]
        analyst: bool,
        /// For a clinical service (`[clinical_services.<id>]`): it reads and
        /// answers the escalations sent to it, nothing else.
        #[arg(long, conflicts_with_all = ["referrer", "provider", "admin", "monitor", "analyst"])]
        clinical_service: Option<String>,
    },
    /// List tokens (ids, roles, dates; never the tokens), as JSON.
    List,
    /// Revoke a token by its id (the 16 hex digits after `sp_`).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum UsersCommand {
    /// Create an account at a provider and print its one-time enrolment
    /// link (good for 72 hours).
    Create {
        /// The provider (`[providers.<id>]`) whose referrals it sees.
        #[arg(long)]
        provider: String,
        #[arg(long)]
        email: String,
        /// The person's name, shown in the portal's header.
        #[arg(long)]
        name: Option<String>,
    },
    /// List accounts (id, provider, email, state), as JSON.
    List,
    /// Disable an account (by id or email); its sessions end at once.
    Disable { user: String },
    /// Clear an account's password and authenticator, end its sessions,
    /// and print a new enrolment link.
    Reset { user: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum EndpointsCommand {
    /// List disabled endpoints.
    List,
    /// Re-enable an endpoint (`provider:<id>`, `referrer:<id>`, or just the
    /// id when it names one provider or referrer); its waiting messages
    /// are sent.
    Enable { endpoint: String },
}

#[derive(Debug, Subcommand)]
pub(super) enum MappingsCommand {
    /// Load every mapping, compile every expression and schema, and check
    /// the set against the configuration (`--config`), its fixture folders
    /// and its routing; report errors with file, line and column.
    Check {
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
    /// What `check` does, then run the fixtures beside every mapping
    /// (`mappings/tests/<provider>/`); print a diff for each failure;
    /// non-zero exit on any failure.
    Test {
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
    /// Start a new provider: write a mapping, its output and status
    /// schemas and one fixture of each kind, each saying what to fill in,
    /// and print the configuration block to paste.
    New {
        /// The provider id (a-z, 0-9 and '-'), as in `[providers.<id>]`.
        provider: String,
        #[arg(long, default_value = "mappings")]
        mappings: PathBuf,
        #[arg(long, default_value = "schemas")]
        schemas: PathBuf,
    },
}

/// Run one command.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        // The sandbox talks on stdout; its log says only what goes wrong.
        Command::Sandbox { .. } => telemetry::init_with_default("warn"),
        _ => telemetry::init(),
    }
    let config = cli.config;
    match cli.command {
        Command::Serve => with_runtime(server::serve(config)),
        Command::Worker => with_runtime(server::worker(config)),
        Command::Migrate => with_runtime(server::migrate(config)),
        Command::Sandbox { step_ms } => with_runtime(sandbox::sandbox(
            config,
            std::time::Duration::from_millis(step_ms),
        )),
        Command::Simulate { command } => with_runtime(sandbox::simulate(config, command)),
        Command::Deliveries { command } => with_runtime(operations::deliveries(config, command)),
        Command::Endpoints { command } => with_runtime(operations::endpoints(config, command)),
        Command::Tokens { command } => with_runtime(tokens::tokens(config, command)),
        Command::Users { command } => with_runtime(users::users(config, command)),
        Command::Report { command } => with_runtime(report::report(config, command)),
        Command::Erase { nhs_number, yes } => {
            with_runtime(operations::erase(config, nhs_number, yes))
        }
        Command::Purge { days } => with_runtime(operations::purge(config, days)),
        Command::Validate {
            file,
            schemas,
            mappings,
            referrer,
        } => tools::validate(
            &file,
            &schemas,
            &mappings,
            referrer.as_deref().map(|r| (r, config.as_path())),
        ),
        Command::Mappings { command } => tools::mappings(command, &config),
        Command::Translate {
            provider,
            referrer,
            file,
            mappings,
            schemas,
        } => tools::translate(
            provider.as_deref(),
            referrer.as_deref().map(|r| (r, config.as_path())),
            &file,
            &mappings,
            &schemas,
        ),
        Command::Fhirpath { expression, file } => tools::fhirpath(&expression, file.as_deref()),
        Command::Fpml {
            template,
            context,
            file,
        } => tools::fpml(&template, context.as_deref(), &file),
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

pub(super) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("signpost: {message}");
    ExitCode::from(2)
}

/// Print JSON for a person: bidirectional controls and zero-width
/// characters are shown escaped (see [`crate::display`]).
pub(super) fn print_json(value: &serde_json::Value) {
    println!("{}", crate::display::visible_json(value));
}
