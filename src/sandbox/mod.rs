//! The sandbox: the whole loop on one machine, for a newcomer. `signpost
//! sandbox` runs the gateway on a configuration (the sample by default)
//! together with stand-ins on every provider's `intake_url` and every
//! referrer's `callback_url` (`stand_ins.rs`): a referral posted to it is
//! delivered, accepted, started and completed, each change reaching the
//! referrer as a signed notification, within seconds. `signpost simulate
//! status` sends one documented status callback to a running Signpost
//! (`status.rs`), to try an inbound mapping end to end.
//!
//! The stand-ins sign and verify with the endpoints' configured secrets,
//! read as `signpost serve` reads them (a missing `secret_file` is created
//! outside the repository, under `data/secrets/` in the sample), so
//! `simulate status` signs as the sandbox's providers do.

pub mod stand_ins;
pub mod status;

use std::{sync::Arc, time::Duration};

use anyhow::Context;

use crate::{
    config::Config,
    domain::Endpoint,
    startup::{Application, shutdown_signal},
};

/// A built sandbox, bound and not yet serving.
pub struct Sandbox {
    app: Application,
    stand_ins: Vec<stand_ins::Listener>,
    /// Where Signpost listens, `http://host:port`.
    pub base: String,
    /// What each stand-in listens for, for the banner.
    pub serving: Vec<String>,
}

impl Sandbox {
    /// Build Signpost on `config` (with its delivery worker on) and bind
    /// the stand-ins, whose providers report each step `step` apart.
    pub async fn build(mut config: Config, step: Duration) -> anyhow::Result<Sandbox> {
        config.delivery.worker = true;
        let keys = config.signing_keys().map_err(|problems| {
            anyhow::anyhow!("signing secrets:\n  - {}", problems.join("\n  - "))
        })?;
        let app = Application::build(config.clone()).await?;
        let base = format!("http://{}", app.local_addr());
        let gateway = Arc::new(stand_ins::Gateway {
            base: base.clone(),
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()?,
            step,
        });
        let stand_ins = stand_ins::bind(&config, &keys, gateway).await?;
        let serving = stand_ins.iter().flat_map(|l| l.serves.clone()).collect();
        Ok(Sandbox {
            app,
            stand_ins,
            base,
            serving,
        })
    }

    /// Serve until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        let stand_ins: Vec<_> = self
            .stand_ins
            .into_iter()
            .map(stand_ins::Listener::spawn)
            .collect();
        let served = self.app.run_until_stopped(shutdown_signal()).await;
        for stand_in in stand_ins {
            stand_in.abort();
        }
        served.context("serving")
    }
}

/// `signpost simulate status`: send `provider`'s status fixture `name`,
/// addressed to `referral`, signed with the provider's configured secret,
/// to the Signpost at `base`. Returns Signpost's answer.
pub async fn simulate_status(
    config: &Config,
    base: &str,
    provider: &str,
    referral: &str,
    name: &str,
) -> anyhow::Result<status::Answer> {
    let provider_id = config
        .providers
        .get(provider)
        .map(|p| p.id.clone())
        .with_context(|| format!("no [providers.{provider}] in the configuration"))?;
    let fixture = status::fixture(&config.mappings_dir, provider, name)?;
    let keys = config
        .signing_keys()
        .map_err(|problems| anyhow::anyhow!("signing secrets:\n  - {}", problems.join("\n  - ")))?;
    let keys = keys
        .get(&Endpoint::Provider(provider_id))
        .with_context(|| format!("no signing secret for provider:{provider}"))?;
    let referral = referral.strip_prefix("ServiceRequest/").unwrap_or(referral);
    let body = status::addressed(&fixture.callback, referral);
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    status::send(&client, base, provider, keys, &body).await
}

/// The base URL of the Signpost `config` describes: `public_base_url`, or
/// `http://` and `listen`.
pub fn base_url(config: &Config) -> String {
    config
        .public_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.listen))
}
