//! The run: baseline, then Signpost in this process or its own, measured.

#[allow(unused_imports)]
use crate::*;

pub(crate) async fn run(
    args: &Args,
    db: &Database,
    startup: Result<Startup, String>,
) -> anyhow::Result<Report> {
    let ticks = clock_ticks();
    let bodies = Arc::new(Bodies::load(args.bars)?);
    // Tokens are made up front, so both phases use the same client; they
    // are stored once Signpost's database exists.
    let referrer = signpost::security::tokens::issue(&signpost::security::tokens::Role::Referrer(
        REFERRER.parse().expect("the kit's referrer id is valid"),
    ));
    let monitor = signpost::security::tokens::issue(&signpost::security::tokens::Role::Monitor);

    eprintln!("baseline: minimal axum handler (read body, answer 201)");
    let baseline = run_baseline(args, &http_client(&referrer.token)?, &bodies, ticks).await?;

    eprintln!("signpost: {}", db.backend);
    // From here the peak RSS is Signpost's phase (the baseline's memory,
    // mostly freed, may stay in the allocator: a few MB).
    let peak_reset = reset_peak_rss();
    let received = Arc::new(Mutex::new(Received::default()));
    let stand_ins = start_stand_ins(&received).await?;
    let mut config = configure(&db.url, &stand_ins)?;
    if let Some(concurrency) = args.delivery_concurrency {
        config.delivery.concurrency = concurrency;
    }
    let settings = format!(
        "concurrency {}, poll {:?}, database_max_connections {}",
        config.delivery.concurrency, config.delivery.poll_interval, config.database_max_connections
    );
    let serving = if args.process {
        let extra = args.delivery_concurrency.map_or(String::new(), |c| {
            format!("[delivery]\nconcurrency = {c}\n")
        });
        Serving::Process(Box::new(
            SignpostProcess::start(&stand_ins, &extra, Some(&db.url)).await?,
        ))
    } else {
        let app = Application::build(config).await?;
        let addr = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Serving::InProcess { addr, stop, server }
    };
    let base = format!("http://{}", serving.addr());
    let (url, expect) = if args.bars {
        (format!("{base}/fhir/$process-message"), Expect::BarsMessage)
    } else {
        (format!("{base}/fhir/ServiceRequest"), Expect::Referral)
    };
    let store = signpost::store::open(&db.url, 1).await?;
    store.insert_token(referrer.row).await?;
    store.insert_token(monitor.row).await?;
    drop(store);
    let client = http_client(&referrer.token)?;
    let metrics_client = http_client(&monitor.token)?;
    let metrics_url = format!("{base}/metrics");

    let load = Load {
        run: args.run,
        clients: args.clients,
        rate: args.rate,
    };
    let warmup = drive(
        &client,
        &url,
        &bodies,
        Load {
            run: Run::Count(args.warmup),
            ..load
        },
        expect,
        &ProgressBar::hidden(),
    )
    .await;
    await_deliveries(
        &received,
        &warmup.created,
        0,
        args.timeout,
        &ProgressBar::hidden(),
    )
    .await;
    if !warmup.refused.is_empty() {
        anyhow::bail!(
            "warm-up referrals refused (status: count): {:?}",
            warmup.refused
        );
    }
    let before = received.lock().expect("receiver lock").referrals.len();
    let metrics_before = ServerTimes::scrape(&metrics_client, &metrics_url).await;

    let bar = intake_progress("signpost", load);
    let pid = serving.pid();
    let mark = Mark::now(ticks, pid);
    let sampler = RssSampler::start(pid);
    let intake = drive(&client, &url, &bodies, load, expect, &bar).await;
    bar.finish_and_clear();
    let bar = progress("delivered", Some(intake.created.len() as u64), "referrals");
    await_deliveries(&received, &intake.created, before, args.timeout, &bar).await;
    bar.finish_and_clear();
    let (cpu_s, wall_s) = mark.since();
    let resources = Resources {
        scope: serving.scope(),
        peak_rss_mb: status_mb(pid, "VmHWM:"),
        rss_mb: status_mb(pid, "VmRSS:"),
        peak_reset: args.process || peak_reset,
        samples: sampler.stop().await,
        cpu_s,
        wall_s,
    };
    let server_times = match (
        metrics_before,
        ServerTimes::scrape(&metrics_client, &metrics_url).await,
    ) {
        (Ok(before), Ok(after)) => after.means_since(&before),
        (Err(e), _) | (_, Err(e)) => json!({ "unavailable": format!("{e:#}") }),
    };

    serving.stop().await;

    let received = received.lock().expect("receiver lock");
    Ok(Report::new(Context {
        args,
        db,
        settings,
        body_bytes: bodies.mean_size(),
        intake: &intake,
        received: &received,
        baseline,
        resources,
        startup,
        server_times,
    }))
}

/// Where the Signpost under test runs.
pub(crate) enum Serving {
    /// In this process (the default).
    InProcess {
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    },
    /// `signpost serve` as its own process (`--process`).
    Process(Box<SignpostProcess>),
}

impl Serving {
    pub(crate) fn addr(&self) -> SocketAddr {
        match self {
            Serving::InProcess { addr, .. } => *addr,
            Serving::Process(process) => process.listen,
        }
    }

    /// The process whose memory and CPU are measured (`/proc/<pid>`).
    pub(crate) fn pid(&self) -> &str {
        match self {
            Serving::InProcess { .. } => "self",
            Serving::Process(process) => &process.pid,
        }
    }

    pub(crate) fn scope(&self) -> &'static str {
        match self {
            Serving::InProcess { .. } => RSS_SCOPE,
            Serving::Process(_) => PROCESS_SCOPE,
        }
    }

    pub(crate) async fn stop(self) {
        match self {
            Serving::InProcess { stop, server, .. } => {
                let _ = stop.send(());
                let _ = tokio::time::timeout(Duration::from_secs(40), server).await;
            }
            Serving::Process(process) => {
                if let Err(e) = process.stop().await {
                    eprintln!("stopping signpost serve: {e:#}");
                }
            }
        }
    }
}

/// `VmRSS` of the measured process once a second, from the first measured
/// POST to the last receipt: whether memory grows over a long run.
pub(crate) struct RssSampler {
    pub(crate) samples: Arc<Mutex<Vec<(f64, f64)>>>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub(crate) fn start(pid: &str) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (pid, into) = (pid.to_owned(), samples.clone());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                if let Some(mb) = status_mb(&pid, "VmRSS:") {
                    let at = started.elapsed().as_secs_f64();
                    into.lock().expect("sampler lock").push((at, mb));
                }
            }
        });
        RssSampler { samples, task }
    }

    /// (seconds since the start, MB) pairs.
    pub(crate) async fn stop(self) -> Vec<(f64, f64)> {
        self.task.abort();
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().expect("sampler lock"))
    }
}
