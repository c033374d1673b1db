//! Notifications to referrers: FHIR R4 Subscriptions-backport
//! `full-resource` notification Bundles carrying the updated Task.
//!
//! Each referrer has one subscription, `Subscription/<referrer id>`, made
//! from its configuration (its `callback_url`), to the topic below;
//! `event-number` counts its events from 1, so a referrer can tell whether
//! it missed one and then recover it with `Subscription/{id}/$events`
//! (`subscription.rs`), built by the same functions as the notification.
//!
//! A notification's payload is the changed Task; or, when the change comes
//! with resources the referrer must see with it (an escalation's child
//! Task, Communication and Flag), a `collection` Bundle whose first entry
//! is the Task and whose others are that context ([`with_context`]): each
//! is sent as an entry of its own, and named in the event's
//! `additional-context`.

use serde_json::{Value, json};

use crate::{
    domain::model::OutboxMessage,
    domain::{Endpoint, MessageKind},
};

/// The topic every referrer is subscribed to.
pub const TOPIC: &str = "https://signpost.example/SubscriptionTopic/referral-task-status";

const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
const NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";

/// The body to send for an outbox message: for a notification queued with
/// its event number, the notification Bundle built from the Task it
/// carries (its payload), `base` being Signpost's public FHIR base URL;
/// otherwise the payload as stored. The Bundle's and its status's ids are
/// the UUID of the message first sent (the message's own, or for a replay
/// the one it replays), and its timestamps the Task's `meta.lastUpdated`
/// (when the event happened, which is when the original was queued; else
/// the message's `created_at`), so every attempt, every read and a replay
/// as sent all send the same bytes.
pub fn body(message: &OutboxMessage, base: Option<&str>) -> String {
    let (MessageKind::Notification, Endpoint::Referrer(referrer), Some(number)) =
        (message.kind, &message.endpoint, message.event_number)
    else {
        return message.payload.clone();
    };
    let Some((task, context)) = carried(&message.payload) else {
        // (An erased message: nothing is left to carry.)
        return message.payload.clone();
    };
    let (id, happened) = identity(message, &task);
    bundle_with(
        &task,
        &context,
        referrer.as_str(),
        number,
        base,
        &happened,
        id,
    )
    .to_string()
}

/// The payload of a notification carrying `task` and `context` (see the
/// module's documentation): the Task alone when there is no context.
pub fn with_context(task: &Value, context: &[Value]) -> String {
    if context.is_empty() {
        return task.to_string();
    }
    let entries: Vec<Value> = std::iter::once(task)
        .chain(context)
        .map(|resource| json!({ "resource": resource }))
        .collect();
    json!({ "resourceType": "Bundle", "type": "collection", "entry": entries }).to_string()
}

/// The Task a notification's payload carries and its context; `None` when
/// the payload is not JSON (erased).
pub fn carried(payload: &str) -> Option<(Value, Vec<Value>)> {
    let value = serde_json::from_str::<Value>(payload).ok()?;
    if value["resourceType"] == "Bundle" && value["type"] == "collection" {
        let mut resources = value["entry"]
            .as_array()?
            .iter()
            .map(|e| e["resource"].clone());
        let task = resources.next()?;
        return Some((task, resources.collect()));
    }
    Some((value, Vec::new()))
}

/// What makes every send of a Task-change message the same bytes: the UUID
/// of the outbox message first sent (the message's own, or for a replay
/// the one it replays) and when the change happened (the Task's
/// `meta.lastUpdated`; else the message's `created_at`).
pub fn identity(message: &OutboxMessage, task: &Value) -> (uuid::Uuid, String) {
    let first_sent = message.replay_of.as_ref().unwrap_or(&message.id);
    let id = first_sent
        .as_str()
        .strip_prefix("msg_")
        .and_then(|hex| uuid::Uuid::try_parse(hex).ok())
        .unwrap_or_else(uuid::Uuid::now_v7);
    let happened = task
        .pointer("/meta/lastUpdated")
        .and_then(Value::as_str)
        .unwrap_or(&message.created_at)
        .to_owned();
    (id, happened)
}

/// The notification Bundle for event `event_number` of `referrer_id`'s
/// subscription, carrying `task`, with `id` as the Bundle's and its status
/// Parameters' id. `base` is Signpost's public FHIR base URL, when
/// configured; without it references are relative and the Task's `fullUrl`
/// is a `urn:uuid:`.
pub fn bundle(
    task: &Value,
    referrer_id: &str,
    event_number: i64,
    base: Option<&str>,
    now: &str,
    id: uuid::Uuid,
) -> Value {
    bundle_with(task, &[], referrer_id, event_number, base, now, id)
}

