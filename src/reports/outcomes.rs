//! Wellbeing outcomes: the scores a provider reports at the start and end
//! of support (ONS4, SWEMWBS), checked, turned into FHIR `Observation`s on
//! the Task, and reduced to the few numbers reports keep (`report_facts`).
//!
//! The shape a status mapping emits under `inbound.change.outcomes` (a list,
//! or one object):
//!
//! ```yaml
//! outcomes:
//!   - instrument: ons4          # or swemwbs
//!     timepoint: start          # or end
//!     items: {life_satisfaction: 6, worthwhile: 7, happiness: 5, anxiety: 4}
//! ```
//!
//! ONS4's four items are each an integer 0-10 and are never summed (ONS
//! publishes them as four separate measures). SWEMWBS's seven items are
//! each an integer 1-5; their sum (7-35) is converted to the metric score
//! with the published Rasch conversion table ([`SWEMWBS_METRIC`]).
//! Errors name the field, never the value: a score is health data.

use serde_json::{Value, json};

/// Signpost's CodeSystem for what no standard code exists for: the ONS4
/// measures and items, the SWEMWBS items and raw total, the time points.
pub const WELLBEING_CODES: &str = "https://signpost.example/fhir/CodeSystem/wellbeing";
/// SNOMED CT 718466001 "Short Warwick-Edinburgh Mental Well-being Scale
/// score" (as listed, range 7-35, in the assessment-scale reference table
/// of published Mental Health Services Data Set analysis code; not checked
/// against a SNOMED CT release file: README, "Reports").
pub const SWEMWBS_SCORE: &str = "718466001";
/// The time point of an outcome Observation (`start` or `end`).
pub const TIMEPOINT_EXTENSION: &str =
    "https://signpost.example/fhir/StructureDefinition/outcome-timepoint";

/// ONS4's items, in the order reports keep them: "Overall, how satisfied
/// are you with your life nowadays?", "... to what extent do you feel that
/// the things you do in your life are worthwhile?", "... how happy did you
/// feel yesterday?", "... how anxious did you feel yesterday?" (a fall in
/// anxiety is the improvement).
pub const ONS4_ITEMS: &[&str] = &["life_satisfaction", "worthwhile", "happiness", "anxiety"];
/// SWEMWBS's seven statements ("I've been feeling optimistic about the
/// future", "... useful", "... relaxed", "dealing with problems well",
/// "thinking clearly", "feeling close to other people", "able to make up my
/// own mind about things").
pub const SWEMWBS_ITEMS: &[&str] = &[
    "optimistic",
    "useful",
    "relaxed",
    "dealing_with_problems",
    "thinking_clearly",
    "close_to_others",
    "own_mind",
];

/// SWEMWBS raw score (7..=35) → metric score, in hundredths. The Rasch
/// conversion table of Stewart-Brown et al., "Internal construct validity
/// of the Warwick-Edinburgh Mental Well-being Scale (WEMWBS): a Rasch
/// analysis using data from the Scottish Health Education Population
/// Survey", Health Qual Life Outcomes 2009;7:15
/// (doi:10.1186/1477-7525-7-15), as published by Warwick Medical School
/// (<https://warwick.ac.uk/fac/sci/med/research/platform/wemwbs/using/howto>:
/// "raw scores need to be transformed"). Kept as integers so that no
/// float rounding reaches a report.
pub const SWEMWBS_METRIC: [i64; 29] = [
    700, 951, 1125, 1240, 1333, 1408, 1475, 1532, 1584, 1636, 1688, 1743, 1798, 1859, 1925, 1998,
    2073, 2154, 2235, 2321, 2411, 2503, 2602, 2703, 2813, 2931, 3070, 3255, 3500,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    Ons4,
    Swemwbs,
}

impl Instrument {
    pub fn as_str(self) -> &'static str {
        match self {
            Instrument::Ons4 => "ons4",
            Instrument::Swemwbs => "swemwbs",
        }
    }

    fn items(self) -> &'static [&'static str] {
        match self {
            Instrument::Ons4 => ONS4_ITEMS,
            Instrument::Swemwbs => SWEMWBS_ITEMS,
        }
    }

    fn range(self) -> (i64, i64) {
        match self {
            Instrument::Ons4 => (0, 10),
            Instrument::Swemwbs => (1, 5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timepoint {
    Start,
    End,
}

impl Timepoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Timepoint::Start => "start",
            Timepoint::End => "end",
        }
    }
}

/// One questionnaire's answers, checked: `items` in [`Instrument::items`]
/// order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub instrument: Instrument,
    pub timepoint: Timepoint,
    pub items: Vec<i64>,
}

/// Why an `outcomes` entry was refused: the field, and what it must be
/// (never what it was).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutcomeError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for OutcomeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` {}", self.field, self.message)
    }
}

/// Read a mapping's `outcomes` (absent or null: none).
pub fn parse(value: Option<&Value>) -> Result<Vec<Outcome>, OutcomeError> {
    let entries: Vec<&Value> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one @ Value::Object(_)) => vec![one],
        Some(_) => {
            return Err(OutcomeError {
                field: "outcomes".into(),
                message: "must be an object or a list of objects".into(),
            });
        }
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| parse_one(&format!("outcomes[{i}]"), entry))
        .collect()
}

