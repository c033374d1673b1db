//! Focused tests of the engine's own rules; the official suite runs in
//! `tests/fhirpath_suite.rs`.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{Env, EvalError, Expr};

fn eval(expr: &str, input: &Value) -> Vec<Value> {
    let env = Env::new().with_resource(input);
    Expr::parse(expr)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .evaluate(input, &env)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn bundle() -> Value {
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0f6c1b2e-4a7d-4a51-9a59-3c1e2d3f4a5b",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "sr",
                    "subject": { "reference": "urn:uuid:9b2c1d3e-1111-4a51-9a59-3c1e2d3f4a5b" },
                    "requester": { "reference": "Practitioner/dr-patel" },
                    "performer": [{ "reference": "https://fhir.example.org/Organization/org1" }],
                    "supportingInfo": [{ "reference": "#consent" }],
                    "contained": [{ "resourceType": "Consent", "id": "consent", "status": "active" }]
                }
            },
            {
                "fullUrl": "urn:uuid:9b2c1d3e-1111-4a51-9a59-3c1e2d3f4a5b",
                "resource": { "resourceType": "Patient", "id": "p1", "gender": "female" }
            },
            {
                "fullUrl": "https://fhir.example.org/Practitioner/dr-patel",
                "resource": { "resourceType": "Practitioner", "id": "dr-patel", "name": [{ "family": "Patel" }] }
            },
            {
                "fullUrl": "https://fhir.example.org/Organization/org1",
                "resource": { "resourceType": "Organization", "id": "org1", "name": "Riverside" }
            }
        ]
    })
}

#[test]
fn resolve_finds_a_bundle_entry_by_urn_uuid_full_url() {
    // Arrange
    let b = bundle();
    // Act
    let got = eval(
        "entry.resource.ofType(ServiceRequest).subject.resolve().gender",
        &b,
    );
    // Assert
    assert_eq!(got, vec![json!("female")]);
}

#[test]
fn resolve_finds_a_bundle_entry_by_absolute_full_url() {
    let b = bundle();
    let got = eval(
        "entry.resource.ofType(ServiceRequest).performer.resolve().name",
        &b,
    );
    assert_eq!(got, vec![json!("Riverside")]);
}

#[test]
fn resolve_finds_a_bundle_entry_by_relative_type_and_id() {
    let b = bundle();
    let got = eval(
        "entry.resource.ofType(ServiceRequest).requester.resolve().name.family",
        &b,
    );
    assert_eq!(got, vec![json!("Patel")]);
}

#[test]
fn resolve_finds_a_contained_resource_of_the_enclosing_entry() {
    let b = bundle();
    let got = eval("entry.resource.supportingInfo.resolve().status", &b);
    assert_eq!(got, vec![json!("active")]);
}

#[test]
fn resolve_finds_contained_resources_from_inside_a_sibling_contained_resource() {
    // Arrange: a contained resource referring to another contained one.
    let sr = json!({
        "resourceType": "ServiceRequest",
        "contained": [
            { "resourceType": "Patient", "id": "patient", "gender": "female" },
            { "resourceType": "Consent", "id": "consent", "patient": { "reference": "#patient" } }
        ],
        "subject": { "reference": "#patient" },
        "supportingInfo": [{ "reference": "#consent" }]
    });
    // Act / Assert
    assert_eq!(eval("subject.resolve().gender", &sr), vec![json!("female")]);
    assert_eq!(
        eval("supportingInfo.resolve().patient.resolve().gender", &sr),
        vec![json!("female")]
    );
    assert_eq!(
        eval("subject.reference.resolve().id", &sr),
        vec![json!("patient")]
    );
}

#[test]
fn resolve_of_an_unknown_reference_is_empty() {
    let b = bundle();
    assert!(
        eval(
            "entry.resource.ofType(ServiceRequest).subject.reference.replace('9b', 'xx').resolve()",
            &b
        )
        .is_empty()
    );
    let lone =
        json!({ "resourceType": "ServiceRequest", "subject": { "reference": "Patient/nowhere" } });
    assert!(eval("subject.resolve()", &lone).is_empty());
}

