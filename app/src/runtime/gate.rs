//! Admission of updates into this instance: at most a fixed number in flight, and none once the
//! instance is draining for shutdown. The webhook turns a refusal into a 503 (Telegram delivers
//! the update again, to this or another instance); the poller waits for room instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One update's place; dropped when the update is done.
pub type Pass = OwnedSemaphorePermit;

pub struct Gate {
    places: Arc<Semaphore>,
    max: u32,
    draining: AtomicBool,
}

impl Gate {
    pub fn new(max: usize) -> Gate {
        let max = u32::try_from(max).expect("the in-flight bound fits in u32 (settings cap it at 10,000)");
        Gate { places: Arc::new(Semaphore::new(max as usize)), max, draining: AtomicBool::new(false) }
    }

    /// A place for one update now, or `None` when all are taken or the instance is draining.
    pub fn try_enter(&self) -> Option<Pass> {
        if self.is_draining() {
            return None;
        }
        self.places.clone().try_acquire_owned().ok()
    }

    /// A place for one update, waiting for one; `None` once the instance is draining.
    pub async fn enter(&self) -> Option<Pass> {
        if self.is_draining() {
            return None;
        }
        let pass = self.places.clone().acquire_owned().await.ok()?;
        (!self.is_draining()).then_some(pass)
    }

    /// Stops admitting updates (those in flight go on).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Updates in flight now.
    pub fn in_flight(&self) -> usize {
        self.max as usize - self.places.available_permits()
    }

    /// Waits until every update in flight is done, at most `timeout`; `false` if some were
    /// still running then.
    pub async fn idle(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.places.acquire_many(self.max)).await.is_ok_and(|all| all.is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn admits_up_to_the_bound_and_nothing_while_draining() {
        let gate = Gate::new(2);
        let (a, b) = (gate.try_enter().unwrap(), gate.try_enter().unwrap());
        assert!(gate.try_enter().is_none(), "full");
        assert_eq!(gate.in_flight(), 2);
        drop(a);
        let c = gate.enter().await.unwrap();
        gate.drain();
        assert!(gate.try_enter().is_none() && gate.enter().await.is_none(), "draining");
        assert!(!gate.idle(Duration::from_millis(10)).await, "two still in flight");
        drop((b, c));
        assert!(gate.idle(Duration::from_millis(10)).await);
    }
}
