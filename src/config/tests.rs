use super::*;
use std::time::Duration;

use crate::webhooks::Secret;

fn endpoint(text: &str) -> crate::domain::Endpoint {
    text.parse().unwrap()
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml(text, Path::new("test.toml"), &HashMap::new())
}

#[test]
fn the_sample_configuration_is_valid() {
    let text = include_str!("../../config/signpost.toml");
    let config = load(text).expect("sample config loads");
    // One provider for each mapping file: adding a provider adds both.
    let mapped: std::collections::BTreeSet<String> =
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings"))
            .unwrap()
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".yaml").map(str::to_owned)
            })
            .collect();
    assert!(mapped.len() >= 3, "{mapped:?}");
    let configured: std::collections::BTreeSet<String> =
        config.providers.keys().map(|id| id.to_string()).collect();
    assert_eq!(configured, mapped);
    assert!(config.providers.contains_key("activelives"));
    assert_eq!(config.referrers.len(), 1);
}

#[test]
fn an_unknown_key_is_refused_naming_the_key_and_file() {
    let err = load("listen = \"127.0.0.1:1\"\nlisten_adress = \"x\"\n").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("test.toml"), "{text}");
    assert!(text.contains("listen_adress"), "{text}");
}

#[test]
fn an_unknown_key_inside_a_provider_table_is_refused() {
    let err = load("[providers.x]\nintake_url = \"https://x.example/\"\nintake_ulr = \"y\"\n")
        .unwrap_err();
    assert!(err.to_string().contains("intake_ulr"), "{err}");
}

#[test]
fn limits_are_read_and_checked() {
    let config = load(
        "[limits]\nmax_array_length = 10\nrequests_per_second = 2.5\nburst = 4\nmax_concurrent_requests = 8\nrequest_timeout = \"5s\"\nheader_read_timeout = \"2s\"\nmax_unverified_uploads = 3\nunverified_body_timeout = \"1s\"\nidle_timeout = \"9s\"\nhttp2_keep_alive_interval = \"3s\"\nhttp2_keep_alive_timeout = \"1s\"\nhttp2_max_concurrent_streams = 4\nmax_connections = 50\nmax_connections_per_client = 5\nmax_requests_per_client = 6\n",
    )
    .unwrap();
    assert_eq!(
        config.limits,
        Limits {
            max_array_length: 10,
            requests_per_second: 2.5,
            burst: 4,
            max_concurrent_requests: 8,
            request_timeout: std::time::Duration::from_secs(5),
            header_read_timeout: std::time::Duration::from_secs(2),
            max_unverified_uploads: 3,
            unverified_body_timeout: std::time::Duration::from_secs(1),
            idle_timeout: std::time::Duration::from_secs(9),
            http2_keep_alive_interval: std::time::Duration::from_secs(3),
            http2_keep_alive_timeout: std::time::Duration::from_secs(1),
            http2_max_concurrent_streams: 4,
            max_connections: 50,
            max_connections_per_client: 5,
            max_requests_per_client: 6,
        }
    );
    assert_eq!(load("").unwrap().limits, Limits::default());
    let err =
        load("[limits]\nrequests_per_second = 0.0\nburst = 0\nrequest_timeout = \"soon\"\nheader_read_timeout = \"0s\"\nmax_unverified_uploads = 0\nunverified_body_timeout = \"never\"\nidle_timeout = \"0s\"\nmax_connections_per_client = 0\n")
            .unwrap_err();
    assert_eq!(err.problems.len(), 8, "{err}");
}

#[test]
fn tls_and_client_certificate_names_are_checked() {
    let referrer = |names: &str| {
        format!(
            "[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\nsecret_env = \"R\"\nclient_certificate_names = {names}\n"
        )
    };
    let config = load(&format!(
        "[tls]\ncertificate = \"s.pem\"\nprivate_key = \"s.key\"\nclient_ca = \"ca.pem\"\n{}",
        referrer("[\"gp.example.nhs.uk\"]")
    ))
    .unwrap();
    let tls = config.tls.unwrap();
    assert_eq!(tls.client_ca.as_deref(), Some(Path::new("ca.pem")));
    assert!(!tls.require_client_certificate);
    assert_eq!(
        config.referrers["r"].client_certificate_names,
        ["gp.example.nhs.uk"]
    );

    let err = load("[tls]\nrequire_client_certificate = true\n").unwrap_err();
    assert_eq!(
        err.problems,
        [
            "`tls.certificate`: missing (a PEM certificate chain)",
            "`tls.private_key`: missing (a PEM private key)",
            "`tls.require_client_certificate`: needs `tls.client_ca` to verify the certificates against",
        ]
    );
    let err = load(&referrer("[\"not a name\"]")).unwrap_err();
    assert!(
        err.problems[0].starts_with("`referrers.r.client_certificate_names`"),
        "{err}"
    );
}

