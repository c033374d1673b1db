//! Building and running the server: load schemas, mappings and signing
//! secrets, open (and migrate) the store, bind the listener, start the
//! delivery worker. Tests build an [`Application`] on port 0 and talk to it
//! over real HTTP.

use std::{future::Future, net::SocketAddr, sync::Arc};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::{
    audit::AuditLog,
    config::Config,
    delivery::{Worker, WorkerHeartbeat},
    domain::{Clock, SystemClock},
    http::{AppState, Server},
    mapping::reload::Mappings,
    metrics::Metrics,
    referrals::Referrals,
    security::{
        client_certs::ClientIdentities,
        egress,
        rate_limit::{Admission, RateLimiter},
    },
    store,
    validation::Validator,
};

/// A built, bound, not yet serving Signpost.
pub struct Application {
    server: Server,
    instances: Arc<crate::instances::Registry>,
    mappings: Arc<Mappings>,
    worker: Worker,
    /// `[delivery] worker`: deliver from this process too.
    run_worker: bool,
    audit_writer: tokio::task::JoinHandle<()>,
    referrals: Arc<Referrals>,
}

/// Retention: purge expired payloads at start-up and every hour.
async fn purge_periodically(referrals: Arc<Referrals>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every.tick().await;
        if let Err(e) = referrals.purge_expired().await {
            tracing::warn!(error = %e, "retention purge failed; trying again in an hour");
        }
    }
}

/// Finish the reclaims erasures left (PostgreSQL: old row versions an
/// older transaction could still see), every `[database]
/// reclaim_interval`, so that nobody has to run an erasure again.
async fn reclaim_periodically(referrals: Arc<Referrals>) {
    let mut every = tokio::time::interval(referrals.config().database.reclaim_interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match referrals.reclaim_pending().await {
            Ok(crate::store::Reclaim::Done) => {}
            Ok(crate::store::Reclaim::Pending(why)) => {
                tracing::info!(why = %why, "erasure reclaim still pending; retrying");
            }
            Err(e) => tracing::warn!(error = %e, cause = ?e, "erasure reclaim failed; retrying"),
        }
    }
}

