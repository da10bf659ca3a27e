//! The axum handlers of the API surface: list machines and getmissingkbs, behind auth, quota and faults;
//! the vulnerability exports are in `export`.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use super::envelope::{correlation_id, error_response};
use super::faults::{self, Injected};
use super::fleet::{Device, Fleet};
use super::guard::guard;
use super::machine::Machine;
use super::odata::Filter;
use super::quota::Endpoint;
use super::state::Shared;
use super::{admin, auth, export, export_delta, lock, read};
use tower_http::CompressionLevel;
use tower_http::compression::CompressionLayer;

/// The largest page the list returns, whatever `$top` asks for.
pub(crate) const PAGE_CAP: usize = 10_000;
const ODATA_JSON: &str =
    "application/json; odata.metadata=minimal; odata.streaming=true; charset=utf-8";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(auth::token))
        .route("/msi/token", get(auth::managed_identity))
        // The real list answers `Content-Encoding: deflate` when the client accepts it. The fastest
        // level: the simulator shares the machine's cores with the kbwatch it serves.
        .route(
            "/api/machines",
            get(machines).layer(CompressionLayer::new().quality(CompressionLevel::Fastest)),
        )
        .route("/api/machines/SoftwareVulnerabilitiesByMachine", get(export::full))
        .route("/api/machines/SoftwareVulnerabilityChangesByMachine", get(export_delta::changes))
        .route("/api/machines/{id}/getmissingkbs", get(missing_kbs))
        .merge(admin::router(shared.clone()))
        .fallback(|| async {
            error_response(StatusCode::NOT_FOUND, "ResourceNotFound", "Resource not found", "")
        })
        .with_state(shared)
}

fn injected(f: Injected, id: &str, context: &str) -> Response {
    match f {
        Injected::Drop => faults::dropped(),
        Injected::ServerError(status) => faults::server_error(status),
        Injected::NotFound => machine_not_found(id),
        Injected::Malformed => faults::malformed(context),
        Injected::Hang => faults::hang(),
        Injected::Throttle { seconds } => faults::throttled_without_quota(seconds, id),
    }
}

fn machine_not_found(id: &str) -> Response {
    let message = format!("Machine {id} was not found");
    error_response(StatusCode::NOT_FOUND, "ResourceNotFound", &message, &correlation_id())
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, "BadRequest", message, &correlation_id())
}

/// `GET /api/machines` with `$top` (capped at 10,000), `$skip` and `$filter`. Without `$top` a full page
/// carries an `@odata.nextLink`; with it there is none, as in the real API.
async fn machines(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    shared.stats.count_machines();
    if let Err(r) = guard(&shared, &headers, Endpoint::Machines).await {
        return r;
    }
    let context = format!("{}api/$metadata#Machines", shared.base_url);
    let number = |key: &str| match q.get(key) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| format!("Invalid value '{v}' for {key}")),
    };
    let (top, skip) = match (number("$top"), number("$skip")) {
        (Ok(top), Ok(skip)) => (top, skip.unwrap_or(0)),
        (Err(e), _) | (_, Err(e)) => return bad_request(&e),
    };
    let filter = match q.get("$filter").map(|f| Filter::parse(f)).transpose() {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("Invalid filter clause: {e}")),
    };
    let fleet = read(&shared.fleet);
    if fleet.listed_count() == 0 {
        return error_response(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            "No machines found",
            &correlation_id(),
        );
    }
    let take = top.unwrap_or(PAGE_CAP).min(PAGE_CAP);
    let mut body = Vec::with_capacity(take.min(1000) * 1400 + 200);
    let _ = write!(body, r#"{{"@odata.context":{},"value":["#, json!(context));
    let more = match write_page(&mut body, &fleet, filter.as_ref(), skip, take) {
        Ok(more) => more,
        Err(e) => {
            let msg = e.to_string();
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                &msg,
                "",
            );
        }
    };
    body.push(b']');
    if more && top.is_none() {
        let mut next =
            shared.base_url.join("api/machines").unwrap_or_else(|_| shared.base_url.clone());
        {
            let mut pairs = next.query_pairs_mut();
            if let Some(f) = q.get("$filter") {
                pairs.append_pair("$filter", f);
            }
            pairs.append_pair("$skip", &(skip + take).to_string());
        }
        let _ = write!(body, r#","@odata.nextLink":{}"#, json!(next.as_str()));
    }
    body.push(b'}');
    let headers = [
        (header::CONTENT_TYPE, ODATA_JSON),
        (header::HeaderName::from_static("odata-version"), "4.0"),
    ];
    (StatusCode::OK, headers, body).into_response()
}

