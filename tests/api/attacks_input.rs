//! Input attacks replayed over real HTTP (issue 14, findings 6, 8 and 9):
//! every spelling of a non-public address at start-up and per connection,
//! distinctive marker values sent to every endpoint (bodies, paths, query
//! strings, headers) and searched for in every answer, a non-ASCII
//! `If-Match`, and C1 control characters.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use signpost::config::Config;

use crate::{
    on_both_backends,
    support::helpers::{
        Backend, TestApp, TestDb, json, test_config, test_secret, valid, with_new_identifier,
    },
    support::receiver::{sign, unix_now},
};

// ---------------------------------------------------------------- finding 6

/// Every way the review wrote a non-public address, as a target URL.
const NON_PUBLIC_SPELLINGS: &[&str] = &[
    "https://127.0.0.1/intake",
    "https://0x7f000001/intake",
    "https://127.1/intake",
    "https://2130706433/intake",
    "https://[::1]/intake",
    "https://localhost/intake",
    "https://[::127.0.0.1]/intake",
    "https://[::ffff:127.0.0.1]/intake",
    "https://[::ffff:169.254.169.254]/latest/meta-data",
    "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "https://[2002:a9fe:a9fe::1]/intake",
    "https://[fec0::1]/intake",
    "https://[fd00:ec2::254]/intake",
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.5/intake",
];

fn provider_table(url: &str, extra: &str) -> String {
    format!("[providers.a]\nintake_url = \"{url}\"\nsecret_env = \"A\"\n{extra}\n")
}

/// The configuration file refuses each spelling unless the table allows a
/// private network, and so does start-up for a configuration built in code
/// (the same rule, whoever made the configuration).
async fn every_spelling_of_a_non_public_address_needs_the_allowance_at_start_up(backend: Backend) {
    let env = std::collections::HashMap::new();
    let file = std::path::Path::new("attack.toml");
    for url in NON_PUBLIC_SPELLINGS {
        let refused = Config::from_toml(&provider_table(url, ""), file, &env)
            .expect_err(&format!("{url} must be refused without the allowance"));
        assert!(
            refused.to_string().contains("allow_private_network"),
            "{url}: {refused}"
        );
        assert!(
            Config::from_toml(
                &provider_table(url, "allow_private_network = true"),
                file,
                &env
            )
            .is_ok(),
            "{url} with the allowance"
        );
    }

    let db = TestDb::fresh(backend).await;
    for url in NON_PUBLIC_SPELLINGS {
        let mut config = test_config(&db.url);
        let provider = config.providers.get_mut("activelives").unwrap();
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: url.parse().unwrap(),
        };
        provider.allow_private_network = false;
        let refused = signpost::startup::Application::build(config).await;
        let message = format!("{:#}", refused.err().expect("start-up is refused"));
        assert!(
            message.contains("providers.activelives.intake_url")
                && message.contains("allow_private_network"),
            "{url}: {message}"
        );
    }
    let mut config = test_config(&db.url);
    for provider in config.providers.values_mut() {
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://[::ffff:169.254.169.254]/x".parse().unwrap(),
        };
        provider.allow_private_network = true;
    }
    assert!(signpost::startup::Application::build(config).await.is_ok());
}

/// On every connection the delivery client's resolver refuses a name that
/// leads to loopback, whether the name is `localhost`, this machine's host
/// name or an address written as a name, unless its target is allowed a
/// private network.
async fn every_spelling_of_loopback_is_refused_per_connection(backend: Backend) {
    use reqwest::dns::{Name, Resolve};
    use std::str::FromStr;
    let db = TestDb::fresh(backend).await;
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let names = [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.0.0.2",
        host.as_str(),
    ];
    let mut config = test_config(&db.url);
    for provider in config.providers.values_mut() {
        provider.allow_private_network = false;
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://provider.example/intake".parse().unwrap(),
        };
    }
    for referrer in config.referrers.values_mut() {
        referrer.allow_private_network = false;
        referrer.callback_url = "https://referrer.example/cb".parse().unwrap();
    }
    // A target that names loopback outright is no exception (it was: the
    // URL's own host was exempt from the check).
    config.providers.get_mut("activelives").unwrap().delivery =
        signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://localhost/intake".parse().unwrap(),
        };
    let guarded = signpost::security::egress::resolver(&config);
    for name in names.iter().filter(|n| !n.is_empty()) {
        let resolved = guarded.resolve(Name::from_str(name).unwrap()).await;
        assert!(
            resolved.is_err(),
            "{name} resolved to {:?}",
            resolved.map(|a| a.collect::<Vec<_>>()).ok()
        );
    }
    let provider = config.providers.get_mut("activelives").unwrap();
    provider.allow_private_network = true;
    let allowed = signpost::security::egress::resolver(&config);
    let addrs: Vec<_> = allowed
        .resolve(Name::from_str("localhost").unwrap())
        .await
        .map_err(|e| e.to_string())
        .unwrap()
        .collect();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

