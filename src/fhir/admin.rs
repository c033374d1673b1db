//! Operators' HTTP API under `/admin`: the live mappings, outbox messages
//! and their attempts, replay, and disabled endpoints. JSON (not FHIR),
//! errors as OperationOutcome like everywhere else.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::StatusCode,
};
use serde_json::{Value, json};

use super::{AppState, FhirError};
use crate::{
    domain::{Endpoint, ProviderId},
    outcome::{Issue, IssueCode},
    referrals::deliveries::{Replay, message_json},
    store::MessageFilter,
};

/// `GET /admin/mappings`.
pub async fn mappings(State(app): State<AppState>) -> Json<Value> {
    Json(app.mappings.report())
}

/// `GET /admin/deliveries?state=&provider=&endpoint=&referral=&limit=`.
pub async fn list(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, FhirError> {
    let filter = message_filter(&params)?;
    let messages = app.referrals.messages(&filter).await?;
    Ok(Json(json!({
        "messages": messages.iter().map(|m| message_json(m, None)).collect::<Vec<_>>()
    })))
}

/// The filter the query asks for; unknown parameters are refused rather
/// than silently ignored (an ignored filter lists the wrong messages).
pub fn message_filter(params: &HashMap<String, String>) -> Result<MessageFilter, FhirError> {
    let mut filter = MessageFilter {
        limit: 100,
        ..MessageFilter::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "state" => {
                filter.state = Some(
                    value
                        .parse()
                        .map_err(|_| bad("state is pending, delivered or dead".into()))?,
                );
            }
            // (Text that is no provider id names no endpoint, so no message.)
            "provider" => {
                filter.endpoint = Some(match value.parse::<ProviderId>() {
                    Ok(id) => Endpoint::Provider(id).to_string(),
                    Err(_) => String::new(),
                });
            }
            "endpoint" => filter.endpoint = Some(value.clone()),
            "referral" => {
                let id = value.strip_prefix("ServiceRequest/").unwrap_or(value);
                filter.referral_id = Some(id.to_owned());
            }
            "limit" => filter.limit = parse_limit(value)?,
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?}; use state, provider, endpoint, referral or limit"
                )));
            }
        }
    }
    Ok(filter)
}

/// `GET /admin/deliveries/{id}`: the message, its payload and every attempt.
pub async fn show(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, FhirError> {
    let (message, attempts) = app
        .referrals
        .message(&id)
        .await?
        .ok_or_else(|| FhirError::NotFound(format!("no message {id}")))?;
    Ok(Json(message_json(&message, Some(&attempts))))
}

/// `POST /admin/deliveries/{id}/replay[?remap=true]`: queue it again.
pub async fn replay(
    State(app): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json<Value>), FhirError> {
    let how = match params.get("remap").map(String::as_str) {
        None | Some("false") => Replay::AsSent,
        Some("true") => Replay::Remapped,
        Some(_) => {
            return Err(FhirError::BadRequest(vec![Issue::error(
                IssueCode::Value,
                "remap is true or false",
            )]));
        }
    };
    let message = app.referrals.replay(&id, how).await?;
    Ok((StatusCode::ACCEPTED, Json(message_json(&message, None))))
}

/// `GET /admin/callbacks?provider=&referral=&limit=`: provider status
/// callbacks as received (signature verified), each with the answer given
/// and why (`applied`, or `refused: …`), newest first.
pub async fn callbacks(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, FhirError> {
    let mut limit = 100;
    for (key, value) in &params {
        match key.as_str() {
            "provider" | "referral" => {}
            "limit" => limit = parse_limit(value)?,
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?}; use provider, referral or limit"
                )));
            }
        }
    }
    let referral = params
        .get("referral")
        .map(|r| r.strip_prefix("ServiceRequest/").unwrap_or(r));
    let events = app
        .referrals
        .callbacks(params.get("provider").map(String::as_str), referral, limit)
        .await?;
    Ok(Json(json!({
        "callbacks": events.iter().map(|e| json!({
            "provider": e.provider_id,
            "webhook_id": e.webhook_id,
            "received_at": e.received_at,
            "referral": e.referral_id.as_ref().map(|id| format!("ServiceRequest/{id}")),
            "answered": e.response_status,
            "outcome": e.outcome,
            "body": serde_json::from_str::<Value>(&e.body).unwrap_or_else(|_| Value::String(e.body.clone())),
        })).collect::<Vec<_>>()
    })))
}