#[test]
fn private_and_metadata_addresses_need_an_explicit_allowance() {
    let table = |url: &str, extra: &str| {
        format!("[providers.a]\nintake_url = \"{url}\"\nsecret_env = \"A\"\n{extra}\n")
    };
    for url in [
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/intake",
        "https://[fd00:ec2::254]/",
        "https://127.0.0.1/intake",
        "https://0x7f000001/intake",
        "https://127.1/intake",
        "https://[::1]/intake",
        "https://[::127.0.0.1]/intake",
        "https://[::ffff:169.254.169.254]/intake",
        "https://[64:ff9b::a9fe:a9fe]/intake",
        "https://[2002:a9fe:a9fe::]/intake",
        "https://[fec0::1]/intake",
    ] {
        let err = load(&table(url, "")).unwrap_err();
        assert!(
            err.to_string().contains("allow_private_network"),
            "{url}: {err}"
        );
        assert!(
            load(&table(url, "allow_private_network = true")).is_ok(),
            "{url}"
        );
    }
    assert!(load(&table("https://51.140.1.1/intake", "")).is_ok());
}

#[test]
fn plain_http_to_loopback_needs_an_explicit_allowance() {
    let table = |extra: &str| {
        format!(
            "[providers.a]\nintake_url = \"http://127.0.0.1:9/x\"\nsecret_env = \"A\"\n{extra}\n"
        )
    };
    let err = load(&table("allow_private_network = true")).unwrap_err();
    assert!(err.to_string().contains("allow_insecure_http"), "{err}");
    assert!(
        load(&table(
            "allow_insecure_http = true\nallow_private_network = true"
        ))
        .is_ok()
    );
    // Loopback is not public: plain http or not, it needs the allowance.
    let err = load(&table("allow_insecure_http = true")).unwrap_err();
    assert!(err.to_string().contains("allow_private_network"), "{err}");
    let err = load(
        "[providers.a]\nintake_url = \"http://provider.example/x\"\nsecret_env = \"A\"\nallow_insecure_http = true\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("only to a loopback"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load(
        r#"
        listen = "nowhere"
        [providers.a]
        intake_url = "http://provider.example/intake"
        secret_env = "A_SECRET"
        [providers.b]
        secret_env = "B_SECRET"
        [referrers.r]
        ods_codes = ["A81001"]
        callback_url = "ftp://x"
        secret_env = "R_SECRET"
        [referrers.s]
        ods_codes = ["A81001"]
        callback_url = "https://s.example/cb"
        secret_env = "S_SECRET"
        "#,
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "`listen`",
        "`providers.a.intake_url`: plain http",
        "`providers.b.intake_url`: missing",
        "`referrers.r.callback_url`: scheme",
        "also listed by referrers.r",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), 5, "{text}");
}

#[test]
fn environment_variables_override_the_file() {
    let env = HashMap::from([
        (ENV_LISTEN.to_owned(), "127.0.0.1:9999".to_owned()),
        (
            ENV_DATABASE_URL.to_owned(),
            "postgres://db.example/x".to_owned(),
        ),
    ]);
    let config = Config::from_toml(
        "listen = \"127.0.0.1:1\"\ndatabase_url = \"sqlite://a.db\"\n",
        Path::new("t.toml"),
        &env,
    )
    .unwrap();
    assert_eq!(config.listen.port(), 9999);
    assert_eq!(config.database_url, "postgres://db.example/x");
}

#[test]
fn a_bad_database_url_does_not_echo_its_password() {
    let err = load("database_url = \"mysql://u:hunter2@h/db\"\n").unwrap_err();
    assert!(!err.to_string().contains("hunter2"));
}

