//! The delivery worker: claims due outbox messages and POSTs them, signed
//! (Standard Webhooks), to the provider or referrer they are for; records
//! every attempt; retries with back-off; dead-letters; disables an endpoint
//! that answers `410 Gone`.
//!
//! Delivery is at least once: a message is marked delivered only after the
//! endpoint's `2xx`, so a crash between the two sends it again, with the
//! same `webhook-id`, which receivers use to drop duplicates. Messages are
//! leased, not locked: a worker that dies holding a lease loses it when the
//! lease expires, and another worker (or instance) takes over. Messages for
//! one referral and one endpoint go in order (the store hands out only the
//! earliest pending one).

use std::{
    collections::BTreeMap,
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use url::Url;

use crate::{
    config::{Config, DeliveryConfig},
    domain::{Endpoint, MessageKind},
    referrals::{
        Referrals,
        model::{Attempt, OutboxMessage},
        notification,
    },
    security::webhooks::SigningKeys,
    store::{AttemptRecord, AuditRow, MessageUpdate, Outbox, StoreError},
};

/// How much of a response body each attempt keeps.
const EXCERPT_BYTES: usize = 4096;

/// A delivery worker. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    /// This worker's lease owner name, unique per process.
    id: String,
    config: Arc<Config>,
    keys: Arc<BTreeMap<String, Arc<SigningKeys>>>,
    referrals: Arc<Referrals>,
    outbox: Arc<dyn Outbox>,
    metrics: Arc<crate::metrics::Metrics>,
    client: reqwest::Client,
    heartbeat: Arc<crate::heartbeat::WorkerHeartbeat>,
}

/// Where a message goes and how it is signed.
struct Target<'a> {
    url: &'a Url,
    keys: &'a SigningKeys,
    content_type: &'static str,
}

/// What an attempt's answer means.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Delivered,
    /// Try again later; the endpoint may have said when.
    Retry {
        retry_after: Option<Duration>,
    },
    /// Never going to work: dead-letter now.
    Dead,
    /// `410 Gone`: disable the endpoint.
    Gone,
}

/// A request slot, held from the claim until the answer is in.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Given back before the worker loop is told, so that it sees it.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

/// One attempt's result, before it is judged.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

impl Worker {
    /// A worker for `config`'s endpoints, signing with `keys` (by
    /// `provider:<id>` / `referrer:<id>`).
    pub fn new(
        config: Arc<Config>,
        keys: Arc<BTreeMap<String, Arc<SigningKeys>>>,
        referrals: Arc<Referrals>,
        outbox: Arc<dyn Outbox>,
        heartbeat: Arc<crate::heartbeat::WorkerHeartbeat>,
    ) -> anyhow::Result<Worker> {
        let delivery = &config.delivery;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Targets are reached directly, through the address guard
            // (a proxy would resolve names beyond its reach).
            .no_proxy()
            .dns_resolver(crate::security::egress::resolver(&config))
            .connect_timeout(delivery.connect_timeout)
            .timeout(delivery.request_timeout)
            .user_agent(concat!("Signpost/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Worker {
            inner: Arc::new(Inner {
                id,
                metrics: referrals.metrics(),
                config,
                keys,
                referrals,
                outbox,
                client,
                heartbeat,
            }),
        })
    }

    fn store(&self) -> &Arc<dyn Outbox> {
        &self.inner.outbox
    }

    fn settings(&self) -> &DeliveryConfig {
        &self.inner.config.delivery
    }

