//! `POST /fhir/$process-message`: the BaRS receiver's endpoint (see
//! [`crate::bars`]). This handler only reads the headers and body, calls
//! the receiver and renders its answer, marked as BaRS-shaped. A failure
//! to authenticate or to read the body is answered as anywhere else and
//! given BaRS's shape (`REC_*`) by the `bars_answers` layer, as are the
//! shared layers' `408`, `429` and `503`. `X-Request-Id` and
//! `X-Correlation-Id` are echoed by the request-id layer.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::base_url;
use crate::{
    bars::{
        answer::{self, Refusal},
        headers::RawHeaders,
        message::Workflow,
    },
    http::{
        AppState, FhirCaller, FhirError, FhirJson, FhirResponse,
        middleware::{audit::about_referral, bars_answers::Shaped},
    },
    security::authz::sending_referrer,
};

pub(super) async fn process_message(
    caller: Result<FhirCaller, FhirError>,
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<FhirJson, FhirError>,
) -> Response {
    let receiver_ods = app
        .bars
        .receiver()
        .map_or("Signpost".to_owned(), |r| r.receiver_ods.clone());
    let refuse = |refusal: Refusal| {
        let status = StatusCode::from_u16(refusal.rec.status()).unwrap_or(StatusCode::BAD_REQUEST);
        shaped(
            FhirResponse::new(status, refusal.outcome(&receiver_ods).to_string()).into_response(),
        )
    };
    let referrer = match caller {
        Ok(FhirCaller(caller)) => match sending_referrer(&caller) {
            Ok(referrer) => referrer.to_owned(),
            Err(denied) => return FhirError::from(denied).into_response(),
        },
        Err(error) => return error.into_response(),
    };
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let raw = RawHeaders {
        request_id: text("x-request-id"),
        correlation_id: text("x-correlation-id"),
        target_identifier: text("nhsd-target-identifier"),
        end_user_organisation: text("nhsd-end-user-organisation"),
        requesting_software: text("nhsd-requesting-software"),
    };
    let checked = match raw.check() {
        Ok(checked) => checked,
        Err(refusal) => return refuse(refusal),
    };
    let body = match body {
        Ok(FhirJson(body)) => body,
        Err(error) => return error.into_response(),
    };
    match app.bars.process(&referrer, checked, body).await {
        Ok(processed) => {
            let what = match processed.workflow {
                Workflow::NewReferral => "referral accepted",
                Workflow::Cancellation(_) => "referral cancelled",
            };
            tracing::info!(
                referral_id = %processed.referral_id,
                referrer_id = %referrer,
                "{what} (BaRS)"
            );
            let outcome = answer::accepted(what, processed.referral_id.as_str());
            let mut response =
                FhirResponse::new(StatusCode::OK, outcome.to_string()).into_response();
            let location = format!(
                "{}/ServiceRequest/{}/_history/{}",
                base_url(&app.config, &headers),
                processed.referral_id,
                processed.version_id
            );
            if let Ok(location) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            shaped(about_referral(response, &processed.referral_id))
        }
        Err(refusal) => refuse(refusal),
    }
}

/// Marks an answer as BaRS-shaped already (see `bars_answers`).
fn shaped(mut response: Response) -> Response {
    response.extensions_mut().insert(Shaped);
    response
}