/// A provider table with the given secret lines.
fn provider_with(lines: &str) -> String {
    format!("[providers.p]\nintake_url = \"https://p.example/intake\"\n{lines}\n")
}

#[test]
fn a_secret_must_be_named() {
    let neither = load(&provider_with("")).unwrap_err();
    assert_eq!(neither.problems.len(), 1, "{neither}");
    assert!(neither.problems[0].starts_with("`providers.p`: missing the webhook signing secret"));

    let referrer =
        load("[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\n")
            .unwrap_err();
    assert!(
        referrer.problems[0].starts_with("`referrers.r`: missing"),
        "{referrer}"
    );
}

#[test]
fn a_secret_variable_must_be_a_variable_name() {
    let err = load(&provider_with("secret_env = \"$P SECRET\"")).unwrap_err();
    assert!(
        err.problems[0].starts_with("`providers.p.secret_env`:"),
        "{err}"
    );
}

#[test]
fn a_rotation_names_the_previous_secret_and_the_end_of_its_grace_period() {
    let config = load(&provider_with(
        "secret_env = \"P_NEW\"\nprevious_secret_env = \"P_OLD\"\nprevious_secret_until = \"2026-12-01T00:00:00Z\"",
    ))
    .unwrap();
    let p = &config.providers["p"];
    assert!(matches!(&p.secret, SecretSource::Env(v) if v == "P_NEW"));
    assert!(matches!(&p.previous_secret, Some(SecretSource::Env(v)) if v == "P_OLD"));
    assert_eq!(
        p.previous_secret_until.unwrap().to_rfc3339(),
        "2026-12-01T00:00:00+00:00"
    );

    // A TOML date-time (unquoted) works as well, with any offset.
    let config = load(&provider_with(
        "secret_env = \"P_NEW\"\nprevious_secret_file = \"old.whsec\"\nprevious_secret_until = 2026-12-01T01:00:00+01:00",
    ))
    .unwrap();
    let p = &config.providers["p"];
    assert!(
        matches!(&p.previous_secret, Some(SecretSource::File(f)) if f == Path::new("old.whsec"))
    );
    assert_eq!(
        p.previous_secret_until.unwrap().to_rfc3339(),
        "2026-12-01T00:00:00+00:00"
    );
}

#[test]
fn rotation_problems_name_the_key() {
    let cases = [
        (
            "previous_secret_env = \"P_OLD\"",
            "`providers.p.previous_secret_until`: missing",
        ),
        (
            "previous_secret_until = \"2026-12-01T00:00:00Z\"",
            "`providers.p.previous_secret_until`: there is no",
        ),
        (
            "previous_secret_env = \"P_OLD\"\nprevious_secret_until = \"next week\"",
            "`providers.p.previous_secret_until`: not a date-time",
        ),
        (
            // No offset: ambiguous, refused.
            "previous_secret_env = \"P_OLD\"\nprevious_secret_until = 2026-12-01T00:00:00",
            "`providers.p.previous_secret_until`: not a date-time",
        ),
    ];
    for (lines, expected) in cases {
        let err = load(&provider_with(&format!("secret_env = \"P_NEW\"\n{lines}"))).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with(expected), "{lines}:\n{err}");
    }
}

/// The TOML form of a path.
fn toml_path(path: &Path) -> String {
    toml::Value::String(path.display().to_string()).to_string()
}

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn the_sample_configuration_reads_secrets_from_variables_else_files_under_data() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_PATH);
    let text = std::fs::read_to_string(&path).unwrap();
    let secret = regex::Regex::new("whsec_[A-Za-z0-9+/=]{16,}").unwrap();
    assert!(!secret.is_match(&text), "a secret is written in the sample");
    let config = Config::from_toml(&text, &path, &HashMap::new()).unwrap();
    let sources = config
        .providers
        .values()
        .map(|p| (p.id.as_str(), &p.secret))
        .chain(
            config
                .referrers
                .values()
                .map(|r| (r.id.as_str(), &r.secret)),
        );
    for (id, source) in sources {
        let variable = format!(
            "SIGNPOST_SECRET_{}",
            id.to_ascii_uppercase().replace('-', "_")
        );
        let file = PathBuf::from(format!("data/secrets/{id}.whsec"));
        assert!(
            matches!(source, SecretSource::EnvOrFile(v, f) if *v == variable && *f == file),
            "{source:?}"
        );
    }
    assert!(
        config
            .providers
            .values()
            .all(|p| p.previous_secret.is_none())
    );
    assert_eq!(config.delivery, DeliveryConfig::default());
}

