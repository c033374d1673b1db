//! The FHIRPath Mapping Language: the two reference examples must come out
//! exactly as published, and each directive and empty-value rule behaves as
//! the reference implementation (PyPI `fpml` 1.0.0) does.

use std::path::Path;

use serde_json::{Value, json};
use signpost::{fhirpath::Env, mapping::fpml::Template};

fn yaml(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fpml")
        .join(name);
    serde_saphyr::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// As the reference's own tests call it: the resource is the context's
/// QuestionnaireResponse, and every context entry is a `%variable`.
fn reference_example(name: &str) {
    let context = yaml(&format!("complex-example.{name}.context.yaml"));
    let template = yaml(&format!("complex-example.{name}.template.yaml"));
    let expected = yaml(&format!("complex-example.{name}.result.yaml"));
    let resource = &context["QuestionnaireResponse"];
    let mut env = Env::new().with_resource(resource);
    for (key, value) in context.as_object().unwrap() {
        let collection = match value {
            Value::Array(items) => items.clone(),
            one => vec![one.clone()],
        };
        env = env.with_variable(key, collection);
    }
    let compiled = Template::compile(&template["body"], &[]).expect("compiles");
    let result = compiled
        .render(resource, &env)
        .expect("renders")
        .expect("not empty");
    assert_eq!(result, expected["body"], "{name}: got\n{result:#}");
}

#[test]
fn the_fhir_reference_example_reproduces_exactly() {
    reference_example("fhir");
}

#[test]
fn the_aidbox_reference_example_reproduces_exactly() {
    reference_example("aidbox");
}

fn render(template: Value, resource: Value) -> Option<Value> {
    let compiled = Template::compile(&template, &[]).unwrap_or_else(|e| panic!("{e:?}"));
    let env = Env::new().with_resource(&resource);
    compiled.render(&resource, &env).unwrap()
}

#[test]
fn placeholders_keep_types_interpolate_text_and_vanish_when_empty() {
    let resource = json!({"n": 3, "flag": true, "name": "Ann", "list": [1, 2]});
    let out = render(
        json!({
            "typed": "{{ n }}",
            "bool": "{{ flag }}",
            "text": "n is {{ n }}, flag {{ flag }}",
            "all": "{[ list ]}",
            "first": "{{ list }}",
            "gone": "{{ missing }}",
            "gone_text": "x {{ missing }} y",
            "null": "{{+ missing +}}",
            "kept_null": null,
            "literal": 7
        }),
        resource,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({
            "typed": 3, "bool": true, "text": "n is 3, flag true", "all": [1, 2], "first": 1,
            "null": null, "kept_null": null, "literal": 7
        })
    );
}

#[test]
fn empty_arrays_and_objects_vanish_up_the_tree_and_arrays_flatten() {
    let out = render(
        json!({
            "a": {"b": {"c": "{{ missing }}"}},
            "list": ["{[ missing ]}", "{{ missing }}"],
            "flat": [["{{ 'x' }}", ["{[ 1 | 2 ]}"]], "{{ 'y' }}"],
            "keep": "{{ 'k' }}"
        }),
        json!({}),
    )
    .unwrap();
    assert_eq!(out, json!({"flat": ["x", 1, 2, "y"], "keep": "k"}));
    assert_eq!(render(json!({"a": "{{ missing }}"}), json!({})), None);
}

#[test]
fn assign_binds_variables_in_order_for_the_rest_of_the_object() {
    let out = render(
        json!({
            "{% assign %}": [{"first": "{{ name.given.first() }}"}, {"greeting": "Hello {{ %first }}"}],
            "message": "{{ %greeting }}"
        }),
        json!({"name": {"given": ["Ann", "B"]}}),
    );
    assert_eq!(out.unwrap()["message"], "Hello Ann");
    let single = render(
        json!({"{% assign %}": {"x": "{[ (1 | 2) ]}"}, "count": "{{ %x.count() }}"}),
        json!({}),
    );
    assert_eq!(single.unwrap(), json!({"count": 2}));
}

#[test]
fn if_else_choose_a_branch_and_merge_into_sibling_keys() {
    let template = json!({
        "kind": "x",
        "{% if flag %}": {"chosen": "then"},
        "{% else %}": {"chosen": "else"}
    });
    assert_eq!(
        render(template.clone(), json!({"flag": true})).unwrap(),
        json!({"kind": "x", "chosen": "then"})
    );
    assert_eq!(
        render(template.clone(), json!({"flag": false})).unwrap(),
        json!({"kind": "x", "chosen": "else"})
    );
    // Empty is false.
    assert_eq!(
        render(template, json!({})).unwrap(),
        json!({"kind": "x", "chosen": "else"})
    );
    // Alone, the branch is the value itself.
    let alone = json!({"v": {"{% if flag %}": "yes", "{% else %}": ["no"]}});
    assert_eq!(
        render(alone.clone(), json!({"flag": true})).unwrap(),
        json!({"v": "yes"})
    );
    assert_eq!(
        render(alone, json!({"flag": false})).unwrap(),
        json!({"v": ["no"]})
    );
    let no_else = json!({"v": {"{% if flag %}": "yes"}});
    assert_eq!(render(no_else, json!({"flag": false})), None);
}

#[test]
fn for_iterates_with_item_and_index_and_context_blocks_refocus() {
    let resource = json!({"items": [{"n": "a"}, {"n": "b"}]});
    let out = render(
        json!({
            "plain": {"{% for item in items %}": "{{ %item.n }}"},
            "indexed": {"{% for i, item in items %}": {"at": "{{ %i }}", "n": "{{ %item.n }}"}},
            "refocused": {"{{ items }}": {"name": "{{ n }}"}},
            "none": {"{% for item in missing %}": "{{ %item }}"}
        }),
        resource,
    )
    .unwrap();
    assert_eq!(
        out,
        json!({
            "plain": ["a", "b"],
            "indexed": [{"at": 0, "n": "a"}, {"at": 1, "n": "b"}],
            "refocused": [{"name": "a"}, {"name": "b"}]
        })
    );
}

#[test]
fn merge_combines_objects_over_the_other_keys() {
    let out = render(
        json!({
            "{% merge %}": [{"b": 2}, {"{% if true %}": {"c": 3}}, {"{% if false %}": {"d": 4}}],
            "a": 1
        }),
        json!({}),
    )
    .unwrap();
    assert_eq!(out, json!({"a": 1, "b": 2, "c": 3}));
}

#[test]
fn values_from_the_resource_are_never_read_as_templates() {
    // The reference would evaluate this; a patient's data must not be code.
    let out = render(
        json!({"name": "{{ name }}"}),
        json!({"name": "{{ 1 + 1 }}"}),
    )
    .unwrap();
    assert_eq!(out, json!({"name": "{{ 1 + 1 }}"}));
}

#[test]
fn an_unknown_variable_is_an_error_not_silence() {
    let compiled = Template::compile(&json!({"x": "{{ %nope }}"}), &[]).unwrap();
    let resource = json!({});
    let err = compiled.render(&resource, &Env::new()).unwrap_err();
    assert_eq!(err.path, "x");
}

#[test]
fn template_errors_are_collected_with_their_place() {
    let errors = Template::compile(
        &json!({
            "a": "{{ name.where( }}",
            "b": {"c": "{{ nosuchfunction() }}"},
            "{% else %}": 1
        }),
        &[],
    )
    .err()
    .expect("errors");
    assert_eq!(errors.len(), 3, "{errors:?}");
    let at = |path: &str| {
        errors
            .iter()
            .find(|e| e.path == path)
            .unwrap_or_else(|| panic!("no error at {path}: {errors:?}"))
    };
    assert_eq!(at("a").expression.as_deref(), Some("name.where("));
    assert!(
        at("b.c").to_string().contains("nosuchfunction"),
        "{}",
        at("b.c")
    );
    assert!(at("").message.contains("{% else %}"));
}

#[test]
fn values_computed_by_expressions_are_cleaned_like_template_values() {
    let resource = json!({"a": {"b": [], "c": 1, "d": {"e": {}}, "f": [[2], [3]]}, "clean": {"g": [1, {"h": "i"}]}});
    let out = render(json!({"x": "{{ a }}", "y": "{{ clean }}"}), resource).unwrap();
    assert_eq!(
        out,
        json!({"x": {"c": 1, "f": [2, 3]}, "y": {"g": [1, {"h": "i"}]}})
    );
}

#[test]
fn a_strict_compile_knows_where_each_variable_is_defined_and_every_directive() {
    // Defined: given from outside, by an enclosing assign (earlier ones
    // visible to later ones), and by for (item and index) inside its body.
    let good = json!({
        "{% assign %}": [{"a": "{{ 1 }}"}, {"b": "{{ %a + 1 }}"}],
        "x": {"y": "{{ %a + %b + %outside }}"},
        "z": {"{% for i, item in (1 | 2) %}": "{{ %item + %i }}"},
        "{% if %b > 1 %}": {"w": "{{ %sct }}"}
    });
    Template::compile_strict(&good, &[], &["outside"]).unwrap_or_else(|e| panic!("{e:?}"));

    // Not defined: an assign seen from beside its object, a for item after
    // its loop, a misspelling.
    let bad = json!({
        "inner": {"{% assign %}": {"hidden": "{{ 1 }}"}, "ok": "{{ %hidden }}"},
        "beside": "{{ %hidden }}",
        "after": {"{% for item in (1 | 2) %}": "{{ %item }}"},
        "later": "{{ %item }}",
        "typo": "{{ %outsid }}"
    });
    let errors = Template::compile_strict(&bad, &[], &["outside"])
        .err()
        .expect("errors");
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["beside", "later", "typo"], "{errors:?}");
    assert!(
        errors[2].message.contains("`%outsid` is not defined here"),
        "{errors:?}"
    );

    // A misspelt directive is an error, not a literal key; the lenient
    // (reference) compile keeps it as a key.
    let typo = json!({"a": {"{% iff true %}": 1}});
    let errors = Template::compile_strict(&typo, &[], &[])
        .err()
        .expect("errors");
    assert!(
        errors[0].message.contains("unknown or malformed directive"),
        "{errors:?}"
    );
    assert!(Template::compile(&typo, &[]).is_ok());
    // Without a strict compile, variables are looked up when rendering.
    assert!(Template::compile(&json!({"x": "{{ %nope }}"}), &[]).is_ok());
}
