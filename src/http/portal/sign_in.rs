//! Signing in (email address, password, security code), signing out, and
//! enrolment (from the one-time link `signpost users create` prints: a
//! password, and an authenticator app set up from a QR code or the secret
//! typed in, confirmed with a code).

use axum::{
    Form, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    FORM_COOKIE, SESSION_COOKIE, SignedInUser, client_address, cookie, csrf_matches, csrf_refused,
    error_page, html_page,
    layout::{self, Input},
    set_cookie,
};
use crate::{
    http::AppState,
    portal::{EnrolmentProblems, SignInError, new_token, totp},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/sign-in", get(sign_in_page).post(sign_in))
        .route("/portal/sign-out", post(sign_out))
        .route("/portal/enrol/{token}", get(enrol_page).post(enrol))
}

/// The form's CSRF token: the one in the browser's form cookie, or a new
/// one (then set with the page).
fn form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, FORM_COOKIE) {
        Some(token) => (token, false),
        None => (new_token().0, true),
    }
}

/// A page with a pre-sign-in form, setting the form cookie if new.
fn with_form_cookie(
    app: &AppState,
    status: StatusCode,
    token: &str,
    fresh: bool,
    markup: Markup,
) -> Response {
    let mut response = html_page(status, markup);
    if fresh {
        response.headers_mut().append(
            header::SET_COOKIE,
            set_cookie(app, FORM_COOKIE, Some(token)),
        );
    }
    response
}

