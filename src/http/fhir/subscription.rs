//! `Subscription`: each referrer's subscription to its Tasks' changes
//! (Subscriptions R4 backport), read-only, with `$status` and `$events`.
//! A referrer sees only its own; an admin any.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde_json::Value;

use super::resource_id;
use crate::{
    config::Referrer,
    http::{AppState, FhirCaller, FhirError, FhirJson, FhirResponse},
    outcome::{Issue, IssueCode},
    referrals::{
        notification::Content,
        subscription::{EventRange, MAX_EVENTS},
    },
    security::tokens::{Caller, Role},
};

/// `GET /fhir/Subscription/{id}`.
pub(super) async fn read(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<FhirResponse, FhirError> {
    let referrer = visible_subscription(&app, &caller, &id)?;
    let subscription = app.referrals.subscription(referrer).await?;
    Ok(FhirResponse::new(StatusCode::OK, subscription.to_string()))
}

/// `GET /fhir/Subscription/{id}/$status`.
pub(super) async fn status(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<FhirResponse, FhirError> {
    let referrer = visible_subscription(&app, &caller, &id)?;
    let base = app.config.public_fhir_base();
    let bundle = app
        .referrals
        .subscription_status(&referrer.id, base.as_deref())
        .await?;
    Ok(FhirResponse::new(StatusCode::OK, bundle.to_string()))
}

/// `GET /fhir/Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`.
pub(super) async fn events_get(
    caller: FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<FhirResponse, FhirError> {
    events(caller, app, id, params).await
}

/// `POST /fhir/Subscription/{id}/$events` with a `Parameters` body.
pub(super) async fn events_post(
    caller: FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    FhirJson(body): FhirJson,
) -> Result<FhirResponse, FhirError> {
    events(caller, app, id, parameters(&body)?).await
}

async fn events(
    FhirCaller(caller): FhirCaller,
    app: AppState,
    id: String,
    params: HashMap<String, String>,
) -> Result<FhirResponse, FhirError> {
    let referrer = visible_subscription(&app, &caller, &id)?;
    let mut range = EventRange::default();
    let mut content = Content::FullResource;
    for (name, value) in &params {
        match name.as_str() {
            "eventsSinceNumber" => range.since = Some(event_number(name, value)?),
            "eventsUntilNumber" => range.until = Some(event_number(name, value)?),
            "content" => {
                content = Content::parse(value)
                    .ok_or_else(|| bad("content must be empty, id-only or full-resource".into()))?;
            }
            _ => {
                return Err(bad(format!(
                    "unknown parameter; use eventsSinceNumber, eventsUntilNumber and content (at most {MAX_EVENTS} events per answer)"
                )));
            }
        }
    }
    let base = app.config.public_fhir_base();
    let bundle = app
        .referrals
        .subscription_events(&referrer.id, range, content, base.as_deref())
        .await?;
    Ok(FhirResponse::new(StatusCode::OK, bundle.to_string()))
}

/// The referrer whose subscription `id` is, if the caller may see it: its
/// own for a referrer, any for an admin; otherwise not found.
fn visible_subscription<'a>(
    app: &'a AppState,
    caller: &Caller,
    id: &str,
) -> Result<&'a Referrer, FhirError> {
    let not_found = || FhirError::NotFound("no Subscription has this id".into());
    let id = resource_id("Subscription", id)?;
    let referrer = app
        .config
        .referrers
        .values()
        .find(|r| r.id.as_str() == id)
        .ok_or_else(not_found)?;
    // Its own referrer, or an admin; nobody else (whatever role comes
    // later) sees a Subscription.
    match &caller.role {
        Role::Referrer(own) if own.as_str() == id => Ok(referrer),
        Role::Admin => Ok(referrer),
        _ => Err(not_found()),
    }
}

/// An event number: a positive integer, sent as a string.
fn event_number(name: &str, value: &str) -> Result<i64, FhirError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| bad(format!("{name} must be a positive whole number")))
}

/// The operation's input `Parameters` as name → value (a string, code or
/// integer value).
fn parameters(body: &Value) -> Result<HashMap<String, String>, FhirError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad("the body must be a Parameters resource".into()));
    }
    let mut params = HashMap::new();
    for parameter in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
        let value = [
            "valueString",
            "valueCode",
            "valueInteger",
            "valuePositiveInt",
        ]
        .iter()
        .find_map(|key| parameter.get(*key))
        .map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .ok_or_else(|| {
            bad(
                "each parameter needs a valueString, valueCode, valueInteger or valuePositiveInt"
                    .into(),
            )
        })?;
        params.insert(name.to_owned(), value);
    }
    Ok(params)
}

fn bad(text: String) -> FhirError {
    FhirError::BadRequest(vec![Issue::error(IssueCode::Invalid, text)])
}
