//! A provider's documented status callbacks (the fixtures in
//! `mappings/tests/<provider>/status/`), addressed to a real referral,
//! signed with the provider's secret (Standard Webhooks) and posted to a
//! running Signpost. `signpost simulate status` sends one; the sandbox's
//! stand-in providers walk each referral through its life with them.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

use crate::{domain::TaskStatus, webhooks::SigningKeys};

/// The referral id the fixtures use in place of a real one (see
/// `mappings/tests/README.md`).
pub const FIXTURE_REFERRAL_ID: &str = "REFERRAL-ID";

/// The statuses a referral goes through in the sandbox, after `requested`.
const LIFE: [TaskStatus; 3] = [
    TaskStatus::Accepted,
    TaskStatus::InProgress,
    TaskStatus::Completed,
];

/// One status fixture: its name (the file stem) and the callback body the
/// provider sends.
#[derive(Debug, Clone)]
pub struct StatusFixture {
    pub name: String,
    pub callback: Value,
    /// The Task status the fixture says the callback leads to (`None`: the
    /// status stays, only the business status changes).
    pub leads_to: Option<String>,
}

/// The folder of `provider`'s status fixtures.
fn status_dir(mappings_dir: &Path, provider: &str) -> PathBuf {
    mappings_dir.join("tests").join(provider).join("status")
}

/// Every status fixture of `provider`, by name.
pub fn fixtures(mappings_dir: &Path, provider: &str) -> anyhow::Result<Vec<StatusFixture>> {
    let dir = status_dir(mappings_dir, provider);
    let mut found = Vec::new();
    let entries = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            found.push(read_fixture(&path)?);
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The fixture `name` (with or without `.json`) of `provider`.
pub fn fixture(mappings_dir: &Path, provider: &str, name: &str) -> anyhow::Result<StatusFixture> {
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let path = status_dir(mappings_dir, provider).join(format!("{stem}.json"));
    if !path.is_file() {
        let known: Vec<String> = fixtures(mappings_dir, provider)
            .map(|all| all.into_iter().map(|f| f.name).collect())
            .unwrap_or_default();
        anyhow::bail!(
            "no status fixture {} (the fixtures of {provider}: {})",
            path.display(),
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
    }
    read_fixture(&path)
}

fn read_fixture(path: &Path) -> anyhow::Result<StatusFixture> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let callback = value
        .get("callback")
        .cloned()
        .with_context(|| format!("{} has no `callback`", path.display()))?;
    let leads_to = value
        .pointer("/expected_task_change/status")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(StatusFixture {
        name,
        callback,
        leads_to,
    })
}

/// The fixtures that take a referral from `requested` through `accepted`
/// and `in-progress` to `completed`: for each, the fixture leading to it,
/// the plainest first (the shortest name: `open` before `open-note-null`).
/// A status no fixture leads to is skipped.
pub fn life(fixtures: &[StatusFixture]) -> Vec<StatusFixture> {
    LIFE.iter()
        .filter_map(|status| {
            fixtures
                .iter()
                .filter(|f| f.leads_to.as_deref() == Some(status.as_str()))
                .min_by_key(|f| (f.name.len(), f.name.clone()))
                .cloned()
        })
        .collect()
}

/// The callback with every `REFERRAL-ID` replaced by `referral_id`.
pub fn addressed(callback: &Value, referral_id: &str) -> Value {
    match callback {
        Value::String(s) if s == FIXTURE_REFERRAL_ID => Value::String(referral_id.to_owned()),
        Value::Array(items) => items.iter().map(|v| addressed(v, referral_id)).collect(),
        Value::Object(fields) => fields
            .iter()
            .map(|(k, v)| (k.clone(), addressed(v, referral_id)))
            .collect(),
        other => other.clone(),
    }
}

/// Signpost's answer to a callback.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// POST `body` to `{base}/providers/{provider}/status`, signed now with
/// `keys` under a new `webhook-id`.
pub async fn send(
    client: &reqwest::Client,
    base: &str,
    provider: &str,
    keys: &SigningKeys,
    body: &Value,
) -> anyhow::Result<Answer> {
    let bytes = body.to_string().into_bytes();
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now();
    let timestamp = now.timestamp();
    let signature = keys.sign(&id, timestamp, &bytes, now);
    let url = format!("{}/providers/{provider}/status", base.trim_end_matches('/'));
    let response = client
        .post(&url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("posting to {url}"))?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default();
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fixture(name: &str, leads_to: Option<&str>) -> StatusFixture {
        StatusFixture {
            name: name.into(),
            callback: json!({}),
            leads_to: leads_to.map(str::to_owned),
        }
    }

    #[test]
    fn life_takes_the_plainest_fixture_to_each_status_in_order() {
        let all = [
            fixture("closed-goals_met", Some("completed")),
            fixture("allocated", None),
            fixture("open-note-null", Some("accepted")),
            fixture("open", Some("accepted")),
            fixture("contacted", Some("in-progress")),
            fixture("closed-died", Some("cancelled")),
        ];
        let names: Vec<String> = life(&all).into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["open", "contacted", "closed-goals_met"]);
    }

    #[test]
    fn addressed_replaces_the_fixture_id_wherever_it_is() {
        let callback =
            json!({"case": {"external_id": "REFERRAL-ID", "n": 1}, "refs": ["REFERRAL-ID", "x"]});
        assert_eq!(
            addressed(&callback, "abc"),
            json!({"case": {"external_id": "abc", "n": 1}, "refs": ["abc", "x"]})
        );
    }
}
