//! Signpost's own metrics: where its time goes.

#[allow(unused_imports)]
use crate::*;

/// Sums of Signpost's timing histograms (seconds) and their counts.
#[derive(Default, Clone, Copy)]
pub(crate) struct ServerTimes {
    pub(crate) intake: (f64, f64),
    pub(crate) validation: (f64, f64),
    pub(crate) mapping: (f64, f64),
    pub(crate) attempts: (f64, f64),
}

impl ServerTimes {
    pub(crate) async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<ServerTimes> {
        let text = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // Sum `name_sum` and `name_count` over the series whose labels
        // contain `filter`.
        let histogram = |name: &str, filter: &str| -> (f64, f64) {
            let total = |series: String| -> f64 {
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|line| {
                        let (key, value) = match line.find('}') {
                            Some(end) => (&line[..=end], &line[end + 1..]),
                            None => line.split_once(' ')?,
                        };
                        let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
                        (metric == series && labels.contains(filter))
                            .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
                            .flatten()
                    })
                    .sum()
            };
            (
                total(format!("signpost_{name}_sum")),
                total(format!("signpost_{name}_count")),
            )
        };
        Ok(ServerTimes {
            intake: histogram(
                "http_request_duration_seconds",
                "route=\"/fhir/ServiceRequest\"",
            ),
            validation: histogram("validation_duration_seconds", ""),
            mapping: histogram("mapping_duration_seconds", ""),
            attempts: histogram("delivery_attempt_duration_seconds", ""),
        })
    }

    /// The mean of each in milliseconds between two scrapes, and counts.
    pub(crate) fn means_since(&self, before: &ServerTimes) -> Value {
        let mean = |after: (f64, f64), before: (f64, f64)| {
            let count = after.1 - before.1;
            json!({
                "count": count,
                "mean_ms": if count > 0.0 { round((after.0 - before.0) / count * 1000.0, 3) } else { 0.0 },
            })
        };
        json!({
            "intake_handler": mean(self.intake, before.intake),
            "validation": mean(self.validation, before.validation),
            "mapping": mean(self.mapping, before.mapping),
            "delivery_attempt": mean(self.attempts, before.attempts),
        })
    }
}
