//! `Task`: read, and search by `focus` (the referral's ServiceRequest)
//! and/or `_lastUpdated` (for referrers that poll instead of, or as well
//! as, receiving notifications), or by `part-of` (an escalation's child
//! Tasks: `escalation.rs`).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

use super::{base_url, path_id, resource_response, search_value, searchset, visible_referral};
use crate::{
    domain::{ReferralId, ReferrerId, TaskId},
    http::{AppState, EscalationCaller, FhirError, middleware::audit::about_referral},
    outcome::{Issue, IssueCode},
    security::authz::{self, Visible},
};

/// Most Tasks one search returns.
const SEARCH_LIMIT: i64 = 1000;

/// `GET /fhir/Task/{id}`.
pub(super) async fn read(
    EscalationCaller(caller): EscalationCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let not_found = || FhirError::NotFound("no Task has this id".into());
    let id = path_id::<TaskId>("Task", &id)?;
    let Some(task) = app.referrals.task(&id).await? else {
        // An escalation's child Task (`escalation.rs`), if the caller's.
        let child = super::escalation::child_task(&app, &caller, &id)
            .await?
            .ok_or_else(not_found)?;
        let referral_id = child.referral_id.clone();
        let response = resource_response(StatusCode::OK, child.version_id, child.task);
        return Ok(about_referral(response, &referral_id));
    };
    // A Task is visible to whoever may see its referral.
    visible_referral(&app, &caller, &task.referral_id)
        .await
        .map_err(|_| not_found())?;
    let referral_id = task.referral_id.clone();
    let response = resource_response(StatusCode::OK, task.version_id, task.resource);
    Ok(about_referral(response, &referral_id))
}

/// `GET /fhir/Task?focus=ServiceRequest/{id}&_lastUpdated=gt2026-11-22T10:00:00Z`
/// (either parameter, or both).
pub(super) async fn search(
    EscalationCaller(caller): EscalationCaller,
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, FhirError> {
    let bad = |text: &str| FhirError::BadRequest(vec![Issue::error(IssueCode::NotSupported, text)]);
    if let Some(part_of) = params.get("part-of") {
        if params.len() > 1 {
            return Err(bad("search escalations by part-of=Task/{id} alone"));
        }
        return super::escalation::search_part_of(&app, &caller, &headers, part_of).await;
    }
    if params
        .keys()
        .any(|k| !["focus", "_lastUpdated"].contains(&k.as_str()))
    {
        return Err(bad(
            "a search parameter is not supported; use focus and/or _lastUpdated, or part-of",
        ));
    }
    let focus = params.get("focus").filter(|v| !v.is_empty());
    let updated = params
        .get("_lastUpdated")
        .map(|v| LastUpdated::parse(v))
        .transpose()?;
    let tasks = match (focus, &updated) {
        (Some(focus), _) => {
            let id = search_value("focus", focus)?;
            let id = id.strip_prefix("ServiceRequest/").unwrap_or(id);
            let visible = match path_id::<ReferralId>("ServiceRequest", id) {
                Ok(id) => visible_referral(&app, &caller, &id).await.map(|r| r.id),
                Err(e) => Err(e),
            };
            match visible {
                Ok(id) => app.referrals.tasks_for(&id).await?,
                // Another referrer's (or no) referral: no Tasks.
                Err(FhirError::NotFound(_)) => Vec::new(),
                Err(e) => return Err(e),
            }
        }
        (None, Some(updated)) => match authz::visible(&caller) {
            // A monitor (which never gets this far) sees no Tasks.
            Visible::Nothing => Vec::new(),
            visible => {
                // (A referrer whose id cannot be one has sent no referral.)
                let sent_by = match visible {
                    Visible::SentBy(referrer) => Some(referrer.parse::<ReferrerId>().ok()),
                    Visible::All | Visible::Nothing => None,
                };
                match sent_by {
                    Some(None) => Vec::new(),
                    sent_by => {
                        app.referrals
                            .tasks_updated_since(
                                updated.lower_bound(),
                                sent_by.flatten().as_ref(),
                                SEARCH_LIMIT,
                            )
                            .await?
                    }
                }
            }
        },
        (None, None) => {
            return Err(bad(
                "search Tasks by focus=ServiceRequest/{id} and/or _lastUpdated=gt<instant>",
            ));
        }
    };
    let tasks: Vec<_> = tasks
        .into_iter()
        .filter(|t| {
            updated
                .as_ref()
                .is_none_or(|u| u.matches(&t.last_updated.to_string()))
        })
        .collect();
    let base = base_url(&app.config, &headers);
    let mut query: Vec<String> = Vec::new();
    for key in ["focus", "_lastUpdated"] {
        if let Some(value) = params.get(key) {
            let value: String = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            query.push(format!("{key}={value}"));
        }
    }
    let self_link = format!("{base}/Task?{}", query.join("&"));
    let referral_id = match tasks.as_slice() {
        [one] if focus.is_some() => Some(one.referral_id.clone()),
        _ => None,
    };
    let response = searchset(
        &base,
        self_link,
        "Task",
        tasks
            .into_iter()
            .map(|t| (t.id.into(), t.resource))
            .collect(),
    );
    Ok(match referral_id {
        Some(id) => about_referral(response, &id),
        None => response,
    })
}

/// A `_lastUpdated` search: a prefix and an instant, normalised to the
/// stored form (UTC, milliseconds) so that comparing text compares time.
struct LastUpdated {
    prefix: Prefix,
    instant: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Gt,
    Ge,
}

impl LastUpdated {
    fn parse(value: &str) -> Result<LastUpdated, FhirError> {
        let (prefix, rest) = match value.get(..2) {
            Some("gt") => (Prefix::Gt, &value[2..]),
            Some("ge") => (Prefix::Ge, &value[2..]),
            _ => {
                return Err(FhirError::BadRequest(vec![Issue::error(
                    IssueCode::NotSupported,
                    "_lastUpdated supports the gt and ge prefixes (changes since an instant)",
                )]));
            }
        };
        let instant = DateTime::parse_from_rfc3339(rest)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                NaiveDate::parse_from_str(rest, "%Y-%m-%d")
                    .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
            })
            .map_err(|_| {
                FhirError::BadRequest(vec![Issue::error(
                    IssueCode::Value,
                    "_lastUpdated must be a date or an instant with a time zone, e.g. gt2026-11-22T10:00:00Z",
                )])
            })?;
        Ok(LastUpdated {
            prefix,
            instant: instant.to_rfc3339_opts(SecondsFormat::Millis, true),
        })
    }

    fn lower_bound(&self) -> &str {
        &self.instant
    }

    fn matches(&self, last_updated: &str) -> bool {
        match self.prefix {
            Prefix::Gt => last_updated > self.instant.as_str(),
            Prefix::Ge => last_updated >= self.instant.as_str(),
        }
    }
}