fn parse_one(at: &str, entry: &Value) -> Result<Outcome, OutcomeError> {
    let error = |field: String, message: &str| OutcomeError {
        field,
        message: message.to_owned(),
    };
    let Some(fields) = entry.as_object() else {
        return Err(error(at.to_owned(), "must be an object"));
    };
    // A stray key may come from the callback: never quoted.
    if fields
        .keys()
        .any(|k| !matches!(k.as_str(), "instrument" | "timepoint" | "items"))
    {
        return Err(error(
            at.to_owned(),
            "takes only instrument, timepoint and items",
        ));
    }
    let instrument = match fields.get("instrument").and_then(Value::as_str) {
        Some("ons4") => Instrument::Ons4,
        Some("swemwbs") => Instrument::Swemwbs,
        _ => return Err(error(format!("{at}.instrument"), "must be ons4 or swemwbs")),
    };
    let timepoint = match fields.get("timepoint").and_then(Value::as_str) {
        Some("start") => Timepoint::Start,
        Some("end") => Timepoint::End,
        _ => return Err(error(format!("{at}.timepoint"), "must be start or end")),
    };
    let Some(items) = fields.get("items").and_then(Value::as_object) else {
        return Err(error(format!("{at}.items"), "must be an object"));
    };
    let names = instrument.items();
    if items.keys().any(|k| !names.contains(&k.as_str())) {
        return Err(error(
            format!("{at}.items"),
            &format!(
                "takes only the {} items: {}",
                instrument.as_str(),
                names.join(", ")
            ),
        ));
    }
    let (low, high) = instrument.range();
    let scores = names
        .iter()
        .map(|name| {
            let field = format!("{at}.items.{name}");
            match items.get(*name) {
                None | Some(Value::Null) => Err(error(field, "is required")),
                Some(v) => v
                    .as_i64()
                    .filter(|n| (low..=high).contains(n))
                    .ok_or_else(|| {
                        error(
                            field,
                            &format!("must be a whole number from {low} to {high}"),
                        )
                    }),
            }
        })
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(Outcome {
        instrument,
        timepoint,
        items: scores,
    })
}

impl Outcome {
    /// SWEMWBS: the raw total (7-35).
    pub fn raw_total(&self) -> i64 {
        self.items.iter().sum()
    }

    /// SWEMWBS: the metric score in hundredths (e.g. 2321 for 23.21).
    pub fn metric_hundredths(&self) -> Option<i64> {
        let raw = usize::try_from(self.raw_total() - 7).ok()?;
        SWEMWBS_METRIC.get(raw).copied()
    }

    /// The FHIR R4 `Observation` recording it (to be contained in the Task
    /// as `id`), about `subject` (the Task's `for`), made `now`.
    pub fn observation(&self, id: &str, subject: Option<&Value>, now: &str) -> Value {
        let code = |code: &str, display: &str| json!({"coding": [{"system": WELLBEING_CODES, "code": code, "display": display}], "text": display});
        let mut observation = json!({
            "resourceType": "Observation",
            "id": id,
            "extension": [{"url": TIMEPOINT_EXTENSION, "valueCode": self.timepoint.as_str()}],
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "survey", "display": "Survey"}]}],
            "effectiveDateTime": now,
        });
        if let Some(subject) = subject {
            observation["subject"] = subject.clone();
        }
        let items: Vec<Value> = self
            .instrument
            .items()
            .iter()
            .zip(&self.items)
            .map(|(name, score)| {
                json!({
                    "code": code(&format!("{}-{}", self.instrument.as_str(), name.replace('_', "-")),
                                 &format!("{} item: {}", self.instrument.as_str().to_uppercase(), name.replace('_', " "))),
                    "valueInteger": score,
                })
            })
            .collect();
        match self.instrument {
            Instrument::Ons4 => {
                // Four measures, never summed: no value, one component each.
                observation["code"] = code("ons4", "ONS4 personal wellbeing");
                observation["component"] = json!(items);
            }
            Instrument::Swemwbs => {
                observation["code"] = json!({"coding": [{
                    "system": "http://snomed.info/sct", "code": SWEMWBS_SCORE,
                    "display": "Short Warwick-Edinburgh Mental Well-being Scale score"}]});
                let metric = self.metric_hundredths().unwrap_or_default();
                observation["valueQuantity"] = json!({
                    "value": decimal(metric),
                    "unit": "score", "system": "http://unitsofmeasure.org", "code": "{score}",
                });
                let mut components = vec![json!({
                    "code": code("swemwbs-raw", "SWEMWBS raw total (7-35)"),
                    "valueInteger": self.raw_total(),
                })];
                components.extend(items);
                observation["component"] = json!(components);
            }
        }
        observation
    }
}

