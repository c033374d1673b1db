//! `signpost users create|list|disable|reset`: the provider portal's
//! accounts. `create` and `reset` print a one-time enrolment link (good for
//! 72 hours); only its hash is kept.

use std::path::PathBuf;

use serde_json::Value;

use super::{UsersCommand, operations::audit_command, print_json};
use crate::{config::Config, portal::Portal};

/// The enrolment link for a link secret: under `public_base_url`, else
/// the address Signpost listens on.
fn enrolment_link(config: &Config, token: &str) -> String {
    let base = config.public_base_url.clone().unwrap_or_else(|| {
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", config.listen)
    });
    format!("{}/portal/enrol/{token}", base.trim_end_matches('/'))
}

pub(super) async fn users(config: PathBuf, command: UsersCommand) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let domain = crate::startup::domain(config.clone()).await?;
    let store = domain.store.clone();
    let portal = Portal::new(domain.store, domain.referrals);
    match command {
        UsersCommand::Create {
            provider,
            email,
            name,
        } => {
            let Some(provider) = config.providers.keys().find(|p| p.as_str() == provider) else {
                anyhow::bail!("no [providers.{provider}] in the configuration");
            };
            if !email.contains('@') {
                anyhow::bail!("--email must be an email address");
            }
            let Some((user, token)) = portal.create_user(provider.clone(), &email, name).await?
            else {
                anyhow::bail!("there is already an account with this email address");
            };
            audit_command(
                store.as_ref(),
                "users create",
                Some(format!("user/{}", user.id)),
                None,
                "created",
            )
            .await?;
            eprintln!(
                "account {} created for {}; send this enrolment link to its owner (it works once, for 72 hours):",
                user.id, user.provider_id
            );
            println!("{}", enrolment_link(&config, &token));
        }
        UsersCommand::List => {
            let list: Vec<Value> = portal
                .users()
                .await?
                .iter()
                .map(|u| {
                    let state = if u.disabled_at.is_some() {
                        "disabled"
                    } else if u.password_hash.is_some() {
                        "active"
                    } else {
                        "enrolment pending"
                    };
                    serde_json::json!({
                        "id": u.id, "provider": u.provider_id, "email": u.email,
                        "name": u.name, "state": state,
                        "created_at": crate::domain::Timestamp::from_millis(u.created_at).to_string(),
                    })
                })
                .collect();
            print_json(&Value::Array(list));
        }
        UsersCommand::Disable { user } => {
            let found = portal.find_user(&user).await?;
            let done = match &found {
                Some(u) => portal.disable_user(&u.id).await?,
                None => false,
            };
            let id = found.map(|u| u.id).unwrap_or_default();
            audit_command(
                store.as_ref(),
                "users disable",
                Some(format!("user/{id}")),
                None,
                if done { "disabled" } else { "not found" },
            )
            .await?;
            if !done {
                anyhow::bail!("no such account");
            }
            println!("account {id} disabled; its sessions have ended");
        }
        UsersCommand::Reset { user } => {
            let Some(found) = portal.find_user(&user).await? else {
                anyhow::bail!("no such account");
            };
            let Some(token) = portal.reset_user(&found.id).await? else {
                anyhow::bail!("no such account");
            };
            audit_command(
                store.as_ref(),
                "users reset",
                Some(format!("user/{}", found.id)),
                None,
                "reset",
            )
            .await?;
            eprintln!(
                "account {}: password and authenticator cleared, sessions ended; send this enrolment link to its owner (it works once, for 72 hours):",
                found.id
            );
            println!("{}", enrolment_link(&config, &token));
        }
    }
    Ok(())
}
