//! Faults on demand: latency, 5xx, intermittent 404, malformed bodies, dropped connections, 403 (on every
//! route or on some), per device.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use rand::rngs::SmallRng;

use super::envelope::{correlation_id, error_response};

/// Faults applied to API requests (never to the token endpoint or `/admin`). Rates are shares in `0..=1`.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Added before every API response.
    pub latency: Duration,
    /// Share of API requests answered 500 or 503.
    pub server_error_rate: f64,
    /// Share of getmissingkbs requests answered with the real 404 body although the device exists.
    pub not_found_rate: f64,
    /// Share of getmissingkbs requests answered 200 with a truncated, invalid JSON body.
    pub malformed_rate: f64,
    /// Share of API requests whose connection is aborted without a complete response.
    pub drop_rate: f64,
    /// When set, every API request answers 403 `Forbidden` with this message.
    pub forbidden: Option<String>,
    /// Requests to each listed route answer 403 `Forbidden` with its message: the app lacks the
    /// permission of that route only.
    pub forbidden_on: Vec<(super::Route, String)>,
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
}

impl FaultState {
    pub(crate) fn new(faults: Faults, rng: SmallRng) -> Self {
        FaultState { faults, devices: HashMap::new(), rng }
    }

    fn roll(&mut self, share: f64) -> bool {
        share > 0.0 && self.rng.random::<f64>() < share
    }

    fn server_error(&mut self) -> Injected {
        let status = if self.rng.random_bool(0.5) {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Injected::ServerError(status)
    }

    /// The fault for a machines list request, if any.
    pub(crate) fn for_list(&mut self) -> Option<Injected> {
        if self.roll(self.faults.drop_rate) {
            return Some(Injected::Drop);
        }
        let rate = self.faults.server_error_rate;
        self.roll(rate).then(|| self.server_error())
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