#[test]
fn resolve_uses_the_environment_resource_when_evaluating_a_sub_node() {
    // Arrange: evaluate on the ServiceRequest inside the Bundle, with the
    // Bundle as %resource, as the mapping layer does.
    let b = bundle();
    let sr = &b["entry"][0]["resource"];
    let env = Env::new().with_resource(&b);
    // Act
    let got = Expr::parse("subject.resolve().gender")
        .unwrap()
        .evaluate(sr, &env)
        .unwrap();
    // Assert
    assert_eq!(got, vec![json!("female")]);
}

#[test]
fn choice_elements_are_found_by_their_value_x_name_and_typed_by_suffix() {
    let obs = json!({
        "resourceType": "Observation",
        "valueQuantity": { "value": 72.5, "unit": "kg", "code": "kg" },
        "effectivePeriod": { "start": "2026-01-01" },
        "component": [{ "valueString": "a" }, { "valueCodeableConcept": { "text": "b" } }]
    });
    assert_eq!(eval("value.unit", &obs), vec![json!("kg")]);
    assert_eq!(eval("value.is(Quantity)", &obs), vec![json!(true)]);
    assert_eq!(eval("value is Period", &obs), vec![json!(false)]);
    assert_eq!(
        eval("effective.ofType(Period).start", &obs),
        vec![json!("2026-01-01")]
    );
    assert_eq!(
        eval("component.value.ofType(string)", &obs),
        vec![json!("a")]
    );
    assert_eq!(
        eval("component.value.ofType(CodeableConcept).text", &obs),
        vec![json!("b")]
    );
    // The full name still works, and a prefix that is not a type does not match.
    assert_eq!(eval("valueQuantity.value", &obs), vec![json!(72.5)]);
    assert!(eval("val", &obs).is_empty());
}

#[test]
fn primitive_extensions_are_reached_through_the_underscore_sibling() {
    let p = json!({
        "resourceType": "Patient",
        "birthDate": "1974-12-25",
        "_birthDate": { "extension": [{ "url": "http://x/birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00" }] },
        "_gender": { "extension": [{ "url": "http://x/absent", "valueCode": "unknown" }] }
    });
    assert_eq!(
        eval("birthDate.extension('http://x/birthTime').value", &p),
        vec![json!("1974-12-25T14:35:45-05:00")]
    );
    assert_eq!(eval("birthDate.hasValue()", &p), vec![json!(true)]);
    assert_eq!(eval("gender.hasValue()", &p), vec![json!(false)]);
    assert_eq!(eval("gender.extension.value", &p), vec![json!("unknown")]);
}

#[test]
fn three_valued_logic_follows_the_truth_tables() {
    let v = json!({});
    let cases = [
        ("true and {}", None),
        ("false and {}", Some(false)),
        ("{} or true", Some(true)),
        ("{} or false", None),
        ("true xor {}", None),
        ("false implies {}", Some(true)),
        ("{} implies true", Some(true)),
        ("true implies {}", None),
        ("{}.not()", None),
    ];
    for (expr, want) in cases {
        let want: Vec<Value> = want.map(Value::Bool).into_iter().collect();
        assert_eq!(eval(expr, &v), want, "{expr}");
    }
}

#[test]
fn logical_operators_short_circuit_so_a_decided_left_side_hides_errors() {
    let v = json!({});
    assert_eq!(eval("false and (1 | 2).not()", &v), vec![json!(false)]);
    assert_eq!(eval("true or (1 | 2).not()", &v), vec![json!(true)]);
}

