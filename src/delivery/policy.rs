//! What an attempt's answer means for its message: the webhook conventions
//! (`2xx` delivered; `408`, `429`, `5xx` and no answer retried; `410 Gone`
//! disables the endpoint; any other answer refuses the message for good),
//! and BaRS's: a `409` whose OperationOutcome says `duplicate` means the
//! receiver already processed this message (our retry of one whose answer
//! was lost), so it is delivered,
//! and when to try again (the configured schedule with jitter, or the
//! endpoint's `Retry-After`). Once the schedule is used up the message is
//! dead-lettered.

use std::time::Duration;

use crate::{
    config::DeliveryConfig,
    domain::Timestamp,
    referrals::attempts::{AttemptOutcome, Disposition},
};

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

/// What follows from attempt number `attempt` (1 for the first) whose
/// outcome is `outcome`, judged at `now`.
pub(super) fn disposition(
    settings: &DeliveryConfig,
    attempt: i64,
    outcome: &AttemptOutcome,
    now: Timestamp,
) -> Disposition {
    match judge(outcome) {
        Verdict::Delivered => Disposition::Delivered,
        Verdict::Gone => Disposition::DisableEndpoint,
        Verdict::Dead => Disposition::Dead,
        Verdict::Retry { retry_after } => match retry_delay(settings, attempt, retry_after) {
            Some(delay) => Disposition::Retry {
                next_attempt_at: now.after(delay),
            },
            None => Disposition::Dead,
        },
    }
}

/// What an answer means for the message.
fn judge(outcome: &AttemptOutcome) -> Verdict {
    match outcome.status {
        None => Verdict::Retry { retry_after: None },
        Some(200..=299) => Verdict::Delivered,
        Some(409) if says_duplicate(outcome.excerpt.as_deref()) => Verdict::Delivered,
        Some(410) => Verdict::Gone,
        Some(408 | 429 | 500..=599) => Verdict::Retry {
            retry_after: outcome.retry_after,
        },
        // Other 4xx, and 1xx/3xx (redirects are never followed): the
        // endpoint refuses this message, and will again.
        Some(_) => Verdict::Dead,
    }
}

/// Whether an answer's body is an OperationOutcome with an issue of code
/// `duplicate` (BaRS's "already processed": REC_CONFLICT `duplicate`).
fn says_duplicate(body: Option<&str>) -> bool {
    let Some(outcome) = body.and_then(|b| serde_json::from_str::<serde_json::Value>(b).ok()) else {
        return false;
    };
    outcome.get("resourceType").and_then(|t| t.as_str()) == Some("OperationOutcome")
        && outcome
            .get("issue")
            .and_then(|i| i.as_array())
            .is_some_and(|issues| {
                issues
                    .iter()
                    .any(|i| i.get("code").and_then(|c| c.as_str()) == Some("duplicate"))
            })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: Option<u16>) -> AttemptOutcome {
        AttemptOutcome {
            started_at: Timestamp::from_millis(0),
            latency: Duration::ZERO,
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

    #[test]
    fn a_409_duplicate_is_delivered_and_any_other_409_is_not() {
        let with = |body: &str| AttemptOutcome {
            excerpt: Some(body.to_owned()),
            ..answer(Some(409))
        };
        let duplicate =
            include_str!("../../tests/fixtures/real/bars/oo-rec/409-REC_CONFLICT-duplicate.json");
        assert_eq!(judge(&with(duplicate)), Verdict::Delivered);
        let conflict =
            include_str!("../../tests/fixtures/real/bars/oo-rec/409-REC_CONFLICT-conflict.json");
        assert_eq!(judge(&with(conflict)), Verdict::Dead);
        assert_eq!(judge(&with("duplicate")), Verdict::Dead);
        assert_eq!(
            judge(&with(
                r#"{"resourceType":"Bundle","issue":[{"code":"duplicate"}]}"#
            )),
            Verdict::Dead
        );
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
    fn dispositions_follow_the_verdict_and_the_clock() {
        let s = settings(&[10]);
        let now = Timestamp::from_millis(1_000_000);
        let with = |status, retry_after| AttemptOutcome {
            retry_after,
            ..answer(status)
        };
        assert_eq!(
            disposition(&s, 1, &with(Some(204), None), now),
            Disposition::Delivered
        );
        assert_eq!(
            disposition(&s, 1, &with(Some(410), None), now),
            Disposition::DisableEndpoint
        );
        assert_eq!(
            disposition(&s, 1, &with(Some(422), None), now),
            Disposition::Dead
        );
        assert_eq!(
            disposition(&s, 1, &with(Some(503), Some(Duration::from_secs(7))), now),
            Disposition::Retry {
                next_attempt_at: now.after(Duration::from_secs(7))
            }
        );
        // The last attempt of the schedule is dead-lettered, asked or not.
        assert_eq!(
            disposition(&s, 2, &with(Some(503), Some(Duration::from_secs(7))), now),
            Disposition::Dead
        );
        assert_eq!(
            disposition(&s, 2, &with(None, None), now),
            Disposition::Dead
        );
    }
}
