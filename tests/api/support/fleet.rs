//! A Signpost with real webhook receivers standing in for every mapped
//! providers and the referrer, and a delivery schedule short enough for
//! tests (retries after 100 ms, 200 ms, …).

use std::{collections::BTreeMap, time::Duration};

use serde_json::Value;
use signpost::config::{Config, ProviderDelivery};
use url::Url;

use crate::{
    support::helpers::{
        Backend, MANIFEST_DIR, TestApp, TestDb, json, kit, test_secret, with_new_identifier,
    },
    support::receiver::Receiver,
};

pub const REFERRER: &str = "riverside-surgery";

/// How long tests wait for deliveries.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Signpost and its receivers.
pub struct Fleet {
    pub app: TestApp,
    pub providers: BTreeMap<String, Receiver>,
    pub referrer: Receiver,
}

/// Short retries, short timeouts, quick polling.
pub fn fast_delivery(config: &mut Config) {
    let ms = Duration::from_millis;
    config.delivery.retry_schedule = vec![ms(100), ms(200), ms(300), ms(400), ms(500), ms(600)];
    config.delivery.connect_timeout = ms(500);
    config.delivery.request_timeout = ms(1000);
    config.delivery.lease = ms(3000);
    config.delivery.poll_interval = ms(100);
}

/// Point `config`'s endpoints at the receivers: every provider becomes a
/// webhook provider (the sample's inbox provider too), pushed to its
/// receiver.
pub fn aim(config: &mut Config, providers: &BTreeMap<String, Receiver>, referrer: &Receiver) {
    for (id, receiver) in providers {
        let provider = config.providers.get_mut(id.as_str()).unwrap();
        provider.delivery = ProviderDelivery::Webhook {
            intake_url: Url::parse(&receiver.url_for(&format!("/{id}/intake"))).unwrap(),
        };
        // (The receivers are on this machine.)
        provider.allow_private_network = true;
    }
    config.referrers.get_mut(REFERRER).unwrap().callback_url =
        Url::parse(&referrer.url_for("/notifications")).unwrap();
}

/// Receivers for every endpoint, each with its test secret.
pub async fn receivers() -> (BTreeMap<String, Receiver>, Receiver) {
    let mut providers = BTreeMap::new();
    for id in kit::mapped_providers() {
        providers.insert(
            id.clone(),
            Receiver::start(&test_secret(&format!("provider:{id}"))).await,
        );
    }
    let referrer = Receiver::start(&test_secret(&format!("referrer:{REFERRER}"))).await;
    (providers, referrer)
}

/// A configuration file for the real binary: the repository's schemas and
/// mappings, the receivers as endpoints (their secrets in files), and a
/// short retry schedule.
pub fn write_config(
    dir: &std::path::Path,
    providers: &std::collections::BTreeMap<String, Receiver>,
    referrer: &Receiver,
) -> std::path::PathBuf {
    let mut text = format!(
        "schemas_dir = \"{MANIFEST_DIR}/schemas\"\nmappings_dir = \"{MANIFEST_DIR}/mappings\"\n\
         [delivery]\nretry_schedule = [\"100ms\", \"200ms\", \"500ms\", \"1s\", \"2s\", \"5s\"]\n\
         request_timeout = \"2s\"\nlease = \"5s\"\npoll_interval = \"100ms\"\n\
         [limits]\nrequests_per_second = 1000000.0\nburst = 1000000\n"
    );
    for (id, receiver) in providers {
        let secret = dir.join(format!("{id}.whsec"));
        std::fs::write(&secret, test_secret(&format!("provider:{id}"))).unwrap();
        text.push_str(&format!(
            "[providers.{id}]\nintake_url = \"{}\"\nallow_insecure_http = true\nallow_private_network = true\nsecret_file = \"{}\"\n",
            receiver.url_for(&format!("/{id}/intake")),
            secret.display()
        ));
    }
    let secret = dir.join("referrer.whsec");
    std::fs::write(&secret, test_secret(&format!("referrer:{REFERRER}"))).unwrap();
    text.push_str(&format!(
        "[referrers.{REFERRER}]\nods_codes = [\"A81001\"]\ncallback_url = \"{}\"\nallow_insecure_http = true\nallow_private_network = true\nsecret_file = \"{}\"\n",
        referrer.url_for("/notifications"),
        secret.display()
    ));
    let path = dir.join("signpost.toml");
    std::fs::write(&path, text).unwrap();
    path
}

impl Fleet {
    pub async fn start(backend: Backend) -> Fleet {
        Self::start_with(backend, |_| {}).await
    }

