//! The referral domain: accepting a referral (validate, attribute to its
//! referrer, put into canonical form, store with its Task in one
//! transaction, idempotently) and reading referrals and Tasks back.
//! Nothing here knows about HTTP.

pub mod attempts;
pub mod canonical;
pub mod checks;
pub mod deliveries;
pub mod escalation;
pub mod inbox;
pub mod lifecycle;
pub mod notification;
pub mod sameness;
pub mod subscription;
pub mod task;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

use self::checks::{Form, refuse};

use crate::domain::model::{self, BarsExchange, NewIntake, Recorded};
use crate::reports::facts::ReferralFacts;
use crate::{
    config::Config,
    domain::{
        Actor, Clock, Endpoint, MessageKind, NhsNumber, ProviderId, ReferralId, ReferrerId, TaskId,
    },
    mapping::MappingSet,
    outcome::{Issue, IssueCode},
    store::{Store, StoreError},
    validation::{Rejection, Validator},
};

/// The referral service: configuration, schemas and storage. Its parts
/// are its own: other areas get what they need through its methods, or
/// their own slice of the store at wiring (`startup.rs`).
pub struct Referrals {
    config: Arc<Config>,
    validator: Arc<Validator>,
    store: Arc<dyn Store>,
    /// The live mapping set; hot reload swaps it whole.
    mappings: Arc<ArcSwap<MappingSet>>,
    metrics: Arc<crate::metrics::Metrics>,
    /// Where "now" comes from: Task times, message times, audit records.
    clock: Arc<dyn Clock>,
}

/// How often a write is tried when another change to the same Task won the
/// race (optimistic concurrency, [`StoreError::Conflict`]).
const CONFLICT_RETRIES: usize = 8;

/// An error that may say another change won the race.
pub(crate) trait MayConflict {
    fn is_conflict(&self) -> bool;
}

impl MayConflict for StoreError {
    fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict)
    }
}

/// Run `attempt` (which reads what it changes, then writes it) again while
/// its write loses the race to another change, at most
/// [`CONFLICT_RETRIES`] times in all; the last conflict is returned.
pub(crate) async fn retry_on_conflict<T, E, F>(mut attempt: impl FnMut() -> F) -> Result<T, E>
where
    E: MayConflict,
    F: Future<Output = Result<T, E>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(e) if e.is_conflict() && tries < CONFLICT_RETRIES => tries += 1,
            done => return done,
        }
    }
}

/// Why an intake did not produce a referral.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("the submission was rejected")]
    Rejected(Rejection),
    /// `If-None-Exist` matched more than one referral.
    #[error("the If-None-Exist criteria matched more than one referral")]
    Ambiguous,
    /// The caller may not send referrals for this organisation.
    #[error("{0}")]
    Forbidden(String),
    /// Valid, but no provider's mapping takes it (or its mapping refused it).
    #[error("no provider takes the referral")]
    Unroutable(Vec<Issue>),
    /// The referrer already used this business identifier for a
    /// materially different referral (see [`sameness`]): the one stored.
    #[error("the business identifier was already used for a different referral")]
    IdentifierReused(ReferralId),
    /// The BaRS sender already used the message's request id: the message
    /// recorded then (nothing was written).
    #[error("the message's request id was already processed")]
    AlreadyProcessed(Box<BarsExchange>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An accepted referral.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// `false` when this business identifier had already been accepted:
    /// nothing new was stored.
    pub created: bool,
    pub referral: model::Referral,
}

/// What readiness found of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseCheck {
    Ready,
    /// Another session holds (or waits for) a lock intake would wait on.
    WaitingForLock,
    /// No answer in time, or an error.
    Failing,
}

impl Referrals {
    pub fn new(
        config: Arc<Config>,
        validator: Arc<Validator>,
        store: Arc<dyn Store>,
        mappings: Arc<ArcSwap<MappingSet>>,
        metrics: Arc<crate::metrics::Metrics>,
        clock: Arc<dyn Clock>,
    ) -> Referrals {
        Referrals {
            config,
            validator,
            store,
            mappings,
            metrics,
            clock,
        }
    }

