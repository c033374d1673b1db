//! What Signpost is doing, for Prometheus: the registry of every metric,
//! which the domain, the delivery worker and the HTTP layer record into,
//! rendered in the OpenMetrics text format (which Prometheus scrapes
//! natively) by `GET /metrics` (`http::metrics`).
//!
//! Each process has its own registry (no global recorder), so every test
//! server counts only its own work. Labels carry ids (referrer, provider,
//! endpoint, route) and outcomes, never patient data. The outbox gauges
//! (depth, oldest undelivered message, dead letters) are read from the
//! database at each scrape, so they are right across several instances.

use std::{sync::atomic::AtomicU64, time::Duration};

use chrono::{DateTime, Utc};
use prometheus_client::{
    encoding::text::encode,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

use crate::store::OutboxStats;

/// Label pairs, e.g. `[("referrer", "riverside-surgery")]`.
type Labels = Vec<(&'static str, String)>;
type Timings = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric Signpost exports.
pub struct Metrics {
    registry: Registry,
    referrals_accepted: Family<Labels, Counter>,
    referrals_resent: Family<Labels, Counter>,
    referrals_rejected: Family<Labels, Counter>,
    http_requests: Family<Labels, Counter>,
    http_seconds: Timings,
    validation_seconds: Histogram,
    mapping_seconds: Histogram,
    delivery_attempts: Family<Labels, Counter>,
    attempt_seconds: Timings,
    status_events: Family<Labels, Counter>,
    inbox_events: Family<Labels, Counter>,
    escalations_raised: Family<Labels, Counter>,
    escalations_resent: Family<Labels, Counter>,
    mapping_reloads: Family<Labels, Counter>,
    outbox_pending: Family<Labels, Gauge>,
    outbox_oldest_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    dead_letters: Family<Labels, Gauge>,
    endpoints_disabled: Family<Labels, Gauge>,
    erasure_reclaims_pending: Gauge,
    instances: Gauge,
    instance_mapping_sets: Gauge,
}

/// Buckets from 50 µs to about 26 s (seconds).
fn timings() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

impl Default for Metrics {
    fn default() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("signpost"),
            referrals_accepted: Family::default(),
            referrals_resent: Family::default(),
            referrals_rejected: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(timings),
            validation_seconds: timings(),
            mapping_seconds: timings(),
            delivery_attempts: Family::default(),
            attempt_seconds: Family::new_with_constructor(timings),
            status_events: Family::default(),
            inbox_events: Family::default(),
            escalations_raised: Family::default(),
            escalations_resent: Family::default(),
            mapping_reloads: Family::default(),
            outbox_pending: Family::default(),
            outbox_oldest_seconds: Family::default(),
            dead_letters: Family::default(),
            endpoints_disabled: Family::default(),
            erasure_reclaims_pending: Gauge::default(),
            instances: Gauge::default(),
            instance_mapping_sets: Gauge::default(),
        };
        let r = &mut m.registry;
        r.register(
            "referrals_accepted",
            "Referrals accepted (201), by referrer",
            m.referrals_accepted.clone(),
        );
        r.register(
            "referrals_resent",
            "Referrals sent again and answered with the original (200), by referrer",
            m.referrals_resent.clone(),
        );
        r.register(
            "referrals_rejected",
            "Referrals refused, by referrer and reason",
            m.referrals_rejected.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests, by route",
            m.http_seconds.clone(),
        );
        r.register(
            "validation_duration_seconds",
            "Time to validate one submitted referral (schema and profile)",
            m.validation_seconds.clone(),
        );
        r.register(
            "mapping_duration_seconds",
            "Time to route and map one referral to its provider's payload",
            m.mapping_seconds.clone(),
        );
        r.register(
            "delivery_attempts",
            "Delivery attempts, by endpoint and outcome (delivered, retry, dead, disabled)",
            m.delivery_attempts.clone(),
        );
        r.register(
            "delivery_attempt_duration_seconds",
            "Time from sending a webhook to its answer, by endpoint",
            m.attempt_seconds.clone(),
        );
        r.register(
            "status_events",
            "Provider status callbacks, by provider, outcome (applied, duplicate, refused) and Task status",
            m.status_events.clone(),
        );
        r.register(
            "inbox_events",
            "Inbox providers' messages, by provider and event: collected, not_collected (a referral waited `inbox_nudge_after`; the referrer was told), expired (dead-lettered after `inbox_expire_after`)",
            m.inbox_events.clone(),
        );
        r.register(
            "escalations_raised",
            "Escalations raised by providers, by provider and urgency",
            m.escalations_raised.clone(),
        );
        r.register(
            "escalations_resent",
            "Escalations not acknowledged by their deadline and sent again, by urgency",
            m.escalations_resent.clone(),
        );
        r.register(
            "mapping_reloads",
            "Hot reloads of the mapping files, by outcome (ok, failed)",
            m.mapping_reloads.clone(),
        );
        r.register(
            "outbox_pending",
            "Messages not yet delivered, by endpoint",
            m.outbox_pending.clone(),
        );
        r.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest undelivered message, by endpoint",
            m.outbox_oldest_seconds.clone(),
        );
        r.register(
            "dead_letters",
            "Messages dead-lettered, by endpoint (a replay is a new message)",
            m.dead_letters.clone(),
        );
        r.register(
            "endpoint_disabled",
            "1 for each endpoint disabled after answering 410 Gone, until an operator re-enables it",
            m.endpoints_disabled.clone(),
        );
        r.register(
            "erasure_reclaims_pending",
            "Erasures whose old row versions the database still holds (PostgreSQL: reclaimed automatically once no older transaction can see them)",
            m.erasure_reclaims_pending.clone(),
        );
        r.register(
            "instances",
            "Signpost instances beating into the shared database",
            m.instances.clone(),
        );
        r.register(
            "instance_mapping_sets",
            "Different mapping sets live across those instances (alert above 1: they map referrals differently)",
            m.instance_mapping_sets.clone(),
        );
        m
    }
}

fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.iter().map(|&(k, v)| (k, v.to_owned())).collect()
}

impl Metrics {
    pub fn validation(&self, took: Duration) {
        self.validation_seconds.observe(took.as_secs_f64());
    }

    pub fn mapping(&self, took: Duration) {
        self.mapping_seconds.observe(took.as_secs_f64());
    }

    /// One delivery attempt to `endpoint` (`provider:<id>` or
    /// `referrer:<id>`).
    pub fn attempt(&self, endpoint: &str, outcome: &str, took: Duration) {
        self.delivery_attempts
            .get_or_create(&labels([("endpoint", endpoint), ("outcome", outcome)]))
            .inc();
        self.attempt_seconds
            .get_or_create(&labels([("endpoint", endpoint)]))
            .observe(took.as_secs_f64());
    }

    /// One status callback from `provider`; `status` is the Task's status
    /// after it ("" when refused).
    pub fn status_event(&self, provider: &str, outcome: &str, status: &str) {
        self.status_events
            .get_or_create(&labels([
                ("provider", provider),
                ("outcome", outcome),
                ("status", status),
            ]))
            .inc();
    }

    /// `count` of `provider`'s inbox messages came to `event` (`collected`,
    /// `not_collected`, `expired`).
    pub fn inbox_event(&self, provider: &str, event: &str, count: usize) {
        self.inbox_events
            .get_or_create(&labels([("provider", provider), ("event", event)]))
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// `provider` raised an escalation.
    pub fn escalation_raised(&self, provider: &str, urgency: &str) {
        self.escalations_raised
            .get_or_create(&labels([("provider", provider), ("urgency", urgency)]))
            .inc();
    }

    /// An escalation was sent again after its deadline.
    pub fn escalation_resent(&self, urgency: &str) {
        self.escalations_resent
            .get_or_create(&labels([("urgency", urgency)]))
            .inc();
    }

    pub fn mapping_reload(&self, ok: bool) {
        let outcome = if ok { "ok" } else { "failed" };
        self.mapping_reloads
            .get_or_create(&labels([("outcome", outcome)]))
            .inc();
    }

    /// One answered request (`route` is the route pattern, not the path,
    /// which may hold ids; `referrer` is who sent it, if a referrer);
    /// intake requests also count the referral.
    pub fn request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        referrer: Option<&str>,
        took: Duration,
    ) {
        let status_text = status.to_string();
        self.http_requests
            .get_or_create(&labels([
                ("method", method),
                ("route", route),
                ("status", &status_text),
            ]))
            .inc();
        self.http_seconds
            .get_or_create(&labels([("route", route)]))
            .observe(took.as_secs_f64());
        let intake =
            method == "POST" && matches!(route, "/fhir" | "/fhir/" | "/fhir/ServiceRequest");
        if !intake {
            return;
        }
        let referrer = referrer.unwrap_or("unknown");
        match status {
            201 => self
                .referrals_accepted
                .get_or_create(&labels([("referrer", referrer)]))
                .inc(),
            200 => self
                .referrals_resent
                .get_or_create(&labels([("referrer", referrer)]))
                .inc(),
            _ => self
                .referrals_rejected
                .get_or_create(&labels([
                    ("referrer", referrer),
                    ("reason", rejection_reason(status)),
                ]))
                .inc(),
        };
    }

    /// Set the erasures still to reclaim (read from the database at each
    /// scrape, before [`Metrics::render`]).
    pub fn set_reclaims_pending(&self, pending: i64) {
        self.erasure_reclaims_pending.set(pending);
    }

    /// Set the instances live on the database and how many mapping sets
    /// they run (see [`crate::instances`]).
    pub fn set_instances(&self, live: usize, mapping_sets: usize) {
        self.instances.set(i64::try_from(live).unwrap_or(i64::MAX));
        self.instance_mapping_sets
            .set(i64::try_from(mapping_sets).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text, with the outbox gauges set from `outbox` and
    /// the disabled endpoints from `disabled`.
    pub fn render(
        &self,
        outbox: &[OutboxStats],
        disabled: &[String],
        now: DateTime<Utc>,
    ) -> String {
        self.outbox_pending.clear();
        self.outbox_oldest_seconds.clear();
        self.dead_letters.clear();
        self.endpoints_disabled.clear();
        for endpoint in disabled {
            self.endpoints_disabled
                .get_or_create(&labels([("endpoint", endpoint)]))
                .set(1);
        }
        for stats in outbox {
            let endpoint = labels([("endpoint", &stats.endpoint.to_string())]);
            self.outbox_pending
                .get_or_create(&endpoint)
                .set(stats.pending);
            self.dead_letters.get_or_create(&endpoint).set(stats.dead);
            let age = stats
                .oldest_pending_at
                .as_deref()
                .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                .map_or(0.0, |at| {
                    (now - at.with_timezone(&Utc)).num_milliseconds().max(0) as f64 / 1000.0
                });
            self.outbox_oldest_seconds.get_or_create(&endpoint).set(age);
        }
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Why an intake was refused, from its status.
fn rejection_reason(status: u16) -> &'static str {
    match status {
        400 => "invalid",
        401 => "unauthenticated",
        403 => "forbidden",
        408 => "timeout",
        409 => "conflict",
        412 => "ambiguous",
        413 => "too_large",
        415 => "media_type",
        422 => "profile",
        429 => "rate_limited",
        503 => "unavailable",
        _ => "error",
    }
}
