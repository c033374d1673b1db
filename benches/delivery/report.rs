//! The report: the summaries and the targets' checks (printed by `table`,
//! written by `results_json`).

#[allow(unused_imports)]
use crate::*;

#[derive(Default)]
pub(crate) struct Errors {
    pub(crate) refused: BTreeMap<u16, usize>,
    pub(crate) bad_signatures: usize,
    pub(crate) unreadable: usize,
    pub(crate) misrouted: usize,
    pub(crate) missing: usize,
}

impl Errors {
    pub(crate) fn total(&self) -> usize {
        self.refused.values().sum::<usize>()
            + self.bad_signatures
            + self.unreadable
            + self.misrouted
            + self.missing
    }
}

/// p50, p90, p99 and max of some milliseconds (nearest rank).
pub(crate) struct Spread {
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) max: f64,
}

impl Spread {
    pub(crate) fn of(mut ms: Vec<f64>) -> Option<Spread> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank =
            |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Spread {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
        })
    }

    /// POST → `201` of each accepted request.
    pub(crate) fn of_intake(intake: &Intake) -> Option<Spread> {
        Spread::of(
            intake
                .created
                .iter()
                .map(|c| signed_ms(c.sent, c.created))
                .collect(),
        )
    }

    pub(crate) fn line(spread: &Option<Spread>) -> String {
        match spread {
            Some(s) => format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                s.p50, s.p90, s.p99, s.max
            ),
            None => "-".into(),
        }
    }

    pub(crate) fn json(spread: &Option<Spread>) -> Value {
        match spread {
            Some(s) => json!({
                "p50": round(s.p50, 2), "p90": round(s.p90, 2),
                "p99": round(s.p99, 2), "max": round(s.max, 2),
            }),
            None => Value::Null,
        }
    }

    /// One percentile as a JSON number (null without samples).
    pub(crate) fn pick(spread: &Option<Spread>, which: fn(&Spread) -> f64) -> Option<f64> {
        spread.as_ref().map(|s| round(which(s), 2))
    }
}

/// What the Signpost phase cost the measured process: the whole bench
/// process, or with `--process` the `signpost serve` process alone.
pub(crate) struct Resources {
    pub(crate) scope: &'static str,
    /// `VmHWM` since just before Signpost started (or since the process
    /// started, when the reset failed).
    pub(crate) peak_rss_mb: Option<f64>,
    /// `VmRSS` at the end.
    pub(crate) rss_mb: Option<f64>,
    pub(crate) peak_reset: bool,
    /// `VmRSS` once a second: (seconds, MB).
    pub(crate) samples: Vec<(f64, f64)>,
    /// First measured POST to last receipt.
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
}

impl Resources {
    /// RSS at the last sample over RSS a minute into the run (once the
    /// caches, pools and buffers have grown to the load), in per cent;
    /// `None` for runs shorter than two minutes.
    pub(crate) fn growth_pct(&self) -> Option<f64> {
        let (last_at, last) = *self.samples.last()?;
        if last_at < 120.0 {
            return None;
        }
        let (_, settled) = *self.samples.iter().find(|(at, _)| *at >= 60.0)?;
        Some((last - settled) / settled * 100.0)
    }

    /// Every tenth sample: (seconds, MB), for the JSON.
    pub(crate) fn thinned(&self) -> Vec<Value> {
        self.samples
            .iter()
            .step_by(10)
            .map(|(at, mb)| json!([round(*at, 0), round(*mb, 1)]))
            .collect()
    }
}

/// Intake as the clients saw it, for either phase.
pub(crate) struct IntakeSummary {
    pub(crate) accepted: usize,
    /// First POST to last `201`, in seconds.
    pub(crate) wall_s: f64,
    pub(crate) latency_ms: Option<Spread>,
}

impl IntakeSummary {
    pub(crate) fn of(intake: &Intake) -> IntakeSummary {
        let first_sent = intake.created.iter().map(|c| c.sent).min();
        let last_created = intake.created.iter().map(|c| c.created).max();
        IntakeSummary {
            accepted: intake.created.len(),
            wall_s: match (first_sent, last_created) {
                (Some(from), Some(to)) => seconds(from, to),
                _ => 0.0,
            },
            latency_ms: Spread::of_intake(intake),
        }
    }

    pub(crate) fn per_s(&self) -> f64 {
        per_second(self.accepted, self.wall_s)
    }
}

/// The baseline phase, summarised.
pub(crate) struct Baseline {
    pub(crate) summary: IntakeSummary,
    pub(crate) refused: BTreeMap<u16, usize>,
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
}

impl Baseline {
    pub(crate) fn refused(&self) -> usize {
        self.refused.values().sum()
    }
}

