//! The hand-off from the listing to the fan-out: the devices to request, in order, and how many of
//! them are waiting (handed over, not yet taken), which tells the listing whether the fan-out
//! keeps up.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::model::PlannedDevice;

/// A hand-off: the listing's end and the fan-out's end.
pub(super) fn handoff() -> (Handoff, Pickup) {
    let (tx, rx) = mpsc::unbounded_channel();
    let waiting = Arc::new(AtomicU64::new(0));
    (Handoff { tx, waiting: waiting.clone() }, Pickup { rx, waiting })
}

/// The listing's end.
pub(super) struct Handoff {
    tx: mpsc::UnboundedSender<PlannedDevice>,
    waiting: Arc<AtomicU64>,
}

impl Handoff {
    /// Hands a device over; a fan-out that has stopped drops it (it reports why it stopped).
    pub fn send(&self, device: PlannedDevice) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        if self.tx.send(device).is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Devices handed over that the fan-out has not taken yet.
    pub fn waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// The fan-out's end: a stream of the devices handed over, ending when the listing's end is
/// dropped and every device was taken.
pub(super) struct Pickup {
    rx: mpsc::UnboundedReceiver<PlannedDevice>,
    waiting: Arc<AtomicU64>,
}

impl Stream for Pickup {
    type Item = PlannedDevice;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<PlannedDevice>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(_)) = &polled {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;
    use crate::model::validate_machine_id;

    fn device(device_id: i64) -> PlannedDevice {
        let machine_id = validate_machine_id(&format!("{device_id:040x}")).expect("40 hex digits");
        PlannedDevice { device_id, machine_id, last_seen: None, first_scan: true }
    }

    #[tokio::test]
    async fn waiting_counts_what_was_handed_over_and_not_taken() {
        let (handoff, mut pickup) = handoff();
        (1..=3).for_each(|id| handoff.send(device(id)));
        assert_eq!(handoff.waiting(), 3);
        assert_eq!(pickup.next().await.map(|d| d.device_id), Some(1));
        assert_eq!(handoff.waiting(), 2);
        drop(handoff);
        let rest: Vec<i64> = pickup.map(|d| d.device_id).collect().await;
        assert_eq!(rest, [2, 3], "in order, and the stream ends once the listing is done");
    }

    #[tokio::test]
    async fn a_stopped_fan_out_leaves_nothing_waiting() {
        let (handoff, pickup) = handoff();
        drop(pickup);
        handoff.send(device(1));
        assert_eq!(handoff.waiting(), 0);
    }
}
