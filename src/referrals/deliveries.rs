//! Operators' view of delivery: list and inspect outbox messages with their
//! attempts, replay a message (as sent, or re-mapped with today's mapping),
//! and re-enable an endpoint that answered `410 Gone`. The same operations
//! back the CLI (`signpost deliveries …`) and the admin HTTP API, which
//! also share [`message_filter`], so both read a filter the same way.

use std::collections::HashMap;

use chrono::SecondsFormat;
use serde_json::{Value, json};

use super::{
    Referrals,
    lifecycle::{ChangeError, new_message},
    notification,
};
use crate::{
    domain::model::{
        Attempt, DisabledEndpoint, ERASED_TAG_CODE, ERASED_TAG_SYSTEM, InboundCallback,
        OutboxMessage, Tombstone,
    },
    domain::{
        Actor, Endpoint, MessageId, MessageKind, MessageState, NhsNumber, ProviderId, ReferralId,
    },
    store::{MessageFilter, Reclaim, StoreError},
    validation::NHS_NUMBER_SYSTEM,
};

/// How a message is replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// The payload exactly as first sent.
    AsSent,
    /// The payload built again from the stored referral with the mapping
    /// loaded now (after a mapping fix).
    Remapped,
}

/// A filter an operator got wrong; the text says which parameter and what
/// it takes.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadFilter(pub String);

/// The message filter that `params` (`state`, `provider`, `endpoint`,
/// `referral`, `limit`) ask for; unknown parameters are refused rather
/// than silently ignored (an ignored filter lists the wrong messages).
pub fn message_filter(params: &HashMap<String, String>) -> Result<MessageFilter, BadFilter> {
    let mut filter = MessageFilter {
        limit: 100,
        ..MessageFilter::default()
    };
    for (key, value) in params {
        match key.as_str() {
            "state" => {
                filter.state = Some(
                    value
                        .parse()
                        .map_err(|_| BadFilter("state is pending, delivered or dead".into()))?,
                );
            }
            // (Text that is no provider id names no endpoint, so no message.)
            "provider" => {
                filter.endpoint = Some(match value.parse::<ProviderId>() {
                    Ok(id) => Endpoint::Provider(id).to_string(),
                    Err(_) => String::new(),
                });
            }
            "endpoint" => filter.endpoint = Some(value.clone()),
            "referral" => {
                let id = value.strip_prefix("ServiceRequest/").unwrap_or(value);
                filter.referral_id = Some(id.to_owned());
            }
            "limit" => filter.limit = parse_limit(value)?,
            _ => {
                return Err(BadFilter(
                    "unknown parameter; use state, provider, endpoint, referral or limit".into(),
                ));
            }
        }
    }
    Ok(filter)
}

/// A `limit` on how many records a listing returns: 1 to 1000.
pub fn parse_limit(value: &str) -> Result<i64, BadFilter> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| (1..=1000).contains(n))
        .ok_or_else(|| BadFilter("limit is a number from 1 to 1000".into()))
}

impl Referrals {
    /// Messages matching `filter`, newest first.
    pub async fn messages(&self, filter: &MessageFilter) -> Result<Vec<OutboxMessage>, StoreError> {
        self.store.messages(filter).await
    }

    /// One message and every attempt to deliver it.
    pub async fn message(
        &self,
        id: &str,
    ) -> Result<Option<(OutboxMessage, Vec<Attempt>)>, StoreError> {
        // (Text that is no message id names no message.)
        let Ok(id) = id.parse::<MessageId>() else {
            return Ok(None);
        };
        let Some(message) = self.store.message(&id).await? else {
            return Ok(None);
        };
        let attempts = self.store.attempts(&id).await?;
        Ok(Some((message, attempts)))
    }

