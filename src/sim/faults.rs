//! Faults on demand: latency, 5xx, intermittent 404, malformed bodies, dropped connections, 403 (on every
//! route or on some), 429 and 5xx on some routes, per device.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::rngs::SmallRng;

use super::envelope::{correlation_id, error_response};
use super::quota::{Endpoint, IN_FLIGHT_GRACE};

/// Faults applied to API requests (never to the token endpoint or `/admin`). Rates are shares in `0..=1`.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added before every API response.
    pub latency: Duration,
    /// Share of API requests (list, getmissingkbs, both exports) answered 500 or 503.
    pub server_error_rate: f64,
    /// Share of getmissingkbs requests answered with the real 404 body although the device exists.
    pub not_found_rate: f64,
    /// Share of getmissingkbs requests answered 200 with a truncated, invalid JSON body.
    pub malformed_rate: f64,
    /// Share of API requests (list, getmissingkbs, both exports) whose connection is aborted
    /// without a complete response.
    pub drop_rate: f64,
    /// When set, every API request answers 403 `Forbidden` with this message.
    pub forbidden: Option<String>,
    /// Requests to each listed route answer 403 `Forbidden` with its message: the app lacks the
    /// permission of that route only.
    pub forbidden_on: Vec<(super::Route, String)>,
    /// Requests to each listed route answer 429 as its [`Throttle`] says, every one of them, before
    /// the quota counts them. One that comes before the previous 429's wait has passed counts as a
    /// `Retry-After` violation ([`super::SimStats::retry_after_violations`]).
    pub throttled_on: Vec<(super::Route, Throttle)>,
    /// Requests to each listed route answer 500 or 503 (even odds), every one of them, once the
    /// quota admitted them.
    pub server_error_on: Vec<super::Route>,
}

/// A 429 on demand ([`Faults::throttled_on`]). Its message asks the client to wait `seconds`
/// ("You can send requests again in N seconds") and states no quota, as when Defender throttles
/// by CPU; with `retry_after` the answer also has a `Retry-After` header of those seconds. The
/// record says a `Retry-After` gives the wait and has no captured Defender 429 with its headers
/// (`export-api.md`, "What a 429 looks like"): both are served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Throttle {
    pub seconds: u32,
    pub retry_after: bool,
}

/// A fault pinned to one device, whatever the rates say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceFault {
    /// Listed, but getmissingkbs always answers 404.
    AlwaysNotFound,
    /// getmissingkbs always answers 200 with a truncated body.
    Malformed,
    /// getmissingkbs always answers 500.
    ServerError,
    /// getmissingkbs answers 200 and starts a body that never finishes.
    Hang,
    /// The first getmissingkbs request answers 429 whose message says only "You can send
    /// requests again in N seconds" (no quota, no `Retry-After`), as Defender does when it
    /// throttles by CPU rather than by call count; the fault is then gone.
    ThrottleOnce { seconds: u32 },
}

/// What to do with one request instead of answering it normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Injected {
    Drop,
    ServerError(StatusCode),
    NotFound,
    Malformed,
    Hang,
    Throttle { seconds: u32 },
}

/// The fault settings and the generator that rolls them.
pub(crate) struct FaultState {
    pub faults: Faults,
    pub devices: HashMap<String, DeviceFault>,
    rng: SmallRng,
    /// Per route: when its last [`Faults::throttled_on`] 429 was answered and until when it asked
    /// the client to wait.
    throttled: [Option<(Instant, Instant)>; 4],
}

impl FaultState {
    pub(crate) fn new(faults: Faults, rng: SmallRng) -> Self {
        FaultState { faults, devices: HashMap::new(), rng, throttled: [None; 4] }
    }

    /// The 429 of a request to `ep` that arrived at `arrived`, if the route is throttled, and
    /// whether the request is a violation: it came before the previous 429's wait had passed, and
    /// not so soon after that 429 that it was already on its way (the quota's rule).
    pub(crate) fn throttle(&mut self, ep: Endpoint, arrived: Instant) -> Option<(Throttle, bool)> {
        let t = self.faults.throttled_on.iter().find(|(route, _)| *route == ep).map(|(_, t)| *t)?;
        let now = Instant::now();
        let last = &mut self.throttled[ep as usize];
        let violation = last.is_some_and(|(answered, until)| {
            arrived < until && arrived > answered + IN_FLIGHT_GRACE
        });
        *last = Some((now, now + Duration::from_secs(t.seconds.into())));
        Some((t, violation))
    }