/// The pre-sign-in form's CSRF check (double submit: field = cookie).
fn form_csrf_ok(headers: &HeaderMap, sent: &str) -> bool {
    cookie(headers, FORM_COOKIE).is_some_and(|expected| csrf_matches(sent, &expected))
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

fn sign_in_markup(csrf: &str, email: &str, problem: Option<&str>) -> Markup {
    let problems: Vec<(&str, &str)> = problem.map(|p| ("email", p)).into_iter().collect();
    layout::page(
        "Sign in",
        problem.is_some(),
        None,
        html! {
            div class="nhsuk-grid-row" {
                div class="nhsuk-grid-column-two-thirds" {
                    (layout::error_summary(&problems))
                    h1 { "Sign in" }
                    p { "Sign in to see and answer the referrals sent to your organisation." }
                    form method="post" action="/portal/sign-in" novalidate {
                        (layout::csrf_field(csrf))
                        (layout::input(&Input { id: "email", label: "Email address", kind: "email", autocomplete: "username", hint: None, error: problem, value: email, numeric: false }))
                        (layout::input(&Input { id: "password", label: "Password", kind: "password", autocomplete: "current-password", hint: None, error: None, value: "", numeric: false }))
                        (layout::input(&Input { id: "code", label: "Security code", kind: "text", autocomplete: "one-time-code", hint: Some("The 6-digit code your authenticator app shows now"), error: None, value: "", numeric: true }))
                        (layout::button("Sign in", false))
                    }
                }
            }
        },
    )
}

async fn sign_in_page(
    State(app): State<AppState>,
    headers: HeaderMap,
    user: Option<SignedInUser>,
) -> Response {
    if user.is_some() {
        return Redirect::to("/portal/referrals").into_response();
    }
    let (csrf, fresh) = form_token(&headers);
    with_form_cookie(
        &app,
        StatusCode::OK,
        &csrf,
        fresh,
        sign_in_markup(&csrf, "", None),
    )
}

async fn sign_in(
    State(app): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    Form(form): Form<SignInForm>,
) -> Response {
    if !form_csrf_ok(&headers, &form.csrf) {
        return csrf_refused();
    }
    let address = client_address(&extensions);
    match app
        .portal
        .sign_in(&form.email, &form.password, &form.code, address)
        .await
    {
        Ok((signed_in, token)) => {
            let mut response = Redirect::to("/portal/referrals").into_response();
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                set_cookie(&app, SESSION_COOKIE, Some(&token)),
            );
            headers.append(header::SET_COOKIE, set_cookie(&app, FORM_COOKIE, None));
            super::acted_by(response, signed_in.actor())
        }
        Err(SignInError::Wrong) => html_page(
            StatusCode::UNAUTHORIZED,
            sign_in_markup(
                &form.csrf,
                &form.email,
                Some("The email address, password or security code is not right"),
            ),
        ),
        Err(SignInError::Throttled) => html_page(
            StatusCode::TOO_MANY_REQUESTS,
            sign_in_markup(
                &form.csrf,
                &form.email,
                Some("Too many failed attempts to sign in. Wait 15 minutes, then try again"),
            ),
        ),
        Err(SignInError::Store(e)) => {
            tracing::error!(error = %e, "portal sign-in failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, there is a problem with the service",
                "Try again later.",
            )
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn sign_out(
    State(app): State<AppState>,
    SignedInUser(signed_in): SignedInUser,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !csrf_matches(&form.csrf, &signed_in.session.csrf_token) {
        return csrf_refused();
    }
    if let Err(e) = app.portal.sign_out(&signed_in).await {
        tracing::error!(error = %e, "portal sign-out failed");
    }
    let mut response = Redirect::to("/portal/sign-in").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(&app, SESSION_COOKIE, None));
    response
}

// ---- enrolment ----

#[derive(Deserialize)]
struct EnrolForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    secret: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
    #[serde(default)]
    code: String,
}

fn enrol_markup(
    token: &str,
    csrf: &str,
    email: &str,
    secret: &str,
    problems: &EnrolmentProblems,
) -> Markup {
    let summary: Vec<(&str, &str)> = [
        problems.password.map(|p| ("password", p)),
        problems.confirm.map(|p| ("confirm", p)),
        problems.code.map(|p| ("code", p)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let qr = qrcode::QrCode::new(totp::provisioning_uri(secret, email).as_bytes())
        .map(|code| {
            code.render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(200, 200)
                .quiet_zone(true)
                .build()
        })
        .map(|svg| match svg.find("<svg") {
            // Without the XML declaration, which HTML does not take.
            Some(at) => svg[at..].to_owned(),
            None => svg,
        })
        .unwrap_or_default();
    // The secret in groups of four, as authenticator apps show them.
    let grouped: Vec<String> = secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    layout::page(
        "Set up your account",
        problems.any(),
        None,
        html! {
            div class="nhsuk-grid-row" {
                div class="nhsuk-grid-column-two-thirds" {
                    (layout::error_summary(&summary))
                    h1 { "Set up your account" }
                    p { "You are setting up the account for " strong { (email) } "." }
                    form method="post" action=(format!("/portal/enrol/{token}")) novalidate {
                        (layout::csrf_field(csrf))
                        input type="hidden" name="secret" value=(secret);
                        h2 { "1. Choose a password" }
                        (layout::input(&Input { id: "password", label: "Password", kind: "password", autocomplete: "new-password", hint: Some("At least 12 characters. A few unrelated words make a good one."), error: problems.password, value: "", numeric: false }))
                        (layout::input(&Input { id: "confirm", label: "Confirm password", kind: "password", autocomplete: "new-password", hint: None, error: problems.confirm, value: "", numeric: false }))
                        h2 { "2. Set up your authenticator app" }
                        p { "Scan this QR code with an authenticator app on your phone (for example Microsoft Authenticator or Google Authenticator)." }
                        div class="signpost-qr" role="img" aria-label="QR code for your authenticator app" {
                            (layout::trusted(qr))
                        }
                        p { "If you cannot scan it, choose to enter a key in the app and type this key:" }
                        p class="nhsuk-u-font-weight-bold" { code id="totp-secret" { (grouped.join(" ")) } }
                        (layout::input(&Input { id: "code", label: "Security code", kind: "text", autocomplete: "one-time-code", hint: Some("Enter the 6-digit code the app now shows for Signpost"), error: problems.code, value: "", numeric: true }))
                        (layout::button("Set up account", false))
                    }
                }
            }
        },
    )
}

fn link_not_valid() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "This link is not valid",
        "The link may have expired (links last 72 hours), been used already, or been copied wrongly. Ask your administrator for a new one.",
    )
}

async fn enrol_page(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    match app.portal.enrolment(&token).await {
        Ok(Some(user)) => {
            let (csrf, fresh) = form_token(&headers);
            let secret = totp::new_secret();
            let markup = enrol_markup(
                &token,
                &csrf,
                &user.email,
                &secret,
                &EnrolmentProblems::default(),
            );
            // Not attributed to the user: the audit record would keep the
            // path, and the path holds the link's secret.
            with_form_cookie(&app, StatusCode::OK, &csrf, fresh, markup)
        }
        Ok(None) => link_not_valid(),
        Err(e) => {
            tracing::error!(error = %e, "portal enrolment lookup failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, there is a problem with the service",
                "Try again later.",
            )
        }
    }
}

async fn enrol(
    State(app): State<AppState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(form): Form<EnrolForm>,
) -> Response {
    if !form_csrf_ok(&headers, &form.csrf) {
        return csrf_refused();
    }
    let user = match app.portal.enrolment(&token).await {
        Ok(Some(user)) => user,
        Ok(None) => return link_not_valid(),
        Err(e) => {
            tracing::error!(error = %e, "portal enrolment lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, there is a problem with the service",
                "Try again later.",
            );
        }
    };
    // The secret comes back from the page that showed it; only base32 of
    // the length made here is taken.
    let secret = form.secret.trim().to_owned();
    if secret.len() != 32
        || data_encoding::BASE32_NOPAD
            .decode(secret.as_bytes())
            .is_err()
    {
        return link_not_valid();
    }
    match app
        .portal
        .enrol(&token, &secret, &form.password, &form.confirm, &form.code)
        .await
    {
        Ok(None) => {
            tracing::info!(user_id = %user.id, "portal account enrolled");
            // Recorded by account, not by the path (which holds the link).
            app.audit
                .record(crate::store::AuditRecord {
                    seq: 0,
                    at: crate::audit::now(),
                    actor: crate::domain::Actor::PortalUser(user.id.clone()),
                    client: None,
                    credential: None,
                    request_id: None,
                    action: "portal enrolment".into(),
                    resource: Some(format!("user/{}", user.id)),
                    referral_id: None,
                    outcome: "enrolled".into(),
                })
                .await;
            let markup = layout::page(
                "Your account is set up",
                false,
                None,
                html! {
                    div class="nhsuk-panel" {
                        h1 class="nhsuk-panel__title" { "Your account is set up" }
                    }
                    p { "You can now sign in with your email address, your password and a code from your authenticator app." }
                    p { a href="/portal/sign-in" { "Sign in" } }
                },
            );
            html_page(StatusCode::OK, markup)
        }
        Ok(Some(problems)) => html_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            enrol_markup(&token, &form.csrf, &user.email, &secret, &problems),
        ),
        Err(e) => {
            tracing::error!(error = %e, "portal enrolment failed");
            error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sorry, there is a problem with the service",
                "Try again later.",
            )
        }
    }
}