/// `GET /admin/audit?referral=&actor=&since=&limit=`: the audit trail,
/// newest first. (There is no way to change or delete a record.)
pub async fn audit(
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>, FhirError> {
    let mut filter = crate::store::AuditFilter {
        limit: 100,
        ..Default::default()
    };
    for (key, value) in &params {
        match key.as_str() {
            "referral" => {
                filter.referral_id = Some(
                    value
                        .strip_prefix("ServiceRequest/")
                        .unwrap_or(value)
                        .to_owned(),
                );
            }
            "actor" => filter.actor = Some(value.clone()),
            "since" => {
                let since = chrono::DateTime::parse_from_rfc3339(value)
                    .map_err(|_| bad("since is an instant such as 2026-11-22T10:00:00Z".into()))?;
                filter.since = Some(
                    since
                        .with_timezone(&chrono::Utc)
                        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                );
            }
            "limit" => filter.limit = parse_limit(value)?,
            other => {
                return Err(bad(format!(
                    "unknown parameter {other:?}; use referral, actor, since or limit"
                )));
            }
        }
    }
    let records = app.audit.list(&filter).await?;
    Ok(Json(json!({
        "records": records.iter().map(|r| json!({
            "at": r.at,
            "actor": r.actor,
            "client": r.client,
            "request_id": r.request_id,
            "action": r.action,
            "resource": r.resource,
            "referral": r.referral_id.as_ref().map(|id| format!("ServiceRequest/{id}")),
            "outcome": r.outcome,
        })).collect::<Vec<_>>()
    })))
}

/// `POST /admin/erase` with `{"nhs_number": "…"}`: erase everything held
/// about that patient (see [`crate::referrals::Referrals::erase_patient`]).
pub async fn erase(
    State(app): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    super::request::LimitedBody(body): super::request::LimitedBody,
) -> Result<Json<Value>, FhirError> {
    let nhs_number = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| {
            b.get("nhs_number")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|n| n.len() == 10 && n.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            FhirError::BadRequest(vec![Issue::error(
                IssueCode::Value,
                "send {\"nhs_number\": \"<10 digits>\"}",
            )])
        })?;
    let erased = app
        .referrals
        .erase_patient(&nhs_number, &crate::audit::actor(&caller))
        .await?;
    Ok(Json(json!({
        "erased": erased.iter().map(|id| format!("ServiceRequest/{id}")).collect::<Vec<_>>()
    })))
}

/// `GET /admin/endpoints`: endpoints disabled by a `410 Gone`.
pub async fn endpoints(State(app): State<AppState>) -> Result<Json<Value>, FhirError> {
    let disabled = app.referrals.disabled_endpoints().await?;
    Ok(Json(json!({
        "disabled": disabled.iter().map(|d| json!({
            "endpoint": d.endpoint, "disabled_at": d.disabled_at, "reason": d.reason
        })).collect::<Vec<_>>()
    })))
}

/// `POST /admin/endpoints/{endpoint}/enable` (`provider:<id>` or
/// `referrer:<id>`).
pub async fn enable(
    State(app): State<AppState>,
    Path(endpoint): Path<String>,
) -> Result<Json<Value>, FhirError> {
    if app.referrals.enable_endpoint(&endpoint).await? {
        Ok(Json(json!({ "endpoint": endpoint, "enabled": true })))
    } else {
        Err(FhirError::NotFound(format!("{endpoint} is not disabled")))
    }
}

/// A `400` for a bad query parameter.
fn bad(text: String) -> FhirError {
    FhirError::BadRequest(vec![Issue::error(IssueCode::Value, text)])
}

/// The `limit` query parameter: 1 to 1000.
fn parse_limit(value: &str) -> Result<i64, FhirError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| bad("limit is a number from 1 to 1000".into()))
}
