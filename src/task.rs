//! Tasks tied to their owner.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A task that ends with whatever holds it (a run, a stream), even when that stops early: a
/// run that ends, fails, loses its lease or is dropped at shutdown takes every task it spawned
/// with it. Awaiting it gives the task's result.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T: Send + 'static> AbortOnDrop<T> {
    pub fn spawn(task: impl Future<Output = T> + Send + 'static) -> Self {
        Self(tokio::spawn(task))
    }
}

impl<T> AbortOnDrop<T> {
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    /// Dropped before it finishes, the task goes with it: its later work never happens.
    #[tokio::test]
    async fn a_dropped_task_does_no_more_work() {
        let done = Arc::new(AtomicBool::new(false));
        let task = AbortOnDrop::spawn({
            let done = done.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(100)).await;
                done.store(true, Ordering::SeqCst);
            }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(task);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!done.load(Ordering::SeqCst));
        // Awaited, it gives its result.
        assert_eq!(AbortOnDrop::spawn(async { 7 }).await.unwrap(), 7);
    }
}