    /// Start with a further adjustment of the configuration.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Fleet {
        let (providers, referrer) = receivers().await;
        Self::start_on(TestDb::fresh(backend).await, providers, referrer, adjust).await
    }

    /// Start with time stopped and delivery stepped by the test
    /// (`fleet.app.deliver_due()`, `fleet.app.step()`), after a further
    /// adjustment of the configuration.
    pub async fn start_stepped(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Fleet {
        let (providers, referrer) = receivers().await;
        let app = TestApp::spawn_stepped_on(TestDb::fresh(backend).await, |config| {
            fast_delivery(config);
            aim(config, &providers, &referrer);
            adjust(config);
        })
        .await;
        Fleet {
            app,
            providers,
            referrer,
        }
    }

    pub async fn start_on(
        db: TestDb,
        providers: BTreeMap<String, Receiver>,
        referrer: Receiver,
        adjust: impl FnOnce(&mut Config),
    ) -> Fleet {
        let app = TestApp::spawn_on(db, |config| {
            fast_delivery(config);
            aim(config, &providers, &referrer);
            adjust(config);
        })
        .await;
        Fleet {
            app,
            providers,
            referrer,
        }
    }

    pub fn provider(&self, id: &str) -> &Receiver {
        &self.providers[id]
    }

    /// Post a referral fixture under a new identifier; returns Signpost's
    /// id for it.
    pub async fn refer(&self, fixture: &str) -> String {
        let (referral, _) = with_new_identifier(crate::support::helpers::valid(fixture));
        self.refer_body(&referral).await
    }

    pub async fn refer_body(&self, referral: &Value) -> String {
        let bundle = referral["resourceType"] == "Bundle";
        let path = if bundle {
            "/fhir"
        } else {
            "/fhir/ServiceRequest"
        };
        let response = self.app.post_json(path, referral).await;
        // A transaction answers 200 with a 201 inside for the referral.
        assert_eq!(
            response.status(),
            if bundle { 200 } else { 201 },
            "referral accepted"
        );
        let body = json(response).await;
        if bundle {
            let location = body["entry"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["response"]["location"].as_str())
                .find(|l| l.contains("ServiceRequest/"))
                .unwrap()
                .to_owned();
            location
                .split("ServiceRequest/")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned()
        } else {
            body["id"].as_str().unwrap().to_owned()
        }
    }

    /// Wait until no message for the referral is pending (a receiver has
    /// its request a moment before Signpost records the answer).
    pub async fn settled(&self, referral_id: &str) {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let pending = json(
                self.app
                    .get(&format!(
                        "/admin/deliveries?referral={referral_id}&state=pending"
                    ))
                    .await,
            )
            .await;
            if pending["messages"].as_array().is_some_and(Vec::is_empty) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still pending: {pending}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The current Task of a referral.
    pub async fn task(&self, referral_id: &str) -> Value {
        let found = json(
            self.app
                .get(&format!("/fhir/Task?focus=ServiceRequest/{referral_id}"))
                .await,
        )
        .await;
        found["entry"][0]["resource"].clone()
    }

    /// The payload the mapping makes of the stored referral, as the
    /// provider must receive it.
    pub async fn expected_payload(&self, referral_id: &str, provider: &str) -> Value {
        let stored = json(
            self.app
                .get(&format!("/fhir/ServiceRequest/{referral_id}"))
                .await,
        )
        .await;
        let response = self
            .app
            .post_json(
                &format!("/fhir/ServiceRequest/$translate?provider={provider}"),
                &stored,
            )
            .await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        // The dry run stands in "DRY-RUN" for Signpost's id.
        serde_json::from_str(&text.replace("DRY-RUN", referral_id)).unwrap()
    }

    /// POST a status callback body to Signpost as `provider`, signed with
    /// its secret (or with `secret` when given), with this webhook-id.
    pub async fn callback(
        &self,
        provider: &str,
        webhook_id: &str,
        body: &Value,
    ) -> reqwest::Response {
        let secret = test_secret(&format!("provider:{provider}"));
        // Signed at the app's time (its stopped clock, when stepped).
        self.callback_signed(
            provider,
            webhook_id,
            body,
            &secret,
            self.app.now().as_secs(),
        )
        .await
    }

    pub async fn callback_signed(
        &self,
        provider: &str,
        webhook_id: &str,
        body: &Value,
        secret: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        let raw = body.to_string();
        self.app
            .client
            .post(self.app.url(&format!("/providers/{provider}/status")))
            .header("content-type", "application/json")
            .header("webhook-id", webhook_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                crate::support::receiver::sign(secret, webhook_id, timestamp, raw.as_bytes()),
            )
            .body(raw)
            .send()
            .await
            .expect("callback sent")
    }
}