    /// Queue a dead-lettered or delivered message again, as a new message
    /// (its own `webhook-id`, `replay_of` naming the original) after any
    /// message still pending for the same referral and endpoint.
    pub async fn replay(&self, id: &str, how: Replay) -> Result<OutboxMessage, ChangeError> {
        let not_found = || ChangeError::NotFound("no message has this id".into());
        let message_id: MessageId = id.parse().map_err(|_| not_found())?;
        let original = self
            .store
            .message(&message_id)
            .await?
            .ok_or_else(not_found)?;
        if original.state == MessageState::Pending {
            return Err(ChangeError::Conflict(format!(
                "message {id} is still pending; only a delivered or dead-lettered message can be replayed"
            )));
        }
        // An erased patient's messages have nothing left to send (and
        // their referral is a tombstone): refuse rather than send an empty
        // or meaningless signed body.
        let erased = self
            .store
            .referral(&original.referral_id)
            .await?
            .is_none_or(|referral| referral.is_erased());
        if erased {
            return Err(ChangeError::Conflict(format!(
                "message {id} is of a referral that was erased: nothing is left to send"
            )));
        }
        if how == Replay::AsSent && original.payload.is_empty() {
            return Err(ChangeError::Conflict(format!(
                "message {id} was purged by retention: nothing is left to send as sent; \
                 a message to a provider can be replayed re-mapped (remap=true)"
            )));
        }
        let payload = match how {
            Replay::AsSent => original.payload.clone(),
            Replay::Remapped => self.remap(&original).await?,
        };
        let mut message = new_message(
            &original.referral_id,
            original.endpoint.clone(),
            original.kind,
            payload,
            self.clock.now(),
        );
        message.replay_of = Some(original.id.clone());
        // A notification replayed is the same event, under the same number.
        message.event_number = original.event_number;
        let new_id = message.id.clone();
        self.store.insert_message(message).await?;
        tracing::info!(message_id = %new_id, replay_of = %original.id, remapped = how == Replay::Remapped, "message replayed");
        self.store
            .message(&new_id)
            .await?
            .ok_or_else(|| ChangeError::NotFound(format!("no message {new_id}")))
    }

    /// Send a pending message now instead of at its next attempt: it is
    /// made due at once and delivery is woken (a worker in another process
    /// finds it at its next poll, or at once on PostgreSQL). It still goes
    /// after any earlier message for the same referral and endpoint, and
    /// not while its endpoint is disabled (that is refused: enable it).
    pub async fn retry_now(&self, id: &str) -> Result<OutboxMessage, ChangeError> {
        let not_found = || ChangeError::NotFound("no message has this id".into());
        let message_id: MessageId = id.parse().map_err(|_| not_found())?;
        let message = self
            .store
            .message(&message_id)
            .await?
            .ok_or_else(not_found)?;
        if message.state != MessageState::Pending {
            return Err(ChangeError::Conflict(format!(
                "message {id} is {}, not pending; replay it to send it again",
                message.state
            )));
        }
        let disabled = self.store.disabled_endpoints().await?;
        if disabled.iter().any(|d| d.endpoint == message.endpoint) {
            return Err(ChangeError::Conflict(format!(
                "{} is disabled (it answered 410 Gone); enable it to send its messages",
                message.endpoint
            )));
        }
        if !self
            .store
            .retry_now(&message_id, self.clock.now().as_millis())
            .await?
        {
            return Err(ChangeError::Conflict(format!(
                "message {id} is no longer pending"
            )));
        }
        tracing::info!(message_id = %message_id, endpoint = %message.endpoint, "retry brought forward");
        self.store.message(&message_id).await?.ok_or_else(not_found)
    }

