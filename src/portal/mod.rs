//! The provider portal's domain: accounts (enrolment with a password and an
//! authenticator app, sign-in, sessions, throttling), the referrals a user
//! may see (their provider's), what is shown of each (what the provider's
//! mapping sends, `view`), and the actions a user takes (`actions`, applied
//! as Task changes by [`Referrals::portal_change`]). No HTML and no HTTP
//! here: the pages are `http::portal`.

pub mod actions;
pub mod throttle;
pub mod totp;
pub mod view;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier, password_hash::SaltString};
use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;

use self::{actions::Action, throttle::Throttle};
use crate::{
    domain::{Actor, Clock, ProviderId, ReferralId, Timestamp, model::Referral},
    mapping::Mapping,
    referrals::{Referrals, escalation, lifecycle::ChangeError, task::TaskStatus},
    store::{PortalSession, PortalUser, Store, StoreError, TaskEvent},
};

/// A session ends after this long without a request…
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// …and this long after sign-in, whatever.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// An enrolment link is good for this long.
pub const ENROLMENT_VALID: Duration = Duration::from_secs(72 * 60 * 60);
/// The shortest password enrolment takes.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The most referrals the list reads.
const LIST_LIMIT: i64 = 500;
/// The most rendered payloads kept (then the cache starts again).
const PAYLOAD_CACHE: usize = 20_000;

/// Rendered payloads by referral and version, with the mapping that
/// rendered them (held, so a reloaded mapping is never mistaken for it).
/// `None`: erased, or the mapping cannot render it (an erasure makes a
/// new version, so a version once shown stays what it was).
type PayloadCache = HashMap<(ReferralId, i64), (Arc<Mapping>, Option<Arc<Value>>)>;

/// The portal service.
pub struct Portal {
    store: Arc<dyn Store>,
    referrals: Arc<Referrals>,
    clock: Arc<dyn Clock>,
    throttle: Throttle,
    /// What each referral's page shows is rendered with the provider's
    /// mapping: once per referral version and mapping, not per page view.
    payloads: Mutex<PayloadCache>,
}

/// Why sign-in failed. The page says no more than "wrong details" or
/// "too many attempts": which of email, password or code was wrong is not
/// told.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("the email address, password or security code is not right")]
    Wrong,
    #[error("too many failed sign-ins")]
    Throttled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What is wrong with an enrolment form (each shown beside its field).
#[derive(Debug, Default)]
pub struct EnrolmentProblems {
    pub password: Option<&'static str>,
    pub confirm: Option<&'static str>,
    pub code: Option<&'static str>,
}

impl EnrolmentProblems {
    pub fn any(&self) -> bool {
        self.password.is_some() || self.confirm.is_some() || self.code.is_some()
    }
}

/// A signed-in user, found from their session cookie.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user: PortalUser,
    pub session: PortalSession,
}

impl SignedIn {
    pub fn actor(&self) -> Actor {
        Actor::PortalUser(self.user.id.clone())
    }
}

/// One row of the referrals list.
#[derive(Debug, Clone)]
pub struct ListedReferral {
    pub id: ReferralId,
    pub name: Option<String>,
    pub status: TaskStatus,
    pub received: Timestamp,
}

/// The referrals list: counts by state (of all the provider's referrals)
/// and the referrals that match the search.
#[derive(Debug, Clone)]
pub struct ReferralList {
    pub counts: Vec<(TaskStatus, usize)>,
    pub referrals: Vec<ListedReferral>,
}

/// Everything the referral page shows.
#[derive(Debug, Clone)]
pub struct ReferralPage {
    pub id: ReferralId,
    pub status: TaskStatus,
    pub business_status: Option<String>,
    pub received: Timestamp,
    /// What the provider's mapping sends (`None`: it cannot be shown).
    pub payload: Option<Value>,
    pub history: Vec<TaskEvent>,
    pub notes: Vec<(String, String)>,
    /// Its escalations to a clinician, oldest first: how the provider
    /// learns of their answers.
    pub escalations: Vec<EscalationSummary>,
}

/// An escalation as the referral's page shows it.
#[derive(Debug, Clone)]
pub struct EscalationSummary {
    pub reason: &'static str,
    pub urgency: String,
    /// The child Task's status.
    pub status: TaskStatus,
    pub raised: Timestamp,
    pub deadline: Timestamp,
    /// The referrer's answer: its reason for rejecting, or the decision
    /// and note of a completion.
    pub answer: Option<String>,
}