// ---------------------------------------------------------------- finding 8

/// One request of the echo fuzz.
struct Probe {
    who: Who,
    method: Method,
    path: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<(&'static str, Vec<u8>)>,
    /// A 2xx answer may hold the marker: the request stored or translated
    /// a resource, and the answer is that resource.
    stores: bool,
    marker: String,
}

#[derive(Clone, Copy)]
enum Who {
    Referrer,
    Admin,
    Anonymous,
    /// A provider's callback, signed with its secret.
    Provider,
}

/// Markers are distinctive, and each probe has its own, so that a leak
/// names the request that caused it.
struct Markers(usize);

impl Markers {
    fn next(&mut self) -> String {
        self.0 += 1;
        format!("qzx{}mrk", self.0)
    }
}

/// Every string and key of `value`, one at a time replaced by a marker.
fn leaf_mutations(value: &Value, markers: &mut Markers) -> Vec<(Value, String)> {
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

fn fhir(body: &Value) -> Option<(&'static str, Vec<u8>)> {
    Some(("application/fhir+json", body.to_string().into_bytes()))
}

fn probe(who: Who, method: Method, path: String, marker: String) -> Probe {
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

/// Every endpoint with marker values in its path, query string, headers
/// and body. `id`/`task`/`message` are real ones, so that requests get past
/// the look-up to the checks behind it.
fn probes(id: &str, task: &str, message: &str, markers: &mut Markers) -> Vec<Probe> {
    use Who::*;
    let mut all = Vec::new();
    let get = |who: Who, path: &str| (who, Method::GET, path.to_owned());

    // Paths: a marker wherever the route takes a value, and unknown routes.
    for (who, method, template) in [
        (Referrer, Method::GET, "/fhir/ServiceRequest/{m}"),
        (Referrer, Method::PUT, "/fhir/ServiceRequest/{m}"),
        (Referrer, Method::PATCH, "/fhir/ServiceRequest/{m}"),
        (Referrer, Method::GET, "/fhir/ServiceRequest/{m}/_history/1"),
        (
            Referrer,
            Method::GET,
            "/fhir/ServiceRequest/{id}/_history/{m}",
        ),
        (Referrer, Method::GET, "/fhir/Task/{m}"),
        (Referrer, Method::GET, "/fhir/{m}"),
        (Referrer, Method::GET, "/fhir/{m}/{m}"),
        (Referrer, Method::POST, "/fhir/ServiceRequest/{m}"),
        (Admin, Method::GET, "/admin/deliveries/{m}"),
        (Admin, Method::POST, "/admin/deliveries/{m}/replay"),
        (Admin, Method::POST, "/admin/endpoints/{m}/enable"),
        (Admin, Method::POST, "/admin/endpoints/provider:{m}/enable"),
        (Admin, Method::GET, "/admin/{m}"),
        (Provider, Method::POST, "/providers/{m}/status"),
        (Anonymous, Method::GET, "/{m}"),
        (Anonymous, Method::GET, "/health/{m}"),
    ] {
        let marker = markers.next();
        let path = template.replace("{m}", &marker).replace("{id}", id);
        all.push(probe(who, method, path, marker));
    }
    // An unknown method.
    let marker = markers.next();
    all.push(probe(
        Referrer,
        Method::from_bytes(marker.to_uppercase().as_bytes()).unwrap(),
        "/fhir/ServiceRequest".into(),
        marker,
    ));

    // Query strings on every read.
    let reads = [
        get(Referrer, "/fhir/ServiceRequest"),
        get(Referrer, &format!("/fhir/ServiceRequest/{id}")),
        get(Referrer, "/fhir/Task"),
        get(Referrer, &format!("/fhir/Task/{task}")),
        get(Referrer, "/fhir/metadata"),
        get(Admin, "/admin/deliveries"),
        get(Admin, &format!("/admin/deliveries/{message}")),
        get(Admin, "/admin/callbacks"),
        get(Admin, "/admin/audit"),
        get(Admin, "/admin/endpoints"),
        get(Admin, "/admin/mappings"),
        get(Admin, "/metrics"),
        get(Anonymous, "/health/live"),
        get(Anonymous, "/health/ready"),
    ];
    for (who, method, path) in reads {
        for params in [
            "{m}={m}",
            "identifier={m}",
            "identifier={m}|{m}",
            "focus=ServiceRequest/{m}",
            "focus={m}",
            "_lastUpdated={m}",
            "_lastUpdated=ge{m}",
            "status={m}",
            "endpoint={m}",
            "_count={m}",
            "limit={m}",
            "_format={m}",
        ] {
            let marker = markers.next();
            let query = params.replace("{m}", &marker);
            all.push(probe(
                who,
                method.clone(),
                format!("{path}?{query}"),
                marker,
            ));
        }
    }

    // Headers on a read, a write and a callback.
    for (who, method, path) in [
        get(Referrer, &format!("/fhir/ServiceRequest/{id}")),
        (Referrer, Method::POST, "/fhir/ServiceRequest".to_owned()),
        (Referrer, Method::PUT, format!("/fhir/ServiceRequest/{id}")),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status".into(),
        ),
        get(Admin, "/admin/deliveries"),
    ] {
        for name in [
            "if-match",
            "if-none-exist",
            "if-none-match",
            "accept",
            "content-type",
            "prefer",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "x-forwarded-for",
        ] {
            for value in ["{m}", "W/\"{m}\"", "identifier={m}|{m}"] {
                let marker = markers.next();
                let mut p = probe(who, method.clone(), path.clone(), marker.clone());
                p.headers
                    .push((name, value.replace("{m}", &marker).into_bytes()));
                if method != Method::GET {
                    p.body = Some(("application/fhir+json", b"{}".to_vec()));
                }
                all.push(p);
            }
        }
        let marker = markers.next();
        let mut p = probe(Anonymous, method.clone(), path.clone(), marker.clone());
        p.headers
            .push(("authorization", format!("Bearer {marker}").into_bytes()));
        all.push(p);
        let marker = markers.next();
        let mut p = probe(Anonymous, method.clone(), path.clone(), marker.clone());
        p.headers.push((
            "authorization",
            format!("Bearer sp_{marker}_{marker}").into_bytes(),
        ));
        all.push(p);
    }

    // Bodies: a valid referral with each string and each object's keys
    // replaced in turn, to every endpoint that takes one.
    let referral = with_new_identifier(valid("activelives-exercise.json")).0;
    for (mutated, marker) in leaf_mutations(&referral, markers) {
        for path in ["/fhir/ServiceRequest", "/fhir/ServiceRequest/$translate"] {
            let renamed = if mutated["identifier"].to_string().contains(&marker) {
                mutated.clone()
            } else {
                with_new_identifier(mutated.clone()).0
            };
            let mut p = probe(Referrer, Method::POST, path.into(), marker.clone());
            p.body = fhir(&renamed);
            p.stores = true;
            all.push(p);
        }
        let mut withdrawal = mutated.clone();
        withdrawal["id"] = json!(id);
        let mut p = probe(
            Referrer,
            Method::PUT,
            format!("/fhir/ServiceRequest/{id}"),
            marker.clone(),
        );
        p.body = fhir(&withdrawal);
        all.push(p);
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:0d9c4ad8-1b1e-4a57-9e43-2c2f5d1b9a11",
                "resource": mutated,
                "request": {"method": "POST", "url": "ServiceRequest"}
            }]
        });
        let mut p = probe(Referrer, Method::POST, "/fhir".into(), marker);
        p.body = fhir(&bundle);
        p.stores = true;
        all.push(p);
    }
    // A transaction with its own parts marked.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": "urn:uuid:0d9c4ad8-1b1e-4a57-9e43-2c2f5d1b9a11",
            "resource": with_new_identifier(valid("activelives-exercise.json")).0,
            "request": {"method": "POST", "url": "ServiceRequest"}
        }]
    });
    for (mutated, marker) in leaf_mutations(&bundle, markers)
        .into_iter()
        .filter(|(v, _)| v["entry"][0]["resource"]["resourceType"] == "ServiceRequest")
        .take(12)
    {
        let mut p = probe(Referrer, Method::POST, "/fhir".into(), marker);
        p.body = fhir(&mutated);
        p.stores = true;
        all.push(p);
    }

    // Whole bodies that are wrong in themselves.
    for (who, method, path, content_type, template) in [
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest/$translate",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "{m}": "{m}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"["{m}"]"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/{m}",
            r#"{"resourceType": "ServiceRequest"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            "{m}",
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "status": {m}}"#,
        ),
        (
            Referrer,
            Method::PUT,
            "/fhir/ServiceRequest/{id}",
            "application/fhir+json",
            r#"{"resourceType": "{m}", "id": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PUT,
            "/fhir/ServiceRequest/{id}",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "id": "{m}", "status": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "{m}", "path": "/status", "value": "revoked"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/{m}", "value": "revoked"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/status", "value": "{m}"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "add", "path": "/note", "value": [{"text": "{m}"}]}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "test", "path": "/status", "value": "{m}"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "move", "from": "/{m}", "path": "/status"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"{"{m}": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/status", "value": "{m}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/{m}",
            "[]",
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhs_number": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhs_number": 1, "{m}": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"{m}": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": {m}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": ["{m}"]}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": "{m}", "event": "booked"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": "{id}", "event": "{m}"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": "{id}", "event": "booked", "{m}": "{m}"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": "{id}", "event": "booked", "event_time": "{m}"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": ["{m}"], "event": "booked"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"{"referral_ref": "{m}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            r#"["{m}"]"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/activelives/status",
            "application/json",
            "{m}",
        ),
        (
            Provider,
            Method::POST,
            "/providers/community-connect/status",
            "application/json",
            r#"{"case_id": "{m}", "state": "{m}"}"#,
        ),
        (
            Provider,
            Method::POST,
            "/providers/grow-together/status",
            "application/json",
            r#"{"ref": "{m}", "status": "{m}"}"#,
        ),
    ] {
        let marker = markers.next();
        let mut p = probe(who, method, path.replace("{id}", id), marker.clone());
        let body = template.replace("{m}", &marker).replace("{id}", id);
        p.body = Some((content_type, body.into_bytes()));
        all.push(p);
    }
    all
}

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

