//! HTTPS and mutual TLS, over real TLS connections: a practice system
//! authenticates with its client certificate instead of a token; a
//! certificate from another CA, or naming nobody, gets nowhere.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;
use signpost::config::Tls;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb, json, valid, with_new_identifier},
};

/// A certificate authority for the tests.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    /// A leaf certificate for `names` (PEM certificate, PEM key).
    fn issue(&self, names: &[&str], purpose: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.0).unwrap();
        (certificate.pem(), key.serialize_pem())
    }
}

/// The files Signpost and its clients need.
struct Pki {
    dir: tempfile::TempDir,
    server_ca: Ca,
    clients_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            server_ca: Ca::new("Signpost test server CA"),
            clients_ca: Ca::new("Signpost test client CA"),
        };
        let (certificate, key) = pki.server_ca.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        pki.write("server.pem", &certificate);
        pki.write("server.key", &key);
        pki.write("clients-ca.pem", &pki.clients_ca.0.pem());
        pki
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    fn tls(&self, require_client_certificate: bool) -> Tls {
        Tls {
            certificate: self.path("server.pem"),
            private_key: self.path("server.key"),
            client_ca: Some(self.path("clients-ca.pem")),
            require_client_certificate,
        }
    }

    /// A client trusting the server's CA, presenting `identity` if given.
    fn client(&self, identity: Option<(String, String)>) -> reqwest::Client {
        let trust =
            reqwest::Certificate::from_pem(self.server_ca.0.pem().as_bytes()).expect("CA PEM");
        let mut builder = reqwest::Client::builder().tls_certs_only([trust]);
        if let Some((certificate, key)) = identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(format!("{certificate}{key}").as_bytes()).unwrap(),
            );
        }
        builder.build().unwrap()
    }
}

const RIVERSIDE_NAME: &str = "riverside.practice.example.nhs.uk";

async fn spawn(backend: Backend, pki: &Pki, require_client_certificate: bool) -> TestApp {
    let tls = pki.tls(require_client_certificate);
    TestApp::spawn_on(TestDb::fresh(backend).await, move |config| {
        config.tls = Some(tls);
        config
            .referrers
            .get_mut("riverside-surgery")
            .unwrap()
            .client_certificate_names = vec![RIVERSIDE_NAME.into()];
    })
    .await
}

async fn a_client_certificate_authenticates_its_referrer(backend: Backend) {
    let pki = Pki::new();
    let app = spawn(backend, &pki, false).await;
    assert!(app.address.starts_with("https://"), "{}", app.address);
    let riverside = pki.client(Some(
        pki.clients_ca
            .issue(&[RIVERSIDE_NAME], ExtendedKeyUsagePurpose::ClientAuth),
    ));

    // Riverside's certificate, no token: it creates and reads its referral.
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = riverside
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("https://"), "{location}");
    let id = json(created).await["id"].as_str().unwrap().to_owned();
    let read = riverside
        .get(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    // A referrer's certificate is not an operator's.
    let admin = riverside
        .get(app.url("/admin/endpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);

    // Without a certificate, bearer tokens still work on the same port, and
    // no credential at all is 401.
    let token_client = {
        let trust = reqwest::Certificate::from_pem(pki.server_ca.0.pem().as_bytes()).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            "authorization",
            format!("Bearer {}", app.referrer_token).parse().unwrap(),
        );
        reqwest::Client::builder()
            .tls_certs_only([trust])
            .default_headers(headers)
            .build()
            .unwrap()
    };
    let by_token = token_client
        .get(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(by_token.status(), StatusCode::OK);
    let nobody = pki
        .client(None)
        .get(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}

async fn certificates_that_name_nobody_or_come_from_elsewhere_get_nowhere(backend: Backend) {
    let pki = Pki::new();
    let app = spawn(backend, &pki, false).await;
    let task_search = app.url("/fhir/Task?_lastUpdated=ge2020-01-01");

    // Verified, but its name is no referrer's: not authenticated.
    let stranger = pki.client(Some(pki.clients_ca.issue(
        &["stranger.example.nhs.uk"],
        ExtendedKeyUsagePurpose::ClientAuth,
    )));
    let answer = stranger.get(&task_search).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // A wildcard does not stand for the referrers under it.
    let wildcard = pki.client(Some(pki.clients_ca.issue(
        &["*.practice.example.nhs.uk"],
        ExtendedKeyUsagePurpose::ClientAuth,
    )));
    let answer = wildcard.get(&task_search).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);

    // Riverside's name, issued by a CA Signpost does not trust: the
    // handshake fails.
    let forger = Ca::new("Someone else's CA");
    let forged = pki.client(Some(
        forger.issue(&[RIVERSIDE_NAME], ExtendedKeyUsagePurpose::ClientAuth),
    ));
    let refused = forged.get(&task_search).send().await;
    assert!(refused.is_err(), "a forged certificate got {refused:?}");
    app.stop().await;
}

async fn a_required_client_certificate_is_checked_in_the_handshake(backend: Backend) {
    let pki = Pki::new();
    let app = spawn(backend, &pki, true).await;
    let refused = pki.client(None).get(app.url("/fhir/metadata")).send().await;
    assert!(refused.is_err(), "no certificate got {refused:?}");
    let riverside = pki.client(Some(
        pki.clients_ca
            .issue(&[RIVERSIDE_NAME], ExtendedKeyUsagePurpose::ClientAuth),
    ));
    let answer = riverside
        .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    app.stop().await;
}

/// Start-up refuses a key that does not match the certificate, naming the
/// setting.
#[tokio::test]
async fn a_mismatched_key_stops_start_up() {
    let pki = Pki::new();
    let (_, other_key) = pki
        .server_ca
        .issue(&["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    pki.write("other.key", &other_key);
    let tls = Tls {
        private_key: pki.path("other.key"),
        ..pki.tls(false)
    };
    let error = signpost::security::tls::server_config(&tls).unwrap_err();
    assert!(
        format!("{error:#}").contains("`tls.private_key`"),
        "{error:#}"
    );
    let missing = Tls {
        certificate: Path::new("/nonexistent/server.pem").into(),
        ..pki.tls(false)
    };
    let error = signpost::security::tls::server_config(&missing).unwrap_err();
    assert!(
        format!("{error:#}").contains("`tls.certificate`"),
        "{error:#}"
    );
}

on_both_backends!(
    a_client_certificate_authenticates_its_referrer,
    certificates_that_name_nobody_or_come_from_elsewhere_get_nowhere,
    a_required_client_certificate_is_checked_in_the_handshake,
);
