//! The portal in a real browser (headless Debian chromium through
//! chromedriver, see `support::browser`), the way a provider's volunteer
//! uses it: enrolment, sign-in (wrong password, wrong code, throttling),
//! accepting, declining and completing referrals with the referrer's
//! receiver getting each signed notification, session expiry, a forged
//! form refused, another provider's referral refused, an escalation to a
//! clinician raised and its answer seen. axe-core checks every
//! page for WCAG 2.2 AA; each page also fits a phone's width. On SQLite
//! (the HTTP-level checks in `portal.rs` run on both backends).

use std::time::Duration;

use crate::{
    portal::{PASSWORD, code_now, new_user},
    support::{browser::Browser, fleet::Fleet, helpers::Backend},
};

/// Check the page in the browser: accessible at desktop width and at a
/// phone's (320 CSS pixels, WCAG's reflow width), with nothing sideways.
async fn check_page(browser: &Browser) {
    browser.assert_accessible().await;
    browser.resize(320, 800).await;
    let too_wide = browser.too_wide().await;
    assert!(
        too_wide.is_empty(),
        "{} does not fit a phone's width: {too_wide:?}",
        browser.title().await
    );
    browser.assert_accessible().await;
    browser.resize(1280, 1000).await;
}

/// Enrol from the link in the browser: returns the TOTP secret as shown.
async fn enrol(fleet: &Fleet, browser: &Browser, email: &str) -> String {
    let app = &fleet.app;
    let link = new_user(app, "grow-together", email).await;
    browser.goto(&app.url(&link)).await;
    assert!(browser.title().await.starts_with("Set up your account"));
    check_page(browser).await;
    let secret = browser.text_of("totp-secret").await.replace(' ', "");
    // Too short a password, and no code: both said, the page still good.
    browser.fill("Password", "short").await;
    browser.fill("Confirm password", "short").await;
    browser.press("Set up account").await;
    assert!(browser.title().await.starts_with("Error: "));
    assert!(browser.text().await.contains("at least 12 characters"));
    check_page(browser).await;
    browser.fill("Password", PASSWORD).await;
    browser.fill("Confirm password", PASSWORD).await;
    browser.fill("Security code", &code_now(app, &secret)).await;
    browser.press("Set up account").await;
    assert!(
        browser.text().await.contains("Your account is set up"),
        "{}",
        browser.text().await
    );
    check_page(browser).await;
    secret
}