/// No answer quotes what was sent: every endpoint, with a distinctive
/// marker in each place a client controls, and every answer (status line
/// aside: headers and body) searched for it. A 2xx answer to a request
/// that stored or translated a referral is that referral, and may hold it.
async fn no_answer_quotes_a_submitted_value(backend: Backend) {
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

    let mut markers = Markers(0);
    let probes = probes(&id, &task, &message, &mut markers);
    assert!(probes.len() > 300, "{} probes", probes.len());
    let mut leaks = Vec::new();
    for probe in &probes {
        let (status, answer) = send_probe(&app, probe).await;
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

// ---------------------------------------------------------------- finding 9

/// An `If-Match` that is not visible ASCII cannot be compared: the change
/// is refused (400), not applied as if no precondition had been sent.
async fn a_non_ascii_if_match_is_refused_and_nothing_changes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let mut revoked = created.clone();
    revoked["status"] = json!("revoked");
    let patch = json!([{"op": "replace", "path": "/status", "value": "revoked"}]);
    for if_match in [
        &b"W/\"1\xc3\xa9\""[..],
        b"W/\"\xff\"",
        b"\xe2\x80\x9c1\xe2\x80\x9d",
    ] {
        for (method, media, body) in [
            (Method::PUT, "application/fhir+json", revoked.to_string()),
            (
                Method::PATCH,
                "application/json-patch+json",
                patch.to_string(),
            ),
        ] {
            let answer = app
                .client
                .request(
                    method.clone(),
                    app.url(&format!("/fhir/ServiceRequest/{id}")),
                )
                .header("content-type", media)
                .header("if-match", if_match)
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(
                answer.status(),
                StatusCode::BAD_REQUEST,
                "{method} with If-Match {:?}",
                String::from_utf8_lossy(if_match)
            );
        }
    }
    let current = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(current["status"], "active");
    // A well-formed but stale one is 412, and the right one still works.
    let stale = app
        .client
        .patch(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/json-patch+json")
        .header("if-match", "W/\"7\"")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let version = current["meta"]["versionId"].as_str().unwrap();
    let done = app
        .client
        .patch(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/json-patch+json")
        .header("if-match", format!("W/\"{version}\""))
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), StatusCode::OK);
}

/// C1 controls (U+0080-U+009F) are refused in referral strings like C0
/// ones, wherever they are, with the place named and the value not quoted.
async fn c1_control_characters_are_refused_like_other_controls(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (pointer, expression) in [
        (
            "/contained/0/name/0/family",
            "ServiceRequest.contained[0].name[0].family",
        ),
        ("/note/0/text", "ServiceRequest.note[0].text"),
        ("/identifier/0/value", "ServiceRequest.identifier[0].value"),
    ] {
        for control in ['\u{80}', '\u{85}', '\u{9b}', '\u{9f}'] {
            let (mut referral, _) = with_new_identifier(valid("activelives-exercise.json"));
            let Some(slot) = referral.pointer_mut(pointer) else {
                if pointer == "/note/0/text" {
                    referral["note"] = json!([{"text": format!("call{control}me")}]);
                    send_c1(&app, &referral, expression, control).await;
                }
                continue;
            };
            let text = slot.as_str().unwrap_or("x").to_owned();
            *slot = json!(format!("{text}{control}tail"));
            send_c1(&app, &referral, expression, control).await;
        }
    }
}

async fn send_c1(app: &TestApp, referral: &Value, expression: &str, control: char) {
    let answer = app.post_json("/fhir/ServiceRequest", referral).await;
    assert_eq!(
        answer.status(),
        StatusCode::BAD_REQUEST,
        "U+{:04X} at {expression}",
        control as u32
    );
    let outcome = json(answer).await;
    assert!(
        crate::support::helpers::expressions(&outcome).contains(&expression.to_owned()),
        "U+{:04X}: {outcome}",
        control as u32
    );
    assert!(!outcome.to_string().contains(control));
}

/// A name holding a right-to-left override and a zero-width space is
/// stored as sent, but the admin view of the delivery shows both escaped
/// (`\u202E`), so an operator sees what is there.
async fn bidi_and_zero_width_characters_are_shown_escaped_in_admin_views(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (mut referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    referral["contained"][0]["name"][0]["family"] = json!("Fair\u{202E}rehtorb\u{200B}");
    let created = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created = json(created).await;
    let id = created["id"].as_str().unwrap();
    let listed = json(app.get(&format!("/admin/deliveries?referral={id}")).await).await;
    let message = listed["messages"][0]["id"].as_str().expect("its message");
    let shown = app
        .get(&format!("/admin/deliveries/{message}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !shown.contains('\u{202E}') && !shown.contains('\u{200B}'),
        "{shown}"
    );
    assert!(
        shown.contains("Fair\\u202Erehtorb\\u200B"),
        "the name is shown, escaped: {shown}"
    );
    // The same data to a JSON reader.
    let parsed: Value = serde_json::from_str(&shown).unwrap();
    assert!(parsed.to_string().contains("Fair\u{202E}rehtorb\u{200B}"));
}

on_both_backends!(
    bidi_and_zero_width_characters_are_shown_escaped_in_admin_views,
    every_spelling_of_a_non_public_address_needs_the_allowance_at_start_up,
    every_spelling_of_loopback_is_refused_per_connection,
    no_answer_quotes_a_submitted_value,
    a_non_ascii_if_match_is_refused_and_nothing_changes,
    c1_control_characters_are_refused_like_other_controls,
);
