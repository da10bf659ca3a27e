//! The client: one `reqwest::Client`, one classification of every response (DESIGN §3).

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde::de::DeserializeOwned;
use url::Url;

use super::body::{read_capped, read_prefix};
use super::error::{cut_text, error_chain, error_message, stated_quota, throttle_delay};
use super::model::{Object, Page};
use super::{ApiError, TokenSource};
use crate::model::{CallCounters, MachineId, MissingKb};
use crate::pacer::{Endpoint, Pacer};

/// The most items a device's KB list may have: real devices miss tens, rarely hundreds.
pub const MAX_KBS: usize = 10_000;
/// The most `@odata.nextLink` pages of one device's KB list.
const MAX_KB_PAGES: usize = 100;
/// How much of an error response's body is read (for its message).
const ERROR_BODY_BYTES: usize = 64 << 10;

/// Limits and retry policy of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Rows per machines page (`$top`), at most 10,000.
    pub page_size: u32,
    /// Attempts for a 5xx, timeout or connection error.
    pub max_attempts: u32,
    /// First backoff; doubled per attempt, jittered, capped at 30 s.
    pub retry_base: Duration,
    /// Extra attempts for a device 404 (known to be intermittent).
    pub not_found_retries: u32,
    /// 429s tolerated for one call before it fails (the pacer pauses between them).
    pub max_throttled: u32,
    pub max_page_bytes: u64,
    pub max_kbs_bytes: u64,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            page_size: 10_000,
            max_attempts: 4,
            retry_base: Duration::from_millis(500),
            not_found_retries: 2,
            max_throttled: 30,
            max_page_bytes: 64 << 20,
            max_kbs_bytes: 4 << 20,
        }
    }
}

/// The Defender API of one tenant.
pub struct Client {
    http: reqwest::Client,
    base: Url,
    pub(super) tokens: Arc<dyn TokenSource>,
    pacer: Arc<Pacer>,
    pub(super) options: ClientOptions,
    counters: Arc<CallCounters>,
}

impl Client {
    pub fn new(
        http: reqwest::Client,
        base: Url,
        tokens: Arc<dyn TokenSource>,
        pacer: Arc<Pacer>,
        options: ClientOptions,
    ) -> Self {
        Self { http, base, tokens, pacer, options, counters: Arc::default() }
    }

    /// The same client (HTTP pool, tokens, pacer) with counters at zero: one per scan.
    pub fn with_fresh_counters(&self) -> Client {
        Client {
            http: self.http.clone(),
            base: self.base.clone(),
            tokens: self.tokens.clone(),
            pacer: self.pacer.clone(),
            options: self.options.clone(),
            counters: Arc::default(),
        }
    }

    /// The calls this client made and the 429s it received, shared with whoever reports them.
    pub fn counters(&self) -> &Arc<CallCounters> {
        &self.counters
    }

    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    /// `GET /api/machines/{id}/getmissingkbs`, following `@odata.nextLink`. The pages together
    /// stay within `max_kbs_bytes` and [`MAX_KBS`] items, or the device fails.
    pub async fn missing_kbs(&self, id: &MachineId) -> Result<Vec<MissingKb>, ApiError> {
        let mut url = self.url(&["api", "machines", id.as_str(), "getmissingkbs"]);
        let mut kbs = Vec::new();
        let mut left = self.options.max_kbs_bytes;
        for _ in 0..MAX_KB_PAGES {
            let (page, bytes): (Page<Object<MissingKb>>, u64) =
                match self.get_json(Endpoint::MissingKbs, &url, left).await {
                    Err(ApiError::TooLarge { .. }) => {
                        return Err(ApiError::TooLarge { limit: self.options.max_kbs_bytes });
                    }
                    page => page?,
                };
            left -= bytes;
            kbs.extend(page.value.into_iter().map(|Object(kb)| kb));
            if kbs.len() > MAX_KBS {
                return Err(ApiError::TooManyKbs { limit: MAX_KBS });
            }
            match page.next_link.and_then(|l| self.same_origin(&l)) {
                Some(next) => url = next,
                None => return Ok(kbs),
            }
        }
        Err(ApiError::Decode(format!("more than {MAX_KB_PAGES} @odata.nextLink pages")))
    }

    pub(super) fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("api_base is an http(s) URL")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// A `@odata.nextLink` is followed only to the configured host, with a query that has no empty keys.
    pub(super) fn same_origin(&self, link: &str) -> Option<Url> {
        let url = Url::parse(link).ok()?;
        let same = url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
            && url.query_pairs().all(|(k, _)| !k.is_empty());
        same.then_some(url)
    }

