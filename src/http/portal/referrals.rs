//! The referrals list, a referral's page, and its actions (one form each,
//! posted to `/portal/referrals/{id}/{action}`). Only the actions the
//! state machine allows now are offered, and only those are taken.

use axum::{
    Form, Router,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    SignedInUser, csrf_matches, csrf_refused, error_page, html_page,
    layout::{self, Header},
    provider_name,
};
use crate::{
    domain::{ReferralId, Timestamp},
    http::{AppState, middleware::audit::about_referral},
    portal::{
        ActionError, ReferralPage, SignedIn,
        actions::{self, Action, ActionKind},
        view::{self, Field},
    },
    referrals::task::TaskStatus,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/portal/referrals", get(list))
        .route("/portal/referrals/{id}", get(referral))
        .route("/portal/referrals/{id}/{action}", post(act))
}

/// A status as the portal names it.
fn status_label(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Requested => "New",
        TaskStatus::Accepted => "Accepted",
        TaskStatus::Rejected => "Declined",
        TaskStatus::Cancelled => "Cancelled",
        TaskStatus::InProgress => "In progress",
        TaskStatus::OnHold => "On hold",
        TaskStatus::Completed => "Completed",
        TaskStatus::Failed => "Failed",
        TaskStatus::EnteredInError => "Entered in error",
    }
}

/// A time as people read it (UTC).
fn when(at: Timestamp) -> String {
    at.to_datetime().format("%-d %B %Y at %H:%M").to_string()
}

fn header<'a>(signed_in: &'a SignedIn, provider: &'a str) -> Header<'a> {
    Header {
        user_name: signed_in
            .user
            .name
            .as_deref()
            .unwrap_or(&signed_in.user.email),
        provider_name: provider,
        csrf: &signed_in.session.csrf_token,
    }
}

fn unavailable(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "portal page failed");
    error_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sorry, there is a problem with the service",
        "Try again later.",
    )
}

fn not_found() -> Response {
    error_page(
        StatusCode::NOT_FOUND,
        "Referral not found",
        "There is no referral to your organisation at this address.",
    )
}

#[derive(Deserialize)]
struct Search {
    #[serde(default)]
    q: String,
}

async fn list(
    State(app): State<AppState>,
    SignedInUser(signed_in): SignedInUser,
    Query(search): Query<Search>,
) -> Response {
    let list = match app.portal.referrals(&signed_in.user, &search.q).await {
        Ok(list) => list,
        Err(e) => return unavailable(e),
    };
    let provider = provider_name(&app, &signed_in);
    let markup = layout::page(
        "Referrals",
        false,
        Some(&header(&signed_in, &provider)),
        html! {
            h1 { "Referrals" }
            @if list.counts.is_empty() {
                p { "No referrals have been sent to " (provider) " yet." }
            } @else {
                h2 class="nhsuk-heading-s" { "By status" }
                ul class="nhsuk-list signpost-counts" {
                    @for (status, count) in &list.counts {
                        li { (status_label(*status)) ": " strong { (count) } }
                    }
                }
            }
            form method="get" action="/portal/referrals" novalidate {
                div class="nhsuk-form-group" {
                    label class="nhsuk-label" for="q" { "Search by name, NHS number or reference" }
                    input class="nhsuk-input nhsuk-input--width-20" id="q" name="q" type="search" value=(search.q) spellcheck="false" autocomplete="off";
                }
                (layout::button("Search", true))
            }
            @if list.referrals.is_empty() && !list.counts.is_empty() {
                p { "No referrals match your search." }
            } @else if !list.referrals.is_empty() {
                table class="nhsuk-table" {
                    caption class="nhsuk-table__caption nhsuk-table__caption--s" { "Referrals, new ones first" }
                    thead class="nhsuk-table__head" {
                        tr class="nhsuk-table__row" {
                            th class="nhsuk-table__header" scope="col" { "Name" }
                            th class="nhsuk-table__header" scope="col" { "Received" }
                            th class="nhsuk-table__header" scope="col" { "Status" }
                        }
                    }
                    tbody class="nhsuk-table__body" {
                        @for r in &list.referrals {
                            tr class="nhsuk-table__row" {
                                td class="nhsuk-table__cell" {
                                    a href=(format!("/portal/referrals/{}", r.id)) {
                                        (r.name.as_deref().unwrap_or("Referral"))
                                        span class="nhsuk-u-visually-hidden" { ", reference " (r.id) }
                                    }
                                }
                                td class="nhsuk-table__cell" { (when(r.received)) }
                                td class="nhsuk-table__cell" { (layout::tag(status_label(r.status))) }
                            }
                        }
                    }
                }
            }
        },
    );
    html_page(StatusCode::OK, markup)
}

