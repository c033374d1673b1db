//! `POST /providers/{provider_id}/status`: a community provider reports
//! progress in its own JSON. The request must carry a Standard Webhooks
//! signature made with that provider's secret, dated within five minutes,
//! or, for an inbox provider, that provider's own bearer token (checked by
//! the [`ProviderCallback`] extractor); the body is then mapped
//! into a Task change (see [`crate::referrals::lifecycle`]). Every answer
//! is an OperationOutcome.
//!
//! `POST /providers/{provider_id}/escalations`, authenticated the same
//! way: the provider asks for a clinician
//! ([`crate::referrals::escalation`]); `201` with the escalation's child
//! Task.

use axum::{
    Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};

use super::{
    AppState, FhirError, FhirResponse,
    extract::ProviderCallback,
    middleware::audit::{about_referral, acted_by},
};
use crate::{
    domain::Actor,
    outcome::{Issue, IssueCode, Severity, operation_outcome},
    referrals::{escalation::RaiseRequest, lifecycle::CallbackOutcome},
};

/// The providers' routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers/{provider_id}/status", post(status))
        .route("/providers/{provider_id}/escalations", post(escalate))
}

/// `POST /providers/{provider_id}/status`.
async fn status(
    State(app): State<AppState>,
    // Taken here, before the body, as it always was; [`ProviderCallback`]
    // reads the same id.
    Path(_): Path<String>,
    ProviderCallback {
        id: provider_id,
        webhook_id,
        body,
    }: ProviderCallback,
) -> Result<Response, FhirError> {
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
    let metrics = app.referrals.metrics();
    let (status, issues) = match outcome {
        CallbackOutcome::Applied {
            referral_id,
            task_id,
            status,
        } => {
            referral = Some(referral_id);
            metrics.status_event(provider_id.as_str(), "applied", &status.to_string());
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, task_id = %task_id, task_status = %status, "status callback applied");
            (
                StatusCode::OK,
                vec![informational(format!("Task/{task_id} is now {status}"))],
            )
        }
        CallbackOutcome::Duplicate { status, outcome } => {
            metrics.status_event(provider_id.as_str(), "duplicate", "");
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, "status callback already received");
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
                vec![informational(format!(
                    "webhook-id {webhook_id} was already received ({outcome}); nothing changed"
                ))],
            )
        }
        CallbackOutcome::Refused { status, issues } => {
            metrics.status_event(provider_id.as_str(), "refused", "");
            tracing::info!(provider_id = %provider_id, webhook_id = %webhook_id, status, "status callback refused");
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
                issues,
            )
        }
    };
    // The audit trail names the provider for each answer its callback was
    // given (and, from the extractor, when it was rate limited); refusals
    // of a body that could not be read or stored are recorded without it.
    let response = acted_by(
        FhirResponse::new(status, operation_outcome(&issues).to_string()).into_response(),
        Actor::Provider(provider_id),
    );
    Ok(match referral {
        // (An applied callback always names its referral's id.)
        Some(id) => match id.parse() {
            Ok(id) => about_referral(response, &id),
            Err(_) => response,
        },
        None => response,
    })
}

/// `POST /providers/{provider_id}/escalations`.
async fn escalate(
    State(app): State<AppState>,
    Path(_): Path<String>,
    headers: axum::http::HeaderMap,
    ProviderCallback {
        id: provider_id,
        webhook_id,
        body,
    }: ProviderCallback,
) -> Result<Response, FhirError> {
    let body: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        FhirError::BadRequest(vec![Issue::error(
            IssueCode::Invalid,
            format!(
                "the body is not JSON: {}",
                crate::validation::document::place(&e)
            ),
        )])
    })?;
    let request = RaiseRequest::parse(&body)?;
    let actor = Actor::Provider(provider_id.clone());
    // The same request again (its webhook-id: a retry after a lost answer)
    // is answered with the escalation it raised, `200`.
    let (escalation, created) = app
        .referrals
        .raise_escalation_once(&provider_id, actor.clone(), &request, Some(&webhook_id))
        .await?;
    if created {
        app.referrals
            .metrics()
            .escalation_raised(provider_id.as_str(), &escalation.urgency);
        tracing::info!(provider_id = %provider_id, escalation_id = %escalation.id, referral_id = %escalation.referral_id, reason = %escalation.reason, urgency = %escalation.urgency, "escalation raised");
    } else {
        tracing::info!(provider_id = %provider_id, escalation_id = %escalation.id, webhook_id = %webhook_id, "escalation request received again; answered with the first");
    }
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response =
        super::fhir::resource_response(status, escalation.version_id, escalation.task);
    let base = super::fhir::base_url(&app.config, &headers);
    if let Ok(location) =
        axum::http::HeaderValue::from_str(&format!("{base}/Task/{}", escalation.id))
    {
        response
            .headers_mut()
            .insert(axum::http::header::LOCATION, location);
    }
    Ok(about_referral(
        acted_by(response, actor),
        &escalation.referral_id,
    ))
}

fn informational(text: String) -> Issue {
    Issue {
        severity: Severity::Information,
        ..Issue::error(IssueCode::Informational, text)
    }
}