#[test]
fn with_both_keys_the_variable_wins_and_the_file_is_the_fallback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.whsec");
    let config = load(&provider_with(&format!(
        "secret_env = \"P_SECRET\"\nsecret_file = {}",
        toml_path(&path)
    )))
    .unwrap();
    let from_env = Secret::generate();
    let env = HashMap::from([("P_SECRET".to_owned(), from_env.to_whsec())]);

    let keys = config.signing_keys_with(&|v| env.get(v).cloned()).unwrap();
    assert_eq!(
        keys[&endpoint("provider:p")].current.to_whsec(),
        from_env.to_whsec()
    );
    assert!(
        !path.exists(),
        "no file is created when the variable is set"
    );

    let keys = config.signing_keys_with(&no_env).unwrap();
    let written = Secret::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        keys[&endpoint("provider:p")].current.to_whsec(),
        written.to_whsec()
    );
    assert_ne!(written.to_whsec(), from_env.to_whsec());
}

#[test]
fn a_missing_secret_file_is_created_with_a_new_secret_readable_by_the_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/secrets/p.whsec");
    let config = load(&provider_with(&format!(
        "secret_file = {}",
        toml_path(&path)
    )))
    .unwrap();

    let keys = config.signing_keys_with(&no_env).unwrap();

    let text = std::fs::read_to_string(&path).expect("secret file created");
    assert!(text.ends_with('\n'));
    let written = Secret::parse(&text).unwrap();
    assert_eq!(
        keys[&endpoint("provider:p")].current.to_whsec(),
        written.to_whsec()
    );
    assert!(keys[&endpoint("provider:p")].previous.is_none());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Started again: the same secret, read back.
    let again = config.signing_keys_with(&no_env).unwrap();
    assert_eq!(
        again[&endpoint("provider:p")].current.to_whsec(),
        written.to_whsec()
    );
}

#[test]
fn secrets_are_read_from_files_and_variables_with_the_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let old = Secret::generate();
    let new = Secret::generate();
    let referrer_secret = Secret::generate();
    let old_path = dir.path().join("old.whsec");
    std::fs::write(&old_path, format!("\n  {}  \n", old.to_whsec())).unwrap();
    let text = format!(
        "{}\n[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/cb\"\nsecret_env = \"R_SECRET\"\n",
        provider_with(&format!(
            "secret_env = \"P_SECRET\"\nprevious_secret_file = {}\nprevious_secret_until = \"2026-12-01T00:00:00Z\"",
            toml_path(&old_path)
        ))
    );
    let config = load(&text).unwrap();
    let env = HashMap::from([
        ("P_SECRET".to_owned(), new.to_whsec()),
        (
            "R_SECRET".to_owned(),
            format!("{}\n", referrer_secret.to_whsec()),
        ),
    ]);

    let keys = config.signing_keys_with(&|v| env.get(v).cloned()).unwrap();

    assert_eq!(keys.len(), 2);
    let p = &keys[&endpoint("provider:p")];
    assert_eq!(p.current.to_whsec(), new.to_whsec());
    assert_eq!(p.previous.as_ref().unwrap().to_whsec(), old.to_whsec());
    assert_eq!(
        p.previous_until,
        config.providers["p"].previous_secret_until
    );
    assert_eq!(
        keys[&endpoint("referrer:r")].current.to_whsec(),
        referrer_secret.to_whsec()
    );
}

