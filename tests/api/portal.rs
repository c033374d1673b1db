//! The provider portal over HTTP, on both backends: enrolment, sign-in
//! (wrong password, wrong code, a code used twice, throttling), sessions
//! (idle and absolute expiry, sign-out, `users disable`), the CSRF check
//! on every form, another provider's referral refused, and an action
//! relayed to the referrer as a signed notification. The same journeys in
//! a real browser, with accessibility checks, are in `portal_browser.rs`.

use std::{collections::BTreeMap, time::Duration};

use reqwest::{StatusCode, header};
use signpost::portal::{Portal, totp};

use crate::{
    on_both_backends,
    support::fleet::Fleet,
    support::helpers::{Backend, TestApp, test_config},
};

/// The accounts service on the app's database (as `signpost users` uses it).
pub async fn accounts(app: &TestApp) -> Portal {
    let domain = signpost::startup::domain(test_config(&app.db.url))
        .await
        .expect("domain");
    Portal::new(domain.store, domain.referrals)
}

/// A new account at `provider`; the enrolment path (`/portal/enrol/…`).
pub async fn new_user(app: &TestApp, provider: &str, email: &str) -> String {
    let (_, token) = accounts(app)
        .await
        .create_user(
            provider.parse().unwrap(),
            email,
            Some("Sam Gardener".into()),
        )
        .await
        .expect("stored")
        .expect("a new email");
    format!("/portal/enrol/{token}")
}

/// The current code for a base32 secret on the app's clock.
pub fn code_now(app: &TestApp, secret: &str) -> String {
    let raw = data_encoding::BASE32_NOPAD
        .decode(secret.replace(' ', "").as_bytes())
        .expect("base32");
    totp::code(&raw, totp::step_at(app.now().as_millis()))
}

pub const PASSWORD: &str = "correct horse battery staple";

