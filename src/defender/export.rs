//! The vulnerability exports: a one-row probe of the full one
//! (`GET /api/machines/SoftwareVulnerabilitiesByMachine`) for `kbwatch validate --online`, and the
//! delta (`GET /api/machines/SoftwareVulnerabilityChangesByMachine`) read for the KB changes it
//! reports, which tell the planner what changed.
//!
//! The delta has a row per device × software × CVE; only rows whose `RecommendedSecurityUpdateId`
//! is a KB number and whose status is `New` or `Fixed` say that a device's missing KBs changed.
//! Rows of other software have no KB id, and `TVM-` ids are CVE ids: those are left out. Field
//! names are read in camelCase and PascalCase (the two exports are documented with different
//! casings); a field of an unexpected type leaves its row out, never the page.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::model::{Object, Page};
use super::{ApiError, Client};
use crate::model::{
    KbChange, KbChangeKind, KbChanges, MAX_KB_CHANGES, MachineId, validate_machine_id,
};
use crate::pacer::Endpoint;

/// The most pages of one read of an export: its hour quota.
pub(super) const MAX_EXPORT_PAGES: usize = 1000;

impl Client {
    /// Whether a token can be obtained at all: after it, a 401 means the API refused a good token.
    pub async fn check_token(&self) -> Result<(), ApiError> {
        self.tokens.token().await.map(drop)
    }

    /// One page of one row of the export (`pageSize=1`; its next link is not followed): whether
    /// the app may read it. Returns the rows it got, not decoded beyond the page's shape.
    pub async fn probe_export(&self) -> Result<usize, ApiError> {
        let mut url = self.url(&["api", "machines", "SoftwareVulnerabilitiesByMachine"]);
        url.query_pairs_mut().append_pair("pageSize", "1");
        let (page, _): (Page<Box<RawValue>>, u64) =
            self.get_json(Endpoint::Export, &url, self.options.max_page_bytes).await?;
        Ok(page.value.len())
    }

    /// The `pageSize` of an export read: as many rows as `max_page_bytes` holds at 2 KB a row
    /// (twice the documented size), within the API's 1,000 to 200,000.
    pub(super) fn export_page_rows(&self) -> u64 {
        (self.options.max_page_bytes / 2048).clamp(1000, 200_000)
    }

    /// The KB changes of the delta export since `since` (at most 14 days back, the API's limit),
    /// every page, paced on the export's quota. Each page stays within `max_page_bytes`
    /// (`pageSize` allows 2 KB a row, twice the documented size), and the changes kept within
    /// [`MAX_KB_CHANGES`], or the call fails.
    pub async fn kb_changes_since(&self, since: DateTime<Utc>) -> Result<KbChanges, ApiError> {
        let mut url = self.url(&["api", "machines", "SoftwareVulnerabilityChangesByMachine"]);
        url.query_pairs_mut()
            .append_pair("sinceTime", &since.to_rfc3339_opts(SecondsFormat::Secs, true))
            .append_pair("pageSize", &self.export_page_rows().to_string());
        let mut changes = KbChanges::default();
        for _ in 0..MAX_EXPORT_PAGES {
            let (page, _): (Page<Object<DeltaRow>>, u64) =
                self.get_json(Endpoint::Export, &url, self.options.max_page_bytes).await?;
            for Object(row) in page.value {
                changes.rows += 1;
                let kept = match row.kb_change() {
                    Some(Ok((device, change))) => changes.add(device, change),
                    Some(Err(Rejected)) => {
                        changes.rejected += 1;
                        true
                    }
                    None => {
                        changes.ignored += 1;
                        true
                    }
                };
                if !kept {
                    return Err(ApiError::Decode(format!(
                        "the export's changes name more than {MAX_KB_CHANGES} KB events"
                    )));
                }
            }
            match page.next_link.and_then(|l| self.same_origin(&l)) {
                Some(next) => url = next,
                None => {
                    changes.dedup();
                    return Ok(changes);
                }
            }
        }
        Err(ApiError::Decode(format!("more than {MAX_EXPORT_PAGES} @odata.nextLink pages")))
    }
}

/// A row of the delta, as far as it is read: each field as whatever JSON it was sent as.
#[derive(Deserialize)]
struct DeltaRow {
    #[serde(default, rename = "deviceId", alias = "DeviceId")]
    device_id: Value,
    #[serde(
        default,
        rename = "recommendedSecurityUpdateId",
        alias = "RecommendedSecurityUpdateId"
    )]
    kb: Value,
    #[serde(default, rename = "status", alias = "Status")]
    status: Value,
    #[serde(default, rename = "eventTimestamp", alias = "EventTimestamp")]
    at: Value,
}

/// A KB change whose device id is not 40 hex digits.
struct Rejected;

