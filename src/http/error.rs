//! Every failure of the FHIR surface, rendered as an `OperationOutcome`
//! with the right status code. Internal details (database errors, panics)
//! are logged here, once, with the request's ids from the enclosing span,
//! and never sent to the client.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::FhirResponse;
use crate::{
    outcome::{Issue, IssueCode, operation_outcome},
    referrals::{IntakeError, deliveries::BadFilter, lifecycle::ChangeError},
    security::authz::Denied,
    store::StoreError,
    validation::Rejection,
};

/// A request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum FhirError {
    /// Malformed or structurally invalid (`400`).
    #[error("bad request")]
    BadRequest(Vec<Issue>),
    /// Valid FHIR that Signpost cannot accept (`422`).
    #[error("unprocessable")]
    Unprocessable(Vec<Issue>),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    #[error("not found")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("precondition failed")]
    PreconditionFailed(String),
    /// The change conflicts with the resource's state (`409`).
    #[error("conflict")]
    Conflict(String),
    /// A signature or credential was missing or wrong (`401`).
    #[error("unauthorized")]
    Unauthorized(String),
    /// No valid credentials (`401` with `WWW-Authenticate`): none sent, or
    /// a token that is unknown, wrong or revoked (not told apart).
    #[error("unauthenticated")]
    Unauthenticated { token_sent: bool },
    /// Valid credentials without the right to do this (`403`).
    #[error("forbidden")]
    Forbidden(String),
    /// The caller is over its rate (`429` with `Retry-After`).
    #[error("too many requests")]
    TooManyRequests { retry_after_secs: u64 },
    /// Too many requests in flight (`503`).
    #[error("busy")]
    Busy,
    /// The request took longer than allowed (`408`); what it did is not
    /// known.
    #[error("timeout")]
    Timeout,
    /// The request's body was not received in time (`408`): nothing was
    /// done with it.
    #[error("body timeout")]
    BodyTimeout,
    /// Any other refusal with its status and issues.
    #[error("refused")]
    Refused(StatusCode, Vec<Issue>),
    /// Storage failed (`503`): the client may retry.
    #[error("storage unavailable")]
    Unavailable(#[source] StoreError),
    /// A bug (`500`).
    #[error("internal error")]
    Internal,
}

/// What a `408` says: the request may or may not have been stored.
const OUTCOME_UNKNOWN_TIMEOUT: &str = "the request took longer than allowed; whether it was \
    stored is not known: send it again unchanged, with the same identifier (a referral is \
    never stored twice under one identifier)";

/// What a `503` says when storage failed mid-write.
const OUTCOME_UNKNOWN_UNAVAILABLE: &str = "storage is temporarily unavailable; whether this \
    request was stored is not known: send it again unchanged, with the same identifier, \
    shortly (a referral is never stored twice under one identifier)";

impl From<StoreError> for FhirError {
    fn from(e: StoreError) -> Self {
        FhirError::Unavailable(e)
    }
}

impl From<IntakeError> for FhirError {
    fn from(e: IntakeError) -> Self {
        match e {
            IntakeError::Rejected(Rejection::Structure(issues)) => FhirError::BadRequest(issues),
            IntakeError::Rejected(Rejection::Profile(issues)) => FhirError::Unprocessable(issues),
            IntakeError::Ambiguous => {
                FhirError::PreconditionFailed("If-None-Exist matched more than one referral".into())
            }
            IntakeError::Forbidden(what) => FhirError::Forbidden(what),
            IntakeError::Unroutable(issues) => FhirError::Unprocessable(issues),
            IntakeError::IdentifierReused(original) => FhirError::Refused(
                StatusCode::CONFLICT,
                vec![Issue::error(
                    IssueCode::Duplicate,
                    format!(
                        "this business identifier (ServiceRequest.identifier) was already used by this referrer for a different referral, ServiceRequest/{original}; a referral cannot be changed by sending it again. To replace it, cancel ServiceRequest/{original} (PUT or PATCH with status revoked) and send the new referral under a new identifier; to resend the original, send it unchanged"
                    ),
                )],
            ),
            // (Only BaRS intakes carry a request id; `bars` answers them.)
            IntakeError::AlreadyProcessed(_) => FhirError::Refused(
                StatusCode::CONFLICT,
                vec![Issue::error(
                    IssueCode::Duplicate,
                    "the message has been identified as having already been processed",
                )],
            ),
            IntakeError::Store(e) => FhirError::Unavailable(e),
        }
    }
}

impl From<ChangeError> for FhirError {
    fn from(e: ChangeError) -> Self {
        match e {
            ChangeError::NotFound(what) => FhirError::NotFound(what),
            ChangeError::Conflict(what) => FhirError::Conflict(what),
            ChangeError::Unprocessable(what) => {
                FhirError::Unprocessable(vec![Issue::error(IssueCode::BusinessRule, what)])
            }
            ChangeError::Store(e) => FhirError::Unavailable(e),
        }
    }
}

