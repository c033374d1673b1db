//! `GET /metrics`, for metrics scrapers (monitor tokens) and operators:
//! the registry ([`crate::metrics::Metrics`]) in the OpenMetrics text
//! format, with the outbox and disabled-endpoint gauges read from the
//! database at each scrape
//! (so they are right across several instances).

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chrono::Utc;

use super::{AppState, extract::Monitor};
use crate::referrals::Referrals;

/// The metrics route.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(scrape))
}

/// `GET /metrics`.
async fn scrape(_: Monitor, State(referrals): State<Arc<Referrals>>) -> Response {
    let outbox = match referrals.outbox_stats().await {
        Ok(outbox) => outbox,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the outbox for /metrics");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    let disabled = match referrals.disabled_endpoints().await {
        Ok(disabled) => disabled,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the disabled endpoints for /metrics");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    match referrals.reclaims_pending().await {
        Ok(pending) => referrals.metrics().set_reclaims_pending(pending),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the pending erasure reclaims for /metrics");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    }
    let disabled: Vec<String> = disabled.iter().map(|d| d.endpoint.to_string()).collect();
    let text = referrals.metrics().render(&outbox, &disabled, Utc::now());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}
