//! The facts a report counts, derived once where they happen: a referral's
//! strata at intake (from the canonical ServiceRequest, while the patient's
//! data is at hand) and each Task change's effect on its journey. The store
//! writes them in the same transaction as the intake or the change, so the
//! funnel never re-reads documents, and erasure leaves nothing personal
//! behind: an age band, never a date of birth.

use chrono::{Datelike, NaiveDate};
use serde_json::Value;

use crate::domain::{Actor, TaskStatus, Timestamp};

/// SNOMED CT's URI.
const SNOMED: &str = "http://snomed.info/sct";

/// A referral's strata, as stored in `report_facts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralFacts {
    pub referred_at: Timestamp,
    pub provider: String,
    /// The ServiceRequest's SNOMED CT code, `unknown` without one.
    pub scheme: String,
    /// The referring organisation's ODS code.
    pub ods: String,
    /// `gp`, `physiotherapist`, `occupational-therapist`, `nurse`,
    /// `paramedic`, `other` (a code we do not group), `unknown` (no
    /// PractitionerRole code).
    pub profession: String,
    /// `0-17`, `18-24`, `25-34`, … `75-84`, `85+`, or `unknown`.
    pub age_band: String,
    /// `Patient.gender`: `female`, `male`, `other`, `unknown`.
    pub sex: String,
}

/// The SNOMED CT occupation codes grouped as professions (UK edition,
/// "occupation" hierarchy); every other code counts as `other`.
const PROFESSIONS: &[(&str, &str)] = &[
    ("62247001", "gp"),                     // General practitioner
    ("36682004", "physiotherapist"),        // Physiotherapist
    ("80546007", "occupational-therapist"), // Occupational therapist
    ("224535009", "nurse"),                 // Registered nurse
    ("106292003", "nurse"),                 // Professional nurse
    ("397897005", "paramedic"),             // Paramedic
];

impl ReferralFacts {
    /// The strata of a referral in canonical form (its Patient and
    /// PractitionerRole contained), routed to `provider`, from `ods`, as
    /// accepted at `referred_at`.
    pub fn of(resource: &Value, provider: &str, ods: &str, referred_at: Timestamp) -> Self {
        let contained = |reference: Option<&str>| -> Option<&Value> {
            let id = reference?.strip_prefix('#')?;
            resource
                .get("contained")?
                .as_array()?
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id))
        };
        let scheme = snomed_codes(resource.get("code"))
            .next()
            .map_or_else(|| "unknown".to_owned(), clean);
        let requester = contained(
            resource
                .pointer("/requester/reference")
                .and_then(Value::as_str),
        );
        let profession = match requester {
            Some(role)
                if role.get("resourceType").and_then(Value::as_str) == Some("PractitionerRole") =>
            {
                let codes: Vec<&str> = role
                    .get("code")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .flat_map(|c| snomed_codes(Some(c)))
                    .collect();
                codes
                    .iter()
                    .find_map(|code| PROFESSIONS.iter().find(|(c, _)| c == code).map(|(_, p)| *p))
                    .unwrap_or(if codes.is_empty() { "unknown" } else { "other" })
            }
            _ => "unknown",
        };
        let patient = contained(
            resource
                .pointer("/subject/reference")
                .and_then(Value::as_str),
        );
        let sex = patient
            .and_then(|p| p.get("gender"))
            .and_then(Value::as_str)
            .filter(|g| matches!(*g, "female" | "male" | "other"))
            .unwrap_or("unknown");
        let age_band = patient
            .and_then(|p| p.get("birthDate"))
            .and_then(Value::as_str)
            .and_then(|d| age_on(d, referred_at))
            .map_or("unknown", band);
        ReferralFacts {
            referred_at,
            provider: clean(provider),
            scheme,
            ods: clean(ods),
            profession: profession.to_owned(),
            age_band: age_band.to_owned(),
            sex: sex.to_owned(),
        }
    }

    /// The calendar month of the referral, `YYYY-MM` (UTC).
    pub fn month(&self) -> String {
        self.referred_at.to_string()[..7].to_owned()
    }
}