impl From<Denied> for FhirError {
    fn from(e: Denied) -> Self {
        match e {
            Denied::NotFound(_) => FhirError::NotFound(e.to_string()),
            Denied::NotAReferrer => FhirError::Forbidden(e.to_string()),
            Denied::Store(e) => FhirError::Unavailable(e),
        }
    }
}

impl From<BadFilter> for FhirError {
    fn from(e: BadFilter) -> Self {
        FhirError::BadRequest(vec![Issue::error(IssueCode::Value, e.0)])
    }
}

impl FhirError {
    /// The status and issues this failure is answered with (the BaRS
    /// receiver re-shapes them into its own answers).
    pub fn status_and_issues(self) -> (StatusCode, Vec<Issue>) {
        use FhirError::*;
        match self {
            BadRequest(issues) => (StatusCode::BAD_REQUEST, issues),
            Unprocessable(issues) => (StatusCode::UNPROCESSABLE_ENTITY, issues),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                vec![Issue::error(
                    IssueCode::NotSupported,
                    "send Content-Type: application/fhir+json (or application/json)",
                )],
            ),
            PayloadTooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                vec![Issue::error(
                    IssueCode::TooLong,
                    format!("the request body is larger than the limit of {limit} bytes"),
                )],
            ),
            NotFound(what) => (
                StatusCode::NOT_FOUND,
                vec![Issue::error(IssueCode::NotFound, what)],
            ),
            MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                vec![Issue::error(
                    IssueCode::NotSupported,
                    "this method is not supported here; see GET /fhir/metadata",
                )],
            ),
            PreconditionFailed(what) => (
                StatusCode::PRECONDITION_FAILED,
                vec![Issue::error(IssueCode::Duplicate, what)],
            ),
            Conflict(what) => (
                StatusCode::CONFLICT,
                vec![Issue::error(IssueCode::Conflict, what)],
            ),
            Unauthorized(what) => (
                StatusCode::UNAUTHORIZED,
                vec![Issue::error(IssueCode::Security, what)],
            ),
            Refused(status, issues) => (status, issues),
            TooManyRequests { retry_after_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                vec![Issue::error(
                    IssueCode::Throttled,
                    format!("too many requests with this token; retry after {retry_after_secs} s"),
                )],
            ),
            Busy => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![Issue::error(
                    IssueCode::Transient,
                    "the server is handling as many requests as it may; retry shortly",
                )],
            ),
            // The handler is dropped at the deadline, but a write it had
            // handed to the store may still commit: what happened is not
            // known here, and the answer must not guess.
            Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                vec![Issue::error(IssueCode::Timeout, OUTCOME_UNKNOWN_TIMEOUT)],
            ),
            // Nothing is done before the whole body is in: this one is known.
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                vec![Issue::error(
                    IssueCode::Timeout,
                    "the body was not received in time; nothing was done: send it again",
                )],
            ),
            Unauthenticated { token_sent } => (
                StatusCode::UNAUTHORIZED,
                vec![Issue::error(
                    IssueCode::Login,
                    if token_sent {
                        "the bearer token is not valid"
                    } else {
                        "send Authorization: Bearer <token> (issued by `signpost tokens create`)"
                    },
                )],
            ),
            Forbidden(what) => (
                StatusCode::FORBIDDEN,
                vec![Issue::error(IssueCode::Forbidden, what)],
            ),
            Unavailable(error) => {
                tracing::error!(
                    error.message = %error,
                    error.cause_chain = ?error,
                    "storage failed; answering 503"
                );
                // Only a write known to have been rolled back (or never
                // begun) may say so; any other failure (a commit that
                // errored, a lost connection) leaves the outcome unknown.
                let said = if error.known_not_written() {
                    "storage is temporarily unavailable; nothing was stored: retry later"
                } else {
                    OUTCOME_UNKNOWN_UNAVAILABLE
                };
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    vec![Issue::error(IssueCode::Transient, said)],
                )
            }
            Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                vec![Issue::error(IssueCode::Exception, "internal error")],
            ),
        }
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            FhirError::Unavailable(_) => Some("5".to_owned()),
            FhirError::Busy => Some("1".to_owned()),
            FhirError::TooManyRequests { retry_after_secs } => Some(retry_after_secs.to_string()),
            _ => None,
        };
        // RFC 6750: a missing token gets the bare challenge.
        let challenge = match self {
            FhirError::Unauthenticated { token_sent: false } => Some("Bearer realm=\"signpost\""),
            FhirError::Unauthenticated { token_sent: true } => {
                Some("Bearer realm=\"signpost\", error=\"invalid_token\"")
            }
            _ => None,
        };
        let (status, issues) = self.status_and_issues();
        let mut response =
            FhirResponse::new(status, operation_outcome(&issues).to_string()).into_response();
        if let Some(retry_after) = retry_after.and_then(|r| HeaderValue::from_str(&r).ok()) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        if let Some(challenge) = challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
