//! Escalations on the FHIR surface, for their target (the referrer; an
//! admin sees all): the child Tasks (`GET /fhir/Task?part-of=Task/{id}`,
//! `GET /fhir/Task/{id}`), their acknowledgement (`PATCH /fhir/Task/{id}`,
//! a JSON Patch), the Communications (`GET
//! /fhir/Communication?based-on=|about=ServiceRequest/{id}`) and the
//! safeguarding Flags (`GET /fhir/Flag?subject:identifier=system|value`).
//! Another referrer's are not found, as if they did not exist.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use serde_json::Value;

use super::{base_url, path_id, resource_response, search_value, searchset, visible_referral};
use crate::{
    domain::{ReferralId, TaskId, model::Escalation},
    http::{
        AppState, EscalationCaller, FhirError,
        middleware::audit::about_referral,
        request::{LimitedBody, json_patch, require_json_patch},
    },
    outcome::{Issue, IssueCode},
    referrals::escalation::{EscalationError, Viewer},
    security::{
        authz::{self, Visible},
        tokens::{Caller, Role},
    },
};

/// Most escalations one search reads.
const SEARCH_LIMIT: i64 = 1000;

impl From<EscalationError> for FhirError {
    fn from(e: EscalationError) -> Self {
        match e {
            EscalationError::NotFound(text) => FhirError::NotFound(text),
            EscalationError::Conflict(text) => FhirError::Conflict(text),
            EscalationError::Invalid { field, text } => {
                FhirError::Unprocessable(vec![Issue::error(IssueCode::Value, text).at(field)])
            }
            EscalationError::Store(e) => FhirError::Unavailable(e),
        }
    }
}

/// Whose escalations the caller sees (`Err`: none).
fn whose(caller: &Caller) -> Result<Viewer, ()> {
    if let Role::ClinicalService(id) = &caller.role {
        return Ok(Viewer::Service(id.clone()));
    }
    match authz::visible(caller) {
        Visible::All => Ok(Viewer::All),
        Visible::SentBy(id) => id.parse().map(Viewer::Referrer).map_err(|_| ()),
        Visible::Nothing => Err(()),
    }
}

/// The child Task `id`, if the caller may see it.
pub(super) async fn child_task(
    app: &AppState,
    caller: &Caller,
    id: &TaskId,
) -> Result<Option<Escalation>, FhirError> {
    let Ok(viewer) = whose(caller) else {
        return Ok(None);
    };
    Ok(app.referrals.escalation_for(id, &viewer).await?)
}

/// The escalations of the referral `reference` names
/// (`ServiceRequest/{id}`), if the caller may see it; none otherwise.
async fn of_referral(
    app: &AppState,
    caller: &Caller,
    name: &str,
    reference: &str,
) -> Result<(Option<ReferralId>, Vec<Escalation>), FhirError> {
    let value = search_value(name, reference)?;
    let id = value.strip_prefix("ServiceRequest/").unwrap_or(value);
    let visible = match path_id::<ReferralId>("ServiceRequest", id) {
        Ok(id) => visible_referral(app, caller, &id).await.map(|r| r.id),
        Err(e) => Err(e),
    };
    match visible {
        Ok(id) => {
            let found = app.referrals.escalations_of_referral(&id).await?;
            Ok((Some(id), found))
        }
        Err(FhirError::NotFound(_)) => Ok((None, Vec::new())),
        Err(e) => Err(e),
    }
}

/// `GET /fhir/Task?part-of=Task/{id}`: the escalations of the referral
/// whose Task that is.
pub(super) async fn search_part_of(
    app: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    part_of: &str,
) -> Result<Response, FhirError> {
    let value = search_value("part-of", part_of)?;
    let id = value.strip_prefix("Task/").unwrap_or(value);
    let parent = match path_id::<TaskId>("Task", id) {
        Ok(id) => app.referrals.task(&id).await?,
        Err(_) => None,
    };
    let mut found = Vec::new();
    let mut referral = None;
    if let Some(parent) = parent
        && visible_referral(app, caller, &parent.referral_id)
            .await
            .is_ok()
    {
        found = app
            .referrals
            .escalations_of_referral(&parent.referral_id)
            .await?;
        referral = Some(parent.referral_id);
    }
    let base = base_url(&app.config, headers);
    let encoded: String = url::form_urlencoded::byte_serialize(part_of.as_bytes()).collect();
    let response = searchset(
        &base,
        format!("{base}/Task?part-of={encoded}"),
        "Task",
        found.into_iter().map(|e| (e.id.into(), e.task)).collect(),
    );
    Ok(match referral {
        Some(id) => about_referral(response, &id),
        None => response,
    })
}

