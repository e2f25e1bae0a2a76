//! The kept connection: a probe whose deadline passed while php-fpm held its connection (the
//! request sent, no answer yet) is offered to this pool's one keeper, which reads its answer up
//! to `BUSY_GRACE` after the probe started. The answer is progress (the caller's
//! [`crate::liveness::Liveness`] hears of it) and measures a real request's wait in the queue.
//! Connections that are neither kept nor answered are counted as abandoned: closed, but still in
//! php-fpm's queue until a worker takes them, so the kernel's view must not count them as
//! others'. The queue is first in, first out: when a connection of ours leaves it (answered, or
//! reset with the listener), the abandoned ones whose probes started before it have left too,
//! and those that started after it may still wait.
//!
//! Invariants: at most one connection is kept open ([`Keeper::hold`] refuses a second), for at
//! most `BUSY_GRACE`; it is never counted as a probe; the keeper ([`Keeper::keep`]) is one task
//! that the server drops at its stop, which closes the connection.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use event_listener::Event;
use log::info;

use crate::deadline;
use crate::proto::metrics::Writer;
use crate::proto::status::decimal;

use super::{Held, Probe};

/// The most abandoned connections remembered per pool (the oldest is forgotten first): more
/// than php-fpm's default listen backlog (511) holds.
pub(crate) const MAX_ABANDONED: usize = 1024;

/// Upper bounds of the queue-wait histogram: milliseconds, and the `le` label in seconds.
pub(crate) const WAIT_BUCKETS: [(u64, &str); 10] = [
    (100, "0.1"),
    (250, "0.25"),
    (500, "0.5"),
    (1_000, "1"),
    (2_500, "2.5"),
    (5_000, "5"),
    (10_000, "10"),
    (30_000, "30"),
    (60_000, "60"),
    (300_000, "300"),
];

/// What the kept connections measured, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Waits {
    /// The last queue wait, in milliseconds (none yet: `None`).
    pub(crate) last_millis: Cell<Option<u64>>,
    /// Counts per bucket of [`WAIT_BUCKETS`] (not cumulative), then above the last.
    pub(crate) buckets: [Cell<u64>; WAIT_BUCKETS.len()],
    /// Above the last bucket.
    pub(crate) over: Cell<u64>,
    /// Sum of the waits, in milliseconds.
    pub(crate) sum_millis: Cell<u64>,
    /// Connections kept open after their probe's deadline.
    pub(crate) kept: Cell<u64>,
    /// Kept connections that got their answer.
    pub(crate) answered: Cell<u64>,
}

impl Waits {
    fn record(&self, wait: Duration) {
        let millis = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.last_millis.set(Some(millis));
        match WAIT_BUCKETS
            .iter()
            .position(|(bound, _)| millis <= *bound)
            .and_then(|i| self.buckets.get(i))
        {
            Some(cell) => cell.set(cell.get().saturating_add(1)),
            None => self.over.set(self.over.get().saturating_add(1)),
        }
        self.sum_millis
            .set(self.sum_millis.get().saturating_add(millis));
        self.answered.set(self.answered.get().saturating_add(1));
    }
}

/// The one kept connection of a pool, and what kept connections measured.
#[derive(Debug)]
pub(crate) struct Keeper {
    /// `BUSY_GRACE`; `None`: off (nothing is kept).
    grace: Option<Duration>,
    /// A connection handed over, waiting for the keeper.
    handed: RefCell<Option<Held>>,
    /// Whether a connection is kept (handed or being read).
    keeping: Cell<bool>,
    /// Wakes the keeper.
    wake: Event,
    /// When the probes of our connections given up started, oldest first: closed, but still
    /// in php-fpm's queue until a worker takes them (not others' connections). At most
    /// [`MAX_ABANDONED`].
    abandoned: RefCell<VecDeque<Instant>>,
    /// The queue waits measured.
    waits: Waits,
}

impl Keeper {
    pub(crate) fn new(grace: Option<Duration>) -> Self {
        Self {
            grace,
            handed: RefCell::new(None),
            keeping: Cell::new(false),
            wake: Event::new(),
            abandoned: RefCell::new(VecDeque::new()),
            waits: Waits::default(),
        }
    }

    /// A connection of ours whose probe started at `since` left php-fpm's queue (a worker took
    /// it, or the listener reset it): so did those given up that started before it.
    pub(crate) fn moved(&self, since: Instant) {
        self.abandoned
            .borrow_mut()
            .retain(|started| *started > since);
    }

    /// Gives up the connection of a probe that started at `since`: counted as ours in the
    /// queue until a connection that started later leaves it.
    fn abandon(&self, since: Instant) {
        let mut abandoned = self.abandoned.borrow_mut();
        if abandoned.len() >= MAX_ABANDONED {
            abandoned.pop_front();
        }
        abandoned.push_back(since);
    }

    /// Whether a connection is kept now.
    pub(crate) fn kept(&self) -> u64 {
        u64::from(self.keeping.get())
    }

    /// Connections of ours that may be in php-fpm's queue besides running probes': the kept
    /// one, and those given up since the pool last moved.
    pub(crate) fn ours(&self) -> u64 {
        let abandoned = u64::try_from(self.abandoned.borrow().len()).unwrap_or(u64::MAX);
        self.kept().saturating_add(abandoned)
    }