impl EscalationSummary {
    fn of(e: &crate::domain::model::Escalation) -> EscalationSummary {
        let task: Value = serde_json::from_str(&e.task).unwrap_or(Value::Null);
        let mut answer: Vec<String> = Vec::new();
        if let Some(reason) = task.pointer("/statusReason/text").and_then(Value::as_str) {
            answer.push(reason.to_owned());
        }
        for output in task["output"].as_array().into_iter().flatten() {
            let text = output
                .pointer("/valueCodeableConcept/text")
                .or_else(|| output.pointer("/valueCodeableConcept/coding/0/code"))
                .or_else(|| output.get("valueString"))
                .and_then(Value::as_str);
            if let Some(text) = text {
                answer.push(text.to_owned());
            }
        }
        EscalationSummary {
            reason: escalation::Reason::parse(&e.reason).map_or("Other", |r| r.display),
            urgency: e.urgency.clone(),
            status: e.state,
            raised: e.created_at,
            deadline: e.deadline,
            answer: (!answer.is_empty()).then(|| answer.join("; ")),
        }
    }
}

/// Why an action was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("no such referral")]
    NotFound,
    #[error("{0}")]
    NotAllowed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new secret for a link or cookie (32 random bytes, base64url) and the
/// hash it is stored as.
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

/// How a link's or cookie's secret is stored.
pub fn token_hash(token: &str) -> String {
    let digest = sha2::Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Email addresses are compared trimmed and lower-cased.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the operating system's random source");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes make a salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2id hashes any password")
        .to_string()
}

fn password_matches(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash nobody's password matches, checked when the email is unknown so
/// that a wrong email takes as long as a wrong password.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("not anybody's password at all"))
}

impl Portal {
    pub fn new(store: Arc<dyn Store>, referrals: Arc<Referrals>) -> Portal {
        let clock = referrals.clock().clone();
        Portal {
            store,
            referrals,
            clock,
            throttle: Throttle::default(),
            payloads: Mutex::new(HashMap::new()),
        }
    }

    /// What the provider's mapping sends it for this referral, rendered
    /// with its current mapping from the stored ServiceRequest: all the
    /// portal may show of it (cached while the referral and the mapping
    /// are as they were). `None` when no mapping is loaded for the
    /// provider, the referral was erased, or the mapping cannot render it.
    fn payload(&self, referral: &Referral) -> Option<Arc<Value>> {
        let provider_id = referral.provider_id.as_ref()?;
        let mapping = self.referrals.provider_mapping(provider_id)?;
        let key = (referral.id.clone(), referral.version_id);
        if let Some((rendered_by, payload)) = self.payloads.lock().expect("cache lock").get(&key)
            && Arc::ptr_eq(rendered_by, &mapping)
        {
            return payload.clone();
        }
        let payload = (!referral.is_erased())
            .then(|| serde_json::from_str::<Value>(&referral.resource).ok())
            .flatten()
            .and_then(|resource| mapping.render(&resource).ok())
            .map(Arc::new);
        let mut cache = self.payloads.lock().expect("cache lock");
        if cache.len() >= PAYLOAD_CACHE {
            cache.clear();
        }
        cache.insert(key, (mapping, payload.clone()));
        payload
    }