/// Opening a referral in the portal: the audit record of the page view
/// names the referral (the user is named by the session layer), and for an
/// inbox provider it counts as collecting the referral (its messages waiting
/// in the inbox are delivered, recorded as by `portal:<user id>`). A failure
/// to record the collection does not hide the page: the inbox still holds
/// the messages, and the next opening or a poll collects them.
async fn on_referral_opened(
    app: &AppState,
    signed_in: &SignedIn,
    referral_id: &ReferralId,
    response: Response,
) -> Response {
    let collector = format!("portal:{}", signed_in.user.id);
    if let Err(e) = app
        .referrals
        .collected_from(&signed_in.user.provider_id, referral_id, &collector)
        .await
    {
        tracing::warn!(referral_id = %referral_id, error = %e, "opening a referral did not record its collection");
    }
    about_referral(response, referral_id)
}

async fn referral(
    State(app): State<AppState>,
    SignedInUser(signed_in): SignedInUser,
    Path(id): Path<String>,
) -> Response {
    let page = match app.portal.referral(&signed_in.user, &id).await {
        Ok(Some(page)) => page,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let provider = provider_name(&app, &signed_in);
    let markup = referral_markup(&page, &signed_in, &provider);
    let id = page.id.clone();
    on_referral_opened(&app, &signed_in, &id, html_page(StatusCode::OK, markup)).await
}

fn summary_list(fields: &[Field]) -> Markup {
    let values: Vec<&Field> = fields
        .iter()
        .filter(|f| matches!(f, Field::Value { .. }))
        .collect();
    html! {
        @if !values.is_empty() {
            dl class="nhsuk-summary-list" {
                @for field in values {
                    @if let Field::Value { label, text } = field {
                        div class="nhsuk-summary-list__row" {
                            dt class="nhsuk-summary-list__key" { (label) }
                            dd class="nhsuk-summary-list__value nhsuk-u-text-break-word" { (layout::multiline(text)) }
                        }
                    }
                }
            }
        }
        @for field in fields {
            @if let Field::Group { label, fields } = field {
                h3 class="nhsuk-heading-s" { (label) }
                (summary_list(fields))
            }
        }
    }
}

fn referral_markup(page: &ReferralPage, signed_in: &SignedIn, provider: &str) -> Markup {
    let name = page
        .payload
        .as_ref()
        .and_then(view::person_name)
        .unwrap_or_else(|| "Referral".into());
    let csrf = &signed_in.session.csrf_token;
    let allowed = actions::allowed(page.status);
    let base = format!("/portal/referrals/{}", page.id);
    layout::page(
        &name,
        false,
        Some(&header(signed_in, provider)),
        html! {
            a class="nhsuk-back-link" href="/portal/referrals" { "Back to referrals" }
            span class="nhsuk-caption-l nhsuk-u-text-break-word" { "Reference " (page.id) }
            h1 { (name) }
            p {
                (layout::tag(status_label(page.status)))
                @if let Some(business) = &page.business_status { " " (business) }
            }
            p { "Received " (when(page.received)) }
            @if page.payload.as_ref().is_some_and(view::safeguarding) {
                div class="nhsuk-card nhsuk-card--warning" {
                    div class="nhsuk-card__content" {
                        h2 class="nhsuk-card__heading" { "Safeguarding concern" }
                        p class="nhsuk-card__description" { "The referrer has flagged a safeguarding concern. Read the details before contacting this person." }
                    }
                }
            }
            h2 { "Referral details" }
            @if let Some(payload) = &page.payload {
                (summary_list(&view::fields(payload)))
            } @else {
                p { "The details of this referral cannot be shown." }
            }
            @if !page.notes.is_empty() {
                h2 { "Notes" }
                ul class="nhsuk-list" {
                    @for (at, text) in &page.notes {
                        li { (at.parse::<Timestamp>().map(when).unwrap_or_default()) ": " (layout::multiline(text)) }
                    }
                }
            }
            @if !page.escalations.is_empty() {
                h2 { "Escalations to a clinician" }
                ul class="nhsuk-list nhsuk-list--bullet" {
                    @for e in &page.escalations {
                        li class="nhsuk-u-text-break-word" {
                            strong { (e.reason) }
                            " (" (e.urgency) "), raised " (when(e.raised)) ": "
                            (escalation_label(e.status))
                            @if e.status == TaskStatus::Requested { ", answer due by " (when(e.deadline)) }
                            @if let Some(answer) = &e.answer { ". " (answer) }
                        }
                    }
                }
            }
            @if !allowed.is_empty() {
                h2 { "Update this referral" }
                @for kind in &allowed {
                    form method="post" action=(format!("{base}/{}", kind.slug())) novalidate class="nhsuk-u-margin-bottom-5" {
                        (layout::csrf_field(csrf))
                        (action_fields(*kind))
                        (layout::button(kind.button(), !matches!(kind, ActionKind::Accept)))
                    }
                }
            }
            @if !page.status.is_terminal() {
                h2 { "Escalate to a clinician" }
                p { "When this person's needs go beyond what your organisation can safely handle, ask the referrer's clinicians to take a look. The referral is put on hold until they answer." }
                form method="post" action=(format!("{base}/escalate")) novalidate class="nhsuk-u-margin-bottom-5" {
                    (layout::csrf_field(csrf))
                    (layout::radios("reason", "What is the concern?", &escalation_reasons()))
                    (layout::radios("urgency", "How urgent is it?", &[("routine", "Routine"), ("urgent", "Urgent")]))
                    (layout::textarea("observed", "What did you observe?", Some("The referrer's clinicians will see this.")))
                    (layout::button("Escalate to a clinician", true))
                }
            }
            h2 { "History" }
            // A list, not a table: it reads the same at a phone's width.
            ul class="nhsuk-list nhsuk-list--bullet" {
                @for event in &page.history {
                    li {
                        strong { (event.to_status.parse::<TaskStatus>().map(status_label).unwrap_or("Updated")) }
                        ", " (event.at.parse::<Timestamp>().map(when).unwrap_or_default())
                        ", by " (who(&event.actor))
                        @if let Some(reason) = &event.reason { ": " span class="nhsuk-u-text-break-word" { (reason) } }
                    }
                }
            }
        },
    )
}

/// The escalation reasons, as the form offers them.
fn escalation_reasons() -> Vec<(&'static str, &'static str)> {
    crate::referrals::escalation::REASONS
        .iter()
        .map(|r| (r.code, r.display))
        .collect()
}

/// Where an escalation stands, as its provider reads it.
fn escalation_label(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Requested => "waiting for an answer",
        TaskStatus::Accepted => "seen by the clinicians, who are taking it on",
        TaskStatus::Rejected => "declined by the clinicians",
        TaskStatus::Completed => "answered",
        _ => "closed",
    }
}

