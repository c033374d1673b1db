//! The database going away, hanging or being locked: valid credentials are
//! never refused for it (`503` with `Retry-After`, not `401`), and
//! readiness turns `503` within seconds and stays so while it lasts.

use std::time::{Duration, Instant};

use crate::{
    on_both_backends,
    support::{
        helpers::{Backend, TestApp, TestDb},
        proxy::Proxy,
    },
};

/// The PostgreSQL server the test database lives on (`host:port`).
fn server_of(url: &str) -> String {
    let url = url::Url::parse(url).unwrap();
    format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432))
}

/// A Signpost on a fresh database which, on PostgreSQL, it reaches
/// through a [`Proxy`] the test controls.
async fn app_behind_proxy(backend: Backend) -> (TestApp, Option<Proxy>) {
    let db = TestDb::fresh(backend).await;
    let proxy = match backend {
        Backend::Postgres => Some(Proxy::start(&server_of(&db.url)).await),
        Backend::Sqlite => None,
    };
    let through = proxy.as_ref().map(|p| p.url_for(&db.url));
    let app = TestApp::spawn_on(db, |config| {
        // (An unreachable server answers 503 after this, not 10 s.)
        config.database.acquire_timeout = Duration::from_secs(1);
        if let Some(url) = through {
            config.database_url = url;
        }
    })
    .await;
    (app, proxy)
}

async fn a_database_outage_answers_503_not_401_to_a_valid_token(backend: Backend) {
    let (app, proxy) = app_behind_proxy(backend).await;
    let path = "/fhir/ServiceRequest/no-such-referral";
    assert_eq!(app.get(path).await.status(), 404, "the token is good");

    match &proxy {
        // The database server becomes unreachable.
        Some(proxy) => proxy.cut(),
        // SQLite has no server to lose: the token table becoming
        // unreadable is the nearest failure of the token lookup.
        None => {
            use sqlx::Connection;
            let mut conn = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
            sqlx::query("ALTER TABLE api_tokens RENAME TO api_tokens_away")
                .execute(&mut conn)
                .await
                .unwrap();
        }
    }
    for _ in 0..3 {
        let response = app.get(path).await;
        assert_eq!(
            response.status(),
            503,
            "a valid token is not refused for an outage"
        );
        assert!(
            response.headers().get("retry-after").is_some(),
            "503 says when to retry"
        );
        assert!(response.headers().get("www-authenticate").is_none());
    }
    // A wrong token is still refused as one only when the store can say so:
    // during the outage nothing can be said of it either way, so it is 503
    // too, never a 401 the client would take as final.
    let wrong = crate::support::helpers::client_with("sp_0123456789abcdef_wrong")
        .get(app.url(path))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 503);
    drop(proxy);
}

/// `/health/ready` on a database that stops answering: `503` within the
/// readiness timeout, on every probe while the stall lasts, and `200`
/// again after.
async fn readiness_turns_503_within_seconds_through_a_database_stall(backend: Backend) {
    if backend == Backend::Sqlite {
        return; // (a stall of a remote server: PostgreSQL only)
    }
    let (app, proxy) = app_behind_proxy(backend).await;
    let proxy = proxy.unwrap();
    let probe = reqwest::Client::builder()
        .timeout(Duration::from_secs(8))
        .build()
        .unwrap();
    let ready = || async {
        let started = Instant::now();
        let response = probe
            .get(app.url("/health/ready"))
            .send()
            .await
            .expect("readiness answers while the database hangs");
        (response.status(), started.elapsed())
    };
    assert_eq!(ready().await.0, 200);
    proxy.stall();
    for _ in 0..3 {
        let (status, took) = ready().await;
        assert_eq!(status, 503, "not ready while the database hangs");
        assert!(took < Duration::from_secs(4), "answered in {took:?}");
    }
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    while ready().await.0 != 200 {
        assert!(Instant::now() < deadline, "ready again after the stall");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A session holding a lock that intake would wait on (here `SHARE` on
/// `referrals`, which every insert waits behind) makes readiness `503`
/// and say that the database is waiting for a lock.
async fn readiness_shows_a_lock_that_intake_waits_on(backend: Backend) {
    if backend == Backend::Sqlite {
        return; // (SQLite's single write lock is probed already)
    }
    let app = TestApp::spawn(backend).await;
    assert_eq!(
        app.anonymous
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    use sqlx::Connection;
    let mut holder = sqlx::PgConnection::connect(&app.db.url).await.unwrap();
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("LOCK TABLE referrals IN SHARE MODE")
        .execute(&mut holder)
        .await
        .unwrap();
    let response = app
        .anonymous
        .get(app.url("/health/ready"))
        .timeout(Duration::from_secs(8))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["checks"]["database"], "waiting for a lock", "{body}");
    sqlx::query("ROLLBACK").execute(&mut holder).await.unwrap();
    let response = app
        .anonymous
        .get(app.url("/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

on_both_backends!(
    a_database_outage_answers_503_not_401_to_a_valid_token,
    readiness_turns_503_within_seconds_through_a_database_stall,
    readiness_shows_a_lock_that_intake_waits_on,
);
