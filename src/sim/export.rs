//! `GET /api/machines/SoftwareVulnerabilitiesByMachine`, the full JSON vulnerability export: the rows of
//! `export_rows` for every listed device, in listing order, paged as documented (`pageSize` default 50,000,
//! at most 200,000, larger asks are cut to it; `@odata.nextLink` with a `$skiptoken`; `$top` returns that
//! many rows and no next link). Its own quota (`SimConfig::export_quota`, the documented 30 a minute and
//! 1,000 an hour by default) answers 429 with `Retry-After` as the other routes do.
//!
//! A first page reads the current snapshot of the fleet; its next link's `$skiptoken` names that
//! snapshot, and the later pages read it, whatever evolved since (`snapshot`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::envelope::{correlation_id, error_response};
use super::export_rows::{Row, device_rows, row_count};
use super::fleet::{Device, Fleet};
use super::guard::guard;
use super::quota::Endpoint;
use super::snapshot::snapshot_time;
use super::state::Shared;
use super::{lock, read};

pub(crate) const PAGE_SIZE_DEFAULT: usize = 50_000;
pub(crate) const PAGE_SIZE_MAX: usize = 200_000;
const ODATA_JSON: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

/// What a request asks of the pages: where to start, how many rows, whether `$top` was given, and
/// the snapshot its `$skiptoken` names (set to the one read once it is resolved, [`fleet_for`]).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Paging {
    pub skip: usize,
    pub take: usize,
    pub top: bool,
    pub snapshot: Option<DateTime<Utc>>,
}

impl Paging {
    /// From the query, keys compared without case (`pageSize`, `pagesize`, `$top`, `$skiptoken`).
    pub(crate) fn parse(q: &HashMap<String, String>) -> Result<Paging, String> {
        let get = |key: &str| q.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v);
        let number = |key: &str| match get(key) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if n > 0 => Ok(Some(n)),
                _ => Err(format!("Invalid value '{v}' for {key}")),
            },
        };
        let page_size = number("pageSize")?.unwrap_or(PAGE_SIZE_DEFAULT).min(PAGE_SIZE_MAX);
        let top = number("$top")?;
        let (skip, snapshot) = match get("$skiptoken") {
            None => (0, None),
            Some(token) => {
                decode_skiptoken(token).ok_or_else(|| "Invalid $skiptoken".to_string())?
            }
        };
        let take = top.map_or(page_size, |t| t.min(PAGE_SIZE_MAX));
        Ok(Paging { skip, take, top: top.is_some(), snapshot })
    }
}

/// An opaque token, shaped like the real one (base64 of JSON): `{"LineStoppedAt":N}`, and the
/// simulator's `SnapshotTime` (what the real one holds beside the offset is not public).
pub(crate) fn encode_skiptoken(offset: usize, snapshot: Option<DateTime<Utc>>) -> String {
    let mut token = json!({ "LineStoppedAt": offset });
    if let Some(at) = snapshot {
        token["SnapshotTime"] = json!(at.to_rfc3339_opts(SecondsFormat::Secs, true));
    }
    STANDARD.encode(token.to_string())
}

/// The offset and the snapshot (none: the current one) of a token.
fn decode_skiptoken(token: &str) -> Option<(usize, Option<DateTime<Utc>>)> {
    let bytes = STANDARD.decode(token.trim()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let offset = usize::try_from(v.get("LineStoppedAt")?.as_u64()?).ok()?;
    let snapshot = match v.get("SnapshotTime") {
        None => None,
        Some(at) => Some(DateTime::parse_from_rfc3339(at.as_str()?).ok()?.to_utc()),
    };
    Some((offset, snapshot))
}

/// The fleet a request pages over: the current snapshot for a first page, else the one its
/// `$skiptoken` names, or the message of the 400 once that one is no longer kept. Sets
/// `paging.snapshot` to it.
pub(crate) fn fleet_for(shared: &Shared, paging: &mut Paging) -> Result<Arc<Fleet>, &'static str> {
    let current = read(&shared.fleet).clone();
    let fleet = match paging.snapshot {
        None => current,
        Some(at) => lock(&shared.snapshots).find(at, current).ok_or(
            "The $skiptoken refers to an export snapshot that is no longer available; \
             start again from the first page",
        )?,
    };
    paging.snapshot = Some(snapshot_time(fleet.now));
    Ok(fleet)
}

/// After a page of `fleet` was rendered: keeps its snapshot while a next link to it is out.
pub(crate) fn keep_if_paging(shared: &Shared, fleet: &Arc<Fleet>, paging: &Paging, more: bool) {
    if more && !paging.top {
        lock(&shared.snapshots).keep(fleet);
    }
}