#[test]
fn unreadable_secrets_are_all_reported_naming_key_and_source_but_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let bad_file = dir.path().join("bad.whsec");
    std::fs::write(&bad_file, "whsec_hunter2 is my password\n").unwrap();
    let missing_previous = dir.path().join("no-such-old.whsec");
    let text = format!(
        "[providers.a]\nintake_url = \"https://a.example/\"\nsecret_env = \"A_SECRET\"\n\
         [providers.b]\nintake_url = \"https://b.example/\"\nsecret_env = \"B_SECRET\"\n\
         [providers.c]\nintake_url = \"https://c.example/\"\nsecret_file = {}\n\
         previous_secret_file = {}\nprevious_secret_until = \"2026-12-01T00:00:00Z\"\n",
        toml_path(&bad_file),
        toml_path(&missing_previous),
    );
    let config = load(&text).unwrap();
    let env = HashMap::from([("B_SECRET".to_owned(), "sk_live_hunter2".to_owned())]);

    let problems = config
        .signing_keys_with(&|v| env.get(v).cloned())
        .unwrap_err();

    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert_eq!(
        problems[0],
        "`providers.a.secret_env`: environment variable A_SECRET is not set"
    );
    assert!(
        problems[1].starts_with(
            "`providers.b.secret_env`: environment variable B_SECRET does not hold a signing secret"
        ),
        "{}",
        problems[1]
    );
    assert!(
        problems[2].starts_with("`providers.c.secret_file`: "),
        "{}",
        problems[2]
    );
    assert!(problems[2].contains("bad.whsec"), "{}", problems[2]);
    assert!(
        problems[3].starts_with("`providers.c.previous_secret_file`: cannot read "),
        "{}",
        problems[3]
    );
    // A missing previous secret is a mistake, not something to invent.
    assert!(!missing_previous.exists());
    for problem in &problems {
        assert!(!problem.contains("hunter2"), "{problem}");
    }
}

#[test]
fn inline_secrets_are_used_as_given() {
    let mut config = load(include_str!("../../config/signpost.toml")).unwrap();
    let secret = Secret::generate();
    for provider in config.providers.values_mut() {
        provider.secret = SecretSource::Inline(secret.clone());
    }
    for referrer in config.referrers.values_mut() {
        referrer.secret = SecretSource::Inline(secret.clone());
    }
    let keys = config.signing_keys_with(&no_env).unwrap();
    assert_eq!(keys.len(), config.providers.len() + config.referrers.len());
    assert!(keys.contains_key(&endpoint("provider:activelives")));
    assert!(keys.contains_key(&endpoint("referrer:riverside-surgery")));
    assert!(
        keys.values()
            .all(|k| k.current.to_whsec() == secret.to_whsec())
    );
}

#[test]
fn delivery_defaults_follow_the_svix_schedule() {
    let d = DeliveryConfig::default();
    let secs: Vec<u64> = d.retry_schedule.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [5, 300, 1800, 7200, 18000, 36000, 36000]);
    assert_eq!(d.connect_timeout, Duration::from_secs(5));
    assert_eq!(d.request_timeout, Duration::from_secs(30));
    assert_eq!(d.max_retry_after, Duration::from_secs(6 * 3600));
    assert_eq!(d.lease, Duration::from_secs(60));
    assert_eq!(d.concurrency, 64);
    assert_eq!(d.poll_interval, Duration::from_secs(1));
    assert_eq!(load("").unwrap().delivery, d);
    assert_eq!(load("[delivery]\n").unwrap().delivery, d);
}

#[test]
fn delivery_settings_are_read() {
    let config = load(
        r#"
        [delivery]
        retry_schedule = ["500ms", "2s", "1m", "1h"]
        connect_timeout = "250ms"
        request_timeout = "2s"
        max_retry_after = "0s"
        lease = "3s"
        concurrency = 4
        poll_interval = "50ms"
        worker = false
        "#,
    )
    .unwrap();
    assert_eq!(
        config.delivery,
        DeliveryConfig {
            retry_schedule: vec![
                Duration::from_millis(500),
                Duration::from_secs(2),
                Duration::from_secs(60),
                Duration::from_secs(3600),
            ],
            connect_timeout: Duration::from_millis(250),
            request_timeout: Duration::from_secs(2),
            max_retry_after: Duration::ZERO,
            lease: Duration::from_secs(3),
            concurrency: 4,
            poll_interval: Duration::from_millis(50),
            worker: false,
        }
    );
    let once = load("[delivery]\nretry_schedule = []\n").unwrap();
    assert!(once.delivery.retry_schedule.is_empty());
}