/// Hundredths as a JSON decimal (2321 → 23.21).
pub fn decimal(hundredths: i64) -> Value {
    serde_json::Number::from_f64(hundredths as f64 / 100.0)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Hundredths as text with two decimals (-125 → "-1.25").
pub fn decimal_text(hundredths: i64) -> String {
    let sign = if hundredths < 0 { "-" } else { "" };
    let abs = hundredths.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// What one Task change reports of outcomes (`report_facts`): the ONS4
/// items and the SWEMWBS metric score (hundredths), at start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutcomeFacts {
    pub ons4_start: Option<[i64; 4]>,
    pub ons4_end: Option<[i64; 4]>,
    pub swemwbs_start: Option<i64>,
    pub swemwbs_end: Option<i64>,
}

impl OutcomeFacts {
    /// The last of each kind in `outcomes` (a callback with two ends of one
    /// instrument keeps the later one).
    pub fn of(outcomes: &[Outcome]) -> OutcomeFacts {
        let mut facts = OutcomeFacts::default();
        for o in outcomes {
            match (o.instrument, o.timepoint) {
                (Instrument::Ons4, t) => {
                    let items: [i64; 4] = [o.items[0], o.items[1], o.items[2], o.items[3]];
                    match t {
                        Timepoint::Start => facts.ons4_start = Some(items),
                        Timepoint::End => facts.ons4_end = Some(items),
                    }
                }
                (Instrument::Swemwbs, Timepoint::Start) => {
                    facts.swemwbs_start = o.metric_hundredths();
                }
                (Instrument::Swemwbs, Timepoint::End) => facts.swemwbs_end = o.metric_hundredths(),
            }
        }
        facts
    }

    pub fn is_empty(&self) -> bool {
        *self == OutcomeFacts::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swemwbs_converts_with_the_published_table_and_ons4_is_never_summed() {
        let swemwbs = parse(Some(&json!({"instrument": "swemwbs", "timepoint": "start",
            "items": {"optimistic": 4, "useful": 4, "relaxed": 4, "dealing_with_problems": 4,
                      "thinking_clearly": 4, "close_to_others": 3, "own_mind": 3}})))
        .unwrap();
        assert_eq!(swemwbs[0].raw_total(), 26);
        assert_eq!(swemwbs[0].metric_hundredths(), Some(2321));
        let obs = swemwbs[0].observation("outcome-1", None, "2026-01-01T00:00:00Z");
        assert_eq!(obs["code"]["coding"][0]["code"], "718466001");
        assert_eq!(obs["valueQuantity"]["value"], json!(23.21));
        // The table's ends: 7 → 7.00, 35 → 35.00.
        assert_eq!((SWEMWBS_METRIC[0], SWEMWBS_METRIC[28]), (700, 3500));
        assert!(SWEMWBS_METRIC.windows(2).all(|w| w[0] < w[1]));
        let ons4 = parse(Some(&json!([{"instrument": "ons4", "timepoint": "end",
            "items": {"life_satisfaction": 0, "worthwhile": 10, "happiness": 5, "anxiety": 3}}])))
        .unwrap();
        let obs = ons4[0].observation("outcome-2", None, "now");
        assert!(obs.get("valueQuantity").is_none());
        assert_eq!(obs["component"].as_array().unwrap().len(), 4);
        assert_eq!(
            OutcomeFacts::of(&ons4).ons4_end,
            Some([0, 10, 5, 3]),
            "kept item by item"
        );
        assert_eq!(decimal_text(-125), "-1.25");
        assert_eq!(decimal_text(5), "0.05");
    }

    #[test]
    fn bad_scores_name_the_field_and_never_the_value() {
        let error = |v: Value| parse(Some(&v)).unwrap_err();
        let e = error(json!({"instrument": "ons4", "timepoint": "start",
            "items": {"life_satisfaction": 11, "worthwhile": 1, "happiness": 1, "anxiety": 1}}));
        assert_eq!(e.field, "outcomes[0].items.life_satisfaction");
        assert!(!e.to_string().contains("11"), "{e}");
        let e = error(json!([{"instrument": "swemwbs", "timepoint": "end",
            "items": {"optimistic": 0, "useful": 4, "relaxed": 4, "dealing_with_problems": 4,
                      "thinking_clearly": 4, "close_to_others": 3, "own_mind": 3}}]));
        assert_eq!(e.field, "outcomes[0].items.optimistic");
        let e = error(json!({"instrument": "ons4", "timepoint": "start",
            "items": {"life_satisfaction": 2.5, "worthwhile": 1, "happiness": 1, "anxiety": 1}}));
        assert_eq!(e.field, "outcomes[0].items.life_satisfaction");
        let e = error(json!({"instrument": "ons4", "timepoint": "start",
            "items": {"worthwhile": 1, "happiness": 1, "anxiety": 1}}));
        assert_eq!(e.field, "outcomes[0].items.life_satisfaction");
        let e = error(json!({"instrument": "ons4", "timepoint": "middle", "items": {}}));
        assert_eq!(e.field, "outcomes[0].timepoint");
        let e = error(json!({"instrument": "phq9", "timepoint": "start", "items": {}}));
        assert_eq!(e.field, "outcomes[0].instrument");
        assert!(parse(None).unwrap().is_empty());
    }
}
