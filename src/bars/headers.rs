//! The HTTP headers of a BaRS request, as plain values (no HTTP types):
//! `X-Request-Id` and `X-Correlation-Id` (GUIDs, required), and the
//! headers NHS England's proxy sets, each a Base64-encoded JSON document:
//! `NHSD-Target-Identifier` (`{"value": …, "system": …}`, the service the
//! message is for), `NHSD-End-User-Organisation` (a FHIR Organization, the
//! sending organisation) and `NHSD-Requesting-Software` (a FHIR Device).
//! They are decoded where present and checked against the message, but
//! never trusted over authentication: who is sending is the caller's token
//! or client certificate.

use base64::Engine;
use serde_json::Value;

use super::answer::{Rec, Refusal};
use crate::{outcome::IssueCode, validation::ODS_CODE_SYSTEM};

/// The headers as received (each `None` when absent).
#[derive(Debug, Default, Clone)]
pub struct RawHeaders<'a> {
    pub request_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub target_identifier: Option<&'a str>,
    pub end_user_organisation: Option<&'a str>,
    pub requesting_software: Option<&'a str>,
}

/// The headers, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeaders {
    /// Lower-case hyphenated GUID.
    pub request_id: String,
    pub correlation_id: String,
    /// `NHSD-Target-Identifier`'s `value`, when sent.
    pub target_service: Option<String>,
    /// The ODS code of `NHSD-End-User-Organisation`, when sent.
    pub end_user_ods: Option<String>,
    /// `NHSD-Requesting-Software`'s device name, when sent (for logs).
    pub requesting_software: Option<String>,
}

impl RawHeaders<'_> {
    /// Check the headers in BaRS's order: the two ids first.
    pub fn check(&self) -> Result<RequestHeaders, Refusal> {
        let request_id = guid("X-Request-Id", self.request_id)?;
        let correlation_id = guid("X-Correlation-Id", self.correlation_id)?;
        let target_service = self
            .target_identifier
            .map(|text| {
                let document = decoded("NHSD-Target-Identifier", text)?;
                document
                    .get("value")
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| malformed("NHSD-Target-Identifier", "has no value"))
            })
            .transpose()?;
        let end_user_ods = self
            .end_user_organisation
            .map(|text| {
                let organisation = decoded("NHSD-End-User-Organisation", text)?;
                ods_code(&organisation).ok_or_else(|| {
                    malformed(
                        "NHSD-End-User-Organisation",
                        "is not an Organization with an ODS code",
                    )
                })
            })
            .transpose()?;
        let requesting_software = self
            .requesting_software
            .map(|text| {
                let device = decoded("NHSD-Requesting-Software", text)?;
                Ok(device
                    .pointer("/deviceName/0/name")
                    .and_then(Value::as_str)
                    .filter(|n| {
                        n.len() <= 100 && n.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
                    })
                    .unwrap_or("unnamed")
                    .to_owned())
            })
            .transpose()?;
        Ok(RequestHeaders {
            request_id,
            correlation_id,
            target_service,
            end_user_ods,
            requesting_software,
        })
    }
}

/// A GUID (hyphenated, any case), lower-cased.
fn guid(name: &str, value: Option<&str>) -> Result<String, Refusal> {
    let value = value.ok_or_else(|| {
        Refusal::new(
            Rec::BadRequest,
            IssueCode::Invalid,
            format!("the {name} header is missing: send a GUID"),
        )
    })?;
    let hyphenated = value.len() == 36
        && value.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !hyphenated {
        return Err(Refusal::new(
            Rec::BadRequest,
            IssueCode::Invalid,
            format!("the {name} header is not a GUID"),
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// A header's Base64 JSON object.
fn decoded(name: &str, text: &str) -> Result<Value, Refusal> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(text.trim()))
        .map_err(|_| malformed(name, "is not Base64"))?;
    let document: Value =
        serde_json::from_slice(&bytes).map_err(|_| malformed(name, "is not Base64 JSON"))?;
    if !document.is_object() {
        return Err(malformed(name, "is not a JSON object"));
    }
    Ok(document)
}

fn malformed(name: &str, what: &str) -> Refusal {
    Refusal::new(
        Rec::BadRequest,
        IssueCode::Invalid,
        format!("the {name} header {what}"),
    )
}

/// The ODS code of an Organization (its identifier of the ODS system).
pub fn ods_code(organisation: &Value) -> Option<String> {
    if organisation.get("resourceType").and_then(Value::as_str) != Some("Organization") {
        return None;
    }
    organisation
        .get("identifier")?
        .as_array()?
        .iter()
        // Quirk Q9: the official examples spell the system `…/id/…`.
        .find(|i| {
            i.get("system")
                .and_then(Value::as_str)
                .is_some_and(|s| s.eq_ignore_ascii_case(ODS_CODE_SYSTEM))
        })
        .and_then(|i| i.get("value")?.as_str())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "5B0E1E3C-35B3-4E1C-9D5A-2B9A4E6C1F00";

    fn b64(value: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(value)
    }

    #[test]
    fn ids_must_be_guids_and_are_lower_cased() {
        let ok = RawHeaders {
            request_id: Some(ID),
            correlation_id: Some(ID),
            ..RawHeaders::default()
        };
        assert_eq!(ok.check().unwrap().request_id, ID.to_ascii_lowercase());
        for bad in [
            None,
            Some("42"),
            Some("5b0e1e3c35b34e1c9d5a2b9a4e6c1f00xxxx"),
        ] {
            let headers = RawHeaders {
                request_id: bad,
                correlation_id: Some(ID),
                ..RawHeaders::default()
            };
            let refusal = headers.check().unwrap_err();
            assert_eq!(refusal.rec, Rec::BadRequest);
            assert_eq!(refusal.issues[0].code, IssueCode::Invalid);
        }
    }

    #[test]
    fn proxy_headers_are_decoded() {
        let organisation = b64(
            r#"{"resourceType":"Organization","identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}]}"#,
        );
        let target = b64(r#"{"value":"2000072489","system":"urn:ietf:rfc:3986"}"#);
        let headers = RawHeaders {
            request_id: Some(ID),
            correlation_id: Some(ID),
            target_identifier: Some(&target),
            end_user_organisation: Some(&organisation),
            requesting_software: None,
        }
        .check()
        .unwrap();
        assert_eq!(headers.end_user_ods.as_deref(), Some("A81001"));
        assert_eq!(headers.target_service.as_deref(), Some("2000072489"));
        let garbled = RawHeaders {
            request_id: Some(ID),
            correlation_id: Some(ID),
            target_identifier: Some("%%%"),
            ..RawHeaders::default()
        };
        assert!(garbled.check().is_err());
    }
}
