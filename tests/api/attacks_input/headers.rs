//! Echo probes in headers: markers in every header a client sets, on a
//! read, a write and a callback, and as bearer tokens.

use reqwest::Method;

use crate::{
    on_both_backends,
    support::{
        helpers::Backend,
        probes::{Markers, Probe, Targets, Who, assert_no_echo, echo_app, probe},
    },
};

fn probes(targets: &Targets, markers: &mut Markers) -> Vec<Probe> {
    use Who::*;
    let id = &targets.referral;
    let subscription = &targets.subscription;
    let mut all = Vec::new();
    let get = |who: Who, path: &str| (who, Method::GET, path.to_owned());
    for (who, method, path) in [
        get(Referrer, &format!("/fhir/ServiceRequest/{id}")),
        (Referrer, Method::POST, "/fhir/ServiceRequest".to_owned()),
        (Referrer, Method::PUT, format!("/fhir/ServiceRequest/{id}")),
        (
            Referrer,
            Method::POST,
            format!("/fhir/Subscription/{subscription}/$events"),
        ),
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
    all
}

async fn no_answer_quotes_a_header(backend: Backend) {
    let (app, targets) = echo_app(backend).await;
    let probes = probes(&targets, &mut Markers::default());
    assert_no_echo(&app, &probes).await;
}

on_both_backends!(no_answer_quotes_a_header);
