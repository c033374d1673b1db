//! Measuring a process (CPU, RSS from `/proc`), the real `signpost serve`
//! binary (`--process` and the start-up probe).

#[allow(unused_imports)]
use crate::*;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`).
pub(crate) fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process so far (all threads; `pid` may
/// be `self`).
pub(crate) fn cpu_seconds(ticks: f64, pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| -> f64 {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / ticks
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in MB
/// (MiB, as `ps` and `top` count).
pub(crate) fn status_mb(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Reset this process's peak RSS (`VmHWM`) to its current RSS.
pub(crate) fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU and wall time from a start.
pub(crate) struct Mark {
    pub(crate) ticks: f64,
    pub(crate) pid: String,
    pub(crate) cpu: f64,
    pub(crate) at: Instant,
}

impl Mark {
    pub(crate) fn now(ticks: f64, pid: &str) -> Mark {
        Mark {
            ticks,
            pid: pid.to_owned(),
            cpu: cpu_seconds(ticks, pid),
            at: Instant::now(),
        }
    }

    /// (CPU seconds, wall seconds) since the mark.
    pub(crate) fn since(&self) -> (f64, f64) {
        (
            cpu_seconds(self.ticks, &self.pid) - self.cpu,
            self.at.elapsed().as_secs_f64(),
        )
    }
}

// ---------------------------------------------------------------------------
// The start-up probe: the real binary

pub(crate) struct Startup {
    /// Spawn to the first `200` from `/health/ready`.
    pub(crate) ready_ms: f64,
    /// After idling.
    pub(crate) idle_rss_mb: f64,
    pub(crate) idle_peak_rss_mb: f64,
    pub(crate) idle_s: f64,
    /// `SIGTERM` to exit.
    pub(crate) stop_ms: f64,
    pub(crate) exit: String,
}

/// `signpost serve`, the binary cargo built for this bench, as its own
/// process: for the start-up probe, and for `--process` runs, where its
/// memory and CPU are measured apart from the clients and stand-ins.
pub(crate) struct SignpostProcess {
    pub(crate) child: tokio::process::Child,
    pub(crate) pid: String,
    pub(crate) listen: SocketAddr,
    pub(crate) log_path: PathBuf,
    /// Spawn to the first `200` from `/health/ready`.
    pub(crate) ready_ms: f64,
    /// The configuration, secrets and (SQLite) database live here.
    pub(crate) _dir: tempfile::TempDir,
}

impl SignpostProcess {
    /// Write a configuration like `tests/api/fleet.rs::write_config`
    /// (absolute paths, each endpoint's secret in a file, `extra` TOML
    /// appended), start `signpost serve` on `database_url` (`None`: a new
    /// SQLite file), and wait until `/health/ready` answers `200`.
    pub(crate) async fn start(
        stand_ins: &[StandIn],
        extra: &str,
        database_url: Option<&str>,
    ) -> anyhow::Result<SignpostProcess> {
        let dir = tempfile::tempdir()?;
        let mut config = format!(
            "schemas_dir = \"{MANIFEST_DIR}/schemas\"\nmappings_dir = \"{MANIFEST_DIR}/mappings\"\n\
             [limits]\nrequests_per_second = 1000000.0\nburst = 1000000\n"
        );
        for stand_in in stand_ins {
            let secret = dir.path().join(format!("{}.whsec", stand_in.table));
            std::fs::write(&secret, &stand_in.whsec)?;
            let ods = if stand_in.table.starts_with("referrers.") {
                "ods_codes = [\"A81001\"]\n"
            } else {
                ""
            };
            let _ = write!(
                config,
                "[{}]\n{ods}{} = \"{}\"\nallow_insecure_http = true\nallow_private_network = true\nsecret_file = \"{}\"\n",
                stand_in.table,
                stand_in.url_key,
                stand_in.url,
                secret.display()
            );
        }
        config.push_str(extra);
        let config_path = dir.path().join("signpost.toml");
        std::fs::write(&config_path, config)?;
        let database_url = match database_url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", dir.path().join("signpost.db").display()),
        };
        let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log_path = dir.path().join("signpost.log");
        let log = std::fs::File::create(&log_path)?;
        let poll = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let ready_url = format!("http://{listen}/health/ready");
        let spawned = Instant::now();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env(ENV_LISTEN, listen.to_string())
            .env(ENV_DATABASE_URL, database_url)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("no pid"))?
            .to_string();
        let mut process = SignpostProcess {
            child,
            pid,
            listen,
            log_path,
            ready_ms: f64::NAN,
            _dir: dir,
        };
        loop {
            let ready = poll
                .get(&ready_url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                break;
            }
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!(
                    "signpost serve exited ({status}) before ready:\n{}",
                    process.log_tail()
                );
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "signpost serve not ready after 60 s:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        process.ready_ms = spawned.elapsed().as_secs_f64() * 1000.0;
        Ok(process)
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `SIGTERM`, then wait for the exit: (milliseconds, exit status).
    pub(crate) async fn stop(mut self) -> anyhow::Result<(f64, String)> {
        let stopping = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid])
            .status()?;
        let exit = match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => status?.to_string(),
            Err(_) => {
                self.child.kill().await?;
                "did not exit within 20 s of SIGTERM (killed)".into()
            }
        };
        Ok((stopping.elapsed().as_secs_f64() * 1000.0, exit))
    }
}

/// Start `signpost serve` on a fresh SQLite database, its endpoints on a
/// closed port (nothing is sent), time it to ready, read its RSS after
/// `idle`, stop it with `SIGTERM`.
pub(crate) async fn probe_startup(idle: Duration) -> anyhow::Result<Startup> {
    let stand_ins = REFERRAL_ID_AT
        .iter()
        .map(|(id, _)| (format!("providers.{id}"), "intake_url"))
        .chain([(format!("referrers.{REFERRER}"), "callback_url")])
        .map(|(table, url_key)| {
            Ok(StandIn {
                url: Url::parse(&format!("http://127.0.0.1:9/{table}"))?,
                table,
                url_key,
                whsec: Secret::generate().to_whsec(),
                _server: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let process = SignpostProcess::start(&stand_ins, "", None).await?;
    tokio::time::sleep(idle).await;
    let rss = status_mb(&process.pid, "VmRSS:");
    let peak = status_mb(&process.pid, "VmHWM:");
    let ready_ms = process.ready_ms;
    let pid = process.pid.clone();
    let (stop_ms, exit) = process.stop().await?;
    Ok(Startup {
        ready_ms,
        idle_rss_mb: rss.ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?,
        idle_peak_rss_mb: peak.unwrap_or(f64::NAN),
        idle_s: idle.as_secs_f64(),
        stop_ms,
        exit,
    })
}
