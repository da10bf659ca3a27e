//! `GET /api/machines/SoftwareVulnerabilityChangesByMachine?sinceTime=…`, the delta export: the rows of
//! the events `changelog` logged after `sinceTime` (required, at most 14 days back) that the snapshot
//! it reads carries, each with its `status`, `eventTimestamp` and `isOnboarded`, with the paging,
//! the snapshots and the quota of the full export: a first page reads the current snapshot, and its
//! next links the same one, so a step between pages neither adds events nor shifts the rows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use super::changelog::{Event, MAX_DAYS_BACK};
use super::envelope::{correlation_id, error_response};
use super::export::{Paging, fleet_for, keep_if_paging, page_of, respond};
use super::export_rows::{Row, some_row_count, some_rows};
use super::guard::guard;
use super::lock;
use super::quota::Endpoint;
use super::state::Shared;

/// A row of the delta export: the full export's fields and the event's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeltaRow {
    #[serde(flatten)]
    row: Row,
    status: &'static str,
    event_timestamp: String,
    is_onboarded: bool,
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BadRequest", message, &correlation_id())
}

/// `sinceTime` as RFC 3339 or a bare date (`2021-01-11`, as the reference's next link writes it).
fn parse_since(v: &str) -> Option<DateTime<Utc>> {
    let v = v.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0).map(|t| t.and_utc())
}

/// `GET /api/machines/SoftwareVulnerabilityChangesByMachine`.
pub(crate) async fn changes(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    shared.stats.count_export_changes();
    if let Err(r) = guard(&shared, &headers, Endpoint::ExportChanges).await {
        return r;
    }
    let Some(raw) = q.iter().find(|(k, _)| k.eq_ignore_ascii_case("sinceTime")).map(|(_, v)| v)
    else {
        return bad_request("sinceTime is required");
    };
    let Some(since) = parse_since(raw) else {
        return bad_request(&format!("Invalid value '{raw}' for sinceTime"));
    };
    let mut paging = match Paging::parse(&q) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let fleet = match fleet_for(&shared, &mut paging) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    if since < fleet.now - TimeDelta::days(MAX_DAYS_BACK) {
        return bad_request("sinceTime can be at most 14 days back");
    }
    let snapshot = paging.snapshot.unwrap_or(fleet.now);
    let log = lock(&shared.changes);
    // Only the page's rows are rendered: a delta of days of a large fleet has millions.
    let count = |ev: &&Event| some_row_count(&fleet, &fleet.devices[ev.device], &ev.kbs, ev.extras);
    let render = |ev: &&Event, out: &mut Vec<DeltaRow>| {
        let mut d = fleet.devices[ev.device].clone();
        ev.looks.put_on(&mut d);
        let stamp = ev.at.to_rfc3339_opts(SecondsFormat::Millis, true);
        let mut part = Vec::new();
        some_rows(&fleet, &d, &ev.kbs, ev.extras, &mut part);
        out.extend(part.into_iter().map(|row| DeltaRow {
            row,
            status: ev.status,
            event_timestamp: stamp.clone(),
            is_onboarded: !d.offboarded,
        }));
    };
    let events = log.between(since, snapshot);
    let (rows, more) = page_of(events, count, render, paging.skip, paging.take);
    drop(log);
    keep_if_paging(&shared, &fleet, &paging, more);
    respond(
        &shared,
        "api/machines/SoftwareVulnerabilityChangesByMachine",
        "DeltaAssetVulnerability",
        &[("sinceTime", raw.clone())],
        &paging,
        &rows,
        more,
    )
}
