//! One attempt at one message: find its target, have the domain build its
//! body (a notification Bundle, or a BaRS response for a referrer told the
//! BaRS way: `Referrals::outgoing`), sign it (Standard Webhooks), POST it,
//! and read the start of the answer. Nothing here judges the answer (that is `policy.rs`) or records
//! it (the domain does).

use std::time::{Duration, Instant};

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use url::Url;

use super::Worker;
use crate::{
    domain::{Endpoint, Timestamp, model::OutboxMessage},
    referrals::{attempts::AttemptOutcome, deliveries::Outgoing},
    webhooks::SigningKeys,
};

/// How much of a response body each attempt keeps.
const EXCERPT_BYTES: usize = 4096;

/// Where a message goes and how it is signed.
struct Target<'a> {
    url: &'a Url,
    keys: &'a SigningKeys,
    content_type: &'static str,
}

/// An answer (or its absence), before it is timed.
struct Answer {
    status: Option<u16>,
    error: Option<String>,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

impl Worker {
    /// Send `message` once, at the clock's time, and report what happened.
    pub(super) async fn send(&self, message: &OutboxMessage) -> AttemptOutcome {
        let started_at = self.now();
        let started = Instant::now();
        let answer = match self.target(&message.endpoint) {
            Some(target) => match self.inner.referrals.outgoing(message).await {
                Ok(outgoing) => self.post(&target, message, outgoing, started_at).await,
                Err(error) => Answer {
                    status: None,
                    error: Some(error),
                    excerpt: None,
                    retry_after: None,
                },
            },
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
        AttemptOutcome {
            started_at,
            latency: started.elapsed(),
            status: answer.status,
            error: answer.error,
            excerpt: answer.excerpt,
            retry_after: answer.retry_after,
        }
    }

    fn target(&self, endpoint: &Endpoint) -> Option<Target<'_>> {
        let config = &self.inner.config;
        let (url, content_type) = match endpoint {
            // (An inbox provider's messages are never claimed: no URL.)
            Endpoint::Provider(id) => (
                config.providers.get(id)?.delivery.intake_url()?,
                "application/json",
            ),
            Endpoint::Referrer(id) => (
                &config.referrers.get(id)?.callback_url,
                "application/fhir+json",
            ),
            Endpoint::ClinicalService(id) => (
                &config.clinical_services.get(id)?.callback_url,
                "application/fhir+json",
            ),
        };
        Some(Target {
            url,
            keys: self.inner.keys.get(endpoint)?,
            content_type,
        })
    }

    /// POST the message, signed as of `now`, and read the start of the
    /// answer.
    async fn post(
        &self,
        target: &Target<'_>,
        message: &OutboxMessage,
        outgoing: Outgoing,
        now: Timestamp,
    ) -> Answer {
        let timestamp = now.as_secs();
        let signature = target.keys.sign(
            message.id.as_str(),
            timestamp,
            outgoing.body.as_bytes(),
            now.to_datetime(),
        );
        let mut request = self
            .inner
            .client
            .post(target.url.clone())
            .header(CONTENT_TYPE, target.content_type)
            .header("webhook-id", message.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature);
        if let Some((request_id, correlation_id)) = outgoing.bars_ids {
            request = request
                .header("x-request-id", request_id)
                .header("x-correlation-id", correlation_id);
        }
        let sent = request.body(outgoing.body).send().await;
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
            .and_then(|v| parse_retry_after(v, self.now()));
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

/// `Retry-After`: delay-seconds or an HTTP date (counted from `now`).
fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(Timestamp::from(at.with_timezone(&Utc)).since(now))
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

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Timestamp::from_millis(1_765_128_600_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO)
        );
        let later = now
            .after(Duration::from_secs(90))
            .to_datetime()
            .to_rfc2822();
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
