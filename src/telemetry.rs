//! Logging: `RUST_LOG` filters (default `info`), `SIGNPOST_LOG_FORMAT=json`
//! switches to one JSON object per line. Log lines carry ids (request,
//! correlation, referral, referrer), never patient data or bodies.

use tracing_subscriber::{EnvFilter, fmt};

/// Install the global subscriber (once; later calls are ignored).
pub fn init() {
    init_with_default("info,sqlx=warn");
}

/// [`init`], with `default` as the filter when `RUST_LOG` is unset.
pub fn init_with_default(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("SIGNPOST_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