fn snomed_codes(concept: Option<&Value>) -> impl Iterator<Item = &str> {
    concept
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("system").and_then(Value::as_str) == Some(SNOMED))
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

/// Codes and ids as stored: letters, digits, `-`, `.` and `_` only, so that
/// a report's cells never need quoting (CSV) and never carry free text.
fn clean(value: &str) -> String {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
    {
        value.to_owned()
    } else {
        "other".to_owned()
    }
}

/// Age in whole years on the day of `at` (UTC), from a FHIR date (a year
/// or year-month alone gives no age).
fn age_on(birth_date: &str, at: Timestamp) -> Option<u32> {
    let born = NaiveDate::parse_from_str(birth_date, "%Y-%m-%d").ok()?;
    let on = at.to_datetime().date_naive();
    let mut age = on.year() - born.year();
    if (on.month(), on.day()) < (born.month(), born.day()) {
        age -= 1;
    }
    u32::try_from(age).ok()
}

fn band(age: u32) -> &'static str {
    match age {
        0..=17 => "0-17",
        18..=24 => "18-24",
        25..=34 => "25-34",
        35..=44 => "35-44",
        45..=54 => "45-54",
        55..=64 => "55-64",
        65..=74 => "65-74",
        75..=84 => "75-84",
        _ => "85+",
    }
}

/// How a referral's journey ended (its final branch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    /// The person declined (the provider's reason says so).
    Declined,
    /// The provider rejected or closed it for another reason.
    Rejected,
    /// The referrer cancelled it.
    Revoked,
    EnteredInError,
    /// E.g. the person could not be contacted.
    Failed,
}

impl Ending {
    pub const ALL: &[Ending] = &[
        Ending::Completed,
        Ending::Declined,
        Ending::Rejected,
        Ending::Revoked,
        Ending::EnteredInError,
        Ending::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Ending::Completed => "completed",
            Ending::Declined => "declined",
            Ending::Rejected => "rejected",
            Ending::Revoked => "revoked",
            Ending::EnteredInError => "entered-in-error",
            Ending::Failed => "failed",
        }
    }
}

/// What one Task change does to its referral's journey.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JourneyStep {
    pub at: Option<Timestamp>,
    /// The provider answered: the referral reached it (delivered), and
    /// made first contact when the Task is now accepted or further on.
    pub reached_provider: bool,
    pub contact: bool,
    /// `in-progress`: the first session.
    pub engaged: bool,
    pub ending: Option<Ending>,
    /// The provider's business status says it escalated to a clinician.
    pub escalated: bool,
    /// Wellbeing scores reported with the change.
    pub outcomes: super::outcomes::OutcomeFacts,
    /// A declined or rejected ending's reason: the code on the Task's
    /// statusReason where it is coded, `other` where not.
    pub ending_reason: Option<String>,
}

impl JourneyStep {
    /// The step a change from `from` to `to` by `actor` makes, with the
    /// change's reason and business status.
    pub fn of(
        at: Timestamp,
        from: TaskStatus,
        to: TaskStatus,
        actor: &Actor,
        reason: Option<&str>,
        business_status: Option<&str>,
    ) -> Self {
        use TaskStatus::*;
        let by_provider = matches!(actor, Actor::Provider(_));
        let declined = reason.is_some_and(crate::referrals::task::says_declined);
        let ending = if from == to {
            None
        } else {
            match to {
                Completed => Some(Ending::Completed),
                Rejected | Cancelled if by_provider && declined => Some(Ending::Declined),
                Rejected | Cancelled if by_provider => Some(Ending::Rejected),
                Cancelled => Some(Ending::Revoked),
                EnteredInError => Some(Ending::EnteredInError),
                Failed => Some(Ending::Failed),
                _ => None,
            }
        };
        JourneyStep {
            at: Some(at),
            reached_provider: by_provider,
            contact: by_provider && matches!(to, Accepted | InProgress | OnHold | Completed),
            engaged: to == InProgress,
            ending,
            escalated: business_status.is_some_and(|b| b.to_ascii_lowercase().contains("escalat")),
            outcomes: Default::default(),
            ending_reason: matches!(ending, Some(Ending::Declined | Ending::Rejected))
                .then(|| "other".to_owned()),
        }
    }