    /// Deliver until `shutdown` completes; then finish the attempts in
    /// flight (within the request timeout) and give back any lease left.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let wake = self.store().wakeups();
        let listener = self.store().watch_outbox();
        let concurrency = self.settings().concurrency;
        let poll = self.settings().poll_interval;
        let lease = i64::try_from(self.settings().lease.as_millis()).unwrap_or(i64::MAX / 2);
        // `concurrency` bounds the requests in flight. An attempt gives its
        // slot back as soon as it has its answer, not after recording it:
        // under load the record waits its turn for the database, and
        // holding slots meanwhile starved delivery while intake ran.
        let slots = Arc::new(Semaphore::new(concurrency));
        let freed = Arc::new(Notify::new());
        let mut in_flight = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        tracing::info!(worker = %self.inner.id, "delivery worker started");
        loop {
            self.inner.heartbeat.beat();
            while in_flight.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed = 0;
            if free > 0 {
                let now = Utc::now().timestamp_millis();
                match self
                    .store()
                    .claim_due(&self.inner.id, now, now + lease, free as i64)
                    .await
                {
                    Ok(messages) => {
                        claimed = messages.len();
                        for message in messages {
                            let worker = self.clone();
                            let slot = Slot {
                                permit: slots.clone().try_acquire_owned().ok(),
                                freed: freed.clone(),
                            };
                            in_flight.spawn(async move { worker.deliver(message, slot).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot claim outbox messages"),
                }
            }
            if claimed > 0 && slots.available_permits() > 0 {
                continue;
            }
            let wait = if slots.available_permits() == 0 {
                poll
            } else {
                self.until_next_due(poll).await
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = wake.notified() => {},
                () = freed.notified() => {},
                () = tokio::time::sleep(wait) => {},
            }
        }
        let grace = self.settings().request_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        in_flight.abort_all();
        if let Some(listener) = listener {
            listener.abort();
        }
        self.inner.heartbeat.stopped();
        if let Err(e) = self.store().release_leases(&self.inner.id).await {
            tracing::warn!(error = %e, "cannot release leases; they expire on their own");
        }
        tracing::info!(worker = %self.inner.id, "delivery worker stopped");
    }

    /// How long to sleep before the next message falls due (at most `poll`,
    /// at least a few milliseconds so that a due-but-blocked message cannot
    /// make the loop spin).
    async fn until_next_due(&self, poll: Duration) -> Duration {
        let floor = Duration::from_millis(5);
        match self.store().next_due().await {
            Ok(Some(at)) => {
                let ms = at - Utc::now().timestamp_millis();
                Duration::from_millis(u64::try_from(ms).unwrap_or(0)).clamp(floor, poll)
            }
            _ => poll,
        }
    }

    fn target(&self, endpoint: &Endpoint) -> Option<Target<'_>> {
        let config = &self.inner.config;
        let (url, content_type) = match endpoint {
            Endpoint::Provider(id) => (
                &config.providers.get(id.as_str())?.intake_url,
                "application/json",
            ),
            Endpoint::Referrer(id) => (
                &config.referrers.get(id.as_str())?.callback_url,
                "application/fhir+json",
            ),
        };
        Some(Target {
            url,
            keys: self.inner.keys.get(&endpoint.to_string())?,
            content_type,
        })
    }

    /// One attempt at one message, recorded with its consequence.
    async fn deliver(&self, message: OutboxMessage, slot: Slot) {
        let started_at = Utc::now();
        let clock = Instant::now();
        let answer = match self.target(&message.endpoint) {
            Some(target) => self.post(&target, &message).await,
            None => Answer {
                status: None,
                error: Some(format!(
                    "{} is not in the configuration (or has no signing secret)",
                    message.endpoint
                )),
                excerpt: None,
                retry_after: None,
            },
        };
        let took = clock.elapsed();
        drop(slot);
        let latency_ms = i64::try_from(took.as_millis()).unwrap_or(i64::MAX);
        let attempt_number = message.attempts + 1;
        let verdict = judge(&answer);
        let settings = self.settings();
        let (update, outcome) = match verdict {
            Verdict::Delivered => (MessageUpdate::Delivered, "delivered"),
            Verdict::Gone => (
                MessageUpdate::EndpointDisabled {
                    reason: format!(
                        "answered 410 Gone to message {} at {}",
                        message.id,
                        started_at.to_rfc3339_opts(SecondsFormat::Secs, true)
                    ),
                    pending_until: Utc::now().timestamp_millis(),
                },
                "disabled",
            ),
            Verdict::Dead => (MessageUpdate::Dead, "dead"),
            Verdict::Retry { retry_after } => {
                match retry_delay(settings, attempt_number, retry_after) {
                    Some(delay) => (
                        MessageUpdate::PendingUntil(
                            Utc::now().timestamp_millis()
                                + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2),
                        ),
                        "retry",
                    ),
                    None => (MessageUpdate::Dead, "dead"),
                }
            }
        };
        self.inner
            .metrics
            .attempt(&message.endpoint.to_string(), outcome, took);
        let last_error = answer
            .error
            .clone()
            .or_else(|| answer.status.map(|code| format!("answered {code}")));
        tracing::info!(
            message_id = %message.id,
            referral_id = %message.referral_id,
            endpoint = %message.endpoint,
            kind = %message.kind,
            attempt = attempt_number,
            status = answer.status,
            latency_ms,
            outcome,
            error = answer.error.as_deref(),
            "delivery attempt"
        );
        let attempt = Attempt {
            id: 0,
            message_id: message.id.clone(),
            attempt: attempt_number,
            worker: self.inner.id.clone(),
            started_at: started_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            latency_ms,
            status_code: answer.status.map(i64::from),
            error: answer.error,
            response_excerpt: answer.excerpt,
            outcome: outcome.to_owned(),
        };
        // A dead-lettered message to a provider shows on the Task (and so
        // reaches the referrer); a dead notification to the referrer cannot.
        let shows_on_task =
            update == MessageUpdate::Dead && message.kind != MessageKind::Notification;
        for _ in 0..8 {
            let task_update = if shows_on_task {
                match self
                    .inner
                    .referrals
                    .delivery_failed_update(message.referral_id.as_str())
                    .await
                {
                    Ok(update) => update,
                    Err(e) => {
                        tracing::warn!(error = %e, message_id = %message.id, "cannot record the attempt; the lease will expire and it will be retried");
                        return;
                    }
                }
            } else {
                None
            };
            let record = AttemptRecord {
                attempt: attempt.clone(),
                update: update.clone(),
                last_error: last_error.clone(),
                task_update,
                audit: AuditRow {
                    seq: 0,
                    at: attempt.started_at.clone(),
                    actor: "signpost:delivery".into(),
                    client: None,
                    request_id: None,
                    action: format!("deliver {} to {}", message.kind, message.endpoint),
                    resource: Some(format!("outbox/{}", message.id)),
                    referral_id: Some(message.referral_id.to_string()),
                    outcome: match answer.status {
                        Some(status) => format!("{outcome} ({status})"),
                        None => outcome.to_owned(),
                    },
                },
            };
            // (The store wakes the workers if a notification was queued or
            // the next message for this referral may now go.)
            match self.store().record_attempt(record).await {
                Ok(()) => return,
                Err(StoreError::Conflict) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, message_id = %message.id, "cannot record the attempt; the lease will expire and it will be retried");
                    return;
                }
            }
        }
    }

    /// POST the message, signed, and read the start of the answer.
    async fn post(&self, target: &Target<'_>, message: &OutboxMessage) -> Answer {
        let now = Utc::now();
        let timestamp = now.timestamp();
        let base = self
            .inner
            .config
            .public_base_url
            .as_ref()
            .map(|b| format!("{b}/fhir"));
        let payload = notification::body(message, base.as_deref());
        let body = payload.as_bytes();
        let signature = target.keys.sign(message.id.as_str(), timestamp, body, now);
        let sent = self
            .inner
            .client
            .post(target.url.clone())
            .header(CONTENT_TYPE, target.content_type)
            .header("webhook-id", message.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                return Answer {
                    status: None,
                    error: Some(describe(&e)),
                    excerpt: None,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut excerpt = Vec::new();
        let mut error = None;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = EXCERPT_BYTES - excerpt.len();
                    excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
                    if excerpt.len() >= EXCERPT_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(format!("reading the answer: {}", describe(&e)));
                    break;
                }
            }
        }
        Answer {
            status: Some(status),
            error,
            excerpt: (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned()),
            retry_after,
        }
    }
}