impl DeltaRow {
    /// The KB change the row reports, or `None` when it reports none.
    fn kb_change(&self) -> Option<Result<(MachineId, KbChange), Rejected>> {
        let kind = match self.status.as_str()?.trim() {
            s if s.eq_ignore_ascii_case("New") => KbChangeKind::New,
            s if s.eq_ignore_ascii_case("Fixed") => KbChangeKind::Fixed,
            _ => return None,
        };
        let change = KbChange { at: event_time(&self.at)?, kb: kb_number(&self.kb)?, kind };
        let device = self.device_id.as_str().and_then(validate_machine_id);
        Some(device.map(|d| (d, change)).ok_or(Rejected))
    }
}

/// A KB number as getmissingkbs writes it: 4 to 8 digits, from `"5020123"`, `"KB5020123"` or a
/// JSON number. A CVE or `TVM-` id, advisory text or null is not one.
fn kb_number(value: &Value) -> Option<u32> {
    match value.as_u64() {
        Some(n) => kb_of_number(n),
        None => kb_of_text(value.as_str()?),
    }
}

/// A KB number sent as a JSON number: 1,000 to 99,999,999.
pub(super) fn kb_of_number(n: u64) -> Option<u32> {
    u32::try_from(n).ok().filter(|n| (1000..100_000_000).contains(n))
}

/// A KB number sent as text: 4 to 8 digits, `KB` before them or not.
pub(super) fn kb_of_text(text: &str) -> Option<u32> {
    let text = text.trim();
    let digits = match text.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("KB") => &text[2..],
        _ => text,
    };
    let is_number = (4..=8).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit());
    is_number.then(|| digits.parse().ok()).flatten()
}

/// `eventTimestamp`: RFC 3339, or a date and time without a zone, taken as UTC.
fn event_time(value: &Value) -> Option<DateTime<Utc>> {
    let text = value.as_str()?.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.to_utc());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(text, format).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn change(row: Value) -> Option<Result<(MachineId, KbChange), Rejected>> {
        serde_json::from_value::<DeltaRow>(row).expect("an object is a row").kb_change()
    }

    #[test]
    fn only_kb_numbers_are_kb_ids() {
        for (value, kb) in [
            (json!("5020123"), Some(5020123)),
            (json!("KB5020123"), Some(5020123)),
            (json!(" kb890830 "), Some(890830)),
            (json!(4550961), Some(4550961)),
            (json!("TVM-0001-00000000"), None),
            (json!("CVE-2026-20001"), None),
            (json!("ADV 200002"), None),
            (json!("123"), None),
            (json!("123456789"), None),
            (json!("５０２０１２３"), None),
            (json!("KB"), None),
            (json!(-5020123), None),
            (json!(null), None),
            (json!(["5020123"]), None),
        ] {
            assert_eq!(kb_number(&value), kb, "{value}");
        }
    }

    #[test]
    fn a_row_reports_a_change_only_with_a_kb_a_time_and_new_or_fixed() {
        let id = "2339AD14a01bd0299afb93dfa2550136057bff96";
        let row = json!({
            "deviceId": id, "recommendedSecurityUpdateId": "5020123", "status": "Fixed",
            "eventTimestamp": "2026-11-20T12:00:00.000Z", "cveId": "CVE-2026-20001"
        });
        let Some(Ok((device, got))) = change(row.clone()) else { panic!("a change") };
        assert_eq!(device.as_str(), id.to_ascii_lowercase());
        assert_eq!((got.kb, got.kind), (5020123, KbChangeKind::Fixed));
        assert_eq!(got.at, "2026-11-20T12:00:00Z".parse::<DateTime<Utc>>().unwrap());
        let pascal = json!({
            "DeviceId": id, "RecommendedSecurityUpdateId": "KB5020123", "Status": "new",
            "EventTimestamp": "2026-11-20 12:00:00"
        });
        let Some(Ok((_, got))) = change(pascal) else { panic!("a change in PascalCase") };
        assert_eq!((got.kind, got.at), (KbChangeKind::New, change_at(&row)));

        let with = |key: &str, value: Value| {
            let mut r = row.clone();
            r[key] = value;
            r
        };
        for ignored in [
            with("status", json!("Updated")),
            with("recommendedSecurityUpdateId", json!(null)),
            with("recommendedSecurityUpdateId", json!("TVM-0002-00000000")),
            with("eventTimestamp", json!("yesterday")),
            with("status", json!(7)),
        ] {
            assert!(change(ignored.clone()).is_none(), "{ignored}");
        }
        for hostile in ["../../etc/passwd", "", &id[..39]] {
            assert!(matches!(change(with("deviceId", json!(hostile))), Some(Err(Rejected))));
        }
        assert!(matches!(change(with("deviceId", json!(5))), Some(Err(Rejected))));
    }

    fn change_at(row: &Value) -> DateTime<Utc> {
        event_time(&row["eventTimestamp"]).expect("a time")
    }
}