/// `GET /fhir/Communication?based-on=ServiceRequest/{id}` (or `about=`).
pub(super) async fn search_communications(
    EscalationCaller(caller): EscalationCaller,
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, FhirError> {
    let unsupported = || {
        FhirError::BadRequest(vec![Issue::error(
            IssueCode::NotSupported,
            "search Communications by based-on=ServiceRequest/{id} or about=ServiceRequest/{id}",
        )])
    };
    let (name, reference) = match (params.len(), params.get("based-on"), params.get("about")) {
        (1, Some(v), None) => ("based-on", v),
        (1, None, Some(v)) => ("about", v),
        _ => return Err(unsupported()),
    };
    let (referral, found) = of_referral(&app, &caller, name, reference).await?;
    let base = base_url(&app.config, &headers);
    let encoded: String = url::form_urlencoded::byte_serialize(reference.as_bytes()).collect();
    let response = searchset(
        &base,
        format!("{base}/Communication?{name}={encoded}"),
        "Communication",
        found
            .into_iter()
            .map(|e| (e.communication_id, e.communication))
            .collect(),
    );
    Ok(match referral {
        Some(id) => about_referral(response, &id),
        None => response,
    })
}

/// `GET /fhir/Flag?subject:identifier=system|value` (also
/// `patient:identifier`): the safeguarding Flags of the caller's
/// escalations about that patient.
pub(super) async fn search_flags(
    EscalationCaller(caller): EscalationCaller,
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, FhirError> {
    let (name, token) = match (
        params.len(),
        params.get("subject:identifier"),
        params.get("patient:identifier"),
    ) {
        (1, Some(v), None) => ("subject:identifier", v),
        (1, None, Some(v)) => ("patient:identifier", v),
        _ => {
            return Err(FhirError::BadRequest(vec![Issue::error(
                IssueCode::NotSupported,
                "search Flags by subject:identifier=system|value (the patient's NHS number)",
            )]));
        }
    };
    let token = search_value(name, token)?;
    let (system, value) = match token.split_once('|') {
        Some((system, value)) => (Some(system), value),
        None => (None, token),
    };
    let escalations = match whose(&caller) {
        Ok(Viewer::Referrer(referrer)) => {
            app.referrals
                .escalations_of_referrer(&referrer, SEARCH_LIMIT)
                .await?
        }
        // An admin names the patient's referrals by identifier elsewhere;
        // here it reads none (Flags are the referrer's to act on).
        Ok(Viewer::All | Viewer::Service(_)) | Err(()) => Vec::new(),
    };
    let flags: Vec<(String, String)> = escalations
        .into_iter()
        .filter_map(|e| Some((e.flag_id?, e.flag?)))
        .filter(|(_, flag)| {
            let Ok(flag) = serde_json::from_str::<Value>(flag) else {
                return false;
            };
            let identifier = &flag["subject"]["identifier"];
            identifier["value"] == value
                && system.is_none_or(|s| s.is_empty() || identifier["system"] == s)
        })
        .collect();
    let base = base_url(&app.config, &headers);
    let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
    Ok(searchset(
        &base,
        format!("{base}/Flag?{name}={encoded}"),
        "Flag",
        flags,
    ))
}

/// `PATCH /fhir/Task/{id}` (`application/json-patch+json`): the referrer
/// acknowledges an escalation: `status` accepted, rejected (with
/// `statusReason`) or completed (with the decision in `output`). Another
/// referrer's escalation, or a referral's own Task, is not found.
pub(super) async fn acknowledge(
    EscalationCaller(caller): EscalationCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, FhirError> {
    require_json_patch(&headers)?;
    let id: TaskId = path_id("Task", &id)?;
    let Ok(viewer) = whose(&caller) else {
        return Err(FhirError::NotFound("no Task has this id".into()));
    };
    let patch: Value = json_patch(&body)?;
    let e = app
        .referrals
        .acknowledge_escalation(&id, &viewer, caller.actor(), &patch)
        .await?;
    tracing::info!(escalation_id = %e.id, referral_id = %e.referral_id, status = %e.state, "escalation acknowledged");
    let referral_id = e.referral_id.clone();
    Ok(about_referral(
        resource_response(StatusCode::OK, e.version_id, e.task),
        &referral_id,
    ))
}
