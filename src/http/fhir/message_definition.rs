//! `GET /fhir/MessageDefinition[/{id}]`: the BaRS MessageDefinitions this
//! receiver supports (see [`crate::bars::definitions`]). Open, like
//! `metadata`: they describe the API and hold no data.

use axum::extract::State;
use axum::{
    extract::Path,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};

use super::{base_url, searchset};
use crate::{
    bars::definitions,
    http::{AppState, FhirError, FhirResponse},
};

/// Every supported definition, as a searchset.
pub(super) async fn search(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let base = base_url(&app.config, &headers);
    let resources = definitions::ALL
        .iter()
        .map(|d| {
            let resource = d.to_fhir();
            (
                resource["id"].as_str().unwrap_or_default().to_owned(),
                resource.to_string(),
            )
        })
        .collect();
    searchset(
        &base,
        format!("{base}/MessageDefinition"),
        "MessageDefinition",
        resources,
    )
}

/// One supported definition by id.
pub(super) async fn read(Path(id): Path<String>) -> Result<Response, FhirError> {
    definitions::ALL
        .iter()
        .map(|d| d.to_fhir())
        .find(|d| d["id"] == id.as_str())
        .map(|d| FhirResponse::new(StatusCode::OK, d.to_string()).into_response())
        .ok_or_else(|| FhirError::NotFound("no MessageDefinition has this id".into()))
}