    /// The payload a provider message would have with the current mapping.
    async fn remap(&self, original: &OutboxMessage) -> Result<String, ChangeError> {
        let unprocessable = |text: String| ChangeError::Unprocessable(text);
        let provider = match &original.endpoint {
            Endpoint::Provider(provider)
                if [MessageKind::Referral, MessageKind::Cancel].contains(&original.kind) =>
            {
                Some(provider.as_str())
            }
            _ => None,
        }
        .ok_or_else(|| {
            unprocessable(
                "only messages to providers can be re-mapped; replay notifications as sent".into(),
            )
        })?;
        let referral = self
            .store
            .referral(&original.referral_id)
            .await?
            .ok_or_else(|| {
                ChangeError::NotFound(format!("no referral {}", original.referral_id))
            })?;
        let resource: Value = serde_json::from_str(&referral.resource)
            .map_err(|e| unprocessable(format!("stored referral unreadable: {e}")))?;
        let mapping = self
            .mappings
            .load()
            .mappings
            .get(provider)
            .cloned()
            .ok_or_else(|| unprocessable(format!("no mapping is loaded for {provider}")))?;
        let joined = |issues: Vec<crate::outcome::Issue>| {
            unprocessable(
                issues
                    .into_iter()
                    .map(|i| i.diagnostics)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        };
        let payload = if original.kind == MessageKind::Referral {
            mapping.translate(&resource).map_err(joined)?
        } else {
            mapping
                .cancellation(&resource)
                .map_err(joined)?
                .ok_or_else(|| {
                    unprocessable(format!(
                        "the {provider} mapping no longer has a cancel message"
                    ))
                })?
        };
        Ok(payload.to_string())
    }

    /// Provider callbacks received, newest first, by provider and/or
    /// referral.
    pub async fn callbacks(
        &self,
        provider_id: Option<&ProviderId>,
        referral_id: Option<&ReferralId>,
        limit: i64,
    ) -> Result<Vec<InboundCallback>, StoreError> {
        self.store
            .inbound_events(provider_id, referral_id, limit)
            .await
    }

    /// Per endpoint: undelivered messages, the oldest one's creation time,
    /// and dead letters (for `GET /metrics`).
    pub async fn outbox_stats(&self) -> Result<Vec<crate::store::OutboxStats>, StoreError> {
        self.store.outbox_stats().await
    }

    /// Endpoints disabled by a `410 Gone`.
    pub async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StoreError> {
        self.store.disabled_endpoints().await
    }

    /// The endpoint `name` means: `provider:<id>` or `referrer:<id>`, or a
    /// bare configured id (`activelives`) when it names exactly one
    /// provider or referrer. `None` when it names none or both.
    pub fn endpoint_named(&self, name: &str) -> Option<Endpoint> {
        if let Ok(endpoint) = name.parse::<Endpoint>() {
            return Some(endpoint);
        }
        let provider = self
            .config
            .providers
            .get(name)
            .map(|p| Endpoint::Provider(p.id.clone()));
        let referrer = self
            .config
            .referrers
            .get(name)
            .map(|r| Endpoint::Referrer(r.id.clone()));
        match (provider, referrer) {
            (Some(endpoint), None) | (None, Some(endpoint)) => Some(endpoint),
            _ => None,
        }
    }

    /// Send to `endpoint` (see [`Referrals::endpoint_named`]) again; its
    /// waiting messages go at once. Returns the endpoint re-enabled, `None`
    /// if it was not disabled.
    pub async fn enable_endpoint(&self, endpoint: &str) -> Result<Option<Endpoint>, StoreError> {
        // (Text that names no endpoint names no disabled one.)
        let Some(parsed) = self.endpoint_named(endpoint) else {
            return Ok(None);
        };
        let enabled = self.store.enable_endpoint(&parsed).await?;
        if !enabled {
            return Ok(None);
        }
        tracing::info!(endpoint = %parsed, "endpoint re-enabled");
        Ok(Some(parsed))
    }
}

/// What goes on the wire for a message: the body, and for a BaRS response
/// its `X-Request-Id` and `X-Correlation-Id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    pub bars_ids: Option<(String, String)>,
}

