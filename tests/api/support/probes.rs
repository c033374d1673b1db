//! The echo fuzz's machinery (issue 14, finding 8): a [`Probe`] is one
//! request carrying a distinctive marker where a client controls a value,
//! and [`assert_no_echo`] sends each and searches every answer for its
//! marker. The probe families are in `attacks_input/`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{
    helpers::{Backend, TestApp, TestDb, json, test_secret, valid, with_new_identifier},
    receiver::{sign, unix_now},
};

/// One request of the echo fuzz.
pub struct Probe {
    pub who: Who,
    pub method: Method,
    pub path: String,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    pub body: Option<(&'static str, Vec<u8>)>,
    /// A 2xx answer may hold the marker: the request stored or translated
    /// a resource, and the answer is that resource.
    pub stores: bool,
    pub marker: String,
}

#[derive(Clone, Copy)]
pub enum Who {
    Referrer,
    Admin,
    Anonymous,
    /// A provider's callback, signed with its secret.
    Provider,
}

/// Markers are distinctive, and each probe has its own, so that a leak
/// names the request that caused it.
#[derive(Default)]
pub struct Markers(usize);

impl Markers {
    pub fn next(&mut self) -> String {
        self.0 += 1;
        format!("qzx{}mrk", self.0)
    }
}

/// Every string and key of `value`, one at a time replaced by a marker.
pub fn leaf_mutations(value: &Value, markers: &mut Markers) -> Vec<(Value, String)> {
    fn paths(value: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        match value {
            Value::Object(map) => {
                out.push(at.clone()); // a new key here
                for (k, v) in map {
                    at.push(k.clone());
                    paths(v, at, out);
                    at.pop();
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    at.push(i.to_string());
                    paths(v, at, out);
                    at.pop();
                }
            }
            Value::String(_) => out.push(at.clone()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    paths(value, &mut Vec::new(), &mut out);
    out.into_iter()
        .map(|path| {
            let marker = markers.next();
            let mut copy = value.clone();
            let pointer: String = path.iter().map(|p| format!("/{p}")).collect();
            match copy.pointer_mut(&pointer) {
                // A key not shaped like an element name (FHIR's unknown
                // elements are named when they look like element names:
                // their name is their location).
                Some(Value::Object(map)) => {
                    map.insert(format!("{marker} as key"), json!(marker));
                }
                Some(leaf) => *leaf = json!(marker),
                None => unreachable!("{pointer}"),
            }
            (copy, marker)
        })
        .collect()
}

pub fn fhir(body: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/fhir+json", body.to_string().into_bytes()))
}

pub fn probe(who: Who, method: Method, path: String, marker: String) -> Probe {
    Probe {
        who,
        method,
        path,
        headers: Vec::new(),
        body: None,
        stores: false,
        marker,
    }
}

/// Send `probe`: its answer's status, and its headers and body as text.
async fn send_probe(app: &TestApp, probe: &Probe) -> (StatusCode, String) {
    let client = match probe.who {
        Who::Referrer => &app.client,
        Who::Admin => &app.admin,
        Who::Anonymous | Who::Provider => &app.anonymous,
    };
    let mut request = client.request(probe.method.clone(), app.url(&probe.path));
    for (name, value) in &probe.headers {
        request = request.header(*name, value.as_slice());
    }
    let body = probe.body.clone();
    if let Some((content_type, bytes)) = &body
        && !probe.headers.iter().any(|(n, _)| *n == "content-type")
    {
        request = request.header("content-type", *content_type);
        request = request.body(bytes.clone());
    } else if let Some((_, bytes)) = &body {
        request = request.body(bytes.clone());
    }
    if matches!(probe.who, Who::Provider) {
        let provider = probe
            .path
            .trim_start_matches("/providers/")
            .split('/')
            .next()
            .unwrap_or_default();
        let secret = test_secret(&format!("provider:{provider}"));
        let bytes = body.map(|(_, b)| b).unwrap_or_default();
        let ts = unix_now();
        let given = |name: &str| probe.headers.iter().any(|(n, _)| *n == name);
        if !given("webhook-id") {
            request = request.header("webhook-id", "echo-probe");
        }
        if !given("webhook-timestamp") {
            request = request.header("webhook-timestamp", ts.to_string());
        }
        if !given("webhook-signature") {
            request = request.header("webhook-signature", sign(&secret, "echo-probe", ts, &bytes));
        }
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let mut answer = String::new();
    for (name, value) in response.headers() {
        // The request and correlation ids are the client's own to give,
        // and are returned as given by design (see README, Operations).
        if name == "x-request-id" || name == "x-correlation-id" {
            continue;
        }
        answer.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    let body = response.bytes().await.unwrap();
    match serde_json::from_slice::<Value>(&body) {
        // A searchset's self link is the search as performed (FHIR R4
        // 3.1.1.4.2 asks for it): the one place an answer repeats a
        // request, by contract. Everything else in the Bundle is searched.
        Ok(mut bundle) if status.is_success() && bundle["resourceType"] == "Bundle" => {
            if let Some(links) = bundle["link"].as_array_mut() {
                links.retain(|l| l["relation"] != "self");
            }
            answer.push_str(&bundle.to_string());
        }
        _ => answer.push_str(&String::from_utf8_lossy(&body)),
    }
    (status, answer)
}

/// Real ids for probes to carry, so that requests get past the look-up to
/// the checks behind it: a stored referral, its Task, its message, and the
/// referrer's Subscription.
pub struct Targets {
    pub referral: String,
    pub task: String,
    pub message: String,
    pub subscription: String,
}

/// A Signpost whose rate limit lets hundreds of probes through, and the
/// [`Targets`] in it.
pub async fn echo_app(backend: Backend) -> (TestApp, Targets) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.requests_per_second = 100_000.0;
        config.limits.burst = 100_000;
    })
    .await;
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    let task = tasks["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deliveries = json(app.get("/admin/deliveries").await).await;
    let message = deliveries["messages"][0]["id"]
        .as_str()
        .expect("the referral's message")
        .to_owned();
    let targets = Targets {
        referral: id,
        task,
        message,
        // A referrer's Subscription has the referrer's id.
        subscription: crate::support::fleet::REFERRER.to_owned(),
    };
    (app, targets)
}

/// No answer quotes what was sent: each probe is sent and its answer
/// (status line aside: headers and body) searched for its marker. A 2xx
/// answer to a request that stored or translated a referral is that
/// referral, and may hold it.
pub async fn assert_no_echo(app: &TestApp, probes: &[Probe]) {
    let mut leaks = Vec::new();
    for probe in probes {
        let (status, answer) = send_probe(app, probe).await;
        assert!(
            !status.is_server_error() || status == StatusCode::SERVICE_UNAVAILABLE,
            "{} {}: {status}",
            probe.method,
            probe.path
        );
        if probe.stores && status.is_success() {
            continue;
        }
        if answer.to_lowercase().contains(&probe.marker) {
            let at = answer.to_lowercase().find(&probe.marker).unwrap();
            let from = answer.floor_char_boundary(at.saturating_sub(80));
            let to = answer.ceil_char_boundary((at + 40).min(answer.len()));
            leaks.push(format!(
                "{} {} ({status}): …{}…",
                probe.method,
                probe.path,
                &answer[from..to]
            ));
        }
    }
    assert!(
        leaks.is_empty(),
        "{} of {} answers quote a submitted value:\n{}",
        leaks.len(),
        probes.len(),
        leaks.join("\n")
    );
}
