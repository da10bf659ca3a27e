//! What every API request goes through before its handler: latency, bearer token, the forbidden fault,
//! the throttled fault, the endpoint's quota and the server-error faults.

use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use super::envelope::{correlation_id, error_response};
use super::faults;
use super::quota::{Endpoint, Verdict};
use super::state::Shared;
use super::{auth, lock};

/// What every API request goes through, in order: latency, bearer token (401), the forbidden fault (403),
/// the throttled fault (429, not counted by the quota), the endpoint's quota (429), the server-error
/// fault (500 or 503, counted by the quota), and on the list and the exports the rates of dropped
/// connections and 5xx. Returns the tenant of the token.
pub(crate) async fn guard(
    shared: &Shared,
    headers: &HeaderMap,
    ep: Endpoint,
) -> Result<String, Response> {
    let arrived = Instant::now();
    let (latency, forbidden) = {
        let f = lock(&shared.faults);
        let on_route = f.faults.forbidden_on.iter().find(|(route, _)| *route == ep);
        (f.faults.latency, f.faults.forbidden.clone().or_else(|| on_route.map(|r| r.1.clone())))
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(tenant) = auth::authorize(shared, headers) else {
        shared.stats.count_unauthorized();
        return Err(auth::unauthorized());
    };
    if let Some(message) = forbidden {
        return Err(error_response(
            StatusCode::FORBIDDEN,
            "Forbidden",
            &message,
            &correlation_id(),
        ));
    }
    let throttle = lock(&shared.faults).throttle(ep, arrived);
    if let Some((t, violation)) = throttle {
        shared.stats.count_throttled(violation);
        return Err(faults::throttled(t, &tenant));
    }
    let verdict = lock(&shared.quotas).check(ep, arrived, Instant::now());
    if let Verdict::Throttle { retry_after, limit, window, violation } = verdict {
        shared.stats.count_throttled(violation);
        let message = format!(
            "API calls quota exceeded! Maximum allowed {limit} per {window} for the key \
             Destination+TenantID+AppID. You can send requests again in {retry_after} seconds."
        );
        let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "429", &message, &tenant);
        response.headers_mut().insert(header::RETRY_AFTER, retry_after.into());
        return Err(response);
    }
    if let Some(status) = lock(&shared.faults).fails(ep) {
        return Err(faults::server_error(status));
    }
    // getmissingkbs rolls these with its device faults, in its handler.
    if ep != Endpoint::MissingKbs
        && let Some(answer) = lock(&shared.faults).for_page()
    {
        return Err(answer);
    }
    Ok(tenant)
}
