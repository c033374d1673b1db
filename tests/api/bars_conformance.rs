//! The BaRS conformance kit: the decision table as a data-driven matrix
//! (each row: headers, version, event, reason, status, category and the
//! rest of the envelope → the answer), and the official examples a
//! receiver must refuse, each with its expected answer. The known quirks
//! of the official examples are listed here, in [`QUIRKS`], with how
//! Signpost treats each.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::{
    bars::{Ids, bars_referral, fresh},
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb, json, real},
};

/// The known quirks of the official BaRS examples, in one place.
pub const QUIRKS: [(&str, &str); 9] = [
    (
        "Q1 two eventCoding systems (message-events-bars in requests, message-event-servicerequest in the API's HTTP-response examples)",
        "tolerated: both are read as the BaRS event code system",
    ),
    (
        "Q2 destination.endpoint spelt http(s)://fhir.nhs.uk/Id/dos-service-id|N, [ODSCode]:[DoSId] or urn:uuid:…",
        "tolerated where it carries the service id; urn:uuid carries none and is refused",
    ),
    (
        "Q3 error-code system spelt …/Codesystem/http-error-codes in the official OperationOutcomes",
        "Signpost answers with the canonical …/CodeSystem/…; the kit compares the two ignoring that case",
    ),
    (
        "Q4 SERVREQ02 cancels to entered-in-error with reason delete and no definition, although the IG says a cancellation is always update",
        "tolerated (decision-table row 'delete + entered-in-error')",
    ),
    (
        "Q5 POST-success.json has a receiver reference ':uuid:…' with no 'urn'",
        "a response example, not a request; such a reference resolves to nothing and would be refused",
    ),
    (
        "Q6 the receiver Organization of the official requests has no ODS code",
        "tolerated: then the service id in destination.endpoint alone names the receiver",
    ),
    (
        "Q7 Bundle.meta.versionId spelt 1.0.0-alpha, 1.1.0-alpha, 1.0.0-beta",
        "every major version 1 is understood",
    ),
    (
        "Q8 the sender Organization of the booking and validation-response examples has no ODS code",
        "not tolerated: Signpost attributes every referral to its sending organisation (400 required)",
    ),
    (
        "Q9 the ODS identifier system spelt https://fhir.nhs.uk/id/ods-organization-code (lower-case id)",
        "tolerated: the system is compared without regard to case",
    ),
];

/// One row of the matrix.
struct Row {
    name: &'static str,
    /// Headers to set (`None`: leave the header out).
    headers: &'static [(&'static str, Option<&'static str>)],
    edit: fn(&mut Value),
    /// Status, issue code, REC code; `(200, "", "")` for acceptance.
    expect: (u16, &'static str, &'static str),
}

fn header(message: &mut Value) -> &mut Value {
    &mut message["entry"][0]["resource"]
}

fn service_request(message: &mut Value) -> &mut Value {
    &mut message["entry"][1]["resource"]
}

fn category(message: &mut Value, code: &str) {
    service_request(message)["category"][1]["coding"][0]["code"] = json!(code);
}

const CANCELLED: &str =
    "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled";
const BAD_GUID: &str = "not-a-guid";
const OTHER_ORG: &str = "eyJyZXNvdXJjZVR5cGUiOiJPcmdhbml6YXRpb24iLCJpZGVudGlmaWVyIjpbeyJzeXN0ZW0iOiJodHRwczovL2ZoaXIubmhzLnVrL0lkL29kcy1vcmdhbml6YXRpb24tY29kZSIsInZhbHVlIjoiWjk5OTk5In1dfQ==";
const OWN_ORG: &str = "eyJyZXNvdXJjZVR5cGUiOiJPcmdhbml6YXRpb24iLCJpZGVudGlmaWVyIjpbeyJzeXN0ZW0iOiJodHRwczovL2ZoaXIubmhzLnVrL0lkL29kcy1vcmdhbml6YXRpb24tY29kZSIsInZhbHVlIjoiQTgxMDAxIn1dfQ==";
const OTHER_TARGET: &str = "eyJ2YWx1ZSI6IjEyMzQ1Iiwic3lzdGVtIjoidXJuOmlldGY6cmZjOjM5ODYifQ==";
const OWN_TARGET: &str = "eyJ2YWx1ZSI6IjIwMDAwOTkwMDEiLCJzeXN0ZW0iOiJ1cm46aWV0ZjpyZmM6Mzk4NiJ9";

