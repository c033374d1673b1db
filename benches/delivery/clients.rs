//! Load generation: the referral bodies, the concurrent clients, progress
//! bars, and waiting for every delivery.

#[allow(unused_imports)]
use crate::*;

/// The referral bodies: the fixtures in turn, each under a new business
/// identifier. Each fixture is serialised once, split around its
/// identifier, so a body costs a copy, not a JSON round trip.
pub(crate) struct Bodies {
    /// The text before and after the identifier, and the provider.
    pub(crate) templates: Vec<(String, String, &'static str)>,
    /// Random per run, so identifiers never repeat across runs.
    pub(crate) run: u64,
    /// Bodies made so far (warm-ups and both phases).
    pub(crate) made: AtomicU64,
    /// BaRS messages (`--bars`): the template's marks are replaced, all of
    /// them (the Bundle id and the ServiceRequest's `fullUrl`, which is
    /// referred to from several entries).
    pub(crate) bars: bool,
}

const MARK: &str = "@@business-identifier@@";

impl Bodies {
    pub(crate) fn load(bars: bool) -> anyhow::Result<Bodies> {
        if bars {
            return Self::load_bars();
        }
        let mut templates = Vec::new();
        for (name, provider) in FIXTURES {
            let path = Path::new(MANIFEST_DIR)
                .join("tests/fixtures/referrals/valid")
                .join(name);
            let mut referral: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            referral["identifier"] = json!([{
                "system": "https://fhir.riverside-surgery.example/Id/referral",
                "value": MARK,
            }]);
            let text = referral.to_string();
            let (head, tail) = text
                .split_once(MARK)
                .ok_or_else(|| anyhow::anyhow!("{name}: identifier not found"))?;
            templates.push((head.to_owned(), tail.to_owned(), provider));
        }
        Ok(Bodies {
            templates,
            run: Uuid::new_v4().as_u64_pair().0,
            made: AtomicU64::new(0),
            bars: false,
        })
    }

    /// The BaRS social-prescribing referral message (the tests' fixture),
    /// its Bundle id and ServiceRequest `fullUrl` marked; it goes to
    /// ActiveLives.
    fn load_bars() -> anyhow::Result<Bodies> {
        let path =
            Path::new(MANIFEST_DIR).join("tests/fixtures/bars/social-prescribing-referral.json");
        let mut message: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        let sr_url = message["entry"][1]["fullUrl"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("the BaRS fixture's ServiceRequest has no fullUrl"))?
            .trim_start_matches("urn:uuid:")
            .to_owned();
        message["id"] = json!(MARK);
        let text = message.to_string().replace(&sr_url, MARK);
        Ok(Bodies {
            templates: vec![(text, String::new(), "activelives")],
            run: Uuid::new_v4().as_u64_pair().0,
            made: AtomicU64::new(0),
            bars: true,
        })
    }

    /// The `i`-th body (fixture `i` mod 6) and the provider it is for.
    pub(crate) fn body(&self, i: usize) -> (String, &'static str) {
        let (head, tail, provider) = &self.templates[i % self.templates.len()];
        let id = Uuid::from_u64_pair(self.run, self.made.fetch_add(1, Ordering::Relaxed));
        if self.bars {
            return (head.replace(MARK, &id.to_string()), provider);
        }
        let mut body = String::with_capacity(head.len() + 36 + tail.len());
        body.push_str(head);
        let _ = write!(body, "{id}");
        body.push_str(tail);
        (body, provider)
    }

