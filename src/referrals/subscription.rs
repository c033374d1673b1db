//! Each referrer's Subscription (Subscriptions R4 backport): the resource,
//! read-only and made from the referrer's configuration, and its
//! operations `$status` and `$events`, so that a referrer that missed a
//! notification (a gap in event numbers) recovers it the standard way.

use serde_json::{Value, json};

use super::{
    Referrals,
    notification::{self, Content, Event, Status, TOPIC},
};
use crate::{
    config::Referrer,
    domain::{Endpoint, ReferrerId},
    store::StoreError,
};

const SUBSCRIPTION_PROFILE: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-subscription";
const PAYLOAD_CONTENT: &str =
    "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content";

/// Most events one `$events` answer carries; ask again from the next
/// number for more.
pub const MAX_EVENTS: i64 = 100;

/// The event numbers `$events` is asked for, as given.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventRange {
    /// `eventsSinceNumber`: the first, inclusive (default 1).
    pub since: Option<i64>,
    /// `eventsUntilNumber`: the last, inclusive (default the latest).
    pub until: Option<i64>,
}

impl Referrals {
    /// The referrer's Subscription resource.
    pub async fn subscription(&self, referrer: &Referrer) -> Result<Value, StoreError> {
        let state = self.subscription_state(&referrer.id).await?;
        Ok(json!({
            "resourceType": "Subscription",
            "id": referrer.id.as_str(),
            "meta": { "profile": [SUBSCRIPTION_PROFILE] },
            "status": state,
            "reason": "Every change of the Tasks tracking this referrer's referrals",
            "criteria": TOPIC,
            "channel": {
                "type": "rest-hook",
                "endpoint": referrer.callback_url.as_str(),
                "payload": "application/fhir+json",
                "_payload": {
                    "extension": [{ "url": PAYLOAD_CONTENT, "valueCode": "full-resource" }]
                }
            }
        }))
    }

    /// `$status`: a searchset Bundle holding the subscription's status
    /// (`query-status`), with how many events it has had.
    pub async fn subscription_status(
        &self,
        referrer: &ReferrerId,
        base: Option<&str>,
    ) -> Result<Value, StoreError> {
        let state = self.subscription_state(referrer).await?;
        let events_since_start = self.store.events_since_start(referrer).await?;
        let status = Status {
            referrer_id: referrer.as_str(),
            state,
            kind: "query-status",
            events_since_start,
        };
        let id = uuid::Uuid::new_v4().to_string();
        Ok(json!({
            "resourceType": "Bundle",
            "id": id,
            "type": "searchset",
            "total": 1,
            "timestamp": self.clock.now().to_string(),
            "entry": [{
                "fullUrl": format!("urn:uuid:{id}"),
                "resource": notification::status_parameters(&status, &[], Content::Empty, base, &id),
                "search": { "mode": "match" }
            }]
        }))
    }

    /// `$events`: a notification Bundle (`query-event`) of the events
    /// numbered in `range` (at most [`MAX_EVENTS`]), each as it was sent
    /// (a Task emptied since by retention or erasure is left out, its
    /// event number and time still listed).
    pub async fn subscription_events(
        &self,
        referrer: &ReferrerId,
        range: EventRange,
        content: Content,
        base: Option<&str>,
    ) -> Result<Value, StoreError> {
        let state = self.subscription_state(referrer).await?;
        let events_since_start = self.store.events_since_start(referrer).await?;
        let first = range.since.unwrap_or(1).max(1);
        let last = range.until.unwrap_or(events_since_start);
        let events: Vec<Event> = if first <= last {
            self.store
                .events(referrer, first, last, MAX_EVENTS)
                .await?
                .iter()
                .filter_map(Event::of)
                .collect()
        } else {
            Vec::new()
        };
        let status = Status {
            referrer_id: referrer.as_str(),
            state,
            kind: "query-event",
            events_since_start,
        };
        let now = self.clock.now().to_string();
        Ok(notification::notification_bundle(
            &status,
            &events,
            content,
            base,
            &now,
            uuid::Uuid::new_v4(),
        ))
    }

    /// `active`, or `error` while the referrer's endpoint is disabled (it
    /// answered `410 Gone`; notifications wait until an operator enables
    /// it again).
    async fn subscription_state(&self, referrer: &ReferrerId) -> Result<&'static str, StoreError> {
        let endpoint = Endpoint::Referrer(referrer.clone());
        Ok(if self.store.endpoint_disabled(&endpoint).await? {
            "error"
        } else {
            "active"
        })
    }
}
