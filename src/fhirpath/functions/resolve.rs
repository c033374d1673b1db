//! `resolve()` (FHIR's FHIRPath extensions): following a reference to a
//! contained resource or to an entry of the enclosing Bundle.

use std::ptr;

use serde_json::Value;

use crate::fhirpath::value::Item;

/// Finds the resource a reference (a `Reference` object or a reference
/// string) points at: a contained resource for `#id`, otherwise an entry of
/// the enclosing Bundle by `fullUrl` (also `urn:uuid:`) or by `Type/id`.
pub(super) fn resolve<'v>(root: Option<&'v Value>, item: &Item<'v>) -> Option<&'v Value> {
    let root = root?;
    let Item::Node(node) = item else {
        return item
            .as_str()
            .and_then(|r| resolve_reference(root, &[root], r));
    };
    let reference = match node.value {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o.get("reference")?.as_str()?,
        _ => return None,
    };
    // The resources enclosing the reference, outermost first.
    let mut chain = Vec::new();
    if find_enclosing(root, node.value, &mut chain) {
        chain.reverse();
    } else {
        chain = vec![root];
    }
    resolve_reference(root, &chain, reference)
}

pub(super) fn is_resource(v: &Value) -> bool {
    v.get("resourceType").is_some_and(Value::is_string)
}

/// Whether `target` is (by address) `at` or inside it; if so, the resources
/// on the way down to it are appended to `chain`, innermost first. Only the
/// target's ancestors are checked for being resources, on the way back up,
/// so the search itself is a plain walk.
pub(super) fn find_enclosing<'v>(
    at: &'v Value,
    target: &Value,
    chain: &mut Vec<&'v Value>,
) -> bool {
    if ptr::eq(at, target) {
        return true;
    }
    let found = match at {
        Value::Object(o) => o.values().any(|v| find_enclosing(v, target, chain)),
        Value::Array(a) => a.iter().any(|v| find_enclosing(v, target, chain)),
        _ => false,
    };
    if found && is_resource(at) {
        chain.push(at);
    }
    found
}

pub(super) fn resolve_reference<'v>(
    root: &'v Value,
    chain: &[&'v Value],
    reference: &str,
) -> Option<&'v Value> {
    if let Some(id) = reference.strip_prefix('#') {
        for res in chain.iter().rev() {
            if id.is_empty() && res.get("contained").is_some() {
                return Some(res);
            }
            let contained = res.get("contained").and_then(Value::as_array);
            if let Some(found) = contained
                .into_iter()
                .flatten()
                .find(|c| c.get("id").and_then(Value::as_str) == Some(id))
            {
                return Some(found);
            }
        }
        return None;
    }
    let type_id = type_and_id(reference);
    for bundle in chain
        .iter()
        .rev()
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Bundle"))
    {
        let entries = bundle.get("entry").and_then(Value::as_array);
        for entry in entries.into_iter().flatten() {
            if entry.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                return entry.get("resource");
            }
        }
        if let Some((ty, id)) = type_id {
            for entry in entries.into_iter().flatten() {
                let res = entry.get("resource");
                let matches = res.is_some_and(|r| {
                    r.get("resourceType").and_then(Value::as_str) == Some(ty)
                        && r.get("id").and_then(Value::as_str) == Some(id)
                });
                // An absolute reference must also agree with the entry's base.
                let base_ok = !reference.contains("://")
                    || entry
                        .get("fullUrl")
                        .and_then(Value::as_str)
                        .is_some_and(|f| {
                            f.ends_with(&format!("{ty}/{id}"))
                                && reference.starts_with(&f[..f.len() - ty.len() - id.len() - 1])
                        });
                if matches && base_ok {
                    return res;
                }
            }
        }
    }
    // A relative reference to the root resource itself.
    let (ty, id) = type_id?;
    (root.get("resourceType").and_then(Value::as_str) == Some(ty)
        && root.get("id").and_then(Value::as_str) == Some(id))
    .then_some(root)
}

/// `Type/id` at the end of a reference, ignoring a `/_history/version` tail.
pub(super) fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with("urn:") {
        return None;
    }
    let path = match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    };
    let mut parts = path.rsplit('/');
    let id = parts.next()?;
    let ty = parts.next()?;
    (ty.starts_with(|c: char| c.is_ascii_uppercase()) && !id.is_empty()).then_some((ty, id))
}
