//! FHIR answers: a status and a JSON body as `application/fhir+json`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

/// The media type of every FHIR answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A FHIR resource (or OperationOutcome, or Bundle) as the answer, already
/// serialised: stored resources are sent as stored, not parsed again.
pub struct FhirResponse {
    pub status: StatusCode,
    pub body: String,
}

impl FhirResponse {
    pub fn new(status: StatusCode, body: impl Into<String>) -> FhirResponse {
        FhirResponse {
            status,
            body: body.into(),
        }
    }
}

impl IntoResponse for FhirResponse {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
            self.body,
        )
            .into_response()
    }
}

/// An admin view's JSON answer, for people: bidirectional controls and
/// zero-width characters in it are JSON escapes, visible (see
/// [`crate::display`]); the data is the same.
pub struct VisibleJson(pub serde_json::Value);

impl IntoResponse for VisibleJson {
    fn into_response(self) -> Response {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            crate::display::visible_json(&self.0),
        )
            .into_response()
    }
}
