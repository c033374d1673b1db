//! Notifications to referrers: FHIR R4 Subscriptions-backport
//! `full-resource` notification Bundles carrying the updated Task.
//!
//! Each referrer has one implicit subscription (its `callback_url` in the
//! configuration) to the topic below; `event-number` counts its events from
//! 1, so a referrer can tell whether it missed one and then catch up with
//! `GET /fhir/Task?_lastUpdated=gt…`.

use serde_json::{Value, json};

/// The topic every referrer is subscribed to.
pub const TOPIC: &str = "https://signpost.example/SubscriptionTopic/referral-task-status";

const STATUS_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-status-r4";
const NOTIFICATION_PROFILE: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription-notification-r4";

/// The notification Bundle for event `event_number` of `referrer_id`'s
/// subscription, carrying `task`. `base` is Signpost's public FHIR base URL,
/// when configured; without it references are relative and the Task's
/// `fullUrl` is a `urn:uuid:`.
pub fn bundle(
    task: &Value,
    referrer_id: &str,
    event_number: i64,
    base: Option<&str>,
    now: &str,
) -> Value {
    let task_id = task.get("id").and_then(Value::as_str).unwrap_or_default();
    let at = |path: &str| match base {
        Some(base) => format!("{base}/{path}"),
        None => path.to_owned(),
    };
    let status_id = uuid::Uuid::now_v7().to_string();
    let number = event_number.to_string();
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "meta": { "profile": [NOTIFICATION_PROFILE] },
        "type": "history",
        "timestamp": now,
        "entry": [
            {
                "fullUrl": format!("urn:uuid:{status_id}"),
                "resource": {
                    "resourceType": "Parameters",
                    "id": status_id,
                    "meta": { "profile": [STATUS_PROFILE] },
                    "parameter": [
                        { "name": "subscription", "valueReference": { "reference": at(&format!("Subscription/{referrer_id}")) } },
                        { "name": "topic", "valueCanonical": TOPIC },
                        { "name": "status", "valueCode": "active" },
                        { "name": "type", "valueCode": "event-notification" },
                        { "name": "events-since-subscription-start", "valueString": number },
                        { "name": "notification-event", "part": [
                            { "name": "event-number", "valueString": number },
                            { "name": "timestamp", "valueInstant": now },
                            { "name": "focus", "valueReference": { "reference": at(&format!("Task/{task_id}")) } }
                        ]}
                    ]
                },
                "request": { "method": "GET", "url": at(&format!("Subscription/{referrer_id}/$status")) },
                "response": { "status": "200" }
            },
            {
                "fullUrl": match base {
                    Some(base) => format!("{base}/Task/{task_id}"),
                    None => format!("urn:uuid:{task_id}"),
                },
                "resource": task,
                "request": { "method": "PUT", "url": format!("Task/{task_id}") },
                "response": { "status": "200" }
            }
        ]
    })
}
