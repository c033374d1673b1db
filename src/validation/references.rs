//! Resolving references inside one submission: a bare ServiceRequest with
//! `contained` resources (`#id`), or a transaction Bundle whose entries
//! reference each other by `fullUrl` (`urn:uuid:…`, absolute URLs) or as
//! `Type/id`. Nothing outside the submission is ever fetched.

use serde_json::Value;

/// What was posted: a bare ServiceRequest, or a transaction Bundle and the
/// index of the ServiceRequest entry in it.
#[derive(Debug, Clone, Copy)]
pub enum Submission<'a> {
    ServiceRequest(&'a Value),
    Bundle {
        bundle: &'a Value,
        service_request: usize,
    },
}

/// A resource inside a submission, with its FHIRPath location.
#[derive(Debug, Clone)]
pub struct Located<'a> {
    pub resource: &'a Value,
    /// e.g. `ServiceRequest`, `ServiceRequest.contained[1]`,
    /// `Bundle.entry[2].resource`.
    pub path: String,
    /// Its index in `Bundle.entry`, when it is an entry's resource.
    pub entry: Option<usize>,
    /// The resource whose `contained` list `#id` references from this
    /// resource look in (itself, or the resource that contains it), and its path.
    container: (&'a Value, String),
}

impl<'a> Submission<'a> {
    /// The whole posted document.
    pub fn document(&self) -> &'a Value {
        match *self {
            Submission::ServiceRequest(sr) => sr,
            Submission::Bundle { bundle, .. } => bundle,
        }
    }

    /// The ServiceRequest being submitted.
    pub fn service_request(&self) -> Located<'a> {
        match *self {
            Submission::ServiceRequest(sr) => top_level(sr, "ServiceRequest".into(), None),
            Submission::Bundle {
                bundle,
                service_request,
            } => top_level(
                &bundle["entry"][service_request]["resource"],
                format!("Bundle.entry[{service_request}].resource"),
                Some(service_request),
            ),
        }
    }

    /// The resource `reference` points to, seen from `from`.
    pub fn resolve(&self, from: &Located<'a>, reference: &str) -> Option<Located<'a>> {
        if let Some(local_id) = reference.strip_prefix('#') {
            let (container, container_path) = &from.container;
            let contained = container.get("contained")?.as_array()?;
            let index = contained
                .iter()
                .position(|r| r.get("id").and_then(Value::as_str) == Some(local_id))?;
            return Some(Located {
                resource: &contained[index],
                path: format!("{container_path}.contained[{index}]"),
                entry: None,
                container: (container, container_path.clone()),
            });
        }
        let Submission::Bundle { bundle, .. } = *self else {
            return None;
        };
        let entries = bundle.get("entry")?.as_array()?;
        let matches = |entry: &Value| {
            let full_url = entry.get("fullUrl").and_then(Value::as_str);
            if full_url == Some(reference) {
                return true;
            }
            // A relative `Type/id` reference.
            let mut parts = reference.split('/');
            let (Some(ty), Some(id), None) = (parts.next(), parts.next(), parts.next()) else {
                return false;
            };
            let resource = &entry["resource"];
            (resource.get("resourceType").and_then(Value::as_str) == Some(ty)
                && resource.get("id").and_then(Value::as_str) == Some(id))
                || full_url.is_some_and(|u| u.ends_with(&format!("/{ty}/{id}")))
        };
        let index = entries.iter().position(matches)?;
        Some(top_level(
            &entries[index]["resource"],
            format!("Bundle.entry[{index}].resource"),
            Some(index),
        ))
    }
}

fn top_level(resource: &Value, path: String, entry: Option<usize>) -> Located<'_> {
    Located {
        resource,
        entry,
        container: (resource, path.clone()),
        path,
    }
}

impl Located<'_> {
    /// `resourceType` of the resource, or "" when absent.
    pub fn resource_type(&self) -> &str {
        self.resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn hash_references_resolve_to_contained_resources_with_their_paths() {
        let sr = json!({"resourceType": "ServiceRequest", "contained": [
            {"resourceType": "Practitioner", "id": "doc"},
            {"resourceType": "PractitionerRole", "id": "role", "practitioner": {"reference": "#doc"}}
        ]});
        let submission = Submission::ServiceRequest(&sr);
        let root = submission.service_request();
        let role = submission.resolve(&root, "#role").unwrap();
        assert_eq!(role.path, "ServiceRequest.contained[1]");
        // A contained resource's own `#` references look in its container.
        let doc = submission.resolve(&role, "#doc").unwrap();
        assert_eq!(doc.path, "ServiceRequest.contained[0]");
        assert!(submission.resolve(&root, "#nobody").is_none());
        assert!(submission.resolve(&root, "Practitioner/doc").is_none());
    }

    #[test]
    fn bundle_references_resolve_by_full_url_and_by_type_and_id() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "ServiceRequest"}},
            {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Patient", "id": "p"}},
            {"fullUrl": "https://ehr.example/fhir/Organization/o1", "resource": {"resourceType": "Organization"}}
        ]});
        let submission = Submission::Bundle {
            bundle: &bundle,
            service_request: 0,
        };
        let root = submission.service_request();
        assert_eq!(root.path, "Bundle.entry[0].resource");
        assert_eq!(
            submission.resolve(&root, "urn:uuid:2").unwrap().path,
            "Bundle.entry[1].resource"
        );
        assert_eq!(
            submission.resolve(&root, "Patient/p").unwrap().path,
            "Bundle.entry[1].resource"
        );
        assert_eq!(
            submission.resolve(&root, "Organization/o1").unwrap().path,
            "Bundle.entry[2].resource"
        );
        assert!(submission.resolve(&root, "urn:uuid:3").is_none());
    }
}
