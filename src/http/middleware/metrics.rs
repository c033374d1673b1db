//! Count and time every request by its route pattern (not the path, which
//! may hold ids), into the registry ([`crate::metrics::Metrics`]).

use std::{sync::Arc, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};

use crate::{metrics::Metrics, security::tokens::Caller};

/// Middleware: record the answered request.
pub async fn record(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |m| m.as_str().to_owned());
    let response = next.run(request).await;
    metrics.request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        response
            .extensions()
            .get::<Caller>()
            .and_then(Caller::referrer),
        started.elapsed(),
    );
    response
}
