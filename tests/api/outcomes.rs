//! Wellbeing outcomes through the real status callbacks (Community
//! Connect's mapping, `scores` → `outcomes`): stored as R4 Observations on
//! the Task, refused with a 422 naming the item (never its value), and
//! reported per stratum as paired counts and median changes, exact with
//! suppression off and withheld under 10 people with it on.

use std::time::Duration;

use serde_json::{Value, json};
use signpost::{
    domain::{Clock, SystemClock},
    reports::suppression::Suppression,
    security::tokens::Role,
};

use crate::{
    on_both_backends,
    reports::{GP, PARAMEDIC, cells, csv, row},
    support::fleet::Fleet,
    support::helpers::{Backend, MANIFEST_DIR, client_with, issue_token, json},
};

const HOUR: Duration = Duration::from_secs(3600);

fn ons4(when: &str, items: [i64; 4]) -> Value {
    json!({"tool": "ONS4", "when": when, "answers": {
        "life_satisfaction": items[0], "worthwhile": items[1], "happiness": items[2], "anxiety": items[3]}})
}

/// SWEMWBS answers with this raw total (7-35): every item 1, then one more
/// point to each item in turn.
fn swemwbs(when: &str, raw: i64) -> Value {
    let names = [
        "optimistic",
        "useful",
        "relaxed",
        "dealing_with_problems",
        "thinking_clearly",
        "close_to_others",
        "own_mind",
    ];
    let mut items = [1i64; 7];
    for i in 0..usize::try_from(raw - 7).unwrap() {
        items[i % 7] += 1;
    }
    let answers: serde_json::Map<String, Value> = names
        .iter()
        .zip(items)
        .map(|(n, v)| ((*n).to_owned(), json!(v)))
        .collect();
    json!({"tool": "SWEMWBS", "when": when, "answers": answers})
}

async fn send(
    fleet: &Fleet,
    event: &str,
    id: &str,
    status: &str,
    closure: Option<&str>,
    scores: Value,
) -> reqwest::Response {
    let body = json!({"case_id": format!("CC-{id}"), "external_id": id, "status": status,
                      "changed_at": "2026-03-02T11:00:00Z", "closure_reason": closure,
                      "note": null, "scores": scores});
    fleet.callback("community-connect", event, &body).await
}

async fn ok(response: reqwest::Response, what: &str) {
    let status = response.status();
    assert_eq!(status, 200, "{what}: {}", response.text().await.unwrap());
}

