//! Problems found in a request, in the vocabulary of a FHIR
//! `OperationOutcome` issue, independent of HTTP. Validation and the domain
//! produce [`Issue`]s; the HTTP layer (`http`) renders them.

use serde::Serialize;
use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

/// The subset of the FHIR `issue-type` value set that Signpost reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum IssueCode {
    Invalid,
    Structure,
    Required,
    Value,
    Invariant,
    Security,
    Login,
    Forbidden,
    NotSupported,
    Duplicate,
    NotFound,
    TooLong,
    CodeInvalid,
    BusinessRule,
    Conflict,
    Transient,
    Throttled,
    Timeout,
    Exception,
    Informational,
    Processing,
}

/// One problem (or note) about a request, located by a FHIRPath expression
/// such as `ServiceRequest.subject.reference`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    /// Human-readable explanation. Never contains data copied from the
    /// request beyond element names and codes: it may be logged.
    pub diagnostics: String,
    /// Where the problem is, as a FHIRPath expression.
    pub expression: Option<String>,
}

impl Issue {
    /// An error-severity issue.
    pub fn error(code: IssueCode, diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }

    /// Attach the location of the problem.
    #[must_use]
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }

    /// This issue as an `OperationOutcome.issue` element.
    pub fn to_fhir(&self) -> Value {
        let mut issue = json!({
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(expression) = &self.expression {
            issue["expression"] = json!([expression]);
        }
        issue
    }
}

/// An `OperationOutcome` resource holding `issues`.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": issues.iter().map(Issue::to_fhir).collect::<Vec<_>>(),
    })
}
