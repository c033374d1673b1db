//! One canonical shape for every accepted referral: a ServiceRequest that
//! carries the resources it references as `contained` resources.
//!
//! A bare ServiceRequest already has that shape. For a transaction Bundle,
//! the entries the ServiceRequest reaches (directly or through other
//! entries) are moved into `contained` and every reference to them becomes
//! `#id`. Signpost does not host Patients or Practitioners of its own, so
//! this keeps each referral whole and self-describing: a reader, a mapping
//! or a replay finds everything in the one resource.

use std::collections::{HashMap, HashSet};

use serde_json::{Value, json};

use crate::validation::{Referral, Submission, references::Located};

/// The referral as one ServiceRequest with contained resources (its `id` and
/// `meta` not yet assigned).
pub fn service_request(referral: &Referral<'_>) -> Value {
    let submission = referral.submission;
    let Submission::Bundle { .. } = submission else {
        return referral.service_request.resource.clone();
    };

    // Every entry reachable from the ServiceRequest, in discovery order.
    let mut reached: Vec<Located<'_>> = Vec::new();
    let mut seen: HashSet<String> = HashSet::from([referral.service_request.path.clone()]);
    let mut targets: HashMap<String, String> = HashMap::new(); // reference → entry path
    let mut queue = vec![referral.service_request.clone()];
    while let Some(from) = queue.pop() {
        let mut references = Vec::new();
        collect_references(from.resource, &mut references);
        for reference in references {
            if reference.starts_with('#') {
                continue;
            }
            let Some(target) = submission.resolve(&from, &reference) else {
                continue;
            };
            targets.insert(reference, target.path.clone());
            if seen.insert(target.path.clone()) {
                reached.push(target.clone());
                queue.push(target);
            }
        }
    }

    let mut sr = referral.service_request.resource.clone();
    let mut used_ids: HashSet<String> = sr
        .get("contained")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut local_id_of_path: HashMap<String, String> = HashMap::new();
    for target in &reached {
        let local_id = local_id(target, &mut used_ids);
        local_id_of_path.insert(target.path.clone(), local_id);
    }
    let rewrite: HashMap<String, String> = targets
        .into_iter()
        .filter_map(|(reference, path)| {
            local_id_of_path
                .get(&path)
                .map(|id| (reference, format!("#{id}")))
        })
        .collect();

    // Taken out of `sr` (already a copy) rather than copied again; the
    // resources it held keep their references as written.
    let mut contained: Vec<Value> = match sr.get_mut("contained") {
        Some(Value::Array(items)) => std::mem::take(items),
        _ => Vec::new(),
    };
    for target in &reached {
        let mut resource = target.resource.clone();
        resource["id"] = json!(local_id_of_path[&target.path]);
        rewrite_references(&mut resource, &rewrite);
        contained.push(resource);
    }
    rewrite_references(&mut sr, &rewrite);
    if !contained.is_empty() {
        sr["contained"] = Value::Array(contained);
    }
    sr
}

/// The entry's own id when it is a valid, unused FHIR id; otherwise a
/// readable one made from its type.
fn local_id(target: &Located<'_>, used: &mut HashSet<String>) -> String {
    let own = target
        .resource
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_fhir_id(id) && !used.contains(*id));
    let id = match own {
        Some(id) => id.to_owned(),
        None => {
            let stem = target.resource_type().to_ascii_lowercase();
            (1..)
                .map(|n| format!("{stem}{n}"))
                .find(|candidate| !used.contains(candidate))
                .unwrap_or_default()
        }
    };
    used.insert(id.clone());
    id
}

fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Every `reference` string in `value`, excluding those inside contained
/// resources of other resources (they resolve within their container).
fn collect_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => out.push(reference.clone()),
                    ("contained", _) => {}
                    _ => collect_references(child, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, out)),
        _ => {}
    }
}

fn rewrite_references(value: &mut Value, rewrite: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match (key.as_str(), &*child) {
                    ("reference", Value::String(reference)) => {
                        if let Some(local) = rewrite.get(reference) {
                            *child = Value::String(local.clone());
                        }
                    }
                    _ => rewrite_references(child, rewrite),
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, rewrite)),
        _ => {}
    }
}
