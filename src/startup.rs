//! Building and running the server: load schemas, open (and migrate) the
//! store, bind the listener. Tests build an [`Application`] on port 0 and
//! talk to it over real HTTP.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::{Context, bail};
use arc_swap::ArcSwap;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    fhir::{self, AppState},
    mapping::{MappingSet, fixtures},
    referrals::Referrals,
    store,
    validation::Validator,
};

/// A built, bound, not yet serving Signpost.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
}

impl Application {
    /// Load schemas, open the database (applying migrations) and bind.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let schemas_dir = config.schemas_dir.clone();
        let validator = tokio::task::spawn_blocking(move || Validator::load(&schemas_dir))
            .await
            .context("loading schemas")??;
        let mappings = load_mappings(&config)?;
        let store = store::open(&config.database_url, config.database_max_connections)
            .await
            .context("opening the database")?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let config = Arc::new(config);
        let referrals = Arc::new(Referrals {
            config: config.clone(),
            validator: Arc::new(validator),
            store,
            mappings: Arc::new(ArcSwap::from_pointee(mappings)),
        });
        let router = fhir::router(AppState { config, referrals });
        Ok(Application { listener, router })
    }

    /// The address actually bound (the port is chosen when `listen` says 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serve until `shutdown` completes, then finish in-flight requests.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        tracing::info!(address = %self.local_addr(), "signpost listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// Load every mapping, require exactly one per configured provider, and
/// run the fixtures beside them: Signpost does not start on a mapping that
/// does not compile or does not pass its own tests.
pub fn load_mappings(config: &Config) -> anyhow::Result<MappingSet> {
    let set = MappingSet::load(&config.mappings_dir, &config.schemas_dir).map_err(|errors| {
        anyhow::anyhow!(
            "mappings in {} do not load:\n  {}",
            config.mappings_dir.display(),
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    })?;
    let mut problems = Vec::new();
    for id in config.providers.keys() {
        if !set.mappings.contains_key(id) {
            problems.push(format!(
                "provider {id} is configured but has no mapping in {}",
                config.mappings_dir.display()
            ));
        }
    }
    for (id, mapping) in &set.mappings {
        if !config.providers.contains_key(id) {
            problems.push(format!(
                "{} maps provider {id}, which is not configured ([providers.{id}])",
                mapping.file.display()
            ));
        }
        let report = fixtures::run(mapping, &config.mappings_dir.join("tests"));
        for failure in &report.failures {
            problems.push(format!("mapping {id} fails its fixture {failure}"));
        }
    }
    if !problems.is_empty() {
        bail!("mappings refused:\n  {}", problems.join("\n  "));
    }
    Ok(set)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
