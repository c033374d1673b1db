//! Several instances on one database. Each `signpost serve` beats into the
//! `instances` table every `[database] heartbeat_interval` with the
//! fingerprint of the mapping set it has live; each reads the others'
//! beats back, shows them (`GET /admin/instances`, and the `instances` and
//! `instance_mapping_sets` gauges of `/metrics`), and warns when live
//! instances disagree: a mapping reloaded on one instance only makes the
//! fleet map the same referral two ways, and nothing else would show it.

use std::{sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

use crate::{
    mapping::MappingSet,
    metrics::Metrics,
    store::{Instance, Instances, StoreError},
};

/// This instance's beat, and its view of the others.
pub struct Registry {
    id: String,
    started_at: String,
    store: Arc<dyn Instances>,
    live: Arc<ArcSwap<MappingSet>>,
    metrics: Arc<Metrics>,
    interval: Duration,
}

/// What identifies a mapping set: each mapping's provider, version and
/// the start of its file's SHA-256 (so an edit that kept the version shows).
pub fn fingerprint(set: &MappingSet) -> String {
    set.mappings
        .values()
        .map(|m| {
            format!(
                "{} {} {}",
                m.provider,
                m.version,
                &m.sha256[..m.sha256.len().min(12)]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Registry {
    pub fn new(
        store: Arc<dyn Instances>,
        live: Arc<ArcSwap<MappingSet>>,
        metrics: Arc<Metrics>,
        interval: Duration,
    ) -> Registry {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into());
        Registry {
            id: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            started_at: Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
            store,
            live,
            metrics,
            interval,
        }
    }

    /// An instance is live while its last beat is at most three intervals
    /// old.
    fn window_ms(&self) -> i64 {
        i64::try_from(self.interval.as_millis() * 3).unwrap_or(i64::MAX)
    }

    /// Beat, then read the live instances: set the gauges, and warn (ids
    /// and fingerprints only) when they disagree on the mapping set.
    pub async fn beat(&self) -> Result<Vec<Instance>, StoreError> {
        let me = Instance {
            id: self.id.clone(),
            started_at: self.started_at.clone(),
            heartbeat_ms: 0,
            mappings: fingerprint(&self.live.load()),
        };
        self.store.beat(&me).await?;
        let live = self.store.live_instances(self.window_ms()).await?;
        let sets = distinct_sets(&live);
        self.metrics.set_instances(live.len(), sets);
        if sets > 1 {
            let views: Vec<String> = live
                .iter()
                .map(|i| format!("{}: {}", i.id, i.mappings))
                .collect();
            tracing::warn!(
                instance = %self.id,
                instances = ?views,
                "instances sharing the database run different mapping sets: the same referral is mapped differently depending on which instance takes it; reload the mappings on every instance"
            );
        }
        Ok(live)
    }

    /// Beat every interval, until aborted.
    pub async fn run(self: Arc<Self>) {
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if let Err(e) = self.beat().await {
                tracing::warn!(error = %e, "cannot record this instance's heartbeat");
            }
        }
    }

    /// Remove this instance's row (a clean stop).
    pub async fn leave(&self) {
        if let Err(e) = self.store.leave(&self.id).await {
            tracing::warn!(error = %e, "cannot remove this instance from the instances table");
        }
    }

    /// What `GET /admin/instances` shows: each live instance, whether it
    /// runs the mapping set most instances run, and this instance's id.
    pub async fn report(&self) -> Result<Value, StoreError> {
        let live = self.beat().await?;
        let sets = distinct_sets(&live);
        Ok(json!({
            "this_instance": self.id,
            "mapping_sets": sets,
            "agree": sets <= 1,
            "instances": live.iter().map(|i| json!({
                "id": i.id,
                "started_at": i.started_at,
                "mappings": i.mappings,
            })).collect::<Vec<_>>(),
        }))
    }
}

fn distinct_sets(live: &[Instance]) -> usize {
    let mut sets: Vec<&str> = live.iter().map(|i| i.mappings.as_str()).collect();
    sets.sort_unstable();
    sets.dedup();
    sets.len()
}
