//! The checks a referral passes on every way in, written once: intake
//! (`POST /fhir/ServiceRequest`, `POST /fhir`), the dry run
//! (`POST /fhir/ServiceRequest/$translate`, `signpost translate`) and the
//! pre-flight check (`signpost validate`). Each runs the same layers in the
//! same order, so a pre-flight pass means intake passes:
//!
//! 1. the document: a ServiceRequest or a transaction Bundle holding one,
//!    against the FHIR R4 schema and the referral profile ([`validate`]);
//! 2. attribution to the referrer sending it, when one is given
//!    ([`attribute`]);
//! 3. routing to exactly one provider and mapping to its payload
//!    ([`route_and_map`]).
//!
//! Only intake then looks at storage (a business identifier already used).

use std::sync::Arc;

use serde_json::{Value, json};

use super::{IntakeError, canonical};
use crate::{
    config::{Config, Referrer},
    mapping::{Mapping, MappingSet},
    outcome::{Issue, IssueCode},
    validation::{Rejection, Submission, Validator},
};

/// Signpost's id of a referral that is not stored (a dry run).
pub const DRY_RUN_ID: &str = "DRY-RUN";

/// What the checks keep of a valid referral once its borrow of the
/// submitted document ends: what it is filed under, and how to turn the
/// document into canonical form without copying it.
pub struct Validated {
    pub identifier_system: String,
    pub identifier_value: String,
    pub nhs_number: String,
    /// The requester Organization's ODS code, and where it sits.
    pub ods_code: String,
    pub organization_path: String,
    canonical: canonical::Plan,
}

impl Validated {
    fn new(referral: crate::validation::Referral<'_>) -> Validated {
        Validated {
            canonical: canonical::plan(&referral),
            identifier_system: referral.identifier_system,
            identifier_value: referral.identifier_value,
            nhs_number: referral.nhs_number,
            ods_code: referral.ods_code,
            organization_path: referral.organization.path,
        }
    }

    /// `document` (the submission this was validated from) in canonical
    /// form, with Signpost's `id` and `meta` (`now` as `lastUpdated`).
    pub fn canonical(self, document: Value, id: &str, now: &str) -> Value {
        with_server_identity(self.canonical.apply(document), id, now)
    }
}

/// Which forms of referral a way in takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `POST /fhir/ServiceRequest`.
    ServiceRequest,
    /// `POST /fhir`.
    Transaction,
    /// The dry run and the pre-flight check: either, by its `resourceType`.
    Either,
}

/// Layer 1: the FHIR R4 schema and the referral profile, for the `form`
/// the way in takes.
pub fn validate(validator: &Validator, form: Form, body: &Value) -> Result<Validated, IntakeError> {
    let is_bundle = body.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    match form {
        Form::ServiceRequest => expect_resource_type(
            body,
            "ServiceRequest",
            "this endpoint takes a ServiceRequest; post a transaction Bundle to the base URL",
        )?,
        Form::Transaction => expect_resource_type(
            body,
            "Bundle",
            "the base URL takes a transaction Bundle; post a bare ServiceRequest to /fhir/ServiceRequest",
        )?,
        Form::Either if is_bundle => {}
        Form::Either => expect_resource_type(
            body,
            "ServiceRequest",
            "a referral is a ServiceRequest or a transaction Bundle",
        )?,
    }
    let checked = if is_bundle {
        // The Bundle is checked whole before its ServiceRequest is sought.
        let structural = validator.check_structure(body);
        if !structural.is_empty() {
            return Err(IntakeError::Rejected(Rejection::Structure(structural)));
        }
        validator.check_profile(Submission::Bundle {
            bundle: body,
            service_request: find_service_request_entry(body)?,
        })
    } else {
        validator.check_referral(Submission::ServiceRequest(body))
    };
    checked.map(Validated::new).map_err(IntakeError::Rejected)
}

/// Layer 2: the referrer the referral is attributed to (the one listing
/// its requester Organization's ODS code), which must be `sender`.
pub fn attribute<'c>(
    config: &'c Config,
    referral: &Validated,
    sender: &str,
) -> Result<&'c Referrer, IntakeError> {
    let Some(referrer) = config.referrer_for_ods(&referral.ods_code) else {
        return Err(refuse(vec![
            Issue::error(
                IssueCode::BusinessRule,
                "the requesting organisation's ODS code is not registered with this gateway as a referrer",
            )
            .at(format!("{}.identifier", referral.organization_path)),
        ]));
    };
    if referrer.id != sender {
        return Err(IntakeError::Forbidden(format!(
            "this token may send referrals only for {sender}; the requesting organisation's ODS code belongs to another referrer"
        )));
    }
    Ok(referrer)
}

