//! The sandbox's stand-ins: a provider on each configured `intake_url` and
//! a receiver on each referrer's `callback_url`. Each verifies the Standard
//! Webhooks signature of everything it receives (refusing, with `401`,
//! what does not verify), prints it for the newcomer, and answers `2xx`. A
//! stand-in provider then walks each new referral through its life,
//! posting its documented status callbacks to Signpost, signed, `step`
//! apart.
//!
//! What is printed goes to the sandbox's own stdout, never to the log: it
//! includes the provider's payload, which is the point of the sandbox, and
//! the sandbox is meant for the sample data in the repository.

use std::{
    collections::{BTreeMap, HashSet},
    net::SocketAddr,
    path::Path,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use serde_json::Value;
use url::Url;

use super::status::{self, FIXTURE_REFERRAL_ID, StatusFixture};
use crate::{config::Config, domain::Endpoint, webhooks::SigningKeys};

/// A stand-in provider.
struct Provider {
    id: String,
    keys: Arc<SigningKeys>,
    /// Where the referral's id is in this provider's payload (found in its
    /// fixtures, where it is `REFERRAL-ID`).
    id_path: Option<Vec<Step>>,
    /// The callbacks it sends, in order.
    life: Vec<StatusFixture>,
    /// Referrals already walked (a cancel or a replay is not walked again).
    seen: Mutex<HashSet<String>>,
    gateway: Arc<Gateway>,
}

/// A stand-in referrer receiver.
struct Referrer {
    id: String,
    keys: Arc<SigningKeys>,
}

/// How the stand-in providers reach Signpost.
pub struct Gateway {
    pub base: String,
    pub client: reqwest::Client,
    pub step: Duration,
}

/// A step on the way to a value inside a JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// One listening address and what it serves.
pub struct Listener {
    pub address: SocketAddr,
    listener: tokio::net::TcpListener,
    router: Router,
    pub serves: Vec<String>,
}

/// Bind every stand-in the configuration names, on the address of its URL
/// (several may share one, on different paths). Fails, naming the URL,
/// when an address is not loopback `http` or is taken.
pub async fn bind(
    config: &Config,
    keys: &BTreeMap<Endpoint, Arc<SigningKeys>>,
    gateway: Arc<Gateway>,
) -> anyhow::Result<Vec<Listener>> {
    let mut routes: BTreeMap<SocketAddr, (Router, Vec<String>)> = BTreeMap::new();
    for (id, provider) in &config.providers {
        // An inbox provider collects its referrals: nothing to stand in for.
        let Some(intake_url) = provider.delivery.intake_url() else {
            continue;
        };
        let endpoint = Endpoint::Provider(id.clone());
        let keys = keys
            .get(&endpoint)
            .cloned()
            .with_context(|| format!("no signing secret for {endpoint}"))?;
        let life = status::life(&status::fixtures(&config.mappings_dir, id.as_str())?);
        let stand_in = Arc::new(Provider {
            id: id.to_string(),
            keys,
            id_path: referral_id_path(&config.mappings_dir, id.as_str()),
            life,
            seen: Mutex::new(HashSet::new()),
            gateway: gateway.clone(),
        });
        let (address, path) = local_address(intake_url)?;
        let entry = routes.entry(address).or_default();
        entry.0 =
            std::mem::take(&mut entry.0).route(&path, post(receive_referral).with_state(stand_in));
        entry.1.push(format!("provider {id} at {intake_url}"));
    }
    for (id, referrer) in &config.referrers {
        let endpoint = Endpoint::Referrer(id.clone());
        let keys = keys
            .get(&endpoint)
            .cloned()
            .with_context(|| format!("no signing secret for {endpoint}"))?;
        let stand_in = Arc::new(Referrer {
            id: id.to_string(),
            keys,
        });
        let (address, path) = local_address(&referrer.callback_url)?;
        let entry = routes.entry(address).or_default();
        entry.0 = std::mem::take(&mut entry.0)
            .route(&path, post(receive_notification).with_state(stand_in));
        entry
            .1
            .push(format!("referrer {id} at {}", referrer.callback_url));
    }
    let mut listeners = Vec::new();
    for (address, (router, serves)) in routes {
        let listener = tokio::net::TcpListener::bind(address).await.with_context(|| {
            format!(
                "cannot listen on {address} for the stand-in {}: is something else (a `signpost serve`?) using it?",
                serves.join(", ")
            )
        })?;
        listeners.push(Listener {
            address,
            listener,
            router,
            serves,
        });
    }
    Ok(listeners)
}

impl Listener {
    /// Serve until the process ends.
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(e) = axum::serve(self.listener, self.router).await {
                eprintln!("sandbox: a stand-in on {} stopped: {e}", self.address);
            }
        })
    }
}