    /// The 5xx status of a request to `ep`, if the route fails ([`Faults::server_error_on`]).
    pub(crate) fn fails(&mut self, ep: Endpoint) -> Option<StatusCode> {
        self.faults.server_error_on.contains(&ep).then(|| self.error_status())
    }

    fn roll(&mut self, share: f64) -> bool {
        share > 0.0 && self.rng.random::<f64>() < share
    }

    fn server_error(&mut self) -> Injected {
        Injected::ServerError(self.error_status())
    }

    /// 500 or 503, even odds.
    fn error_status(&mut self) -> StatusCode {
        if self.rng.random_bool(0.5) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        }
    }

    /// The answer to a page request (the machines list, either export) that meets a fault, if
    /// one does: a dropped connection or a 5xx, by their rates.
    pub(crate) fn for_page(&mut self) -> Option<Response> {
        if self.roll(self.faults.drop_rate) {
            return Some(dropped());
        }
        let rate = self.faults.server_error_rate;
        self.roll(rate).then(|| server_error(self.error_status()))
    }

    /// The fault for a getmissingkbs request of `id`, if any: a device fault first, then the rates.
    pub(crate) fn for_device(&mut self, id: &str) -> Option<Injected> {
        if let Some(f) = self.devices.get(id).copied() {
            return Some(match f {
                DeviceFault::AlwaysNotFound => Injected::NotFound,
                DeviceFault::Malformed => Injected::Malformed,
                DeviceFault::ServerError => {
                    Injected::ServerError(StatusCode::INTERNAL_SERVER_ERROR)
                }
                DeviceFault::Hang => Injected::Hang,
                DeviceFault::ThrottleOnce { seconds } => {
                    self.devices.remove(id);
                    Injected::Throttle { seconds }
                }
            });
        }
        let f = self.faults.clone();
        if self.roll(f.drop_rate) {
            Some(Injected::Drop)
        } else if self.roll(f.server_error_rate) {
            Some(self.server_error())
        } else if self.roll(f.not_found_rate) {
            Some(Injected::NotFound)
        } else if self.roll(f.malformed_rate) {
            Some(Injected::Malformed)
        } else {
            None
        }
    }
}

/// A response whose body fails before its first byte: hyper aborts the connection, the client sees a
/// transport error (on the request or while reading the body).
pub(crate) fn dropped() -> Response {
    let stream = futures::stream::once(async {
        Err::<axum::body::Bytes, std::io::Error>(std::io::Error::other(
            "simulated dropped connection",
        ))
    });
    Response::new(Body::from_stream(stream))
}

pub(crate) fn server_error(status: StatusCode) -> Response {
    let (code, message) = if status == StatusCode::SERVICE_UNAVAILABLE {
        ("ServiceUnavailable", "The service is temporarily unavailable. Retry the operation.")
    } else {
        ("InternalServerError", "An unexpected error occurred. Retry the operation.")
    };
    error_response(status, code, message, &correlation_id())
}

/// A 429 that states no quota: only when to come back, in its message.
pub(crate) fn throttled_without_quota(seconds: u32, target: &str) -> Response {
    let message = format!(
        "Too many requests; the service is busy. You can send requests again in {seconds} seconds."
    );
    error_response(StatusCode::TOO_MANY_REQUESTS, "429", &message, target)
}

/// The 429 of a [`Throttle`].
pub(crate) fn throttled(t: Throttle, target: &str) -> Response {
    let mut response = throttled_without_quota(t.seconds, target);
    if t.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, t.seconds.into());
    }
    response
}

/// A 200 whose JSON body is cut in the middle of the first item.
pub(crate) fn malformed(context: &str) -> Response {
    let body = format!(r#"{{"@odata.context":"{context}","value":[{{"id":"50"#);
    (StatusCode::OK, [("content-type", "application/json; odata.metadata=minimal")], body)
        .into_response()
}

/// A 200 that sends the start of its body and then nothing, forever.
pub(crate) fn hang() -> Response {
    let start = futures::stream::once(async {
        Ok::<axum::body::Bytes, std::io::Error>(axum::body::Bytes::from_static(b"{\"value\":["))
    });
    let body = futures::StreamExt::chain(start, futures::stream::pending());
    let mut response = Response::new(Body::from_stream(body));
    response
        .headers_mut()
        .insert("content-type", "application/json".parse().expect("constant header"));
    response
}