/// Everything a report is made from.
pub(crate) struct Context<'a> {
    pub(crate) args: &'a Args,
    pub(crate) db: &'a Database,
    pub(crate) settings: String,
    pub(crate) body_bytes: usize,
    pub(crate) intake: &'a Intake,
    pub(crate) received: &'a Received,
    pub(crate) baseline: Phase,
    pub(crate) resources: Resources,
    pub(crate) startup: Result<Startup, String>,
    pub(crate) server_times: Value,
}

pub(crate) struct Report {
    pub(crate) sent: usize,
    /// BaRS messages to `$process-message` (`--bars`).
    pub(crate) bars: bool,
    pub(crate) run: Run,
    pub(crate) clients: usize,
    pub(crate) rate: Option<f64>,
    pub(crate) warmup: usize,
    pub(crate) body_bytes: usize,
    pub(crate) backend: String,
    pub(crate) durability: String,
    pub(crate) durable: bool,
    pub(crate) settings: String,
    pub(crate) cpus: usize,
    pub(crate) cpu_model: String,
    pub(crate) mem_total_mb: Option<f64>,
    pub(crate) commit: Option<String>,
    pub(crate) intake: IntakeSummary,
    /// First `201` to last receipt, in seconds.
    pub(crate) created_to_last_receipt_s: f64,
    /// First receipt to last receipt, in seconds.
    pub(crate) receipts_span_s: f64,
    /// Receipts from the first `201` to the last, and the time between.
    pub(crate) during_intake: (usize, f64),
    /// Receipts after the last `201`, and the time from it to the last
    /// receipt.
    pub(crate) after_intake: (usize, f64),
    pub(crate) delivered: usize,
    pub(crate) latency_ms: Option<Spread>,
    /// Receipts noted before the client saw the `201` head.
    pub(crate) early: usize,
    pub(crate) duplicates: usize,
    pub(crate) notifications: usize,
    pub(crate) errors: Errors,
    pub(crate) baseline: Baseline,
    pub(crate) resources: Resources,
    pub(crate) startup: Result<Startup, String>,
    pub(crate) server_times: Value,
}

pub(crate) fn seconds(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// `to - from` in milliseconds, negative when `to` came first.
pub(crate) fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -(from - to).as_secs_f64() * 1000.0
    }
}

pub(crate) fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

pub(crate) fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// One of the targets, as measured.
pub(crate) struct Check {
    pub(crate) what: &'static str,
    pub(crate) goal: String,
    pub(crate) value: Option<f64>,
    pub(crate) shown: String,
    pub(crate) met: Option<bool>,
}

