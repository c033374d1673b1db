//! NHS Booking and Referral Standard (BaRS): Signpost as a BaRS receiver.
//!
//! A BaRS sender posts a message Bundle to `$process-message`. It is
//! checked in BaRS's published order (headers, version, MessageHeader,
//! workflow, payload: [`headers`], [`message`]) and then handed to the one
//! referral pipeline ([`crate::referrals`]): a new referral is validated,
//! routed, mapped and stored in the same canonical shape as every other;
//! a cancellation is the referrer's withdrawal. Every refusal is a receiver
//! error from BaRS's catalogue ([`answer`]). A message is recorded in the
//! database (`bars_messages`, keyed by sender and request id) in the same
//! transaction as the change it made, so the sender's retry with that
//! request id is answered `409 REC_CONFLICT` `duplicate`, which BaRS
//! senders treat as success, however much later or concurrently it comes
//! and whichever instance it reaches. Another sender's request ids are its
//! own. Nothing here knows about HTTP.
//!
//! The way back is [`response`]: for a referrer with `notify = "bars"`,
//! each Task change of a referral it sent by BaRS goes out, through the
//! outbox like every message, as a `servicerequest-response` answering the
//! recorded request message.

pub mod answer;
pub mod definitions;
pub mod headers;
pub mod message;
pub mod response;

use std::sync::Arc;

use serde_json::{Value, json};

use self::{
    answer::{Rec, Refusal},
    headers::RequestHeaders,
    message::{Message, URI_SYSTEM, Workflow},
};
use crate::{
    config::{BarsConfig, Config},
    domain::{ReferralId, ReferrerId, model::Referral},
    outcome::IssueCode,
    referrals::{IntakeError, Referrals, lifecycle::ChangeError},
    store::{BarsExchange, BarsMessages, StoreError},
    validation::{Rejection, profile::first_identifier},
};

/// The BaRS receiver.
pub struct Bars {
    config: Arc<Config>,
    referrals: Arc<Referrals>,
    store: Arc<dyn BarsMessages>,
}

/// A processed message.
#[derive(Debug, Clone)]
pub struct Processed {
    pub workflow: Workflow,
    pub referral_id: ReferralId,
    /// The referral's ServiceRequest version after the message.
    pub version_id: i64,
}

impl Bars {
    pub fn new(
        config: Arc<Config>,
        referrals: Arc<Referrals>,
        store: Arc<dyn BarsMessages>,
    ) -> Bars {
        Bars {
            config,
            referrals,
            store,
        }
    }

    /// `[bars]`, when BaRS is enabled.
    pub fn receiver(&self) -> Option<&BarsConfig> {
        self.config.bars.as_ref()
    }

