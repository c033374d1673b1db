//! Operators' HTTP API under `/admin`, for admin tokens only (every
//! handler takes [`Admin`]): the live mappings, outbox messages and their
//! attempts, replay, provider callbacks, the audit trail, erasure, and
//! disabled endpoints. JSON (not FHIR), errors as OperationOutcome like
//! everywhere else.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    extract::{Path, Query, State},
    http::StatusCode,
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{
    AppState, FhirError, extract::Admin, request::LimitedBody, response::VisibleJson as Json,
};
use crate::{
    audit::AuditLog,
    domain::{NhsNumber, ProviderId, ReferralId},
    mapping::reload::Mappings,
    outcome::{Issue, IssueCode},
    referrals::{
        Referrals,
        deliveries::{BadFilter, Replay, message_filter, message_json, parse_limit},
    },
    store::Reclaim,
};

/// The routes under `/admin`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/mappings", get(mappings))
        .route("/instances", get(instances))
        .route("/deliveries", get(list))
        .route("/deliveries/{id}", get(show))
        .route("/deliveries/{id}/replay", post(replay))
        .route("/deliveries/{id}/retry", post(retry))
        .route("/callbacks", get(callbacks))
        .route("/audit", get(audit))
        .route("/erase", post(erase))
        .route("/endpoints", get(endpoints))
        .route("/endpoints/{endpoint}/enable", post(enable))
}

/// `GET /admin/mappings`.
async fn mappings(_: Admin, State(mappings): State<Arc<Mappings>>) -> Json {
    Json(mappings.report())
}

/// `GET /admin/deliveries?state=&provider=&endpoint=&referral=&limit=`.
async fn list(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json, FhirError> {
    let filter = message_filter(&params)?;
    let messages = referrals.messages(&filter).await?;
    Ok(Json(json!({
        "messages": messages.iter().map(|m| message_json(m, None, None)).collect::<Vec<_>>()
    })))
}

/// `GET /admin/deliveries/{id}`: the message, its payload and every attempt.
async fn show(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Path(id): Path<String>,
) -> Result<Json, FhirError> {
    let (message, attempts) = referrals
        .message(&id)
        .await?
        .ok_or_else(|| FhirError::NotFound("no message has this id".into()))?;
    let body = referrals.body_as_sent(&message).await;
    Ok(Json(message_json(&message, Some(&attempts), Some(body))))
}

/// `POST /admin/deliveries/{id}/retry`: send a pending message now.
async fn retry(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json), FhirError> {
    let message = referrals.retry_now(&id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(message_json(&message, None, None)),
    ))
}

/// `POST /admin/deliveries/{id}/replay[?remap=true]`: queue it again.
async fn replay(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<(StatusCode, Json), FhirError> {
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
    let message = referrals.replay(&id, how).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(message_json(&message, None, None)),
    ))
}