/// [`bundle`], with the resources that come with the Task's change.
pub fn bundle_with(
    task: &Value,
    context: &[Value],
    referrer_id: &str,
    event_number: i64,
    base: Option<&str>,
    now: &str,
    id: uuid::Uuid,
) -> Value {
    let event = Event {
        number: event_number,
        timestamp: now.to_owned(),
        task: Some(task.clone()),
        context: context.to_vec(),
    };
    let status = Status {
        referrer_id,
        state: "active",
        kind: "event-notification",
        events_since_start: event_number,
    };
    notification_bundle(&status, &[event], Content::FullResource, base, now, id)
}

/// One event of a referrer's subscription: a change of one of its Tasks.
#[derive(Debug, Clone)]
pub struct Event {
    pub number: i64,
    /// When it happened.
    pub timestamp: String,
    /// The Task as changed; `None` once retention or erasure emptied it.
    pub task: Option<Value>,
    /// What came with the change (an escalation's child Task,
    /// Communication and Flag).
    pub context: Vec<Value>,
}

impl Event {
    /// The event a numbered notification carries (see [`body`]), if it is
    /// one.
    pub fn of(message: &OutboxMessage) -> Option<Event> {
        let number = message.event_number?;
        let (task, context) = match carried(&message.payload) {
            Some((task, context)) => (Some(task), context),
            None => (None, Vec::new()),
        };
        let timestamp = task
            .as_ref()
            .and_then(|t| t.pointer("/meta/lastUpdated"))
            .and_then(Value::as_str)
            .unwrap_or(&message.created_at)
            .to_owned();
        Some(Event {
            number,
            timestamp,
            task,
            context,
        })
    }
}

/// What a subscription status says of the subscription.
pub struct Status<'a> {
    pub referrer_id: &'a str,
    /// `active`, or `error` while its endpoint is disabled.
    pub state: &'a str,
    /// `event-notification`, `query-event` or `query-status`.
    pub kind: &'a str,
    pub events_since_start: i64,
}

/// How much of each event a Bundle carries (the backport IG's payload
/// content codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// The event numbers alone.
    Empty,
    /// And a reference to each changed Task.
    IdOnly,
    /// And each Task as changed.
    FullResource,
}

impl Content {
    pub fn parse(code: &str) -> Option<Content> {
        match code {
            "empty" => Some(Content::Empty),
            "id-only" => Some(Content::IdOnly),
            "full-resource" => Some(Content::FullResource),
            _ => None,
        }
    }
}

/// The subscription status Parameters (`backport-subscription-status-r4`)
/// of `status`, listing `events`.
pub fn status_parameters(
    status: &Status<'_>,
    events: &[Event],
    content: Content,
    base: Option<&str>,
    id: &str,
) -> Value {
    let at = |path: &str| match base {
        Some(base) => format!("{base}/{path}"),
        None => path.to_owned(),
    };
    let mut parameters = vec![
        json!({ "name": "subscription", "valueReference": { "reference": at(&format!("Subscription/{}", status.referrer_id)) } }),
        json!({ "name": "topic", "valueCanonical": TOPIC }),
        json!({ "name": "status", "valueCode": status.state }),
        json!({ "name": "type", "valueCode": status.kind }),
        json!({ "name": "events-since-subscription-start", "valueString": status.events_since_start.to_string() }),
    ];
    for event in events {
        let mut part = vec![
            json!({ "name": "event-number", "valueString": event.number.to_string() }),
            json!({ "name": "timestamp", "valueInstant": event.timestamp }),
        ];
        if let (true, Some(task_id)) = (content != Content::Empty, task_id(event)) {
            part.push(json!({ "name": "focus", "valueReference": { "reference": at(&format!("Task/{task_id}")) } }));
            for (kind, id) in event.context.iter().filter_map(reference_of) {
                part.push(json!({ "name": "additional-context", "valueReference": { "reference": at(&format!("{kind}/{id}")) } }));
            }
        }
        parameters.push(json!({ "name": "notification-event", "part": part }));
    }
    json!({
        "resourceType": "Parameters",
        "id": id,
        "meta": { "profile": [STATUS_PROFILE] },
        "parameter": parameters
    })
}