#[test]
fn delivery_problems_are_all_reported_naming_the_key() {
    let err = load(
        r#"
        [delivery]
        retry_schedule = ["5s", "5 minutes", "1w"]
        connect_timeout = "0s"
        request_timeout = "90s"
        max_retry_after = "-1h"
        lease = "1m"
        concurrency = 0
        poll_interval = "1.5s"
        "#,
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "`delivery.retry_schedule[1]`: \"5 minutes\" is not a duration",
        "`delivery.retry_schedule[2]`: \"1w\"",
        "`delivery.connect_timeout`: must be more than zero",
        "`delivery.max_retry_after`: \"-1h\"",
        "`delivery.lease`: must be longer than `delivery.request_timeout` (90s)",
        "`delivery.concurrency`: must be between 1 and 1024",
        "`delivery.poll_interval`: \"1.5s\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(err.problems.len(), 7, "{text}");
    assert!(load("[delivery]\nconcurrency = 1025\n").is_err());
    assert!(load("[delivery]\nlease = \"30s\"\n").is_err());
    let unknown = load("[delivery]\nretries = 3\n").unwrap_err();
    assert!(unknown.to_string().contains("retries"), "{unknown}");
}

#[test]
fn durations_are_an_integer_and_a_unit() {
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
    assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
    for bad in [
        "",
        "5",
        "s",
        "5S",
        " 5s",
        "5s ",
        "+5s",
        "5.0s",
        "5sec",
        "99999999999999999999h",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad:?}");
    }
    assert_eq!(parse_duration(&format!("{}h", u64::MAX / 1000)), None);
}

/// Issue #21 finding 6: certificate names that could never match a client
/// certificate (a wildcard, an IP address, a trailing dot) and names two
/// identities share (in any case) stop start-up, each named.
#[test]
fn certificate_names_that_cannot_match_or_are_shared_are_refused() {
    let referrer = |id: &str, ods: &str, names: &str| {
        format!(
            "[referrers.{id}]\nods_codes = [\"{ods}\"]\ncallback_url = \"https://{id}.example/cb\"\nsecret_env = \"R\"\nclient_certificate_names = {names}\n"
        )
    };
    let tls = |admins: &str| {
        format!(
            "[tls]\ncertificate = \"s.pem\"\nprivate_key = \"s.key\"\nclient_ca = \"ca.pem\"\nadmin_certificate_names = {admins}\n"
        )
    };
    for name in [
        "*.practice.example.nhs.uk",
        "127.0.0.1",
        "gp.example.nhs.uk.",
        "",
    ] {
        let err = load(&referrer("r", "A81001", &format!("[{name:?}]"))).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("`referrers.r.client_certificate_names`")),
            "{name:?} was accepted: {err}"
        );
        let err = load(&tls(&format!("[{name:?}]"))).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.starts_with("`tls.admin_certificate_names`")),
            "{name:?} was accepted as an admin name: {err}"
        );
    }
    // The same name in another case, for two referrers.
    let err = load(&format!(
        "{}{}",
        referrer("a", "A81001", "[\"GP.example.nhs.uk\"]"),
        referrer("b", "A81002", "[\"gp.example.nhs.uk\"]")
    ))
    .unwrap_err();
    assert!(err.to_string().contains("also listed by"), "{err}");
    // A referrer's name as an admin's.
    let err = load(&format!(
        "{}{}",
        tls("[\"gp.example.nhs.uk\"]"),
        referrer("a", "A81001", "[\"gp.example.nhs.uk\"]")
    ))
    .unwrap_err();
    assert!(err.to_string().contains("also listed by"), "{err}");
    // Valid names pass.
    load(&format!(
        "{}{}",
        tls("[\"ops.example.nhs.uk\"]"),
        referrer("a", "A81001", "[\"gp.example.nhs.uk\"]")
    ))
    .unwrap();
}

#[test]
fn a_referrer_is_told_by_subscription_unless_it_asks_for_bars_which_needs_a_receiver() {
    let referrer = |notify: &str| {
        format!(
            "[referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/fhir/$process-message\"\nsecret_env = \"R\"\n{notify}"
        )
    };
    let bars = "[bars]\nreceiver_ods = \"X9S1P\"\nservice_id = \"2000099001\"\n";
    let told = |text: &str| {
        load(text)
            .unwrap()
            .referrers
            .values()
            .next()
            .unwrap()
            .notify
    };
    assert_eq!(told(&referrer("")), Notify::Subscription);
    assert_eq!(
        told(&referrer("notify = \"subscription\"\n")),
        Notify::Subscription
    );
    assert_eq!(
        told(&format!("{bars}{}", referrer("notify = \"bars\"\n"))),
        Notify::Bars
    );
    let text = load(&referrer("notify = \"bars\"\n"))
        .unwrap_err()
        .to_string();
    assert!(text.contains("`referrers.r.notify = \"bars\"`"), "{text}");
    assert!(text.contains("configure `[bars]`"), "{text}");
    let text = load(&format!("{bars}{}", referrer("notify = \"email\"\n")))
        .unwrap_err()
        .to_string();
    assert!(text.contains("`referrers.r.notify`"), "{text}");
    assert!(
        !text.contains("email"),
        "the value is not quoted back: {text}"
    );
}

