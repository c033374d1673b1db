//! An inbox provider's inbox (pull delivery; see
//! [`crate::referrals::inbox`]), for that provider's own token only
//! ([`InboxProvider`]):
//!
//! - `GET /providers/{id}/inbox?consumer=C&limit=N&lease=30s`: the next
//!   ready messages, leased to consumer `C` (`limit` default 100, at most
//!   1000; `lease` default `30s`, from `1s` to `1h`);
//! - `POST /providers/{id}/inbox/commit` with `{"consumer": "C", "offset":
//!   N}`: everything `C` holds up to `N` is delivered.
//!
//! Answers are JSON; failures are OperationOutcomes, as everywhere else,
//! and never repeat the values sent.

use std::{collections::HashMap, time::Duration};

use axum::{
    Json, Router,
    extract::{Query, State},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{AppState, FhirError, extract::InboxProvider, request::LimitedBody};
use crate::{
    config::parse_duration,
    outcome::{Issue, IssueCode},
    referrals::inbox::{CommitError, Consumer, InboxPage, LEASE_RANGE, MAX_LIMIT},
};

/// Messages handed out by a poll that does not say `limit`.
const DEFAULT_LIMIT: usize = 100;
/// A poll's lease when it does not say `lease`.
const DEFAULT_LEASE: Duration = Duration::from_secs(30);

/// The inbox routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers/{provider_id}/inbox", get(poll))
        .route("/providers/{provider_id}/inbox/commit", post(commit))
}

fn bad(text: impl Into<String>) -> FhirError {
    FhirError::BadRequest(vec![Issue::error(IssueCode::Value, text)])
}

/// `GET /providers/{id}/inbox`.
async fn poll(
    InboxProvider(provider): InboxProvider,
    State(app): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<InboxPage>, FhirError> {
    if params
        .keys()
        .any(|k| !matches!(k.as_str(), "consumer" | "limit" | "lease"))
    {
        return Err(bad(
            "unknown query parameter: the inbox takes consumer, limit and lease",
        ));
    }
    let consumer: Consumer = params
        .get("consumer")
        .ok_or_else(|| bad("`consumer` is required: the name your software polls under"))?
        .parse()
        .map_err(|e: crate::referrals::inbox::BadConsumer| bad(e.to_string()))?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "`limit` must be a whole number from 1 to {MAX_LIMIT}"
                ))
            })?,
    };
    let lease = match params.get("lease") {
        None => DEFAULT_LEASE,
        Some(text) => parse_duration(text)
            .filter(|d| (LEASE_RANGE.0..=LEASE_RANGE.1).contains(d))
            .ok_or_else(|| bad("`lease` must be a duration from 1s to 1h, such as 30s or 5m"))?,
    };
    let page = app
        .referrals
        .poll_inbox(&provider, &consumer, limit, lease)
        .await?;
    tracing::info!(provider_id = %provider, messages = page.data.len(), done = page.done, "inbox polled");
    Ok(Json(page))
}

/// `POST /providers/{id}/inbox/commit`.
async fn commit(
    InboxProvider(provider): InboxProvider,
    State(app): State<AppState>,
    LimitedBody(body): LimitedBody,
) -> Result<Json<Value>, FhirError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Commit {
        consumer: String,
        offset: i64,
    }
    let shape = || bad("send {\"consumer\": \"<name>\", \"offset\": <an offset handed out>}");
    let request: Commit = serde_json::from_slice(&body).map_err(|_| shape())?;
    let consumer: Consumer = request
        .consumer
        .parse()
        .map_err(|e: crate::referrals::inbox::BadConsumer| bad(e.to_string()))?;
    let committed = app
        .referrals
        .commit_inbox(&provider, &consumer, request.offset)
        .await
        .map_err(|e| match e {
            CommitError::NotHandedOut(_) => bad(format!(
                "{e}: commit an offset your consumer was given by GET /providers/{provider}/inbox"
            )),
            CommitError::NotHeld(_) => FhirError::Conflict(e.to_string()),
            CommitError::Store(e) => e.into(),
        })?;
    Ok(Json(json!({
        "offset": request.offset,
        "committed": committed,
    })))
}
