//! What happens to a referral after intake: provider status callbacks, the
//! referrer's cancellation, and Signpost's own "delivery failed". Each one
//! moves the Task through the state machine ([`super::task`]) and, in the
//! same transaction, queues a notification to the referrer (and, for a
//! cancellation, a message to the provider).

use serde_json::{Value, json};

use super::{
    Referrals,
    escalation::{EscalationError, RaiseRequest},
    retry_on_conflict,
    task::{TaskChange, TaskStatus, apply_change},
};
use crate::{
    config::Notify,
    domain::{
        Actor, Endpoint, MessageId, MessageKind, ProviderId, ReferralId, Timestamp,
        model::{
            BarsExchange, CallbackApplied, InboundCallback, NewMessage, Notification, Referral,
            Task, TaskUpdate,
        },
    },
    outcome::{Issue, IssueCode},
    reports::facts::JourneyStep,
    store::StoreError,
};

/// A new outbox message, created and due `now`.
pub fn new_message(
    referral_id: &ReferralId,
    endpoint: Endpoint,
    kind: MessageKind,
    payload: String,
    now: Timestamp,
) -> NewMessage {
    NewMessage {
        id: MessageId::generate(),
        referral_id: referral_id.clone(),
        endpoint,
        kind,
        payload,
        created_at: now.to_string(),
        next_attempt_at: now.as_millis(),
        replay_of: None,
        event_number: None,
        priority: 0,
    }
}

/// Why a Task change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such referral (or not one this caller may change).
    #[error("{0}")]
    NotFound(String),
    /// The state machine forbids it.
    #[error("{0}")]
    Conflict(String),
    /// The request is not a change Signpost can make.
    #[error("{0}")]
    Unprocessable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl super::MayConflict for ChangeError {
    /// The write lost a race (not the state machine's refusal, which
    /// [`ChangeError::Conflict`] is: trying again would not change it).
    fn is_conflict(&self) -> bool {
        matches!(self, ChangeError::Store(StoreError::Conflict))
    }
}

/// The answer to a provider's status callback.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// The Task changed (or took the business status) and the referrer
    /// will be told.
    Applied {
        referral_id: String,
        task_id: String,
        status: String,
    },
    /// This webhook-id was received before: nothing changed; the answer
    /// then was `status`.
    Duplicate { status: u16, outcome: String },
    /// Refused and recorded.
    Refused { status: u16, issues: Vec<Issue> },
}

impl Referrals {
    /// The update that applies `change` to the referral's Task, with the
    /// notification to its referrer; or why the state machine refuses it.
    async fn prepare_update(
        &self,
        referral: &Referral,
        change: &TaskChange,
        actor: Actor,
        by_referrer: bool,
    ) -> Result<TaskUpdate, ChangeError> {
        let (task, current) = self.current_task(referral).await?;
        self.update_from(referral, task, &current, change, actor, by_referrer)
            .await
    }

