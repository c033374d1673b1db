//! `signpost sandbox` and `signpost simulate status` (the loop runs in
//! [`crate::sandbox`]; this prints the welcome, with a referrer token and
//! the commands to try).

use std::{path::PathBuf, time::Duration};

use super::{SimulateCommand, operations::audit_command};
use crate::{
    config::Config,
    sandbox::{Sandbox, base_url, simulate_status},
    security::tokens::{Role, issue, revoke},
};

/// The referral the welcome suggests sending.
const EXAMPLE: &str = "tests/fixtures/referrals/valid/activelives-exercise.json";

pub(super) async fn sandbox(config: PathBuf, step: Duration) -> anyhow::Result<()> {
    let config = Config::load(&config)?;
    let referrer = config
        .referrers
        .values()
        .next()
        .map(|r| r.id.clone())
        .ok_or_else(|| anyhow::anyhow!("the configuration has no [referrers.<id>]"))?;
    let database_url = config.database_url.clone();
    let sandbox = Sandbox::build(config, step).await?;
    let store = crate::store::open(&database_url, 1).await?;
    let issued = issue(&Role::Referrer(referrer.clone()));
    store.insert_token(issued.row.clone()).await?;
    audit_command(
        store.as_ref(),
        &format!("sandbox: tokens create {}", issued.row.role),
        Some(format!("token/{}", issued.row.id)),
        None,
        "created",
    )
    .await?;
    drop(store);
    let base = &sandbox.base;
    let serving = sandbox
        .serving
        .iter()
        .map(|s| format!("  - {s}"))
        .collect::<Vec<_>>()
        .join("\n");
    println!(
        "Signpost sandbox: Signpost is listening on {base}, with stand-ins for\n{serving}\n\
         The stand-ins verify every signature and print what they receive here. Each\n\
         provider walks every referral it receives through its documented status\n\
         callbacks (mappings/tests/<provider>/status/), signed, {} s apart; the\n\
         referrer stand-in prints each notification. Ctrl-C stops everything.\n\
         (The providers' payloads are printed here, never logged: use sample data only.)\n\n\
         A token for the referrer {referrer} (token {}, revoked when the sandbox stops):\n\n\
         TOKEN={}\n\n\
         Try, in another terminal, from the repository root:\n\n\
         AUTH=\"Authorization: Bearer $TOKEN\"\n\
         curl -s -H \"$AUTH\" -H 'Content-Type: application/fhir+json' \\\n  \
         --data-binary @{EXAMPLE} \\\n  {base}/fhir/ServiceRequest\n\
         curl -s -H \"$AUTH\" \"{base}/fhir/Task?focus=ServiceRequest/<id>\"\n\
         cargo run --release -q -- deliveries list --referral <id>\n\
         cargo run --release -q -- simulate status --provider activelives --referral <id> --fixture did_not_attend\n",
        step.as_secs_f64(),
        issued.row.id,
        issued.token,
    );
    let served = sandbox.run().await;
    // The token was for this session only: it does not outlive it in the
    // configured database (which `serve` may share).
    let store = crate::store::open(&database_url, 1).await?;
    revoke(store.as_ref(), &issued.row.id).await?;
    audit_command(
        store.as_ref(),
        "sandbox: tokens revoke",
        Some(format!("token/{}", issued.row.id)),
        None,
        "revoked",
    )
    .await?;
    served
}

pub(super) async fn simulate(config: PathBuf, command: SimulateCommand) -> anyhow::Result<()> {
    match command {
        SimulateCommand::Status {
            provider,
            referral,
            fixture,
            url,
        } => {
            let config = Config::load(&config)?;
            let base = url.unwrap_or_else(|| base_url(&config));
            let answer = simulate_status(&config, &base, &provider, &referral, &fixture).await?;
            let body = serde_json::from_str::<serde_json::Value>(&answer.body)
                .ok()
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or(answer.body);
            println!("{body}");
            if !(200..300).contains(&answer.status) {
                anyhow::bail!("Signpost answered {}", answer.status);
            }
            eprintln!("Signpost answered {}", answer.status);
            Ok(())
        }
    }
}