    /// Process one message from `referrer_id` (the authenticated caller).
    pub async fn process(
        &self,
        referrer_id: &str,
        headers: RequestHeaders,
        mut body: Value,
    ) -> Result<Processed, Refusal> {
        let Some(receiver) = self.receiver() else {
            return Err(Refusal::new(
                Rec::NotImplemented,
                IssueCode::NotSupported,
                "this gateway is not configured as a BaRS receiver",
            ));
        };
        let referrer: ReferrerId = referrer_id
            .parse()
            .map_err(|_| Refusal::new(Rec::Forbidden, IssueCode::Forbidden, "not a referrer"))?;
        if let Some(earlier) = self
            .store
            .bars_message(&referrer, &headers.request_id)
            .await
            .map_err(unavailable)?
        {
            return Err(duplicate(&earlier));
        }
        if let Some(target) = &headers.target_service
            && target != &receiver.service_id
        {
            return Err(Refusal::new(
                Rec::BadRequest,
                IssueCode::Invalid,
                "the NHSD-Target-Identifier header names another service",
            ));
        }
        let message = message::read(&body, receiver)?;
        self.check_sender(referrer_id, &headers, &message)?;
        let structural = self.referrals.check_structure(&body);
        if !structural.is_empty() {
            return Err(Refusal::bad_payload(structural));
        }
        let (system, value) = business_identifier(&mut body, message.service_request)?;
        tracing::info!(
            bars.request_id = %headers.request_id,
            bars.workflow = message.workflow.as_str(),
            bars.definition = message.definition.map_or("none", |d| d.name),
            bars.requesting_software = headers.requesting_software.as_deref().unwrap_or("-"),
            "BaRS message checked"
        );
        // The message is recorded in the transaction of the change it asks
        // for, keyed by its sender and request id: a retry, concurrent or
        // later, finds it there and changes nothing.
        let exchange = |referral_id: ReferralId| BarsExchange {
            request_id: headers.request_id.clone(),
            correlation_id: headers.correlation_id.clone(),
            bundle_id: message.bundle_id.clone(),
            workflow: message.workflow.as_str().to_owned(),
            referral_id,
            referrer_id: referrer.clone(),
            source_endpoint: message.source_endpoint.clone(),
            received_at: self.referrals.clock().now().to_string(),
        };
        match &message.workflow {
            Workflow::NewReferral => {
                let receipt = self
                    .referrals
                    .submit_message(
                        referrer_id,
                        body,
                        message.service_request,
                        &message.sender_ods,
                        exchange(ReferralId::generate()),
                    )
                    .await
                    .map_err(refused_intake)?;
                Ok(Processed {
                    workflow: Workflow::NewReferral,
                    referral_id: receipt.referral.id,
                    version_id: receipt.referral.version_id,
                })
            }
            Workflow::Cancellation(status) => {
                let cancelled = self
                    .cancel(referrer_id, &system, &value, status, exchange)
                    .await;
                match cancelled {
                    Ok(revised) => Ok(Processed {
                        workflow: message.workflow.clone(),
                        referral_id: revised.id,
                        version_id: revised.version_id,
                    }),
                    // Refused because a message with this request id (a
                    // concurrent retry) cancelled it first: that one's
                    // answer.
                    Err(refusal) => match self
                        .store
                        .bars_message(&referrer, &headers.request_id)
                        .await
                    {
                        Ok(Some(earlier)) => Err(duplicate(&earlier)),
                        _ => Err(refusal),
                    },
                }
            }
        }
    }

    /// Cancel (or mark entered-in-error) the referral `referrer_id` sent
    /// under this business identifier, recording the message with it.
    async fn cancel(
        &self,
        referrer_id: &str,
        system: &str,
        value: &str,
        status: &str,
        exchange: impl FnOnce(ReferralId) -> BarsExchange,
    ) -> Result<Referral, Refusal> {
        let referral = self
            .referrals
            .sent_by(referrer_id, system, value)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| {
                Refusal::at(
                    Rec::NotFound,
                    IssueCode::NotFound,
                    "the ServiceRequest to cancel is not known: no referral from this sender has its identifier",
                    "ServiceRequest.identifier",
                )
            })?;
        // Only an active referral can be cancelled; the Task's state
        // machine refuses a finished one.
        let current = serde_json::from_str::<Value>(&referral.resource)
            .ok()
            .and_then(|r| r.get("status").and_then(Value::as_str).map(str::to_owned));
        if current.as_deref() != Some("active") {
            return Err(Refusal::at(
                Rec::Conflict,
                IssueCode::Conflict,
                "local data updates conflict with the updates in the message: the referral is no longer active",
                "ServiceRequest.status",
            ));
        }
        let exchange = exchange(referral.id.clone());
        self.referrals
            .withdraw(&referral.id, status, Some(&exchange))
            .await
            .map_err(refused_change)
    }

    /// The sending organisation must be one the authenticated referrer
    /// lists, and so must `NHSD-End-User-Organisation` when sent.
    fn check_sender(
        &self,
        referrer_id: &str,
        headers: &RequestHeaders,
        message: &Message,
    ) -> Result<(), Refusal> {
        let owned = |ods: &str| {
            self.config
                .referrer_for_ods(ods)
                .is_some_and(|r| r.id.as_str() == referrer_id)
        };
        if !owned(&message.sender_ods) {
            return Err(Refusal::at(
                Rec::Forbidden,
                IssueCode::Forbidden,
                "the sending organisation (MessageHeader.sender) is not one this caller's credentials may send for",
                "Bundle.entry[0].resource.sender",
            ));
        }
        if let Some(ods) = &headers.end_user_ods
            && !owned(ods)
        {
            return Err(Refusal::new(
                Rec::Forbidden,
                IssueCode::Forbidden,
                "the NHSD-End-User-Organisation header names an organisation this caller's credentials may not send for",
            ));
        }
        Ok(())
    }
}

