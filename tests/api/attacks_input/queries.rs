//! Echo probes in query strings: every read, with markers as parameter
//! names and values.

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
    let Targets {
        referral: id,
        task,
        message,
        subscription,
    } = targets;
    let mut all = Vec::new();
    let reads = [
        (Referrer, "/fhir/ServiceRequest".to_owned()),
        (Referrer, format!("/fhir/ServiceRequest/{id}")),
        (Referrer, "/fhir/Task".to_owned()),
        (Referrer, format!("/fhir/Task/{task}")),
        (Referrer, "/fhir/metadata".to_owned()),
        (Referrer, format!("/fhir/Subscription/{subscription}")),
        (
            Referrer,
            format!("/fhir/Subscription/{subscription}/$status"),
        ),
        (
            Referrer,
            format!("/fhir/Subscription/{subscription}/$events"),
        ),
        (Anonymous, "/fhir/MessageDefinition".to_owned()),
        (Admin, "/admin/deliveries".to_owned()),
        (Admin, format!("/admin/deliveries/{message}")),
        (Admin, "/admin/callbacks".to_owned()),
        (Admin, "/admin/audit".to_owned()),
        (Admin, "/admin/endpoints".to_owned()),
        (Admin, "/admin/mappings".to_owned()),
        (Admin, "/metrics".to_owned()),
        (Anonymous, "/health/live".to_owned()),
        (Anonymous, "/health/ready".to_owned()),
    ];
    for (who, path) in reads {
        for params in [
            "{m}={m}",
            "identifier={m}",
            "identifier={m}|{m}",
            "focus=ServiceRequest/{m}",
            "focus={m}",
            "_lastUpdated={m}",
            "_lastUpdated=ge{m}",
            "status={m}",
            "endpoint={m}",
            "_count={m}",
            "limit={m}",
            "_format={m}",
            "eventsSinceNumber={m}",
            "content={m}",
        ] {
            let marker = markers.next();
            let query = params.replace("{m}", &marker);
            all.push(probe(who, Method::GET, format!("{path}?{query}"), marker));
        }
    }
    // A provider named in the query of a dry run.
    let referral = crate::support::helpers::with_new_identifier(crate::support::helpers::valid(
        "activelives-exercise.json",
    ))
    .0;
    let marker = markers.next();
    let mut p = probe(
        Referrer,
        Method::POST,
        format!("/fhir/ServiceRequest/$translate?provider={marker}"),
        marker,
    );
    p.body = crate::support::probes::fhir(&referral);
    all.push(p);
    all
}

async fn no_answer_quotes_a_query_string(backend: Backend) {
    let (app, targets) = echo_app(backend).await;
    let probes = probes(&targets, &mut Markers::default());
    assert!(probes.len() > 200, "{} probes", probes.len());
    assert_no_echo(&app, &probes).await;
}

on_both_backends!(no_answer_quotes_a_query_string);