    /// The referral's Task as stored, and its resource.
    pub(super) async fn current_task(
        &self,
        referral: &Referral,
    ) -> Result<(Task, Value), ChangeError> {
        let task = self
            .store
            .tasks_for_referral(&referral.id)
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ChangeError::NotFound(format!("the referral {} has no Task", referral.id))
            })?;
        let current: Value = serde_json::from_str(&task.resource)
            .map_err(|e| ChangeError::Unprocessable(format!("stored Task unreadable: {e}")))?;
        Ok((task, current))
    }

    /// The update applying `change` to `task` as read (`current` is its
    /// resource): the write expects that version, so a change stored since
    /// is a conflict, never overwritten.
    pub(super) async fn update_from(
        &self,
        referral: &Referral,
        task: Task,
        current: &Value,
        change: &TaskChange,
        actor: Actor,
        by_referrer: bool,
    ) -> Result<TaskUpdate, ChangeError> {
        let at = self.clock.now();
        let now = at.to_string();
        let (next, status) = apply_change(current, change, by_referrer, &now)
            .map_err(|e| ChangeError::Conflict(format!("{e}; the change was not applied")))?;
        // The Task version it carries; the store numbers it, and the
        // Bundle is built when it is sent (`notification::body`, or for a
        // referrer told the BaRS way `bars::response`). A referrer told
        // the BaRS way hears only of referrals that came by BaRS: there is
        // no request message to answer otherwise (it polls the Task).
        let told = match self.config.referrers.get(&referral.referrer_id) {
            Some(referrer) if referrer.notify == Notify::Bars => self
                .store
                .bars_referral_message(&referral.id)
                .await?
                .is_some(),
            _ => true,
        };
        let notification = told.then(|| Notification {
            referrer_id: referral.referrer_id.clone(),
            message: new_message(
                &referral.id,
                Endpoint::Referrer(referral.referrer_id.clone()),
                MessageKind::Notification,
                next.to_string(),
                at,
            ),
        });
        Ok(TaskUpdate {
            task: Task {
                id: task.id,
                referral_id: task.referral_id,
                status,
                version_id: task.version_id + 1,
                last_updated: at,
                resource: next.to_string(),
            },
            expected_version: task.version_id,
            from_status: task.status,
            reason: change
                .status_reason
                .clone()
                .or_else(|| change.business_status.clone()),
            step: JourneyStep::of(
                at,
                task.status,
                status,
                &actor,
                change.status_reason.as_deref(),
                change.business_status.as_deref(),
            )
            .with_outcomes(crate::reports::outcomes::OutcomeFacts::of(&change.outcomes))
            .with_reason_code(
                next.pointer("/statusReason/coding/0/code")
                    .and_then(Value::as_str),
            ),
            actor,
            notification,
            referral: None,
            messages: Vec::new(),
            bars: None,
        })
    }

    /// Handle a provider's status callback whose signature has been
    /// verified: map it with the provider's inbound template, check it
    /// against the state machine, apply it and queue the referrer's
    /// notification. Every callback is recorded under its webhook-id, the
    /// refused ones too; a webhook-id seen before changes nothing.
    pub async fn provider_callback(
        &self,
        provider_id: &ProviderId,
        webhook_id: &str,
        body: &str,
    ) -> Result<CallbackOutcome, StoreError> {
        if let Some(first) = self.store.inbound(provider_id, webhook_id).await? {
            return Ok(duplicate(first));
        }
        let received_at = self.clock.now().to_string();
        let record =
            |referral_id: Option<ReferralId>, status: u16, outcome: String| InboundCallback {
                provider_id: provider_id.clone(),
                webhook_id: webhook_id.to_owned(),
                received_at: received_at.clone(),
                referral_id,
                body: body.to_owned(),
                response_status: i64::from(status),
                outcome,
            };
        let record = &record;
        retry_on_conflict(|| async move {
            let (referral_id, result) = self.map_callback(provider_id, body).await?;
            let (inbound, update, escalation, outcome) = match result {
                Ok(Mapped {
                    update,
                    escalation,
                    task_id,
                    status,
                }) => (
                    record(referral_id.clone(), 200, "applied".into()),
                    update,
                    escalation,
                    CallbackOutcome::Applied {
                        referral_id: referral_id.map(String::from).unwrap_or_default(),
                        task_id,
                        status,
                    },
                ),
                Err((status, issues)) => {
                    // Only the kind of refusal: its wording may quote what
                    // the provider sent (an NHS number, a name), and this
                    // record is kept, listed and answered again.
                    let why = issues
                        .first()
                        .and_then(|i| serde_json::to_value(i.code).ok())
                        .and_then(|code| code.as_str().map(|code| format!("refused: {code}")))
                        .unwrap_or_else(|| "refused".to_owned());
                    (
                        record(referral_id, status, why),
                        None,
                        None,
                        CallbackOutcome::Refused { status, issues },
                    )
                }
            };
            let raised = escalation
                .as_ref()
                .map(|(e, _)| (e.id.clone(), e.urgency.clone()));
            match self.store.apply_callback(inbound, update, escalation).await? {
                // (The store wakes the delivery worker for the notification.)
                CallbackApplied::Applied => {
                    if let Some((id, urgency)) = raised {
                        self.metrics.escalation_raised(provider_id.as_str(), &urgency);
                        tracing::info!(provider_id = %provider_id, webhook_id, escalation_id = %id, "escalation raised by a status callback");
                    }
                    Ok(outcome)
                }
                CallbackApplied::Duplicate(first) => Ok(duplicate(first)),
            }
        })
        .await
    }

    /// The Task update a callback asks for, or the HTTP status and issues
    /// that refuse it. Also returns the referral id the callback named.
    #[allow(clippy::type_complexity)]
    async fn map_callback(
        &self,
        provider_id: &ProviderId,
        body: &str,
    ) -> Result<(Option<ReferralId>, Result<Mapped, (u16, Vec<Issue>)>), StoreError> {
        let refuse = |status: u16, code: IssueCode, text: String| {
            Err((status, vec![Issue::error(code, text)]))
        };
        let callback: Value = match serde_json::from_str(body) {
            Ok(value) => value,
            Err(e) => {
                return Ok((
                    None,
                    refuse(
                        400,
                        IssueCode::Invalid,
                        format!(
                            "the body is not JSON: {}",
                            crate::validation::document::place(&e)
                        ),
                    ),
                ));
            }
        };
        let Some(mapping) = self
            .mappings
            .load()
            .mappings
            .get(provider_id.as_str())
            .cloned()
        else {
            return Ok((
                None,
                refuse(
                    404,
                    IssueCode::NotFound,
                    format!("no mapping is loaded for provider {provider_id}"),
                ),
            ));
        };
        let status_change = match mapping.status_change(&callback) {
            Ok(change) => change,
            Err(issues) => return Ok((None, Err((422, issues)))),
        };
        let named = &status_change.referral_id;
        // A referral that is not known (or whose id cannot be one), or was
        // not sent to this provider, is answered the same way: nothing
        // about other providers' referrals is revealed.
        let found = match named.parse::<ReferralId>() {
            Ok(id) => self.store.referral(&id).await?,
            Err(_) => None,
        };
        let referral = match found {
            Some(r) if r.provider_id.as_ref() == Some(provider_id) => r,
            _ => {
                return Ok((
                    None,
                    refuse(
                        404,
                        IssueCode::NotFound,
                        format!(
                            "no referral with the callback's reference was sent to {provider_id}"
                        ),
                    ),
                ));
            }
        };
        let referral_id = referral.id.clone();
        // An erased referral is a tombstone: a change (even one the state
        // machine would let through, such as a business status) would put
        // what the provider says about the patient back on its Task and in
        // the referrer's notification. (The store keeps no body for it
        // either.)
        if referral.is_erased() {
            return Ok((
                Some(referral_id),
                refuse(
                    409,
                    IssueCode::Conflict,
                    "this referral was erased; it takes no more status changes".into(),
                ),
            ));
        }
        // Scores are checked first so that the refusal names the field
        // (never its value: a wellbeing score is health data).
        if let Err(e) = crate::reports::outcomes::parse(status_change.change.get("outcomes")) {
            return Ok((
                Some(referral_id),
                Err((
                    422,
                    vec![
                        Issue::error(
                            IssueCode::Value,
                            format!("mapping {provider_id}: inbound.change: {e}"),
                        )
                        .at(e.field),
                    ],
                )),
            ));
        }
        let change = match TaskChange::from_mapping(&status_change.change) {
            Ok(change) => change,
            Err(e) => {
                return Ok((
                    Some(referral_id),
                    refuse(
                        422,
                        IssueCode::BusinessRule,
                        format!("mapping {provider_id}: inbound.change: {e}"),
                    ),
                ));
            }
        };
        // An escalation the mapping emits beside (or instead of) the
        // change: checked before anything is applied, so a refusal leaves
        // both undone.
        let escalation_request = match status_change.escalation {
            None => None,
            Some(mut asked) => {
                asked["referral"] = json!(referral_id.as_str());
                match RaiseRequest::parse(&asked) {
                    Ok(request) => Some(request),
                    Err(EscalationError::Invalid { text, .. }) => {
                        return Ok((
                            Some(referral_id),
                            refuse(
                                422,
                                IssueCode::BusinessRule,
                                format!("mapping {provider_id}: inbound.escalation: {text}"),
                            ),
                        ));
                    }
                    Err(_) => {
                        return Ok((
                            Some(referral_id),
                            refuse(
                                422,
                                IssueCode::BusinessRule,
                                format!("mapping {provider_id}: inbound.escalation cannot be read"),
                            ),
                        ));
                    }
                }
            }
        };
        if change == TaskChange::default() && escalation_request.is_none() {
            return Ok((
                Some(referral_id),
                refuse(
                    422,
                    IssueCode::BusinessRule,
                    format!(
                        "mapping {provider_id} turns this callback into no Task change; it was not applied"
                    ),
                ),
            ));
        }
        let refusal = |e: ChangeError| -> Result<Result<Mapped, (u16, Vec<Issue>)>, StoreError> {
            match e {
                ChangeError::Conflict(text) => Ok(refuse(409, IssueCode::Conflict, text)),
                ChangeError::NotFound(text) => Ok(refuse(404, IssueCode::NotFound, text)),
                ChangeError::Unprocessable(text) => Ok(refuse(422, IssueCode::BusinessRule, text)),
                ChangeError::Store(e) => Err(e),
            }
        };
        let actor = Actor::Provider(provider_id.clone());
        let update = if change == TaskChange::default() {
            None
        } else {
            match self
                .prepare_update(&referral, &change, actor.clone(), false)
                .await
            {
                Ok(update) => Some(update),
                Err(e) => return refusal(e).map(|r| (Some(referral_id), r)),
            }
        };
        let escalation = match escalation_request {
            None => None,
            Some(request) => {
                if self
                    .has_open_escalation(&referral.id, request.reason)
                    .await?
                {
                    return Ok((
                        Some(referral_id),
                        refuse(
                            409,
                            IssueCode::Conflict,
                            "this referral already has an open escalation with this reason; the callback was not applied".into(),
                        ),
                    ));
                }
                // On the Task as the change leaves it.
                let (task, current) = match &update {
                    Some(u) => (
                        u.task.clone(),
                        serde_json::from_str(&u.task.resource).map_err(|e| {
                            StoreError::NotCommitted(format!("Task unreadable: {e}"))
                        })?,
                    ),
                    None => match self.current_task(&referral).await {
                        Ok(read) => read,
                        Err(e) => return refusal(e).map(|r| (Some(referral_id), r)),
                    },
                };
                match self
                    .prepare_escalation(&referral, task, &current, provider_id, actor, &request)
                    .await
                {
                    Ok(pair) => Some(pair),
                    Err(EscalationError::Store(e)) => return Err(e),
                    Err(EscalationError::NotFound(text)) => {
                        return Ok((Some(referral_id), refuse(404, IssueCode::NotFound, text)));
                    }
                    Err(EscalationError::Conflict(text)) => {
                        return Ok((Some(referral_id), refuse(409, IssueCode::Conflict, text)));
                    }
                    Err(EscalationError::Invalid { text, .. }) => {
                        return Ok((
                            Some(referral_id),
                            refuse(422, IssueCode::BusinessRule, text),
                        ));
                    }
                }
            }
        };
        // (One of the two is there.)
        let last = escalation.as_ref().map(|(_, u)| u).or(update.as_ref());
        let (task_id, status) = last
            .map(|u| (u.task.id.to_string(), u.task.status.to_string()))
            .unwrap_or_default();
        Ok((
            Some(referral_id),
            Ok(Mapped {
                update,
                escalation,
                task_id,
                status,
            }),
        ))
    }

    /// The referrer cancels its referral (ServiceRequest status `revoked`)
    /// or marks it `entered-in-error`: a new version of the ServiceRequest,
    /// the Task cancelled (or entered-in-error), the provider sent its
    /// cancellation message when its mapping has one, and the referrer
    /// notified. Returns the new ServiceRequest version. `bars`, the BaRS
    /// message asking for it, is recorded with the change; if its sender
    /// already used the request id, nothing changes and the answer is a
    /// conflict (the caller looks the first message up).
    pub async fn withdraw(
        &self,
        referral_id: &ReferralId,
        new_status: &str,
        bars: Option<&BarsExchange>,
    ) -> Result<Referral, ChangeError> {
        let task_status = match new_status {
            "revoked" => TaskStatus::Cancelled,
            "entered-in-error" => TaskStatus::EnteredInError,
            _ => {
                return Err(ChangeError::Unprocessable(
                    "a referral's status can only be changed to revoked (cancel) or entered-in-error"
                        .into(),
                ));
            }
        };
        retry_on_conflict(|| async move {
            let referral = self
                .store
                .referral(referral_id)
                .await?
                .ok_or_else(|| ChangeError::NotFound("no ServiceRequest has this id".into()))?;
            let mut resource: Value = serde_json::from_str(&referral.resource).map_err(|e| {
                ChangeError::Unprocessable(format!("stored referral unreadable: {e}"))
            })?;
            let change = TaskChange {
                status: Some(task_status),
                status_reason: Some(match task_status {
                    TaskStatus::Cancelled => "cancelled by the referrer".into(),
                    _ => "entered in error by the referrer".into(),
                }),
                ..TaskChange::default()
            };
            let mut update = self
                .prepare_update(
                    &referral,
                    &change,
                    Actor::Referrer(referral.referrer_id.clone()),
                    true,
                )
                .await?;
            // The referral's new version, and the cancellation, are as of
            // the Task change.
            let at = update.task.last_updated;
            let now = at.to_string();
            resource["status"] = json!(new_status);
            resource["meta"]["versionId"] = json!((referral.version_id + 1).to_string());
            resource["meta"]["lastUpdated"] = json!(now);
            let revised = Referral {
                version_id: referral.version_id + 1,
                last_updated: at,
                resource: resource.to_string(),
                ..referral.clone()
            };
            if let Some(provider_id) = &referral.provider_id
                && let Some(mapping) = self
                    .mappings
                    .load()
                    .mappings
                    .get(provider_id.as_str())
                    .cloned()
            {
                let payload = mapping.cancellation(&resource).map_err(|issues| {
                    ChangeError::Unprocessable(
                        issues
                            .into_iter()
                            .map(|i| i.diagnostics)
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                })?;
                if let Some(payload) = payload {
                    update.messages.push(new_message(
                        &referral.id,
                        Endpoint::Provider(provider_id.clone()),
                        MessageKind::Cancel,
                        payload.to_string(),
                        at,
                    ));
                }
            }
            update.referral = Some(revised.clone());
            update.bars = bars.cloned();
            self.store.update_task(update).await?;
            Ok(revised)
        })
        .await
    }

    /// The update recording that a message to the provider was dead-lettered:
    /// the Task keeps its status and shows businessStatus "delivery failed",
    /// so the referrer sees it (and is notified).
    pub async fn delivery_failed_update(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Option<TaskUpdate>, StoreError> {
        self.delivery_business_status(referral_id, DELIVERY_FAILED, |_| true)
            .await
    }

    /// The update recording that an inbox provider has not collected the
    /// referral in time: businessStatus "not yet collected by provider",
    /// which the referrer is notified of like any change.
    pub async fn not_collected_update(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Option<TaskUpdate>, StoreError> {
        self.delivery_business_status(referral_id, NOT_COLLECTED, |_| true)
            .await
    }

    /// The update that replaces the Task's "delivery failed" (or an inbox's
    /// "not yet collected by provider") with "delivered" once the message
    /// has reached the provider, with the notification telling the
    /// referrer; `None` when the Task says neither (the provider has
    /// reported since, or nothing went wrong).
    pub async fn delivery_recovered_update(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Option<TaskUpdate>, StoreError> {
        self.delivery_business_status(referral_id, DELIVERED, |task| {
            matches!(
                task.pointer("/businessStatus/text").and_then(Value::as_str),
                Some(DELIVERY_FAILED | NOT_COLLECTED)
            )
        })
        .await
    }

    /// The delivery worker's update setting the Task's business status to
    /// `text`, keeping its status, if the Task as read satisfies `only_if`;
    /// `None` when it does not, or can no longer change (finished, or
    /// erased). The check and the update's expected version come from the
    /// same read, so a provider's change stored in between is a conflict
    /// (tried again from a new read), never overwritten.
    async fn delivery_business_status(
        &self,
        referral_id: &ReferralId,
        text: &str,
        only_if: impl Fn(&Value) -> bool,
    ) -> Result<Option<TaskUpdate>, StoreError> {
        let Some(referral) = self.store.referral(referral_id).await? else {
            return Ok(None);
        };
        let change = TaskChange {
            business_status: Some(text.into()),
            ..TaskChange::default()
        };
        let update = match self.current_task(&referral).await {
            Ok((task, current)) if only_if(&current) => {
                self.update_from(&referral, task, &current, &change, Actor::DELIVERY, false)
                    .await
            }
            Ok(_) => return Ok(None),
            Err(e) => Err(e),
        };
        match update {
            Ok(update) => Ok(Some(update)),
            Err(ChangeError::Store(e)) => Err(e),
            Err(_) => Ok(None),
        }
    }
}

/// The Task's business status while a referral could not be delivered.
const DELIVERY_FAILED: &str = "delivery failed";
/// The Task's business status while an inbox provider has let a referral
/// wait uncollected longer than its `inbox_nudge_after`.
const NOT_COLLECTED: &str = "not yet collected by provider";
/// The business status that replaces either once the message has arrived.
const DELIVERED: &str = "delivered";

/// What a callback maps to: its Task change, the escalation it asks for
/// (with that escalation's change to the Task), and the Task's id and
/// status after both.
struct Mapped {
    update: Option<TaskUpdate>,
    escalation: Option<(crate::domain::model::Escalation, TaskUpdate)>,
    task_id: String,
    status: String,
}

fn duplicate(first: InboundCallback) -> CallbackOutcome {
    CallbackOutcome::Duplicate {
        status: u16::try_from(first.response_status).unwrap_or(200),
        outcome: first.outcome,
    }
}

impl Referrals {
    /// The provider's mapping as loaded now (hot reload swaps it whole).
    pub fn provider_mapping(
        &self,
        provider_id: &ProviderId,
    ) -> Option<std::sync::Arc<crate::mapping::Mapping>> {
        self.mappings
            .load()
            .mappings
            .get(provider_id.as_str())
            .cloned()
    }

    /// A provider's user changes the referral's Task from the portal: the
    /// same state machine and the same notification to the referrer as a
    /// signed status callback ([`Referrals::provider_callback`]), recorded
    /// with the user as the actor. A referral not sent to `provider_id`
    /// is not found.
    pub async fn portal_change(
        &self,
        referral_id: &ReferralId,
        provider_id: &ProviderId,
        change: &TaskChange,
        actor: Actor,
    ) -> Result<Task, ChangeError> {
        retry_on_conflict(|| {
            let actor = actor.clone();
            async move {
                let referral = self
                    .store
                    .referral(referral_id)
                    .await?
                    .filter(|r| r.provider_id.as_ref() == Some(provider_id))
                    .ok_or_else(|| ChangeError::NotFound("no such referral".into()))?;
                if referral.is_erased() {
                    return Err(ChangeError::Conflict(
                        "this referral was erased; it takes no more status changes".into(),
                    ));
                }
                let update = self.prepare_update(&referral, change, actor, false).await?;
                let task = update.task.clone();
                // (The store wakes the delivery worker for the notification.)
                self.store.update_task(update).await?;
                Ok(task)
            }
        })
        .await
    }
}