/// The loopback address and path of a stand-in's URL.
fn local_address(url: &Url) -> anyhow::Result<(SocketAddr, String)> {
    let refuse = || {
        anyhow::anyhow!(
            "{url}: the sandbox stands in only for plain http endpoints on a loopback address"
        )
    };
    if url.scheme() != "http" {
        return Err(refuse());
    }
    let address = url
        .socket_addrs(|| Some(80))
        .ok()
        .and_then(|addresses| addresses.into_iter().find(|a| a.ip().is_loopback()))
        .ok_or_else(refuse)?;
    Ok((address, url.path().to_owned()))
}

/// Where `REFERRAL-ID` is in the provider's first expected payload.
fn referral_id_path(mappings_dir: &Path, provider: &str) -> Option<Vec<Step>> {
    let dir = mappings_dir.join("tests").join(provider);
    let mut expected: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".expected.json"))
        .collect();
    expected.sort();
    expected.iter().find_map(|path| {
        let value: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        find(&value, FIXTURE_REFERRAL_ID)
    })
}

/// The way to the first string equal to `needle` in `value`.
fn find(value: &Value, needle: &str) -> Option<Vec<Step>> {
    match value {
        Value::String(s) if s == needle => Some(Vec::new()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| {
            let mut rest = find(v, needle)?;
            rest.insert(0, Step::Index(i));
            Some(rest)
        }),
        Value::Object(fields) => fields.iter().find_map(|(k, v)| {
            let mut rest = find(v, needle)?;
            rest.insert(0, Step::Key(k.clone()));
            Some(rest)
        }),
        _ => None,
    }
}

/// The string at `path` in `value`.
fn at<'a>(value: &'a Value, path: &[Step]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, step| match step {
            Step::Key(k) => v.get(k),
            Step::Index(i) => v.get(i),
        })?
        .as_str()
}

fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

/// A stand-in provider receives a referral (or a cancellation).
async fn receive_referral(
    State(provider): State<Arc<Provider>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let message_id = match provider.keys.verify(&headers, &body, chrono::Utc::now()) {
        Ok(id) => id,
        Err(e) => {
            println!("\n[{} stand-in] REFUSED a request (401): {e}", provider.id);
            return StatusCode::UNAUTHORIZED;
        }
    };
    println!(
        "\n[{} stand-in] delivered: {message_id}, signature verified; the provider's own payload:\n{}",
        provider.id,
        pretty(&body)
    );
    let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let referral_id = provider
        .id_path
        .as_deref()
        .and_then(|path| at(&payload, path))
        .map(str::to_owned);
    let Some(referral_id) = referral_id else {
        println!(
            "[{} stand-in] (no referral id where its fixtures put it: nothing to walk)",
            provider.id
        );
        return StatusCode::ACCEPTED;
    };
    let first = provider
        .seen
        .lock()
        .map(|mut seen| seen.insert(referral_id.clone()))
        .unwrap_or(false);
    if first {
        tokio::spawn(walk(provider.clone(), referral_id));
    } else {
        println!(
            "[{} stand-in] (a further message for referral {referral_id}: not walked again)",
            provider.id
        );
    }
    StatusCode::ACCEPTED
}

