//! Retention and erasure: delivered payloads are purged after the
//! retention period, and erasing a patient leaves nothing of them in the
//! database files, only tombstones and an audit record.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE},
    support::helpers::{Backend, MANIFEST_DIR, json},
};

/// Patient A (erased) and patient B (kept), as in the fixtures.
const A_NHS: &str = "9990124833";
const A_NAME: &str = "Fairbrother";
const B_NHS: &str = "9993270415";
const B_NAME: &str = "Marsden";

/// Every file under `dir`, read whole.
fn file_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(file_contents(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
    found
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn an_erased_patient_leaves_no_trace_in_the_database_files(backend: Backend) {
    let fleet = Fleet::start_with(backend, |config| {
        config.database.reclaim_interval = std::time::Duration::from_millis(200);
    })
    .await;
    if backend == Backend::Postgres {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&fleet.app.db.url)
            .await
            .unwrap();
        store_uncompressed(&mut conn).await;
    }
    let a = fleet.refer("activelives-exercise.json").await;
    let b = fleet.refer("community-connect-loneliness.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    fleet
        .provider("community-connect")
        .wait_for(1, PATIENCE)
        .await;
    let declined = json!({"referral_ref": a, "event": "declined", "event_time": "2026-03-04T11:40:00Z",
                          "detail": "Fairbrother declined: resting BP too high"});
    assert_eq!(
        fleet
            .callback("activelives", "e1", &declined)
            .await
            .status(),
        200
    );
    fleet.referrer.wait_for(1, PATIENCE).await;

    // A's number with a wrong check digit is no NHS number: refused, and
    // nothing is erased.
    for bad in [
        json!({"nhs_number": "9990124832"}),
        json!({"nhs_number": "999012483"}),
        json!({}),
    ] {
        let response = fleet
            .app
            .admin
            .post(fleet.app.url("/admin/erase"))
            .body(bad.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let outcome = json(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{bad}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .is_some_and(|d| d.contains("nhs_number")),
            "{outcome}"
        );
    }
    let kept = json(fleet.app.get(&format!("/fhir/ServiceRequest/{a}")).await).await;
    assert!(kept.to_string().contains(A_NAME), "{kept}");

    let response = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/erase"))
        .body(json!({"nhs_number": A_NHS}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await["erased"],
        json!([format!("ServiceRequest/{a}")])
    );

    // What is served is a tombstone; the other patient is untouched.
    let tombstone = json(fleet.app.get(&format!("/fhir/ServiceRequest/{a}")).await).await;
    assert_eq!(tombstone["status"], "entered-in-error");
    assert_eq!(tombstone["meta"]["tag"][0]["code"], "erased");
    let task = fleet.task(&a).await;
    assert_eq!(task["meta"]["tag"][0]["code"], "erased");
    assert!(!task.to_string().contains(A_NAME));
    let kept = json(fleet.app.get(&format!("/fhir/ServiceRequest/{b}")).await).await;
    assert!(kept.to_string().contains(B_NAME));
    // The erasure is on the audit trail, without the NHS number.
    let trail = json(fleet.app.get("/admin/audit?limit=1000").await).await;
    let erase = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "erase patient")
        .expect("the erasure is audited")
        .clone();
    assert!(erase["outcome"].as_str().unwrap().contains(&a));
    assert!(!trail.to_string().contains(A_NHS));

    // Nothing of patient A is left in the database's files.
    let Fleet { app, .. } = fleet;
    let url = app.db.url.clone();
    match backend {
        Backend::Sqlite => {
            let db = app.stop().await;
            let file = db.url.trim_start_matches("sqlite://").to_owned();
            let files = file_contents(Path::new(&file).parent().unwrap());
            assert!(
                files.iter().any(|(_, bytes)| holds(bytes, B_NHS)),
                "the scan sees data"
            );
            for (path, bytes) in &files {
                for needle in [A_NHS, A_NAME, "resting BP too high"] {
                    assert!(!holds(bytes, needle), "{needle} is still in {path}");
                }
            }
        }
        Backend::Postgres => {
            // What PostgreSQL holds, by its own page inspection (the table
            // files hold compressed copies a byte scan cannot see, and the
            // free space of pages bytes no query returns: see the README).
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
                .execute(&mut conn)
                .await
                .unwrap();
            assert!(
                !copies_of(&mut conn, B_NHS).await.is_empty(),
                "the checks see data"
            );
            forgotten(&mut conn, &[A_NHS, A_NAME, "resting BP too high"]).await;
            drop(app);
        }
    }
}

/// Wait (bounded) until nothing of `needles` is left (see [`copies_of`]).
async fn forgotten(conn: &mut sqlx::PgConnection, needles: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let mut left = Vec::new();
        for needle in needles {
            left.extend(copies_of(&mut *conn, needle).await);
        }
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still held after 20 s: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

async fn delivered_payloads_are_purged_after_the_retention_period(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "r1", &booked).await.status(),
        200
    );
    fleet.referrer.wait_for(1, PATIENCE).await;
    fleet.settled(&id).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["purge", "--days", "0"])
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", &fleet.app.db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");

    let listed = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={id}"))
            .await,
    )
    .await;
    for message in listed["messages"].as_array().unwrap() {
        let shown = json(
            fleet
                .app
                .get(&format!(
                    "/admin/deliveries/{}",
                    message["id"].as_str().unwrap()
                ))
                .await,
        )
        .await;
        assert_eq!(shown["state"], "delivered", "ids and states stay");
        assert_eq!(
            shown["payload"],
            Value::String(String::new()),
            "the payload is purged: {shown}"
        );
        assert!(
            shown["attempt_log"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["response_excerpt"].is_null())
        );
    }
    let callbacks = json(fleet.app.get("/admin/callbacks").await).await;
    assert_eq!(callbacks["callbacks"][0]["body"], "");
    // The referral itself is kept (it is the clinical record of the referral).
    let referral = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert!(referral.to_string().contains(A_NAME));
}

