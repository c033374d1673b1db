//! FHIRPath: parse (compile) and evaluate measured separately, for the kind
//! of expressions a provider mapping runs against one referral.

use std::{hint::black_box, path::PathBuf, sync::LazyLock};

use serde_json::Value;
use signpost::fhirpath::{Env, Expr};

fn main() {
    divan::main();
}

const EXPRESSIONS: &[&str] = &[
    "identifier.where(system = 'https://fhir.riverside-surgery.example/Id/referral').value.first()",
    "subject.resolve().identifier.where(system = 'https://fhir.nhs.uk/Id/nhs-number').value",
    "subject.resolve().name.where(use = 'official').given.join(' ')",
    "subject.resolve().telecom.where(system = 'phone' and use = 'mobile').value.first()",
    "code.coding.where(system = %sct).code in ('390893007' | '1082621000000103')",
    "reasonCode.coding.where(system = 'http://snomed.info/sct').display",
    "iif(priority = 'urgent', 'P1', 'P3')",
    "authoredOn.toDateTime() < now() and subject.resolve().birthDate.toDate() < today()",
];

static REFERRAL: LazyLock<Value> = LazyLock::new(|| {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/referrals/valid/activelives-exercise.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("fixture JSON")
});

#[divan::bench(args = EXPRESSIONS)]
fn parse(src: &str) -> Expr {
    Expr::parse(black_box(src)).expect("parses")
}

#[divan::bench(args = EXPRESSIONS)]
fn evaluate(bencher: divan::Bencher, src: &str) {
    let expr = Expr::parse(src).expect("parses");
    let referral = &*REFERRAL;
    let env = Env::new().with_resource(referral);
    bencher.bench_local(|| expr.evaluate(black_box(referral), &env).expect("evaluates"));
}

/// All expressions against one referral, as one mapping run would.
#[divan::bench]
fn evaluate_all(bencher: divan::Bencher) {
    let exprs: Vec<Expr> = EXPRESSIONS
        .iter()
        .map(|s| Expr::parse(s).expect("parses"))
        .collect();
    let referral = &*REFERRAL;
    let env = Env::new().with_resource(referral);
    bencher.bench_local(|| {
        exprs
            .iter()
            .map(|e| {
                e.evaluate(black_box(referral), &env)
                    .expect("evaluates")
                    .len()
            })
            .sum::<usize>()
    });
}