async fn sign_in(browser: &Browser, fleet: &Fleet, email: &str, password: &str, code: &str) {
    browser.goto(&fleet.app.url("/portal/sign-in")).await;
    browser.fill("Email address", email).await;
    browser.fill("Password", password).await;
    browser.fill("Security code", code).await;
    browser.press("Sign in").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_enrols_signs_in_and_answers_referrals() {
    let Some(browser) = Browser::start("answers-referrals").await else {
        return;
    };
    let fleet = Fleet::start_stepped(Backend::Sqlite, |_| {}).await;
    let app = &fleet.app;
    let accepted = fleet.refer("grow-together.bundle.json").await;
    let declined = fleet.refer("grow-together-performer-ref.json").await;
    let theirs = fleet.refer("activelives-exercise.json").await;
    app.deliver_due().await;

    let secret = enrol(&fleet, &browser, "sam@grow.example").await;
    app.advance(Duration::from_secs(30));

    // Wrong password, then wrong code: refused, and said so accessibly.
    sign_in(
        &browser,
        &fleet,
        "sam@grow.example",
        "not my password",
        &code_now(app, &secret),
    )
    .await;
    assert!(browser.text().await.contains("is not right"));
    check_page(&browser).await;
    sign_in(&browser, &fleet, "sam@grow.example", PASSWORD, "123456").await;
    assert!(browser.text().await.contains("is not right"));
    sign_in(
        &browser,
        &fleet,
        "sam@grow.example",
        PASSWORD,
        &code_now(app, &secret),
    )
    .await;
    assert!(browser.current_url().await.ends_with("/portal/referrals"));
    check_page(&browser).await;
    let list = browser.text().await;
    assert!(list.contains("New: 2"), "{list}");
    assert!(
        list.contains("Tomasz Nowak") || list.contains("Referral"),
        "{list}"
    );

    // A search by reference finds just that one.
    browser
        .fill("Search by name, NHS number or reference", &declined)
        .await;
    browser.press("Search").await;
    check_page(&browser).await;
    let rows = browser
        .script(
            "return document.querySelectorAll('tbody tr').length",
            serde_json::json!([]),
        )
        .await;
    assert_eq!(rows, 1, "{}", browser.text().await);

    // Open the first and accept it: the referrer is told, signed.
    browser
        .goto(&app.url(&format!("/portal/referrals/{accepted}")))
        .await;
    check_page(&browser).await;
    assert!(browser.has_button("Accept").await);
    assert!(browser.has_button("Decline").await);
    assert!(
        !browser.has_button("Complete").await,
        "not offered before acceptance"
    );
    browser.press("Accept").await;
    assert!(browser.text().await.contains("Accepted"));
    check_page(&browser).await;
    for button in [
        "Record contact",
        "Record first session",
        "Put on hold",
        "Complete",
        "Add note",
    ] {
        assert!(
            browser.has_button(button).await,
            "{button} offered once accepted"
        );
    }
    browser.choose("Reached them").await;
    browser.press("Record contact").await;
    browser.press("Record first session").await;
    browser.fill("Note", "Started on the raised beds").await;
    browser.press("Add note").await;
    browser.choose("Completed the programme").await;
    browser.press("Complete").await;
    let page = browser.text().await;
    assert!(page.contains("Completed"), "{page}");
    assert!(page.contains("Started on the raised beds"), "{page}");
    check_page(&browser).await;
    assert!(!browser.has_button("Accept").await, "nothing more to do");

    // Decline the second, with a reason from the list and some words.
    browser
        .goto(&app.url(&format!("/portal/referrals/{declined}")))
        .await;
    browser.choose("No capacity at the moment").await;
    browser
        .fill("More about why (optional)", "Full until spring")
        .await;
    browser.press("Decline").await;
    assert!(browser.text().await.contains("Declined"));
    check_page(&browser).await;

    app.deliver_due().await;
    let notifications = fleet.referrer.delivered();
    assert!(notifications.iter().all(|n| n.signature_valid));
    let bodies: Vec<String> = notifications.iter().map(|n| n.body.to_string()).collect();
    for told in [
        "\"accepted\"",
        "\"completed\"",
        "\"rejected\"",
        "Full until spring",
    ] {
        assert!(
            bodies.iter().any(|b| b.contains(told)),
            "the referrer was told {told}"
        );
    }
    assert_eq!(fleet.task(&declined).await["status"], "rejected");

    // Another provider's referral: not found, nothing shown.
    browser
        .goto(&app.url(&format!("/portal/referrals/{theirs}")))
        .await;
    assert!(browser.title().await.starts_with("Referral not found"));
    assert!(!browser.text().await.contains("Maureen"));
    check_page(&browser).await;

    // A forged form (its CSRF token changed) is refused.
    browser
        .goto(&app.url(&format!("/portal/referrals/{accepted}")))
        .await;
    browser
        .script(
            "document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged')",
            serde_json::json!([]),
        )
        .await;
    browser.press("Sign out").await;
    assert!(
        browser
            .title()
            .await
            .starts_with("This form could not be sent")
    );
    check_page(&browser).await;

    // Idle for 31 minutes: signed out.
    app.advance(Duration::from_secs(31 * 60));
    browser.goto(&app.url("/portal/referrals")).await;
    assert!(browser.current_url().await.ends_with("/portal/sign-in"));
    assert!(browser.title().await.starts_with("Sign in"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_sign_ins_are_throttled() {
    let Some(browser) = Browser::start("throttled").await else {
        return;
    };
    let fleet = Fleet::start_stepped(Backend::Sqlite, |_| {}).await;
    let app = &fleet.app;
    let secret = enrol(&fleet, &browser, "kim@grow.example").await;
    app.advance(Duration::from_secs(30));
    for _ in 0..signpost::portal::throttle::ACCOUNT_FAILURES {
        sign_in(
            &browser,
            &fleet,
            "kim@grow.example",
            "a wrong password",
            "000000",
        )
        .await;
    }
    sign_in(
        &browser,
        &fleet,
        "kim@grow.example",
        PASSWORD,
        &code_now(app, &secret),
    )
    .await;
    assert!(browser.text().await.contains("Too many failed attempts"));
    assert!(browser.current_url().await.ends_with("/portal/sign-in"));
    check_page(&browser).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volunteer_escalates_a_referral_to_a_clinician_and_sees_the_answer() {
    let Some(browser) = Browser::start("escalates-referral").await else {
        return;
    };
    let fleet = Fleet::start_stepped(Backend::Sqlite, |_| {}).await;
    let app = &fleet.app;
    let id = fleet.refer("grow-together.bundle.json").await;
    app.deliver_due().await;
    let secret = enrol(&fleet, &browser, "kim@grow.example").await;
    app.advance(Duration::from_secs(30));
    sign_in(
        &browser,
        &fleet,
        "kim@grow.example",
        PASSWORD,
        &code_now(app, &secret),
    )
    .await;
    browser
        .goto(&app.url(&format!("/portal/referrals/{id}")))
        .await;
    browser.press("Accept").await;
    check_page(&browser).await;

    // Escalate: the page says so, and the referral is on hold.
    browser.choose("Mental-health risk").await;
    browser.choose("Urgent").await;
    browser
        .fill(
            "What did you observe?",
            "Talked about not wanting to be here any more.",
        )
        .await;
    browser.press("Escalate to a clinician").await;
    let page = browser.text().await;
    assert!(page.contains("Escalations to a clinician"), "{page}");
    assert!(page.contains("waiting for an answer"), "{page}");
    assert!(page.contains("On hold"), "{page}");
    check_page(&browser).await;

    // The referrer receives it, signed, and declines it with a reason.
    app.deliver_due().await;
    let sent = fleet.referrer.delivered();
    let last = &sent.last().unwrap().body;
    assert!(sent.last().unwrap().signature_valid);
    let child = last["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Task" && r.get("partOf").is_some())
        .expect("the child Task")
        .clone();
    assert_eq!(child["priority"], "urgent");
    let response = app
        .client
        .patch(app.url(&format!("/fhir/Task/{}", child["id"].as_str().unwrap())))
        .header("content-type", "application/json-patch+json")
        .body(
            serde_json::json!([
                {"op": "replace", "path": "/status", "value": "rejected"},
                {"op": "add", "path": "/statusReason", "value": {"text": "Crisis team contacted by the practice"}}
            ])
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The volunteer sees the answer, and the referral in progress again.
    browser
        .goto(&app.url(&format!("/portal/referrals/{id}")))
        .await;
    let page = browser.text().await;
    assert!(page.contains("declined by the clinicians"), "{page}");
    assert!(
        page.contains("Crisis team contacted by the practice"),
        "{page}"
    );
    assert!(page.contains("In progress"), "{page}");
    check_page(&browser).await;
}
