//! What the domain hands the store and gets back: referrals and their
//! Tasks, the changes made to them, provider callbacks, tombstones, the
//! outbox's messages and attempts, audit records and bearer tokens. These
//! cross the boundary to the store
//! (which keeps its own row types private); they use the typed
//! vocabulary of [`crate::domain`] (they live here, below both, so the
//! store depends on the domain's types and never on the referral service), so an endpoint is an [`Endpoint`], never
//! a `"provider:<id>"` string built or split by hand.

use super::{
    Actor, ClinicalServiceId, Endpoint, MessageId, MessageKind, MessageState, NhsNumber,
    ProviderId, ReferralId, ReferrerId, TaskId, TaskStatus, Timestamp,
};

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The `webhook-id`: the same on every attempt.
    pub id: MessageId,
    pub referral_id: ReferralId,
    pub endpoint: Endpoint,
    pub kind: MessageKind,
    pub payload: String,
    pub created_at: String,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    /// The message this one replays, if it is a replay.
    pub replay_of: Option<MessageId>,
    /// A notification's event number (set by the store for a new one; kept
    /// by a replay).
    pub event_number: Option<i64>,
    /// 1 for urgent (sent ahead of routine traffic), 0 for routine.
    pub priority: i64,
}

/// An outbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Order of messages for one referral and endpoint.
    pub seq: i64,
    pub id: MessageId,
    pub referral_id: ReferralId,
    pub endpoint: Endpoint,
    pub kind: MessageKind,
    /// What is sent (for a numbered notification, the Task it carries: see
    /// [`super::notification::body`]).
    pub payload: String,
    pub state: MessageState,
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub replay_of: Option<MessageId>,
    /// A notification's number among its referrer's events.
    pub event_number: Option<i64>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Assigned by the database; 0 before.
    pub id: i64,
    pub message_id: MessageId,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub worker: String,
    pub started_at: String,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_excerpt: Option<String>,
    /// `delivered`, `retry`, `dead` or `disabled`.
    pub outcome: String,
}

/// A referral: the ServiceRequest as accepted (and as revised by its
/// referrer's cancellation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub id: ReferralId,
    pub referrer_id: ReferrerId,
    pub identifier_system: String,
    pub identifier_value: String,
    /// The provider it was routed to.
    pub provider_id: Option<ProviderId>,
    pub version_id: i64,
    pub last_updated: Timestamp,
    /// The ServiceRequest JSON, with `id` and `meta` set, as served.
    pub resource: String,
    /// The patient's NHS number, to find their referrals for erasure
    /// (`None` once erased).
    pub nhs_number: Option<NhsNumber>,
    /// When the patient's data was erased (the `resource` is then a
    /// tombstone).
    pub erased_at: Option<Timestamp>,
}

/// The tag an erased referral's or Task's tombstone carries in `meta.tag`.
pub const ERASED_TAG_SYSTEM: &str = "https://signpost.example/CodeSystem/record-state";
pub const ERASED_TAG_CODE: &str = "erased";

impl Referral {
    /// Whether this is the tombstone of an erased referral.
    pub fn is_erased(&self) -> bool {
        self.erased_at.is_some()
    }
}

/// One processed BaRS request message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BarsExchange {
    /// `X-Request-Id`, as received (lower-case GUID).
    pub request_id: String,
    /// `X-Correlation-Id`: echoed on every response about this referral.
    pub correlation_id: String,
    /// The request Bundle's `id`: `MessageHeader.response.identifier` of
    /// every response.
    pub bundle_id: String,
    /// `referral` or `cancellation`.
    pub workflow: String,
    pub referral_id: ReferralId,
    pub referrer_id: ReferrerId,
    /// `MessageHeader.source.endpoint`: where responses go.
    pub source_endpoint: String,
    pub received_at: String,
}

/// The Task that tracks a referral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: TaskId,
    pub referral_id: ReferralId,
    pub status: TaskStatus,
    pub version_id: i64,
    pub last_updated: Timestamp,
    /// The Task JSON, with `id` and `meta` set, as served.
    pub resource: String,
}

