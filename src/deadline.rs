//! Deadlines for futures: the one primitive behind "never hangs".
//!
//! Every wait in the program (a client's request, a write to a slow reader, a whole probe) goes
//! through [`at`], so each has a point in time after which it is abandoned.
//!
//! Two clocks serve it. Without a ticker, each wait gets its own `smol::Timer`: exact, but
//! every timer costs the reactor a wake-up (an eventfd write and read, an `epoll_ctl`, a
//! `timerfd_settime`), which is a third of the system calls of a probe. When [`run_ticker`] runs
//! on the thread (the server starts it), waits register in a shared wheel instead, and one timer
//! is armed at the earliest deadline. Registering costs no system call unless the new deadline
//! comes before the armed one (with equal timeouts, it never does); a finished wait just leaves
//! the wheel, and the armed timer, when it fires, wakes what is due and is re-armed at the
//! earliest remaining deadline or not at all. With nothing waiting, the ticker sleeps without a
//! timer.
//!
//! The wheel is a slab, not an ordered map: registering, updating a waker and leaving are O(1)
//! (at 1,000 connections the ordered map's searches were 15% of all user-space instructions).
//! Finding the earliest deadline is a scan, done only when the timer fires or an earlier
//! deadline registers: a few times per `TIMEOUT` under load, not per request.

// Plain arithmetic and indexing on the slab's own bounds (a slot index is the slab's: a free one,
// or the one just pushed); nothing here reads outside input. Keys that may be stale are looked
// up with `get_mut`; the clock's own overflow is checked in [`later`].
#![allow(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::Event;
use smol::future;
use smol::Timer;

use crate::os::alarm::Alarm;

/// Runs `fut` until `deadline`; `None` when the deadline came first (and `fut` is dropped).
pub(crate) async fn at<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        Expiry::new(deadline).await;
        None
    })
    .await
}

/// `now + after`; when that overflows the clock, the latest instant it can hold: a wait that
/// long is "never", not "now" (no accepted setting comes near).
pub(crate) fn after(after: Duration) -> Instant {
    later(Instant::now(), after)
}

/// `start + after`, or the latest instant the clock can hold past `start` when that overflows.
pub(crate) fn later(start: Instant, after: Duration) -> Instant {
    if let Some(at) = start.checked_add(after) {
        return at;
    }
    // `start + after` overflows; so does `at + 2 * step` at every round (it was the previous
    // step, or `after` itself): at most one addition per halving, 2 x 128 rounds at most.
    let mut step = after;
    let mut at = start;
    while !step.is_zero() {
        match at.checked_add(step) {
            Some(next) => at = next,
            None => step /= 2,
        }
    }
    at
}

/// The shared wheel of this thread.
#[derive(Default)]
struct Wheel {
    /// Whether a ticker runs on this thread.
    ticking: Cell<bool>,
    /// Registered deadlines with the waker of their waiter.
    entries: RefCell<Entries>,
    /// When the ticker's timer fires; `None` while it sleeps without one.
    armed: Cell<Option<Instant>>,
    /// Wakes the ticker when a deadline registers before its timer.
    wake_ticker: Event,
}

/// Where a waiter's deadline sits in [`Entries`]: its slot, and the generation that tells it
/// from a later waiter given the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    slot: usize,
    generation: u64,
}

/// One slot: a registered deadline, or a free slot (`waker: None`).
struct Slot {
    deadline: Instant,
    generation: u64,
    waker: Option<Waker>,
}

/// The registered deadlines: a slab with a free list. It grows to the most waits at once and
/// keeps that size (a few dozen bytes a wait).
#[derive(Default)]
struct Entries {
    slots: Vec<Slot>,
    free: Vec<usize>,
    next_generation: u64,
}