#[test]
fn an_inbox_provider_needs_no_intake_url_and_its_clocks_are_checked() {
    let config = load(
        "[providers.p]\ndelivery = \"inbox\"\nsecret_env = \"P\"\ninbox_nudge_after = \"2h\"\n",
    )
    .unwrap();
    let provider = &config.providers["p"];
    assert_eq!(
        provider.delivery,
        super::ProviderDelivery::Inbox {
            nudge_after: Duration::from_secs(2 * 3600),
            expire_after: Duration::from_secs(5 * 24 * 3600),
        }
    );
    assert_eq!(provider.delivery.intake_url(), None);
    let defaults = load("[providers.p]\ndelivery = \"inbox\"\nsecret_env = \"P\"\n").unwrap();
    assert_eq!(
        defaults.providers["p"].delivery,
        super::ProviderDelivery::Inbox {
            nudge_after: super::ProviderDelivery::NUDGE_AFTER,
            expire_after: super::ProviderDelivery::EXPIRE_AFTER,
        }
    );
    let err = load(
        "[providers.a]\ndelivery = \"inbox\"\nintake_url = \"https://a.example/\"\nsecret_env = \"A\"\n\
         [providers.b]\ndelivery = \"pull\"\nsecret_env = \"B\"\n\
         [providers.c]\ndelivery = \"inbox\"\nsecret_env = \"C\"\ninbox_nudge_after = \"6d\"\n\
         [providers.d]\nintake_url = \"https://d.example/\"\nsecret_env = \"D\"\ninbox_expire_after = \"1d\"\n\
         [providers.e]\ndelivery = \"inbox\"\nsecret_env = \"E\"\ninbox_nudge_after = \"soon\"\n",
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "`providers.a.intake_url`: an inbox provider collects",
        "`providers.b.delivery`: \"pull\" is not",
        "`providers.c.inbox_expire_after`: must be longer",
        "`providers.d`: `inbox_nudge_after` and `inbox_expire_after` apply only",
        "`providers.e.inbox_nudge_after`: \"soon\" is not a duration",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(parse_duration("5d"), Some(Duration::from_secs(5 * 86_400)));
}

#[test]
fn escalation_targets_and_deadlines_are_checked() {
    let config = load(
        "[clinical_services.pcn-ot]\nname = \"PCN OT\"\nods_code = \"U12345\"\n\
         callback_url = \"https://ot.example/escalations\"\nsecret_env = \"OT\"\n\
         [referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/\"\n\
         secret_env = \"R\"\nescalate_to = \"pcn-ot\"\n\
         [escalation]\nurgent_working_days = 2\n",
    )
    .unwrap();
    assert_eq!(
        config.referrers["r"]
            .escalate_to
            .as_ref()
            .map(|id| id.as_str()),
        Some("pcn-ot")
    );
    assert_eq!(config.clinical_services["pcn-ot"].ods_code, "U12345");
    assert_eq!(config.escalation.urgent_working_days, 2);
    assert_eq!(config.escalation.routine_working_days, 5);
    let err = load(
        "[clinical_services.a]\ncallback_url = \"https://a.example/\"\nsecret_env = \"A\"\n\
         [referrers.r]\nods_codes = [\"A81001\"]\ncallback_url = \"https://r.example/\"\n\
         secret_env = \"R\"\nescalate_to = \"nowhere\"\n\
         [escalation]\nroutine_working_days = 0\n",
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "`clinical_services.a.ods_code`: required",
        "`referrers.r.escalate_to`: \"nowhere\" is not a [clinical_services.<id>]",
        "`escalation.routine_working_days`: must be between 1 and 60",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