    /// The reason's code as the Task's statusReason carries it (`None`:
    /// not coded, and the reason stays `other`).
    pub fn with_reason_code(mut self, code: Option<&str>) -> Self {
        if let (Some(reason), Some(code)) = (self.ending_reason.as_mut(), code) {
            *reason = clean(code);
        }
        self
    }

    /// The step, with the scores the change reported.
    pub fn with_outcomes(mut self, outcomes: super::outcomes::OutcomeFacts) -> Self {
        self.outcomes = outcomes;
        self
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn strata_come_from_the_contained_patient_and_practitioner_role() {
        let referral = json!({
            "resourceType": "ServiceRequest",
            "code": {"coding": [{"system": SNOMED, "code": "871731000000106"}]},
            "subject": {"reference": "#p"}, "requester": {"reference": "#r"},
            "contained": [
                {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1958-06-14"},
                {"resourceType": "PractitionerRole", "id": "r",
                 "code": [{"coding": [{"system": SNOMED, "code": "36682004"}]}]}
            ]
        });
        // 67 on the day before the 68th birthday, 68 on it.
        let facts = ReferralFacts::of(
            &referral,
            "activelives",
            "A81001",
            at("2026-06-13T23:00:00.000Z"),
        );
        assert_eq!(
            (
                facts.scheme.as_str(),
                facts.profession.as_str(),
                facts.age_band.as_str(),
                facts.sex.as_str()
            ),
            ("871731000000106", "physiotherapist", "65-74", "female")
        );
        assert_eq!(facts.month(), "2026-06");
        let older = ReferralFacts::of(&referral, "p", "A81001", at("2033-06-14T00:00:00.000Z"));
        assert_eq!(older.age_band, "75-84");
        let bare = ReferralFacts::of(
            &json!({"code": {"text": "x"}}),
            "p",
            "bad ods!",
            at("2026-01-01T00:00:00.000Z"),
        );
        assert_eq!(
            (
                bare.scheme.as_str(),
                bare.profession.as_str(),
                bare.age_band.as_str(),
                bare.sex.as_str(),
                bare.ods.as_str()
            ),
            ("unknown", "unknown", "unknown", "unknown", "other")
        );
    }

    #[test]
    fn a_declining_reason_makes_a_provider_closure_declined() {
        let provider = Actor::Provider("cc".parse().unwrap());
        let referrer = Actor::Referrer("r".parse().unwrap());
        let now = at("2026-01-01T00:00:00.000Z");
        let step = |from, to, actor: &Actor, reason| {
            JourneyStep::of(now, from, to, actor, reason, None).ending
        };
        use TaskStatus::*;
        assert_eq!(
            step(Accepted, Cancelled, &provider, Some("declined by person")),
            Some(Ending::Declined)
        );
        assert_eq!(
            step(Requested, Rejected, &provider, Some("not eligible")),
            Some(Ending::Rejected)
        );
        assert_eq!(
            step(
                Accepted,
                Cancelled,
                &referrer,
                Some("cancelled by the referrer")
            ),
            Some(Ending::Revoked)
        );
        assert_eq!(
            step(Accepted, Failed, &provider, Some("unable to contact")),
            Some(Ending::Failed)
        );
        assert_eq!(step(Accepted, Accepted, &provider, None), None);
    }
}