impl Entries {
    fn insert(&mut self, deadline: Instant, waker: Waker) -> Key {
        let generation = self.next_generation;
        self.next_generation = generation.wrapping_add(1);
        let filled = Slot {
            deadline,
            generation,
            waker: Some(waker),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot] = filled;
                slot
            }
            None => {
                self.slots.push(filled);
                self.slots.len() - 1
            }
        };
        Key { slot, generation }
    }

    /// The waker of `key`'s waiter while it is registered.
    fn waker_mut(&mut self, key: Key) -> Option<&mut Waker> {
        self.slots
            .get_mut(key.slot)
            .filter(|slot| slot.generation == key.generation)?
            .waker
            .as_mut()
    }

    fn remove(&mut self, key: Key) {
        let Some(slot) = self.slots.get_mut(key.slot) else {
            return;
        };
        if slot.generation == key.generation && slot.waker.take().is_some() {
            self.free.push(key.slot);
        }
    }

    /// Takes the wakers of the deadlines up to `now` into `due`; returns the earliest deadline
    /// left.
    fn expire(&mut self, now: Instant, due: &mut Vec<Waker>) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if slot.waker.is_none() {
                continue;
            }
            if slot.deadline <= now {
                due.extend(slot.waker.take());
                self.free.push(index);
            } else if earliest.is_none_or(|at| slot.deadline < at) {
                earliest = Some(slot.deadline);
            }
        }
        earliest
    }

    /// Takes every waker (the ticker stops).
    fn take_all(&mut self) -> Vec<Waker> {
        self.free.clear();
        self.slots.drain(..).filter_map(|slot| slot.waker).collect()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.slots.iter().all(|slot| slot.waker.is_none())
    }
}

thread_local! {
    static WHEEL: Wheel = Wheel::default();
}

/// Completes at its deadline: through the wheel when a ticker runs, else through its own timer.
struct Expiry {
    deadline: Instant,
    key: Option<Key>,
    timer: Option<Timer>,
}

impl Expiry {
    fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            key: None,
            timer: None,
        }
    }

    fn deregister(&mut self) {
        if let Some(key) = self.key.take() {
            let _ = WHEEL.try_with(|wheel| wheel.entries.borrow_mut().remove(key));
        }
    }
}

impl Future for Expiry {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let now = Instant::now();
        if now >= self.deadline {
            self.deregister();
            return Poll::Ready(());
        }
        let coarse =
            self.timer.is_none() && WHEEL.try_with(|wheel| wheel.ticking.get()).unwrap_or(false);
        if !coarse {
            self.deregister();
            let deadline = self.deadline;
            let timer = self.timer.get_or_insert_with(|| Timer::at(deadline));
            return Pin::new(timer).poll(cx).map(|_| ());
        }
        let deadline = self.deadline;
        let registered = self.key;
        let key = WHEEL.with(|wheel| {
            let mut entries = wheel.entries.borrow_mut();
            if let Some(waker) = registered.and_then(|key| entries.waker_mut(key)) {
                if !waker.will_wake(cx.waker()) {
                    waker.clone_from(cx.waker());
                }
                return registered;
            }
            let key = entries.insert(deadline, cx.waker().clone());
            drop(entries);
            if wheel.armed.get().is_none_or(|armed| deadline < armed) {
                wheel.wake_ticker.notify(1);
            }
            Some(key)
        });
        self.key = key;
        Poll::Pending
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        self.deregister();
    }
}

/// Marks the ticker stopped when its future is dropped, and wakes every waiter so that each
/// falls back to its own timer.
struct TickerGuard;

impl Drop for TickerGuard {
    fn drop(&mut self) {
        let _ = WHEEL.try_with(|wheel| {
            wheel.ticking.set(false);
            let wakers = wheel.entries.borrow_mut().take_all();
            wakers.into_iter().for_each(Waker::wake);
        });
    }
}