/// Warn (by token id, never the secret) about tokens whose referrer is no
/// longer configured: they are refused, and should be revoked.
async fn warn_about_orphaned_tokens(store: &dyn store::Store, config: &Config) {
    match store.tokens().await {
        Ok(tokens) => {
            let configured = |r: &crate::domain::ReferrerId| config.referrers.contains_key(r);
            for token in crate::security::tokens::orphaned(&tokens, configured) {
                tracing::warn!(
                    token_id = %token.id,
                    referrer_id = token.referrer_id.as_ref().map(|r| r.as_str()),
                    "this token's referrer is no longer configured: the token is refused; revoke it (`signpost tokens revoke`)"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the tokens to check their referrers"),
    }
}

/// Everything a Signpost process runs on, bound to no port.
pub struct Components {
    pub state: AppState,
    pub worker: Worker,
    /// Writes the audit trail's request records; ends once every
    /// `AuditLog` is dropped.
    pub audit_writer: tokio::task::JoinHandle<()>,
}

impl Components {
    /// Load schemas, mappings and signing secrets, and open the database
    /// (applying migrations), on the system's clock.
    pub async fn build(config: Config) -> anyhow::Result<Components> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Components::build`] on `clock`'s time (tests stop time with a
    /// [`crate::domain::ManualClock`]).
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Components> {
        let keys = config.signing_keys().map_err(|problems| {
            anyhow::anyhow!("signing secrets:\n  - {}", problems.join("\n  - "))
        })?;
        egress::check_targets(&config).await.map_err(|problems| {
            anyhow::anyhow!(
                "outbound targets:
  - {}",
                problems.join(
                    "
  - "
                )
            )
        })?;
        let Domain {
            referrals,
            mappings,
            store,
        } = domain_with_clock(config, clock.clone()).await?;
        let config = referrals.config().clone();
        warn_about_orphaned_tokens(store.as_ref(), &config).await;
        // Inbox providers' messages are collected, not pushed: the
        // delivery worker (this process's, and any sharing the database)
        // skips them.
        let inboxes: Vec<crate::domain::Endpoint> = config
            .providers
            .values()
            .filter(|p| p.delivery.is_inbox())
            .map(|p| crate::domain::Endpoint::Provider(p.id.clone()))
            .collect();
        store
            .set_inbox_endpoints(&inboxes)
            .await
            .context("recording the inbox providers")?;
        let keys = Arc::new(keys);
        let worker_heartbeat = WorkerHeartbeat::new(
            config.delivery.worker,
            config.delivery.poll_interval,
            clock.clone(),
        );
        let worker = Worker::new(
            config.clone(),
            keys.clone(),
            referrals.clone(),
            store.clone(),
            worker_heartbeat.clone(),
            clock,
        )?;
        let (audit, audit_writer) = AuditLog::start(store.clone());
        let instances = Arc::new(crate::instances::Registry::new(
            store.clone(),
            mappings.live.clone(),
            referrals.metrics(),
            config.database.heartbeat_interval,
        ));
        let bars = Arc::new(crate::bars::Bars::new(
            config.clone(),
            referrals.clone(),
            store.clone(),
        ));
        Ok(Components {
            state: AppState {
                config: config.clone(),
                referrals: referrals.clone(),
                bars,
                mappings,
                keys,
                audit,
                tokens: store.clone(),
                limiter: Arc::new(RateLimiter::new(&config.limits)),
                client_identities: Arc::new(ClientIdentities::new(&config)),
                worker_heartbeat,
                admission: Arc::new(Admission::new(&config.limits)),
                instances,
                portal: Arc::new(crate::portal::Portal::new(store.clone(), referrals.clone())),
                reports: Arc::new(crate::reports::Reports::new(
                    store.clone(),
                    config.report_suppression,
                )),
            },
            worker,
            audit_writer,
        })
    }
}

/// The referral domain, its mappings, and the store it runs on (for wiring
/// the other areas' slices of it).
pub struct Domain {
    pub referrals: Arc<Referrals>,
    pub mappings: Arc<Mappings>,
    pub store: Arc<dyn store::Store>,
}

/// The referral domain on `config`'s schemas, mappings and database, for
/// the server and for operators' commands (which need no secrets), on the
/// system's clock.
pub async fn domain(config: Config) -> anyhow::Result<Domain> {
    domain_with_clock(config, Arc::new(SystemClock)).await
}

/// [`domain`] on `clock`'s time.
pub async fn domain_with_clock(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<Domain> {
    let schemas_dir = config.schemas_dir.clone();
    let validator = tokio::task::spawn_blocking(move || Validator::load(&schemas_dir))
        .await
        .context("loading schemas")??;
    let metrics = Arc::new(Metrics::default());
    let mappings = Arc::new(
        Mappings::load(&config, metrics.clone())
            .map_err(|e| anyhow::anyhow!("mappings refused:\n{e}"))?,
    );
    let store = store::open_with(
        &config.database_url,
        config.database_max_connections,
        &config.database,
    )
    .await
    .context("opening the database")?;
    let referrals = Arc::new(Referrals::new(
        Arc::new(config),
        Arc::new(validator),
        store.clone(),
        mappings.live.clone(),
        metrics,
        clock,
    ));
    Ok(Domain {
        referrals,
        mappings,
        store,
    })
}

impl Application {
    /// Build the [`Components`] and bind, on the system's clock.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`Application::build`] on `clock`'s time.
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let listen = config.listen;
        // The TLS files are checked before the database is opened.
        let tls = match &config.tls {
            Some(tls) => Some(Arc::new(crate::security::tls::server_config(tls)?)),
            None => None,
        };
        let components = Components::build_with_clock(config, clock).await?;
        let listener = TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        let mappings = components.state.mappings.clone();
        let run_worker = components.state.config.delivery.worker;
        Ok(Application {
            referrals: components.state.referrals.clone(),
            instances: components.state.instances.clone(),
            run_worker,
            audit_writer: components.audit_writer,
            server: Server::new(listener, components.state, tls),
            mappings,
            worker: components.worker,
        })
    }

    /// This application's delivery worker, to step with
    /// [`Worker::tick`] when `[delivery] worker` is off (tests do).
    pub fn worker(&self) -> Worker {
        self.worker.clone()
    }

    /// The address actually bound (the port is chosen when `listen` says 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Serve and deliver until `shutdown` completes; then finish in-flight
    /// requests and delivery attempts.
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
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        let purge = tokio::spawn(purge_periodically(self.referrals.clone()));
        let reclaim = tokio::spawn(reclaim_periodically(self.referrals.clone()));
        let beat = tokio::spawn(self.instances.clone().run());
        tracing::info!(address = %self.local_addr(), "signpost listening");
        let worker = self
            .run_worker
            .then(|| tokio::spawn(self.worker.run_until_stopped(until(stopped.clone()))));
        let served = self.server.serve_until(until(stopped)).await;
        // The router (and with it every audit sender) is gone: the writer
        // finishes what is queued.
        if tokio::time::timeout(std::time::Duration::from_secs(10), self.audit_writer)
            .await
            .is_err()
        {
            tracing::error!("the audit writer did not finish within 10 s");
        }
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        purge.abort();
        reclaim.abort();
        beat.abort();
        self.instances.leave().await;
        served
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
