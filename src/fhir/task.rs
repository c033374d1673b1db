//! `Task`: read, and search by `focus` (the referral's ServiceRequest).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{
    AppState, FhirError, base_url, resource_id, resource_response, search_value, searchset,
};
use crate::outcome::{Issue, IssueCode};

/// `GET /fhir/Task/{id}`.
pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let task = app
        .referrals
        .task(resource_id("Task", &id)?)
        .await?
        .ok_or_else(|| FhirError::NotFound(format!("Task/{id} is not known")))?;
    Ok(resource_response(
        StatusCode::OK,
        task.version_id,
        task.resource,
    ))
}

/// `GET /fhir/Task?focus=ServiceRequest/{id}`.
pub async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, FhirError> {
    let Some(focus) = params.get("focus").filter(|v| !v.is_empty()) else {
        return Err(FhirError::BadRequest(vec![Issue::error(
            IssueCode::NotSupported,
            "search Tasks by focus=ServiceRequest/{id}",
        )]));
    };
    let base = base_url(&app.config, &headers);
    let tasks = app
        .referrals
        .tasks_for(search_value("focus", focus)?)
        .await?;
    let self_link = format!(
        "{base}/Task?focus={}",
        url::form_urlencoded::byte_serialize(focus.as_bytes()).collect::<String>()
    );
    Ok(searchset(
        &base,
        self_link,
        "Task",
        tasks.into_iter().map(|t| (t.id, t.resource)).collect(),
    ))
}