/// What an answer means for the message.
fn judge(answer: &Answer) -> Verdict {
    match answer.status {
        None => Verdict::Retry { retry_after: None },
        Some(200..=299) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(408 | 429 | 500..=599) => Verdict::Retry {
            retry_after: answer.retry_after,
        },
        // Other 4xx, and 1xx/3xx (redirects are never followed): the
        // endpoint refuses this message, and will again.
        Some(_) => Verdict::Dead,
    }
}

/// The delay before attempt `attempts_made + 1`, or `None` when the
/// schedule is exhausted. The schedule's delay gets ±20% jitter so that
/// messages failed together do not retry together; a `Retry-After` from
/// the endpoint replaces it, capped at `max_retry_after`.
fn retry_delay(
    settings: &DeliveryConfig,
    attempts_made: i64,
    retry_after: Option<Duration>,
) -> Option<Duration> {
    let index = usize::try_from(attempts_made - 1).ok()?;
    let scheduled = *settings.retry_schedule.get(index)?;
    Some(match retry_after {
        Some(asked) => asked.min(settings.max_retry_after),
        None => jitter(scheduled),
    })
}

/// `delay` scaled by a random factor in [0.8, 1.2).
fn jitter(delay: Duration) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() & 0xFFFF) as f64 / 65536.0;
    delay.mul_f64(0.8 + 0.4 * random)
}

