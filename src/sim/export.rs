//! `GET /api/machines/SoftwareVulnerabilitiesByMachine`, the full JSON vulnerability export: the rows of
//! `export_rows` for every listed device, in listing order, paged as documented (`pageSize` default 50,000,
//! at most 200,000, larger asks are cut to it; `@odata.nextLink` with a `$skiptoken`; `$top` returns that
//! many rows and no next link). Its own quota (`SimConfig::export_quota`, the documented 30 a minute and
//! 1,000 an hour by default) answers 429 with `Retry-After` as the other routes do.
//!
//! The export is read from the fleet as it is now, like getmissingkbs: paging while the fleet evolves sees
//! the rows shift (the real export pages over a snapshot).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::envelope::{correlation_id, error_response};
use super::export_rows::{Row, device_rows, row_count};
use super::fleet::{Device, Fleet};
use super::guard::guard;
use super::quota::Endpoint;
use super::read;
use super::state::Shared;

pub(crate) const PAGE_SIZE_DEFAULT: usize = 50_000;
pub(crate) const PAGE_SIZE_MAX: usize = 200_000;
const ODATA_JSON: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

/// What a request asks of the pages: where to start, how many rows, and whether `$top` was given.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Paging {
    pub skip: usize,
    pub take: usize,
    pub top: bool,
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
        let skip = match get("$skiptoken") {
            None => 0,
            Some(token) => {
                decode_skiptoken(token).ok_or_else(|| "Invalid $skiptoken".to_string())?
            }
        };
        let take = top.map_or(page_size, |t| t.min(PAGE_SIZE_MAX));
        Ok(Paging { skip, take, top: top.is_some() })
    }
}

/// An opaque token, shaped like the real one (base64 of JSON): `{"LineStoppedAt":N}`.
pub(crate) fn encode_skiptoken(offset: usize) -> String {
    STANDARD.encode(json!({ "LineStoppedAt": offset }).to_string())
}

fn decode_skiptoken(token: &str) -> Option<usize> {
    let bytes = STANDARD.decode(token.trim()).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    usize::try_from(v.get("LineStoppedAt")?.as_u64()?).ok()
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
            pairs.append_pair("$skiptoken", &encode_skiptoken(paging.skip + paging.take));
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
    let paging = match Paging::parse(&q) {
        Ok(p) => p,
        Err(e) => return bad_request(&e),
    };
    let (rows, more) = page(&read(&shared.fleet), paging.skip, paging.take);
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
        assert_eq!(p, Paging { skip: 0, take: PAGE_SIZE_DEFAULT, top: false });
        let p = Paging::parse(&query(&[("pagesize", "900000")])).unwrap();
        assert_eq!(p.take, PAGE_SIZE_MAX);
        let token = encode_skiptoken(1234);
        let p = Paging::parse(&query(&[("pageSize", "7"), ("$skiptoken", &token)])).unwrap();
        assert_eq!(p, Paging { skip: 1234, take: 7, top: false });
        let p = Paging::parse(&query(&[("pageSize", "7"), ("$top", "999")])).unwrap();
        assert_eq!(p, Paging { skip: 0, take: 999, top: true });
        assert!(Paging::parse(&query(&[("pageSize", "0")])).is_err());
        assert!(Paging::parse(&query(&[("$skiptoken", "not-a-token")])).is_err());
    }
}
