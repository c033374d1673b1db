//! FHIR paths in their trailing-slash form (`/fhir/`, `/fhir/Task/`).
//!
//! FHIR clients build URLs by joining a path onto the base URL, and several
//! (the SMART on FHIR Python client `fhirclient` among them) keep the base
//! with a trailing slash and post transactions to the base itself, so
//! `POST /fhir/` must mean `POST /fhir`. axum's router matches paths
//! exactly, so the path is rewritten before routing: this runs outside the
//! router (see [`super::super::router`]).

use axum::{
    extract::Request,
    http::{Uri, uri::PathAndQuery},
};

/// The request with one or more trailing slashes removed from a path under
/// `/fhir` (`/fhir/` becomes `/fhir`); any other request as it came.
pub async fn trim(mut request: Request) -> Request {
    if let Some(uri) = trimmed(request.uri()) {
        *request.uri_mut() = uri;
    }
    request
}

fn trimmed(uri: &Uri) -> Option<Uri> {
    let path = uri.path();
    if !(path.starts_with("/fhir/") && path.ends_with('/')) {
        return None;
    }
    let path = path.trim_end_matches('/');
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).ok()?);
    Uri::from_parts(parts).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trim_of(uri: &str) -> Option<String> {
        trimmed(&uri.parse().unwrap()).map(|u| u.to_string())
    }

    #[test]
    fn fhir_paths_lose_their_trailing_slashes_and_keep_their_query() {
        assert_eq!(trim_of("/fhir/").as_deref(), Some("/fhir"));
        assert_eq!(trim_of("/fhir//").as_deref(), Some("/fhir"));
        assert_eq!(
            trim_of("/fhir/Task/?focus=ServiceRequest/1").as_deref(),
            Some("/fhir/Task?focus=ServiceRequest/1")
        );
    }

    #[test]
    fn other_paths_are_left_alone() {
        assert_eq!(trim_of("/fhir"), None);
        assert_eq!(trim_of("/fhir/Task"), None);
        assert_eq!(trim_of("/admin/deliveries/"), None);
        assert_eq!(trim_of("/fhirx/"), None);
    }
}