    /// The configuration the service runs on.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// Where "now" comes from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The metrics registry it records into.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// Whether the database answers (a read of the outbox, as the worker
    /// makes) and takes writes (a database that answers reads while
    /// another session holds a lock intake needs cannot take a referral),
    /// both within `[database] ready_timeout`: a database that hangs is
    /// not ready, from the first probe to the last of the stall.
    pub async fn database_ready(&self) -> DatabaseCheck {
        let probe = async {
            self.store.next_due().await?;
            self.store.probe_write().await
        };
        match tokio::time::timeout(self.config.database.ready_timeout, probe).await {
            Ok(Ok(())) => DatabaseCheck::Ready,
            Ok(Err(e)) if e.is_lock_wait() => DatabaseCheck::WaitingForLock,
            Ok(Err(_)) | Err(_) => DatabaseCheck::Failing,
        }
    }

    /// Whether a mapping set with at least one mapping is loaded.
    pub fn has_mappings(&self) -> bool {
        !self.mappings.load().mappings.is_empty()
    }

    /// Accept a bare ServiceRequest. `if_none_exist` is the value of the
    /// `If-None-Exist` header (`identifier=system|value`), if sent.
    pub async fn submit_service_request(
        &self,
        referrer_id: &str,
        body: Value,
        if_none_exist: Option<&str>,
    ) -> Result<Receipt, IntakeError> {
        let criteria = if_none_exist.map(parse_if_none_exist).transpose()?;
        let started = std::time::Instant::now();
        let referral = checks::validate(&self.validator, Form::ServiceRequest, &body);
        self.metrics.validation(started.elapsed());
        self.accept(referrer_id, referral?, body, criteria, None)
            .await
    }

    /// Accept a transaction Bundle holding one ServiceRequest and the
    /// resources it references.
    pub async fn submit_transaction(
        &self,
        referrer_id: &str,
        body: Value,
    ) -> Result<Receipt, IntakeError> {
        let started = std::time::Instant::now();
        let referral = checks::validate(&self.validator, Form::Transaction, &body);
        self.metrics.validation(started.elapsed());
        self.accept(referrer_id, referral?, body, None, None).await
    }

    /// The structural layer alone (the official FHIR R4 schema), for any
    /// resource: what a BaRS message Bundle is checked against whole.
    pub fn check_structure(&self, document: &Value) -> Vec<Issue> {
        self.validator.check_structure(document)
    }

    /// Accept the referral of a message Bundle (BaRS) that has passed
    /// [`check_structure`](Self::check_structure): `service_request` is the
    /// index of its ServiceRequest entry. It is checked against the
    /// referral profile and stored in the same canonical shape as every
    /// other referral (the entries it references contained), but
    /// attributed to `sender_ods`, the message's sending organisation,
    /// rather than to the requester's organisation. `bars` is the message,
    /// naming the referral's id if it is new: it is recorded with the
    /// referral.
    pub async fn submit_message(
        &self,
        referrer_id: &str,
        body: Value,
        service_request: usize,
        sender_ods: &str,
        bars: BarsExchange,
    ) -> Result<Receipt, IntakeError> {
        let started = std::time::Instant::now();
        let referral = checks::validate_message(&self.validator, &body, service_request).map(
            |mut referral| {
                referral.ods_code = sender_ods.to_owned();
                referral
            },
        );
        self.metrics.validation(started.elapsed());
        self.accept(referrer_id, referral?, body, None, Some(bars))
            .await
    }

