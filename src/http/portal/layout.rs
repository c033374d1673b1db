//! The portal's one page layout and the NHS.UK design system components
//! it uses (markup as `nhsuk-frontend` documents it), written with maud,
//! which escapes every interpolated value. Pages work without JavaScript;
//! with it, `portal.js` starts the components' enhancements.

use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::assets::{CSS, JS};

/// The service's name in the header and every title.
pub const SERVICE: &str = "Signpost referrals";

/// Who is signed in, for the header.
pub struct Header<'a> {
    pub user_name: &'a str,
    pub provider_name: &'a str,
    pub csrf: &'a str,
}

/// A whole page. `title` is the page's own title (its `h1`); the
/// document's title adds the service, and "Error: " when the page shows
/// errors.
pub fn page(title: &str, has_errors: bool, header: Option<&Header<'_>>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { @if has_errors { "Error: " } (title) " – " (SERVICE) }
                meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover";
                meta name="theme-color" content="#005eb8";
                link rel="icon" href="/assets/images/favicon.ico" sizes="48x48";
                link rel="icon" href="/assets/images/favicon.svg" sizes="any" type="image/svg+xml";
                link rel="stylesheet" href=(CSS);
            }
            body {
                a class="nhsuk-skip-link" data-module="nhsuk-skip-link" href="#maincontent" { "Skip to main content" }
                header class="nhsuk-header" data-module="nhsuk-header" role="banner" {
                    div class="nhsuk-header__container nhsuk-width-container" {
                        div class="nhsuk-header__service" {
                            a class="nhsuk-header__service-logo" href="/portal" aria-label=(format!("{SERVICE} homepage")) {
                                (nhs_logo())
                                span class="nhsuk-header__service-name" { (SERVICE) }
                            }
                        }
                        @if let Some(header) = header {
                            nav class="nhsuk-header__account" aria-label="Account" {
                                ul class="nhsuk-header__account-list" {
                                    li class="nhsuk-header__account-item" {
                                        (header.user_name) ", " (header.provider_name)
                                    }
                                    li class="nhsuk-header__account-item" {
                                        form class="nhsuk-header__account-form" method="post" action="/portal/sign-out" novalidate {
                                            input type="hidden" name="csrf" value=(header.csrf);
                                            button class="nhsuk-header__account-button" type="submit" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                div class="nhsuk-width-container" {
                    main class="nhsuk-main-wrapper" id="maincontent" {
                        (content)
                    }
                }
                footer class="nhsuk-footer" role="contentinfo" {
                    div class="nhsuk-width-container" {
                        div class="nhsuk-footer__meta" {
                            p class="nhsuk-body-s" { "Signpost – social prescribing referrals" }
                        }
                    }
                }
                script type="module" src=(JS) {}
            }
        }
    }
}

/// The NHS logo, as the header component draws it.
fn nhs_logo() -> Markup {
    html! {
        svg class="nhsuk-header__logo" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 200 80" height="40" width="100" focusable="false" role="img" aria-label="NHS" {
            title { "NHS" }
            path fill="currentcolor" d="M200 0v80H0V0h200Zm-27.5 5.5c-14.5 0-29 5-29 22 0 10.2 7.7 13.5 14.7 16.3l.7.3c5.4 2 10.1 3.9 10.1 8.4 0 6.5-8.5 7.5-14 7.5s-12.5-1.5-16-3.5L135 70c5.5 2 13.5 3.5 20 3.5 15.5 0 32-4.5 32-22.5 0-19.5-25.5-16.5-25.5-25.5 0-5.5 5.5-6.5 12.5-6.5a35 35 0 0 1 14.5 3l4-13.5c-4.5-2-12-3-20-3Zm-131 2h-22l-14 65H22l9-45h.5l13.5 45h21.5l14-65H64l-9 45h-.5l-13-45Zm63 0h-18l-13 65h17l6-28H117l-5.5 28H129l13.5-65H125L119.5 32h-20l5-24.5Z" {}
        }
    }
}

/// The error summary at the top of a form: each problem links to its field.
pub fn error_summary(problems: &[(&str, &str)]) -> Markup {
    html! {
        @if !problems.is_empty() {
            div class="nhsuk-error-summary" data-module="nhsuk-error-summary" {
                div role="alert" {
                    h2 class="nhsuk-error-summary__heading" { "There is a problem" }
                    div class="nhsuk-error-summary__body" {
                        ul class="nhsuk-list nhsuk-error-summary__list" {
                            @for (field, text) in problems {
                                li { a href=(format!("#{field}")) { (text) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A text input with its label, hint and error.
pub struct Input<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub kind: &'a str,
    pub autocomplete: &'a str,
    pub hint: Option<&'a str>,
    pub error: Option<&'a str>,
    pub value: &'a str,
    /// `inputmode="numeric"` and a narrow width (security codes).
    pub numeric: bool,
}

pub fn input(i: &Input<'_>) -> Markup {
    let hint_id = format!("{}-hint", i.id);
    let error_id = format!("{}-error", i.id);
    let described: Vec<&str> = [
        i.hint.map(|_| hint_id.as_str()),
        i.error.map(|_| error_id.as_str()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let class = match (i.error.is_some(), i.numeric) {
        (true, true) => "nhsuk-input nhsuk-input--width-10 nhsuk-input--error",
        (true, false) => "nhsuk-input nhsuk-input--error",
        (false, true) => "nhsuk-input nhsuk-input--width-10",
        (false, false) => "nhsuk-input",
    };
    html! {
        div class=(if i.error.is_some() { "nhsuk-form-group nhsuk-form-group--error" } else { "nhsuk-form-group" }) {
            label class="nhsuk-label" for=(i.id) { (i.label) }
            @if let Some(hint) = i.hint {
                div class="nhsuk-hint" id=(hint_id) { (hint) }
            }
            @if let Some(error) = i.error {
                span class="nhsuk-error-message" id=(error_id) {
                    span class="nhsuk-u-visually-hidden" { "Error:" } " " (error)
                }
            }
            input class=(class) id=(i.id) name=(i.id) type=(i.kind)
                autocomplete=(i.autocomplete) value=(i.value)
                inputmode=[i.numeric.then_some("numeric")]
                spellcheck="false"
                aria-describedby=[(!described.is_empty()).then(|| described.join(" "))];
        }
    }
}

/// Radios in a fieldset with a legend.
pub fn radios(name: &str, legend: &str, options: &[(&str, &str)]) -> Markup {
    html! {
        div class="nhsuk-form-group" {
            fieldset class="nhsuk-fieldset" {
                legend class="nhsuk-fieldset__legend nhsuk-fieldset__legend--s" { (legend) }
                div class="nhsuk-radios" data-module="nhsuk-radios" {
                    @for (i, (value, text)) in options.iter().enumerate() {
                        @let id = format!("{name}-{}", i + 1);
                        div class="nhsuk-radios__item" {
                            input class="nhsuk-radios__input" id=(id) name=(name) type="radio" value=(value) checked[i == 0];
                            label class="nhsuk-label nhsuk-radios__label" for=(id) { (text) }
                        }
                    }
                }
            }
        }
    }
}

/// A textarea with its label.
pub fn textarea(id: &str, label: &str, hint: Option<&str>) -> Markup {
    let hint_id = format!("{id}-hint");
    html! {
        div class="nhsuk-form-group" {
            label class="nhsuk-label" for=(id) { (label) }
            @if let Some(hint) = hint {
                div class="nhsuk-hint" id=(hint_id) { (hint) }
            }
            textarea class="nhsuk-textarea" id=(id) name=(id) rows="3"
                aria-describedby=[hint.map(|_| hint_id.as_str())] {}
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf_field(token: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(token); }
}

/// A primary (or secondary) submit button.
pub fn button(text: &str, secondary: bool) -> Markup {
    html! {
        button class=(if secondary { "nhsuk-button nhsuk-button--secondary" } else { "nhsuk-button" })
            data-module="nhsuk-button" type="submit" { (text) }
    }
}

/// A status tag.
pub fn tag(text: &str) -> Markup {
    let colour = match text {
        "New" => "nhsuk-tag--blue",
        "Accepted" | "In progress" => "nhsuk-tag--green",
        "On hold" => "nhsuk-tag--yellow",
        "Declined" | "Cancelled" | "Failed" => "nhsuk-tag--red",
        _ => "nhsuk-tag--grey",
    };
    html! { strong class=(format!("nhsuk-tag {colour}")) { (text) } }
}

/// A line break for each newline in text (escaped).
pub fn multiline(text: &str) -> Markup {
    html! {
        @for (i, line) in text.lines().enumerate() {
            @if i > 0 { br; }
            (line)
        }
    }
}

/// Raw, trusted markup (the QR code's SVG, made by the `qrcode` crate
/// from a URI of our own).
pub fn trusted(svg: String) -> Markup {
    PreEscaped(svg)
}