const ACCEPTED: (u16, &str, &str) = (200, "", "");
const WORKFLOW: (u16, &str, &str) = (400, "invariant", "REC_BAD_REQUEST");

fn same(_: &mut Value) {}

/// The decision table and the envelope checks around it, in BaRS's order.
const MATRIX: &[Row] = &[
    Row {
        name: "standard new referral",
        headers: &[],
        edit: same,
        expect: ACCEPTED,
    },
    Row {
        name: "no X-Request-Id",
        headers: &[("x-request-id", None)],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "X-Request-Id not a GUID",
        headers: &[("x-request-id", Some(BAD_GUID))],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "no X-Correlation-Id",
        headers: &[("x-correlation-id", None)],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "X-Correlation-Id not a GUID",
        headers: &[("x-correlation-id", Some(BAD_GUID))],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "no versionId",
        headers: &[],
        edit: |m| {
            m["meta"].as_object_mut().unwrap().remove("versionId");
        },
        expect: (400, "invariant", "REC_BAD_REQUEST"),
    },
    Row {
        name: "versionId 2.0.0",
        headers: &[],
        edit: |m| m["meta"]["versionId"] = json!("2.0.0"),
        expect: (422, "not-supported", "REC_UNPROCESSABLE_ENTITY"),
    },
    Row {
        name: "versionId 1.1.0-alpha (Q7)",
        headers: &[],
        edit: |m| m["meta"]["versionId"] = json!("1.1.0-alpha"),
        expect: ACCEPTED,
    },
    Row {
        name: "not a message Bundle",
        headers: &[],
        edit: |m| m["type"] = json!("transaction"),
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "MessageHeader not first",
        headers: &[],
        edit: |m| m["entry"].as_array_mut().unwrap().swap(0, 1),
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "destination another service",
        headers: &[],
        edit: |m| {
            header(m)["destination"][0]["endpoint"] =
                json!("https://fhir.nhs.uk/Id/dos-service-id|111111111")
        },
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "destination [ODSCode]:[DoSId] (Q2)",
        headers: &[],
        edit: |m| header(m)["destination"][0]["endpoint"] = json!("X9S1P:2000099001"),
        expect: ACCEPTED,
    },
    Row {
        name: "destination http dos-service-id (Q2)",
        headers: &[],
        edit: |m| {
            header(m)["destination"][0]["endpoint"] =
                json!("http://fhir.nhs.uk/Id/dos-service-id|2000099001")
        },
        expect: ACCEPTED,
    },
    Row {
        name: "destination urn:uuid (Q2)",
        headers: &[],
        edit: |m| header(m)["destination"][0]["endpoint"] = json!("urn:uuid:2000099001"),
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "destination another receiver ODS",
        headers: &[],
        edit: |m| {
            let last = m["entry"].as_array().unwrap().len() - 1;
            m["entry"][last]["resource"]["identifier"][0]["value"] = json!("RND");
        },
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "receiver without ODS code (Q6)",
        headers: &[],
        edit: |m| {
            let last = m["entry"].as_array().unwrap().len() - 1;
            m["entry"][last]["resource"]
                .as_object_mut()
                .unwrap()
                .remove("identifier");
        },
        expect: ACCEPTED,
    },
    Row {
        name: "no source.endpoint",
        headers: &[],
        edit: |m| {
            header(m)["source"]
                .as_object_mut()
                .unwrap()
                .remove("endpoint");
        },
        expect: (400, "required", "REC_BAD_REQUEST"),
    },
    Row {
        name: "sender of another referrer",
        headers: &[],
        edit: |m| m["entry"][5]["resource"]["identifier"][0]["value"] = json!("Z99999"),
        expect: (403, "forbidden", "REC_FORBIDDEN"),
    },
    Row {
        name: "NHSD-End-User-Organisation of another referrer",
        headers: &[("nhsd-end-user-organisation", Some(OTHER_ORG))],
        edit: same,
        expect: (403, "forbidden", "REC_FORBIDDEN"),
    },
    Row {
        name: "NHSD-End-User-Organisation of the sender",
        headers: &[("nhsd-end-user-organisation", Some(OWN_ORG))],
        edit: same,
        expect: ACCEPTED,
    },
    Row {
        name: "NHSD-End-User-Organisation not Base64 JSON",
        headers: &[("nhsd-end-user-organisation", Some("e30K%%"))],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "NHSD-Target-Identifier another service",
        headers: &[("nhsd-target-identifier", Some(OTHER_TARGET))],
        edit: same,
        expect: (400, "invalid", "REC_BAD_REQUEST"),
    },
    Row {
        name: "NHSD-Target-Identifier this service",
        headers: &[("nhsd-target-identifier", Some(OWN_TARGET))],
        edit: same,
        expect: ACCEPTED,
    },
    Row {
        name: "definition unknown",
        headers: &[],
        edit: |m| {
            header(m)["definition"] = json!(
                "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-validation"
            )
        },
        expect: (400, "not-supported", "REC_BAD_REQUEST"),
    },
    Row {
        name: "definition missing on a new referral",
        headers: &[],
        edit: |m| {
            header(m).as_object_mut().unwrap().remove("definition");
        },
        expect: (400, "required", "REC_BAD_REQUEST"),
    },
    Row {
        name: "BaRS referral definition",
        headers: &[],
        edit: |m| {
            header(m)["definition"] = json!(
                "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral"
            )
        },
        expect: ACCEPTED,
    },
    Row {
        name: "event message-event-servicerequest system (Q1)",
        headers: &[],
        edit: |m| {
            header(m)["eventCoding"]["system"] =
                json!("https://fhir.nhs.uk/CodeSystem/message-event-servicerequest")
        },
        expect: ACCEPTED,
    },
    Row {
        name: "event in another system",
        headers: &[],
        edit: |m| header(m)["eventCoding"]["system"] = json!("https://example.org/events"),
        expect: WORKFLOW,
    },
    Row {
        name: "event booking-request",
        headers: &[],
        edit: |m| header(m)["eventCoding"]["code"] = json!("booking-request"),
        expect: WORKFLOW,
    },
    Row {
        name: "event servicerequest-response",
        headers: &[],
        edit: |m| header(m)["eventCoding"]["code"] = json!("servicerequest-response"),
        expect: WORKFLOW,
    },
    Row {
        name: "reason update, status active",
        headers: &[],
        edit: |m| header(m)["reason"]["coding"][0]["code"] = json!("update"),
        expect: WORKFLOW,
    },
    Row {
        name: "reason new, status revoked",
        headers: &[],
        edit: |m| service_request(m)["status"] = json!("revoked"),
        expect: WORKFLOW,
    },
    Row {
        name: "reason new, status draft",
        headers: &[],
        edit: |m| service_request(m)["status"] = json!("draft"),
        expect: WORKFLOW,
    },
    Row {
        name: "category validation",
        headers: &[],
        edit: |m| category(m, "validation"),
        expect: WORKFLOW,
    },
    Row {
        name: "category booking",
        headers: &[],
        edit: |m| category(m, "booking"),
        expect: WORKFLOW,
    },
    Row {
        name: "no BaRS category",
        headers: &[],
        edit: |m| {
            service_request(m)["category"]
                .as_array_mut()
                .unwrap()
                .truncate(1);
        },
        expect: WORKFLOW,
    },
    Row {
        name: "update, revoked, cancellation definition: unknown referral",
        headers: &[],
        edit: |m| {
            header(m)["reason"]["coding"][0]["code"] = json!("update");
            header(m)["definition"] = json!(CANCELLED);
            service_request(m)["status"] = json!("revoked");
        },
        expect: (404, "not-found", "REC_NOT_FOUND"),
    },
    Row {
        name: "update, revoked, referral definition",
        headers: &[],
        edit: |m| {
            header(m)["reason"]["coding"][0]["code"] = json!("update");
            service_request(m)["status"] = json!("revoked");
        },
        expect: (400, "invariant", "REC_BAD_REQUEST"),
    },
    Row {
        name: "delete, entered-in-error, no definition (Q4): unknown referral",
        headers: &[],
        edit: |m| {
            header(m)["reason"]["coding"][0]["code"] = json!("delete");
            header(m).as_object_mut().unwrap().remove("definition");
            service_request(m)["status"] = json!("entered-in-error");
        },
        expect: (404, "not-found", "REC_NOT_FOUND"),
    },
    Row {
        name: "no Consent (MessageDefinition 1..*)",
        headers: &[],
        edit: |m| {
            m["entry"].as_array_mut().unwrap().remove(6);
            service_request(m)
                .as_object_mut()
                .unwrap()
                .remove("supportingInfo");
        },
        expect: (400, "required", "REC_BAD_REQUEST"),
    },
    Row {
        name: "two Patients (MessageDefinition 1..1)",
        headers: &[],
        edit: |m| {
            let mut extra = m["entry"][2].clone();
            extra["fullUrl"] = json!("urn:uuid:0b8f4d1e-6a51-4c3e-9f0a-5d2c7e1b9aff");
            m["entry"].as_array_mut().unwrap().push(extra);
        },
        expect: (400, "invariant", "REC_BAD_REQUEST"),
    },
    Row {
        name: "not valid R4 (birthDate)",
        headers: &[],
        edit: |m| m["entry"][2]["resource"]["birthDate"] = json!("14/06/1958"),
        expect: (400, "value", "REC_BAD_REQUEST"),
    },
    Row {
        name: "NHS number with a wrong check digit (referral profile)",
        headers: &[],
        edit: |m| m["entry"][2]["resource"]["identifier"][0]["value"] = json!("9990124834"),
        expect: (400, "value", "REC_BAD_REQUEST"),
    },
    Row {
        name: "no provider takes the service",
        headers: &[],
        edit: |m| service_request(m)["code"]["coding"][0]["code"] = json!("183524004"),
        expect: (422, "not-supported", "REC_UNPROCESSABLE_ENTITY"),
    },
];