/// A notification Bundle (`history`, as sent and as `$events` answers):
/// the status, then each event's Task when `content` is full-resource.
pub fn notification_bundle(
    status: &Status<'_>,
    events: &[Event],
    content: Content,
    base: Option<&str>,
    now: &str,
    id: uuid::Uuid,
) -> Value {
    let status_id = id.to_string();
    let at = |path: &str| match base {
        Some(base) => format!("{base}/{path}"),
        None => path.to_owned(),
    };
    let mut entries = vec![json!({
        "fullUrl": format!("urn:uuid:{status_id}"),
        "resource": status_parameters(status, events, content, base, &status_id),
        "request": { "method": "GET", "url": at(&format!("Subscription/{}/$status", status.referrer_id)) },
        "response": { "status": "200" }
    })];
    if content == Content::FullResource {
        for event in events {
            let (Some(task), Some(task_id)) = (&event.task, task_id(event)) else {
                continue;
            };
            entries.push(json!({
                "fullUrl": match base {
                    Some(base) => format!("{base}/Task/{task_id}"),
                    None => format!("urn:uuid:{task_id}"),
                },
                "resource": task,
                "request": { "method": "PUT", "url": format!("Task/{task_id}") },
                "response": { "status": "200" }
            }));
            for resource in &event.context {
                let Some((kind, id)) = reference_of(resource) else {
                    continue;
                };
                entries.push(json!({
                    "fullUrl": match base {
                        Some(base) => format!("{base}/{kind}/{id}"),
                        None => format!("urn:uuid:{id}"),
                    },
                    "resource": resource,
                    "request": { "method": "PUT", "url": format!("{kind}/{id}") },
                    "response": { "status": "200" }
                }));
            }
        }
    }
    json!({
        "resourceType": "Bundle",
        "id": status_id,
        "meta": { "profile": [NOTIFICATION_PROFILE] },
        "type": "history",
        "timestamp": now,
        "entry": entries
    })
}

/// A resource's type and id.
fn reference_of(resource: &Value) -> Option<(&str, &str)> {
    Some((
        resource.get("resourceType")?.as_str()?,
        resource.get("id")?.as_str()?,
    ))
}

fn task_id(event: &Event) -> Option<&str> {
    event.task.as_ref()?.get("id").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MessageState;

    fn message(kind: &str, endpoint: &str, payload: &str, number: Option<i64>) -> OutboxMessage {
        OutboxMessage {
            seq: 1,
            id: "msg_0190a3b2c4d5e6f708192a3b4c5d6e7f".parse().unwrap(),
            referral_id: "r1".parse().unwrap(),
            endpoint: endpoint.parse().unwrap(),
            kind: kind.parse().unwrap(),
            payload: payload.into(),
            state: MessageState::Pending,
            attempts: 0,
            next_attempt_at: 0,
            lease_owner: None,
            lease_until: None,
            created_at: "2026-03-04T10:15:00.000Z".into(),
            delivered_at: None,
            last_error: None,
            replay_of: None,
            event_number: number,
        }
    }

    #[test]
    fn a_numbered_notification_is_sent_as_the_same_bundle_on_every_attempt() {
        let task = r#"{"resourceType":"Task","id":"t1","status":"accepted"}"#;
        let queued = message("notification", "referrer:riverside", task, Some(7));
        let first = body(&queued, Some("https://signpost.example/fhir"));
        assert_eq!(first, body(&queued, Some("https://signpost.example/fhir")));
        let bundle: Value = serde_json::from_str(&first).unwrap();
        assert_eq!(bundle["id"], "0190a3b2-c4d5-e6f7-0819-2a3b4c5d6e7f");
        assert_eq!(bundle["timestamp"], "2026-03-04T10:15:00.000Z");
        let status = &bundle["entry"][0]["resource"];
        assert_eq!(status["parameter"][4]["valueString"], "7");
        assert_eq!(
            status["parameter"][0]["valueReference"]["reference"],
            "https://signpost.example/fhir/Subscription/riverside"
        );
        assert_eq!(bundle["entry"][1]["resource"]["id"], "t1");
    }

    #[test]
    fn a_replayed_notification_is_sent_as_the_bundle_of_the_message_it_replays() {
        let task = r#"{"resourceType":"Task","id":"t1","meta":{"lastUpdated":"2026-03-04T10:15:00.000Z"}}"#;
        let original = message("notification", "referrer:riverside", task, Some(7));
        let replay = OutboxMessage {
            id: "msg_0190a3b2c4d5e6f708192a3b4c5d6e80".parse().unwrap(),
            created_at: "2026-03-05T09:00:00.000Z".into(),
            replay_of: Some(original.id.clone()),
            ..original.clone()
        };
        assert_eq!(body(&replay, None), body(&original, None));
        let bundle: Value = serde_json::from_str(&body(&replay, None)).unwrap();
        assert_eq!(bundle["id"], "0190a3b2-c4d5-e6f7-0819-2a3b4c5d6e7f");
        assert_eq!(bundle["timestamp"], "2026-03-04T10:15:00.000Z");
    }

    #[test]
    fn other_messages_and_unnumbered_or_erased_ones_are_sent_as_stored() {
        for m in [
            message("referral", "provider:activelives", r#"{"a":1}"#, None),
            message(
                "notification",
                "referrer:riverside",
                r#"{"old":"bundle"}"#,
                None,
            ),
            message("notification", "referrer:riverside", "", Some(3)),
        ] {
            assert_eq!(body(&m, None), m.payload);
        }
    }
}