/// `GET /admin/callbacks?provider=&referral=&limit=`: provider status
/// callbacks as received (signature verified), each with the answer given
/// and why (`applied`, or `refused: …`), newest first.
async fn callbacks(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json, FhirError> {
    let mut limit = 100;
    for (key, value) in &params {
        match key.as_str() {
            "provider" | "referral" => {}
            "limit" => limit = parse_limit(value)?,
            _ => {
                return Err(bad(
                    "unknown parameter; use provider, referral or limit".into()
                ));
            }
        }
    }
    // Text that cannot be an id names no callback's provider or referral.
    let provider = params.get("provider").map(|p| p.parse::<ProviderId>());
    let referral = params.get("referral").map(|r| {
        r.strip_prefix("ServiceRequest/")
            .unwrap_or(r)
            .parse::<ReferralId>()
    });
    let events = match (provider.transpose(), referral.transpose()) {
        (Ok(provider), Ok(referral)) => {
            referrals
                .callbacks(provider.as_ref(), referral.as_ref(), limit)
                .await?
        }
        _ => Vec::new(),
    };
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
async fn audit(
    _: Admin,
    State(audit): State<AuditLog>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json, FhirError> {
    let mut filter = crate::store::AuditFilter {
        limit: 100,
        ..Default::default()
    };
    // An actor that is not one (`nobody`), or a referral id that is not
    // one, matches no record.
    let mut matches_none = false;
    for (key, value) in &params {
        match key.as_str() {
            "referral" => match value
                .strip_prefix("ServiceRequest/")
                .unwrap_or(value)
                .parse()
            {
                Ok(id) => filter.referral_id = Some(id),
                Err(_) => matches_none = true,
            },
            "actor" => match value.parse() {
                Ok(actor) => filter.actor = Some(actor),
                Err(_) => matches_none = true,
            },
            "since" => {
                filter.since =
                    Some(value.parse().map_err(|_| {
                        bad("since is an instant such as 2026-11-22T10:00:00Z".into())
                    })?);
            }
            "limit" => filter.limit = parse_limit(value)?,
            _ => {
                return Err(bad(
                    "unknown parameter; use referral, actor, since or limit".into(),
                ));
            }
        }
    }
    let records = if matches_none {
        Vec::new()
    } else {
        audit.list(&filter).await?
    };
    Ok(Json(json!({
        "records": records.iter().map(|r| json!({
            "at": r.at.to_string(),
            "actor": r.actor,
            "credential": r.credential,
            "client": r.client,
            "request_id": r.request_id,
            "action": r.action,
            "resource": r.resource,
            "referral": r.referral_id.as_ref().map(|id| format!("ServiceRequest/{id}")),
            "outcome": r.outcome,
        })).collect::<Vec<_>>()
    })))
}

/// `GET /admin/instances`: the instances sharing the database and the
/// mapping set each runs (see [`crate::instances`]).
async fn instances(
    _: Admin,
    State(registry): State<Arc<crate::instances::Registry>>,
) -> Result<Json, FhirError> {
    Ok(Json(registry.report().await?))
}

/// `POST /admin/erase` with `{"nhs_number": "…"}`: erase everything held
/// about that patient (see [`crate::referrals::Referrals::erase_patient`]).
async fn erase(
    Admin(caller): Admin,
    State(referrals): State<Arc<Referrals>>,
    LimitedBody(body): LimitedBody,
) -> Result<Json, FhirError> {
    // A number failing its check digit was refused at intake, so nobody
    // with it can be held.
    let nhs_number = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| {
            b.get("nhs_number")
                .and_then(Value::as_str)
                .and_then(|n| NhsNumber::parse(n).ok())
        })
        .ok_or_else(|| {
            FhirError::BadRequest(vec![Issue::error(
                IssueCode::Value,
                "send {\"nhs_number\": \"<10 digits, with a valid check digit>\"}",
            )])
        })?;
    let (erased, reclaim) = referrals
        .erase_patient(&nhs_number, &caller.actor())
        .await?;
    // `reclaimed: false` says the database still holds old copies, and
    // why; they are reclaimed without anyone asking again.
    let (reclaimed, pending) = match reclaim {
        Reclaim::Done => (true, None),
        Reclaim::Pending(why) => (false, Some(why)),
    };
    Ok(Json(json!({
        "erased": erased.iter().map(|id| format!("ServiceRequest/{id}")).collect::<Vec<_>>(),
        "reclaimed": reclaimed,
        "pending": pending,
    })))
}

/// `GET /admin/endpoints`: endpoints disabled by a `410 Gone`.
async fn endpoints(_: Admin, State(referrals): State<Arc<Referrals>>) -> Result<Json, FhirError> {
    let disabled = referrals.disabled_endpoints().await?;
    Ok(Json(json!({
        "disabled": disabled.iter().map(|d| json!({
            "endpoint": d.endpoint, "disabled_at": d.disabled_at, "reason": d.reason
        })).collect::<Vec<_>>()
    })))
}

/// `POST /admin/endpoints/{endpoint}/enable` (`provider:<id>`,
/// `referrer:<id>`, or a bare id naming one of them).
async fn enable(
    _: Admin,
    State(referrals): State<Arc<Referrals>>,
    Path(endpoint): Path<String>,
) -> Result<Json, FhirError> {
    match referrals.enable_endpoint(&endpoint).await? {
        Some(enabled) => Ok(Json(
            json!({ "endpoint": enabled.to_string(), "enabled": true }),
        )),
        None => Err(FhirError::NotFound("no such endpoint is disabled".into())),
    }
}

/// A `400` for a bad query parameter.
fn bad(text: String) -> FhirError {
    BadFilter(text).into()
}