/// Everything written when a referral is accepted, in one transaction.
#[derive(Debug, Clone)]
pub struct NewIntake {
    pub referral: Referral,
    pub task: Task,
    /// Who caused the Task's first state (recorded in `task_events`).
    pub actor: Actor,
    /// The mapped payload for the provider (the transactional outbox).
    pub messages: Vec<NewMessage>,
    /// The referral's strata for reports (`report_facts`), stored with it.
    pub facts: crate::reports::facts::ReferralFacts,
    /// The BaRS message this intake answers, naming the new referral:
    /// recorded in the same transaction if the referral is created; if its
    /// sender already used the request id, nothing is written.
    pub bars: Option<BarsExchange>,
}

/// What recording an intake did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new referral and its Task were stored.
    Created(Referral),
    /// The referrer had already sent this business identifier: nothing was
    /// written, and this is the referral stored the first time.
    Existing(Referral),
    /// The BaRS sender had already used this request id: nothing was
    /// written, and this is the message recorded the first time.
    AlreadyProcessed(BarsExchange),
}

/// A new version of a Task, applied only if the stored Task is still at
/// `expected_version` (otherwise the store reports a conflict).
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task: Task,
    pub expected_version: i64,
    pub from_status: TaskStatus,
    pub actor: Actor,
    pub reason: Option<String>,
    /// The notification to the referrer: the store numbers it (the
    /// referrer's next event number, allocated in the same transaction).
    pub notification: Option<Notification>,
    /// A new version of the referral (a cancellation), applied only if the
    /// stored one is at `version_id - 1`.
    pub referral: Option<Referral>,
    /// Further messages (e.g. a cancellation to the provider).
    pub messages: Vec<NewMessage>,
    /// What the change does to the referral's journey (`report_facts`,
    /// updated in the same transaction).
    pub step: crate::reports::facts::JourneyStep,
    /// The BaRS message that asked for this change (a cancellation):
    /// recorded in the same transaction; if its sender already used the
    /// request id, nothing is written and the store reports a conflict.
    pub bars: Option<BarsExchange>,
}

impl TaskUpdate {
    /// Whether applying it queues messages.
    pub fn adds_messages(&self) -> bool {
        self.notification.is_some() || !self.messages.is_empty()
    }
}

/// A Subscriptions notification to a referrer, waiting for its event
/// number: the message's payload is the Task it carries; the Bundle is
/// built from it and the number when it is sent
/// ([`super::notification::body`]).
#[derive(Debug, Clone)]
pub struct Notification {
    pub referrer_id: ReferrerId,
    pub message: NewMessage,
}

/// A provider status callback, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundCallback {
    pub provider_id: ProviderId,
    pub webhook_id: String,
    pub received_at: String,
    /// The referral it was about, when it named one sent to this provider.
    pub referral_id: Option<ReferralId>,
    pub body: String,
    /// The HTTP status Signpost answered.
    pub response_status: i64,
    /// `applied`, `ignored` or `refused: <why>`.
    pub outcome: String,
}

/// What recording a callback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackApplied {
    Applied,
    /// The webhook-id had been received before; nothing changed. The first
    /// reception is returned.
    Duplicate(InboundCallback),
}

/// What is left of an erased referral. The store sets each resource's
/// `meta.versionId` to the version its erasure writes.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub referral_id: ReferralId,
    pub referral_resource: String,
    pub task_resource: String,
}

/// An endpoint that is not sent to until re-enabled (after a `410 Gone`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisabledEndpoint {
    pub endpoint: Endpoint,
    pub disabled_at: String,
    pub reason: String,
}

/// What an attempt leaves the message as: decided by delivery (its
/// policy), written by the store as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageUpdate {
    /// Delivered: the next message for its referral and endpoint may go.
    Delivered,
    /// Still pending, not to be sent before this Unix millisecond.
    PendingUntil(i64),
    /// No more attempts: dead letter.
    Dead,
    /// An inbox message still uncollected: it stays as it is (pending, its
    /// lease kept), its attempt recorded (the referrer has been told).
    StillWaiting,
    /// Still pending (from this Unix millisecond), and its endpoint
    /// disabled, for `reason`, until an operator re-enables it.
    EndpointDisabled { reason: String, pending_until: i64 },
}