/// A listed entity: a simulated device (rendered only when needed) or one pushed raw.
#[derive(Clone, Copy)]
enum Listed<'a> {
    Sim(&'a Device),
    Raw(&'a serde_json::Value),
}

/// Writes the matching entities `skip..skip + take` as JSON array items; returns whether more match after them.
/// Without a filter, skipped devices are not even rendered.
fn write_page(
    out: &mut Vec<u8>,
    fleet: &Fleet,
    filter: Option<&Filter>,
    skip: usize,
    take: usize,
) -> serde_json::Result<bool> {
    let sims = fleet.listed_devices().map(Listed::Sim);
    let mut listed = sims.chain(fleet.raw.iter().map(Listed::Raw));
    let mut seen = 0usize;
    if filter.is_none() {
        seen = listed.by_ref().take(skip).count();
    }
    let mut written = 0usize;
    for item in listed {
        let machine = match item {
            Listed::Sim(d) => Some(Machine::of(d, fleet.seed)),
            Listed::Raw(_) => None,
        };
        if let Some(f) = filter {
            let matched = match (&machine, item) {
                (Some(m), _) => f.matches(m),
                (None, Listed::Raw(v)) => f.matches(v),
                (None, Listed::Sim(_)) => false,
            };
            if !matched {
                continue;
            }
        }
        seen += 1;
        if seen <= skip {
            continue;
        }
        if written == take {
            return Ok(true);
        }
        if written > 0 {
            out.push(b',');
        }
        match (&machine, item) {
            (Some(m), _) => serde_json::to_writer(&mut *out, m)?,
            (None, Listed::Raw(v)) => serde_json::to_writer(&mut *out, v)?,
            (None, Listed::Sim(_)) => {}
        }
        written += 1;
    }
    Ok(false)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KbItem<'a> {
    id: &'a str,
    name: &'a str,
    products_names: &'a [&'static str],
    url: &'a str,
    machine_missed_on: u32,
    cve_addressed: i64,
}

/// `GET /api/machines/{id}/getmissingkbs`: the updates the device misses now (none for non-Windows devices).
async fn missing_kbs(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    shared.stats.count_kbs(&id);
    if let Err(r) = guard(&shared, &headers, Endpoint::MissingKbs).await {
        return r;
    }
    let context = format!(
        "{}api/$metadata#Collection(microsoft.windowsDefenderATP.api.PublicProductFixDto)",
        shared.base_url
    );
    if let Some(f) = lock(&shared.faults).for_device(&id) {
        if let Injected::Throttle { .. } = f {
            shared.stats.count_throttled(false);
        }
        return injected(f, &id, &context);
    }
    let fleet = read(&shared.fleet);
    let Some(device) = fleet.listed(&id.to_ascii_lowercase()) else {
        return machine_not_found(&id);
    };
    let value: Vec<KbItem<'_>> = device
        .missing
        .iter()
        .map(|&i| {
            let kb = &fleet.catalog.kbs[i as usize];
            KbItem {
                id: &kb.id,
                name: &kb.name,
                products_names: &kb.products,
                url: &kb.url,
                machine_missed_on: fleet.missed_on[i as usize],
                cve_addressed: kb.cve_addressed,
            }
        })
        .collect();
    let body = json!({"@odata.context": context, "value": value});
    let headers = [
        (header::CONTENT_TYPE, ODATA_JSON),
        (header::HeaderName::from_static("odata-version"), "4.0"),
    ];
    (StatusCode::OK, headers, body.to_string()).into_response()
}
