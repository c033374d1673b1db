//! Who may do what, attacked over real HTTP: every endpoint with no token,
//! a wrong, malformed or revoked token, the wrong role, and the wrong
//! tenant (another referrer's referrals).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use signpost::{
    config::{Config, Referrer, SecretSource},
    security::tokens::Role,
    webhooks::Secret,
};

use crate::{
    on_both_backends,
    support::helpers::{
        Backend, TestApp, TestDb, client_with, issue_token, json, valid, with_new_identifier,
    },
};

/// A second referrer, Hilltop Practice (ODS B82002), beside Riverside.
pub fn with_hilltop(config: &mut Config) {
    config.referrers.insert(
        "hilltop".parse().unwrap(),
        Referrer {
            id: "hilltop".parse().unwrap(),
            name: Some("Hilltop Practice".into()),
            ods_codes: vec!["B82002".into()],
            callback_url: "http://127.0.0.1:9/notifications".parse().unwrap(),
            notify: Default::default(),
            escalate_to: None,
            client_certificate_names: vec![],
            secret: SecretSource::Inline(Secret::generate()),
            previous_secret: None,
            previous_secret_until: None,
            allow_private_network: true,
        },
    );
}

/// Every authenticated endpoint, with a body where it takes one; `{id}`
/// stands for a referral of Riverside's, `{task}` for its Task.
fn protected(id: &str, task: &str, referral: &Value) -> Vec<(Method, String, Option<Value>)> {
    let revoked = json!({"resourceType": "ServiceRequest", "id": id, "status": "revoked"});
    let patch = json!([{"op": "replace", "path": "/status", "value": "revoked"}]);
    vec![
        (
            Method::POST,
            "/fhir".into(),
            Some(json!({"resourceType": "Bundle", "type": "transaction"})),
        ),
        (
            Method::POST,
            "/fhir/ServiceRequest".into(),
            Some(referral.clone()),
        ),
        (
            Method::GET,
            "/fhir/ServiceRequest?identifier=x".into(),
            None,
        ),
        (Method::GET, format!("/fhir/ServiceRequest/{id}"), None),
        (
            Method::GET,
            format!("/fhir/ServiceRequest/{id}/_history/1"),
            None,
        ),
        (
            Method::PUT,
            format!("/fhir/ServiceRequest/{id}"),
            Some(revoked),
        ),
        (
            Method::PATCH,
            format!("/fhir/ServiceRequest/{id}"),
            Some(patch),
        ),
        (
            Method::POST,
            "/fhir/ServiceRequest/$translate".into(),
            Some(referral.clone()),
        ),
        (Method::GET, format!("/fhir/Task/{task}"), None),
        (
            Method::GET,
            format!("/fhir/Task?focus=ServiceRequest/{id}"),
            None,
        ),
        (
            Method::GET,
            "/fhir/Task?_lastUpdated=ge2020-01-01".into(),
            None,
        ),
    ]
}

fn admin_endpoints() -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/admin/mappings".into()),
        (Method::GET, "/admin/deliveries".into()),
        (Method::GET, "/admin/deliveries/msg_x".into()),
        (Method::POST, "/admin/deliveries/msg_x/replay".into()),
        (Method::GET, "/admin/callbacks".into()),
        (Method::GET, "/admin/endpoints".into()),
        (
            Method::POST,
            "/admin/endpoints/provider:activelives/enable".into(),
        ),
        (Method::GET, "/admin/audit".into()),
        (Method::POST, "/admin/erase".into()),
    ]
}