/// `Retry-After`: delay-seconds or an HTTP date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let ms = (at.with_timezone(&Utc) - Utc::now()).num_milliseconds();
    Some(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
}

/// A transport error in a few words, without the URL's query.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the answer broke off"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>) -> Answer {
        Answer {
            status,
            error: None,
            excerpt: None,
            retry_after: None,
        }
    }

    #[test]
    fn answers_are_judged_as_the_webhook_conventions_say() {
        assert_eq!(judge(&answer(Some(200))), Verdict::Delivered);
        assert_eq!(judge(&answer(Some(202))), Verdict::Delivered);
        assert_eq!(judge(&answer(Some(410))), Verdict::Gone);
        for retried in [408, 429, 500, 502, 503, 504] {
            assert!(
                matches!(judge(&answer(Some(retried))), Verdict::Retry { .. }),
                "{retried}"
            );
        }
        for dead in [301, 302, 400, 401, 403, 404, 409, 422] {
            assert_eq!(judge(&answer(Some(dead))), Verdict::Dead, "{dead}");
        }
        assert!(matches!(judge(&answer(None)), Verdict::Retry { .. }));
    }

    fn settings(schedule: &[u64]) -> DeliveryConfig {
        DeliveryConfig {
            retry_schedule: schedule.iter().map(|s| Duration::from_secs(*s)).collect(),
            max_retry_after: Duration::from_secs(3600),
            ..DeliveryConfig::default()
        }
    }

    #[test]
    fn the_schedule_is_followed_with_jitter_then_exhausted() {
        let s = settings(&[10, 100]);
        for _ in 0..50 {
            let first = retry_delay(&s, 1, None).unwrap();
            assert!(
                first >= Duration::from_secs(8) && first < Duration::from_secs(12),
                "{first:?}"
            );
            let second = retry_delay(&s, 2, None).unwrap();
            assert!(second >= Duration::from_secs(80) && second < Duration::from_secs(120));
        }
        assert_eq!(retry_delay(&s, 3, None), None);
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let s = settings(&[10, 100]);
        assert_eq!(
            retry_delay(&s, 1, Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            retry_delay(&s, 1, Some(Duration::from_secs(86_400))),
            Some(Duration::from_secs(3600))
        );
        // Retry-After does not extend the number of attempts.
        assert_eq!(retry_delay(&s, 3, Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = (Utc::now() + chrono::Duration::seconds(90)).to_rfc2822();
        let parsed = parse_retry_after(&later).unwrap();
        assert!(
            parsed > Duration::from_secs(80) && parsed <= Duration::from_secs(90),
            "{parsed:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
