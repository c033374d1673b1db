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

use serde_json::Value;

use crate::validation::{Referral, references::Located};

/// How to put a validated referral in canonical form. It is worked out
/// while the referral still borrows the submitted document, and then
/// applied to the document itself, so that nothing is copied.
#[derive(Debug)]
pub struct Plan {
    /// `None` for a bare ServiceRequest: it is already canonical.
    bundle: Option<FromBundle>,
}

#[derive(Debug)]
struct FromBundle {
    /// `Bundle.entry` index of the ServiceRequest.
    service_request: usize,
    /// Entries the ServiceRequest reaches, in discovery order, with the
    /// local id each gets as a contained resource.
    reached: Vec<(usize, String)>,
    /// Reference as written → `#local-id`.
    rewrite: HashMap<String, String>,
}

/// The plan for `referral` (its `id` and `meta` are not assigned here).
pub fn plan(referral: &Referral<'_>) -> Plan {
    let submission = referral.submission;
    // Only a transaction's ServiceRequest is an entry.
    let Some(service_request) = referral.service_request.entry else {
        return Plan { bundle: None };
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

    let mut used_ids: HashSet<String> = referral
        .service_request
        .resource
        .get("contained")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    let mut local_id_of_path: HashMap<String, String> = HashMap::new();
    let mut entries = Vec::with_capacity(reached.len());
    for target in &reached {
        let local_id = local_id(target, &mut used_ids);
        local_id_of_path.insert(target.path.clone(), local_id.clone());
        // Always an entry: `#` references were skipped above.
        if let Some(entry) = target.entry {
            entries.push((entry, local_id));
        }
    }
    let rewrite = targets
        .into_iter()
        .filter_map(|(reference, path)| {
            local_id_of_path
                .get(&path)
                .map(|id| (reference, format!("#{id}")))
        })
        .collect();
    Plan {
        bundle: Some(FromBundle {
            service_request,
            reached: entries,
            rewrite,
        }),
    }
}

impl Plan {
    /// The referral as one ServiceRequest with contained resources, made
    /// from `document`, the submission the plan was made from.
    pub fn apply(self, document: Value) -> Value {
        let Some(plan) = self.bundle else {
            return document;
        };
        let mut entries = match document {
            Value::Object(mut bundle) => match bundle.remove("entry") {
                Some(Value::Array(entries)) => entries,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        let mut take = |index: usize| {
            entries
                .get_mut(index)
                .and_then(|entry| entry.get_mut("resource"))
                .map(Value::take)
                .unwrap_or_default()
        };
        let mut sr = take(plan.service_request);
        // The ServiceRequest's own contained resources keep their
        // references as written.
        let mut contained: Vec<Value> = match sr.get_mut("contained") {
            Some(Value::Array(items)) => std::mem::take(items),
            _ => Vec::new(),
        };
        for (index, local_id) in plan.reached {
            let mut resource = take(index);
            resource["id"] = Value::String(local_id);
            rewrite_references(&mut resource, &plan.rewrite);
            contained.push(resource);
        }
        rewrite_references(&mut sr, &plan.rewrite);
        if !contained.is_empty() {
            sr["contained"] = Value::Array(contained);
        }
        sr
    }
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
