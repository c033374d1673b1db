//! Count and time every request by its route pattern (not the path, which
//! may hold ids) and method, into the registry ([`crate::metrics::Metrics`]).
//! Every label comes from a closed set (see [`method_label`] and
//! [`route_label`]), so no client can add series.

use std::{sync::Arc, time::Instant};

use super::{method_label, route_label};
use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

use crate::{metrics::Metrics, security::tokens::Caller};

/// Middleware: record the answered request.
pub async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = route_label(request.extensions()).to_owned();
    let response = next.run(request).await;
    metrics.request(
        &route,
        method,
        response.status().as_u16(),
        response
            .extensions()
            .get::<Caller>()
            .and_then(Caller::referrer),
        started.elapsed(),
    );
    response
}
