//! Reading response bodies within a cap: a hostile or broken server cannot make kbwatch hold more
//! than the configured bytes of one response.

use super::ApiError;
use super::error::{cut_text, error_chain};

/// Reads at most the first `limit` bytes of a body; the rest is never read.
pub(super) async fn read_prefix(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    while body.len() < limit {
        let Some(chunk) =
            response.chunk().await.map_err(|e| ApiError::Transport(cut_text(&error_chain(&e))))?
        else {
            break;
        };
        let room = limit - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    Ok(body)
}

/// Reads a body into `body` (emptied first; its allocation is reused), failing as soon as it
/// passes `cap` bytes (after decompression).
pub(super) async fn read_capped(
    mut response: reqwest::Response,
    cap: u64,
    body: &mut Vec<u8>,
) -> Result<(), ApiError> {
    body.clear();
    let stated = response.content_length();
    if stated.is_some_and(|n| n > cap) {
        return Err(ApiError::TooLarge { limit: cap });
    }
    // The stated size at once, rather than grown by doubling and copied at each step.
    body.reserve(stated.unwrap_or(0) as usize);
    while let Some(chunk) =
        response.chunk().await.map_err(|e| ApiError::Transport(cut_text(&error_chain(&e))))?
    {
        if body.len() as u64 + chunk.len() as u64 > cap {
            return Err(ApiError::TooLarge { limit: cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(())
}