/// Who made a change, as the history names them.
fn who(actor: &str) -> &'static str {
    match actor.split_once(':').map(|(kind, _)| kind) {
        Some("referrer") => "The referrer",
        Some("portal") => "Your organisation (portal)",
        Some("provider") => "Your organisation (system)",
        Some("signpost") => "Signpost",
        Some("admin" | "cli") => "An administrator",
        _ => "Signpost",
    }
}

/// The fields an action's form asks for, besides its button.
fn action_fields(kind: ActionKind) -> Markup {
    let options = |list: &[&'static str]| -> Vec<(&'static str, &'static str)> {
        list.iter().map(|r| (*r, *r)).collect()
    };
    match kind {
        ActionKind::Accept | ActionKind::RecordFirstSession => html! {},
        ActionKind::Decline => html! {
            (layout::radios("decline_reason", "Why are you declining this referral?", &options(actions::DECLINE_REASONS)))
            (layout::textarea("decline_text", "More about why (optional)", Some("The referrer will see this.")))
        },
        ActionKind::RecordContact => html! {
            (layout::radios("reached", "Did you reach this person?", &[("yes", "Reached them"), ("no", "Could not reach them")]))
        },
        ActionKind::PutOnHold => html! {
            (layout::radios("hold_reason", "Why is this referral on hold?", &options(actions::HOLD_REASONS)))
        },
        ActionKind::Complete => html! {
            (layout::radios("outcome", "What was the outcome?", &options(actions::OUTCOMES)))
            @for (instrument, legend, hint, questions) in END_SCORES {
                div class="nhsuk-form-group" {
                    fieldset class="nhsuk-fieldset" {
                        legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { (legend) }
                        div class="nhsuk-hint" { (hint) }
                        @for (item, question) in *questions {
                            @let id = format!("{instrument}_{item}");
                            (layout::input(&layout::Input {
                                id: &id, label: question, kind: "text", autocomplete: "off",
                                hint: None, error: None, value: "", numeric: true,
                            }))
                        }
                    }
                }
            }
        },
        ActionKind::AddNote => html! {
            (layout::textarea("note", "Note", Some("The referrer will see this note.")))
        },
    }
}

