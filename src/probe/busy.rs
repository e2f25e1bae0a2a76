//! Busy, stuck or dead: the verdicts of a pool whose workers do not answer, and liveness.
//!
//! php-fpm answers its ping inside a worker, so a saturated pool and a hung one both look like a
//! `timeout` from outside. The kernel tells them apart without a worker (see
//! [`crate::os::listen_queue`]): a probe that got no answer while other connections wait in the
//! listener's queue is `busy` ([`classify`]).
//!
//! Liveness asks a different question than readiness: is the pool still moving? [`Progress`]
//! remembers when it last did (a healthy answer to any probe, or the answer to a probe
//! connection kept open after its deadline, see [`Progress::hold`]), and [`Progress::live`]
//! turns a ping verdict into a liveness verdict: dead reasons fail at once, busy and timeout only
//! once nothing moved for `BUSY_GRACE` (`stuck`).
//!
//! Invariants: at most one connection is kept open ([`Progress::hold`] refuses a second), for at
//! most `BUSY_GRACE`; it is never counted as a probe; the keeper ([`Progress::keep`]) is one task
//! that the server drops at its stop, which closes the connection.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use event_listener::Event;
use log::{info, warn};

use crate::deadline;
use crate::os::listen_queue::{Queue, View};
use crate::proto::metrics::Writer;
use crate::proto::status::decimal;

use super::{Failure, Held, Probe, Reason, Verdict};

/// A `timeout` becomes `busy` when the kernel shows connections other than ours (`own`: this
/// probe's, the kept one's, and those of earlier probes that gave up, which stay in the queue
/// until a worker takes them) queued on the listener. Other failures stay as they are.
pub(crate) fn classify(failure: Failure, view: &View, own: u64, timeout: Duration) -> Failure {
    if failure.reason != Reason::Timeout {
        return failure;
    }
    let View::Seen(Queue { queued, backlog }) = view else {
        return failure;
    };
    let others = queued.saturating_sub(own);
    if others == 0 {
        return failure;
    }
    let label = failure
        .detail
        .split_once(" within ")
        .and_then(|(head, _)| head.strip_prefix("no complete answer from "))
        .unwrap_or("php-fpm")
        .to_owned();
    let backlog = match backlog {
        Some(backlog) => backlog.to_string(),
        None => "unknown".to_owned(),
    };
    Failure::new(
        Reason::Busy,
        format!(
            "no worker answered within {timeout:?}; {others} connections queued (backlog {backlog}) on {label}"
        ),
    )
}

/// Reasons that say php-fpm is there but not answering in time: liveness waits for `BUSY_GRACE`
/// before it calls them `stuck`.
pub(crate) fn waiting(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::Busy | Reason::Timeout | Reason::FcgiOverloaded
    )
}

