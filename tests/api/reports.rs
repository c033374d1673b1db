//! Reports: referrals with known journeys, made through the real intake,
//! delivery, signed provider callbacks and referrer cancellations on a
//! stopped clock, give exactly the funnel they should (suppression off);
//! with suppression on, the same figures come out masked and rounded cell
//! by cell; the analyst role reads reports and nothing else.

use std::time::Duration;

use serde_json::{Value, json};
use signpost::{
    domain::{Clock, SystemClock},
    reports::suppression::Suppression,
    security::tokens::Role,
};

use crate::{
    on_both_backends,
    support::fleet::Fleet,
    support::helpers::{Backend, MANIFEST_DIR, client_with, issue_token, json},
};

const HOUR: Duration = Duration::from_secs(3600);
pub(crate) const GP: &str = "community-connect-loneliness.json"; // GP, female, born 1937
pub(crate) const PARAMEDIC: &str = "community-connect-minimal.json"; // paramedic, male, born 1950

/// A Community Connect status callback.
async fn status(fleet: &Fleet, event: &str, id: &str, status: &str, closure: Option<&str>) {
    let body = json!({"case_id": format!("CC-{id}"), "external_id": id, "status": status,
                      "changed_at": "2026-03-02T11:00:00Z", "closure_reason": closure, "note": null});
    let response = fleet.callback("community-connect", event, &body).await;
    assert_eq!(
        response.status(),
        200,
        "{event}: {}",
        response.text().await.unwrap()
    );
}

