//! The provider portal's web pages under `/portal` (and the design
//! system's files under `/assets`): server-rendered HTML, one form per
//! action, no JavaScript needed. The domain is [`crate::portal`]; here are
//! only the pages, the session cookie and the CSRF check.
//!
//! Every request is audited by the common layer; a signed-in user's
//! requests name them (`portal:<user id>`), and a referral's page and its
//! actions name the referral. Sessions: an `HttpOnly`, `SameSite=Strict`
//! cookie (`Secure` under TLS) naming a row in the database. Every form
//! carries a CSRF token: the session's own once signed in, before that a
//! random one also set in a cookie (double submit).

mod assets;
mod layout;
mod referrals;
mod sign_in;

use std::net::SocketAddr;

use axum::{
    Router,
    extract::{ConnectInfo, FromRequestParts, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    middleware::Next,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use maud::{Markup, html};

pub use self::assets::NHSUK_FRONTEND_VERSION;
use super::{AppState, middleware::audit::acted_by};
use crate::portal::SignedIn;

/// The session cookie.
const SESSION_COOKIE: &str = "signpost_session";
/// The pre-sign-in CSRF cookie (double submit).
const FORM_COOKIE: &str = "signpost_form";

/// The portal's routes (and the assets').
pub fn router(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/portal", get(home))
        .route("/portal/", get(home))
        .merge(sign_in::router())
        .merge(referrals::router())
        .layer(axum::middleware::from_fn_with_state(state, with_session));
    Router::new()
        .merge(pages)
        .merge(assets::router())
        .layer(axum::middleware::from_fn(security_headers))
}

async fn home(user: Option<SignedInUser>) -> Redirect {
    match user {
        Some(_) => Redirect::to("/portal/referrals"),
        None => Redirect::to("/portal/sign-in"),
    }
}

/// Middleware: find the signed-in user from the session cookie (an
/// expired session is ended and treated as none), and name them on the
/// answer for the audit trail.
async fn with_session(State(app): State<AppState>, mut request: Request, next: Next) -> Response {
    let signed_in = match cookie(request.headers(), SESSION_COOKIE) {
        Some(token) => match app.portal.session(&token).await {
            Ok(found) => found,
            Err(e) => {
                tracing::error!(error = %e, "portal session lookup failed");
                return error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Sorry, there is a problem with the service",
                    "Try again later.",
                );
            }
        },
        None => None,
    };
    // (Never on an enrolment link's answer: its path holds the secret.)
    let actor = signed_in
        .as_ref()
        .filter(|_| !request.uri().path().starts_with("/portal/enrol/"))
        .map(SignedIn::actor);
    if let Some(signed_in) = signed_in {
        request.extensions_mut().insert(signed_in);
    }
    let response = next.run(request).await;
    match actor {
        Some(actor)
            if response
                .extensions()
                .get::<super::middleware::audit::AuditActor>()
                .is_none() =>
        {
            acted_by(response, actor)
        }
        _ => response,
    }
}

/// Middleware: the headers every portal page and asset carries. The
/// policy allows this origin's files only (the NHS.UK fonts, on another
/// origin, are not fetched: pages fall back to Arial, as the design
/// system intends), no framing, no referrer (an enrolment link's secret
/// is in its path), and pages are never cached.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/assets/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A signed-in user; without one, the request is sent to sign in.
pub struct SignedInUser(pub SignedIn);

impl<S: Send + Sync> FromRequestParts<S> for SignedInUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        parts
            .extensions
            .get::<SignedIn>()
            .cloned()
            .map(SignedInUser)
            .ok_or_else(|| Redirect::to("/portal/sign-in").into_response())
    }
}

impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for SignedInUser {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<Option<Self>, std::convert::Infallible> {
        Ok(parts
            .extensions
            .get::<SignedIn>()
            .cloned()
            .map(SignedInUser))
    }
}

/// The client's address (for sign-in throttling).
fn client_address(parts: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    parts.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// A cookie's value from the request.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, for `/`, Secure under
/// TLS; `None` clears it.
fn set_cookie(app: &AppState, name: &str, value: Option<&str>) -> HeaderValue {
    let secure = if app.config.tls.is_some() {
        "; Secure"
    } else {
        ""
    };
    let text = match value {
        Some(value) => format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("cookie values are base64url")
}

/// Whether a form's CSRF token is the expected one (constant time).
fn csrf_matches(sent: &str, expected: &str) -> bool {
    sent.len() == expected.len()
        && sent
            .bytes()
            .zip(expected.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The answer to a form whose CSRF token is missing or wrong.
fn csrf_refused() -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "This form could not be sent",
        "The page was open too long, or the form did not come from this service. Go back, reload the page and try again.",
    )
}

/// An HTML page answer.
fn html_page(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// A page that only says what went wrong.
fn error_page(status: StatusCode, title: &str, text: &str) -> Response {
    html_page(
        status,
        layout::page(
            title,
            false,
            None,
            html! {
                h1 { (title) }
                p { (text) }
                p { a href="/portal" { "Go to the start" } }
            },
        ),
    )
}

/// The provider's name, for the header.
fn provider_name(app: &AppState, signed_in: &SignedIn) -> String {
    app.config
        .providers
        .get(&signed_in.user.provider_id)
        .and_then(|p| p.name.clone())
        .unwrap_or_else(|| signed_in.user.provider_id.to_string())
}
