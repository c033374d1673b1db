//! Checks across the whole mapping set, for what no single file shows and
//! what breaks only with real traffic: every mapping is for a configured
//! provider and has fixtures in the folder named after it, and every
//! fixture referral routes to its own provider and to no other (an overlap
//! would refuse that provider's referrals with a `422` the practice cannot
//! fix; a gap would refuse them all). Run by `signpost mappings check` and
//! `test`, at start-up and before every hot reload.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Mapping, MappingError, MappingSet, fixtures};

/// The folder of `mappings/tests/` whose referrals no provider may take.
pub const UNROUTED: &str = "routing";

/// Every problem of the set as a whole. `configured` is the provider ids of
/// the configuration, when there is one to check against.
pub fn check(
    set: &MappingSet,
    tests_dir: &Path,
    configured: Option<&[String]>,
) -> Vec<MappingError> {
    let mut errors = Vec::new();
    if let Some(configured) = configured {
        errors.extend(configuration(set, tests_dir, configured));
    }
    errors.extend(fixture_folders(set, tests_dir));
    for mapping in set.mappings.values() {
        for input in fixtures::inputs(&tests_dir.join(&mapping.provider)) {
            errors.extend(routes_to_its_own(set, mapping, &input));
        }
    }
    for input in fixtures::inputs(&tests_dir.join(UNROUTED)) {
        errors.extend(routes_nowhere(set, &input));
    }
    errors
}

fn configuration(set: &MappingSet, tests_dir: &Path, configured: &[String]) -> Vec<MappingError> {
    let mappings_dir = tests_dir.parent().unwrap_or(tests_dir);
    let mut errors = Vec::new();
    for id in configured {
        if !set.mappings.contains_key(id) {
            errors.push(MappingError {
                file: mappings_dir.join(format!("{id}.yaml")),
                line: None,
                column: None,
                message: format!(
                    "provider {id} is configured ([providers.{id}]) but no mapping file says `provider: {id}`; write one (`signpost mappings new {id}` starts it) or remove the provider from the configuration"
                ),
            });
        }
    }
    for (id, mapping) in &set.mappings {
        if !configured.contains(id) {
            errors.push(mapping.error_at_provider(format!(
                "provider `{id}` is not configured (configured: {}); correct `provider:`, or add a [providers.{id}] block to the configuration",
                list(configured)
            )));
        }
    }
    errors
}

