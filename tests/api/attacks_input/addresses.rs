//! Non-public addresses (issue 14, finding 6): every spelling of one, at
//! start-up and per connection.

use signpost::config::Config;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestDb, test_config},
};

/// Every way the review wrote a non-public address, as a target URL.
const NON_PUBLIC_SPELLINGS: &[&str] = &[
    "https://127.0.0.1/intake",
    "https://0x7f000001/intake",
    "https://127.1/intake",
    "https://2130706433/intake",
    "https://[::1]/intake",
    "https://localhost/intake",
    "https://[::127.0.0.1]/intake",
    "https://[::ffff:127.0.0.1]/intake",
    "https://[::ffff:169.254.169.254]/latest/meta-data",
    "https://[64:ff9b::a9fe:a9fe]/latest/meta-data",
    "https://[2002:a9fe:a9fe::1]/intake",
    "https://[fec0::1]/intake",
    "https://[fd00:ec2::254]/intake",
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.5/intake",
];

fn provider_table(url: &str, extra: &str) -> String {
    format!("[providers.a]\nintake_url = \"{url}\"\nsecret_env = \"A\"\n{extra}\n")
}

/// The configuration file refuses each spelling unless the table allows a
/// private network, and so does start-up for a configuration built in code
/// (the same rule, whoever made the configuration).
async fn every_spelling_of_a_non_public_address_needs_the_allowance_at_start_up(backend: Backend) {
    let env = std::collections::HashMap::new();
    let file = std::path::Path::new("attack.toml");
    for url in NON_PUBLIC_SPELLINGS {
        let refused = Config::from_toml(&provider_table(url, ""), file, &env)
            .expect_err(&format!("{url} must be refused without the allowance"));
        assert!(
            refused.to_string().contains("allow_private_network"),
            "{url}: {refused}"
        );
        assert!(
            Config::from_toml(
                &provider_table(url, "allow_private_network = true"),
                file,
                &env
            )
            .is_ok(),
            "{url} with the allowance"
        );
    }

    let db = TestDb::fresh(backend).await;
    for url in NON_PUBLIC_SPELLINGS {
        let mut config = test_config(&db.url);
        let provider = config.providers.get_mut("activelives").unwrap();
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: url.parse().unwrap(),
        };
        provider.allow_private_network = false;
        let refused = signpost::startup::Application::build(config).await;
        let message = format!("{:#}", refused.err().expect("start-up is refused"));
        assert!(
            message.contains("providers.activelives.intake_url")
                && message.contains("allow_private_network"),
            "{url}: {message}"
        );
    }
    let mut config = test_config(&db.url);
    for provider in config.providers.values_mut() {
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://[::ffff:169.254.169.254]/x".parse().unwrap(),
        };
        provider.allow_private_network = true;
    }
    assert!(signpost::startup::Application::build(config).await.is_ok());
}

/// On every connection the delivery client's resolver refuses a name that
/// leads to loopback, whether the name is `localhost`, this machine's host
/// name or an address written as a name, unless its target is allowed a
/// private network.
async fn every_spelling_of_loopback_is_refused_per_connection(backend: Backend) {
    use reqwest::dns::{Name, Resolve};
    use std::str::FromStr;
    let db = TestDb::fresh(backend).await;
    let host = std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_owned();
    let names = [
        "localhost",
        "LOCALHOST",
        "127.0.0.1",
        "127.0.0.2",
        host.as_str(),
    ];
    let mut config = test_config(&db.url);
    for provider in config.providers.values_mut() {
        provider.allow_private_network = false;
        provider.delivery = signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://provider.example/intake".parse().unwrap(),
        };
    }
    for referrer in config.referrers.values_mut() {
        referrer.allow_private_network = false;
        referrer.callback_url = "https://referrer.example/cb".parse().unwrap();
    }
    // A target that names loopback outright is no exception (it was: the
    // URL's own host was exempt from the check).
    config.providers.get_mut("activelives").unwrap().delivery =
        signpost::config::ProviderDelivery::Webhook {
            intake_url: "https://localhost/intake".parse().unwrap(),
        };
    let guarded = signpost::security::egress::resolver(&config);
    for name in names.iter().filter(|n| !n.is_empty()) {
        let resolved = guarded.resolve(Name::from_str(name).unwrap()).await;
        assert!(
            resolved.is_err(),
            "{name} resolved to {:?}",
            resolved.map(|a| a.collect::<Vec<_>>()).ok()
        );
    }
    let provider = config.providers.get_mut("activelives").unwrap();
    provider.allow_private_network = true;
    let allowed = signpost::security::egress::resolver(&config);
    let addrs: Vec<_> = allowed
        .resolve(Name::from_str("localhost").unwrap())
        .await
        .map_err(|e| e.to_string())
        .unwrap()
        .collect();
    assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
}

on_both_backends!(
    every_spelling_of_a_non_public_address_needs_the_allowance_at_start_up,
    every_spelling_of_loopback_is_refused_per_connection,
);
