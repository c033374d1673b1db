//! The inbox (pull delivery): an inbox provider's referrals wait in its
//! inbox exactly as they would have been pushed; its software leases them
//! under a consumer name, commits what it has taken, and sees leases lapse
//! and messages handed out again; a referral's messages come in order;
//! only the provider's own token opens its inbox, and it may also sign its
//! status callbacks with it; referrals left uncollected are nudged, then
//! dead-lettered, with the referrer told each time. Time is a stopped
//! clock moved on by the test.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use signpost::{
    config::{Config, ProviderDelivery},
    domain::ReferralId,
    security::tokens::Role,
};

use crate::{
    on_both_backends,
    support::fleet::Fleet,
    support::helpers::{Backend, client_with, issue_token, json, test_config},
};

const PROVIDER: &str = "grow-together";
const NUDGE: Duration = Duration::from_secs(3600);
const EXPIRE: Duration = Duration::from_secs(5 * 3600);

/// Make `provider` an inbox provider with short clocks.
fn inbox(config: &mut Config, provider: &str) {
    config.providers.get_mut(provider).unwrap().delivery = ProviderDelivery::Inbox {
        nudge_after: NUDGE,
        expire_after: EXPIRE,
    };
}

/// A stepped fleet in which Grow Together collects from its inbox, and a
/// client with its token.
async fn start(backend: Backend) -> (Fleet, Inbox) {
    start_with(backend, |_| {}).await
}

async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> (Fleet, Inbox) {
    let fleet = Fleet::start_stepped(backend, |config| {
        inbox(config, PROVIDER);
        adjust(config);
    })
    .await;
    let token = issue_token(&fleet.app.db.url, Role::Provider(PROVIDER.parse().unwrap())).await;
    let inbox = Inbox {
        client: client_with(&token),
        base: fleet.app.url(&format!("/providers/{PROVIDER}")),
    };
    (fleet, inbox)
}

/// The provider's software.
struct Inbox {
    client: reqwest::Client,
    base: String,
}

impl Inbox {
    async fn get(&self, query: &str) -> reqwest::Response {
        self.client
            .get(format!("{}/inbox?{query}", self.base))
            .send()
            .await
            .unwrap()
    }

    /// A successful poll's body.
    async fn poll(&self, query: &str) -> Value {
        let response = self.get(query).await;
        assert_eq!(response.status(), StatusCode::OK, "poll {query}");
        json(response).await
    }

    async fn commit(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}/inbox/commit", self.base))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }
}

fn offsets(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["offset"].as_i64().unwrap())
        .collect()
}

fn referrals(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["referral"].as_str().unwrap().to_owned())
        .collect()
}

/// The Tasks the referrer was notified of, once each, in order. (Once the
/// stopped clock has moved on, the referrer's receiver refuses Signpost's
/// signatures as stale, and Signpost sends again: count webhook-ids.)
fn told(fleet: &Fleet) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    fleet
        .referrer
        .received()
        .into_iter()
        .filter(|r| seen.insert(r.webhook_id.clone()))
        .map(|r| r.body["entry"][1]["resource"].clone())
        .collect()
}

/// The one message queued for `referral` to the provider, from the admin
/// API.
async fn message_to(fleet: &Fleet, referral: &str, provider: &str) -> Value {
    let list = json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries?referral={referral}&endpoint=provider:{provider}"
            ))
            .await,
    )
    .await;
    let messages = list["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{list}");
    json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries/{}",
                messages[0]["id"].as_str().unwrap()
            ))
            .await,
    )
    .await
}