/// Runs the shared ticker of this thread until the future is dropped (spawn it on the executor
/// that runs the waits). Only one ticker per thread does anything; a second returns at once.
pub(crate) async fn run_ticker() {
    if WHEEL.with(|wheel| wheel.ticking.replace(true)) {
        return;
    }
    let _guard = TickerGuard;
    // A timerfd of its own (see `os::alarm`: no allocation per reactor wake-up), or a
    // `smol::Timer` where the system gives no timerfd.
    let mut alarm = Alarm::new().ok();
    let mut alarm_at: Option<Instant> = None;
    let mut due = Vec::new();
    loop {
        // Listen before looking, so that a registration in between is not missed.
        let (listener, earliest) = WHEEL.with(|wheel| {
            let listener = wheel.wake_ticker.listen();
            let earliest = wheel.entries.borrow_mut().expire(Instant::now(), &mut due);
            wheel.armed.set(earliest);
            (listener, earliest)
        });
        due.drain(..).for_each(Waker::wake);
        match earliest {
            // Nothing waits: sleep, without a timer, until a deadline registers.
            None => listener.await,
            Some(at) => match alarm.as_ref() {
                Some(timerfd) if alarm_at == Some(at) || timerfd.set(at).is_ok() => {
                    alarm_at = Some(at);
                    let woken = async {
                        listener.await;
                        Ok(())
                    };
                    if future::or(woken, timerfd.rung()).await.is_err() {
                        // A timerfd that cannot be read would ring at once forever.
                        alarm = None;
                    }
                }
                _ => {
                    future::or(listener, async {
                        Timer::at(at).await;
                    })
                    .await
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smol::LocalExecutor;

    fn elapsed_until_expiry(ticker: bool, wait: Duration) -> (Option<()>, Duration) {
        let ex = LocalExecutor::new();
        let _ticker = ticker.then(|| ex.spawn(run_ticker()));
        let started = Instant::now();
        let result = smol::block_on(ex.run(async {
            future::yield_now().await;
            at(after(wait), future::pending::<()>()).await
        }));
        (result, started.elapsed())
    }

    /// A deadline too far to represent is "never", not "now".
    #[test]
    fn an_overflowing_deadline_is_never() {
        let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        assert!(after(Duration::MAX) > far);
    }

    #[test]
    fn expires_with_its_own_timer() {
        let (result, elapsed) = elapsed_until_expiry(false, Duration::from_millis(150));
        assert_eq!(result, None);
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
    }

    #[test]
    fn expires_through_the_wheel_on_time() {
        let (result, elapsed) = elapsed_until_expiry(true, Duration::from_millis(150));
        assert_eq!(result, None);
        assert!(elapsed >= Duration::from_millis(150), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(400), "{elapsed:?}");
    }

    #[test]
    fn a_later_deadline_does_not_rearm_and_an_earlier_one_does() {
        let ex = LocalExecutor::new();
        let _ticker = ex.spawn(run_ticker());
        let late = ex.spawn(at(after(Duration::from_secs(60)), future::pending::<()>()));
        while ex.try_tick() {}
        let armed = WHEEL
            .with(|wheel| wheel.armed.get())
            .expect("armed at the only deadline");
        let later = ex.spawn(at(after(Duration::from_secs(120)), future::pending::<()>()));
        while ex.try_tick() {}
        assert_eq!(
            WHEEL.with(|wheel| wheel.armed.get()),
            Some(armed),
            "a later deadline keeps the timer"
        );
        let started = Instant::now();
        let early = ex.spawn(at(
            after(Duration::from_millis(100)),
            future::pending::<()>(),
        ));
        assert_eq!(smol::block_on(ex.run(early)), None);
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(100) && elapsed < Duration::from_secs(2),
            "{elapsed:?}"
        );
        drop((late, later));
    }

    #[test]
    fn a_finished_wait_leaves_the_wheel() {
        let ex = LocalExecutor::new();
        let _ticker = ex.spawn(run_ticker());
        let value = smol::block_on(ex.run(async {
            future::yield_now().await;
            at(after(Duration::from_secs(5)), async { 7 }).await
        }));
        assert_eq!(value, Some(7));
        assert!(WHEEL.with(|wheel| wheel.entries.borrow().is_empty()));
    }

    #[test]
    fn a_reused_slot_is_not_removed_by_its_former_waiter() {
        let now = Instant::now();
        let mut entries = Entries::default();
        let waker = Waker::noop().clone();
        let first = entries.insert(now, waker.clone());
        let mut due = Vec::new();
        assert_eq!(entries.expire(now, &mut due), None);
        assert_eq!(due.len(), 1);
        let second = entries.insert(now + Duration::from_secs(1), waker);
        assert_eq!(first.slot, second.slot, "the slot is reused");
        entries.remove(first);
        assert!(entries.waker_mut(second).is_some(), "the new waiter stays");
        assert!(entries.waker_mut(first).is_none());
        due.clear();
        assert_eq!(
            entries.expire(now, &mut due),
            Some(now + Duration::from_secs(1))
        );
        assert!(due.is_empty());
        entries.remove(second);
        assert!(entries.is_empty());
    }

    #[test]
    fn waiters_fall_back_to_their_own_timer_when_the_ticker_stops() {
        let ex = LocalExecutor::new();
        let ticker = ex.spawn(run_ticker());
        let waiter = ex.spawn(at(
            after(Duration::from_millis(200)),
            future::pending::<()>(),
        ));
        while ex.try_tick() {}
        assert!(WHEEL.with(|wheel| wheel.ticking.get()));
        drop(ticker);
        let started = Instant::now();
        assert_eq!(smol::block_on(ex.run(waiter)), None);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!WHEEL.with(|wheel| wheel.ticking.get()));
    }
}
