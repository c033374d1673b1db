//! HTTPS and mutual TLS, over real TLS connections: a practice system
//! authenticates with its client certificate instead of a token; a
//! certificate from another CA, or naming nobody, gets nowhere.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, RevocationReason, RevokedCertParams,
    SerialNumber,
};
use reqwest::StatusCode;
use signpost::{config::Tls, security::tokens::Role};

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb, issue_token, json, valid, with_new_identifier},
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
            client_crl: None,
            admin_certificate_names: vec![OPERATOR_NAME.into()],
        }
    }

    /// A client trusting the server's CA, presenting `identity` if given.
    fn client(&self, identity: Option<(String, String)>) -> reqwest::Client {
        self.client_with_token(identity, None)
    }

    /// A client trusting the server's CA, presenting `identity` and
    /// sending `token` if given.
    fn client_with_token(
        &self,
        identity: Option<(String, String)>,
        token: Option<&str>,
    ) -> reqwest::Client {
        let trust =
            reqwest::Certificate::from_pem(self.server_ca.0.pem().as_bytes()).expect("CA PEM");
        let mut builder = reqwest::Client::builder().tls_certs_only([trust]);
        if let Some(token) = token {
            let mut headers = reqwest::header::HeaderMap::new();
            headers.insert("authorization", format!("Bearer {token}").parse().unwrap());
            builder = builder.default_headers(headers);
        }
        if let Some((certificate, key)) = identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(format!("{certificate}{key}").as_bytes()).unwrap(),
            );
        }
        builder.build().unwrap()
    }
}

const RIVERSIDE_NAME: &str = "riverside.practice.example.nhs.uk";
const HILLSIDE_NAME: &str = "hillside.practice.example.nhs.uk";
const OPERATOR_NAME: &str = "operator.signpost.example.nhs.uk";
const HILLSIDE: &str = "hillside-practice";

async fn spawn(backend: Backend, pki: &Pki, require_client_certificate: bool) -> TestApp {
    let tls = pki.tls(require_client_certificate);
    spawn_with(backend, tls).await
}