/// The optional end-of-support scores on "Complete": per instrument, its
/// legend, hint and questions (field `<instrument>_<item>`).
#[allow(clippy::type_complexity)]
const END_SCORES: &[(&str, &str, &str, &[(&str, &str)])] = &[
    (
        "ons4",
        "ONS4 personal wellbeing at the end of support (optional)",
        "Each answer from 0 (not at all) to 10 (completely). Leave all four empty if the person did not answer.",
        &[
            (
                "life_satisfaction",
                "Overall, how satisfied are you with your life nowadays?",
            ),
            (
                "worthwhile",
                "Overall, to what extent do you feel that the things you do in your life are worthwhile?",
            ),
            ("happiness", "Overall, how happy did you feel yesterday?"),
            ("anxiety", "Overall, how anxious did you feel yesterday?"),
        ],
    ),
    (
        "swemwbs",
        "SWEMWBS at the end of support (optional)",
        "Each answer from 1 (none of the time) to 5 (all of the time). Leave all seven empty if the person did not answer.",
        &[
            (
                "optimistic",
                "I've been feeling optimistic about the future",
            ),
            ("useful", "I've been feeling useful"),
            ("relaxed", "I've been feeling relaxed"),
            (
                "dealing_with_problems",
                "I've been dealing with problems well",
            ),
            ("thinking_clearly", "I've been thinking clearly"),
            ("close_to_others", "I've been feeling close to other people"),
            (
                "own_mind",
                "I've been able to make up my own mind about things",
            ),
        ],
    ),
];

/// The end scores a "Complete" form holds, checked (an instrument left
/// wholly empty is not reported); or the question whose answer is wrong.
fn end_scores(
    form: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<crate::reports::outcomes::Outcome>, &'static str> {
    use serde_json::{Value, json};
    let mut outcomes = Vec::new();
    let mut asked = Vec::new();
    for (instrument, _, _, questions) in END_SCORES {
        let answer = |item: &str| {
            form.get(&format!("{instrument}_{item}"))
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
        };
        if questions.iter().all(|(item, _)| answer(item).is_none()) {
            continue;
        }
        let items: serde_json::Map<String, Value> = questions
            .iter()
            .filter_map(|(item, _)| {
                // Not a number: kept as text, which the check refuses.
                answer(item).map(|v| {
                    let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
                    ((*item).to_owned(), value)
                })
            })
            .collect();
        outcomes.push(json!({"instrument": instrument, "timepoint": "end", "items": items}));
        asked.push(*questions);
    }
    crate::reports::outcomes::parse(Some(&Value::Array(outcomes))).map_err(|e| {
        // `outcomes[i].items.<item>` → the question, never the answer.
        let (index, item) = e
            .field
            .strip_prefix("outcomes[")
            .and_then(|rest| rest.split_once("].items."))
            .unwrap_or(("0", ""));
        index
            .parse::<usize>()
            .ok()
            .and_then(|i| asked.get(i))
            .and_then(|questions| questions.iter().find(|(name, _)| *name == item))
            .map_or("a wellbeing score", |(_, question)| *question)
    })
}

#[derive(Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    decline_reason: Option<String>,
    #[serde(default)]
    decline_text: String,
    reached: Option<String>,
    hold_reason: Option<String>,
    outcome: Option<String>,
    #[serde(default)]
    note: String,
    // "Escalate to a clinician".
    reason: Option<String>,
    urgency: Option<String>,
    #[serde(default)]
    observed: String,
    /// The end scores on "Complete" (`ons4_…`, `swemwbs_…`).
    #[serde(flatten)]
    scores: std::collections::BTreeMap<String, String>,
}

