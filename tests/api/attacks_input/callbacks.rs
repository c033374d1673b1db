//! Echo probes in provider callbacks: signed status bodies with markers in
//! each field, and bodies that are wrong in themselves.

use reqwest::Method;

use crate::{
    on_both_backends,
    support::{
        helpers::Backend,
        probes::{Markers, Probe, Targets, Who, assert_no_echo, echo_app, probe},
    },
};

fn probes(targets: &Targets, markers: &mut Markers) -> Vec<Probe> {
    let id = targets.referral.as_str();
    let mut all = Vec::new();
    for (path, template) in [
        (
            "/providers/activelives/status",
            r#"{"referral_ref": "{m}", "event": "booked"}"#,
        ),
        (
            "/providers/activelives/status",
            r#"{"referral_ref": "{id}", "event": "{m}"}"#,
        ),
        (
            "/providers/activelives/status",
            r#"{"referral_ref": "{id}", "event": "booked", "{m}": "{m}"}"#,
        ),
        (
            "/providers/activelives/status",
            r#"{"referral_ref": "{id}", "event": "booked", "event_time": "{m}"}"#,
        ),
        (
            "/providers/activelives/status",
            r#"{"referral_ref": ["{m}"], "event": "booked"}"#,
        ),
        ("/providers/activelives/status", r#"{"referral_ref": "{m}"#),
        ("/providers/activelives/status", r#"["{m}"]"#),
        ("/providers/activelives/status", "{m}"),
        (
            "/providers/community-connect/status",
            r#"{"case_id": "{m}", "state": "{m}"}"#,
        ),
        (
            "/providers/grow-together/status",
            r#"{"ref": "{m}", "status": "{m}"}"#,
        ),
    ] {
        let marker = markers.next();
        let mut p = probe(Who::Provider, Method::POST, path.into(), marker.clone());
        let body = template.replace("{m}", &marker).replace("{id}", id);
        p.body = Some(("application/json", body.into_bytes()));
        all.push(p);
    }
    all
}

async fn no_answer_quotes_a_callback_body(backend: Backend) {
    let (app, targets) = echo_app(backend).await;
    let probes = probes(&targets, &mut Markers::default());
    assert_no_echo(&app, &probes).await;
}

on_both_backends!(no_answer_quotes_a_callback_body);
