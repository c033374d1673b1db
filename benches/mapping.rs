//! Mapping one referral: routing (performer, then every mapping's
//! `route.accepts`), rendering the provider's FPML template and checking the
//! payload against the provider's JSON Schema. Also the whole intake check:
//! validation, canonical form, routing and mapping.
//!
//! Run: `cargo bench --bench mapping`

use std::{path::Path, sync::LazyLock};

use serde_json::Value;
use signpost::{mapping::MappingSet, referrals::checks::dry_run, validation::Validator};

fn main() {
    divan::main();
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

static MAPPINGS: LazyLock<MappingSet> = LazyLock::new(|| {
    MappingSet::load(&root().join("mappings"), &root().join("schemas")).expect("mappings")
});
static VALIDATOR: LazyLock<Validator> =
    LazyLock::new(|| Validator::load(&root().join("schemas")).expect("schemas"));

fn read(relative: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(root().join(relative)).unwrap()).unwrap()
}

const CANONICAL: [&str; 3] = [
    "mappings/tests/activelives/activelives-exercise.input.json",
    "mappings/tests/community-connect/community-connect-loneliness.input.json",
    "mappings/tests/grow-together/grow-together-performer-ref.input.json",
];

/// Route + render + output-schema check, on a referral in canonical form.
#[divan::bench(args = CANONICAL)]
fn route_and_map(bencher: divan::Bencher, input: &str) {
    let referral = read(input);
    LazyLock::force(&MAPPINGS);
    bencher.bench(|| {
        let mapping = MAPPINGS.route(divan::black_box(&referral)).unwrap();
        mapping.translate(&referral).unwrap()
    });
}

/// The parts of `route_and_map`, to see where the time goes.
#[divan::bench(args = CANONICAL)]
fn route_only(bencher: divan::Bencher, input: &str) {
    let referral = read(input);
    LazyLock::force(&MAPPINGS);
    bencher.bench(|| MAPPINGS.route(divan::black_box(&referral)).unwrap());
}

#[divan::bench(args = CANONICAL)]
fn render_only(bencher: divan::Bencher, input: &str) {
    let referral = read(input);
    let mapping = MAPPINGS.route(&referral).unwrap();
    bencher.bench(|| mapping.render(divan::black_box(&referral)).unwrap());
}

const SUBMITTED: [&str; 2] = [
    "tests/fixtures/referrals/valid/activelives-exercise.json",
    "tests/fixtures/referrals/valid/community-connect-debt-housing.bundle.json",
];

/// Everything intake checks before storing: FHIR schema, referral profile,
/// canonical form, routing, mapping and the provider schema.
#[divan::bench(args = SUBMITTED)]
fn validate_route_and_map(bencher: divan::Bencher, input: &str) {
    let referral = read(input);
    LazyLock::force(&MAPPINGS);
    LazyLock::force(&VALIDATOR);
    // Intake owns the parsed body; copying it is not part of the work.
    bencher
        .with_inputs(|| referral.clone())
        .bench_values(|referral| {
            dry_run(&VALIDATOR, &MAPPINGS, None, None, referral, None).unwrap()
        });
}
