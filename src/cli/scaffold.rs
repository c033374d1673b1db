//! `signpost mappings new <provider>`: the files a new provider needs, each
//! saying what to fill in, so that adding a provider is a recipe. The
//! templates are in `scaffold/`; as written they pass `mappings check` and
//! `mappings test` once the printed configuration block is pasted.

use std::{path::Path, process::ExitCode};

use super::fail;

/// `(where, template)`: where relative to the mappings or schemas folder.
const MAPPING_FILES: &[(&str, &str)] = &[
    ("__PROVIDER__.yaml", include_str!("scaffold/mapping.yaml")),
    (
        "tests/__PROVIDER__/__PROVIDER__-example.input.json",
        include_str!("scaffold/referral.input.json"),
    ),
    (
        "tests/__PROVIDER__/__PROVIDER__-example.expected.json",
        include_str!("scaffold/referral.expected.json"),
    ),
    (
        "tests/__PROVIDER__/status/accepted.json",
        include_str!("scaffold/status.json"),
    ),
];
const SCHEMA_FILES: &[(&str, &str)] = &[
    (
        "providers/__PROVIDER__.schema.json",
        include_str!("scaffold/output.schema.json"),
    ),
    (
        "providers/__PROVIDER__.status.schema.json",
        include_str!("scaffold/status.schema.json"),
    ),
];
const CONFIG_BLOCK: &str = include_str!("scaffold/config.toml");

pub(super) fn new_provider(provider: &str, mappings: &Path, schemas: &Path) -> ExitCode {
    if provider.is_empty()
        || !provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return fail(format!(
            "{provider:?} is not a provider id: use a-z, 0-9 and '-' (e.g. walking-club)"
        ));
    }
    // Its fixtures folder would be the one for referrals no provider takes.
    if provider == crate::mapping::set_check::UNROUTED {
        return fail(format!(
            "{provider:?} is reserved (mappings/tests/{provider}/ holds the referrals no provider takes); choose another id"
        ));
    }
    let fill = |text: &str| {
        text.replace("__PROVIDER__", provider).replace(
            "__UPPER__",
            &provider.to_ascii_uppercase().replace('-', "_"),
        )
    };
    let files: Vec<(std::path::PathBuf, String)> = MAPPING_FILES
        .iter()
        .map(|(path, text)| (mappings.join(fill(path)), fill(text)))
        .chain(
            SCHEMA_FILES
                .iter()
                .map(|(path, text)| (schemas.join(fill(path)), fill(text))),
        )
        .collect();
    // Never overwrite an integrator's work.
    if let Some((existing, _)) = files.iter().find(|(path, _)| path.exists()) {
        return fail(format!(
            "{} already exists; nothing written (remove it, or choose another id)",
            existing.display()
        ));
    }
    for (path, text) in &files {
        let written = path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| std::fs::write(path, text));
        if let Err(e) = written {
            return fail(format!("{}: {e}", path.display()));
        }
        eprintln!("wrote {}", path.display());
    }
    println!("{}", fill(CONFIG_BLOCK).trim_end());
    eprintln!(
        "\nNext: paste the block above into the configuration, fill in every TODO in the files written, then run\n  signpost mappings check && signpost mappings test\nand restart the server (a new provider is configuration; later mapping edits reload live)."
    );
    ExitCode::SUCCESS
}
