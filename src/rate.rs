//! A sliding-window rate limiter: at most `max` calls start in any `span`.
//!
//! Brevo counts its contact (and event) calls in fixed one-second windows that start with a
//! call (brevo-api.md §7). An evenly spaced limiter (governor's GCRA with a burst of one) stays
//! under them, but spaces out calls that could go together: the last imports of a backfill left
//! 122 ms apart after a pause. A sliding log of the last calls lets the calls after a pause go at
//! once while no span of `span` ever holds more than `max`. (governor has no sliding window: its
//! GCRA with a burst of `max` would let `2·max − 1` calls start within one span after a pause.)
//!
//! Pipedrive's burst limit is a rolling 2 s window too (pipedrive-api.md §11.3): its limiter
//! (`pipedrive::limits`) is one of these.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct SlidingWindow {
    max: usize,
    span: Duration,
    /// When the calls of the last `span` started, oldest first.
    started: Mutex<VecDeque<Instant>>,
}

impl SlidingWindow {
    /// At least one call per span, whatever `max` says.
    pub fn new(max: usize, span: Duration) -> Self {
        Self { max: max.max(1), span, started: Mutex::default() }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Waits for a slot and takes it.
    pub async fn until_ready(&self) {
        loop {
            let wait = {
                let mut started = self.started.lock().unwrap_or_else(|e| e.into_inner());
                let now = Instant::now();
                while started.front().is_some_and(|t| now.duration_since(*t) >= self.span) {
                    started.pop_front();
                }
                if started.len() < self.max {
                    started.push_back(now);
                    return;
                }
                // Full: the oldest call leaves the window first.
                started.front().map(|t| *t + self.span - now).unwrap_or_default()
            };
            tokio::time::sleep(wait).await;
        }
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
            window.until_ready().await;
            at.push(start.elapsed());
        }
        assert!(at[..9].iter().all(|t| t.is_zero()), "the first nine go at once: {at:?}");
        assert_eq!(at[9], Duration::from_millis(1100));
        assert_eq!(at[18], Duration::from_millis(2200));
        assert!(at[20..29].iter().all(|t| *t == at[20]), "after the pause, nine at once: {at:?}");
        for (i, t) in at.iter().enumerate() {
            let in_span = at.iter().filter(|u| **u >= *t && **u < *t + Duration::from_millis(1100)).count();
            assert!(in_span <= 9, "{in_span} calls in the 1.1 s from call {i}");
        }
    }

    #[test]
    fn allows_at_least_one_call() {
        assert_eq!(SlidingWindow::new(0, Duration::from_secs(1)).max(), 1);
    }
}
