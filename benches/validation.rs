//! Validation cost of one referral: the structural layer (official FHIR R4
//! schema) plus the referral profile, for a bare ServiceRequest with
//! contained resources and for a transaction Bundle; and the structural
//! layer alone, which is what `benches/compare/validate.py` measures Python's
//! `jsonschema` doing with the same schema and documents.
//!
//! Run: `cargo bench --bench validation`

use std::{path::Path, sync::LazyLock};

use serde_json::Value;
use signpost::validation::{Submission, Validator};

fn main() {
    divan::main();
}

static VALIDATOR: LazyLock<Validator> = LazyLock::new(|| {
    Validator::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")).expect("schemas")
});

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/referrals/valid")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[divan::bench]
fn bare_service_request(bencher: divan::Bencher) {
    let referral = fixture("activelives-exercise.json");
    LazyLock::force(&VALIDATOR);
    bencher.bench(|| {
        VALIDATOR
            .check_referral(Submission::ServiceRequest(divan::black_box(&referral)))
            .is_ok()
    });
}

#[divan::bench]
fn transaction_bundle(bencher: divan::Bencher) {
    let bundle = fixture("community-connect-debt-housing.bundle.json");
    LazyLock::force(&VALIDATOR);
    bencher.bench(|| {
        VALIDATOR
            .check_referral(Submission::Bundle {
                bundle: divan::black_box(&bundle),
                service_request: 0,
            })
            .is_ok()
    });
}

/// Parsing the body is part of every intake, so it is measured too.
#[divan::bench]
fn parse_and_validate_bare_service_request(bencher: divan::Bencher) {
    let text = fixture("activelives-exercise.json").to_string();
    LazyLock::force(&VALIDATOR);
    bencher.bench(|| {
        let value: Value = serde_json::from_str(divan::black_box(&text)).unwrap();
        VALIDATOR
            .check_referral(Submission::ServiceRequest(&value))
            .is_ok()
    });
}

/// The structural layer alone (no profile), for the comparison with Python's
/// `jsonschema` in `benches/compare/`.
#[divan::bench]
fn structure_only_bare_service_request(bencher: divan::Bencher) {
    let referral = fixture("activelives-exercise.json");
    LazyLock::force(&VALIDATOR);
    bencher.bench(|| {
        VALIDATOR
            .check_structure(divan::black_box(&referral))
            .is_empty()
    });
}

#[divan::bench]
fn structure_only_transaction_bundle(bencher: divan::Bencher) {
    let bundle = fixture("community-connect-debt-housing.bundle.json");
    LazyLock::force(&VALIDATOR);
    bencher.bench(|| {
        VALIDATOR
            .check_structure(divan::black_box(&bundle))
            .is_empty()
    });
}