/// Text columns that may hold patient data. The PostgreSQL tests store
/// them uncompressed (`SET STORAGE EXTERNAL`: out of line in TOAST when
/// long, never compressed), so that every copy of a value, live or dead,
/// in a table or its TOAST table, can be found in the page items.
const PATIENT_COLUMNS: [(&str, &str); 8] = [
    ("referrals", "resource"),
    ("tasks", "resource"),
    ("task_events", "reason"),
    ("outbox", "payload"),
    ("outbox", "last_error"),
    ("delivery_attempts", "response_excerpt"),
    ("delivery_attempts", "error"),
    ("inbound_events", "body"),
];
const PATIENT_TABLES: [&str; 6] = [
    "referrals",
    "tasks",
    "task_events",
    "outbox",
    "delivery_attempts",
    "inbound_events",
];

async fn store_uncompressed(conn: &mut sqlx::PgConnection) {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pageinspect")
        .execute(&mut *conn)
        .await
        .unwrap();
    for (table, column) in PATIENT_COLUMNS {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} ALTER COLUMN {column} SET STORAGE EXTERNAL"
        )))
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

/// Where `needle` is held, as PostgreSQL's own page inspection sees it:
/// every row version (live, dead, or dead but still visible to an older
/// transaction) in the patient tables and their TOAST tables, every entry
/// of the NHS-number index, and the planner's statistics.
async fn copies_of(conn: &mut sqlx::PgConnection, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in PATIENT_TABLES {
        let (toast,): (String,) = sqlx::query_as(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        for relation in [table.to_owned(), toast] {
            // (xmin and xmax tell a live version from a dead one.)
            let versions: Vec<(String,)> = sqlx::query_as(
                "SELECT format('page %s item %s xmin %s xmax %s', page, lp, t_xmin, t_xmax) \
                 FROM generate_series(0, \
                   (pg_relation_size($1::regclass) / current_setting('block_size')::int)::int - 1) AS page, \
                   heap_page_items(get_raw_page($1, page)) \
                 WHERE t_data IS NOT NULL AND position(convert_to($2, 'UTF8') IN t_data) > 0",
            )
            .bind(&relation)
            .bind(needle)
            .fetch_all(&mut *conn)
            .await
            .unwrap();
            if !versions.is_empty() {
                let versions: Vec<String> = versions.into_iter().map(|v| v.0).collect();
                found.push(format!("{table} ({relation}): {}", versions.join(", ")));
            }
        }
    }
    // Index entries (page 0 is the B-tree's metapage), dead ones included.
    let hex: Vec<String> = needle.bytes().map(|b| format!("{b:02x}")).collect();
    let (entries,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM generate_series(1, \
           (pg_relation_size('referrals_by_nhs_number') / current_setting('block_size')::int)::int - 1) AS page, \
           bt_page_items(get_raw_page('referrals_by_nhs_number', page)) \
         WHERE data LIKE '%' || $1 || '%'",
    )
    .bind(hex.join(" "))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    if entries > 0 {
        found.push(format!("{entries} entries in referrals_by_nhs_number"));
    }
    let (stats,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_stats WHERE schemaname = 'public' \
           AND (most_common_vals::text LIKE '%' || $1 || '%' \
             OR histogram_bounds::text LIKE '%' || $1 || '%')",
    )
    .bind(needle)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    if stats > 0 {
        found.push(format!("{stats} column(s) of pg_stats"));
    }
    found
}

/// Finding 1 and 4 of the second hardening review, on two instances
/// sharing one PostgreSQL database: an erasure while an older transaction
/// holds a snapshot and a lock on `referrals` (as a running `pg_dump`
/// does) neither stops intake on either instance nor claims more than it
/// did; what it could not yet do (old row versions that transaction can
/// still see) it finishes on its own once that transaction ends, leaving
/// no copy in any row version, TOAST chunk, index entry or statistic.
async fn an_erasure_on_postgres_keeps_intake_open_and_finishes_its_reclaim_itself(
    backend: Backend,
) {
    if backend == Backend::Sqlite {
        return; // (SQLite: the test above)
    }
    use sqlx::Connection;
    let db = crate::support::helpers::TestDb::fresh(backend).await;
    let url = db.url.clone();
    let mut inspect = sqlx::PgConnection::connect(&url).await.unwrap();
    let (providers, referrer) = crate::support::fleet::receivers().await;
    let reclaim_often = |config: &mut signpost::config::Config| {
        config.database.reclaim_interval = std::time::Duration::from_millis(200);
    };
    let fleet = Fleet::start_on(db, providers, referrer, reclaim_often).await;
    store_uncompressed(&mut inspect).await;
    let second = crate::support::helpers::TestApp::spawn_on(
        crate::support::helpers::TestDb::shared(&url),
        |config| {
            crate::support::fleet::fast_delivery(config);
            crate::support::fleet::aim(config, &fleet.providers, &fleet.referrer);
            reclaim_often(config);
        },
    )
    .await;

    let a = fleet.refer("activelives-exercise.json").await;
    fleet.refer("community-connect-loneliness.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    let declined = json!({"referral_ref": a, "event": "declined", "event_time": "2026-03-04T11:40:00Z",
                          "detail": "Fairbrother declined: resting BP too high"});
    assert_eq!(
        fleet
            .callback("activelives", "e1", &declined)
            .await
            .status(),
        200
    );
    fleet.referrer.wait_for(1, PATIENCE).await;
    fleet.settled(&a).await;
    sqlx::query("ANALYZE").execute(&mut inspect).await.unwrap();
    let before = copies_of(&mut inspect, A_NHS).await;
    assert!(
        before.iter().any(|c| c.contains("pg_stats")),
        "the checks see statistics: {before:?}"
    );

    // An older transaction: a snapshot, and the lock a reader (pg_dump)
    // holds on `referrals`.
    let mut older = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut older)
        .await
        .unwrap();
    sqlx::query("SELECT count(*) FROM referrals")
        .execute(&mut older)
        .await
        .unwrap();

    let admin = fleet.app.admin.clone();
    let erase_url = fleet.app.url("/admin/erase");
    let erasure = tokio::spawn(async move {
        admin
            .post(erase_url)
            .body(json!({"nhs_number": A_NHS}).to_string())
            .timeout(std::time::Duration::from_secs(60))
            .send()
            .await
    });
    // Both instances keep taking referrals while it runs.
    let started = std::time::Instant::now();
    let mut accepted = 0;
    while !erasure.is_finished() || accepted < 4 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "the erasure is still running after 20 s"
        );
        for app in [&fleet.app, &second] {
            let (referral, _) = crate::support::helpers::with_new_identifier(
                crate::support::helpers::valid("community-connect-loneliness.json"),
            );
            let response = app
                .client
                .post(app.url("/fhir/ServiceRequest"))
                .header("content-type", "application/fhir+json")
                .body(referral.to_string())
                .timeout(std::time::Duration::from_secs(5))
                .send()
                .await;
            match response {
                Ok(r) => assert_eq!(r.status(), 201, "intake during the erasure"),
                Err(e) => panic!(
                    "intake did not answer within 5 s, {:?} into the erasure: {e}",
                    started.elapsed()
                ),
            }
            accepted += 1;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let response = erasure.await.unwrap().expect("the erasure answers");
    assert_eq!(response.status(), 200);
    let answer = json(response).await;
    assert_eq!(answer["erased"], json!([format!("ServiceRequest/{a}")]));
    // It says what it could not do yet, and the old versions are there.
    assert_eq!(answer["reclaimed"], false, "{answer}");
    assert!(
        answer["pending"]
            .as_str()
            .is_some_and(|p| p.contains("older transaction")),
        "{answer}"
    );
    let held = copies_of(&mut inspect, A_NAME).await;
    assert!(!held.is_empty(), "the checks see dead row versions");
    // Statistics are refreshed at once.
    let stats = copies_of(&mut inspect, A_NHS).await;
    assert!(!stats.iter().any(|c| c.contains("pg_stats")), "{stats:?}");

    // The older transaction ends; nobody re-runs the erasure.
    sqlx::query("ROLLBACK").execute(&mut older).await.unwrap();
    forgotten(&mut inspect, &[A_NHS, A_NAME, "resting BP too high"]).await;
    // ...and marked done (a moment after its VACUUM).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = fleet.app.get_text("/metrics").await;
        if metrics.contains("signpost_erasure_reclaims_pending 0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The other patient is all there.
    assert!(!copies_of(&mut inspect, B_NHS).await.is_empty());
    second.stop().await;
}

/// An admin's erasure cut off by the request timeout (`408`) is audited
/// as that admin's, not as an unauthenticated request.
async fn an_admin_erasure_that_times_out_is_audited_as_the_admin(backend: Backend) {
    use sqlx::Connection;
    let fleet = Fleet::start_with(backend, |config| {
        config.limits.request_timeout = std::time::Duration::from_millis(1500);
    })
    .await;
    let a = fleet.refer("activelives-exercise.json").await;
    fleet.settled(&a).await;
    // Another session holds what the erasure must write.
    let url = fleet.app.db.url.clone();
    let mut pg = None;
    let mut lite = None;
    match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("SELECT id FROM referrals FOR UPDATE")
                .execute(&mut conn)
                .await
                .unwrap();
            pg = Some(conn);
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            lite = Some(conn);
        }
    }
    let response = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/erase"))
        .body(json!({"nhs_number": A_NHS}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 408);
    if let Some(mut conn) = pg {
        sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    }
    if let Some(mut conn) = lite {
        sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let trail = json(fleet.app.get("/admin/audit?limit=1000").await).await;
        let erase = trail["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["action"] == "POST /admin/erase")
            .cloned();
        if let Some(erase) = erase {
            assert_eq!(erase["outcome"], "408", "{erase}");
            assert!(
                erase["actor"].as_str().unwrap().starts_with("admin:token:"),
                "the admin who asked: {erase}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{trail:#}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

on_both_backends!(
    an_erased_patient_leaves_no_trace_in_the_database_files,
    delivered_payloads_are_purged_after_the_retention_period,
    an_erasure_on_postgres_keeps_intake_open_and_finishes_its_reclaim_itself,
    an_admin_erasure_that_times_out_is_audited_as_the_admin,
);