#[test]
fn dates_of_different_precision_compare_as_empty_unless_already_decided() {
    let v = json!({ "birthDate": "1958-06-14" });
    // Incomparable at the shared precision → empty.
    assert!(eval("@2018-03 < @2018-03-01", &v).is_empty());
    assert!(eval("@2012-04-15 = @2012-04-15T10:00:00", &v).is_empty());
    assert!(eval("@T10 < @T10:30", &v).is_empty());
    // Decided by a field both carry.
    assert_eq!(eval("@2018-02 < @2018-03-01", &v), vec![json!(true)]);
    // Seconds and milliseconds are one precision.
    assert_eq!(
        eval("@2018-03-01T10:30:00 = @2018-03-01T10:30:00.0", &v),
        vec![json!(true)]
    );
    // Zones are normalised before comparing.
    assert_eq!(
        eval(
            "@2017-11-05T01:30:00.0-04:00 > @2017-11-05T01:15:00.0-05:00",
            &v
        ),
        vec![json!(false)]
    );
    // A JSON string compares as a date against a date literal.
    assert_eq!(eval("birthDate < @1960", &v), vec![json!(true)]);
    assert_eq!(eval("birthDate = @1958-06-14", &v), vec![json!(true)]);
    assert_eq!(eval("birthDate ~ @1958-06", &v), vec![json!(false)]);
}

#[test]
fn decimals_are_exact_not_floating_point() {
    let v = json!({});
    assert_eq!(eval("0.1 + 0.2 = 0.3", &v), vec![json!(true)]);
    assert_eq!(eval("(0.1 + 0.2).toString()", &v), vec![json!("0.3")]);
}

#[test]
fn parse_errors_report_line_and_column() {
    // Arrange / Act
    let err = Expr::parse("name.given\n  .where(use = 'official'").unwrap_err();
    // Assert
    assert_eq!((err.line, err.column), (2, 26));
    assert_eq!(
        err.to_string(),
        format!("line 2, column 26: {}", err.message)
    );

    let err = Expr::parse("name.given +").unwrap_err();
    assert_eq!((err.line, err.column, err.offset), (1, 13, 12));

    let err = Expr::parse("'abc").unwrap_err();
    assert_eq!((err.line, err.column), (1, 1));
    assert!(err.message.contains("unterminated"), "{}", err.message);
}

#[test]
fn unknown_functions_and_wrong_arity_are_compile_errors_with_positions() {
    let err = Expr::parse("name.given.frobnicate()").unwrap_err();
    assert_eq!((err.line, err.column), (1, 12));
    assert!(
        err.message.contains("unknown function 'frobnicate'"),
        "{}",
        err.message
    );

    let err = Expr::parse("name.where()").unwrap_err();
    assert_eq!((err.line, err.column), (1, 6));
    assert!(err.message.contains("takes 1 argument"), "{}", err.message);

    let err = Expr::parse("substring(1, 2, 3)").unwrap_err();
    assert_eq!(err.column, 1);
}

#[test]
fn host_functions_must_be_declared_at_parse_time_and_registered_to_run() {
    // Arrange
    let input = json!({ "code": "390893007" });
    let lookup: super::HostFunction = Arc::new(|_focus, args| {
        let code = args[1].first().and_then(Value::as_str).unwrap_or("");
        Ok(match code {
            "390893007" => vec![json!("EXERCISE")],
            _ => vec![],
        })
    });
    let env = Env::new().with_function("lookup", lookup);
    // Act
    let expr = Expr::parse_with_functions("lookup('activity', code)", &["lookup"]).unwrap();
    let got = expr.evaluate(&input, &env).unwrap();
    // Assert
    assert_eq!(got, vec![json!("EXERCISE")]);
    assert!(Expr::parse("lookup('activity', code)").is_err());
    let unregistered = expr.evaluate(&input, &Env::new()).unwrap_err();
    assert!(
        unregistered.message.contains("not registered"),
        "{unregistered}"
    );
}

#[test]
fn variables_come_from_the_environment() {
    let input = json!({});
    let env = Env::new().with_variable("provider", vec![json!("activelives")]);
    let got = Expr::parse("%provider & '-' & %context.count().toString()")
        .unwrap()
        .evaluate(&input, &env)
        .unwrap();
    assert_eq!(got, vec![json!("activelives-1")]);
    let err: EvalError = Expr::parse("%missing")
        .unwrap()
        .evaluate(&input, &env)
        .unwrap_err();
    assert!(err.message.contains("%missing"));
}

#[test]
fn compiled_expressions_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Expr>();
}