/// The ServiceRequest's business identifier; BaRS identifies a
/// ServiceRequest without one by its entry's `fullUrl` (`urn:uuid:…`,
/// repeated by a cancellation), which then becomes its identifier (system
/// [`URI_SYSTEM`]) so that the referral is filed, found and deduplicated
/// like every other.
fn business_identifier(body: &mut Value, index: usize) -> Result<(String, String), Refusal> {
    let entry = &mut body["entry"][index];
    let full_url = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let service_request = &mut entry["resource"];
    if let Some(identifier) = first_identifier(service_request, None) {
        return Ok(identifier);
    }
    match full_url.filter(|u| u.starts_with("urn:uuid:")) {
        Some(url) => {
            service_request["identifier"] = json!([{ "system": URI_SYSTEM, "value": url }]);
            Ok((URI_SYSTEM.to_owned(), url))
        }
        None => Err(Refusal::at(
            Rec::BadRequest,
            IssueCode::Required,
            "the ServiceRequest needs an identifier, or a urn:uuid fullUrl that identifies it",
            "ServiceRequest.identifier",
        )),
    }
}

/// The answer to a request id its sender already used: BaRS senders take
/// it as success, so it gives the referral the first message was about.
fn duplicate(earlier: &BarsExchange) -> Refusal {
    Refusal::new(
        Rec::Conflict,
        IssueCode::Duplicate,
        format!(
            "the message has been identified as having already been processed (Signpost referral reference {})",
            answer::referral_reference(earlier.referral_id.as_str())
        ),
    )
}

fn unavailable(error: StoreError) -> Refusal {
    tracing::error!(error.message = %error, error.cause_chain = ?error, "storage failed; answering 503");
    Refusal::new(
        Rec::ServiceUnavailable,
        IssueCode::Transient,
        "storage is temporarily unavailable and the outcome is unknown; retry with the same X-Request-Id (a message already processed is answered 409 duplicate)",
    )
}

fn refused_intake(error: IntakeError) -> Refusal {
    match error {
        IntakeError::Rejected(Rejection::Structure(issues) | Rejection::Profile(issues)) => {
            Refusal::bad_payload(issues)
        }
        IntakeError::Unroutable(issues) => Refusal {
            rec: Rec::UnprocessableEntity,
            issues: issues
                .into_iter()
                .map(|mut issue| {
                    issue.code = IssueCode::NotSupported;
                    issue
                })
                .collect(),
        },
        IntakeError::Forbidden(text) => Refusal::new(Rec::Forbidden, IssueCode::Forbidden, text),
        IntakeError::Ambiguous => Refusal::new(
            Rec::Conflict,
            IssueCode::Conflict,
            "the referral's identifier matches more than one referral",
        ),
        // Not `duplicate`: senders take that as success, and this referral
        // was not accepted.
        IntakeError::IdentifierReused(original) => Refusal::new(
            Rec::Conflict,
            IssueCode::Conflict,
            format!(
                "the ServiceRequest's identifier was already used by this sender for a different referral, ServiceRequest/{original}; to replace it, cancel that referral and send the new one under a new identifier"
            ),
        ),
        IntakeError::AlreadyProcessed(earlier) => duplicate(&earlier),
        IntakeError::Store(e) => unavailable(e),
    }
}

fn refused_change(error: ChangeError) -> Refusal {
    match error {
        ChangeError::NotFound(text) => Refusal::new(Rec::NotFound, IssueCode::NotFound, text),
        ChangeError::Conflict(text) => Refusal::new(Rec::Conflict, IssueCode::Conflict, text),
        ChangeError::Unprocessable(text) => {
            Refusal::new(Rec::UnprocessableEntity, IssueCode::NotSupported, text)
        }
        ChangeError::Store(e) => unavailable(e),
    }
}