/// Layer 3: the provider that takes the canonical `resource` (by routing,
/// or `provider` when the caller names one) and the payload it would be
/// sent; otherwise the issues refusing it.
pub fn route_and_map(
    mappings: &MappingSet,
    resource: &Value,
    provider: Option<&str>,
) -> Result<(Arc<Mapping>, Value), Vec<Issue>> {
    let mapping = match provider {
        Some(id) => mappings.mappings.get(id).cloned().ok_or_else(|| {
            vec![Issue::error(
                IssueCode::NotFound,
                "no provider with a mapping has this id",
            )]
        })?,
        None => mappings.route(resource)?,
    };
    let payload = mapping.translate(resource)?;
    Ok((mapping, payload))
}

/// The dry run, offline or over HTTP: every check intake makes but the
/// look-up of the business identifier, with attribution when `sender` (a
/// referrer id) is given. Nothing is stored; Signpost's id for the
/// referral shows as [`DRY_RUN_ID`]. Returns the provider and the payload
/// it would receive.
pub fn dry_run(
    validator: &Validator,
    mappings: &MappingSet,
    config: Option<&Config>,
    sender: Option<&str>,
    body: Value,
    provider: Option<&str>,
) -> Result<(String, Value), IntakeError> {
    let referral = validate(validator, Form::Either, &body)?;
    if let (Some(config), Some(sender)) = (config, sender) {
        attribute(config, &referral, sender)?;
    }
    let resource = referral.canonical(body, DRY_RUN_ID, "");
    let (mapping, payload) = route_and_map(mappings, &resource, provider).map_err(refuse)?;
    Ok((mapping.provider.clone(), payload))
}

pub(super) fn refuse(issues: Vec<Issue>) -> IntakeError {
    IntakeError::Rejected(Rejection::Profile(issues))
}

/// The resource with the server's `id` and `meta.versionId`/`lastUpdated`,
/// placed right after `resourceType` as FHIR JSON customarily has them;
/// the client's other `meta` (profiles, tags) is kept.
fn with_server_identity(resource: Value, id: &str, now: &str) -> Value {
    let Value::Object(mut fields) = resource else {
        return resource;
    };
    let mut meta = match fields.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => serde_json::Map::new(),
    };
    meta.insert("versionId".into(), json!("1"));
    meta.insert("lastUpdated".into(), json!(now));
    fields.shift_remove("id");
    let mut ordered = serde_json::Map::with_capacity(fields.len() + 2);
    if let Some(resource_type) = fields.shift_remove("resourceType") {
        ordered.insert("resourceType".into(), resource_type);
    }
    ordered.insert("id".into(), json!(id));
    ordered.insert("meta".into(), Value::Object(meta));
    ordered.extend(fields);
    Value::Object(ordered)
}

/// The one ServiceRequest entry of a transaction Bundle.
fn find_service_request_entry(bundle: &Value) -> Result<usize, IntakeError> {
    let unprocessable =
        |at: String, text: &str| refuse(vec![Issue::error(IssueCode::NotSupported, text).at(at)]);
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(unprocessable(
            "Bundle.type".into(),
            "only a transaction Bundle can be posted here (a referral and the resources it references)",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut service_requests = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let method = entry.pointer("/request/method").and_then(Value::as_str);
        if method != Some("POST") {
            return Err(unprocessable(
                format!("Bundle.entry[{index}].request.method"),
                "each entry must be created with request.method POST",
            ));
        }
        if entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            == Some("ServiceRequest")
        {
            service_requests.push(index);
        }
    }
    match service_requests.as_slice() {
        [one] => Ok(*one),
        [] => Err(unprocessable(
            "Bundle.entry".into(),
            "the Bundle holds no ServiceRequest: a referral Bundle holds exactly one",
        )),
        _ => Err(unprocessable(
            "Bundle.entry".into(),
            "the Bundle holds several ServiceRequests: send one referral per Bundle",
        )),
    }
}

/// `400` unless `body` is a `expected` resource.
fn expect_resource_type(body: &Value, expected: &str, hint: &str) -> Result<(), IntakeError> {
    let found = body.get("resourceType").and_then(Value::as_str);
    if found == Some(expected) {
        return Ok(());
    }
    // What was found is not quoted: resourceType is the client's text.
    let found = if found.is_some() {
        "another resource type"
    } else {
        "a document without resourceType"
    };
    Err(IntakeError::Rejected(Rejection::Structure(vec![
        Issue::error(IssueCode::Invalid, format!("{hint}, not {found}"))
            .at(format!("{expected}.resourceType")),
    ])))
}

/// Layer 1 for a BaRS message Bundle that has passed the structural layer:
/// the referral profile, for its ServiceRequest entry at `service_request`.
pub fn validate_message(
    validator: &Validator,
    bundle: &Value,
    service_request: usize,
) -> Result<Validated, IntakeError> {
    validator
        .check_profile(Submission::Bundle {
            bundle,
            service_request,
        })
        .map(Validated::new)
        .map_err(IntakeError::Rejected)
}