async fn send(
    client: &reqwest::Client,
    app: &TestApp,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::Response {
    let mut request = client.request(method.clone(), app.url(path));
    if let Some(body) = body {
        let media = if method == Method::PATCH {
            "application/json-patch+json"
        } else {
            "application/fhir+json"
        };
        request = request.header("content-type", media).body(body.to_string());
    }
    request.send().await.unwrap()
}

/// A referral of Riverside's, and its Task id.
async fn riverside_referral(app: &TestApp) -> (String, String) {
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    (
        id,
        tasks["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

async fn refused_401(response: reqwest::Response, what: &str) -> String {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{what}");
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{what}: WWW-Authenticate"))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"signpost\""),
        "{what}: {challenge}"
    );
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    assert_eq!(outcome["issue"][0]["code"], "login", "{what}");
    outcome.to_string()
}

async fn every_endpoint_refuses_a_missing_wrong_or_revoked_token(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (id, task) = riverside_referral(&app).await;
    let referral = with_new_identifier(valid("activelives-exercise.json")).0;

    let revoked = issue_token(
        &app.db.url,
        Role::Referrer("riverside-surgery".parse().unwrap()),
    )
    .await;
    let revoked_id = revoked["sp_".len()..].split_once('_').unwrap().0.to_owned();
    let store = signpost::store::open(&app.db.url, 1).await.unwrap();
    assert!(
        signpost::security::tokens::revoke(store.as_ref(), &revoked_id)
            .await
            .unwrap()
    );
    let (_, good_secret) = app.referrer_token["sp_".len()..].split_once('_').unwrap();
    let good_id = app.referrer_token["sp_".len()..].split_once('_').unwrap().0;

    let wrong: Vec<(&str, reqwest::Client)> = vec![
        (
            "unknown token",
            client_with(&format!("sp_0123456789abcdef_{good_secret}")),
        ),
        (
            "wrong secret",
            client_with(&format!(
                "sp_{good_id}_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            )),
        ),
        ("malformed", client_with("not-a-token")),
        ("revoked", client_with(&revoked)),
    ];
    let mut endpoints: Vec<(Method, String, Option<Value>)> = protected(&id, &task, &referral);
    endpoints.extend(admin_endpoints().into_iter().map(|(m, p)| (m, p, None)));
    for (method, path, body) in &endpoints {
        let what = format!("{method} {path}");
        let bare = refused_401(
            send(&app.anonymous, &app, method.clone(), path, body.as_ref()).await,
            &what,
        )
        .await;
        assert!(bare.contains("Authorization: Bearer"), "{what}: {bare}");
        let mut answers = Vec::new();
        for (kind, client) in &wrong {
            let response = send(client, &app, method.clone(), path, body.as_ref()).await;
            let challenge = response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                challenge.contains("invalid_token"),
                "{what} {kind}: {challenge}"
            );
            answers.push(refused_401(response, &format!("{what} with a {kind}")).await);
        }
        // An unknown, a wrong and a revoked token get the very same answer.
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{what}: {answers:?}"
        );
    }

    // Nothing was created or changed by any of that.
    assert_eq!(
        json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await["status"],
        "active"
    );

    // The open endpoints stay open.
    let metadata = app
        .anonymous
        .get(app.url("/fhir/metadata"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
}

async fn a_referrer_token_cannot_use_the_admin_api_and_an_admin_cannot_refer(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (method, path) in admin_endpoints() {
        let response = send(&app.client, &app, method.clone(), &path, None).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(json(response).await["issue"][0]["code"], "forbidden");
        let response = send(&app.admin, &app, method.clone(), &path, None).await;
        assert_ne!(response.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_ne!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let response = send(
        &app.admin,
        &app,
        Method::POST,
        "/fhir/ServiceRequest",
        Some(&referral),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // An admin may read any referral, but cannot withdraw it for the referrer.
    let (id, task) = riverside_referral(&app).await;
    let read = send(
        &app.admin,
        &app,
        Method::GET,
        &format!("/fhir/ServiceRequest/{id}"),
        None,
    )
    .await;
    assert_eq!(read.status(), StatusCode::OK);
    let read = send(
        &app.admin,
        &app,
        Method::GET,
        &format!("/fhir/Task/{task}"),
        None,
    )
    .await;
    assert_eq!(read.status(), StatusCode::OK);
    let patch = json!([{"op": "replace", "path": "/status", "value": "revoked"}]);
    let response = send(
        &app.admin,
        &app,
        Method::PATCH,
        &format!("/fhir/ServiceRequest/{id}"),
        Some(&patch),
    )
    .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

async fn a_referrer_sees_only_its_own_referrals(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, with_hilltop).await;
    let (id, task) = riverside_referral(&app).await;
    let hilltop =
        client_with(&issue_token(&app.db.url, Role::Referrer("hilltop".parse().unwrap())).await);
    let referral = with_new_identifier(valid("activelives-exercise.json")).0;

    for (method, path, body) in protected(&id, &task, &referral) {
        let what = format!("{method} {path}");
        let response = send(&hilltop, &app, method.clone(), &path, body.as_ref()).await;
        let status = response.status();
        let body_text = response.text().await.unwrap();
        if path.ends_with("$translate") {
            // A dry run makes intake's checks: Riverside's referral is not
            // Hilltop's to send (nothing stored is read either way).
            assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
            continue;
        }
        for secret in ["9990124833", "Fairbrother", "1958-06-14", "authoredOn"] {
            assert!(
                !body_text.contains(secret),
                "{what} leaked {secret}: {body_text}"
            );
        }
        match (method.as_str(), path.as_str()) {
            // Riverside's referral sent with Hilltop's token.
            ("POST", "/fhir/ServiceRequest") => assert_eq!(status, StatusCode::FORBIDDEN, "{what}"),
            // An empty transaction is refused for what it is.
            ("POST", "/fhir") => assert!(status.is_client_error(), "{what}"),
            // Searches answer, without Riverside's data.
            (_, p) if p.contains('?') => {
                assert_eq!(status, StatusCode::OK, "{what}");
                let found: Value = serde_json::from_str(&body_text).unwrap();
                assert_eq!(found["total"], 0, "{what}: {found}");
            }
            // Reads and changes of Riverside's referral: as if it did not exist.
            _ => assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body_text}"),
        }
    }
    // Riverside's referral is untouched and still Riverside's.
    let mine = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(mine["status"], "active");
    let found = json(app.get("/fhir/Task?_lastUpdated=ge2020-01-01").await).await;
    assert_eq!(found["total"], 1);
}

/// `signpost tokens create|list|revoke` against the running server's
/// database: the printed token works at once, and stops working when
/// revoked; the list never shows a token or its hash.
async fn tokens_are_issued_and_revoked_from_the_command_line(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cli = |args: Vec<String>| {
        let url = app.db.url.clone();
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
                .arg("tokens")
                .args(&args)
                .current_dir(crate::support::helpers::MANIFEST_DIR)
                .env("SIGNPOST_DATABASE_URL", url)
                .env("RUST_LOG", "warn")
                .output()
                .await
                .unwrap();
            if !output.status.success() {
                // Shown when an assertion below fails.
                eprintln!(
                    "signpost tokens {args:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            )
        }
    };
    let (ok, token) = cli(vec![
        "create".into(),
        "--referrer".into(),
        "riverside-surgery".into(),
    ])
    .await;
    assert!(ok && token.starts_with("sp_"), "{token}");
    let client = client_with(&token);
    let response = client
        .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    let (ok, listed) = cli(vec!["list".into()]).await;
    assert!(ok);
    // `sp_<hex id>_<secret>`: the id has no `_`, the base64url secret may.
    let (id, secret) = token["sp_".len()..].split_once('_').unwrap();
    let id = id.to_owned();
    assert!(!listed.contains(secret), "the list shows no secret");
    assert!(listed.contains(&id));

    let (ok, _) = cli(vec!["revoke".into(), id.clone()]).await;
    assert!(ok);
    let response = client
        .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (ok, _) = cli(vec!["create".into(), "--referrer".into(), "nobody".into()]).await;
    assert!(!ok, "an unknown referrer gets no token");
    let (ok, admin) = cli(vec!["create".into(), "--admin".into()]).await;
    assert!(ok);
    let response = client_with(&admin)
        .get(app.url("/admin/endpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

/// An endpoint named by a host name that resolves to this machine (not
/// `localhost`): Signpost refuses to start unless the table allows a
/// private network.
#[tokio::test]
async fn a_target_whose_name_leads_to_a_private_address_is_refused_at_start_up() {
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let resolves_privately = match tokio::net::lookup_host((host.as_str(), 443)).await {
        Ok(addrs) => addrs
            .into_iter()
            .all(|a| !signpost::addresses::is_public(a.ip())),
        Err(_) => false,
    };
    assert!(
        resolves_privately && !host.is_empty(),
        "this test needs the machine's host name ({host:?}) to resolve to a private or loopback address, as it does on the project's machines"
    );
    let db = TestDb::fresh(Backend::Sqlite).await;
    let mut config = crate::support::helpers::test_config(&db.url);
    let provider = config.providers.get_mut("activelives").unwrap();
    provider.delivery = signpost::config::ProviderDelivery::Webhook {
        intake_url: format!("https://{host}/intake").parse().unwrap(),
    };
    provider.allow_private_network = false;
    let refused = signpost::startup::Application::build(config.clone()).await;
    let message = format!("{:#}", refused.err().expect("start-up is refused"));
    assert!(
        message.contains("providers.activelives.intake_url")
            && message.contains("allow_private_network"),
        "{message}"
    );
    config
        .providers
        .get_mut("activelives")
        .unwrap()
        .allow_private_network = true;
    assert!(signpost::startup::Application::build(config).await.is_ok());
}

on_both_backends!(
    tokens_are_issued_and_revoked_from_the_command_line,
    every_endpoint_refuses_a_missing_wrong_or_revoked_token,
    a_referrer_token_cannot_use_the_admin_api_and_an_admin_cannot_refer,
    a_referrer_sees_only_its_own_referrals,
);