/// The referrer changes its referral's status (revoked, entered-in-error).
pub(crate) async fn withdraw(fleet: &Fleet, id: &str, to: &str) {
    let response = fleet
        .app
        .client
        .patch(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(json!([{"op": "replace", "path": "/status", "value": to}]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Eight referrals, each journey on its own stretch of the stopped clock:
/// each starts at the system's time (receivers refuse a signature
/// timestamp hours from theirs), and moves the clock on for the provider's
/// callbacks. Returns the period's `from` and `to` (dates), and the
/// referrals' ids.
async fn seed(fleet: &Fleet) -> (String, String, Vec<String>) {
    let app = &fleet.app;
    let from = app.now().to_string()[..10].to_owned();
    let refer = |fixture: &'static str| async move {
        app.set_now(SystemClock.now());
        fleet.refer(fixture).await
    };
    // 1 (GP): delivered at once, contact after 2 h, engaged after 26 h,
    // completed after 74 h.
    let r1 = refer(GP).await;
    app.deliver_due().await;
    app.advance(2 * HOUR);
    status(fleet, "e1", &r1, "OPEN", None).await;
    app.advance(24 * HOUR);
    status(fleet, "e2", &r1, "CONTACTED", None).await;
    app.advance(48 * HOUR);
    status(fleet, "e3", &r1, "CLOSED", Some("GOALS_MET")).await;
    // 2 (GP): contact after 5 h, then the person declines.
    let r2 = refer(GP).await;
    app.deliver_due().await;
    app.advance(5 * HOUR);
    status(fleet, "e4", &r2, "OPEN", None).await;
    app.advance(10 * HOUR);
    status(fleet, "e5", &r2, "CLOSED", Some("DECLINED_BY_PERSON")).await;
    // 3 (paramedic): not eligible, closed by the provider unopened.
    let r3 = refer(PARAMEDIC).await;
    app.deliver_due().await;
    app.advance(HOUR);
    status(fleet, "e6", &r3, "CLOSED", Some("NOT_ELIGIBLE")).await;
    // 4 (GP): contact after 1 h, then could not be reached.
    let r4 = refer(GP).await;
    app.deliver_due().await;
    app.advance(HOUR);
    status(fleet, "e7", &r4, "OPEN", None).await;
    app.advance(HOUR);
    status(fleet, "e8", &r4, "CLOSED", Some("UNABLE_TO_CONTACT")).await;
    // 5 (GP): the referrer cancels it.
    let r5 = refer(GP).await;
    app.deliver_due().await;
    app.advance(HOUR);
    withdraw(fleet, &r5, "revoked").await;
    // 6 (GP): the referrer marks it entered in error.
    let r6 = refer(GP).await;
    app.deliver_due().await;
    withdraw(fleet, &r6, "entered-in-error").await;
    // 7 (paramedic): accepted after 3 h, still open.
    let r7 = refer(PARAMEDIC).await;
    app.deliver_due().await;
    app.advance(3 * HOUR);
    status(fleet, "e9", &r7, "OPEN", None).await;
    // 8 (paramedic): not yet delivered.
    let r8 = refer(PARAMEDIC).await;
    let to = app.now().after(Duration::from_secs(86_400)).to_string()[..10].to_owned();
    (from, to, vec![r1, r2, r3, r4, r5, r6, r7, r8])
}

pub(crate) async fn csv(
    client: &reqwest::Client,
    fleet: &Fleet,
    query: &str,
) -> (String, Vec<Vec<String>>) {
    let response = client
        .get(fleet.app.url(&format!("/reports/funnel.csv?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let mut lines = text.lines();
    let first = lines.next().unwrap().to_owned();
    (
        first,
        lines
            .map(|l| l.split(',').map(str::to_owned).collect())
            .collect(),
    )
}

/// Row `key` of a CSV (by the cells after `from,to`), as name → cell.
pub(crate) fn row<'a>(rows: &'a [Vec<String>], key: &[&str]) -> Vec<(&'a str, &'a str)> {
    let header = &rows[0];
    let found = rows[1..]
        .iter()
        .find(|r| {
            r[2..2 + key.len()]
                .iter()
                .map(String::as_str)
                .eq(key.iter().copied())
        })
        .unwrap_or_else(|| panic!("no row {key:?} in {rows:?}"));
    header
        .iter()
        .map(String::as_str)
        .zip(found.iter().map(String::as_str))
        .collect()
}

pub(crate) fn cells<'a>(row: &[(&'a str, &'a str)], names: &[&str]) -> Vec<&'a str> {
    names
        .iter()
        .map(|n| {
            row.iter()
                .find(|(h, _)| h == n)
                .unwrap_or_else(|| panic!("no {n}"))
                .1
        })
        .collect()
}

const COUNTS: &[&str] = &[
    "referred",
    "delivered",
    "contacted",
    "engaged",
    "completed",
    "declined",
    "rejected",
    "revoked",
    "entered_in_error",
    "failed",
    "open",
    "escalated",
];
const TIMES: &[&str] = &[
    "median_hours_to_delivery",
    "p90_hours_to_delivery",
    "median_hours_to_contact",
    "p90_hours_to_contact",
    "median_hours_to_engagement",
    "p90_hours_to_engagement",
    "median_hours_to_completion",
    "p90_hours_to_completion",
];

async fn every_count_branch_and_time_is_exact_without_suppression(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |config| {
        config.report_suppression = Suppression::None;
    })
    .await;
    let (from, to, ids) = seed(&fleet).await;
    let admin = &fleet.app.admin;
    let (first, rows) = csv(admin, &fleet, &format!("from={from}&to={to}&by=profession")).await;
    assert!(first.starts_with("# suppression=none"), "{first}");
    let gp = row(&rows, &["gp"]);
    // 5 referred, all delivered; 1, 2, 4 reached contact; 1 engaged and
    // completed; 2 declined; 5 revoked; 6 entered in error; 4 failed.
    assert_eq!(
        cells(&gp, COUNTS),
        ["5", "5", "3", "1", "1", "1", "0", "1", "1", "1", "0", "0"]
    );
    // Delivery at once (0 h) for all five; contact 2, 5, 1 h: median (2nd
    // of 3) 2, p90 (3rd) 5; engagement and completion from one referral.
    assert_eq!(
        cells(&gp, TIMES),
        ["0", "0", "2", "5", "26", "26", "74", "74"]
    );
    let paramedic = row(&rows, &["paramedic"]);
    // 3 referred, 2 delivered (8 not yet), 7 reached contact; 3 rejected
    // (not eligible), 7 and 8 open.
    assert_eq!(
        cells(&paramedic, COUNTS),
        ["3", "2", "1", "0", "0", "0", "1", "0", "0", "0", "2", "0"]
    );
    assert_eq!(
        cells(&paramedic, TIMES),
        ["0", "0", "3", "3", "", "", "", ""]
    );
    let all = row(&rows, &["all"]);
    assert_eq!(
        cells(&all, COUNTS),
        ["8", "7", "4", "1", "1", "1", "1", "1", "1", "1", "2", "0"]
    );
    // Contact 1, 2, 3, 5 h: median the 2nd (2), p90 the 4th (5).
    assert_eq!(
        cells(&all, TIMES),
        ["0", "0", "2", "5", "26", "26", "74", "74"]
    );

    // The strata read from the Patient and the PractitionerRole.
    let (_, rows) = csv(
        admin,
        &fleet,
        &format!("from={from}&to={to}&by=provider,age_band,sex,scheme"),
    )
    .await;
    let stratum = row(
        &rows,
        &["community-connect", "85+", "female", "871731000000106"],
    );
    assert_eq!(cells(&stratum, &["referred"]), ["5"]);
    let stratum = row(
        &rows,
        &["community-connect", "75-84", "male", "871731000000106"],
    );
    assert_eq!(cells(&stratum, &["referred"]), ["3"]);

    // A period before the referrals holds none.
    let (_, rows) = csv(admin, &fleet, "from=2020-01-01&to=2020-12-31").await;
    assert_eq!(cells(&row(&rows, &[]), &["referred"]), ["0"]);

    // The Task carries the codes GP systems count: every referral's, and
    // the declined one where the person declined (referral 2 is the 2nd).
    let mut tasks = Vec::new();
    for id in &ids {
        tasks.push(fleet.task(id).await);
    }
    assert!(
        tasks
            .iter()
            .all(|t| t["reasonCode"]["coding"][0]["code"] == "871731000000106")
    );
    let declined: Vec<&Value> = tasks
        .iter()
        .filter(|t| t["statusReason"]["coding"][0]["code"] == "871711000000103")
        .collect();
    assert_eq!(
        tasks[1]["statusReason"]["coding"][0]["code"],
        "871711000000103"
    );
    assert_eq!(declined.len(), 1);
    assert_eq!(declined[0]["statusReason"]["text"], "declined by person");
}

async fn with_suppression_each_cell_is_masked_or_rounded(backend: Backend) {
    // The configured "none" is the admin's: the analyst gets "nhs".
    let fleet = Fleet::start_stepped(backend, |config| {
        config.report_suppression = Suppression::None;
    })
    .await;
    let (from, to, _) = seed(&fleet).await;
    let analyst = client_with(&issue_token(&fleet.app.db.url, Role::Analyst).await);
    let (first, rows) = csv(
        &analyst,
        &fleet,
        &format!("from={from}&to={to}&by=profession"),
    )
    .await;
    assert!(first.starts_with("# suppression=nhs"), "{first}");
    // Every count of 1-7 masked, zeros kept; only the total row's 8 is
    // published, rounded to 10. No ending sum or column has a lone mask
    // (each has 0 or at least 2), so secondary suppression adds nothing
    // here; times are withheld (fewer than 10 people each).
    let gp = row(&rows, &["gp"]);
    assert_eq!(
        cells(&gp, COUNTS),
        ["*", "*", "*", "*", "*", "*", "0", "*", "*", "*", "0", "0"]
    );
    assert_eq!(cells(&gp, TIMES), ["*", "*", "*", "*", "*", "*", "*", "*"]);
    let all = row(&rows, &["all"]);
    assert_eq!(
        cells(&all, COUNTS),
        ["10", "*", "*", "*", "*", "*", "*", "*", "*", "*", "*", "0"]
    );
    let paramedic = row(&rows, &["paramedic"]);
    // Rejected (1) and open (2) are masked; the other endings are 0, so
    // rows and columns each hold two masks or none.
    assert_eq!(
        cells(&paramedic, COUNTS),
        ["*", "*", "*", "0", "0", "0", "*", "0", "0", "0", "*", "0"]
    );
}

async fn fhir_measure_reports_pass_the_r4_schema_with_masked_cells(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let (from, to, _) = seed(&fleet).await;
    let analyst = client_with(&issue_token(&fleet.app.db.url, Role::Analyst).await);
    let validator =
        signpost::validation::Validator::load(&std::path::Path::new(MANIFEST_DIR).join("schemas"))
            .unwrap();
    let get = |path: String| {
        let analyst = analyst.clone();
        let url = fleet.app.url(&path);
        async move {
            let response = analyst.get(url).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            json(response).await
        }
    };
    let measure = get("/fhir/Measure/signpost-referral-funnel".into()).await;
    assert_eq!(validator.check_structure(&measure), vec![]);
    let report = get(format!(
        "/fhir/Measure/signpost-referral-funnel/$evaluate-measure?periodStart={from}&periodEnd={to}&stratifier=profession"
    ))
    .await;
    assert_eq!(validator.check_structure(&report), vec![], "{report}");
    assert_eq!(report["type"], "summary");
    let funnel = &report["group"][0];
    // Total referred 8 -> 10; delivered 7 masked.
    assert_eq!(funnel["population"][0]["count"], 10);
    assert_eq!(
        funnel["population"][1]["_count"]["extension"][0],
        json!({"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"})
    );
    let search = get(format!(
        "/fhir/MeasureReport?measure=https://signpost.example/fhir/Measure/signpost-referral-funnel&period=ge{from}&period=le{to}&stratifier=provider,profession"
    ))
    .await;
    assert_eq!(validator.check_structure(&search), vec![], "{search}");
    let stratum = &search["entry"][0]["resource"]["group"][0]["stratifier"][0]["stratum"][0];
    assert_eq!(stratum["component"][0]["code"]["text"], "provider");
}

/// The declined and rejected branches by reason (`by=reason`): the code on
/// the Task's statusReason where it is coded (the person declined:
/// 871711000000103), `other` where not (not eligible); `none` for every
/// other ending and for the open ones.
async fn declined_and_rejected_referrals_are_broken_down_by_reason(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |config| {
        config.report_suppression = Suppression::None;
    })
    .await;
    let (from, to, _) = seed(&fleet).await;
    let (_, rows) = csv(
        &fleet.app.admin,
        &fleet,
        &format!("from={from}&to={to}&by=reason"),
    )
    .await;
    let names = ["referred", "declined", "rejected"];
    assert_eq!(
        cells(&row(&rows, &["871711000000103"]), &names),
        ["1", "1", "0"]
    );
    assert_eq!(cells(&row(&rows, &["other"]), &names), ["1", "0", "1"]);
    assert_eq!(cells(&row(&rows, &["none"]), &names), ["6", "0", "0"]);
    assert_eq!(rows.len(), 1 + 3 + 1, "header, three reasons, total");
}

/// Every route the router serves, with a method: the analyst is refused
/// all but the reports, and the reports refuse referrers and monitors.
async fn the_analyst_reads_reports_and_nothing_else(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer(GP).await;
    let analyst = client_with(&issue_token(&fleet.app.db.url, Role::Analyst).await);
    let monitor = client_with(&issue_token(&fleet.app.db.url, Role::Monitor).await);
    let reports = [
        "/reports/funnel.csv?from=2026-01-01&to=2026-12-31",
        "/reports/funnel.json?from=2026-01-01&to=2026-12-31",
        "/fhir/Measure/signpost-referral-funnel",
        "/fhir/Measure/signpost-referral-funnel/$evaluate-measure?periodStart=2026-01-01&periodEnd=2026-12-31",
        "/fhir/MeasureReport?measure=signpost-referral-funnel&period=ge2026-01-01&period=le2026-12-31",
    ];
    for path in reports {
        let response = analyst.get(fleet.app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "analyst GET {path}");
        for (who, client) in [("referrer", &fleet.app.client), ("monitor", &monitor)] {
            let response = client.get(fleet.app.url(path)).send().await.unwrap();
            assert_eq!(response.status(), 403, "{who} GET {path}");
        }
    }
    // Every other route, as the router declares it (read from src/http):
    // the analyst is refused (403) on each method of each, but for the
    // open ones (metadata, health) and the providers' signed callbacks.
    let routes = declared_routes();
    assert!(routes.len() >= 25, "the route table was read: {routes:?}");
    for (method, path) in &routes {
        let path = path
            .replace("{id}", &id)
            .replace("{provider_id}", "community-connect")
            .replace('{', "x")
            .replace('}', "");
        // Open to anyone (conformance resources, health): the analyst's
        // token must get no more than no token does.
        let open = path == "/fhir/metadata"
            || path.starts_with("/fhir/MessageDefinition")
            || path.starts_with("/health/");
        let send = |client: &reqwest::Client| {
            client
                .request(method.parse().unwrap(), fleet.app.url(&path))
                .header("content-type", "application/fhir+json")
                .body("{}")
                .send()
        };
        let response = send(&analyst).await.unwrap();
        let expected = match () {
            _ if open => send(&fleet.app.anonymous).await.unwrap().status().as_u16(),
            _ if path.starts_with("/providers/") => 401,
            _ => 403,
        };
        assert_eq!(
            response.status().as_u16(),
            expected,
            "analyst {method} {path}"
        );
    }
}

/// Every (method, path) the HTTP layer routes with a literal path: each
/// `.route("path", get(..).post(..))` of its files, with the prefix each
/// router is mounted at.
fn declared_routes() -> Vec<(String, String)> {
    let route = regex::Regex::new(
        r#"\.route\(\s*"([^"]+)",\s*((?:get|post|put|patch|delete)\([^)]*\)(?:\s*\.(?:get|post|put|patch|delete)\([^)]*\))*)"#,
    )
    .unwrap();
    let method = regex::Regex::new(r"(get|post|put|patch|delete)\(").unwrap();
    let mut routes = Vec::new();
    for (file, prefix) in [
        ("src/http/fhir/mod.rs", "/fhir"),
        ("src/http/admin.rs", "/admin"),
        ("src/http/metrics.rs", ""),
        ("src/http/health.rs", ""),
        ("src/http/callbacks.rs", ""),
    ] {
        let text = std::fs::read_to_string(std::path::Path::new(MANIFEST_DIR).join(file)).unwrap();
        for found in route.captures_iter(&text) {
            let path = format!("{prefix}{}", &found[1])
                .trim_end_matches('/')
                .to_owned();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            for m in method.captures_iter(&found[2]) {
                routes.push((m[1].to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

on_both_backends!(
    every_count_branch_and_time_is_exact_without_suppression,
    with_suppression_each_cell_is_masked_or_rounded,
    fhir_measure_reports_pass_the_r4_schema_with_masked_cells,
    the_analyst_reads_reports_and_nothing_else,
    declined_and_rejected_referrals_are_broken_down_by_reason,
);