/// Rows `skip..skip + take` of the whole export, and whether more follow.
pub(crate) fn page(fleet: &Fleet, skip: usize, take: usize) -> (Vec<Row>, bool) {
    let count = |d: &&Device| row_count(fleet, d);
    let render = |d: &&Device, out: &mut Vec<Row>| device_rows(fleet, d, out);
    page_of(fleet.listed_devices(), count, render, skip, take)
}

/// Rows `skip..skip + take` of `items`, each of which renders `count(item)` rows, and whether more
/// follow. Items wholly before `skip` are counted, not rendered.
pub(crate) fn page_of<I, R>(
    items: impl Iterator<Item = I>,
    count: impl Fn(&I) -> usize,
    mut render: impl FnMut(&I, &mut Vec<R>),
    skip: usize,
    take: usize,
) -> (Vec<R>, bool) {
    let mut rows = Vec::new();
    let mut seen = 0usize;
    for item in items {
        let n = count(&item);
        if n == 0 {
            continue;
        }
        if seen + n <= skip {
            seen += n;
            continue;
        }
        if rows.len() == take {
            return (rows, true);
        }
        let from = skip.saturating_sub(seen);
        let mut all = Vec::with_capacity(n);
        render(&item, &mut all);
        seen += n;
        let room = take - rows.len();
        rows.extend(all.into_iter().skip(from).take(room));
        if n - from > room {
            return (rows, true);
        }
    }
    (rows, false)
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BadRequest", message, &correlation_id())
}

/// The OData page: `value`, and a next link (`path` with `keep` and the next `$skiptoken`) when more rows
/// follow and `$top` was not given.
pub(crate) fn respond<T: serde::Serialize>(
    shared: &Shared,
    path: &str,
    entity: &str,
    keep: &[(&str, String)],
    paging: &Paging,
    rows: &[T],
    more: bool,
) -> Response {
    let context = format!(
        "{}api/$metadata#Collection(microsoft.windowsDefenderATP.api.{entity})",
        shared.base_url
    );
    let mut body = json!({ "@odata.context": context, "value": rows });
    if more && !paging.top {
        let mut next = shared.base_url.join(path).unwrap_or_else(|_| shared.base_url.clone());
        {
            let mut pairs = next.query_pairs_mut();
            for (k, v) in keep {
                pairs.append_pair(k, v);
            }
            pairs.append_pair("pageSize", &paging.take.to_string());
            let token = encode_skiptoken(paging.skip + paging.take, paging.snapshot);
            pairs.append_pair("$skiptoken", &token);
        }
        body["@odata.nextLink"] = json!(next.as_str());
    }
    let headers = [
        (header::CONTENT_TYPE, ODATA_JSON),
        (header::HeaderName::from_static("odata-version"), "4.0"),
    ];
    (StatusCode::OK, headers, body.to_string()).into_response()
}

/// `GET /api/machines/SoftwareVulnerabilitiesByMachine`.
pub(crate) async fn full(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    shared.stats.count_export();
    if let Err(r) = guard(&shared, &headers, Endpoint::Export).await {
        return r;
    }
    let mut paging = match Paging::parse(&q) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let fleet = match fleet_for(&shared, &mut paging) {
        Ok(f) => f,
        Err(e) => return bad_request(e),
    };
    let (rows, more) = page(&fleet, paging.skip, paging.take);
    keep_if_paging(&shared, &fleet, &paging, more);
    respond(
        &shared,
        "api/machines/SoftwareVulnerabilitiesByMachine",
        "AssetVulnerability",
        &[],
        &paging,
        &rows,
        more,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn paging_defaults_caps_and_tokens() {
        let p = Paging::parse(&query(&[])).unwrap();
        assert_eq!(p, Paging { skip: 0, take: PAGE_SIZE_DEFAULT, top: false, snapshot: None });
        let p = Paging::parse(&query(&[("pagesize", "900000")])).unwrap();
        assert_eq!(p.take, PAGE_SIZE_MAX);
        let at = "2026-11-20T06:00:00Z".parse().unwrap();
        let token = encode_skiptoken(1234, Some(at));
        let p = Paging::parse(&query(&[("pageSize", "7"), ("$skiptoken", &token)])).unwrap();
        assert_eq!(p, Paging { skip: 1234, take: 7, top: false, snapshot: Some(at) });
        let token = encode_skiptoken(5, None);
        let p = Paging::parse(&query(&[("$skiptoken", &token)])).unwrap();
        assert_eq!((p.skip, p.snapshot), (5, None));
        let p = Paging::parse(&query(&[("pageSize", "7"), ("$top", "999")])).unwrap();
        assert_eq!(p, Paging { skip: 0, take: 999, top: true, snapshot: None });
        assert!(Paging::parse(&query(&[("pageSize", "0")])).is_err());
        assert!(Paging::parse(&query(&[("$skiptoken", "not-a-token")])).is_err());
    }
}
