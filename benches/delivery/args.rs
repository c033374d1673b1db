//! The bench's arguments (`--n`, `--clients`, `--postgres`, …).

#[allow(unused_imports)]
use crate::*;

pub(crate) const USAGE: &str = "usage: cargo bench --bench delivery -- [--n N | --duration SECS] [--clients C] \
    [--warmup W] [--rate R] [--delivery-concurrency K] [--timeout SECS] [--postgres [URL]] \
    [--process] [--bars] [--json FILE]";

/// How long the clients send.
#[derive(Clone, Copy)]
pub(crate) enum Run {
    /// This many requests in all.
    Count(usize),
    /// Until this long after the first.
    For(Duration),
}

pub(crate) struct Args {
    pub(crate) run: Run,
    pub(crate) clients: usize,
    pub(crate) warmup: usize,
    /// Referrals/s to send at most, in all clients together.
    pub(crate) rate: Option<f64>,
    /// `[delivery] concurrency`, when not the default.
    pub(crate) delivery_concurrency: Option<usize>,
    pub(crate) timeout: Duration,
    /// The PostgreSQL server to create the database on; SQLite when `None`.
    pub(crate) postgres: Option<String>,
    pub(crate) json: Option<PathBuf>,
    /// Run Signpost as its own process (`signpost serve`), so that RSS and
    /// CPU are its own.
    pub(crate) process: bool,
    /// Send BaRS messages to `$process-message` instead of ServiceRequests.
    pub(crate) bars: bool,
    /// How long the real binary idles before its RSS is read.
    pub(crate) idle: Duration,
}

pub(crate) fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).peekable();
    let mut n = None;
    let mut duration = None;
    let mut parsed = Args {
        run: Run::Count(20_000),
        clients: target::CLIENTS,
        warmup: 200,
        rate: None,
        delivery_concurrency: None,
        timeout: Duration::from_secs(120),
        postgres: None,
        json: None,
        process: false,
        bars: false,
        idle: Duration::from_secs(2),
    };
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let mut benchmarking = false;
    let number = |flag: &str, value: Option<String>| -> Result<usize, String> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} takes a number\n{USAGE}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => benchmarking = true,
            "--n" => n = Some(number("--n", args.next())?),
            "--duration" => {
                let secs: f64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or(format!("--duration takes a number of seconds\n{USAGE}"))?;
                duration = Some(Duration::from_secs_f64(secs));
            }
            "--process" => parsed.process = true,
            "--bars" => parsed.bars = true,
            "--clients" => parsed.clients = number("--clients", args.next())?,
            "--warmup" => parsed.warmup = number("--warmup", args.next())?,
            "--rate" => parsed.rate = Some(number("--rate", args.next())? as f64),
            "--delivery-concurrency" => {
                parsed.delivery_concurrency =
                    Some(number("--delivery-concurrency", args.next())?.max(1));
            }
            "--timeout" => {
                parsed.timeout = Duration::from_secs(number("--timeout", args.next())? as u64);
            }
            "--json" => {
                parsed.json = Some(
                    args.next()
                        .ok_or(format!("--json takes a file\n{USAGE}"))?
                        .into(),
                );
            }
            "--postgres" => {
                let url = match args.peek() {
                    Some(next) if !next.starts_with("--") => args.next().unwrap_or_default(),
                    _ => DEFAULT_POSTGRES.to_owned(),
                };
                parsed.postgres = Some(url);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    parsed.run = match (n, duration, benchmarking) {
        (Some(_), Some(_), _) => return Err(format!("--n or --duration, not both\n{USAGE}")),
        (Some(n), None, _) => Run::Count(n),
        (None, Some(duration), _) => Run::For(duration),
        (None, None, true) => parsed.run,
        // The smoke run of `cargo test --benches`.
        (None, None, false) => {
            parsed.warmup = parsed.warmup.min(5);
            parsed.idle = Duration::from_millis(300);
            Run::Count(20)
        }
    };
    if matches!(parsed.run, Run::Count(0)) || parsed.clients == 0 || parsed.rate == Some(0.0) {
        return Err(format!(
            "--n, --clients and --rate must be at least 1\n{USAGE}"
        ));
    }
    Ok(parsed)
}