/// An attempt's record and what follows from it, stored in one transaction.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    /// The attempt's audit record, written with it.
    pub audit: AuditRecord,
    pub update: MessageUpdate,
    /// The message's `last_error` unless delivered.
    pub last_error: Option<String>,
    /// A Task change caused by this attempt (a dead-lettered referral shows
    /// "delivery failed").
    pub task_update: Option<TaskUpdate>,
}

/// One audit record (see [`crate::audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Assigned by the database; 0 before.
    pub seq: i64,
    /// Stored as its fixed-width text, which every writer makes.
    pub at: Timestamp,
    /// `referrer:<id>`, `admin:<token id>`, `provider:<id>`, `cli:<user>`,
    /// `signpost:delivery` or `unauthenticated`.
    pub actor: Actor,
    /// What authenticated a request: `token:<id>`, `certificate:<name>`,
    /// or both (see [`crate::security::tokens::Caller::credentials`]).
    pub credential: Option<String>,
    /// The client's address, for requests.
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// What was done: `GET /fhir/ServiceRequest/{id}`, `deliver referral`, …
    pub action: String,
    /// What it was done to: `/fhir/ServiceRequest/<id>`, `outbox/<msg>`, …
    pub resource: Option<String>,
    pub referral_id: Option<ReferralId>,
    /// The HTTP status, or the delivery outcome.
    pub outcome: String,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub referral_id: Option<ReferralId>,
    /// Exactly this actor.
    pub actor: Option<Actor>,
    /// Compared as stored text (fixed width, so text order is time order).
    pub since: Option<Timestamp>,
    pub limit: i64,
}

/// A bearer token as stored: never the token itself, only a salted hash of
/// its secret part.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    /// The public part of the token (`sp_<id>_…`), used to find it.
    pub id: String,
    /// `referrer`, `provider`, `admin` or `monitor`.
    pub role: String,
    pub referrer_id: Option<ReferrerId>,
    pub provider_id: Option<ProviderId>,
    pub clinical_service_id: Option<ClinicalServiceId>,
    pub salt: String,
    pub hash: String,
    /// RFC 3339 to the second, as stored (not a [`Timestamp`], whose text
    /// has milliseconds).
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// Never shows the salt or the hash.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("referrer_id", &self.referrer_id)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// An escalation: a provider's request back to a clinician about a
/// referral (its child Task, `partOf` the referral's Task), with the
/// Communication carrying the provider's words and, for a safeguarding
/// concern, a Flag. Stored as the resources served, beside the columns
/// that searches and the deadline sweep read.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Escalation {
    /// The child Task's id.
    pub id: TaskId,
    pub referral_id: ReferralId,
    pub referrer_id: ReferrerId,
    /// The provider that raised it.
    pub provider_id: ProviderId,
    /// Its reason's code (`referrals::escalation::Reason`).
    pub reason: String,
    /// `routine` or `urgent`.
    pub urgency: String,
    /// The child Task's status: `requested` until acknowledged.
    pub state: TaskStatus,
    pub version_id: i64,
    /// When it is sent again if not acknowledged by then.
    pub deadline: Timestamp,
    pub created_at: Timestamp,
    pub last_updated: Timestamp,
    pub acknowledged_at: Option<Timestamp>,
    /// How many times the referrer has been sent it.
    pub sends: i64,
    /// The child Task JSON, as served.
    pub task: String,
    pub communication_id: String,
    /// The Communication JSON, as served.
    pub communication: String,
    pub flag_id: Option<String>,
    /// The Flag JSON, as served (safeguarding concerns only).
    pub flag: Option<String>,
    /// The provider's request it was raised by (its `webhook-id`), when
    /// it came by `POST /providers/{id}/escalations`.
    pub request_id: Option<String>,
    /// Where it goes: the referrer, or the clinical service its referrer
    /// names (`escalate_to`).
    pub target: Endpoint,
    /// For a clinical service: the ServiceRequest (`proposal`) it is sent
    /// as, as served.
    pub service_request: Option<String>,
}

impl Escalation {
    /// Whether it is still open (not yet rejected or completed): at most
    /// one open escalation per referral and reason.
    pub fn is_open(&self) -> bool {
        matches!(self.state, TaskStatus::Requested | TaskStatus::Accepted)
    }
}
