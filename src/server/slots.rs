//! Admission: at most `parallel` requests run on the model at once, at most
//! `queue` more wait for a slot, and the rest are told 503 at once rather
//! than piling up behind a busy CPU.

use super::error::ApiError;
use axum::http::StatusCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    running: Arc<Semaphore>,
    /// Requests running or waiting.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
}

/// A running request's slot; dropping it lets the next one in.
pub struct Slot {
    _running: OwnedSemaphorePermit,
    _admitted: Admitted,
}

struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Slots {
    pub fn new(parallel: usize, queue: usize) -> Self {
        Self {
            running: Arc::new(Semaphore::new(parallel)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: parallel + queue,
        }
    }

    /// Waits for a slot, or fails with 503 when the queue is full.
    pub async fn acquire(&self) -> Result<Slot, ApiError> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy and its queue is full; retry shortly",
            ));
        }
        let admitted = Admitted(self.admitted.clone());
        let running = self.running.clone().acquire_owned().await.expect("the slot semaphore is never closed");
        Ok(Slot { _running: running, _admitted: admitted })
    }

    /// Requests running or waiting now.
    pub fn in_use(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_freed_slot_admits_again() {
        let slots = Arc::new(Slots::new(1, 1));
        let first = slots.acquire().await.unwrap();
        let waiting = tokio::spawn({
            let slots = slots.clone();
            async move { slots.acquire().await.map(|_| ()) }
        });
        while slots.in_use() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(slots.acquire().await.err().unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        drop(first);
        waiting.await.unwrap().unwrap();
        assert_eq!(slots.in_use(), 0);
        assert!(slots.acquire().await.is_ok());
    }
}