    /// [`Self::payload`] for a referral listed without its resource: from
    /// the cache when this version was rendered by the live mapping, else
    /// read whole and rendered.
    async fn listed_payload(&self, listed: &Referral) -> Result<Option<Arc<Value>>, StoreError> {
        if listed.is_erased() {
            return Ok(None);
        }
        let Some(mapping) = listed
            .provider_id
            .as_ref()
            .and_then(|p| self.referrals.provider_mapping(p))
        else {
            return Ok(None);
        };
        let key = (listed.id.clone(), listed.version_id);
        if let Some((rendered_by, payload)) = self.payloads.lock().expect("cache lock").get(&key)
            && Arc::ptr_eq(rendered_by, &mapping)
        {
            return Ok(payload.clone());
        }
        Ok(self
            .store
            .referral(&listed.id)
            .await?
            .and_then(|whole| self.payload(&whole)))
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    // ---- accounts (the CLI's `signpost users …`) ----

    /// A new account at `provider_id`; returns it and the enrolment link's
    /// secret (shown once). `None` if the email is taken.
    pub async fn create_user(
        &self,
        provider_id: ProviderId,
        email: &str,
        name: Option<String>,
    ) -> Result<Option<(PortalUser, String)>, StoreError> {
        let (token, hash) = new_token();
        let now = self.now();
        let user = PortalUser {
            id: format!("usr-{}", uuid::Uuid::now_v7().simple()),
            provider_id,
            email: normalise_email(email),
            name,
            password_hash: None,
            totp_secret: None,
            totp_last_step: 0,
            enrolment_hash: Some(hash),
            enrolment_expires_at: Some(now.after(ENROLMENT_VALID).as_millis()),
            created_at: now.as_millis(),
            disabled_at: None,
        };
        Ok(self
            .store
            .insert_portal_user(user.clone())
            .await?
            .then_some((user, token)))
    }

    /// An account by id or email.
    pub async fn find_user(&self, id_or_email: &str) -> Result<Option<PortalUser>, StoreError> {
        match self.store.portal_user(id_or_email).await? {
            Some(user) => Ok(Some(user)),
            None => {
                self.store
                    .portal_user_by_email(&normalise_email(id_or_email))
                    .await
            }
        }
    }

    pub async fn users(&self) -> Result<Vec<PortalUser>, StoreError> {
        self.store.portal_users().await
    }

    /// A new enrolment link for the account (its password and authenticator
    /// cleared, its sessions ended, re-enabled); the link's secret.
    pub async fn reset_user(&self, id: &str) -> Result<Option<String>, StoreError> {
        let (token, hash) = new_token();
        let expires = self.now().after(ENROLMENT_VALID).as_millis();
        Ok(self
            .store
            .reset_portal_user(id, &hash, expires)
            .await?
            .then_some(token))
    }

    /// Disable the account and end its sessions at once.
    pub async fn disable_user(&self, id: &str) -> Result<bool, StoreError> {
        self.store
            .disable_portal_user(id, self.now().as_millis())
            .await
    }

    // ---- enrolment ----

    /// The account an enrolment link is for, while it is good.
    pub async fn enrolment(&self, token: &str) -> Result<Option<PortalUser>, StoreError> {
        let now = self.now().as_millis();
        Ok(self
            .store
            .portal_user_by_enrolment(&token_hash(token))
            .await?
            .filter(|u| u.disabled_at.is_none())
            .filter(|u| u.enrolment_expires_at.is_some_and(|at| at > now)))
    }

    /// Finish enrolment: a password of at least [`MIN_PASSWORD_CHARS`]
    /// characters, typed twice, and a current code from the authenticator
    /// app set up with `totp_secret`. `Ok(None)`: done. `Ok(Some)`: what
    /// to correct. The link must still be good.
    pub async fn enrol(
        &self,
        token: &str,
        totp_secret: &str,
        password: &str,
        confirm: &str,
        code: &str,
    ) -> Result<Option<EnrolmentProblems>, StoreError> {
        let mut problems = EnrolmentProblems::default();
        if password.chars().count() < MIN_PASSWORD_CHARS {
            problems.password = Some("Enter a password of at least 12 characters");
        } else if password != confirm {
            problems.confirm = Some("The passwords do not match");
        }
        let step = totp::matching_step(totp_secret, code, self.now().as_millis());
        if step.is_none() {
            problems.code = Some("Enter the 6-digit security code your authenticator app shows");
        }
        if problems.any() {
            return Ok(Some(problems));
        }
        let done = self
            .store
            .complete_enrolment(
                &token_hash(token),
                &hash_password(password),
                totp_secret,
                step.unwrap_or_default(),
            )
            .await?;
        if !done {
            problems.code = Some("This enrolment link has already been used");
            return Ok(Some(problems));
        }
        Ok(None)
    }

    // ---- sign-in and sessions ----

    /// Check email, password and a current code; on success a new session
    /// and its cookie secret. Failures count against the account and the
    /// address (see [`throttle`]); once either is locked, even the right
    /// details are refused until the window has passed.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        code: &str,
        address: Option<std::net::IpAddr>,
    ) -> Result<(SignedIn, String), SignInError> {
        let now = self.now();
        let email = normalise_email(email);
        let account_key = format!("account:{email}");
        let address_key = address.map(|a| format!("address:{a}"));
        let locked = self
            .throttle
            .is_locked(&account_key, throttle::ACCOUNT_FAILURES, now)
            || address_key
                .as_ref()
                .is_some_and(|k| self.throttle.is_locked(k, throttle::ADDRESS_FAILURES, now));
        if locked {
            return Err(SignInError::Throttled);
        }
        let fail = || {
            self.throttle.fail(&account_key, now);
            if let Some(key) = &address_key {
                self.throttle.fail(key, now);
            }
            SignInError::Wrong
        };
        let user = self
            .store
            .portal_user_by_email(&email)
            .await?
            .filter(|u| u.disabled_at.is_none());
        // An unknown email is checked against a dummy hash: it takes as
        // long as a wrong password.
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        let matched = password_matches(password, stored.as_deref().unwrap_or(dummy_hash()));
        let (Some(user), true) = (user, matched) else {
            return Err(fail());
        };
        let Some(step) = user
            .totp_secret
            .as_deref()
            .and_then(|secret| totp::matching_step(secret, code, now.as_millis()))
        else {
            return Err(fail());
        };
        // A code is good once: one seen (or overheard) cannot be used again.
        if !self.store.use_totp_step(&user.id, step).await? {
            return Err(fail());
        }
        self.throttle.clear(&account_key);
        let (token, hash) = new_token();
        let (csrf, _) = new_token();
        let session = PortalSession {
            token_hash: hash,
            user_id: user.id.clone(),
            csrf_token: csrf,
            created_at: now.as_millis(),
            last_seen_at: now.as_millis(),
        };
        self.store.insert_portal_session(session.clone()).await?;
        tracing::info!(user_id = %user.id, provider_id = %user.provider_id, "portal sign-in");
        Ok((SignedIn { user, session }, token))
    }

