//! Building and running the server: load schemas, open (and migrate) the
//! store, bind the listener. Tests build an [`Application`] on port 0 and
//! talk to it over real HTTP.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    fhir::{self, AppState},
    mapping::reload::Mappings,
    referrals::Referrals,
    store,
    validation::Validator,
};

/// A built, bound, not yet serving Signpost.
pub struct Application {
    listener: TcpListener,
    router: axum::Router,
    mappings: Arc<Mappings>,
}

impl Application {
    /// Load schemas, open the database (applying migrations) and bind.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let schemas_dir = config.schemas_dir.clone();
        let validator = tokio::task::spawn_blocking(move || Validator::load(&schemas_dir))
            .await
            .context("loading schemas")??;
        let mappings = Arc::new(
            Mappings::load(&config).map_err(|e| anyhow::anyhow!("mappings refused:\n{e}"))?,
        );
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
            mappings: mappings.live.clone(),
        });
        let router = fhir::router(AppState {
            config,
            referrals,
            mappings: mappings.clone(),
        });
        Ok(Application {
            listener,
            router,
            mappings,
        })
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
        // The watcher lives as long as the server.
        let _watcher = self
            .mappings
            .watch()
            .map_err(|e| tracing::warn!(error = %e, "cannot watch mappings; hot reload is off"))
            .ok();
        tracing::info!(address = %self.local_addr(), "signpost listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
    }
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
