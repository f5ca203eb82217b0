//! Tasks tied to their owner.

/// A task that ends with whatever holds it (a run, a stream), even when that stops early.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
