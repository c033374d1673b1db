//! The `signpost` binary's start-up contract: bad configuration stops it
//! with a message naming the file and key; `migrate` creates the database;
//! `--config` is accepted after any subcommand; `erase` asks before erasing.

use std::process::Command;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn signpost(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signpost"));
    command
        .args(args)
        .current_dir(MANIFEST_DIR)
        .env_remove("SIGNPOST_LISTEN")
        .env_remove("SIGNPOST_DATABASE_URL");
    command
}

#[test]
fn serve_refuses_to_start_on_an_unknown_key_naming_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signpost.toml");
    let sample = std::fs::read_to_string(format!("{MANIFEST_DIR}/config/signpost.toml")).unwrap();
    std::fs::write(
        &config,
        sample.replace(
            "[providers.activelives]",
            "[providers.activelives]\nintake_ulr = \"x\"",
        ),
    )
    .unwrap();

    let output = signpost(&["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("intake_ulr"), "{stderr}");
    assert!(stderr.contains(config.to_str().unwrap()), "{stderr}");
}

#[test]
fn serve_refuses_to_start_on_inconsistent_settings_listing_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("signpost.toml");
    let sample = std::fs::read_to_string(format!("{MANIFEST_DIR}/config/signpost.toml")).unwrap();
    let broken = sample
        .replace(
            "http://127.0.0.1:9101/referrals",
            "http://provider.example/referrals",
        )
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"everywhere\"");
    std::fs::write(&config, broken).unwrap();

    let output = signpost(&["serve", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`providers.activelives.intake_url`"),
        "{stderr}"
    );
    assert!(stderr.contains("`listen`"), "{stderr}");
}

#[test]
fn a_missing_configuration_file_is_reported() {
    let output = signpost(&["serve", "--config", "no/such/signpost.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no/such/signpost.toml"), "{stderr}");
}

#[test]
fn migrate_creates_the_sqlite_database_and_its_folder() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("nested/folder/signpost.db");

    let output = signpost(&["migrate"])
        .env(
            "SIGNPOST_DATABASE_URL",
            format!("sqlite://{}", database.display()),
        )
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("database is up to date"));
    assert!(database.exists());
    // Idempotent.
    let again = signpost(&["migrate"])
        .env(
            "SIGNPOST_DATABASE_URL",
            format!("sqlite://{}", database.display()),
        )
        .output()
        .unwrap();
    assert!(again.status.success());
}

#[test]
fn config_is_accepted_after_any_subcommand() {
    for args in [
        &[
            "tokens",
            "create",
            "--referrer",
            "riverside-surgery",
            "--config",
        ][..],
        &["tokens", "--config"],
        &["deliveries", "list", "--config"],
        &["endpoints", "list", "--config"],
        &["purge", "--days", "1", "--config"],
        &["erase", "--nhs-number", "9990000018", "--yes", "--config"],
        &["migrate", "--config"],
        &["worker", "--config"],
    ] {
        let mut args = args.to_vec();
        args.push("no/such/signpost.toml");
        if args[0] == "tokens" && args.len() == 3 {
            args.extend(["list"]);
        }
        let output = signpost(&args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("no/such/signpost.toml") && stderr.contains("cannot read the file"),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn erase_without_yes_refuses_when_stdin_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("signpost.db");
    let url = format!("sqlite://{}", database.display());
    let output = signpost(&["erase", "--nhs-number", "9990000018"])
        .env("SIGNPOST_DATABASE_URL", &url)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("not a terminal") && stderr.contains("--yes"),
        "{stderr}"
    );
    assert!(!database.exists(), "nothing was opened");

    let output = signpost(&["erase", "--nhs-number", "9990000018", "--yes"])
        .env("SIGNPOST_DATABASE_URL", &url)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "0 referral(s) erased");
}

#[test]
fn erase_refuses_a_number_that_is_not_a_valid_nhs_number() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("signpost.db");
    let url = format!("sqlite://{}", database.display());
    // Ten digits, but the check digit of 999000001 is 8.
    for bad in ["9990000017", "999000001", "999 000 0018"] {
        let output = signpost(&["erase", "--nhs-number", bad, "--yes"])
            .env("SIGNPOST_DATABASE_URL", &url)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!output.status.success(), "{bad}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("check digit"), "{bad}: {stderr}");
        assert!(!database.exists(), "nothing was opened");
    }
}

/// `signpost validate` makes intake's checks: a referral no provider takes
/// is invalid (exit 1, the routing issue), and with `--referrer` so is one
/// from an organisation that is not that referrer's.
#[test]
fn validate_routes_and_with_a_referrer_attributes_as_intake_does() {
    let unroutable = "tests/fixtures/referrals/refused/no-provider-matches.json";
    let output = signpost(&["validate", unroutable]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("\"code\": \"business-rule\""), "{stdout}");

    let valid = "tests/fixtures/referrals/valid/activelives-exercise.json";
    let output = signpost(&["validate", valid]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("routed to provider activelives"),
        "{stdout}"
    );

    // From an ODS code no referrer has: valid without a referrer named,
    // refused for the referrer (the sample configuration's).
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.json");
    let text = std::fs::read_to_string(format!("{MANIFEST_DIR}/{valid}")).unwrap();
    std::fs::write(&foreign, text.replace("\"A81001\"", "\"Y99999\"")).unwrap();
    let foreign = foreign.to_str().unwrap();
    let output = signpost(&["validate", foreign]).output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let output = signpost(&["validate", foreign, "--referrer", "riverside-surgery"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("not registered"), "{stdout}");
    assert!(
        stdout.contains("ServiceRequest.contained[3].identifier"),
        "{stdout}"
    );
}

/// `signpost validate` reads a file under the limits intake reads a body
/// under: a referral with an array longer than `limits.max_array_length`
/// (default 1000), which intake refuses, is not reported valid.
#[test]
fn validate_reads_under_the_body_limits_intake_applies() {
    let valid = "tests/fixtures/referrals/valid/activelives-exercise.json";
    let mut referral: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{MANIFEST_DIR}/{valid}")).unwrap())
            .unwrap();
    referral["note"] = serde_json::json!(
        (0..1001)
            .map(|i| serde_json::json!({"text": format!("note {i}")}))
            .collect::<Vec<_>>()
    );
    let dir = tempfile::tempdir().unwrap();
    let long = dir.path().join("long.json");
    std::fs::write(&long, referral.to_string()).unwrap();
    let output = signpost(&["validate", long.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("longer than 1000"), "{stdout}{stderr}");
}
