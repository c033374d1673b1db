//! The referral domain: accepting a referral (validate, attribute to its
//! referrer, put into canonical form, store with its Task in one
//! transaction, idempotently) and reading referrals and Tasks back.
//! Nothing here knows about HTTP.

pub mod attempts;
pub mod canonical;
pub mod deliveries;
pub mod lifecycle;
pub mod notification;
pub mod task;

use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::{Value, json};

use crate::domain::model::{self, NewIntake, Recorded};
use crate::{
    config::Config,
    domain::{
        Actor, Clock, Endpoint, MessageKind, NhsNumber, ProviderId, ReferralId, ReferrerId, TaskId,
    },
    mapping::MappingSet,
    outcome::{Issue, IssueCode},
    store::{Store, StoreError},
    validation::{Rejection, Submission, Validator},
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What intake keeps of a validated referral once the referral's borrow of
/// the submitted document ends: what it is filed under, and how to turn the
/// document into canonical form without copying it.
struct Validated {
    identifier_system: String,
    identifier_value: String,
    nhs_number: String,
    /// The requester Organization's ODS code, and where it sits.
    ods_code: String,
    organization_path: String,
    canonical: canonical::Plan,
}

impl Validated {
    fn new(referral: crate::validation::Referral<'_>) -> Validated {
        Validated {
            canonical: canonical::plan(&referral),
            identifier_system: referral.identifier_system,
            identifier_value: referral.identifier_value,
            nhs_number: referral.nhs_number,
            ods_code: referral.ods_code,
            organization_path: referral.organization.path,
        }
    }
}

/// An accepted referral.
#[derive(Debug, Clone)]
pub struct Receipt {
    /// `false` when this business identifier had already been accepted:
    /// nothing new was stored.
    pub created: bool,
    pub referral: model::Referral,
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
    /// makes).
    pub async fn database_ready(&self) -> bool {
        self.store.next_due().await.is_ok()
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
        expect_resource_type(
            &body,
            "ServiceRequest",
            "this endpoint takes a ServiceRequest; post a transaction Bundle to the base URL",
        )?;
        let started = std::time::Instant::now();
        let referral = self
            .validate(Submission::ServiceRequest(&body))
            .map(Validated::new);
        self.metrics.validation(started.elapsed());
        self.accept(referrer_id, referral?, body, criteria).await
    }

    /// Accept a transaction Bundle holding one ServiceRequest and the
    /// resources it references.
    pub async fn submit_transaction(
        &self,
        referrer_id: &str,
        body: Value,
    ) -> Result<Receipt, IntakeError> {
        expect_resource_type(
            &body,
            "Bundle",
            "the base URL takes a transaction Bundle; post a bare ServiceRequest to /fhir/ServiceRequest",
        )?;
        let started = std::time::Instant::now();
        let structural = self.validator.check_structure(&body);
        if !structural.is_empty() {
            self.metrics.validation(started.elapsed());
            return Err(IntakeError::Rejected(Rejection::Structure(structural)));
        }
        let service_request = find_service_request_entry(&body)?;
        let referral = self
            .validator
            .check_profile(Submission::Bundle {
                bundle: &body,
                service_request,
            })
            .map(Validated::new)
            .map_err(IntakeError::Rejected);
        self.metrics.validation(started.elapsed());
        self.accept(referrer_id, referral?, body, None).await
    }

    fn validate<'a>(
        &self,
        submission: Submission<'a>,
    ) -> Result<crate::validation::Referral<'a>, IntakeError> {
        self.validator
            .check_referral(submission)
            .map_err(IntakeError::Rejected)
    }

    /// Accept a validated referral (`document` is the submission it was
    /// validated from) from `referrer_id` (the caller's token), which must
    /// be the referrer whose ODS codes include the requesting organisation.
    async fn accept(
        &self,
        referrer_id: &str,
        referral: Validated,
        document: Value,
        if_none_exist: Option<(Option<String>, String)>,
    ) -> Result<Receipt, IntakeError> {
        let Some(referrer) = self.config.referrer_for_ods(&referral.ods_code) else {
            return Err(IntakeError::Rejected(Rejection::Profile(vec![
                Issue::error(
                    IssueCode::BusinessRule,
                    "the requesting organisation's ODS code is not registered with this gateway as a referrer",
                )
                .at(format!("{}.identifier", referral.organization_path)),
            ])));
        };
        if referrer.id != referrer_id {
            return Err(IntakeError::Forbidden(format!(
                "this token may send referrals only for {referrer_id}; the requesting organisation (ODS code {}) belongs to another referrer",
                referral.ods_code
            )));
        }

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

        let referral_id = ReferralId::generate();
        let task_id = TaskId::generate();
        let at = self.clock.now();
        let now = at.to_string();
        let resource = with_server_identity(
            referral.canonical.apply(document),
            referral_id.as_str(),
            &now,
        );

        // Route and map now, so that a referral the provider could not take
        // is refused here rather than accepted and never delivered.
        let started = std::time::Instant::now();
        let mappings = self.mappings.load();
        let mapped = mappings.route(&resource).and_then(|mapping| {
            let payload = mapping.translate(&resource)?;
            Ok((mapping, payload))
        });
        self.metrics.mapping(started.elapsed());
        let (mapping, payload) = match mapped {
            Ok(mapped) => mapped,
            // A referral this referrer already sent is answered from
            // storage even if today's mapping would refuse it. An accepted
            // duplicate needs no read here: the store's unique constraint
            // answers it with the stored referral.
            Err(issues) => {
                let existing = self
                    .already_accepted(
                        referrer_id,
                        &referral.identifier_system,
                        &referral.identifier_value,
                    )
                    .await?;
                return match existing {
                    Some(existing) => Ok(Receipt {
                        created: false,
                        referral: existing,
                    }),
                    None => Err(refuse(issues)),
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
            nhs_number: &referral.nhs_number,
            requester_ods: &referral.ods_code,
            owner: Some(task::Owner {
                provider_id: &mapping.provider,
                name: provider_name.as_deref(),
            }),
            now: &now,
        });
        let intake = NewIntake {
            referral: model::Referral {
                id: referral_id.clone(),
                referrer_id: referrer_id_typed,
                identifier_system: referral.identifier_system.clone(),
                identifier_value: referral.identifier_value.clone(),
                provider_id: Some(provider_id.clone()),
                version_id: 1,
                last_updated: at,
                resource: resource.to_string(),
                // (Validation refused any NHS number with a bad check digit.)
                nhs_number: NhsNumber::parse(&referral.nhs_number).ok(),
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
        };
        // (The store wakes the delivery worker once the message is stored.)
        Ok(match self.store.record_intake(intake).await? {
            Recorded::Created(referral) => Receipt {
                created: true,
                referral,
            },
            Recorded::Existing(referral) => Receipt {
                created: false,
                referral,
            },
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

    /// Dry run: validate a referral (bare or transaction Bundle), put it in
    /// canonical form, route it (or use `provider`) and map it. Nothing is
    /// stored and no referrer check is made; Signpost's id for the referral
    /// shows as `DRY-RUN`. Returns the provider and the payload it would
    /// receive.
    pub fn translate(
        &self,
        body: Value,
        provider: Option<&str>,
    ) -> Result<(String, Value), IntakeError> {
        translate(&self.validator, &self.mappings.load(), body, provider)
    }

    /// One referral by id.
    pub async fn referral(&self, id: &ReferralId) -> Result<Option<model::Referral>, StoreError> {
        self.store.referral(id).await
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

/// The resource with the server's `id` and `meta.versionId`/`lastUpdated`,
/// placed right after `resourceType` as FHIR JSON customarily has them;
/// the client's other `meta` (profiles, tags) is kept.
fn with_server_identity(resource: Value, id: &str, now: &str) -> Value {
    let Value::Object(mut fields) = resource else {
        return resource;
    };
    let mut meta = match fields.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => serde_json::Map::new(),
    };
    meta.insert("versionId".into(), json!("1"));
    meta.insert("lastUpdated".into(), json!(now));
    fields.shift_remove("id");
    let mut ordered = serde_json::Map::with_capacity(fields.len() + 2);
    if let Some(resource_type) = fields.shift_remove("resourceType") {
        ordered.insert("resourceType".into(), resource_type);
    }
    ordered.insert("id".into(), json!(id));
    ordered.insert("meta".into(), Value::Object(meta));
    ordered.extend(fields);
    Value::Object(ordered)
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

/// The one ServiceRequest entry of a transaction Bundle.
fn find_service_request_entry(bundle: &Value) -> Result<usize, IntakeError> {
    let unprocessable = |at: String, text: &str| {
        IntakeError::Rejected(Rejection::Profile(vec![
            Issue::error(IssueCode::NotSupported, text).at(at),
        ]))
    };
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(unprocessable(
            "Bundle.type".into(),
            "only a transaction Bundle can be posted here (a referral and the resources it references)",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut service_requests = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let method = entry.pointer("/request/method").and_then(Value::as_str);
        if method != Some("POST") {
            return Err(unprocessable(
                format!("Bundle.entry[{index}].request.method"),
                "each entry must be created with request.method POST",
            ));
        }
        if entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            == Some("ServiceRequest")
        {
            service_requests.push(index);
        }
    }
    match service_requests.as_slice() {
        [one] => Ok(*one),
        [] => Err(unprocessable(
            "Bundle.entry".into(),
            "the Bundle holds no ServiceRequest: a referral Bundle holds exactly one",
        )),
        _ => Err(unprocessable(
            "Bundle.entry".into(),
            "the Bundle holds several ServiceRequests: send one referral per Bundle",
        )),
    }
}

/// See [`Referrals::translate`]; usable offline (`signpost translate`).
pub fn translate(
    validator: &Validator,
    mappings: &MappingSet,
    body: Value,
    provider: Option<&str>,
) -> Result<(String, Value), IntakeError> {
    let checked = match body.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {
            let structural = validator.check_structure(&body);
            if !structural.is_empty() {
                return Err(IntakeError::Rejected(Rejection::Structure(structural)));
            }
            validator.check_profile(Submission::Bundle {
                bundle: &body,
                service_request: find_service_request_entry(&body)?,
            })
        }
        _ => {
            expect_resource_type(
                &body,
                "ServiceRequest",
                "a referral is a ServiceRequest or a transaction Bundle",
            )?;
            validator.check_referral(Submission::ServiceRequest(&body))
        }
    };
    let canonical = checked
        .map(|referral| canonical::plan(&referral))
        .map_err(IntakeError::Rejected)?;
    // Signpost's id is assigned on acceptance; a dry run shows a placeholder.
    let resource = with_server_identity(canonical.apply(body), "DRY-RUN", "");
    let mapping = match provider {
        Some(id) => mappings.mappings.get(id).cloned().ok_or_else(|| {
            refuse(vec![Issue::error(
                IssueCode::NotFound,
                format!("no mapping for provider {id}"),
            )])
        })?,
        None => mappings.route(&resource).map_err(refuse)?,
    };
    let payload = mapping.translate(&resource).map_err(refuse)?;
    Ok((mapping.provider.clone(), payload))
}

fn refuse(issues: Vec<Issue>) -> IntakeError {
    IntakeError::Rejected(Rejection::Profile(issues))
}

/// `400` unless `body` is a `expected` resource.
fn expect_resource_type(body: &Value, expected: &str, hint: &str) -> Result<(), IntakeError> {
    let found = body.get("resourceType").and_then(Value::as_str);
    if found == Some(expected) {
        return Ok(());
    }
    // What was found is not quoted: resourceType is the client's text.
    let found = if found.is_some() {
        "another resource type"
    } else {
        "a document without resourceType"
    };
    Err(IntakeError::Rejected(Rejection::Structure(vec![
        Issue::error(IssueCode::Invalid, format!("{hint}, not {found}"))
            .at(format!("{expected}.resourceType")),
    ])))
}
