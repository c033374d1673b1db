//! The report as JSON (`--json FILE`).

#[allow(unused_imports)]
use crate::*;

impl Report {
    pub(crate) fn json(&self) -> Value {
        let e = &self.errors;
        let b = &self.baseline;
        let r = &self.resources;
        let startup = self.startup.as_ref().ok();
        let pick = Spread::pick;
        let headline = json!({
            "benchmark": "delivery",
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "commit": self.commit,
            "machine": {
                "nproc": self.cpus,
                "cpu_model": self.cpu_model,
                "mem_total_mb": self.mem_total_mb.map(|m| round(m, 0)),
            },
            "backend": self.backend,
            "durability": self.durability,
            "delivery_settings": self.settings,

            // The headline figures.
            "accepted_per_s": round(self.accepted_per_s(), 1),
            "baseline_per_s": round(b.summary.per_s(), 1),
            "ratio": self.ratio().map(|r| round(r, 4)),
            "intake_p50_ms": pick(&self.intake.latency_ms, |s| s.p50),
            "intake_p90_ms": pick(&self.intake.latency_ms, |s| s.p90),
            "intake_p99_ms": pick(&self.intake.latency_ms, |s| s.p99),
            "intake_max_ms": pick(&self.intake.latency_ms, |s| s.max),
            "delivery_p50_ms": pick(&self.latency_ms, |s| s.p50),
            "delivery_p90_ms": pick(&self.latency_ms, |s| s.p90),
            "delivery_p99_ms": pick(&self.latency_ms, |s| s.p99),
            "delivery_max_ms": pick(&self.latency_ms, |s| s.max),
            "deliveries_per_s": round(self.deliveries_per_s(), 1),
            "errors": e.total(),
            "peak_rss_mb": r.peak_rss_mb.map(|v| round(v, 1)),
            "cpu_seconds": round(r.cpu_s, 2),
            "rss_scope": r.scope,
            "startup_to_ready_ms": startup.map(|s| round(s.ready_ms, 1)),
            "idle_rss_mb": startup.map(|s| round(s.idle_rss_mb, 1)),
        });
        let details = json!({
            "run": match self.run {
                Run::Count(n) => json!({ "referrals": n }),
                Run::For(d) => json!({ "duration_s": d.as_secs_f64() }),
            },
            "referrals": self.sent,
            "warmup": self.warmup,
            "clients": self.clients,
            "rate_limit_per_s": self.rate,
            "mean_body_bytes": self.body_bytes,
            "targets": self.checks().iter().map(|c| json!({
                "target": c.what, "goal": c.goal,
                "value": c.value.map(|v| round(v, 2)), "met": c.met,
            })).collect::<Vec<_>>(),
            "target_conditions": self.conditions(),
            "baseline": {
                "handler": "axum: read the whole body (Bytes), answer 201",
                "accepted": b.summary.accepted,
                "wall_s": round(b.summary.wall_s, 3),
                "requests_per_s": round(b.summary.per_s(), 1),
                "post_to_201_ms": Spread::json(&b.summary.latency_ms),
                "refused_by_status": status_counts(&b.refused),
                "cpu_seconds": round(b.cpu_s, 2),
                "cpu_wall_s": round(b.wall_s, 3),
            },
            "intake": {
                "accepted": self.intake.accepted,
                "wall_s": round(self.intake.wall_s, 3),
                "referrals_per_s": round(self.accepted_per_s(), 1),
                "post_to_201_ms": Spread::json(&self.intake.latency_ms),
            },
            "delivery": {
                "delivered": self.delivered,
                "first_201_to_last_receipt_s": round(self.created_to_last_receipt_s, 3),
                "deliveries_per_s_from_first_201": round(self.deliveries_per_s(), 1),
                "first_to_last_receipt_s": round(self.receipts_span_s, 3),
                "deliveries_per_s_from_first_receipt": round(per_second(self.delivered, self.receipts_span_s), 1),
                "during_intake": {
                    "delivered": self.during_intake.0,
                    "seconds": round(self.during_intake.1, 3),
                    "deliveries_per_s": round(per_second(self.during_intake.0, self.during_intake.1), 1),
                },
                "after_intake": {
                    "delivered": self.after_intake.0,
                    "seconds": round(self.after_intake.1, 3),
                    "deliveries_per_s": round(per_second(self.after_intake.0, self.after_intake.1), 1),
                },
                "created_to_receipt_ms": Spread::json(&self.latency_ms),
                "receipts_before_201": self.early,
                "duplicates": self.duplicates,
                "referrer_notifications": self.notifications,
            },
            "resources": {
                "scope": r.scope,
                "peak_rss_mb": r.peak_rss_mb.map(|v| round(v, 1)),
                "peak_since": if r.peak_reset { "just before Signpost started" } else { "process start" },
                "rss_growth_pct": r.growth_pct().map(|g| round(g, 1)),
                "rss_growth_window": "last sample over the sample a minute into the run (runs of 2 minutes or more)",
                "rss_samples_s_mb": r.thinned(),
                "rss_at_end_mb": r.rss_mb.map(|v| round(v, 1)),
                "cpu_seconds": round(r.cpu_s, 2),
                "cpu_wall_s": round(r.wall_s, 3),
                "cpu_window": "first measured POST to last receipt",
            },
            "server_metrics": self.server_times,
            "startup": match &self.startup {
                Ok(s) => json!({
                    "command": "signpost serve (fresh SQLite database)",
                    "to_ready_ms": round(s.ready_ms, 1),
                    "idle_s": s.idle_s,
                    "idle_rss_mb": round(s.idle_rss_mb, 1),
                    "idle_peak_rss_mb": round(s.idle_peak_rss_mb, 1),
                    "sigterm_to_exit_ms": round(s.stop_ms, 1),
                    "exit": s.exit,
                }),
                Err(e) => json!({ "error": e }),
            },
            "error_detail": {
                "total": e.total(),
                "refused_by_status": status_counts(&e.refused),
                "bad_signatures": e.bad_signatures,
                "unreadable": e.unreadable,
                "misrouted": e.misrouted,
                "missing": e.missing,
            },
        });
        // One `json!` for all would pass serde_json's macro recursion limit.
        let (Value::Object(mut all), Value::Object(details)) = (headline, details) else {
            unreachable!("JSON objects");
        };
        all.extend(details);
        Value::Object(all)
    }
}
