//! `[bars]`: Signpost as a receiver of the NHS Booking and Referral
//! Standard (BaRS). Absent, `$process-message` answers that BaRS is not
//! enabled here.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBars {
    receiver_ods: Option<String>,
    service_id: Option<String>,
}

/// Who this receiver is, as a BaRS sender names it in
/// `MessageHeader.destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BarsConfig {
    /// The ODS code of the Organization `destination.receiver` must
    /// reference (`receiver_ods`).
    pub receiver_ods: String,
    /// The service identifier (a Directory of Services id) that
    /// `destination.endpoint` must carry (`service_id`).
    pub service_id: String,
}

impl RawBars {
    pub(super) fn check(self, problems: &mut Vec<String>) -> Option<BarsConfig> {
        let before = problems.len();
        let receiver_ods = self.receiver_ods.unwrap_or_default();
        if !super::is_ods_code(&receiver_ods) {
            problems.push("`bars.receiver_ods`: give this receiver's ODS code".into());
        }
        let service_id = self.service_id.unwrap_or_default();
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-';
        if service_id.is_empty() || service_id.len() > 64 || !service_id.chars().all(plain) {
            problems.push(
                "`bars.service_id`: give this receiver's service identifier (letters, digits, '-')"
                    .into(),
            );
        }
        (problems.len() == before).then_some(BarsConfig {
            receiver_ods,
            service_id,
        })
    }
}