    /// Offers a probe's connection to keep; keeps it if none is kept and `BUSY_GRACE` is on,
    /// else drops it (closing it).
    pub(crate) fn hold(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        if self.grace.is_none() || self.keeping.get() {
            self.abandon(held.since);
            return;
        }
        self.keeping.set(true);
        *self.handed.borrow_mut() = Some(held);
        self.wake.notify(1);
    }

    /// The keeper: reads each kept connection's answer, at most until `BUSY_GRACE` after its
    /// probe started; an answer is progress (`answered` is told), and its wait is recorded.
    /// Runs until dropped.
    pub(crate) async fn keep(&self, probe: &Probe, answered: impl Fn()) {
        let Some(grace) = self.grace else {
            return smol::future::pending().await;
        };
        loop {
            let listener = self.wake.listen();
            let held = self.handed.borrow_mut().take();
            let Some(held) = held else {
                listener.await;
                continue;
            };
            let since = held.since;
            self.waits.kept.set(self.waits.kept.get().saturating_add(1));
            let until = deadline::later(since, grace);
            match deadline::at(until, probe.finish(held)).await {
                None => self.abandon(since),
                Some((_, Some(_))) => {
                    let now = Instant::now();
                    self.moved(since);
                    answered();
                    let wait = now.saturating_duration_since(since);
                    self.waits.record(wait);
                    info!(
                        "php-fpm answered a probe kept open after its deadline: it waited {}ms in the queue",
                        wait.as_millis()
                    );
                }
                Some((Err(failure), None)) if failure.reason.answered() => self.moved(since),
                Some((_, None)) => {}
            }
            self.keeping.set(false);
        }
    }

    /// The kept connection's figures of `/metrics`: whether one is kept, how many were and
    /// answered, and the queue waits they measured.
    pub(crate) fn write_metrics(&self, w: &mut Writer<'_>) {
        w.gauge("fastcgi_healthcheck_kept_connections", "Probe connections kept open after their deadline, waiting for php-fpm's answer (at most 1).", self.kept());
        let waits = &self.waits;
        w.family(
            "fastcgi_healthcheck_kept_connections_total",
            "counter",
            "Probe connections kept open after their deadline, and how many php-fpm answered.",
        );
        w.sample(
            "fastcgi_healthcheck_kept_connections_total",
            &[("result", "kept")],
            waits.kept.get(),
        );
        w.sample(
            "fastcgi_healthcheck_kept_connections_total",
            &[("result", "answered")],
            waits.answered.get(),
        );
        if let Some(last) = waits.last_millis.get() {
            w.gauge("fastcgi_healthcheck_queue_wait_seconds_last", "What the last kept connection waited for its answer: a real request's wait in the queue under this load.", decimal(last, 1000));
        }
        w.family(
            "fastcgi_healthcheck_queue_wait_seconds",
            "histogram",
            "What kept connections waited for their answer.",
        );
        let buckets = WAIT_BUCKETS
            .iter()
            .zip(&waits.buckets)
            .map(|((_, bound), count)| (*bound, count.get()));
        w.histogram(
            "fastcgi_healthcheck_queue_wait_seconds",
            &[],
            buckets,
            waits.over.get(),
            decimal(waits.sum_millis.get(), 1000),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    /// php-fpm's queue is first in, first out: a connection leaving it takes with it those
    /// given up that started before it, not those that started after; the oldest is
    /// forgotten past [`MAX_ABANDONED`].
    #[test]
    fn connections_given_up_leave_the_queue_in_order() {
        let keeper = Keeper::new(Some(Duration::from_secs(60)));
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        for ms in [10, 20, 30] {
            keeper.abandon(at(ms));
        }
        assert_eq!(keeper.ours(), 3);
        keeper.moved(at(5));
        assert_eq!(keeper.ours(), 3, "started before all of them");
        keeper.moved(at(20));
        assert_eq!(keeper.ours(), 1, "10 and 20 left with it");
        keeper.moved(at(30));
        assert_eq!(keeper.ours(), 0);
        for ms in 0..(MAX_ABANDONED as u64 + 5) {
            keeper.abandon(at(ms));
        }
        assert_eq!(keeper.ours(), MAX_ABANDONED as u64);
        keeper.moved(at(4));
        assert_eq!(
            keeper.ours(),
            MAX_ABANDONED as u64,
            "the oldest five were forgotten"
        );
        keeper.moved(at(5));
        assert_eq!(keeper.ours(), MAX_ABANDONED as u64 - 1);
    }

    #[test]
    fn waits_fill_their_buckets() {
        let waits = Waits::default();
        waits.record(Duration::from_millis(100));
        waits.record(Duration::from_millis(1200));
        waits.record(Duration::from_secs(400));
        assert_eq!(waits.last_millis.get(), Some(400_000));
        assert_eq!(waits.buckets[0].get(), 1);
        assert_eq!(waits.buckets[4].get(), 1);
        assert_eq!(waits.over.get(), 1);
        assert_eq!(waits.answered.get(), 3);
    }
}