    /// The mean body size, in bytes.
    pub(crate) fn mean_size(&self) -> usize {
        self.templates
            .iter()
            .map(|(head, tail, _)| head.len() + 36 + tail.len())
            .sum::<usize>()
            / self.templates.len()
    }
}

/// An accepted request.
pub(crate) struct Created {
    /// Signpost's referral id (nil from the baseline).
    pub(crate) referral_id: Uuid,
    pub(crate) provider: &'static str,
    /// When the POST was sent.
    pub(crate) sent: Instant,
    /// When the `201`'s head arrived.
    pub(crate) created: Instant,
}

#[derive(Default)]
pub(crate) struct Intake {
    pub(crate) created: Vec<Created>,
    /// Answers other than `201`, by status (0: no answer).
    pub(crate) refused: BTreeMap<u16, usize>,
}

impl Intake {
    pub(crate) fn refused(&self) -> usize {
        self.refused.values().sum()
    }
}

/// What counts as accepted.
#[derive(Clone, Copy)]
pub(crate) enum Expect {
    /// `201` with Signpost's referral id in the answer.
    Referral,
    /// A BaRS message accepted: `200` with the referral's `Location`.
    BarsMessage,
    /// Any `201` (the baseline).
    Created,
}

/// How the clients send.
#[derive(Clone, Copy)]
pub(crate) struct Load {
    pub(crate) run: Run,
    pub(crate) clients: usize,
    pub(crate) rate: Option<f64>,
}

/// POST bodies from `load.clients` concurrent clients until `load.run` is
/// done; with a `rate`, the i-th no earlier than i / rate seconds after the
/// start. Each `201` moves `bar` on.
pub(crate) async fn drive(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Bodies>,
    load: Load,
    expect: Expect,
    bar: &ProgressBar,
) -> Intake {
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let (limit, deadline) = match load.run {
        Run::Count(n) => (n, None),
        Run::For(duration) => (usize::MAX, Some(start + duration)),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.clients {
        let (client, url, bodies, next, bar) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            next.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut intake = Intake::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                if let Some(rate) = load.rate {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if deadline.is_some_and(|d| due >= d) {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break;
                }
                let (body, provider) = bodies.body(i);
                let sent = Instant::now();
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/fhir+json");
                if matches!(expect, Expect::BarsMessage) {
                    request = request
                        .header("x-request-id", Uuid::new_v4().to_string())
                        .header("x-correlation-id", Uuid::new_v4().to_string());
                }
                let response = request.body(body).send().await;
                let created = Instant::now();
                let response = match response {
                    Ok(response) => response,
                    Err(_) => {
                        *intake.refused.entry(0).or_default() += 1;
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .and_then(|l| l.split("ServiceRequest/").nth(1))
                    .and_then(|l| l.split('/').next())
                    .and_then(|id| Uuid::parse_str(id).ok());
                let answer = response.bytes().await;
                let referral_id = match expect {
                    Expect::BarsMessage => answer.ok().and(location),
                    Expect::Created => answer.ok().map(|_| Uuid::nil()),
                    Expect::Referral => answer
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                        .and_then(|a| Uuid::parse_str(a["id"].as_str()?).ok()),
                };
                let accepted = match expect {
                    Expect::BarsMessage => status == 200,
                    Expect::Referral | Expect::Created => status == 201,
                };
                match (accepted, referral_id) {
                    (true, Some(referral_id)) => {
                        intake.created.push(Created {
                            referral_id,
                            provider,
                            sent,
                            created,
                        });
                        bar.inc(1);
                    }
                    _ => *intake.refused.entry(status).or_default() += 1,
                }
            }
            intake
        });
    }
    let mut all = Intake::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("client task");
        all.created.extend(done.created);
        for (status, count) in done.refused {
            *all.refused.entry(status).or_default() += count;
        }
    }
    all
}

/// The HTTP client of both phases, authenticated as the sample referrer
/// (as a practice system would be; the baseline ignores it).
pub(crate) fn http_client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// A progress bar (on stderr, hidden when it is not a terminal): with a
/// length, or a counter with a rate when `len` is `None`.
pub(crate) fn progress(prefix: &'static str, len: Option<u64>, unit: &'static str) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            format!(
                "{{prefix:>9}} [{{bar:40}}] {{pos}}/{{len}} {unit}  {{per_sec}}  {{elapsed}}  {{msg}}"
            ),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{prefix:>9}} {{spinner}} {{pos}} {unit}  {{per_sec}}  {{elapsed}}  {{msg}}"),
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A progress bar for `load`: 201s out of N, or a counter for a duration.
pub(crate) fn intake_progress(prefix: &'static str, load: Load) -> ProgressBar {
    match load.run {
        Run::Count(n) => progress(prefix, Some(n as u64), "accepted"),
        Run::For(duration) => {
            let bar = progress(prefix, None, "accepted");
            bar.set_message(format!("of {:.0} s", duration.as_secs_f64()));
            bar
        }
    }
}

/// Wait until every created referral has reached a provider, or `timeout`.
/// `before` is how many had arrived before these were sent.
pub(crate) async fn await_deliveries(
    received: &Mutex<Received>,
    created: &[Created],
    before: usize,
    timeout: Duration,
    bar: &ProgressBar,
) {
    let deadline = Instant::now() + timeout;
    let all_arrived = || {
        let received = received.lock().expect("receiver lock");
        created
            .iter()
            .all(|c| received.referrals.contains_key(&c.referral_id))
    };
    loop {
        // Counting is cheap; matching every id is done only once the count
        // says they may all be in (the lock is the receivers' too).
        let arrived = received.lock().expect("receiver lock").referrals.len() - before;
        bar.set_position(arrived.min(created.len()) as u64);
        if (arrived >= created.len() && all_arrived()) || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
