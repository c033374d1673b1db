//! The report as a table, each target with ✓ or ✗.

#[allow(unused_imports)]
use crate::*;

impl Report {
    pub(crate) fn table(&self) -> String {
        let e = &self.errors;
        let refused: usize = e.refused.values().sum();
        let b = &self.baseline;
        let r = &self.resources;
        let mb = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} MB"));
        let cpu_per = |cpu_s: f64, n: usize| {
            if n > 0 {
                format!("{:.0} µs CPU/request", cpu_s / n as f64 * 1e6)
            } else {
                "-".into()
            }
        };
        let mut rows: Vec<(&str, String)> = vec![
            (
                "machine",
                format!(
                    "{} CPUs, {}, {}",
                    self.cpus,
                    self.cpu_model,
                    self.mem_total_mb
                        .map_or("?".into(), |m| format!("{:.1} GiB", m / 1024.0))
                ),
            ),
            ("backend", format!("{} ({})", self.backend, self.durability)),
            ("delivery settings", self.settings.clone()),
        ];
        if let Some(commit) = &self.commit {
            rows.push(("commit", commit.clone()));
        }
        rows.extend([
            (
                "run",
                match self.run {
                    Run::Count(n) => format!("{n} referrals (after {} warm-up)", self.warmup),
                    Run::For(d) => format!(
                        "{:.0} s: {} referrals sent (after {} warm-up)",
                        d.as_secs_f64(),
                        self.sent,
                        self.warmup
                    ),
                },
            ),
            (
                "clients",
                match self.rate {
                    Some(rate) => format!("{} (at most {rate} referrals/s)", self.clients),
                    None => format!(
                        "{} (each sends as soon as its last answer arrives); bodies {} B on average",
                        self.clients, self.body_bytes
                    ),
                },
            ),
            ("", String::new()),
            (
                "baseline",
                format!(
                    "{:.0} requests/s  ({} in {:.2} s; axum handler: read body, answer 201)",
                    b.summary.per_s(),
                    b.summary.accepted,
                    b.summary.wall_s
                ),
            ),
            ("baseline POST → 201", Spread::line(&b.summary.latency_ms)),
            (
                "baseline CPU",
                format!(
                    "{:.2} s in {:.2} s ({})",
                    b.cpu_s,
                    b.wall_s,
                    cpu_per(b.cpu_s, b.summary.accepted)
                ),
            ),
            ("", String::new()),
            (
                "accepted referrals/s",
                format!(
                    "{:.1}  ({} in {:.2} s, first POST → last 201)",
                    self.accepted_per_s(),
                    self.intake.accepted,
                    self.intake.wall_s
                ),
            ),
            (
                "ratio to baseline",
                self.ratio()
                    .map_or("-".into(), |r| format!("{:.2} %", r * 100.0)),
            ),
            ("POST → 201 (ms)", Spread::line(&self.intake.latency_ms)),
            (
                "deliveries/s",
                format!(
                    "{:.1}  (N / first 201 → last receipt, {:.2} s)",
                    self.deliveries_per_s(),
                    self.created_to_last_receipt_s
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (N / first receipt → last receipt, {:.2} s)",
                    per_second(self.delivered, self.receipts_span_s),
                    self.receipts_span_s
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (while intake ran: {} delivered in {:.2} s)",
                    per_second(self.during_intake.0, self.during_intake.1),
                    self.during_intake.0,
                    self.during_intake.1,
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (after the last 201: {} delivered in {:.2} s)",
                    per_second(self.after_intake.0, self.after_intake.1),
                    self.after_intake.0,
                    self.after_intake.1,
                ),
            ),
            ("201 → receipt (ms)", Spread::line(&self.latency_ms)),
            (
                "errors",
                format!(
                    "{}  (refused {refused}, bad signature {}, unreadable {}, misrouted {}, missing {})",
                    e.total(),
                    e.bad_signatures,
                    e.unreadable,
                    e.misrouted,
                    e.missing
                ),
            ),
            (
                "other",
                format!(
                    "{} duplicate deliveries, {} referrer notifications, {} receipts before the 201",
                    self.duplicates, self.notifications, self.early
                ),
            ),
        ]);
        if !e.refused.is_empty() {
            rows.push(("refused by status", format!("{:?}", e.refused)));
        }
        if !b.refused.is_empty() {
            rows.push(("baseline refused", format!("{:?}", b.refused)));
        }
        let server = &self.server_times;
        let mean = |key: &str| {
            server[key]["mean_ms"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.2} ms"))
        };
        rows.extend([
            ("", String::new()),
            (
                "peak RSS",
                format!(
                    "{}  ({}, {}; {} at the end{})",
                    mb(r.peak_rss_mb),
                    r.scope,
                    if r.scope == PROCESS_SCOPE {
                        "since it started"
                    } else if r.peak_reset {
                        "since just before Signpost started"
                    } else {
                        "since the process started"
                    },
                    mb(r.rss_mb),
                    r.growth_pct()
                        .map_or(String::new(), |g| format!("; {g:+.1} % since a minute in"))
                ),
            ),
            (
                "CPU",
                format!(
                    "{:.2} s in {:.2} s, {:.0} % of {} CPUs ({}, {})",
                    r.cpu_s,
                    r.wall_s,
                    r.cpu_s / (r.wall_s * self.cpus.max(1) as f64) * 100.0,
                    self.cpus,
                    cpu_per(r.cpu_s, self.intake.accepted),
                    r.scope
                ),
            ),
            (
                "Signpost's /metrics",
                format!(
                    "means: intake handler {}, validation {}, mapping {}, delivery attempt {}",
                    mean("intake_handler"),
                    mean("validation"),
                    mean("mapping"),
                    mean("delivery_attempt")
                ),
            ),
            (
                "signpost serve",
                match &self.startup {
                    Ok(s) => format!(
                        "ready {:.0} ms after spawn; after {:.1} s idle RSS {:.1} MB (peak {:.1} MB); \
                         SIGTERM → exit {:.0} ms ({})",
                        s.ready_ms, s.idle_s, s.idle_rss_mb, s.idle_peak_rss_mb, s.stop_ms, s.exit
                    ),
                    Err(e) => format!("probe failed: {e}"),
                },
            ),
        ]);
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut text = String::from("\nSignpost end-to-end benchmark\n");
        for (key, value) in rows {
            if key.is_empty() && value.is_empty() {
                text.push('\n');
                continue;
            }
            let pad = width - key.chars().count();
            let _ = writeln!(text, "  {key}{}  {value}", " ".repeat(pad));
        }

        let checks = self.checks();
        let what = checks
            .iter()
            .map(|c| c.what.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(text, "\nTargets (conditions {})", self.conditions());
        for c in &checks {
            let mark = match c.met {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            };
            let pad = what - c.what.chars().count();
            let _ = writeln!(
                text,
                "  {mark} {}{}  {:<12} target {}",
                c.what,
                " ".repeat(pad),
                c.shown,
                c.goal
            );
        }
        let _ = writeln!(
            text,
            "  · validate + route + map per referral: see `cargo bench --bench mapping` \
             and `cargo bench --bench validation` (not measured here)"
        );
        text
    }
}
