//! `POST /providers/{provider_id}/status`: a community provider reports
//! progress in its own JSON. The request must carry a Standard Webhooks
//! signature made with that provider's secret, dated within five minutes;
//! the body is then mapped into a Task change (see
//! [`crate::referrals::lifecycle`]). Every answer is an OperationOutcome.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{AppState, FHIR_JSON, FhirError, request::LimitedBody};
use crate::{
    audit::AuditActor,
    limits,
    outcome::{Issue, IssueCode, Severity, operation_outcome},
    referrals::{lifecycle::CallbackOutcome, provider_endpoint},
};

/// `POST /providers/{provider_id}/status`.
pub async fn status(
    State(app): State<AppState>,
    Path(provider_id): Path<String>,
    client: Option<axum::Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, FhirError> {
    let unknown = || FhirError::NotFound(format!("no provider {provider_id}"));
    if !app.config.providers.contains_key(&provider_id) {
        return Err(unknown());
    }
    let keys = app
        .keys
        .get(&provider_endpoint(&provider_id))
        .ok_or_else(unknown)?;
    let webhook_id = match keys.verify(&headers, &body, app.referrals.clock.now().to_datetime()) {
        Ok(id) => id,
        Err(e) => {
            // Guessing is throttled by address, as for bearer tokens.
            if let Some(limited) = client.and_then(|c| limits::charge_address(&app, c.0.0.ip())) {
                return Ok(limited);
            }
            tracing::warn!(provider_id = %provider_id, reason = %e, "status callback refused: bad signature");
            return Err(FhirError::Unauthorized(format!(
                "the Standard Webhooks signature was not accepted: {e}"
            )));
        }
    };
    if let Err(wait) = app.limiter.check(&format!("provider:{provider_id}")) {
        tracing::info!(provider_id = %provider_id, "status callbacks rate limited");
        let mut response = limits::too_many(wait);
        response
            .extensions_mut()
            .insert(AuditActor(format!("provider:{provider_id}")));
        return Ok(response);
    }
    let text = std::str::from_utf8(&body).map_err(|_| {
        FhirError::BadRequest(vec![Issue::error(
            IssueCode::Invalid,
            "the body is not UTF-8 text",
        )])
    })?;
    let outcome = app
        .referrals
        .provider_callback(&provider_id, &webhook_id, text)
        .await?;
    let mut referral = None;
    let metrics = &app.referrals.metrics;
    let (status, issues) = match outcome {
        CallbackOutcome::Applied {
            referral_id,
            task_id,
            status,
        } => {
            referral = Some(referral_id);
            metrics.status_event(&provider_id, "applied", &status.to_string());
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, task_id = %task_id, task_status = %status, "status callback applied");
            (
                StatusCode::OK,
                vec![informational(format!("Task/{task_id} is now {status}"))],
            )
        }
        CallbackOutcome::Duplicate { status, outcome } => {
            metrics.status_event(&provider_id, "duplicate", "");
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, "status callback already received");
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                vec![informational(format!(
                    "webhook-id {webhook_id} was already received ({outcome}); nothing changed"
                ))],
            )
        }
        CallbackOutcome::Refused { status, issues } => {
            metrics.status_event(&provider_id, "refused", "");
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, status, "status callback refused");
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
                issues,
            )
        }
    };
    let mut response = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        operation_outcome(&issues).to_string(),
    )
        .into_response();
    response
        .extensions_mut()
        .insert(AuditActor(format!("provider:{provider_id}")));
    Ok(match referral {
        Some(id) => super::about_referral(response, &id),
        None => response,
    })
}

fn informational(text: String) -> Issue {
    Issue {
        severity: Severity::Information,
        ..Issue::error(IssueCode::Informational, text)
    }
}