    /// The signed-in user behind a session cookie, if the session is live
    /// (not idle for [`IDLE_TIMEOUT`], not older than [`ABSOLUTE_TIMEOUT`],
    /// its account not disabled); the request counts as activity. An
    /// expired session is deleted.
    pub async fn session(&self, cookie: &str) -> Result<Option<SignedIn>, StoreError> {
        let hash = token_hash(cookie);
        let Some(session) = self.store.portal_session(&hash).await? else {
            return Ok(None);
        };
        let now = self.now();
        let idle = now.since(Timestamp::from_millis(session.last_seen_at));
        let age = now.since(Timestamp::from_millis(session.created_at));
        let user = self
            .store
            .portal_user(&session.user_id)
            .await?
            .filter(|u| u.disabled_at.is_none());
        let Some(user) = user.filter(|_| idle < IDLE_TIMEOUT && age < ABSOLUTE_TIMEOUT) else {
            self.store.delete_portal_session(&hash).await?;
            return Ok(None);
        };
        // Activity is recorded at most once a minute: a page's every
        // request need not write.
        if idle >= Duration::from_secs(60) {
            self.store
                .touch_portal_session(&hash, now.as_millis())
                .await?;
        }
        Ok(Some(SignedIn { user, session }))
    }

    pub async fn sign_out(&self, signed_in: &SignedIn) -> Result<(), StoreError> {
        self.store
            .delete_portal_session(&signed_in.session.token_hash)
            .await
    }

    // ---- referrals ----

    /// The user's provider's referrals: counts by state, and those
    /// matching `search` (a name, NHS number or reference), new ones first
    /// then newest first.
    pub async fn referrals(
        &self,
        user: &PortalUser,
        search: &str,
    ) -> Result<ReferralList, StoreError> {
        let all = self
            .store
            .provider_referrals(&user.provider_id, LIST_LIMIT)
            .await?;
        let mut counts: Vec<(TaskStatus, usize)> = Vec::new();
        let mut listed = Vec::new();
        for (referral, task) in all {
            // Erased referrals (and any the mapping cannot render) are not
            // listed.
            let Some(payload) = self.listed_payload(&referral).await? else {
                continue;
            };
            match counts.iter_mut().find(|(s, _)| *s == task.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((task.status, 1)),
            }
            if !view::matches(search, referral.id.as_str(), &payload) {
                continue;
            }
            listed.push(ListedReferral {
                name: view::person_name(&payload),
                received: id_time(&referral.id).unwrap_or(referral.last_updated),
                id: referral.id,
                status: task.status,
            });
        }
        // New (not yet answered) first; within each, newest first (the
        // store's order, kept by a stable sort).
        listed.sort_by_key(|r| r.status != TaskStatus::Requested);
        counts.sort_by_key(|(s, _)| TaskStatus::ALL.iter().position(|a| a == s));
        Ok(ReferralList {
            counts,
            referrals: listed,
        })
    }