/// Send the provider's status callbacks for `referral_id`, `step` apart,
/// stopping at the first Signpost refuses.
async fn walk(provider: Arc<Provider>, referral_id: String) {
    let gateway = &provider.gateway;
    for fixture in &provider.life {
        tokio::time::sleep(gateway.step).await;
        let body = status::addressed(&fixture.callback, &referral_id);
        let sent = status::send(
            &gateway.client,
            &gateway.base,
            &provider.id,
            &provider.keys,
            &body,
        )
        .await;
        match sent {
            Ok(answer) if (200..300).contains(&answer.status) => println!(
                "\n[{} stand-in] sent status `{}` for referral {referral_id}, signed: Signpost answered {}",
                provider.id, fixture.name, answer.status
            ),
            Ok(answer) => {
                println!(
                    "\n[{} stand-in] sent status `{}` for referral {referral_id}: Signpost answered {}, stopping here:\n{}",
                    provider.id,
                    fixture.name,
                    answer.status,
                    pretty(answer.body.as_bytes())
                );
                return;
            }
            Err(e) => {
                println!(
                    "\n[{} stand-in] cannot send status `{}` for referral {referral_id}: {e:#}",
                    provider.id, fixture.name
                );
                return;
            }
        }
    }
}

/// The stand-in referrer receives a notification.
async fn receive_notification(
    State(referrer): State<Arc<Referrer>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let message_id = match referrer.keys.verify(&headers, &body, chrono::Utc::now()) {
        Ok(id) => id,
        Err(e) => {
            println!(
                "\n[{} stand-in] REFUSED a notification (401): {e}",
                referrer.id
            );
            return StatusCode::UNAUTHORIZED;
        }
    };
    let bundle: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    println!(
        "\n[{} stand-in] notified ({message_id}, signature verified): {}",
        referrer.id,
        summary(&bundle)
    );
    StatusCode::OK
}

/// A notification Bundle in one line: event number, Task, its referral,
/// status and business status.
fn summary(bundle: &Value) -> String {
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let event = entries
        .first()
        .and_then(|e| e["resource"]["parameter"].as_array())
        .and_then(|parameters| {
            parameters
                .iter()
                .find(|p| p["name"] == "events-since-subscription-start")
        })
        .and_then(|p| p["valueString"].as_str())
        .unwrap_or("?")
        .to_owned();
    let Some(task) = entries
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Task")
    else {
        return format!("event {event}, without a Task");
    };
    let text = |v: &Value| v.as_str().unwrap_or("").to_owned();
    let mut line = format!(
        "event {event}: Task/{} for {} is now {}",
        text(&task["id"]),
        text(&task["focus"]["reference"]),
        text(&task["status"]),
    );
    if let Some(business) = task["businessStatus"]["text"].as_str() {
        line.push_str(&format!(" ({business})"));
    }
    if let Some(reason) = task["statusReason"]["text"].as_str() {
        line.push_str(&format!(", reason: {reason}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_referral_id_is_found_where_the_fixture_has_it() {
        let expected = json!({"case": {"person": {}, "external_id": "REFERRAL-ID"}, "x": ["a"]});
        let path = find(&expected, FIXTURE_REFERRAL_ID).unwrap();
        let payload = json!({"case": {"person": {}, "external_id": "0193"}, "x": ["a"]});
        assert_eq!(at(&payload, &path), Some("0193"));
    }

    #[test]
    fn a_notification_reads_as_one_line() {
        let bundle = json!({"entry": [
            {"resource": {"resourceType": "Parameters", "parameter": [
                {"name": "events-since-subscription-start", "valueString": "3"}]}},
            {"resource": {"resourceType": "Task", "id": "t1", "status": "accepted",
                "focus": {"reference": "ServiceRequest/r1"}, "businessStatus": {"text": "booked"}}}
        ]});
        assert_eq!(
            summary(&bundle),
            "event 3: Task/t1 for ServiceRequest/r1 is now accepted (booked)"
        );
    }
}
