//! A sliding-window rate limiter: at most `max` calls on their way or answered in the last
//! `span`.
//!
//! Brevo counts its contact (and event) calls in fixed one-second windows that start with a
//! call (brevo-api.md §7). An evenly spaced limiter (governor's GCRA with a burst of one) stays
//! under them, but spaces out calls that could go together: the last imports of a backfill left
//! 122 ms apart after a pause. A sliding log of the last calls lets the calls after a pause go at
//! once while no span of `span` ever holds more than `max`. (governor has no sliding window: its
//! GCRA with a burst of `max` would let `2·max − 1` calls start within one span after a pause.)
//!
//! Pipedrive's burst limit is a rolling 2 s window too (pipedrive-api.md §11.3): its limiter
//! (`pipedrive::limits`) is one of these. Both hold their slots until the answer: a server that
//! counts the requests reaching it then never sees more than `max` in a span, whatever the
//! network's delays.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

pub struct SlidingWindow {
    max: AtomicUsize,
    span: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// When the calls of the last `span` were answered, oldest first.
    answered: VecDeque<Instant>,
    /// Held slots whose call has not been answered yet.
    in_flight: usize,
}

/// How often a caller looks again when every slot is held by a call on its way (no slot's time
/// runs out before one is answered).
const IN_FLIGHT_RECHECK: Duration = Duration::from_millis(5);

impl SlidingWindow {
    /// At least one call per span, whatever `max` says.
    pub fn new(max: usize, span: Duration) -> Self {
        Self { max: AtomicUsize::new(max.max(1)), span, state: Mutex::default() }
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A new limit for the same window: the calls it already counts stay counted.
    pub fn set_max(&self, max: usize) {
        self.max.store(max.max(1), Ordering::Relaxed);
    }

    /// Waits for a slot and holds it until the returned guard is dropped (when the call's answer
    /// has come); the slot is then counted from that moment. A server counting the requests that
    /// reached it in its own window then never sees more than `max` in any `span`, however long
    /// requests take on their way: each one reached it between its start and its answer.
    pub async fn hold(&self) -> Slot<'_> {
        loop {
            let wait = {
                let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while state.answered.front().is_some_and(|t| now.duration_since(*t) >= self.span) {
                    state.answered.pop_front();
                }
                if state.answered.len() + state.in_flight < self.max() {
                    state.in_flight += 1;
                    return Slot { window: self };
                }
                // Full: the oldest answered call leaves the window first (or, when calls on their
                // way hold every slot, one of them is answered and starts its span).
                state.answered.front().map_or(IN_FLIGHT_RECHECK, |t| *t + self.span - now)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A slot held by a call on its way (`SlidingWindow::hold`).
pub struct Slot<'w> {
    window: &'w SlidingWindow,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.window.state.lock().unwrap_or_else(|e| e.into_inner());
        state.in_flight = state.in_flight.saturating_sub(1);
        // Pushed under the lock at the time of the push: the deque stays in time order.
        state.answered.push_back(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `max` calls go at once after a pause, the next only when the oldest has left the window:
    /// never more than `max` in any span.
    #[tokio::test(start_paused = true)]
    async fn bursts_after_a_pause_and_never_exceeds_its_limit() {
        let window = SlidingWindow::new(9, Duration::from_millis(1100));
        let start = Instant::now();
        let mut at = Vec::new();
        for i in 0..30 {
            if i == 20 {
                // A pause longer than the span: the next nine go at once again.
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            drop(window.hold().await);
            at.push(start.elapsed());
        }
        assert!(at[..9].iter().all(|t| t.is_zero()), "the first nine go at once: {at:?}");
        assert_eq!(at[9], Duration::from_millis(1100));
        assert_eq!(at[18], Duration::from_millis(2200));
        assert!(at[20..29].iter().all(|t| *t == at[20]), "after the pause, nine at once: {at:?}");
        for (i, t) in at.iter().enumerate() {
            let in_span =
                at.iter().filter(|u| **u >= *t && **u < *t + Duration::from_millis(1100)).count();
            assert!(in_span <= 9, "{in_span} calls in the 1.1 s from call {i}");
        }
    }

    #[test]
    fn allows_at_least_one_call() {
        assert_eq!(SlidingWindow::new(0, Duration::from_secs(1)).max(), 1);
        let window = SlidingWindow::new(5, Duration::from_secs(1));
        window.set_max(0);
        assert_eq!(window.max(), 1);
    }

    /// A held slot counts while its call is on its way and for a whole span after its answer, so
    /// that calls whose requests were slow to arrive are never counted short.
    #[tokio::test(start_paused = true)]
    async fn a_held_slot_counts_until_a_span_after_its_answer() {
        let window = SlidingWindow::new(2, Duration::from_secs(2));
        let start = Instant::now();
        let first = window.hold().await;
        let second = window.hold().await;
        // Answered after 0.5 s and 1 s: the third call waits for the first's answer plus 2 s.
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(first);
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(second);
        let _third = window.hold().await;
        assert_eq!(start.elapsed(), Duration::from_millis(2500));
    }

    /// A lower limit applies to the calls already counted; a higher one frees slots at once.
    #[tokio::test(start_paused = true)]
    async fn a_new_limit_keeps_the_calls_counted() {
        let window = SlidingWindow::new(20, Duration::from_secs(2));
        let start = Instant::now();
        for _ in 0..18 {
            drop(window.hold().await);
        }
        window.set_max(10);
        drop(window.hold().await);
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "18 counted calls above the new limit of 10"
        );
        window.set_max(80);
        for _ in 0..70 {
            drop(window.hold().await);
        }
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
