//! The baseline: the same clients against a handler that does nothing.

#[allow(unused_imports)]
use crate::*;

/// A phase's intake and what it cost the process.
pub(crate) struct Phase {
    pub(crate) intake: Intake,
    pub(crate) cpu_s: f64,
    pub(crate) wall_s: f64,
}

pub(crate) async fn run_baseline(
    args: &Args,
    client: &reqwest::Client,
    bodies: &Arc<Bodies>,
    ticks: f64,
) -> anyhow::Result<Phase> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/fhir/ServiceRequest", listener.local_addr()?);
    let app = Router::new().route(
        "/fhir/ServiceRequest",
        axum::routing::post(|_body: Bytes| async { StatusCode::CREATED }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let load = Load {
        run: match args.run {
            Run::For(duration) => Run::For(duration.min(BASELINE_MAX)),
            run => run,
        },
        clients: args.clients,
        rate: args.rate,
    };
    let warmup = Load {
        run: Run::Count(args.warmup),
        ..load
    };
    drive(
        client,
        &url,
        bodies,
        warmup,
        Expect::Created,
        &ProgressBar::hidden(),
    )
    .await;

    let bar = intake_progress("baseline", load);
    let mark = Mark::now(ticks, "self");
    let intake = drive(client, &url, bodies, load, Expect::Created, &bar).await;
    let (cpu_s, wall_s) = mark.since();
    bar.finish_and_clear();

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(Phase {
        intake,
        cpu_s,
        wall_s,
    })
}
