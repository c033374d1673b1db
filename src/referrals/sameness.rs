//! When a business identifier sent again names the same referral.
//!
//! A practice system that did not hear the answer to a referral sends it
//! again under the same business identifier (`ServiceRequest.identifier`),
//! and must get the first answer back. The same identifier on a
//! *materially different* referral is another matter: the practice (or its
//! system) reused an identifier, and answering "200, here is the original"
//! would tell it that its new referral was accepted when it never was.
//!
//! Materially different means: the two referrals' canonical forms (the
//! ServiceRequest with its resources contained, as stored) differ once
//! what is not the referral's content is set aside:
//! - the ServiceRequest's `id`, `meta` and `text` (server-assigned, or
//!   narrative generated from the content), and its `status` (a resend
//!   is always `active`; the stored one may since have been cancelled);
//! - each contained resource's `meta` and `text`;
//! - the order of the contained resources and of the keys of any object.
//!
//! Everything else counts: the patient, the requester, the codes, the
//! reason, `authoredOn`, notes and extensions. A referral sent first as a
//! bare ServiceRequest and again as a transaction Bundle is the same
//! referral when its canonical form is the same.

use serde_json::Value;

/// Whether `resent` (the canonical form of a resend) is the referral
/// `stored` (the canonical form stored the first time).
pub fn same_referral(stored: &Value, resent: &Value) -> bool {
    material(stored) == material(resent)
}

/// The referral's content without what [`same_referral`] sets aside.
/// (Objects compare equal whatever the order of their keys.)
fn material(resource: &Value) -> Value {
    let mut resource = resource.clone();
    let Some(fields) = resource.as_object_mut() else {
        return resource;
    };
    for volatile in ["id", "meta", "text", "status"] {
        fields.shift_remove(volatile);
    }
    if let Some(Value::Array(contained)) = fields.get_mut("contained") {
        for resource in contained.iter_mut() {
            if let Some(fields) = resource.as_object_mut() {
                fields.shift_remove("meta");
                fields.shift_remove("text");
            }
        }
        contained.sort_by_cached_key(|r| {
            let text = |key: &str| {
                r.get(key)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            (text("resourceType"), text("id"))
        });
    }
    resource
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn referral() -> Value {
        json!({
            "resourceType": "ServiceRequest",
            "id": "r1",
            "meta": { "versionId": "1", "lastUpdated": "2026-01-01T00:00:00Z" },
            "status": "active",
            "contained": [
                { "resourceType": "Patient", "id": "p", "birthDate": "1950-01-01" },
                { "resourceType": "Organization", "id": "o", "meta": { "profile": ["x"] } }
            ],
            "code": { "coding": [{ "system": "http://snomed.info/sct", "code": "1" }] },
            "subject": { "reference": "#p" }
        })
    }

    #[test]
    fn server_fields_narrative_status_and_order_are_not_material() {
        let mut resent = referral();
        resent["id"] = json!("DRY-RUN");
        resent["meta"] = json!({ "versionId": "1", "lastUpdated": "2026-02-02T00:00:00Z" });
        resent["status"] = json!("revoked");
        resent["text"] = json!({ "status": "generated", "div": "<div/>" });
        let contained = resent["contained"].as_array_mut().unwrap();
        contained.reverse();
        contained[0].as_object_mut().unwrap().shift_remove("meta");
        assert!(same_referral(&referral(), &resent));
    }

    #[test]
    fn the_patient_the_code_or_anything_else_of_substance_is_material() {
        let mut other_patient = referral();
        other_patient["contained"][0]["birthDate"] = json!("1951-01-01");
        assert!(!same_referral(&referral(), &other_patient));
        let mut other_code = referral();
        other_code["code"]["coding"][0]["code"] = json!("2");
        assert!(!same_referral(&referral(), &other_code));
        let mut with_note = referral();
        with_note["note"] = json!([{ "text": "x" }]);
        assert!(!same_referral(&referral(), &with_note));
    }
}
