//! Echo probes in paths and methods: a marker wherever a route takes a
//! value, in unknown routes, and as an unknown method.

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
    let mut all = Vec::new();
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
        (Referrer, Method::GET, "/fhir/Subscription/{m}"),
        (Referrer, Method::GET, "/fhir/Subscription/{m}/$status"),
        (Referrer, Method::GET, "/fhir/Subscription/{m}/$events"),
        (Anonymous, Method::GET, "/fhir/MessageDefinition/{m}"),
        (Admin, Method::GET, "/admin/deliveries/{m}"),
        (Admin, Method::POST, "/admin/deliveries/{m}/replay"),
        (Admin, Method::POST, "/admin/deliveries/{m}/retry"),
        (Admin, Method::POST, "/admin/endpoints/{m}/enable"),
        (Admin, Method::POST, "/admin/endpoints/provider:{m}/enable"),
        (Admin, Method::GET, "/admin/{m}"),
        (Provider, Method::POST, "/providers/{m}/status"),
        (Anonymous, Method::GET, "/{m}"),
        (Anonymous, Method::GET, "/health/{m}"),
    ] {
        let marker = markers.next();
        let path = template
            .replace("{m}", &marker)
            .replace("{id}", &targets.referral);
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
    all
}

async fn no_answer_quotes_a_path_or_method(backend: Backend) {
    let (app, targets) = echo_app(backend).await;
    let probes = probes(&targets, &mut Markers::default());
    assert_no_echo(&app, &probes).await;
}

on_both_backends!(no_answer_quotes_a_path_or_method);
