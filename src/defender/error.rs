//! How a failed API call is classified (DESIGN §3).

use std::time::Duration;

use crate::pacer::ServerQuota;

/// A failed call, by the kind callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401 after one token refresh, or the token could not be obtained at all.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: the app lacks a role; the message names it. Stops the tenant's scan.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404 on a device after the retries for intermittent 404s.
    #[error("not found")]
    NotFound,
    /// 429: wait `delay`; `server` is the quota the message stated, when it did.
    #[error("throttled; retry after {delay:?}")]
    Throttled { delay: Duration, server: Option<ServerQuota> },
    /// 5xx after every attempt.
    #[error("server error {status}: {body}")]
    Server { status: u16, body: String },
    /// Any other unexpected status.
    #[error("unexpected status {status}: {body}")]
    Status { status: u16, body: String },
    /// Timeout, connection refused or dropped, after every attempt.
    #[error("transport: {0}")]
    Transport(String),
    /// The body exceeded the configured cap.
    #[error("response body over the {limit}-byte cap")]
    TooLarge { limit: u64 },
    /// A 3xx: kbwatch follows no redirect, so neither a token nor a secret reaches another origin
    /// and no answer from another origin is stored.
    #[error("redirected ({status}) to {location}; kbwatch follows no redirects: check api_base")]
    Redirect { status: u16, location: String },
    /// A device's KB list passed the sane bound on items.
    #[error("the KB list has more than {limit} items; a device is never missing that many")]
    TooManyKbs { limit: usize },
    /// 2xx with invalid JSON or the wrong shape.
    #[error("cannot decode response: {0}")]
    Decode(String),
}

impl ApiError {
    /// Whether the same request may succeed if sent again later: the client sends it again, after
    /// a backoff (5xx, transport) or the wait a 429 asked for, until its attempts run out.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Server { .. } | Self::Transport(_) | Self::Throttled { .. })
    }

    /// Whether the whole scan of the tenant must stop (no other call can succeed).
    pub fn stops_scan(&self) -> bool {
        matches!(self, Self::Unauthorized(_) | Self::Forbidden(_))
    }
}

/// The longest wait a response can ask for: a larger `Retry-After` is taken as this.
pub const MAX_THROTTLE_DELAY: Duration = Duration::from_secs(3600);

/// The most bytes of API text (an error message, a `Location`) kept in an error: what is stored,
/// logged and printed.
pub const MAX_API_TEXT: usize = 2048;

/// The wait a 429 asks for: `Retry-After` seconds, else "send requests again in N seconds" in the
/// message text, else 10 s; between 1 s and [`MAX_THROTTLE_DELAY`].
pub(crate) fn throttle_delay(retry_after: Option<&str>, body: &str) -> Duration {
    let asked = asked_delay(retry_after, body);
    asked.clamp(Duration::from_secs(1), MAX_THROTTLE_DELAY)
}

fn asked_delay(retry_after: Option<&str>, body: &str) -> Duration {
    if let Some(secs) = retry_after.and_then(|v| v.trim().parse::<u64>().ok()) {
        return Duration::from_secs(secs.min(MAX_THROTTLE_DELAY.as_secs()));
    }
    static AGAIN_IN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)send requests again in (\d{1,6}) seconds")
            .expect("constant regex compiles")
    });
    AGAIN_IN
        .captures(body)
        .and_then(|c| c[1].parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(10))
}

/// The quota a 429's message states: "Maximum allowed 30 per 00:01:00".
pub(crate) fn stated_quota(body: &str) -> Option<ServerQuota> {
    static ALLOWED: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?i)maximum allowed (\d{1,9}) per (\d{1,2}):(\d{2}):(\d{2})")
            .expect("constant regex compiles")
    });
    let c = ALLOWED.captures(body)?;
    let part = |i: usize| c[i].parse::<u64>().ok();
    let window = Duration::from_secs(part(2)? * 3600 + part(3)? * 60 + part(4)?);
    Some(ServerQuota { calls: c[1].parse().ok()?, window })
}

/// The `error.message` of an API error envelope, else the body cut to a readable length.
pub(crate) fn error_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Envelope {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: Option<String>,
    }
    match serde_json::from_str::<Envelope>(body) {
        Ok(Envelope { error: Inner { message: Some(m) } }) => cut_text(&m),
        _ => body.chars().take(300).collect(),
    }
}

/// An error with its causes, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `text` cut to at most [`MAX_API_TEXT`] bytes (at a character boundary), saying how much was cut.
pub fn cut_text(text: &str) -> String {
    if text.len() <= MAX_API_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_API_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_delay_prefers_header_then_message_then_default() {
        let body = r#"{"error":{"code":"429","message":"API calls quota exceeded! Maximum allowed 30 per 00:01:00 for the key Destination+TenantID+AppID. You can send requests again in 8 seconds.","target":"x"}}"#;
        assert_eq!(throttle_delay(Some("3"), body), Duration::from_secs(3));
        assert_eq!(throttle_delay(None, body), Duration::from_secs(8));
        assert_eq!(throttle_delay(Some("soon"), "{}"), Duration::from_secs(10));
    }

    #[test]
    fn throttle_delay_is_capped_at_an_hour_and_never_overflows() {
        for huge in ["18446744073709551615", "1000000000", "3601"] {
            assert_eq!(throttle_delay(Some(huge), ""), MAX_THROTTLE_DELAY, "{huge}");
        }
        assert_eq!(throttle_delay(Some("0"), ""), Duration::from_secs(1));
        let body = "You can send requests again in 999999 seconds.";
        assert_eq!(throttle_delay(None, body), MAX_THROTTLE_DELAY);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(3 * MAX_API_TEXT);
        let body = serde_json::json!({ "error": { "message": long } }).to_string();
        let cut = error_message(&body);
        assert!(cut.len() < MAX_API_TEXT + 40, "{} bytes", cut.len());
        assert!(cut.ends_with(&format!("({} more bytes cut)", long.len() - MAX_API_TEXT)));
        assert_eq!(cut_text("short"), "short");
    }

    #[test]
    fn stated_quota_reads_the_message() {
        let body = "API calls quota exceeded! maximum allowed 1500 per 01:00:00";
        assert_eq!(
            stated_quota(body),
            Some(ServerQuota { calls: 1500, window: Duration::from_secs(3600) })
        );
        assert_eq!(stated_quota("quota exceeded"), None);
    }

    #[test]
    fn error_message_reads_the_envelope() {
        let body = r#"{"error":{"code":"Forbidden","message":"Missing application roles. API required roles: Software.Read.All"}}"#;
        assert_eq!(
            error_message(body),
            "Missing application roles. API required roles: Software.Read.All"
        );
        assert_eq!(error_message("plain"), "plain");
    }
}