    /// One referral of the user's provider; `None` for any other referral
    /// (another provider's is not told apart from one that does not exist).
    pub async fn referral(
        &self,
        user: &PortalUser,
        id: &str,
    ) -> Result<Option<ReferralPage>, StoreError> {
        let Ok(id) = id.parse::<ReferralId>() else {
            return Ok(None);
        };
        let Some(referral) = self
            .store
            .referral(&id)
            .await?
            .filter(|r| r.provider_id.as_ref() == Some(&user.provider_id))
            .filter(|r| !r.is_erased())
        else {
            return Ok(None);
        };
        let Some(task) = self.store.tasks_for_referral(&id).await?.into_iter().next() else {
            return Ok(None);
        };
        let history = self.store.task_history(&task.id).await?;
        let resource: Value = serde_json::from_str(&task.resource).unwrap_or(Value::Null);
        let notes = resource["note"]
            .as_array()
            .map(|notes| {
                notes
                    .iter()
                    .map(|n| {
                        (
                            n["time"].as_str().unwrap_or_default().to_owned(),
                            n["text"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(ReferralPage {
            payload: self.payload(&referral).map(|p| (*p).clone()),
            business_status: resource["businessStatus"]["text"]
                .as_str()
                .map(str::to_owned),
            received: referral_received(&task.resource).unwrap_or(referral.last_updated),
            id: referral.id,
            status: task.status,
            history,
            notes,
            escalations: self
                .referrals
                .escalations_of_referral(&id)
                .await?
                .iter()
                .map(EscalationSummary::of)
                .collect(),
        }))
    }

    /// Escalate the referral to a clinician ("Escalate to a clinician"):
    /// the same escalation as `POST /providers/{id}/escalations`, by the
    /// user.
    pub async fn escalate(
        &self,
        signed_in: &SignedIn,
        id: &ReferralId,
        reason: &str,
        urgency: &str,
        note: &str,
    ) -> Result<(), escalation::EscalationError> {
        let request = escalation::RaiseRequest::parse(&serde_json::json!({
            "referral": id.as_str(),
            "reason": reason,
            "urgency": urgency,
            "note": note,
        }))?;
        let e = self
            .referrals
            .raise_escalation(&signed_in.user.provider_id, signed_in.actor(), &request)
            .await?;
        self.referrals
            .metrics()
            .escalation_raised(signed_in.user.provider_id.as_str(), &e.urgency);
        tracing::info!(referral_id = %id, escalation_id = %e.id, user_id = %signed_in.user.id, "escalation raised from the portal");
        Ok(())
    }

    /// Apply an action, if the state machine allows it now.
    pub async fn act(
        &self,
        signed_in: &SignedIn,
        id: &ReferralId,
        action: &Action,
    ) -> Result<TaskStatus, ActionError> {
        // Another provider's referral is not told apart from none at all.
        let referral = self
            .store
            .referral(id)
            .await?
            .filter(|r| r.provider_id.as_ref() == Some(&signed_in.user.provider_id))
            .ok_or(ActionError::NotFound)?;
        // Only what the page offers now: the state machine refuses status
        // changes itself, but would let a note or a contact through on a
        // finished (or not yet accepted) referral.
        let current = self
            .store
            .tasks_for_referral(&referral.id)
            .await?
            .into_iter()
            .next()
            .ok_or(ActionError::NotFound)?
            .status;
        if !action.kind().allowed_from(current) {
            return Err(ActionError::NotAllowed(format!(
                "{} is not possible while the referral is {current}",
                action.kind().button()
            )));
        }
        match self
            .referrals
            .portal_change(
                id,
                &signed_in.user.provider_id,
                &action.change(),
                signed_in.actor(),
            )
            .await
        {
            Ok(task) => {
                tracing::info!(user_id = %signed_in.user.id, referral_id = %id, task_status = %task.status, "portal action applied");
                Ok(task.status)
            }
            Err(ChangeError::NotFound(_)) => Err(ActionError::NotFound),
            Err(ChangeError::Conflict(text) | ChangeError::Unprocessable(text)) => {
                Err(ActionError::NotAllowed(text))
            }
            Err(ChangeError::Store(e)) => Err(ActionError::Store(e)),
        }
    }
}

/// When the referral arrived, from its id (a time-ordered UUID made at
/// intake): no JSON to read for each row of the list.
fn id_time(id: &ReferralId) -> Option<Timestamp> {
    let (secs, nanos) = uuid::Uuid::parse_str(id.as_str())
        .ok()?
        .get_timestamp()?
        .to_unix();
    Some(Timestamp::from_millis(
        i64::try_from(secs).ok()? * 1000 + i64::from(nanos / 1_000_000),
    ))
}

/// When the referral arrived: its Task's `authoredOn`.
fn referral_received(task_resource: &str) -> Option<Timestamp> {
    let task: Value = serde_json::from_str(task_resource).ok()?;
    task["authoredOn"].as_str()?.parse().ok()
}
