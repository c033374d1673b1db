//! Operators' commands on a database: `deliveries`, `endpoints`, `erase`
//! and `purge`, and the audit record every operator command leaves
//! ([`audit_command`], the one place the CLI builds an `AuditRecord`).

use std::{
    io::{BufRead as _, IsTerminal as _, Write as _},
    path::PathBuf,
};

use serde_json::Value;

use super::{DeliveriesCommand, EndpointsCommand, print_json};
use crate::{
    config::Config,
    domain::{Actor, NhsNumber, ReferralId},
};

pub(super) async fn deliveries(config: PathBuf, command: DeliveriesCommand) -> anyhow::Result<()> {
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
            // The admin API's filter rules: the CLI's one call into the HTTP layer.
            let filter = crate::referrals::deliveries::message_filter(&params).map_err(|_| {
                anyhow::anyhow!("state is pending, delivered or dead; limit 1 to 1000")
            })?;
            let messages = referrals.messages(&filter).await?;
            let list: Vec<Value> = messages
                .iter()
                .map(|m| message_json(m, None, None))
                .collect();
            print_json(&Value::Array(list));
        }
        DeliveriesCommand::Show { id } => {
            let (message, attempts) = referrals
                .message(&id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no message {id}"))?;
            let body = referrals.body_as_sent(&message).await;
            print_json(&message_json(&message, Some(&attempts), Some(body)));
        }
        DeliveriesCommand::Retry { id } => {
            let retried = referrals.retry_now(&id).await;
            audit_command(
                store.as_ref(),
                "deliveries retry",
                Some(format!("outbox/{id}")),
                retried.as_ref().ok().map(|m| m.referral_id.clone()),
                if retried.is_ok() {
                    "due now"
                } else {
                    "refused"
                },
            )
            .await?;
            print_json(&message_json(&retried?, None, None));
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
                replayed.as_ref().ok().map(|m| m.referral_id.clone()),
                match &replayed {
                    Ok(message) => message.id.as_str(),
                    Err(_) => "refused",
                },
            )
            .await?;
            print_json(&message_json(&replayed?, None, None));
        }
    }
    Ok(())
}

/// `signpost erase`: after confirmation (or `--yes`), erase everything held
/// about a patient.
pub(super) async fn erase(config: PathBuf, nhs_number: String, yes: bool) -> anyhow::Result<()> {
    // A number failing its check digit was refused at intake, so nobody
    // with it can be held.
    let Ok(nhs_number) = NhsNumber::parse(&nhs_number) else {
        anyhow::bail!("--nhs-number is 10 digits, without spaces, with a valid check digit");
    };
    if !yes {
        confirm_erasure(&nhs_number)?;
    }
    let crate::startup::Domain { referrals, .. } =
        crate::startup::domain(Config::load(&config)?).await?;
    let (erased, reclaim) = referrals.erase_patient(&nhs_number, &cli_actor()).await?;
    println!("{} referral(s) erased", erased.len());
    if let crate::store::Reclaim::Pending(why) = reclaim {
        println!("not yet reclaimed: {why}");
    }
    Ok(())
}

/// Ask on the terminal; refuse when stdin is not one (a script must say
/// `--yes`).
fn confirm_erasure(nhs_number: &NhsNumber) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "erase asks for confirmation, and stdin is not a terminal: nothing erased; \
             pass --yes to erase without asking"
        );
    }
    eprint!(
        "Erase everything held about the patient with NHS number {}? \
         This cannot be undone. Type yes to confirm: ",
        nhs_number.as_str()
    );
    std::io::stderr().flush()?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if answer.trim() != "yes" {
        anyhow::bail!("not confirmed: nothing erased");
    }
    Ok(())
}

/// `signpost purge`: purge now what is past `retention_days` (or `days`).
pub(super) async fn purge(config: PathBuf, days: Option<u32>) -> anyhow::Result<()> {
    let mut config = Config::load(&config)?;
    if let Some(days) = days {
        config.retention_days = days;
    }
    let crate::startup::Domain { referrals, .. } = crate::startup::domain(config).await?;
    let purged = referrals.purge_expired().await?;
    println!("{purged} record(s) purged");
    Ok(())
}

pub(super) async fn endpoints(config: PathBuf, command: EndpointsCommand) -> anyhow::Result<()> {
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
            let named = enabled.as_ref().map_or(endpoint, ToString::to_string);
            audit_command(
                store.as_ref(),
                "endpoints enable",
                Some(format!("endpoint/{named}")),
                None,
                if enabled.is_some() {
                    "enabled"
                } else {
                    "not disabled"
                },
            )
            .await?;
            if enabled.is_none() {
                anyhow::bail!("{named} is not disabled");
            }
            println!("{named} re-enabled");
        }
    }
    Ok(())
}

/// The operator at the command line: `cli:<user>`, by `$USER` (`unknown`
/// when unset or empty).
fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .ok()
        .filter(|user| !user.is_empty())
        .unwrap_or_else(|| "unknown".into());
    Actor::Cli(user)
}

/// Record an operator's command in the audit trail, as `cli:<user>`.
pub(super) async fn audit_command(
    store: &dyn crate::store::AuditTrail,
    action: &str,
    resource: Option<String>,
    referral_id: Option<ReferralId>,
    outcome: &str,
) -> anyhow::Result<()> {
    store
        .append_audit(&[crate::store::AuditRecord {
            seq: 0,
            at: crate::audit::now(),
            actor: cli_actor(),
            credential: None,
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
