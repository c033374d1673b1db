//! Characters a client may send that a reader may not see (issue 14,
//! finding 9): a non-ASCII `If-Match`, C1 controls, bidi and zero-width
//! characters.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, json, valid, with_new_identifier},
};

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
    a_non_ascii_if_match_is_refused_and_nothing_changes,
    c1_control_characters_are_refused_like_other_controls,
);
