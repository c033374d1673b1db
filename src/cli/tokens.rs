//! `signpost tokens create|list|revoke`.

use std::path::PathBuf;

use serde_json::Value;

use super::{TokensCommand, operations::audit_command, print_json};
use crate::config::Config;

pub(super) async fn tokens(config: PathBuf, command: TokensCommand) -> anyhow::Result<()> {
    use crate::security::tokens::{Role, issue, revoke};
    let config = Config::load(&config)?;
    let store = crate::store::open(&config.database_url, 1).await?;
    match command {
        TokensCommand::Create {
            referrer,
            provider,
            admin,
            monitor,
            analyst,
            clinical_service,
        } => {
            let role = match (referrer, provider, admin, monitor, analyst) {
                (None, None, false, false, false) if clinical_service.is_some() => {
                    let id = clinical_service.unwrap_or_default();
                    match config.clinical_services.get(id.as_str()) {
                        Some(service) => Role::ClinicalService(service.id.clone()),
                        None => anyhow::bail!("no [clinical_services.{id}] in the configuration"),
                    }
                }
                (Some(id), None, false, false, false) => match config.referrers.get(id.as_str()) {
                    Some(referrer) => Role::Referrer(referrer.id.clone()),
                    None => anyhow::bail!("no [referrers.{id}] in the configuration"),
                },
                (None, Some(id), false, false, false) => match config.providers.get(id.as_str()) {
                    Some(p) if p.delivery.is_inbox() => Role::Provider(p.id.clone()),
                    Some(_) => anyhow::bail!(
                        "[providers.{id}] is a webhook provider: only an inbox provider (delivery = \"inbox\") has a token"
                    ),
                    None => anyhow::bail!("no [providers.{id}] in the configuration"),
                },
                (None, None, true, false, false) => Role::Admin,
                (None, None, false, true, false) => Role::Monitor,
                (None, None, false, false, true) => Role::Analyst,
                _ => anyhow::bail!(
                    "give one of --referrer ID, --provider ID, --clinical-service ID, --admin, --monitor and --analyst"
                ),
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
                        "id": t.id, "role": t.role, "referrer": t.referrer_id, "provider": t.provider_id,
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