/// The action a form asks for, if its choices are ones the form offered.
fn action_from(kind: ActionKind, form: &ActionForm) -> Option<Action> {
    let chosen = |value: &Option<String>, list: &[&str]| {
        value
            .as_deref()
            .filter(|v| list.contains(v))
            .map(str::to_owned)
    };
    Some(match kind {
        ActionKind::Accept => Action::Accept,
        ActionKind::Decline => Action::Decline {
            reason: chosen(&form.decline_reason, actions::DECLINE_REASONS)?,
            text: form.decline_text.chars().take(1000).collect(),
        },
        ActionKind::RecordContact => Action::RecordContact {
            reached: match form.reached.as_deref()? {
                "yes" => true,
                "no" => false,
                _ => return None,
            },
        },
        ActionKind::RecordFirstSession => Action::RecordFirstSession,
        ActionKind::PutOnHold => Action::PutOnHold {
            reason: chosen(&form.hold_reason, actions::HOLD_REASONS)?,
        },
        ActionKind::Complete => Action::Complete {
            outcome: chosen(&form.outcome, actions::OUTCOMES)?,
            // Checked in `act`, before this (a wrong answer has its own
            // message).
            scores: end_scores(&form.scores).ok()?,
        },
        ActionKind::AddNote => {
            let text = form.note.trim();
            if text.is_empty() {
                return None;
            }
            Action::AddNote {
                text: text.chars().take(2000).collect(),
            }
        }
    })
}

async fn act(
    State(app): State<AppState>,
    SignedInUser(signed_in): SignedInUser,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<ActionForm>,
) -> Response {
    if !csrf_matches(&form.csrf, &signed_in.session.csrf_token) {
        return csrf_refused();
    }
    let Ok(referral_id) = id.parse::<ReferralId>() else {
        return not_found();
    };
    if action == "escalate" {
        return about_referral(
            escalate(&app, &signed_in, &referral_id, &form).await,
            &referral_id,
        );
    }
    let Some(kind) = ActionKind::from_slug(&action) else {
        return not_found();
    };
    if kind == ActionKind::Complete
        && let Err(question) = end_scores(&form.scores)
    {
        return about_referral(
            error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Check the wellbeing scores",
                &format!(
                    "Answer every question of a questionnaire, each with a whole number in its range, or leave the questionnaire empty. Check: \"{question}\""
                ),
            ),
            &referral_id,
        );
    }
    let Some(action) = action_from(kind, &form) else {
        return about_referral(
            error_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Something is missing",
                "Choose one of the options (or write the note) and try again.",
            ),
            &referral_id,
        );
    };
    let answer = match app.portal.act(&signed_in, &referral_id, &action).await {
        Ok(_) => Redirect::to(&format!("/portal/referrals/{referral_id}")).into_response(),
        Err(ActionError::NotFound) => not_found(),
        Err(ActionError::NotAllowed(_)) => error_page(
            StatusCode::CONFLICT,
            "This referral has changed",
            "This action is no longer possible for this referral. Go back and reload the page.",
        ),
        Err(ActionError::Store(e)) => unavailable(e),
    };
    about_referral(answer, &referral_id)
}

/// "Escalate to a clinician": the escalation, then back to the referral.
async fn escalate(
    app: &AppState,
    signed_in: &SignedIn,
    referral_id: &ReferralId,
    form: &ActionForm,
) -> Response {
    use crate::referrals::escalation::EscalationError;
    let observed: String = form.observed.trim().chars().take(10_000).collect();
    match app
        .portal
        .escalate(
            signed_in,
            referral_id,
            form.reason.as_deref().unwrap_or_default(),
            form.urgency.as_deref().unwrap_or_default(),
            &observed,
        )
        .await
    {
        Ok(()) => Redirect::to(&format!("/portal/referrals/{referral_id}")).into_response(),
        Err(EscalationError::NotFound(_)) => not_found(),
        Err(EscalationError::Invalid { .. }) => error_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Something is missing",
            "Choose the concern and how urgent it is, write what you observed, and try again.",
        ),
        Err(EscalationError::Conflict(_)) => error_page(
            StatusCode::CONFLICT,
            "This referral cannot be escalated now",
            "It may have finished, or already have an open escalation for this concern. Go back and reload the page.",
        ),
        Err(EscalationError::Store(e)) => unavailable(e),
    }
}