impl Report {
    pub(crate) fn new(cx: Context) -> Report {
        let Context {
            args,
            db,
            intake,
            received,
            ..
        } = cx;
        let mut errors = Errors {
            refused: intake.refused.clone(),
            bad_signatures: received.bad_signatures,
            unreadable: received.unreadable,
            ..Errors::default()
        };
        let mut latencies = Vec::new();
        let mut arrivals = Vec::new();
        for c in &intake.created {
            match received.referrals.get(&c.referral_id) {
                None => errors.missing += 1,
                Some(arrival) => {
                    if arrival.provider != c.provider {
                        errors.misrouted += 1;
                    }
                    latencies.push(signed_ms(c.created, arrival.at));
                    arrivals.push(arrival.at);
                }
            }
        }
        let first_created = intake.created.iter().map(|c| c.created).min();
        let last_created = intake.created.iter().map(|c| c.created).max();
        let first_receipt = arrivals.iter().min().copied();
        let last_receipt = arrivals.iter().max().copied();
        let span = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => seconds(from, to),
            _ => 0.0,
        };
        Report {
            sent: intake.created.len() + intake.refused(),
            bars: args.bars,
            run: args.run,
            clients: args.clients,
            rate: args.rate,
            warmup: args.warmup,
            body_bytes: cx.body_bytes,
            backend: db.backend.clone(),
            durability: db.durability.clone(),
            durable: db.durable(),
            settings: cx.settings,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            mem_total_mb: mem_total_mb(),
            commit: commit(),
            intake: IntakeSummary::of(intake),
            created_to_last_receipt_s: span(first_created, last_receipt),
            receipts_span_s: span(first_receipt, last_receipt),
            during_intake: (
                arrivals
                    .iter()
                    .filter(|at| Some(**at) <= last_created)
                    .count(),
                span(first_created, last_created),
            ),
            after_intake: (
                arrivals
                    .iter()
                    .filter(|at| Some(**at) > last_created)
                    .count(),
                span(last_created, last_receipt),
            ),
            delivered: arrivals.len(),
            early: latencies.iter().filter(|ms| **ms < 0.0).count(),
            latency_ms: Spread::of(latencies),
            duplicates: received.duplicates,
            notifications: received.notifications,
            errors,
            baseline: Baseline {
                summary: IntakeSummary::of(&cx.baseline.intake),
                refused: cx.baseline.intake.refused.clone(),
                cpu_s: cx.baseline.cpu_s,
                wall_s: cx.baseline.wall_s,
            },
            resources: cx.resources,
            startup: cx.startup,
            server_times: cx.server_times,
        }
    }

    pub(crate) fn accepted_per_s(&self) -> f64 {
        self.intake.per_s()
    }

    pub(crate) fn deliveries_per_s(&self) -> f64 {
        per_second(self.delivered, self.created_to_last_receipt_s)
    }

    /// Signpost's intake rate as a share of the baseline's.
    pub(crate) fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.summary.per_s();
        (baseline > 0.0).then(|| self.accepted_per_s() / baseline)
    }

    /// Each target, its goal, the measured value and whether it is met.
    pub(crate) fn checks(&self) -> Vec<Check> {
        let at_most = |what, goal: f64, unit: &str, value: Option<f64>| Check {
            what,
            goal: format!("≤ {goal} {unit}"),
            value,
            shown: value.map_or("-".into(), |v| format!("{v:.1} {unit}")),
            met: value.map(|v| v <= goal),
        };
        let at_least = |what, goal: f64, unit: &str, value: Option<f64>| Check {
            what,
            goal: format!("≥ {goal} {unit}"),
            value,
            shown: value.map_or("-".into(), |v| format!("{v:.1} {unit}")),
            met: value.map(|v| v >= goal),
        };
        let intake_p99 = Spread::pick(&self.intake.latency_ms, |s| s.p99);
        let delivery_p50 = Spread::pick(&self.latency_ms, |s| s.p50);
        let delivery_p99 = Spread::pick(&self.latency_ms, |s| s.p99);
        let startup = self.startup.as_ref().ok();
        let mut checks = vec![
            at_least(
                "intake ÷ baseline",
                target::RATIO * 100.0,
                "%",
                self.ratio().map(|r| r * 100.0),
            ),
            at_least(
                "accepted referrals/s",
                target::ACCEPTED_PER_S,
                "/s",
                Some(self.accepted_per_s()),
            ),
            at_most("intake p99", target::INTAKE_P99_MS, "ms", intake_p99),
            at_most(
                "201 → receipt p50",
                target::DELIVERY_P50_MS,
                "ms",
                delivery_p50,
            ),
            at_most(
                "201 → receipt p99",
                target::DELIVERY_P99_MS,
                "ms",
                delivery_p99,
            ),
            at_most(
                if self.resources.scope == PROCESS_SCOPE {
                    "peak RSS (signpost serve)"
                } else {
                    "peak RSS (bench process)"
                },
                target::PEAK_RSS_MB,
                "MB",
                self.resources.peak_rss_mb,
            ),
            at_most(
                "idle RSS (signpost serve)",
                target::IDLE_RSS_MB,
                "MB",
                startup.map(|s| s.idle_rss_mb),
            ),
            at_most(
                "start-up to ready",
                target::STARTUP_MS,
                "ms",
                startup.map(|s| s.ready_ms),
            ),
        ];
        // BaRS's non-functional requirement for a receiver's synchronous
        // answer: 90 % within 2.1 s, all within 5 s.
        if self.bars {
            checks.push(at_most(
                "BaRS: $process-message p90",
                target::BARS_P90_MS,
                "ms",
                Spread::pick(&self.intake.latency_ms, |s| s.p90),
            ));
            checks.push(at_most(
                "BaRS: $process-message max",
                target::BARS_MAX_MS,
                "ms",
                Spread::pick(&self.intake.latency_ms, |s| s.max),
            ));
        }
        // Memory growth is Signpost's own only when it runs apart.
        if self.resources.scope == PROCESS_SCOPE {
            checks.push(at_most(
                "RSS growth over the run",
                target::RSS_GROWTH_PCT,
                "%",
                self.resources.growth_pct(),
            ));
        }
        checks
    }

    /// How this run differs from the targets' conditions, if it does.
    pub(crate) fn conditions(&self) -> String {
        let mut notes = Vec::new();
        if self.clients != target::CLIENTS {
            notes.push(format!("{} clients, not {}", self.clients, target::CLIENTS));
        }
        if self.rate.is_some() {
            notes.push("rate-limited clients: the ratio to the baseline means little".into());
        }
        if !self.durable {
            notes.push(format!("commits not fsync-durable ({})", self.durability));
        }
        if notes.is_empty() {
            format!(
                "as the targets assume: {} clients, {} CPUs shared with the load generator, \
                 fsync-durable commits ({})",
                self.clients, self.cpus, self.durability
            )
        } else {
            format!("differ from the targets': {}", notes.join("; "))
        }
    }
}

pub(crate) fn status_counts(counts: &BTreeMap<u16, usize>) -> serde_json::Map<String, Value> {
    counts
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect()
}

/// The CPU's model name, from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The machine's memory, from `/proc/meminfo`, in MB (MiB).
pub(crate) fn mem_total_mb() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The checked-out commit, marked when the work tree has changes.
pub(crate) fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(MANIFEST_DIR)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{head} (work tree modified)")
    } else {
        head
    })
}