/// A browser stand-in over HTTP: keeps cookies, follows no redirects.
pub struct Visitor<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl<'a> Visitor<'a> {
    pub fn new(app: &'a TestApp) -> Visitor<'a> {
        Visitor {
            app,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all(header::SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            assert!(attributes.contains("HttpOnly"), "{text}");
            assert!(attributes.contains("SameSite=Strict"), "{text}");
            if value.is_empty() {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn get(&mut self, path: &str) -> (StatusCode, String, Option<String>) {
        let response = self
            .http
            .get(self.app.url(path))
            .header(header::COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.answer(response).await
    }

    pub async fn post(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String, Option<String>) {
        let response = self
            .http
            .post(self.app.url(path))
            .header(header::COOKIE, self.cookie_header())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        self.answer(response).await
    }

    async fn answer(
        &mut self,
        response: reqwest::Response,
    ) -> (StatusCode, String, Option<String>) {
        self.remember(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        (status, response.text().await.unwrap(), location)
    }

    /// Enrol from the link with [`PASSWORD`]; returns the TOTP secret.
    pub async fn enrol(&mut self, link: &str) -> String {
        let (status, page, _) = self.get(link).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csrf = hidden(&page, "csrf");
        let secret = hidden(&page, "secret");
        let code = code_now(self.app, &secret);
        let (status, page, _) = self
            .post(
                link,
                &[
                    ("csrf", &csrf),
                    ("secret", &secret),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                    ("code", &code),
                ],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(page.contains("Your account is set up"), "{page}");
        secret
    }

    /// Try to sign in; the status and where it leads.
    pub async fn sign_in(
        &mut self,
        email: &str,
        password: &str,
        code: &str,
    ) -> (StatusCode, String, Option<String>) {
        let (_, page, _) = self.get("/portal/sign-in").await;
        let csrf = hidden(&page, "csrf");
        self.post(
            "/portal/sign-in",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("code", code),
            ],
        )
        .await
    }

    /// The session's CSRF token, from a signed-in page.
    pub async fn csrf(&mut self, path: &str) -> String {
        let (status, page, _) = self.get(path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        hidden(&page, "csrf")
    }
}

/// A hidden field's value in a page.
pub fn hidden(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no hidden {name} in {page}"))
        + marker.len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// A stepped fleet with one enrolled, signed-in Grow Together user.
async fn signed_in(fleet: &Fleet) -> (Visitor<'_>, String) {
    let app = &fleet.app;
    let link = new_user(app, "grow-together", "sam@grow.example").await;
    let mut visitor = Visitor::new(app);
    let secret = visitor.enrol(&link).await;
    // The enrolment's code is spent: sign in with the next one.
    app.advance(Duration::from_secs(30));
    let (status, page, location) = visitor
        .sign_in("Sam@Grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    assert_eq!(location.as_deref(), Some("/portal/referrals"));
    (visitor, secret)
}

async fn sign_in_needs_password_and_a_fresh_code(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let app = &fleet.app;
    let link = new_user(app, "grow-together", "sam@grow.example").await;
    let mut visitor = Visitor::new(app);
    // A link works once.
    let secret = visitor.enrol(&link).await;
    let (status, _, _) = visitor.get(&link).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The code that confirmed enrolment cannot sign in (a code is good once).
    let code = code_now(app, &secret);
    let (status, _, _) = visitor.sign_in("sam@grow.example", PASSWORD, &code).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    app.advance(Duration::from_secs(30));
    let code = code_now(app, &secret);
    let (status, page, _) = visitor
        .sign_in("sam@grow.example", "wrong password!!", &code)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("not right"));
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (status, _, _) = visitor.sign_in("sam@grow.example", PASSWORD, &wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!visitor.cookies.contains_key("signpost_session"));
    let (status, _, location) = visitor.sign_in("sam@grow.example", PASSWORD, &code).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(location.as_deref(), Some("/portal/referrals"));
    let (status, page, _) = visitor.get("/portal/referrals").await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Sam Gardener"), "{page}");
    // Pages are never cached; the policy allows this origin only.
    let response = reqwest::get(app.url("/portal/sign-in")).await.unwrap();
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert!(
        response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
}

async fn failed_sign_ins_are_throttled_per_account(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let app = &fleet.app;
    let link = new_user(app, "grow-together", "sam@grow.example").await;
    let mut visitor = Visitor::new(app);
    let secret = visitor.enrol(&link).await;
    app.advance(Duration::from_secs(30));
    for _ in 0..signpost::portal::throttle::ACCOUNT_FAILURES {
        let (status, _, _) = visitor
            .sign_in("sam@grow.example", "not the password", "000000")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Now even the right details are refused…
    let (status, page, _) = visitor
        .sign_in("sam@grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{page}");
    assert!(page.contains("Too many failed attempts"));
    // …until the window has passed.
    app.advance(signpost::portal::throttle::WINDOW);
    let (status, _, _) = visitor
        .sign_in("sam@grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

async fn sessions_end_when_idle_too_long_or_disabled(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let app = &fleet.app;
    let (mut visitor, secret) = signed_in(&fleet).await;
    app.advance(Duration::from_secs(29 * 60));
    let (status, _, _) = visitor.get("/portal/referrals").await;
    assert_eq!(status, StatusCode::OK, "29 minutes idle: still signed in");
    app.advance(Duration::from_secs(31 * 60));
    let (status, _, location) = visitor.get("/portal/referrals").await;
    assert_eq!(status, StatusCode::SEE_OTHER, "31 minutes idle: signed out");
    assert_eq!(location.as_deref(), Some("/portal/sign-in"));

    // Signed in again, then disabled: the session ends at once.
    let (status, _, _) = visitor
        .sign_in("sam@grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let portal = accounts(app).await;
    let user = portal.find_user("sam@grow.example").await.unwrap().unwrap();
    assert!(portal.disable_user(&user.id).await.unwrap());
    let (status, _, _) = visitor.get("/portal/referrals").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    app.advance(Duration::from_secs(30));
    let (status, _, _) = visitor
        .sign_in("sam@grow.example", PASSWORD, &code_now(app, &secret))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled account cannot sign in"
    );
}

async fn sessions_end_twelve_hours_after_sign_in(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let app = &fleet.app;
    let (mut visitor, _) = signed_in(&fleet).await;
    let signed_in_at = app.now();
    // Busy all day, never idle for 30 minutes: signed out at 12 hours.
    let step = Duration::from_secs(25 * 60);
    loop {
        app.advance(step);
        let (status, _, _) = visitor.get("/portal/referrals").await;
        if status == StatusCode::SEE_OTHER {
            break;
        }
        assert_eq!(status, StatusCode::OK);
        assert!(app.now().since(signed_in_at) < signpost::portal::ABSOLUTE_TIMEOUT);
    }
    let lasted = app.now().since(signed_in_at);
    assert!(
        lasted >= signpost::portal::ABSOLUTE_TIMEOUT
            && lasted < signpost::portal::ABSOLUTE_TIMEOUT + step,
        "signed out after {lasted:?}"
    );
}

async fn forms_without_the_session_csrf_token_are_refused(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("grow-together.bundle.json").await;
    let (mut visitor, _) = signed_in(&fleet).await;
    let page = format!("/portal/referrals/{id}");
    let csrf = visitor.csrf(&page).await;
    for wrong in ["", "forged", &csrf[..csrf.len() - 1]] {
        let (status, body, _) = visitor
            .post(&format!("{page}/accept"), &[("csrf", wrong)])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    assert_eq!(fleet.task(&id).await["status"], "requested");
    // Sign-in's own form is checked against its cookie.
    let mut stranger = Visitor::new(&fleet.app);
    let (status, _, _) = stranger
        .post(
            "/portal/sign-in",
            &[("csrf", "x"), ("email", "sam@grow.example")],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The right token works.
    let (status, _, _) = visitor
        .post(&format!("{page}/accept"), &[("csrf", &csrf)])
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(fleet.task(&id).await["status"], "accepted");
}

async fn another_providers_referral_is_refused(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let theirs = fleet.refer("activelives-exercise.json").await;
    let (mut visitor, _) = signed_in(&fleet).await;
    let csrf = visitor.csrf("/portal/referrals").await;
    let (status, page, _) = visitor.get(&format!("/portal/referrals/{theirs}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!page.contains("Maureen"), "nothing of it is shown");
    let (status, _, _) = visitor
        .post(
            &format!("/portal/referrals/{theirs}/decline"),
            &[("csrf", &csrf), ("decline_reason", "Other")],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(fleet.task(&theirs).await["status"], "requested");
    let (_, list, _) = visitor.get("/portal/referrals").await;
    assert!(!list.contains(&theirs));
}

async fn actions_are_relayed_to_the_referrer_signed(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("grow-together.bundle.json").await;
    fleet.app.deliver_due().await;
    let (mut visitor, _) = signed_in(&fleet).await;
    let page = format!("/portal/referrals/{id}");
    let csrf = visitor.csrf(&page).await;
    let before = fleet.task(&id).await;
    // Not offered yet, so not taken: completing a referral not accepted.
    let (status, _, _) = visitor
        .post(
            &format!("{page}/complete"),
            &[("csrf", &csrf), ("outcome", "Completed the programme")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Nor a contact before acceptance (the state machine alone would let
    // a business status through).
    let (status, _, _) = visitor
        .post(
            &format!("{page}/contact"),
            &[("csrf", &csrf), ("reached", "yes")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(fleet.task(&id).await, before, "nothing changed");
    for (action, form) in [
        ("accept", vec![]),
        ("contact", vec![("reached", "yes")]),
        ("first-session", vec![]),
        ("note", vec![("note", "Enjoying the raised beds")]),
        ("complete", vec![("outcome", "Completed the programme")]),
    ] {
        let mut fields = vec![("csrf", csrf.as_str())];
        fields.extend(form);
        let (status, body, _) = visitor.post(&format!("{page}/{action}"), &fields).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{action}: {body}");
    }
    // Finished: not even a note.
    let (status, _, _) = visitor
        .post(
            &format!("{page}/note"),
            &[("csrf", &csrf), ("note", "late")],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    fleet.app.deliver_due().await;
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "completed");
    assert_eq!(task["note"].as_array().map(Vec::len), Some(1));
    assert_eq!(task["businessStatus"]["text"], "Completed the programme");
    let notifications: Vec<String> = fleet
        .referrer
        .delivered()
        .iter()
        .inspect(|n| assert!(n.signature_valid, "signed with the referrer's secret"))
        .map(|n| n.body.to_string())
        .collect();
    for expected in [
        "\"accepted\"",
        "contacted",
        "first session attended",
        "\"completed\"",
    ] {
        assert!(
            notifications.iter().any(|n| n.contains(expected)),
            "the referrer was told {expected}"
        );
    }
    // The history names each change, and the audit trail the user.
    let (_, body, _) = visitor.get(&page).await;
    assert!(body.contains("Your organisation (portal)"), "{body}");
    for action in [
        "GET /portal/referrals/{id}",
        "POST /portal/referrals/{id}/{action}",
    ] {
        let record =
            crate::audit::record(&fleet, &format!("referral={id}"), "portal:usr-", action).await;
        assert_eq!(
            record["referral"],
            format!("ServiceRequest/{id}"),
            "{record}"
        );
    }
}

/// `signpost users create|list|reset|disable` against the running
/// server's database, as an administrator manages accounts: the printed
/// link opens the enrolment page, the list shows each account's state and
/// no secret, a reset replaces the link, and refusals fail the command.
async fn accounts_are_managed_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let users = |args: &[&str]| {
        let url = app.db.url.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
                .arg("users")
                .args(&args)
                .current_dir(crate::support::helpers::MANIFEST_DIR)
                .env("SIGNPOST_DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            )
        }
    };
    let path_of = |link: &str| {
        let at = link.find("/portal/enrol/").expect("an enrolment link");
        link[at..].to_owned()
    };
    let mut visitor = Visitor::new(&app);

    // Create: the link opens the enrolment page for that account.
    let (ok, link, said) = users(&[
        "create",
        "--provider",
        "grow-together",
        "--email",
        "robin@grow.example",
        "--name",
        "Robin",
    ])
    .await;
    assert!(ok, "{said}");
    let first = path_of(&link);
    let (status, page, _) = visitor.get(&first).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("robin@grow.example"));

    // List: the account, pending enrolment, and no link secret.
    let (ok, listed, said) = users(&["list"]).await;
    assert!(ok, "{said}");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let robin = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "robin@grow.example")
        .expect("listed");
    assert_eq!(robin["provider"], "grow-together");
    assert_eq!(robin["state"], "enrolment pending");
    let secret = first.trim_start_matches("/portal/enrol/");
    assert!(!listed.to_string().contains(secret));

    // Reset: a new link works, the old one no longer does.
    let (ok, link, said) = users(&["reset", "robin@grow.example"]).await;
    assert!(ok, "{said}");
    let second = path_of(&link);
    assert_ne!(first, second);
    assert_eq!(visitor.get(&first).await.0, StatusCode::NOT_FOUND);
    assert_eq!(visitor.get(&second).await.0, StatusCode::OK);

    // Disable: listed as disabled, and its link is dead.
    let (ok, _, said) = users(&["disable", "robin@grow.example"]).await;
    assert!(ok, "{said}");
    let (_, listed, _) = users(&["list"]).await;
    assert!(listed.contains("\"disabled\""), "{listed}");
    assert_eq!(visitor.get(&second).await.0, StatusCode::NOT_FOUND);

    // Refusals: an unknown provider, a taken email, a non-address, an
    // unknown account; each fails and says why.
    for (args, why) in [
        (
            &["create", "--provider", "nobody", "--email", "a@b.example"][..],
            "no [providers.nobody]",
        ),
        (
            &[
                "create",
                "--provider",
                "grow-together",
                "--email",
                "robin@grow.example",
            ][..],
            "already an account",
        ),
        (
            &["create", "--provider", "grow-together", "--email", "robin"][..],
            "email address",
        ),
        (&["disable", "nobody@grow.example"][..], "no such account"),
        (&["reset", "nobody@grow.example"][..], "no such account"),
    ] {
        let (ok, out, said) = users(args).await;
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(said.contains(why), "{args:?}: {said}");
    }
}

on_both_backends!(
    sign_in_needs_password_and_a_fresh_code,
    failed_sign_ins_are_throttled_per_account,
    sessions_end_when_idle_too_long_or_disabled,
    sessions_end_twelve_hours_after_sign_in,
    forms_without_the_session_csrf_token_are_refused,
    another_providers_referral_is_refused,
    actions_are_relayed_to_the_referrer_signed,
    accounts_are_managed_from_the_command_line,
);