/// Send a row; `(status, issue code, REC code)`.
async fn send(app: &TestApp, message: &Value, ids: &Ids, row: &Row) -> (u16, String, String) {
    let mut headers: BTreeMap<&str, Option<String>> = BTreeMap::from([
        ("x-request-id", Some(ids.request.clone())),
        ("x-correlation-id", Some(ids.correlation.clone())),
    ]);
    for (name, value) in row.headers {
        headers.insert(name, value.map(str::to_owned));
    }
    let mut request = app
        .client
        .post(app.url("/fhir/$process-message"))
        .header("content-type", "application/fhir+json");
    for (name, value) in &headers {
        if let Some(value) = value {
            request = request.header(*name, value);
        }
    }
    let response = request.body(message.to_string()).send().await.unwrap();
    let status = response.status().as_u16();
    let outcome = json(response).await;
    let issue = &outcome["issue"][0];
    if status != 200 {
        assert_eq!(
            issue["details"]["coding"][0]["system"],
            "https://fhir.nhs.uk/CodeSystem/http-error-codes",
            "{}: {outcome}",
            row.name
        );
        let diagnostics = issue["diagnostics"].as_str().unwrap_or_default();
        assert!(
            diagnostics.starts_with("X9S1P was unable to process the request: "),
            "{}: {outcome}",
            row.name
        );
        assert!(
            !diagnostics.contains("Fairbrother") && !diagnostics.contains("999012483"),
            "{}: no patient data in an answer: {outcome}",
            row.name
        );
    }
    let codes = |field: &Value| field.as_str().unwrap_or_default().to_owned();
    if status == 200 {
        (status, String::new(), String::new())
    } else {
        (
            status,
            codes(&issue["code"]),
            codes(&issue["details"]["coding"][0]["code"]),
        )
    }
}