impl Referrals {
    /// What to send for `message`, as the worker sends it and operators see
    /// it: a Task change for a referrer told the BaRS way is a BaRS response
    /// to the message the referral came by ([`crate::bars::response`]);
    /// anything else is [`notification::body`]. The error says why a BaRS
    /// response cannot be built (the attempt fails, and is retried until it
    /// is dead-lettered).
    pub async fn outgoing(&self, message: &OutboxMessage) -> Result<Outgoing, String> {
        let config = &self.config;
        let base = config.public_fhir_base();
        let plain = || Outgoing {
            body: notification::body(message, base.as_deref()),
            bars_ids: None,
        };
        let told_by_bars = match &message.endpoint {
            Endpoint::Referrer(id) => config
                .referrers
                .get(id)
                .is_some_and(|r| r.notify == crate::config::Notify::Bars),
            Endpoint::Provider(_) | Endpoint::ClinicalService(_) => false,
        };
        if !told_by_bars
            || message.kind != MessageKind::Notification
            || message.event_number.is_none()
        {
            return Ok(plain());
        }
        // (A BaRS response carries the Task alone.)
        let Some((task, _)) = notification::carried(&message.payload) else {
            // (An erased message: nothing is left to carry.)
            return Ok(plain());
        };
        let receiver = config
            .bars
            .as_ref()
            .ok_or("`notify = \"bars\"` without `[bars]`: no BaRS receiver to answer as")?;
        let origin = self
            .bars_origin(&message.referral_id)
            .await
            .map_err(|e| format!("reading the BaRS request message: {e}"))?
            .ok_or("the referral did not come by BaRS: there is no request message to answer")?;
        let (id, happened) = notification::identity(message, &task);
        let response = crate::bars::response::message(&task, &origin, receiver, id, &happened);
        Ok(Outgoing {
            body: response.body,
            bars_ids: Some((response.request_id, response.correlation_id)),
        })
    }

    /// The body operators see for `message`: as it is sent and would be
    /// re-sent ([`Referrals::outgoing`]); when it cannot be built, as
    /// stored.
    pub async fn body_as_sent(&self, message: &OutboxMessage) -> String {
        self.outgoing(message)
            .await
            .map_or_else(|_| message.payload.clone(), |o| o.body)
    }
}

/// A message as operators see it; with its attempts, the payload too
/// (operators may need it to diagnose a refusal; it is never logged): `body`,
/// as it is sent and would be re-sent ([`Referrals::body_as_sent`]).
pub fn message_json(
    message: &OutboxMessage,
    attempts: Option<&[Attempt]>,
    body: Option<String>,
) -> Value {
    let mut value = json!({
        "id": message.id,
        "referral": format!("ServiceRequest/{}", message.referral_id),
        "endpoint": message.endpoint,
        "kind": message.kind,
        "state": message.state,
        "attempts": message.attempts,
        "created_at": message.created_at,
        "next_attempt_at": chrono::DateTime::from_timestamp_millis(message.next_attempt_at)
            .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true)),
        "delivered_at": message.delivered_at,
        "last_error": message.last_error,
        "replay_of": message.replay_of,
    });
    if let Some(attempts) = attempts {
        let body = body.unwrap_or_else(|| message.payload.clone());
        value["payload"] = serde_json::from_str(&body).unwrap_or(Value::String(body));
        value["attempt_log"] = attempts
            .iter()
            .map(|a| {
                json!({
                    "attempt": a.attempt,
                    "started_at": a.started_at,
                    "worker": a.worker,
                    "status": a.status_code,
                    "latency_ms": a.latency_ms,
                    "error": a.error,
                    "response_excerpt": a.response_excerpt,
                    "outcome": a.outcome,
                })
            })
            .collect();
    }
    value
}

/// What is kept of an erased resource: its id, a tag saying it was erased,
/// and the few elements FHIR requires.
fn erased_meta(version: i64, now: &str) -> Value {
    json!({
        "versionId": version.to_string(),
        "lastUpdated": now,
        "tag": [{ "system": ERASED_TAG_SYSTEM, "code": ERASED_TAG_CODE }]
    })
}

/// Whether `resource` carries `nhs_number` as an NHS-number identifier,
/// wherever it stands: any entry of any `identifier` list, of the Patient
/// posted alone or contained, in a Bundle entry, or anywhere else.
fn names_patient(resource: &Value, nhs_number: &NhsNumber) -> bool {
    match resource {
        Value::Object(object) => {
            let is_it = object.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM)
                && object.get("value").and_then(Value::as_str) == Some(nhs_number.as_str());
            is_it || object.values().any(|v| names_patient(v, nhs_number))
        }
        Value::Array(items) => items.iter().any(|v| names_patient(v, nhs_number)),
        _ => false,
    }
}