/// Upper bounds of the queue-wait histogram: milliseconds, and the `le` label in seconds.
pub const WAIT_BUCKETS: [(u64, &str); 10] = [
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
pub struct Waits {
    /// The last queue wait, in milliseconds (none yet: `None`).
    pub last_millis: Cell<Option<u64>>,
    /// Counts per bucket of [`WAIT_BUCKETS`] (not cumulative), then above the last.
    pub buckets: [Cell<u64>; WAIT_BUCKETS.len()],
    /// Above the last bucket.
    pub over: Cell<u64>,
    /// Sum of the waits, in milliseconds.
    pub sum_millis: Cell<u64>,
    /// Connections kept open after their probe's deadline.
    pub kept: Cell<u64>,
    /// Kept connections that got their answer.
    pub answered: Cell<u64>,
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

/// When the pool last moved, the one kept connection, and the kernel view's availability.
#[derive(Debug)]
pub(crate) struct Progress {
    /// `BUSY_GRACE`; `None`: off (liveness is the ping's verdict, nothing is kept).
    grace: Option<Duration>,
    /// When the pool last answered anything.
    moved: Cell<Instant>,
    /// A connection handed over, waiting for the keeper.
    handed: RefCell<Option<Held>>,
    /// Whether a connection is kept (handed or being read).
    keeping: Cell<bool>,
    /// Wakes the keeper.
    wake: Event,
    /// Connections of our probes given up since the pool last moved: closed, but still in
    /// php-fpm's queue until a worker takes them (not others' connections).
    abandoned: Cell<u64>,
    /// Whether the last probe that ran ended waiting (busy, timeout, a full queue).
    waiting: Cell<bool>,
    /// Whether "kernel view unavailable" was logged already.
    said_unavailable: Cell<bool>,
    /// The queue waits measured.
    pub(crate) waits: Waits,
}

impl Progress {
    pub(crate) fn new(grace: Option<Duration>, now: Instant) -> Self {
        Self {
            grace,
            moved: Cell::new(now),
            handed: RefCell::new(None),
            keeping: Cell::new(false),
            wake: Event::new(),
            abandoned: Cell::new(0),
            waiting: Cell::new(false),
            said_unavailable: Cell::new(false),
            waits: Waits::default(),
        }
    }

    /// The pool answered at `now`.
    pub(crate) fn moved(&self, now: Instant) {
        self.moved.set(now);
        self.waiting.set(false);
        self.abandoned.set(0);
    }

    fn abandon(&self) {
        self.abandoned.set(self.abandoned.get().saturating_add(1));
    }

    /// A probe ended: waiting for a worker (busy, timeout, a full queue), or not.
    pub(crate) fn waited(&self, waiting: bool) {
        self.waiting.set(waiting);
    }

    /// Whether the pool is stuck at `now`: the last probe ended waiting, and nothing moved for
    /// `BUSY_GRACE` (never with `BUSY_GRACE=off`).
    pub(crate) fn stuck(&self, now: Instant) -> bool {
        self.grace.is_some_and(|grace| {
            self.waiting.get() && now.saturating_duration_since(self.moved.get()) >= grace
        })
    }

    /// Whether a connection is kept now.
    pub(crate) fn kept(&self) -> u64 {
        u64::from(self.keeping.get())
    }

    /// Connections of ours that may be in php-fpm's queue besides a probe's own: the kept one,
    /// and those given up since the pool last moved.
    pub(crate) fn ours(&self) -> u64 {
        self.kept().saturating_add(self.abandoned.get())
    }

    /// Offers a probe's connection to keep; keeps it if none is kept and `BUSY_GRACE` is on,
    /// else drops it (closing it).
    pub(crate) fn hold(&self, held: Option<Held>) {
        let Some(held) = held else { return };
        if self.grace.is_none() || self.keeping.get() {
            self.abandon();
            return;
        }
        self.keeping.set(true);
        *self.handed.borrow_mut() = Some(held);
        self.wake.notify(1);
    }

    /// The keeper: reads each kept connection's answer, at most until `BUSY_GRACE` after its
    /// probe started; an answer is progress, and its wait is recorded. Runs until dropped.
    pub(crate) async fn keep(&self, probe: &Probe) {
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
            let finished = deadline::at(until, probe.finish(held)).await;
            if finished.is_none() {
                self.abandon();
            }
            if let Some((_, answer)) = finished {
                if answer.is_some() {
                    let now = Instant::now();
                    self.moved(now);
                    let wait = now.saturating_duration_since(since);
                    self.waits.record(wait);
                    info!(
                        "php-fpm answered a probe kept open after its deadline: it waited {}ms in the queue",
                        wait.as_millis()
                    );
                }
            }
            self.keeping.set(false);
        }
    }

    /// The busy figures of `/metrics`: the kernel's view of the listen queue (`view`, read now),
    /// the kept connection and the queue waits it measured, and whether the pool is stuck.
    pub(crate) fn write_metrics(&self, w: &mut Writer<'_>, view: &View, now: Instant) {
        w.gauge("fastcgi_healthcheck_listen_queue_available", "Whether the kernel's view of php-fpm's listen queue can be read (0: php-fpm is in another network namespace).", u8::from(matches!(view, View::Seen(_))));
        if let View::Seen(queue) = view {
            w.gauge("fastcgi_healthcheck_listen_queue_connections", "Connections waiting in php-fpm's listen queue, read from the kernel now (no worker needed).", queue.queued);
            if let Some(backlog) = queue.backlog {
                w.gauge(
                    "fastcgi_healthcheck_listen_queue_backlog",
                    "The backlog of php-fpm's listener, read from the kernel.",
                    backlog,
                );
            }
        }
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
        w.gauge("fastcgi_healthcheck_stuck", "1 while php-fpm made no progress for BUSY_GRACE while probes waited (what /fcgi-live fails as stuck).", u8::from(self.stuck(now)));
    }

    /// Says once that the kernel view is unavailable (and why).
    pub(crate) fn unavailable(&self, view: &View) {
        if let View::Unavailable(why) = view {
            if !self.said_unavailable.replace(true) {
                warn!("listen queue figures unavailable: {why}; busy cannot be told from timeout (this is said once)");
            }
        }
    }

    /// The liveness verdict at `now` for a ping `verdict`: healthy and dead reasons as they are;
    /// busy, timeout and a full queue alive until nothing moved for `BUSY_GRACE`, then `stuck`.
    pub(crate) fn live(&self, verdict: &Verdict, now: Instant) -> Verdict {
        let Err(failure) = verdict else {
            return Ok(());
        };
        let Some(grace) = self.grace else {
            return verdict.clone();
        };
        if !waiting(failure.reason) {
            return verdict.clone();
        }
        let still = now.saturating_duration_since(self.moved.get());
        if still < grace {
            return Ok(());
        }
        Err(Failure::new(
            Reason::Stuck,
            format!(
                "no progress for {}s (BUSY_GRACE={grace:?}) while connections wait; last probe: {failure}",
                still.as_secs()
            ),
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    fn timeout() -> Failure {
        Failure::new(
            Reason::Timeout,
            "no complete answer from 127.0.0.1:9000 within 800ms (while reading the answer, 0 bytes received)".to_owned(),
        )
    }

    #[test]
    fn a_timeout_with_others_queued_is_busy() {
        let seen = View::Seen(Queue {
            queued: 15,
            backlog: Some(511),
        });
        let busy = classify(timeout(), &seen, 1, Duration::from_millis(800));
        assert_eq!(
            busy.to_string(),
            "busy: no worker answered within 800ms; 14 connections queued (backlog 511) on 127.0.0.1:9000"
        );
        // Only our own connections queued: a hang, not a crowd.
        let ours = View::Seen(Queue {
            queued: 2,
            backlog: Some(511),
        });
        let ms = Duration::from_millis(800);
        assert_eq!(classify(timeout(), &ours, 2, ms).reason, Reason::Timeout);
        let unseen = View::Unavailable(String::new());
        assert_eq!(classify(timeout(), &unseen, 0, ms).reason, Reason::Timeout);
        let refused = Failure::new(Reason::ConnectRefused, String::new());
        assert_eq!(
            classify(refused, &seen, 0, ms).reason,
            Reason::ConnectRefused
        );
    }

    #[test]
    fn liveness_waits_for_the_grace_on_busy_only() {
        let start = Instant::now();
        let progress = Progress::new(Some(Duration::from_secs(3)), start);
        let busy = Err(Failure::new(Reason::Busy, String::new()));
        let refused = Err(Failure::new(Reason::ConnectRefused, String::new()));
        assert_eq!(progress.live(&busy, start + Duration::from_secs(2)), Ok(()));
        assert_eq!(
            progress.live(&refused, start).unwrap_err().reason,
            Reason::ConnectRefused
        );
        let later = start + Duration::from_secs(3);
        assert_eq!(
            progress.live(&busy, later).unwrap_err().reason,
            Reason::Stuck
        );
        progress.moved(later);
        assert_eq!(progress.live(&busy, later), Ok(()));
        assert_eq!(progress.live(&Ok(()), later), Ok(()));
        let off = Progress::new(None, start);
        assert_eq!(off.live(&busy, start), busy);
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