async fn outcomes_are_r4_observations_on_the_task_and_bad_scores_are_refused(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |config| {
        config.report_suppression = Suppression::None;
    })
    .await;
    let app = &fleet.app;
    app.set_now(SystemClock.now());
    let from = app.now().to_string()[..10].to_owned();
    let id = fleet.refer(GP).await;
    app.deliver_due().await;
    app.advance(HOUR);
    ok(
        send(
            &fleet,
            "s1",
            &id,
            "OPEN",
            None,
            json!([ons4("START", [4, 5, 3, 8]), swemwbs("START", 14)]),
        )
        .await,
        "start scores",
    )
    .await;
    // An item out of range: refused, naming the item, never the value.
    let response = send(
        &fleet,
        "s2",
        &id,
        "CONTACTED",
        None,
        json!([ons4("END", [4242, 5, 3, 8])]),
    )
    .await;
    assert_eq!(response.status(), 422);
    let body = response.text().await.unwrap();
    assert!(
        body.contains("outcomes[0].items.life_satisfaction"),
        "{body}"
    );
    assert!(!body.contains("4242"), "the value is quoted: {body}");
    // A SWEMWBS item below 1, and one missing: the same.
    let mut bad = swemwbs("END", 20);
    bad["answers"]["relaxed"] = json!(0);
    let response = send(&fleet, "s3", &id, "CONTACTED", None, json!([bad])).await;
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("outcomes[0].items.relaxed")
    );
    let mut missing = swemwbs("END", 20);
    missing["answers"]
        .as_object_mut()
        .unwrap()
        .remove("own_mind");
    let response = send(&fleet, "s4", &id, "CONTACTED", None, json!([missing])).await;
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("outcomes[0].items.own_mind")
    );
    // Nothing of a refused callback reached the Task.
    assert_eq!(fleet.task(&id).await["status"], "accepted");
    ok(
        send(&fleet, "s4b", &id, "CONTACTED", None, Value::Null).await,
        "contacted",
    )
    .await;
    app.advance(HOUR);
    ok(
        send(
            &fleet,
            "s5",
            &id,
            "CLOSED",
            Some("GOALS_MET"),
            json!([ons4("END", [6, 5, 5, 4]), swemwbs("END", 26)]),
        )
        .await,
        "end scores",
    )
    .await;

    let task = fleet.task(&id).await;
    let validator =
        signpost::validation::Validator::load(&std::path::Path::new(MANIFEST_DIR).join("schemas"))
            .unwrap();
    assert_eq!(validator.check_structure(&task), vec![], "{task}");
    let contained = task["contained"].as_array().unwrap();
    assert_eq!(contained.len(), 4);
    for observation in contained {
        assert_eq!(observation["resourceType"], "Observation");
        assert_eq!(
            validator.check_structure(observation),
            vec![],
            "{observation}"
        );
    }
    let outputs: Vec<(&str, &str)> = task["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["type"]["coding"][0]["code"].as_str().unwrap(),
                o["valueReference"]["reference"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outputs,
        [
            ("ons4-start", "#outcome-1"),
            ("swemwbs-start", "#outcome-2"),
            ("ons4-end", "#outcome-3"),
            ("swemwbs-end", "#outcome-4"),
        ]
    );
    // SWEMWBS: raw 14 → 15.32, raw 26 → 23.21 (the conversion table), the
    // SNOMED CT code; ONS4: four components, no summed value.
    assert_eq!(
        contained[1]["code"]["coding"][0]["code"],
        json!("718466001")
    );
    assert_eq!(contained[1]["valueQuantity"]["value"], json!(15.32));
    assert_eq!(contained[3]["valueQuantity"]["value"], json!(23.21));
    assert_eq!(contained[3]["component"][0]["valueInteger"], json!(26));
    assert!(contained[2].get("valueQuantity").is_none());
    let items: Vec<&Value> = contained[2]["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["valueInteger"])
        .collect();
    assert_eq!(items, [&json!(6), &json!(5), &json!(5), &json!(4)]);
    assert_eq!(contained[2]["extension"][0]["valueCode"], "end");

    // Counted as paired until the patient is erased: erasure empties the
    // scores kept for reports too (the referral still counts).
    let to = app.now().after(Duration::from_secs(86_400)).to_string()[..10].to_owned();
    let query = format!("from={from}&to={to}");
    let paired = || async {
        let (_, rows) = csv(&fleet.app.admin, &fleet, &query).await;
        cells(
            &row(&rows, &[]),
            &["referred", "ons4_paired", "swemwbs_paired"],
        )
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>()
    };
    assert_eq!(paired().await, ["1", "1", "1"]);
    let response = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/erase"))
        .body(json!({"nhs_number": "9993270415"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(paired().await, ["1", "0", "0"]);
}

/// Referral `i` of the 12 with paired scores: ONS4 from (4, 5, 3, 8) to
/// (4 + LIFE[i], 5, 6, 8 - i % 3), SWEMWBS from raw 14 to raw 14 + i.
const LIFE: [i64; 12] = [-1, 0, 1, 1, 2, 2, 2, 3, 3, 4, 5, 6];

/// 10 GP referrals and 2 paramedic ones with paired scores, one GP referral
/// with a start score only; the second paramedic referral reports a second
/// start (ignored: the first is the baseline). Returns `from` and `to`.
async fn seed(fleet: &Fleet) -> (String, String) {
    let app = &fleet.app;
    let from = app.now().to_string()[..10].to_owned();
    for (i, life) in LIFE.iter().enumerate() {
        app.set_now(SystemClock.now());
        let id = fleet.refer(if i < 10 { GP } else { PARAMEDIC }).await;
        app.deliver_due().await;
        app.advance(HOUR);
        let n = i64::try_from(i).unwrap();
        ok(
            send(
                fleet,
                &format!("o{i}"),
                &id,
                "OPEN",
                None,
                json!([ons4("START", [4, 5, 3, 8]), swemwbs("START", 14)]),
            )
            .await,
            "start",
        )
        .await;
        let again = if i == 11 {
            json!([ons4("START", [0, 0, 0, 0])])
        } else {
            Value::Null
        };
        ok(
            send(fleet, &format!("p{i}"), &id, "CONTACTED", None, again).await,
            "contacted",
        )
        .await;
        app.advance(HOUR);
        ok(
            send(
                fleet,
                &format!("c{i}"),
                &id,
                "CLOSED",
                Some("GOALS_MET"),
                json!([
                    ons4("END", [4 + life, 5, 6, 8 - n % 3]),
                    swemwbs("END", 14 + n)
                ]),
            )
            .await,
            "end",
        )
        .await;
    }
    app.set_now(SystemClock.now());
    let id = fleet.refer(GP).await;
    app.deliver_due().await;
    ok(
        send(
            fleet,
            "only-start",
            &id,
            "OPEN",
            None,
            json!([ons4("START", [1, 1, 1, 1])]),
        )
        .await,
        "start only",
    )
    .await;
    let to = app.now().after(Duration::from_secs(86_400)).to_string()[..10].to_owned();
    (from, to)
}

const PAIRED: &[&str] = &["ons4_paired", "swemwbs_paired"];
const MEDIANS: &[&str] = &[
    "median_change_ons4_life_satisfaction",
    "median_change_ons4_worthwhile",
    "median_change_ons4_happiness",
    "median_change_ons4_anxiety",
    "median_change_swemwbs",
];

async fn paired_counts_and_median_changes_are_exact_and_withheld_under_ten(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |config| {
        config.report_suppression = Suppression::None;
    })
    .await;
    let (from, to) = seed(&fleet).await;
    let query = format!("from={from}&to={to}&by=profession");
    let (first, rows) = csv(&fleet.app.admin, &fleet, &query).await;
    assert!(first.starts_with("# suppression=none"), "{first}");
    // GP (referrals 0-9): life satisfaction changes -1 0 1 1 2 2 2 3 3 4,
    // the 5th of 10 is 2; worthwhile 0; happiness +3; anxiety 0 -1 -2 0 -1
    // -2 0 -1 -2 0, the 5th is -1; SWEMWBS 15.32 → raw 14..23: changes
    // 0 .52 1.04 1.56 2.11 2.66 3.27 3.93 4.66 5.41, the 5th is 2.11. The
    // 11th GP referral has no end score and is not paired.
    let gp = row(&rows, &["gp"]);
    assert_eq!(cells(&gp, &["referred"]), ["11"]);
    assert_eq!(cells(&gp, PAIRED), ["10", "10"]);
    assert_eq!(cells(&gp, MEDIANS), ["2", "0", "3", "-1", "2.11"]);
    // Paramedic (10, 11): life 5, 6 (the second start of 11 ignored: its
    // change stays 6, not 10); anxiety -1, -2; SWEMWBS 6.22, 7.03.
    let paramedic = row(&rows, &["paramedic"]);
    assert_eq!(cells(&paramedic, PAIRED), ["2", "2"]);
    assert_eq!(cells(&paramedic, MEDIANS), ["5", "0", "3", "-2", "6.22"]);
    // All 12: life -1 0 1 1 2 2 2 3 3 4 5 6, the 6th is 2; anxiety four
    // each of -2, -1, 0, the 6th is -1; SWEMWBS the 6th is 2.66.
    let all = row(&rows, &["all"]);
    assert_eq!(cells(&all, PAIRED), ["12", "12"]);
    assert_eq!(cells(&all, MEDIANS), ["2", "0", "3", "-1", "2.66"]);

    // JSON: the same figures.
    let response = fleet
        .app
        .admin
        .get(fleet.app.url(&format!("/reports/funnel.json?{query}")))
        .send()
        .await
        .unwrap();
    let report = json(response).await;
    assert_eq!(report["total"]["counts"]["ons4_paired"], 12);
    assert_eq!(
        report["total"]["outcomes"]["change_swemwbs"]["median"],
        json!(2.66)
    );

    // The analyst (NHS rule): paired counts masked or rounded, with the
    // column's lone mask partnered (paramedic 2 masked, so GP's 10 too);
    // medians withheld where fewer than 10 people contribute.
    let analyst = client_with(&issue_token(&fleet.app.db.url, Role::Analyst).await);
    let (first, rows) = csv(&analyst, &fleet, &query).await;
    assert!(first.starts_with("# suppression=nhs"), "{first}");
    let gp = row(&rows, &["gp"]);
    assert_eq!(cells(&gp, PAIRED), ["*", "*"]);
    assert_eq!(cells(&gp, MEDIANS), ["2", "0", "3", "-1", "2.11"]);
    let paramedic = row(&rows, &["paramedic"]);
    assert_eq!(cells(&paramedic, PAIRED), ["*", "*"]);
    assert_eq!(cells(&paramedic, MEDIANS), ["*", "*", "*", "*", "*"]);
    let all = row(&rows, &["all"]);
    assert_eq!(cells(&all, PAIRED), ["10", "10"]);
    assert_eq!(cells(&all, MEDIANS), ["2", "0", "3", "-1", "2.66"]);

    // FHIR: the MeasureReport carries them as groups, and stays R4-valid.
    let response = analyst
        .get(fleet.app.url(&format!(
            "/fhir/Measure/signpost-referral-funnel/$evaluate-measure?periodStart={from}&periodEnd={to}&stratifier=profession"
        )))
        .send()
        .await
        .unwrap();
    let report = json(response).await;
    let validator =
        signpost::validation::Validator::load(&std::path::Path::new(MANIFEST_DIR).join("schemas"))
            .unwrap();
    assert_eq!(validator.check_structure(&report), vec![], "{report}");
    let group = report["group"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["code"]["coding"][0]["code"] == "median-change-swemwbs")
        .expect("a SWEMWBS group");
    assert_eq!(group["measureScore"]["value"], json!(2.66));
    let paramedic = group["stratifier"][0]["stratum"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["value"]["text"] == "paramedic")
        .unwrap();
    assert_eq!(
        paramedic["measureScore"]["extension"][0]["valueCode"],
        "masked"
    );
}

/// The portal's "Complete" form takes optional end scores: a wrong answer
/// is refused naming the question (never the answer), nothing changing; a
/// questionnaire left empty is not reported; a full one becomes an
/// Observation on the Task like a callback's.
async fn the_portal_complete_form_takes_optional_end_scores(backend: Backend) {
    use crate::portal::{PASSWORD, Visitor, code_now, new_user};
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let app = &fleet.app;
    let id = fleet.refer("grow-together.bundle.json").await;
    app.deliver_due().await;
    let link = new_user(app, "grow-together", "sam@grow.example").await;
    let mut visitor = Visitor::new(app);
    let secret = visitor.enrol(&link).await;
    app.advance(Duration::from_secs(30));
    let (status, page, _) = visitor
        .sign_in("sam@grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{page}");
    let page = format!("/portal/referrals/{id}");
    let csrf = visitor.csrf(&page).await;
    for action in ["accept", "first-session"] {
        let (status, body, _) = visitor
            .post(&format!("{page}/{action}"), &[("csrf", &csrf)])
            .await;
        assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{action}: {body}");
    }
    let (_, form, _) = visitor.get(&page).await;
    assert!(form.contains("name=\"swemwbs_own_mind\""), "{form}");
    let before = fleet.task(&id).await;
    let mut fields = vec![
        ("csrf", csrf.as_str()),
        ("outcome", "Completed the programme"),
        ("ons4_life_satisfaction", "8"),
        ("ons4_worthwhile", "7"),
        ("ons4_happiness", "77"),
        ("ons4_anxiety", "2"),
    ];
    let (status, body, _) = visitor.post(&format!("{page}/complete"), &fields).await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.contains("how happy did you feel yesterday?"), "{body}");
    assert!(!body.contains("77"), "the answer is quoted: {body}");
    assert_eq!(fleet.task(&id).await, before, "nothing changed");
    fields[4].1 = "7";
    let (status, body, _) = visitor.post(&format!("{page}/complete"), &fields).await;
    assert_eq!(status, reqwest::StatusCode::SEE_OTHER, "{body}");
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "completed");
    // ONS4 only: SWEMWBS was left empty.
    let contained = task["contained"].as_array().unwrap();
    assert_eq!(contained.len(), 1);
    assert_eq!(task["output"][0]["type"]["coding"][0]["code"], "ons4-end");
    let items: Vec<&Value> = contained[0]["component"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["valueInteger"])
        .collect();
    assert_eq!(items, [&json!(8), &json!(7), &json!(7), &json!(2)]);
    let validator =
        signpost::validation::Validator::load(&std::path::Path::new(MANIFEST_DIR).join("schemas"))
            .unwrap();
    assert_eq!(validator.check_structure(&task), vec![], "{task}");
}

on_both_backends!(
    outcomes_are_r4_observations_on_the_task_and_bad_scores_are_refused,
    paired_counts_and_median_changes_are_exact_and_withheld_under_ten,
    the_portal_complete_form_takes_optional_end_scores,
);
