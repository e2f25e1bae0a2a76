//! Bounded logging: at most a few lines of one kind per time window, and a count of the rest.
//!
//! A client controls how often some events happen (unhealthy probes while php-fpm is down, a
//! connection flood at the cap); the log must not grow with it, and a slow log reader must not be
//! able to stall the one thread that serves.

// Plain counting: `passed` stays at most `burst` (checked before each step), and `suppressed`
// counts events, each costing at least a system call: a u64 of them does not wrap.
#![allow(clippy::arithmetic_side_effects)]

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Lets through at most `burst` events per `window`.
#[derive(Debug)]
pub(crate) struct Throttle {
    window: Duration,
    burst: u32,
    start: Cell<Option<Instant>>,
    passed: Cell<u32>,
    suppressed: Cell<u64>,
}

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Log it; `n` earlier events were suppressed since the last logged one (say so).
    Log {
        /// How many events were not logged before this one.
        suppressed: u64,
    },
    /// Do not log it (counted).
    Suppress,
}

impl Throttle {
    /// At most `burst` events per `window`.
    pub(crate) const fn new(window: Duration, burst: u32) -> Self {
        Self {
            window,
            burst,
            start: Cell::new(None),
            passed: Cell::new(0),
            suppressed: Cell::new(0),
        }
    }

    /// Decides about one event happening at `now`.
    pub(crate) fn gate(&self, now: Instant) -> Gate {
        let in_window = self
            .start
            .get()
            .is_some_and(|start| now.saturating_duration_since(start) < self.window);
        if !in_window {
            self.start.set(Some(now));
            self.passed.set(0);
        }
        if self.passed.get() >= self.burst {
            self.suppressed.set(self.suppressed.get() + 1);
            return Gate::Suppress;
        }
        self.passed.set(self.passed.get() + 1);
        Gate::Log {
            suppressed: self.suppressed.replace(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_burst_through_per_window_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(1), 2);
        let t0 = Instant::now();
        assert_eq!(throttle.gate(t0), Gate::Log { suppressed: 0 });
        assert_eq!(throttle.gate(t0), Gate::Log { suppressed: 0 });
        assert_eq!(throttle.gate(t0), Gate::Suppress);
        assert_eq!(
            throttle.gate(t0 + Duration::from_millis(999)),
            Gate::Suppress
        );
        assert_eq!(
            throttle.gate(t0 + Duration::from_secs(1)),
            Gate::Log { suppressed: 2 }
        );
        assert_eq!(
            throttle.gate(t0 + Duration::from_secs(1)),
            Gate::Log { suppressed: 0 }
        );
    }
}