impl Referrals {
    /// Retention: purge what was delivered more than `retention_days` ago
    /// (payloads, response excerpts, callback bodies); ids and states stay.
    pub async fn purge_expired(&self) -> Result<u64, StoreError> {
        let retention =
            std::time::Duration::from_secs(86_400 * u64::from(self.config.retention_days));
        let cutoff = self.clock.now().before(retention);
        let purged = self.store.purge_before(&cutoff.to_string()).await?;
        if purged > 0 {
            tracing::info!(
                purged,
                retention_days = self.config.retention_days,
                "retention purge"
            );
        }
        Ok(purged)
    }

    /// Erasure: remove everything Signpost holds about the patient with this
    /// NHS number, leaving tombstones (ids, an `erased` tag) and an audit
    /// record by `actor`. Returns the referral ids erased, and whether the
    /// database has forgotten their old copies yet (if not, why: it
    /// finishes that itself, see [`Referrals::reclaim_pending`]).
    pub async fn erase_patient(
        &self,
        nhs_number: &NhsNumber,
        actor: &Actor,
    ) -> Result<(Vec<String>, Reclaim), StoreError> {
        let at = self.clock.now();
        let now = at.to_string();
        let mut tombstones = Vec::new();
        for referral in self.store.referrals_of_patient(nhs_number).await? {
            let by_intake = referral.nhs_number.as_ref() == Some(nhs_number);
            let names = || {
                serde_json::from_str::<Value>(&referral.resource)
                    .is_ok_and(|resource| names_patient(&resource, nhs_number))
            };
            if !by_intake && !names() {
                continue;
            }
            let task = self
                .store
                .tasks_for_referral(&referral.id)
                .await?
                .into_iter()
                .next();
            let (task_id, task_version) =
                task.map_or((String::new(), 1), |t| (t.id.into(), t.version_id));
            tombstones.push(Tombstone {
                referral_id: referral.id.clone(),
                referral_resource: json!({
                    "resourceType": "ServiceRequest",
                    "id": referral.id,
                    "meta": erased_meta(referral.version_id + 1, &now),
                    "status": "entered-in-error",
                    "intent": "order",
                    "subject": { "display": "erased" }
                })
                .to_string(),
                task_resource: json!({
                    "resourceType": "Task",
                    "id": task_id,
                    "meta": erased_meta(task_version + 1, &now),
                    "status": "entered-in-error",
                    "intent": "order",
                    "focus": { "reference": format!("ServiceRequest/{}", referral.id) }
                })
                .to_string(),
            });
        }
        let erased: Vec<String> = tombstones
            .iter()
            .map(|t| t.referral_id.to_string())
            .collect();
        let audit = crate::store::AuditRecord {
            seq: 0,
            at,
            actor: actor.clone(),
            credential: None,
            client: None,
            request_id: None,
            action: "erase patient".into(),
            resource: None,
            referral_id: None,
            outcome: format!("{} referral(s) erased: {}", erased.len(), erased.join(", ")),
        };
        let reclaim = self.store.erase(nhs_number, &tombstones, audit).await?;
        tracing::info!(
            referrals = erased.len(),
            reclaimed = reclaim == Reclaim::Done,
            "patient erased"
        );
        Ok((erased, reclaim))
    }

    /// Finish the reclaims erasures could not finish at once (PostgreSQL:
    /// old row versions an older transaction could still see); every
    /// instance tries every `[database] reclaim_interval`.
    pub async fn reclaim_pending(&self) -> Result<Reclaim, StoreError> {
        self.store.reclaim_pending().await
    }

    /// How many erasures have old row versions still to reclaim.
    pub async fn reclaims_pending(&self) -> Result<i64, StoreError> {
        self.store.reclaims_pending().await
    }
}