/// Signpost on `tls`, with Riverside's certificate name and a second
/// referrer, Hillside, with its own.
async fn spawn_with(backend: Backend, tls: Tls) -> TestApp {
    TestApp::spawn_on(TestDb::fresh(backend).await, move |config| {
        config.tls = Some(tls);
        let riverside = config.referrers.get_mut("riverside-surgery").unwrap();
        riverside.client_certificate_names = vec![RIVERSIDE_NAME.into()];
        let mut hillside = riverside.clone();
        hillside.id = HILLSIDE.parse().unwrap();
        hillside.client_certificate_names = vec![HILLSIDE_NAME.into()];
        hillside.ods_codes = vec!["B82002".into()];
        config.referrers.insert(hillside.id.clone(), hillside);
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

/// Issue #21 finding 5: over mutual TLS a presented certificate must name
/// the token's holder. A referrer's certificate with another referrer's
/// token, or with an admin token, is refused; so is a certificate that
/// names nobody; an admin token goes with no certificate or with one of
/// `tls.admin_certificate_names`. The audit trail records the token and the
/// certificate.
async fn a_certificate_and_a_token_must_name_the_same_caller(backend: Backend) {
    let pki = Pki::new();
    let app = spawn(backend, &pki, false).await;
    let hillside_token = issue_token(&app.db.url, Role::Referrer(HILLSIDE.parse().unwrap())).await;
    let admin_token = issue_token(&app.db.url, Role::Admin).await;
    let issue = |name: &str| {
        pki.clients_ca
            .issue(&[name], ExtendedKeyUsagePurpose::ClientAuth)
    };
    let tasks = app.url("/fhir/Task?_lastUpdated=ge2020-01-01");
    let status = |client: reqwest::Client, url: String| async move {
        client.get(url).send().await.unwrap().status()
    };

    // Riverside's certificate with Riverside's token: Riverside.
    let riverside = pki.client_with_token(Some(issue(RIVERSIDE_NAME)), Some(&app.referrer_token));
    let marker = uuid::Uuid::new_v4().to_string();
    let answer = riverside
        .get(&tasks)
        .header("x-request-id", &marker)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // Riverside's certificate with Hillside's token, or an admin's: refused.
    let mixed = pki.client_with_token(Some(issue(RIVERSIDE_NAME)), Some(&hillside_token));
    assert_eq!(status(mixed, tasks.clone()).await, StatusCode::FORBIDDEN);
    let riverside_admin = pki.client_with_token(Some(issue(RIVERSIDE_NAME)), Some(&admin_token));
    assert_eq!(
        status(riverside_admin, app.url("/admin/endpoints")).await,
        StatusCode::FORBIDDEN
    );
    // A certificate from the trusted CA naming nobody, with an admin
    // token: refused.
    let stranger_admin =
        pki.client_with_token(Some(issue("stranger.example.nhs.uk")), Some(&admin_token));
    assert_eq!(
        status(stranger_admin, app.url("/admin/endpoints")).await,
        StatusCode::FORBIDDEN
    );
    // The operator's certificate with an admin token, and an admin token
    // without a certificate (certificates are optional here): admin.
    let operator = pki.client_with_token(Some(issue(OPERATOR_NAME)), Some(&admin_token));
    assert_eq!(
        status(operator, app.url("/admin/endpoints")).await,
        StatusCode::OK
    );
    let bare_admin = pki.client_with_token(None, Some(&admin_token));
    assert_eq!(
        status(bare_admin, app.url("/admin/endpoints")).await,
        StatusCode::OK
    );
    // The operator's certificate alone is nobody.
    let operator_alone = pki.client(Some(issue(OPERATOR_NAME)));
    assert_eq!(
        status(operator_alone, app.url("/admin/endpoints")).await,
        StatusCode::UNAUTHORIZED
    );

    // Riverside's audit row names its token and its certificate.
    let token_id = app.referrer_token.split('_').nth(1).unwrap().to_owned();
    let admin = pki.client_with_token(None, Some(&admin_token));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let record = loop {
        let records = admin
            .get(app.url("/admin/audit?actor=referrer:riverside-surgery&limit=100"))
            .send()
            .await
            .unwrap();
        let records = json(records).await;
        if let Some(record) = records["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["request_id"] == marker.as_str())
        {
            break record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no audit record for the request"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let credential = record["credential"].as_str().unwrap_or_default();
    assert!(
        credential.contains(&format!("token:{token_id}"))
            && credential.contains(&format!("certificate:{RIVERSIDE_NAME}")),
        "{record}"
    );
    app.stop().await;
}

/// Issue #21 finding 5: when client certificates are required, a
/// certificate that names no referrer gets no admin access with an admin
/// token.
async fn a_required_certificate_naming_nobody_gets_no_admin_access(backend: Backend) {
    let pki = Pki::new();
    let tls = Tls {
        admin_certificate_names: Vec::new(),
        ..pki.tls(true)
    };
    let app = spawn_with(backend, tls).await;
    let admin_token = issue_token(&app.db.url, Role::Admin).await;
    let stranger_admin = pki.client_with_token(
        Some(pki.clients_ca.issue(
            &["stranger.example.nhs.uk"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )),
        Some(&admin_token),
    );
    let answer = stranger_admin
        .get(app.url("/admin/endpoints"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    app.stop().await;
}

/// Issue #21 finding 6: a certificate whose names belong to two referrers
/// stands for neither (it used to act as whichever name came first).
async fn a_certificate_naming_two_referrers_is_nobody(backend: Backend) {
    let pki = Pki::new();
    let app = spawn(backend, &pki, false).await;
    for names in [
        [RIVERSIDE_NAME, HILLSIDE_NAME],
        [HILLSIDE_NAME, RIVERSIDE_NAME],
    ] {
        let both = pki.client(Some(
            pki.clients_ca
                .issue(&names, ExtendedKeyUsagePurpose::ClientAuth),
        ));
        let answer = both
            .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "{names:?}");
    }
    app.stop().await;
}

/// Issue #21 finding 5: `tls.client_crl` revokes a client certificate; the
/// handshake refuses it, and other certificates from the CA still work.
async fn a_revoked_client_certificate_is_refused(backend: Backend) {
    let pki = Pki::new();
    let issue = |serial: u64| {
        let mut params = CertificateParams::new(vec![RIVERSIDE_NAME.to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &pki.clients_ca.0).unwrap();
        (certificate.pem(), key.serialize_pem())
    };
    let revoked = issue(4242);
    let valid = issue(4343);
    let now = rcgen::date_time_ymd(2026, 1, 1);
    let crl = CertificateRevocationListParams {
        this_update: now,
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: vec![RevokedCertParams {
            serial_number: SerialNumber::from(4242u64),
            revocation_time: now,
            reason_code: Some(RevocationReason::KeyCompromise),
            invalidity_date: None,
        }],
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(&pki.clients_ca.0)
    .unwrap();
    pki.write("clients.crl", &crl.pem().unwrap());
    let tls = Tls {
        client_crl: Some(pki.path("clients.crl")),
        ..pki.tls(false)
    };
    let app = spawn_with(backend, tls).await;
    let tasks = app.url("/fhir/Task?_lastUpdated=ge2020-01-01");
    let refused = pki.client(Some(revoked)).get(&tasks).send().await;
    assert!(refused.is_err(), "a revoked certificate got {refused:?}");
    let answer = pki.client(Some(valid)).get(&tasks).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    app.stop().await;
}

/// Issue #21 finding 6: over HTTP/2 (TLS, ALPN `h2`) without
/// `public_base_url`, `Location` names the address the client reached
/// (from `:authority`), not a made-up one.
async fn location_over_http2_names_the_address_reached(backend: Backend) {
    let pki = Pki::new();
    let tls = pki.tls(false);
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, move |config| {
        config.tls = Some(tls);
        config.public_base_url = None;
    })
    .await;
    let client = pki.client_with_token(None, Some(&app.referrer_token));
    let (referral, identifier) = with_new_identifier(valid("activelives-exercise.json"));
    let created = client
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.version(), reqwest::Version::HTTP_2);
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/fhir/ServiceRequest/", app.address)),
        "{location} (reached at {})",
        app.address
    );
    let encoded: String = url::form_urlencoded::byte_serialize(identifier.as_bytes()).collect();
    let read = client
        .get(app.url(&format!("/fhir/ServiceRequest?identifier={encoded}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.version(), reqwest::Version::HTTP_2);
    let text = read.text().await.unwrap();
    assert!(text.contains(&app.address), "{text}");
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
    a_certificate_and_a_token_must_name_the_same_caller,
    a_required_certificate_naming_nobody_gets_no_admin_access,
    a_certificate_naming_two_referrers_is_nobody,
    a_revoked_client_certificate_is_refused,
    location_over_http2_names_the_address_reached,
);