async fn the_decision_table_matrix_answers_every_row_as_bars_says(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let mut wrong = Vec::new();

    for row in MATRIX {
        let (mut message, sr_url) = fresh(bars_referral());
        (row.edit)(&mut message);
        let ids = Ids::new();

        // Act: the row, and its retry with the same ids.
        let first = send(&app, &message, &ids, row).await;
        let retry = send(&app, &message, &ids, row).await;

        // Assert
        let expected = (
            row.expect.0,
            row.expect.1.to_owned(),
            row.expect.2.to_owned(),
        );
        if first != expected {
            wrong.push(format!("{}: {first:?}, expected {expected:?}", row.name));
        }
        let stored = app
            .search_identifier(format!("urn:ietf:rfc:3986|{sr_url}"))
            .await["total"]
            .clone();
        if first.0 == 200 {
            // A retry of a processed request is the duplicate a sender
            // treats as success; the referral is stored once.
            if retry != (409, "duplicate".into(), "REC_CONFLICT".into()) {
                wrong.push(format!("{}: retry answered {retry:?}", row.name));
            }
            if stored != 1 {
                wrong.push(format!("{}: {stored} referrals stored", row.name));
            }
        } else {
            // A refusal is answered the same again, and nothing is stored.
            if retry != first {
                wrong.push(format!(
                    "{}: retry answered {retry:?}, first {first:?}",
                    row.name
                ));
            }
            if stored != 0 {
                wrong.push(format!("{}: refused but {stored} stored", row.name));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "rows answered wrongly:\n{}",
        wrong.join("\n")
    );
}

/// The official examples a referral receiver must refuse, with the answer
/// and why. Signpost is configured as the examples' receiver (service id
/// `111111111`), and the sample referrer also sends for their sender
/// (`RND`).
const OFFICIAL: &[(&str, (u16, &str, &str), &str)] = &[
    (
        "bars/api-1.4.0-process-message-validation-request-bundle.json",
        (400, "not-supported", "REC_BAD_REQUEST"),
        "a validation request (111/999 to CAS): its definition is not one a referral receiver supports",
    ),
    (
        "bars/api-1.4.0-process-message-booking-request-bundle.json",
        (400, "required", "REC_BAD_REQUEST"),
        "a booking request whose sender Organization has no ODS code (Q8)",
    ),
    (
        "bars/api-1.4.0-process-message-validation-response-bundle.json",
        (400, "invalid", "REC_BAD_REQUEST"),
        "a validation response, addressed to another receiver (the Organization RND)",
    ),
    (
        "bars/api-1.4.0-process-message-validation-http-response-bundle.json",
        (400, "invariant", "REC_BAD_REQUEST"),
        "an HTTP-response example: it has no Bundle.meta.versionId",
    ),
    (
        "bars/api-1.4.0-servicerequest-read-success.json",
        (400, "invalid", "REC_BAD_REQUEST"),
        "a ServiceRequest, not a message Bundle (and not valid R4)",
    ),
];

async fn the_official_examples_are_answered_as_a_receiver_must(backend: Backend) {
    // Arrange
    let db = TestDb::fresh(backend).await;
    let app = TestApp::spawn_on(db, |config| {
        let bars = config.bars.as_mut().unwrap();
        bars.service_id = "111111111".into();
        config
            .referrers
            .values_mut()
            .next()
            .unwrap()
            .ods_codes
            .push("RND".into());
    })
    .await;
    let mut wrong = Vec::new();

    for (file, expected, why) in OFFICIAL {
        let row = Row {
            name: file,
            headers: &[],
            edit: same,
            expect: *expected,
        };
        // Act
        let answer = send(&app, &real(file), &Ids::new(), &row).await;

        // Assert
        let expected = (expected.0, expected.1.to_owned(), expected.2.to_owned());
        if answer != expected {
            wrong.push(format!("{file} ({why}): {answer:?}, expected {expected:?}"));
        }
    }
    let quirks: Vec<String> = QUIRKS
        .iter()
        .map(|(q, how)| format!("{q}: {how}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{}\n(known quirks of the official examples:\n{})",
        wrong.join("\n"),
        quirks.join("\n")
    );
}

/// Signpost's answers have the shape of the official receiver
/// OperationOutcomes: the same elements, the REC code in `details` (Q3:
/// the official system is spelt `Codesystem`).
async fn answers_have_the_shape_of_the_official_operation_outcomes(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let official = real("bars/oo-rec/409-REC_CONFLICT-duplicate.json");
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    crate::bars::process(&app, &message, &ids).await;

    // Act
    let ours = json(crate::bars::process(&app, &message, &ids).await).await;

    // Assert
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&ours), keys(&official));
    assert_eq!(keys(&ours["issue"][0]), keys(&official["issue"][0]));
    let system = |v: &Value| {
        v["issue"][0]["details"]["coding"][0]["system"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase()
    };
    assert_eq!(system(&ours), system(&official));
    for field in ["severity", "code"] {
        assert_eq!(ours["issue"][0][field], official["issue"][0][field]);
    }
    assert_eq!(
        ours["issue"][0]["details"]["coding"][0]["code"],
        official["issue"][0]["details"]["coding"][0]["code"]
    );
}

on_both_backends!(
    the_decision_table_matrix_answers_every_row_as_bars_says,
    the_official_examples_are_answered_as_a_receiver_must,
    answers_have_the_shape_of_the_official_operation_outcomes,
);