/// Each mapping has its folder `tests/<provider>/` with at least one
/// referral and one status fixture; each folder belongs to a mapping.
fn fixture_folders(set: &MappingSet, tests_dir: &Path) -> Vec<MappingError> {
    let mut errors = Vec::new();
    let folders: Vec<String> = std::fs::read_dir(tests_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let orphans: Vec<&String> = folders
        .iter()
        .filter(|f| *f != UNROUTED && !set.mappings.contains_key(*f))
        .collect();
    for (id, mapping) in &set.mappings {
        let dir = tests_dir.join(id);
        if !dir.is_dir() {
            let hint = match orphans.as_slice() {
                [] => String::new(),
                some => format!(
                    " (if they are in {}, rename that folder to `{id}`)",
                    some.iter()
                        .map(|f| format!("`{}/`", tests_dir.join(f).display()))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
            };
            errors.push(mapping.error_at_provider(format!(
                "no fixtures folder {}/: a mapping's fixtures are found by its provider id{hint}; without them nothing it does is tested",
                dir.display()
            )));
            continue;
        }
        if fixtures::inputs(&dir).is_empty() {
            errors.push(mapping.error_at_provider(format!(
                "no referral fixtures in {}/: add NAME.input.json (a referral this provider takes, in canonical form) with NAME.expected.json (the payload it must receive)",
                dir.display()
            )));
        }
        if fixtures::status_fixtures(&dir).is_empty() {
            errors.push(mapping.error_at_provider(format!(
                "no status fixtures in {}/status/: add one NAME.json per callback the provider sends ({{\"from_status\", \"callback\", \"expected_task_change\"}})",
                dir.display()
            )));
        }
    }
    for orphan in orphans {
        errors.push(MappingError {
            file: tests_dir.join(orphan),
            line: None,
            column: None,
            message: format!(
                "this fixtures folder belongs to no mapping, so its fixtures would never run; name it after the `provider:` of its mapping ({}), or move referrals no provider may take to {}/",
                list(&set.mappings.keys().cloned().collect::<Vec<_>>()),
                UNROUTED
            ),
        });
    }
    errors
}

/// A fixture referral of `mapping` must be taken by it and by nothing else.
fn routes_to_its_own(set: &MappingSet, mapping: &Mapping, input: &Path) -> Vec<MappingError> {
    let referral = match read(input) {
        Ok(referral) => referral,
        Err(error) => return vec![error],
    };
    let takers = match set.takers(&referral) {
        Ok(takers) => takers,
        Err(issue) => {
            return vec![mapping.error_at_accepts(format!(
                "routing: fixture {}: {}",
                input.display(),
                issue.diagnostics
            ))];
        }
    };
    let own = &mapping.provider;
    let fixture = input.display();
    let others = |list: &[std::sync::Arc<Mapping>]| -> Vec<std::sync::Arc<Mapping>> {
        list.iter()
            .filter(|m| m.provider != *own)
            .cloned()
            .collect()
    };
    // The performer decides when it names anyone.
    if !takers.by_performer.is_empty() {
        let named_own = takers.by_performer.iter().any(|m| m.provider == *own);
        return others(&takers.by_performer)
            .iter()
            .map(|other| {
                other.error_at_provider(format!(
                    "routing: fixture {fixture} of {own} names {} in its performer (performer_ods {:?}){}, so real referrals like it would {}; give each provider its own ODS codes",
                    other.provider,
                    other.performer_ods(),
                    if named_own { format!(" as well as {own}") } else { String::new() },
                    if named_own { "be refused with 422 (several providers named)".to_owned() } else { format!("go to {}", other.provider) },
                ))
            })
            .collect();
    }
    let accepted_by_own = takers.by_accepts.iter().any(|m| m.provider == *own);
    let mut errors: Vec<MappingError> = others(&takers.by_accepts)
        .iter()
        .map(|other| {
            other.error_at_accepts(format!(
                "routing: fixture {fixture} of {own} is also taken by {}: {own}'s route.accepts `{}` {} and {}'s route.accepts `{}` holds too, so real referrals like it would {}; make the predicates exclusive",
                other.provider,
                mapping.accepts_source(),
                if accepted_by_own { "holds" } else { "does not hold" },
                other.provider,
                other.accepts_source(),
                if accepted_by_own {
                    "be refused with 422 (several providers take them)".to_owned()
                } else {
                    format!("go to {}", other.provider)
                },
            ))
        })
        .collect();
    if !accepted_by_own && errors.is_empty() {
        let by_performer = if mapping.performer_ods().is_empty() {
            String::new()
        } else {
            format!(
                ", and its performer does not name {own}'s ODS codes {:?}",
                mapping.performer_ods()
            )
        };
        errors.push(mapping.error_at_accepts(format!(
            "routing: fixture {fixture} of {own} is taken by no provider: {own}'s route.accepts `{}` does not hold for it{by_performer}, so real referrals like it would be refused with 422; widen route.accepts, or name {own} in the fixture's performer",
            mapping.accepts_source()
        )));
    }
    errors
}

/// A referral in `tests/routing/` must be taken by no provider.
fn routes_nowhere(set: &MappingSet, input: &Path) -> Vec<MappingError> {
    let referral = match read(input) {
        Ok(referral) => referral,
        Err(error) => return vec![error],
    };
    let Ok(takers) = set.takers(&referral) else {
        return Vec::new();
    };
    takers
        .by_performer
        .iter()
        .chain(&takers.by_accepts)
        .map(|taker| {
            taker.error_at_accepts(format!(
                "routing: fixture {} is one no provider may take, but {} takes it (route.accepts `{}`, performer_ods {:?}); narrow the predicate, or move the fixture to that provider's folder",
                input.display(),
                taker.provider,
                taker.accepts_source(),
                taker.performer_ods()
            ))
        })
        .collect()
}

fn read(path: &Path) -> Result<Value, MappingError> {
    let error = |message: String| MappingError {
        file: PathBuf::from(path),
        line: None,
        column: None,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(format!("cannot read it: {e}")))?;
    serde_json::from_str(&text).map_err(|e| MappingError {
        line: Some(e.line()),
        column: Some(e.column()),
        ..error(format!("not JSON: {e}"))
    })
}

fn list(ids: &[String]) -> String {
    if ids.is_empty() {
        "none".to_owned()
    } else {
        ids.join(", ")
    }
}
