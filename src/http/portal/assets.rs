//! The NHS.UK design system's built CSS, JavaScript and icons
//! (`static/nhsuk-frontend/`, version [`NHSUK_FRONTEND_VERSION`]; see the
//! README for updating) and the portal's own script, compiled into the
//! binary and served under `/assets/`. The CSS and JavaScript carry their
//! version in their names, so they are cached for a year as immutable;
//! icons and `portal.js` for a day.

use axum::{
    Router,
    extract::Path,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

/// The `nhsuk-frontend` release in `static/nhsuk-frontend/`.
pub const NHSUK_FRONTEND_VERSION: &str = "10.6.1";
/// The stylesheet's URL.
pub const CSS: &str = "/assets/nhsuk-frontend-10.6.1.min.css";
/// The portal's script's URL (a module that imports the design system's).
pub const JS: &str = "/assets/portal.js";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const A_DAY: &str = "public, max-age=86400";

/// One file: its name under `/assets/`, content type, caching and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    cache: &'static str,
    bytes: &'static [u8],
}

macro_rules! image {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: concat!("images/", $name),
            content_type: $content_type,
            cache: A_DAY,
            bytes: include_bytes!(concat!("../../../static/nhsuk-frontend/images/", $name)),
        }
    };
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "nhsuk-frontend-10.6.1.min.css",
        content_type: "text/css; charset=utf-8",
        cache: IMMUTABLE,
        bytes: include_bytes!("../../../static/nhsuk-frontend/nhsuk-frontend-10.6.1.min.css"),
    },
    Asset {
        name: "nhsuk-frontend-10.6.1.min.js",
        content_type: "text/javascript; charset=utf-8",
        cache: IMMUTABLE,
        bytes: include_bytes!("../../../static/nhsuk-frontend/nhsuk-frontend-10.6.1.min.js"),
    },
    Asset {
        name: "portal.js",
        content_type: "text/javascript; charset=utf-8",
        cache: A_DAY,
        bytes: include_bytes!("../../../static/portal.js"),
    },
    image!("favicon.ico", "image/x-icon"),
    image!("favicon.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-down-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-down.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-left-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-left.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-right-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-right.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-up-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-up-down.svg", "image/svg+xml"),
    image!("nhsuk-icon-arrow-up.svg", "image/svg+xml"),
    image!("nhsuk-icon-chevron-down-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-chevron-left-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-chevron-right-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-chevron-up-circle.svg", "image/svg+xml"),
    image!("nhsuk-icon-cross.svg", "image/svg+xml"),
    image!("nhsuk-icon-mask.svg", "image/svg+xml"),
    image!("nhsuk-icon-minus.svg", "image/svg+xml"),
    image!("nhsuk-icon-plus.svg", "image/svg+xml"),
    image!("nhsuk-icon-search.svg", "image/svg+xml"),
    image!("nhsuk-icon-tick.svg", "image/svg+xml"),
    image!("nhsuk-icon-user.svg", "image/svg+xml"),
];

/// `GET /assets/…`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/assets/{name}", get(asset))
        .route("/assets/images/{name}", get(image))
}

async fn asset(Path(name): Path<String>) -> Response {
    serve(&name)
}

async fn image(Path(name): Path<String>) -> Response {
    serve(&format!("images/{name}"))
}

fn serve(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(asset) => (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, asset.cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            asset.bytes,
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CACHE_CONTROL, "no-store")],
            "not found",
        )
            .into_response(),
    }
}