    /// The referral `referrer_id` sent under this business identifier.
    pub async fn sent_by(
        &self,
        referrer_id: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<model::Referral>, StoreError> {
        self.already_accepted(referrer_id, system, value).await
    }

    /// Accept a validated referral (`document` is the submission it was
    /// validated from) from `referrer_id` (the caller's token), which must
    /// be the referrer whose ODS codes include the requesting organisation.
    async fn accept(
        &self,
        referrer_id: &str,
        referral: checks::Validated,
        document: Value,
        if_none_exist: Option<(Option<String>, String)>,
        bars: Option<BarsExchange>,
    ) -> Result<Receipt, IntakeError> {
        let referrer = checks::attribute(&self.config, &referral, referrer_id)?;

        if let Some((system, value)) = if_none_exist {
            let mut matches = self
                .store
                .referrals_by_identifier(system.as_deref(), &value)
                .await?;
            matches.retain(|r| r.referrer_id == referrer.id);
            match matches.len() {
                0 => {}
                1 => {
                    return Ok(Receipt {
                        created: false,
                        referral: matches.remove(0),
                    });
                }
                _ => return Err(IntakeError::Ambiguous),
            }
        }

        let referral_id = bars
            .as_ref()
            .map_or_else(ReferralId::generate, |b| b.referral_id.clone());
        let task_id = TaskId::generate();
        let at = self.clock.now();
        let now = at.to_string();
        let identifier_system = referral.identifier_system.clone();
        let identifier_value = referral.identifier_value.clone();
        let nhs_number = referral.nhs_number.clone();
        let ods_code = referral.ods_code.clone();
        let resource = referral.canonical(document, referral_id.as_str(), &now);

        // Route and map now, so that a referral the provider could not take
        // is refused here rather than accepted and never delivered.
        let started = std::time::Instant::now();
        let mappings = self.mappings.load();
        let mapped = checks::route_and_map(&mappings, &resource, None);
        self.metrics.mapping(started.elapsed());
        let (mapping, payload) = match mapped {
            Ok(mapped) => mapped,
            // A referral this referrer already sent is answered from
            // storage even if today's mapping would refuse it. An accepted
            // duplicate needs no read here: the store's unique constraint
            // answers it with the stored referral.
            Err(issues) => {
                let existing = self
                    .already_accepted(referrer_id, &identifier_system, &identifier_value)
                    .await?;
                return match existing {
                    Some(existing) => resent(existing, &resource),
                    None => Err(IntakeError::Unroutable(issues)),
                };
            }
        };
        let provider_name = self
            .config
            .providers
            .get(mapping.provider.as_str())
            .and_then(|p| p.name.clone());
        let provider_id: ProviderId = mapping.provider.parse().map_err(|_| {
            refuse(vec![Issue::error(
                IssueCode::BusinessRule,
                format!(
                    "mapping provider {:?} is not a valid provider id",
                    mapping.provider
                ),
            )])
        })?;
        let referrer_id_typed = referrer.id.clone();

        let task = task::new_task(&task::NewTask {
            id: task_id.as_str(),
            referral_id: referral_id.as_str(),
            nhs_number: &nhs_number,
            requester_ods: &ods_code,
            owner: Some(task::Owner {
                provider_id: &mapping.provider,
                name: provider_name.as_deref(),
            }),
            now: &now,
        });
        let facts = ReferralFacts::of(&resource, provider_id.as_str(), &ods_code, at);
        let intake = NewIntake {
            referral: model::Referral {
                id: referral_id.clone(),
                referrer_id: referrer_id_typed,
                identifier_system,
                identifier_value,
                provider_id: Some(provider_id.clone()),
                version_id: 1,
                last_updated: at,
                resource: resource.to_string(),
                // (Validation refused any NHS number with a bad check digit.)
                nhs_number: NhsNumber::parse(&nhs_number).ok(),
                erased_at: None,
            },
            task: model::Task {
                id: task_id,
                referral_id: referral_id.clone(),
                status: task::TaskStatus::Requested,
                version_id: 1,
                last_updated: at,
                resource: task.to_string(),
            },
            actor: Actor::Referrer(referrer.id.clone()),
            messages: vec![lifecycle::new_message(
                &referral_id,
                Endpoint::Provider(provider_id),
                MessageKind::Referral,
                payload.to_string(),
                at,
            )],
            facts,
            bars,
        };
        // (The store wakes the delivery worker once the message is stored.)
        Ok(match self.store.record_intake(intake).await? {
            Recorded::Created(referral) => Receipt {
                created: true,
                referral,
            },
            Recorded::Existing(referral) => return resent(referral, &resource),
            Recorded::AlreadyProcessed(earlier) => {
                return Err(IntakeError::AlreadyProcessed(Box::new(earlier)));
            }
        })
    }

    /// The referral `referrer_id` already sent under this business
    /// identifier, if any.
    async fn already_accepted(
        &self,
        referrer_id: &str,
        system: &str,
        value: &str,
    ) -> Result<Option<model::Referral>, StoreError> {
        Ok(self
            .store
            .referrals_by_identifier(Some(system), value)
            .await?
            .into_iter()
            .find(|r| r.referrer_id == referrer_id))
    }

    /// Dry run (see [`checks::dry_run`]): every check intake makes, with
    /// attribution to `sender` when a referrer sends it, and nothing stored.
    /// Returns the provider and the payload it would receive.
    pub fn translate(
        &self,
        sender: Option<&str>,
        body: Value,
        provider: Option<&str>,
    ) -> Result<(String, Value), IntakeError> {
        checks::dry_run(
            &self.validator,
            &self.mappings.load(),
            Some(&self.config),
            sender,
            body,
            provider,
        )
    }

    /// One referral by id.
    pub async fn referral(&self, id: &ReferralId) -> Result<Option<model::Referral>, StoreError> {
        self.store.referral(id).await
    }

    /// The BaRS request message a referral came by, with its business
    /// identifier: what a BaRS response answers (`bars::response`). `None`
    /// for a referral that did not come by BaRS.
    pub async fn bars_origin(
        &self,
        id: &ReferralId,
    ) -> Result<Option<crate::bars::response::Origin>, StoreError> {
        let Some(exchange) = self.store.bars_referral_message(id).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .referral(id)
            .await?
            .map(|referral| crate::bars::response::Origin {
                exchange,
                identifier_system: referral.identifier_system,
                identifier_value: referral.identifier_value,
            }))
    }

