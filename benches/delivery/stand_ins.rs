//! Stand-ins for the providers and the referrer: signed receivers (the
//! kit's signature check and server) that note when each referral arrived;
//! and the sample configuration aimed at them.

#[allow(unused_imports)]
use crate::*;

/// When a referral reached a provider.
#[derive(Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) at: Instant,
    pub(crate) provider: &'static str,
}

#[derive(Default)]
pub(crate) struct Received {
    /// First arrival of each referral, by Signpost's referral id.
    pub(crate) referrals: HashMap<Uuid, Arrival>,
    /// Referrals that arrived again (delivery is at least once).
    pub(crate) duplicates: usize,
    /// Requests refused for a missing or wrong signature.
    pub(crate) bad_signatures: usize,
    /// Validly signed provider requests without a referral id.
    pub(crate) unreadable: usize,
    /// Validly signed notifications to the referrer.
    pub(crate) notifications: usize,
}

/// One endpoint's stand-in.
#[derive(Clone)]
pub(crate) struct Endpoint {
    /// The provider's id, or `None` for the referrer.
    pub(crate) provider: Option<&'static str>,
    /// Its signing secret, `whsec_…`.
    pub(crate) whsec: Arc<str>,
    pub(crate) received: Arc<Mutex<Received>>,
}

/// Start a stand-in on a free loopback port.
pub(crate) async fn serve_endpoint(endpoint: Endpoint) -> anyhow::Result<kit::Server> {
    let app = Router::new().fallback(receive).with_state(endpoint);
    Ok(kit::Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), app).await?)
}

pub(crate) async fn receive(
    State(endpoint): State<Endpoint>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let at = Instant::now();
    let signed = kit::verify(&endpoint.whsec, &headers, &body).valid;
    let referral_id = endpoint.provider.and_then(|provider| {
        let pointer = REFERRAL_ID_AT.iter().find(|(p, _)| *p == provider)?.1;
        let payload: Value = serde_json::from_slice(&body).ok()?;
        Uuid::parse_str(payload.pointer(pointer)?.as_str()?).ok()
    });
    let mut received = endpoint.received.lock().expect("receiver lock");
    if !signed {
        received.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    match (endpoint.provider, referral_id) {
        (None, _) => received.notifications += 1,
        (Some(_), None) => received.unreadable += 1,
        (Some(provider), Some(id)) => {
            use std::collections::hash_map::Entry;
            match received.referrals.entry(id) {
                Entry::Vacant(first) => {
                    first.insert(Arrival { at, provider });
                }
                Entry::Occupied(_) => received.duplicates += 1,
            }
        }
    }
    StatusCode::ACCEPTED
}

// ---------------------------------------------------------------------------
// Signpost

/// A stand-in for one of the sample configuration's endpoints, running.
pub(crate) struct StandIn {
    /// `providers.<id>` or `referrers.<id>`.
    pub(crate) table: String,
    /// `intake_url` or `callback_url`.
    pub(crate) url_key: &'static str,
    pub(crate) url: Url,
    /// The endpoint's new signing secret (`whsec_…`): Signpost signs with
    /// it, the stand-in verifies with it.
    pub(crate) whsec: String,
    /// Its server (none for the start-up probe's, on a closed port).
    pub(crate) _server: Option<kit::Server>,
}

/// A stand-in for each provider and for the referrer, on free loopback
/// ports, each with a new secret.
pub(crate) async fn start_stand_ins(
    received: &Arc<Mutex<Received>>,
) -> anyhow::Result<Vec<StandIn>> {
    let mut stand_ins = Vec::new();
    let mut endpoints: Vec<(Option<&'static str>, String)> = REFERRAL_ID_AT
        .iter()
        .map(|(id, _)| (Some(*id), format!("providers.{id}")))
        .collect();
    endpoints.push((None, format!("referrers.{REFERRER}")));
    for (provider, table) in endpoints {
        let whsec = Secret::generate().to_whsec();
        let server = serve_endpoint(Endpoint {
            provider,
            whsec: whsec.as_str().into(),
            received: received.clone(),
        })
        .await?;
        let addr = server.addr;
        let (url_key, url) = match provider {
            Some(id) => ("intake_url", format!("http://{addr}/{id}/intake")),
            None => ("callback_url", format!("http://{addr}/notifications")),
        };
        stand_ins.push(StandIn {
            table,
            url_key,
            url: Url::parse(&url)?,
            whsec,
            _server: Some(server),
        });
    }
    Ok(stand_ins)
}

/// The sample configuration on a free port and `database_url`, its
/// endpoints pointed at the stand-ins, with their secrets inline.
pub(crate) fn configure(database_url: &str, stand_ins: &[StandIn]) -> anyhow::Result<Config> {
    // With the per-token rate limit lifted: one practice system sending
    // flat out, or the limit would be what is measured.
    let mut config = kit::sample_config(database_url)?;
    for stand_in in stand_ins {
        let secret = SecretSource::Inline(Secret::parse(&stand_in.whsec)?);
        let missing = || anyhow::anyhow!("the sample configuration has no [{}]", stand_in.table);
        match stand_in.table.split_once('.') {
            Some(("providers", id)) => {
                let provider = config.providers.get_mut(id).ok_or_else(missing)?;
                provider.secret = secret;
                provider.previous_secret = None;
                provider.delivery = signpost::config::ProviderDelivery::Webhook {
                    intake_url: stand_in.url.clone(),
                };
            }
            Some(("referrers", id)) => {
                let referrer = config.referrers.get_mut(id).ok_or_else(missing)?;
                referrer.secret = secret;
                referrer.previous_secret = None;
                referrer.callback_url = stand_in.url.clone();
            }
            _ => anyhow::bail!("unknown endpoint table {}", stand_in.table),
        }
    }
    Ok(config)
}