    /// One logical GET with pacing, auth, retries and classification: the decoded body and its
    /// size in bytes.
    pub(super) async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        cap: u64,
    ) -> Result<(T, u64), ApiError> {
        let decode = |body: &[u8]| serde_json::from_slice(body);
        self.get_decoded(endpoint, url, cap, &mut Vec::new(), decode).await
    }

    /// [`Client::get_json`] with the body read into `body` (whose allocation a caller may keep
    /// for the pages of one listing) and decoded by `decode`, which may fold it into a caller's
    /// state rather than build a value of it (called once, on the response that succeeded).
    pub(super) async fn get_decoded<T>(
        &self,
        endpoint: Endpoint,
        url: &Url,
        cap: u64,
        body: &mut Vec<u8>,
        decode: impl FnOnce(&[u8]) -> serde_json::Result<T>,
    ) -> Result<(T, u64), ApiError> {
        let mut failures = 0u32;
        let mut not_found = 0u32;
        let mut throttled = 0u32;
        let mut refreshed = false;
        loop {
            let token = self.tokens.token().await?;
            let admission = self.pacer.admit(endpoint).await;
            crate::metrics::pacer_waited(
                self.pacer.tenant(),
                endpoint.as_str(),
                admission.waited(),
            );
            self.counters.call();
            let sent = self.http.get(url.clone()).bearer_auth(token.expose_secret()).send().await;
            let (outcome, status) = match sent {
                Ok(response) => {
                    let status = response.status();
                    (self.classify(endpoint, response, cap, body).await, Some(status))
                }
                Err(e) => (Err(ApiError::Transport(cut_text(&error_chain(&e)))), None),
            };
            self.record(endpoint, status, &outcome);
            if let Err(ApiError::Throttled { delay, server }) = &outcome {
                // Pause before the slot is freed, so no caller slips a request in between.
                self.pacer.throttled(endpoint, *delay, *server).await;
            }
            drop(admission);
            let err = match outcome {
                Ok(()) => {
                    let size = body.len() as u64;
                    return decode(body)
                        .map(|decoded| (decoded, size))
                        .map_err(|e| ApiError::Decode(cut_text(&e.to_string())));
                }
                Err(err) => err,
            };
            match &err {
                ApiError::Unauthorized(_) if !refreshed => {
                    refreshed = true;
                    self.tokens.refresh().await?;
                }
                ApiError::NotFound
                    if endpoint == Endpoint::MissingKbs
                        && not_found < self.options.not_found_retries =>
                {
                    not_found += 1;
                    tokio::time::sleep(self.backoff(not_found)).await;
                }
                // Waited out in the pacer above, on a budget of its own rather than `failures`.
                ApiError::Throttled { delay, .. } => {
                    self.counters.throttled();
                    if throttled >= self.options.max_throttled {
                        return Err(err);
                    }
                    throttled += 1;
                    tracing::warn!(
                        endpoint = endpoint.as_str(),
                        delay_s = delay.as_secs_f64(),
                        "Throttled; pausing the endpoint"
                    );
                }
                _ if err.is_retryable() && failures + 1 < self.options.max_attempts => {
                    failures += 1;
                    tracing::debug!(error = %err, attempt = failures, "Retrying");
                    tokio::time::sleep(self.backoff(failures)).await;
                }
                _ => return Err(err),
            }
        }
    }

    /// Counts one request by its HTTP status (`transport` when no complete response arrived).
    fn record(
        &self,
        endpoint: Endpoint,
        status: Option<StatusCode>,
        outcome: &Result<(), ApiError>,
    ) {
        let tenant = self.pacer.tenant();
        // A body cut off mid-way is a transport failure, whatever the status line said.
        let status =
            status.filter(|_| !matches!(outcome, Err(ApiError::Transport(_)))).map(|s| s.as_u16());
        crate::metrics::api_request(tenant, endpoint.as_str(), status);
        if status == Some(429) {
            crate::metrics::api_throttled(tenant, endpoint.as_str());
        }
    }

    /// Reads a response's body into `body`, or maps it to the error kind of the classification
    /// table.
    async fn classify(
        &self,
        endpoint: Endpoint,
        response: reqwest::Response,
        cap: u64,
        body: &mut Vec<u8>,
    ) -> Result<(), ApiError> {
        let status = response.status();
        let header = |name| {
            response.headers().get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        let retry_after = header(reqwest::header::RETRY_AFTER);
        if status.is_redirection() {
            let location = header(reqwest::header::LOCATION).unwrap_or_default();
            return Err(ApiError::Redirect {
                status: status.as_u16(),
                location: cut_text(&location),
            });
        }
        if status.is_success() {
            return read_capped(response, cap, body).await;
        }
        // An error's text is kept only in part: its first bytes are enough to classify it.
        let body = read_prefix(response, ERROR_BODY_BYTES).await?;
        let text = String::from_utf8_lossy(&body);
        Err(match status {
            StatusCode::UNAUTHORIZED => ApiError::Unauthorized(error_message(&text)),
            StatusCode::FORBIDDEN => ApiError::Forbidden(error_message(&text)),
            StatusCode::NOT_FOUND => ApiError::NotFound,
            StatusCode::TOO_MANY_REQUESTS => ApiError::Throttled {
                delay: throttle_delay(retry_after.as_deref(), &text),
                server: stated_quota(&text),
            },
            s if s.is_server_error() => {
                ApiError::Server { status: s.as_u16(), body: error_message(&text) }
            }
            s => ApiError::Status {
                status: s.as_u16(),
                body: format!("{}: {}", endpoint.as_str(), error_message(&text)),
            },
        })
    }

    /// Jittered exponential backoff: base × 2^(n-1), capped at 30 s, between 50 % and 100 % of it.
    fn backoff(&self, attempt: u32) -> Duration {
        let full = self.options.retry_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let full = full.min(Duration::from_secs(30));
        full.mul_f64(rand::rng().random_range(0.5..=1.0))
    }
}