    /// Referrals by business identifier (`system|value`, `|value` or `value`).
    pub async fn search_by_identifier(
        &self,
        token: &str,
    ) -> Result<Vec<model::Referral>, StoreError> {
        let (system, value) = split_token(token);
        self.store.referrals_by_identifier(system, value).await
    }

    /// One Task by id.
    pub async fn task(&self, id: &TaskId) -> Result<Option<model::Task>, StoreError> {
        self.store.task(id).await
    }

    /// The Tasks whose focus is this referral.
    pub async fn tasks_for(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Vec<model::Task>, StoreError> {
        self.store.tasks_for_referral(referral_id).await
    }

    /// Tasks changed at or after `since` (stored text order), of one
    /// referrer's referrals when given, oldest change first.
    pub async fn tasks_updated_since(
        &self,
        since: &str,
        referrer_id: Option<&ReferrerId>,
        limit: i64,
    ) -> Result<Vec<model::Task>, StoreError> {
        self.store
            .tasks_updated_since(since, referrer_id, limit)
            .await
    }
}

/// A FHIR token search value: `system|value`, `|value` (no system) or `value`
/// (any system). An empty system (`|value`) is treated as "any" too, since
/// referrals always carry a system.
fn split_token(token: &str) -> (Option<&str>, &str) {
    match token.split_once('|') {
        Some((system, value)) if !system.is_empty() => (Some(system), value),
        Some((_, value)) => (None, value),
        None => (None, token),
    }
}

fn parse_if_none_exist(header: &str) -> Result<(Option<String>, String), IntakeError> {
    let token = header
        .strip_prefix("identifier=")
        .filter(|t| !t.is_empty() && !t.contains('&'))
        .ok_or_else(|| {
            IntakeError::Rejected(Rejection::Structure(vec![Issue::error(
                IssueCode::NotSupported,
                "If-None-Exist supports only identifier=system|value",
            )]))
        })?;
    let (system, value) = split_token(token);
    Ok((system.map(str::to_owned), value.to_owned()))
}

/// The answer to a resend of a referral already `stored` under the same
/// business identifier, `resource` being the resend in canonical form: the
/// stored referral when it is the same referral, otherwise a conflict.
fn resent(stored: model::Referral, resource: &Value) -> Result<Receipt, IntakeError> {
    let same = serde_json::from_str::<Value>(&stored.resource)
        .is_ok_and(|original| sameness::same_referral(&original, resource));
    if same {
        Ok(Receipt {
            created: false,
            referral: stored,
        })
    } else {
        Err(IntakeError::IdentifierReused(stored.id))
    }
}
