//! Hot reload: the running server watches `mappings/` (files and fixtures)
//! and `schemas/providers/`. After an edit settles it builds a whole new
//! mapping set, checks it (every file compiles, one mapping per configured
//! provider, each with its fixtures, every fixture referral routed to its
//! own provider only, every fixture passes), and only then swaps it in atomically;
//! requests already running finish on the set they started with. A broken
//! edit changes nothing: the old set keeps serving and the error is logged
//! and shown by `GET /admin/mappings`.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use arc_swap::ArcSwap;
use chrono::{SecondsFormat, Utc};
use notify::{RecursiveMode, Watcher};
use serde_json::{Value, json};

use super::{MappingSet, fixtures, set_check};
use crate::config::Config;

/// How long edits must stop before a reload: editors write files in
/// several steps.
const SETTLE: Duration = Duration::from_millis(300);

/// Where mappings come from, and the live set.
pub struct Mappings {
    pub live: Arc<ArcSwap<MappingSet>>,
    mappings_dir: PathBuf,
    schemas_dir: PathBuf,
    providers: Vec<String>,
    status: Mutex<ReloadStatus>,
    metrics: Arc<crate::metrics::Metrics>,
}

#[derive(Debug, Default, Clone)]
struct ReloadStatus {
    loaded_at: String,
    last_attempt_at: Option<String>,
    last_error: Option<String>,
    reloads: u64,
    failures: u64,
}

impl Mappings {
    /// Load and check the set named by `config`; refuse to start on any problem.
    pub fn load(
        config: &Config,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Mappings, String> {
        let providers: Vec<String> = config.providers.keys().map(ToString::to_string).collect();
        let set = load_checked(&config.mappings_dir, &config.schemas_dir, &providers)?;
        Ok(Mappings {
            live: Arc::new(ArcSwap::from_pointee(set)),
            mappings_dir: config.mappings_dir.clone(),
            schemas_dir: config.schemas_dir.clone(),
            providers,
            status: Mutex::new(ReloadStatus {
                loaded_at: now(),
                ..ReloadStatus::default()
            }),
            metrics,
        })
    }

    /// Build, check and swap in a new set; on failure keep the old one.
    pub fn reload(&self) -> Result<(), String> {
        let outcome = load_checked(&self.mappings_dir, &self.schemas_dir, &self.providers);
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        status.last_attempt_at = Some(now());
        self.metrics.mapping_reload(outcome.is_ok());
        match outcome {
            Ok(set) => {
                let versions: Vec<String> = set
                    .mappings
                    .values()
                    .map(|m| format!("{} {}", m.provider, m.version))
                    .collect();
                self.live.store(Arc::new(set));
                status.loaded_at = now();
                status.last_error = None;
                status.reloads += 1;
                tracing::info!(mappings = ?versions, "mappings reloaded");
                Ok(())
            }
            Err(error) => {
                status.last_error = Some(error.clone());
                status.failures += 1;
                tracing::error!(error = %error, "mapping reload refused; the previous mappings stay live");
                Err(error)
            }
        }
    }

    /// What `GET /admin/mappings` shows.
    pub fn report(&self) -> Value {
        let status = self
            .status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let set = self.live.load();
        json!({
            "loaded_at": status.loaded_at,
            "last_reload_attempt_at": status.last_attempt_at,
            "last_reload_error": status.last_error,
            "reloads": status.reloads,
            "failed_reloads": status.failures,
            "mappings": set.mappings.values().map(|m| json!({
                "provider": m.provider,
                "version": m.version,
                "file": m.file.display().to_string(),
                "sha256": m.sha256,
            })).collect::<Vec<_>>(),
        })
    }

    /// Watch the mapping and provider schema folders and reload after each
    /// settled burst of changes, until the returned watcher is dropped.
    pub fn watch(self: &Arc<Self>) -> notify::Result<notify::RecommendedWatcher> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok_and(|e| !e.kind.is_access()) {
                    let _ = tx.send(());
                }
            })?;
        watcher.watch(&self.mappings_dir, RecursiveMode::Recursive)?;
        let providers_schemas = self.schemas_dir.join("providers");
        if providers_schemas.is_dir() {
            watcher.watch(&providers_schemas, RecursiveMode::Recursive)?;
        }
        let mappings = Arc::clone(self);
        tokio::spawn(async move {
            while rx.recv().await.is_some() {
                // Wait until the edits stop for SETTLE.
                loop {
                    match tokio::time::timeout(SETTLE, rx.recv()).await {
                        Ok(Some(())) => continue,
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                let mappings = Arc::clone(&mappings);
                let _ = tokio::task::spawn_blocking(move || mappings.reload()).await;
            }
        });
        Ok(watcher)
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Load every mapping, check the set as a whole (one mapping per configured
/// provider, fixtures for each, every fixture referral routed to its own
/// provider only), and run the fixtures beside them. Every problem, one per
/// line.
pub fn load_checked(
    mappings_dir: &std::path::Path,
    schemas_dir: &std::path::Path,
    providers: &[String],
) -> Result<MappingSet, String> {
    let lines = |errors: Vec<super::MappingError>| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let set = MappingSet::load(mappings_dir, schemas_dir).map_err(lines)?;
    let tests_dir = mappings_dir.join("tests");
    let mut problems = vec![lines(set_check::check(&set, &tests_dir, Some(providers)))];
    problems.retain(|p| !p.is_empty());
    for (id, mapping) in &set.mappings {
        let report = fixtures::run(mapping, &tests_dir);
        for failure in &report.failures {
            problems.push(format!("mapping {id} fails its fixture {failure}"));
        }
    }
    if problems.is_empty() {
        Ok(set)
    } else {
        Err(problems.join("\n"))
    }
}