async fn a_referral_waits_in_the_inbox_as_it_would_be_sent_and_a_commit_delivers_it(
    backend: Backend,
) {
    let (fleet, inbox) = start(backend).await;
    let id = fleet.refer("grow-together.bundle.json").await;
    fleet.app.deliver_due().await;
    // Nothing is pushed to an inbox provider.
    assert!(fleet.provider(PROVIDER).received().is_empty());

    let page = inbox.poll("consumer=garden-pc").await;
    assert_eq!(page["done"], true, "{page}");
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    let message = &data[0];
    let queued = message_to(&fleet, &id, PROVIDER).await;
    assert_eq!(message["message_id"], queued["id"], "the same webhook-id");
    assert!(message["message_id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(message["type"], "referral");
    assert_eq!(message["referral"], id.as_str());
    assert_eq!(message["created"], queued["created_at"]);
    assert_eq!(
        message["payload"],
        fleet.expected_payload(&id, PROVIDER).await,
        "the provider's own format, from its mapping"
    );

    // Leased: not handed out again meanwhile, to this consumer or another.
    assert_eq!(
        offsets(&inbox.poll("consumer=garden-pc").await),
        Vec::<i64>::new()
    );
    assert_eq!(
        offsets(&inbox.poll("consumer=other").await),
        Vec::<i64>::new()
    );

    let offset = message["offset"].as_i64().unwrap();
    let response = inbox
        .commit(&json!({"consumer": "garden-pc", "offset": offset}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["committed"], 1);

    // Recorded as a delivery: when, and by which consumer.
    let delivered = message_to(&fleet, &id, PROVIDER).await;
    assert_eq!(delivered["state"], "delivered", "{delivered}");
    let attempts = delivered["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{delivered}");
    assert_eq!(attempts[0]["worker"], "consumer:garden-pc");
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(
        attempts[0]["started_at"].as_str().unwrap(),
        fleet.app.now().to_string()
    );
    // Committed again: nothing more happens; and it is gone for good.
    let again = inbox
        .commit(&json!({"consumer": "garden-pc", "offset": offset}))
        .await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(json(again).await["committed"], 0);
    fleet.app.advance(Duration::from_secs(3600 * 4));
    let page = inbox.poll("consumer=garden-pc&lease=5s").await;
    assert_eq!(offsets(&page), Vec::<i64>::new());
    assert_eq!(page["done"], true);
    // Collected in time: the Task was never nudged.
    fleet.app.deliver_due().await;
    assert!(fleet.task(&id).await["businessStatus"].is_null());
}

async fn leases_lapse_and_the_messages_go_to_whoever_polls_next(backend: Backend) {
    let (fleet, inbox) = start(backend).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(fleet.refer("grow-together.bundle.json").await);
    }
    let first = inbox.poll("consumer=a&limit=2&lease=30s").await;
    assert_eq!(referrals(&first), ids[..2].to_vec(), "in order");
    assert_eq!(first["done"], false, "one more is ready");
    let second = inbox.poll("consumer=b&limit=2&lease=60s").await;
    assert_eq!(referrals(&second), ids[2..].to_vec());
    assert_eq!(second["done"], true);
    let offsets_a = offsets(&first);
    assert!(offsets_a[0] < offsets_a[1] && offsets_a[1] < offsets(&second)[0]);

    // Within the lease, nothing; after it, a's messages go to b.
    fleet.app.advance(Duration::from_secs(29));
    assert!(offsets(&inbox.poll("consumer=b").await).is_empty());
    fleet.app.advance(Duration::from_secs(2));
    let taken_over = inbox.poll("consumer=b").await;
    assert_eq!(offsets(&taken_over), offsets_a);

    // a no longer holds them: its commit is refused and changes nothing.
    let late = inbox
        .commit(&json!({"consumer": "a", "offset": offsets_a[1]}))
        .await;
    assert_eq!(late.status(), StatusCode::CONFLICT);
    let outcome = json(late).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    // b commits up to the second: both of its leases up to there.
    let response = inbox
        .commit(&json!({"consumer": "b", "offset": offsets_a[1]}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["committed"], 2);
    for id in &ids[..2] {
        assert_eq!(message_to(&fleet, id, PROVIDER).await["state"], "delivered");
    }
    // b's lease on the third is untouched by that commit: still held, then
    // handed out again once it lapses.
    assert_eq!(
        message_to(&fleet, &ids[2], PROVIDER).await["state"],
        "pending"
    );
    assert!(offsets(&inbox.poll("consumer=c").await).is_empty());
    fleet.app.advance(Duration::from_secs(30));
    assert_eq!(
        referrals(&inbox.poll("consumer=c").await),
        ids[2..].to_vec()
    );
}

async fn a_later_message_for_a_referral_waits_for_the_earlier_one(backend: Backend) {
    // ActiveLives has a cancellation message; here it collects from its
    // inbox.
    let mappings = crate::status::mappings_with_cancel();
    let dir = mappings.path().to_owned();
    let fleet = Fleet::start_stepped(backend, move |config| {
        config.mappings_dir = dir;
        inbox(config, "activelives");
    })
    .await;
    let token = issue_token(
        &fleet.app.db.url,
        Role::Provider("activelives".parse().unwrap()),
    )
    .await;
    let inbox = Inbox {
        client: client_with(&token),
        base: fleet.app.url("/providers/activelives"),
    };
    let id = fleet.refer("activelives-exercise.json").await;
    let other = fleet.refer("activelives-exercise.json").await;
    // The referrer cancels the first referral: a cancel message follows.
    let mut referral = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    referral["status"] = json!("revoked");
    let response = fleet
        .app
        .client
        .put(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The referral and the other one; not the cancel, which waits behind
    // its referral, for any consumer, leased or lapsed.
    let page = inbox.poll("consumer=a&limit=10").await;
    assert_eq!(referrals(&page), vec![id.clone(), other.clone()]);
    assert_eq!(page["done"], true);
    assert!(offsets(&inbox.poll("consumer=b&limit=10").await).is_empty());
    fleet.app.advance(Duration::from_secs(31));
    let again = inbox.poll("consumer=b&limit=10").await;
    assert_eq!(referrals(&again), vec![id.clone(), other.clone()]);
    let types: Vec<&str> = again["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["referral", "referral"]);

    // Committed: now the cancel comes, in the mapping's format.
    let first = offsets(&again)[0];
    let response = inbox
        .commit(&json!({"consumer": "b", "offset": first}))
        .await;
    assert_eq!(json(response).await["committed"], 1);
    let page = inbox.poll("consumer=b&limit=10").await;
    let data = page["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{page}");
    assert_eq!(data[0]["type"], "cancel");
    assert_eq!(data[0]["referral"], id.as_str());
    assert_eq!(
        data[0]["payload"],
        json!({"referral_ref": id, "cancelled": true, "reason": "revoked"})
    );
    assert!(data[0]["offset"].as_i64().unwrap() > offsets(&again)[1]);
    // Nothing was pushed to ActiveLives.
    fleet.app.deliver_due().await;
    assert!(fleet.provider("activelives").received().is_empty());
}

async fn bad_polls_and_commits_are_refused_clearly(backend: Backend) {
    let (fleet, inbox) = start(backend).await;
    fleet.refer("grow-together.bundle.json").await;
    for (query, needle) in [
        ("", "`consumer` is required"),
        ("consumer=", "`consumer` must be"),
        ("consumer=two%20words", "`consumer` must be"),
        (
            &format!("consumer={}", "x".repeat(65)),
            "`consumer` must be",
        ),
        ("consumer=a&limit=0", "`limit` must be"),
        ("consumer=a&limit=1001", "`limit` must be"),
        ("consumer=a&limit=ten", "`limit` must be"),
        ("consumer=a&lease=0s", "`lease` must be"),
        ("consumer=a&lease=2h", "`lease` must be"),
        ("consumer=a&lease=soon", "`lease` must be"),
        ("consumer=a&offset=3", "unknown query parameter"),
    ] {
        let response = inbox.get(query).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{query}");
        let text = response.text().await.unwrap();
        assert!(text.contains("OperationOutcome"), "{query}: {text}");
        assert!(text.contains(needle), "{query}: {text}");
        for echoed in ["two words", "ten", "soon", "xxxxxxxxxx"] {
            assert!(
                !text.contains(echoed),
                "{query}: the value is not quoted: {text}"
            );
        }
    }
    // Nothing was leased by the refused polls.
    let page = inbox.poll("consumer=a").await;
    let offset = offsets(&page)[0];

    for body in [
        json!({}),
        json!({"consumer": "a"}),
        json!({"consumer": "a", "offset": "1"}),
        json!({"consumer": "a", "offset": offset, "extra": true}),
        json!({"consumer": "no good", "offset": offset}),
    ] {
        let response = inbox.commit(&body).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert!(!response.text().await.unwrap().contains("no good"));
    }
    // An offset never handed out (none such; or not yet handed out), and
    // one handed out to another consumer.
    let never = inbox
        .commit(&json!({"consumer": "a", "offset": offset + 1000}))
        .await;
    assert_eq!(never.status(), StatusCode::BAD_REQUEST);
    assert!(never.text().await.unwrap().contains("never handed out"));
    let later = fleet.refer("grow-together.bundle.json").await;
    let waiting = message_to(&fleet, &later, PROVIDER).await;
    assert_eq!(waiting["state"], "pending");
    let other = inbox
        .commit(&json!({"consumer": "b", "offset": offset}))
        .await;
    assert_eq!(other.status(), StatusCode::CONFLICT);
    // The lease holder's commit still works after all that.
    let ok = inbox
        .commit(&json!({"consumer": "a", "offset": offset}))
        .await;
    assert_eq!(json(ok).await["committed"], 1);
}

async fn only_the_providers_own_token_opens_its_inbox(backend: Backend) {
    let (fleet, inbox) = start(backend).await;
    fleet.refer("grow-together.bundle.json").await;
    let url = format!("{}/inbox?consumer=a", inbox.base);
    let commit_url = format!("{}/inbox/commit", inbox.base);

    let anonymous = fleet.app.anonymous.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    for (who, client) in [("referrer", &fleet.app.client), ("admin", &fleet.app.admin)] {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who}");
        let response = client
            .post(&commit_url)
            .body(json!({"consumer": "a", "offset": 1}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{who} commit");
    }
    // Grow Together's token on another provider's inbox, or an unknown one.
    for other in ["activelives", "no-such-provider"] {
        let response = inbox
            .client
            .get(
                fleet
                    .app
                    .url(&format!("/providers/{other}/inbox?consumer=a")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{other}");
    }
    // A webhook provider has no inbox, even with a token of its own.
    let activelives = client_with(
        &issue_token(
            &fleet.app.db.url,
            Role::Provider("activelives".parse().unwrap()),
        )
        .await,
    );
    let response = activelives
        .get(fleet.app.url("/providers/activelives/inbox?consumer=a"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // The provider's token opens nothing else.
    for path in [
        "/fhir/ServiceRequest?identifier=x",
        "/admin/deliveries",
        "/metrics",
    ] {
        let response = inbox.client.get(fleet.app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // A revoked token opens nothing.
    let store = signpost::store::open(&fleet.app.db.url, 1).await.unwrap();
    for token in store.tokens().await.unwrap() {
        if token.role == "provider" {
            store
                .revoke_token(&token.id, "2026-01-01T00:00:00Z")
                .await
                .unwrap();
        }
    }
    assert_eq!(
        inbox.get("consumer=a").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // And nothing was handed out to anyone.
    let stored = fleet
        .app
        .get("/admin/deliveries?endpoint=provider:grow-together")
        .await;
    let stored = json(stored).await;
    assert_eq!(stored["messages"][0]["state"], "pending");
}

async fn an_inbox_provider_may_report_status_with_its_token(backend: Backend) {
    let (fleet, inbox) = start(backend).await;
    let id = fleet.refer("grow-together.bundle.json").await;
    let body = json!({"ref": id, "outcome": "contacted", "when": "14/03/2026"});
    let send = |client: &reqwest::Client, provider: &str, webhook_id: Option<&str>| {
        let mut request = client
            .post(fleet.app.url(&format!("/providers/{provider}/status")))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(webhook_id) = webhook_id {
            request = request.header("webhook-id", webhook_id);
        }
        request.send()
    };
    let response = send(&inbox.client, PROVIDER, Some("gt-1")).await.unwrap();
    let status = response.status();
    assert_eq!(status, StatusCode::OK, "{}", response.text().await.unwrap());
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "accepted", "{task}");
    assert_eq!(task["businessStatus"]["text"], "contacted");
    // The same webhook-id again is a duplicate, as for signed callbacks.
    let again = send(&inbox.client, PROVIDER, Some("gt-1")).await.unwrap();
    assert!(again.text().await.unwrap().contains("already received"));
    // The referrer is told, as of any change.
    fleet.app.deliver_due().await;
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0].body["entry"][1]["resource"]["status"],
        "accepted"
    );

    // Not another provider's token, not a referrer's; and a webhook
    // provider must sign, token or not.
    let referrer = send(&fleet.app.client, PROVIDER, None).await.unwrap();
    assert_eq!(referrer.status(), StatusCode::FORBIDDEN);
    let activelives = client_with(
        &issue_token(
            &fleet.app.db.url,
            Role::Provider("activelives".parse().unwrap()),
        )
        .await,
    );
    let wrong = send(&activelives, PROVIDER, None).await.unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let unsigned = send(&activelives, "activelives", None).await.unwrap();
    assert_eq!(unsigned.status(), StatusCode::UNAUTHORIZED);
    // And the signature still works for the inbox provider.
    let signed = fleet
        .callback(
            PROVIDER,
            "gt-2",
            &json!({"ref": id, "outcome": "started", "when": "15/03/2026"}),
        )
        .await;
    assert_ne!(signed.status(), StatusCode::UNAUTHORIZED);
}

async fn uncollected_referrals_are_nudged_then_dead_lettered_and_the_referrer_told(
    backend: Backend,
) {
    let (fleet, inbox) = start(backend).await;
    let late = fleet.refer("grow-together.bundle.json").await;
    let never = fleet.refer("grow-together.bundle.json").await;
    fleet.app.deliver_due().await;
    assert!(told(&fleet).is_empty());

    // Just before the nudge, nothing; at it, both referrals' Tasks say so
    // and the referrer is told of each.
    fleet.app.advance(NUDGE - Duration::from_secs(1));
    fleet.app.deliver_due().await;
    assert!(told(&fleet).is_empty());
    fleet.app.advance(Duration::from_secs(1));
    fleet.app.deliver_due().await;
    for id in [&late, &never] {
        let task = fleet.task(id).await;
        assert_eq!(task["status"], "requested");
        assert_eq!(
            task["businessStatus"]["text"],
            "not yet collected by provider"
        );
    }
    let notified = told(&fleet);
    assert_eq!(notified.len(), 2);
    assert_eq!(
        notified[0]["businessStatus"]["text"],
        "not yet collected by provider"
    );
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "signpost_inbox_events_total{provider=\"grow-together\",event=\"not_collected\"} 2"
        ),
        "{metrics}"
    );
    // A nudge is once per referral.
    fleet.app.advance(Duration::from_secs(60));
    fleet.app.deliver_due().await;
    assert_eq!(told(&fleet).len(), 2);

    // One is collected late: its Task says so, the referrer is told.
    let page = inbox.poll("consumer=a&limit=1").await;
    assert_eq!(referrals(&page), vec![late.clone()]);
    let response = inbox
        .commit(&json!({"consumer": "a", "offset": offsets(&page)[0]}))
        .await;
    assert_eq!(json(response).await["committed"], 1);
    assert_eq!(
        fleet.task(&late).await["businessStatus"]["text"],
        "delivered"
    );
    fleet.app.deliver_due().await;
    assert_eq!(told(&fleet).len(), 3);

    // The other never is: at the expiry it is dead-lettered, the Task says
    // delivery failed, the referrer is told, and the inbox is empty.
    fleet.app.advance(EXPIRE - NUDGE);
    fleet.app.deliver_due().await;
    let dead = message_to(&fleet, &never, PROVIDER).await;
    assert_eq!(dead["state"], "dead", "{dead}");
    let attempts = dead["attempt_log"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["not collected", "dead"]);
    assert_eq!(attempts[1]["error"], "not collected within 5h");
    assert_eq!(
        fleet.task(&never).await["businessStatus"]["text"],
        "delivery failed"
    );
    let notified = told(&fleet);
    assert_eq!(notified.len(), 4);
    assert_eq!(notified[3]["businessStatus"]["text"], "delivery failed");
    let page = inbox.poll("consumer=a").await;
    assert!(offsets(&page).is_empty());
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "signpost_inbox_events_total{provider=\"grow-together\",event=\"expired\"} 1"
        ),
        "{metrics}"
    );
    assert_eq!(
        message_to(&fleet, &late, PROVIDER).await["state"],
        "delivered"
    );

    // Replayed, it is back in the inbox, and collecting it mends the Task.
    let replay = fleet
        .app
        .admin
        .post(fleet.app.url(&format!(
            "/admin/deliveries/{}/replay",
            dead["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert!(
        replay.status().is_success(),
        "{}",
        replay.text().await.unwrap()
    );
    let page = inbox.poll("consumer=a").await;
    assert_eq!(referrals(&page), vec![never.clone()]);
    let response = inbox
        .commit(&json!({"consumer": "a", "offset": offsets(&page)[0]}))
        .await;
    assert_eq!(json(response).await["committed"], 1);
    assert_eq!(
        fleet.task(&never).await["businessStatus"]["text"],
        "delivered"
    );
}

/// The portal's hook: a referral opened by a user counts as collected.
async fn a_referral_collected_another_way_leaves_the_inbox(backend: Backend) {
    let (fleet, inbox) = start(backend).await;
    let opened = fleet.refer("grow-together.bundle.json").await;
    let waiting = fleet.refer("grow-together.bundle.json").await;
    fleet.app.advance(NUDGE);
    fleet.app.deliver_due().await;
    assert_eq!(
        fleet.task(&opened).await["businessStatus"]["text"],
        "not yet collected by provider"
    );
    // Leased to a consumer meanwhile: it is collected all the same.
    assert_eq!(offsets(&inbox.poll("consumer=a&limit=1").await).len(), 1);

    let mut config = test_config(&fleet.app.db.url);
    inbox_config(&mut config);
    let domain = signpost::startup::domain(config).await.unwrap();
    let id: ReferralId = opened.parse().unwrap();
    let collected = domain
        .referrals
        .referral_collected(&id, "portal:user-7")
        .await
        .unwrap();
    assert_eq!(collected, 1);
    assert_eq!(
        domain
            .referrals
            .referral_collected(&id, "portal:user-7")
            .await
            .unwrap(),
        0,
        "once"
    );
    let message = message_to(&fleet, &opened, PROVIDER).await;
    assert_eq!(message["state"], "delivered");
    let attempts = message["attempt_log"].as_array().unwrap();
    assert_eq!(attempts.last().unwrap()["worker"], "portal:user-7");
    assert_eq!(
        fleet.task(&opened).await["businessStatus"]["text"],
        "delivered"
    );
    // The consumer's commit of it now changes nothing; the other referral
    // is still waiting for it.
    assert_eq!(
        message_to(&fleet, &waiting, PROVIDER).await["state"],
        "pending"
    );
    // A webhook provider's referral is not the inbox's business.
    let pushed = fleet.refer("activelives-exercise.json").await;
    let none = domain
        .referrals
        .referral_collected(&pushed.parse().unwrap(), "portal:user-7")
        .await
        .unwrap();
    assert_eq!(none, 0);
}

/// The configuration the fleet runs with, for a second handle on its
/// database (the portal's side).
/// Reports count an inbox provider's collection as delivery: a commit, and
/// a referral collected another way (the portal), each at its own time; a
/// referral still waiting is not delivered.
async fn reports_count_a_collected_referral_as_delivered(backend: Backend) {
    let (fleet, inbox) = start_with(backend, |config| {
        config.report_suppression = signpost::reports::suppression::Suppression::None;
    })
    .await;
    // The portal's hook runs on a domain of its own, on the system clock:
    // the stopped clock starts there too.
    fleet
        .app
        .set_now(signpost::domain::Clock::now(&signpost::domain::SystemClock));
    let from = fleet.app.now().to_string()[..10].to_owned();
    let committed = fleet.refer("grow-together.bundle.json").await;
    let opened = fleet.refer("grow-together.bundle.json").await;
    let _waiting = fleet.refer("grow-together.bundle.json").await;
    // Opened in the portal at once (within the hour)...
    let mut config = test_config(&fleet.app.db.url);
    inbox_config(&mut config);
    let domain = signpost::startup::domain(config).await.unwrap();
    let id: ReferralId = opened.parse().unwrap();
    assert_eq!(
        domain
            .referrals
            .referral_collected(&id, "portal:user-7")
            .await
            .unwrap(),
        1
    );
    // ... and committed from the inbox 2 h later.
    fleet.app.advance(Duration::from_secs(2 * 3600));
    let page = inbox.poll("consumer=garden-pc").await;
    assert_eq!(referrals(&page)[0], committed);
    let first = offsets(&page)[0];
    let response = inbox
        .commit(&json!({"consumer": "garden-pc", "offset": first}))
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let to = fleet
        .app
        .now()
        .after(Duration::from_secs(86_400))
        .to_string()[..10]
        .to_owned();
    let (_, rows) = crate::reports::csv(
        &fleet.app.admin,
        &fleet,
        &format!("from={from}&to={to}&by=provider"),
    )
    .await;
    let row = crate::reports::row(&rows, &[PROVIDER]);
    // 3 referred, 2 collected (after 0 h and 2 h): the median is the 1st
    // of 2, the 90th percentile the 2nd.
    assert_eq!(
        crate::reports::cells(
            &row,
            &[
                "referred",
                "delivered",
                "median_hours_to_delivery",
                "p90_hours_to_delivery"
            ]
        ),
        ["3", "2", "0", "2"]
    );
}

fn inbox_config(config: &mut Config) {
    inbox(config, PROVIDER);
}

on_both_backends!(
    a_referral_waits_in_the_inbox_as_it_would_be_sent_and_a_commit_delivers_it,
    leases_lapse_and_the_messages_go_to_whoever_polls_next,
    a_later_message_for_a_referral_waits_for_the_earlier_one,
    bad_polls_and_commits_are_refused_clearly,
    only_the_providers_own_token_opens_its_inbox,
    an_inbox_provider_may_report_status_with_its_token,
    uncollected_referrals_are_nudged_then_dead_lettered_and_the_referrer_told,
    a_referral_collected_another_way_leaves_the_inbox,
    reports_count_a_collected_referral_as_delivered,
);
