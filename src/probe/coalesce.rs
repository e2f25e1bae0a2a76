//! Single-flight: concurrent callers share one in-flight probe, and optionally reuse its verdict
//! for a time-to-live.
//!
//! A storm of simultaneous `/fcgi-ping` requests costs php-fpm one FastCGI request: the first
//! caller (the leader) runs the probe, every caller that arrives while it runs waits for that
//! verdict. Invariants:
//! - Waiters never hang on a leader that goes away: if the leader's future is dropped before it
//!   finishes (its connection was closed), the flight is abandoned and a waiter takes over.
//! - A verdict is only shared between callers of the same [`Coalescer`]; each kind of probe (and
//!   each configuration of it) has its own.
//! - With a TTL of zero, a verdict is never reused after it was delivered: a caller that arrives
//!   after the probe finished starts a new one.

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Shares one in-flight computation of a `T` between concurrent callers.
#[derive(Debug)]
pub(crate) struct Coalescer<T> {
    enabled: bool,
    ttl: Duration,
    state: RefCell<State<T>>,
    /// A flight for the next leader: the last one, reset, when nobody else held it as it
    /// ended (no waiters, as at one connection). No allocation per computation then.
    spare: RefCell<Option<Rc<Flight<T>>>>,
}

#[derive(Debug)]
enum State<T> {
    Idle,
    Running(Rc<Flight<T>>),
    Cached { value: T, until: Instant },
}

/// One in-flight computation: its result once known, and the waiters' wakers.
///
/// One thread: a plain list of wakers, each waiter with its slot, rather than an
/// `event_listener::Event`, whose first notification and every listener allocate. A flight
/// without waiters (one probe at a time) allocates nothing but itself.
#[derive(Debug)]
struct Flight<T> {
    result: RefCell<Option<T>>,
    /// Set when the flight ends, with a result or abandoned.
    over: Cell<bool>,
    waiters: RefCell<Vec<Option<Waker>>>,
}

impl<T> Flight<T> {
    fn new() -> Self {
        Self {
            result: RefCell::new(None),
            over: Cell::new(false),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Ends the flight and wakes every waiter.
    fn end(&self) {
        self.over.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        waiters.into_iter().flatten().for_each(Waker::wake);
    }

    /// Waits until the flight ends (at once if it has).
    async fn ended(&self) {
        let mut slot: Option<usize> = None;
        poll_fn(|cx| {
            if self.over.get() {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            match slot.and_then(|at| waiters.get_mut(at)) {
                Some(Some(waker)) if waker.will_wake(cx.waker()) => {}
                Some(place) => *place = Some(cx.waker().clone()),
                None => {
                    slot = Some(waiters.len());
                    waiters.push(Some(cx.waker().clone()));
                }
            }
            Poll::Pending
        })
        .await;
    }
}

/// How a caller got its value: by running the computation, or via another caller's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    /// It ran the computation itself.
    Ran,
    /// It waited for another caller's computation.
    Waited,
    /// It took a cached value (within the TTL).
    Cached,
}

impl<T: Clone> Coalescer<T> {
    /// A coalescer; `enabled == false` runs every call on its own (for benchmarks), `ttl` keeps a
    /// value for reuse after it was computed (zero: coalescing only).
    pub(crate) fn new(enabled: bool, ttl: Duration) -> Self {
        Self {
            enabled,
            ttl,
            state: RefCell::new(State::Idle),
            spare: RefCell::new(None),
        }
    }

    /// Returns the value of the in-flight computation, a cached one, or runs `compute`.
    pub(crate) async fn run<F, Fut>(&self, compute: F) -> (T, Via)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        // The computation (a probe: sockets, timer, decoder) lives on the heap while it runs, so
        // that a caller at rest (an idle HTTP connection's task) stays small.
        if !self.enabled {
            return (Box::pin(compute()).await, Via::Ran);
        }
        loop {
            let flight = match &*self.state.borrow() {
                State::Cached { value, until } if Instant::now() < *until => {
                    return (value.clone(), Via::Cached);
                }
                State::Running(flight) => Some(Rc::clone(flight)),
                State::Idle | State::Cached { .. } => None,
            };
            match flight {
                Some(flight) => {
                    flight.ended().await;
                    if let Some(value) = flight.result.borrow().clone() {
                        return (value, Via::Waited);
                    }
                    // The leader went away without a result: try again, perhaps as the leader.
                }
                None => return (Box::pin(self.lead(&compute)).await, Via::Ran),
            }
        }
    }

    /// Runs `compute` as the leader of a new flight and publishes its value.
    async fn lead<F, Fut>(&self, compute: &F) -> T
    where
        F: Fn() -> Fut,
        Fut: Future<Output = T>,
    {
        let flight = self.spare.take().unwrap_or_else(|| Rc::new(Flight::new()));
        *self.state.borrow_mut() = State::Running(Rc::clone(&flight));
        let guard = Abandon {
            coalescer: self,
            flight: &flight,
        };
        let value = compute().await;
        std::mem::forget(guard);
        *flight.result.borrow_mut() = Some(value.clone());
        *self.state.borrow_mut() = if self.ttl.is_zero() {
            State::Idle
        } else {
            State::Cached {
                value: value.clone(),
                until: crate::deadline::after(self.ttl),
            }
        };
        flight.end();
        self.keep(flight);
        value
    }

    /// Keeps an ended flight for the next leader when nobody else holds it (its waiters, who
    /// read its result after this, keep it shared: then it goes when the last of them is
    /// done). Reset first, so that the spare holds no value and is never seen as shared.
    fn keep(&self, mut flight: Rc<Flight<T>>) {
        if let Some(ended) = Rc::get_mut(&mut flight) {
            *ended = Flight::new();
            self.spare.replace(Some(flight));
        }
    }
}

/// Dropped only when the leader's future is dropped mid-flight: resets the state and wakes the
/// waiters so that one of them leads a new flight.
struct Abandon<'a, T> {
    coalescer: &'a Coalescer<T>,
    flight: &'a Rc<Flight<T>>,
}

impl<T> Drop for Abandon<'_, T> {
    fn drop(&mut self) {
        let mut state = self.coalescer.state.borrow_mut();
        if matches!(&*state, State::Running(flight) if Rc::ptr_eq(flight, self.flight)) {
            *state = State::Idle;
        }
        drop(state);
        self.flight.end();
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::cell::Cell;

    use smol::future;
    use smol::LocalExecutor;

    /// Runs `tasks` futures on one local executor, in the order given.
    fn run_all<T: 'static>(futures: Vec<std::pin::Pin<Box<dyn Future<Output = T>>>>) -> Vec<T> {
        let ex = LocalExecutor::new();
        let tasks: Vec<_> = futures.into_iter().map(|f| ex.spawn(f)).collect();
        future::block_on(ex.run(async {
            let mut out = Vec::new();
            for task in tasks {
                out.push(task.await);
            }
            out
        }))
    }

    /// A computation that counts its runs and yields a few times before answering.
    fn counted(runs: &Rc<Cell<u32>>) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = u32>>> {
        let runs = Rc::clone(runs);
        move || {
            let runs = Rc::clone(&runs);
            Box::pin(async move {
                runs.set(runs.get() + 1);
                for _ in 0..3 {
                    future::yield_now().await;
                }
                runs.get()
            })
        }
    }

    #[test]
    fn concurrent_callers_share_one_run() {
        let coalescer = Rc::new(Coalescer::new(true, Duration::ZERO));
        let runs = Rc::new(Cell::new(0u32));
        let futures = (0..100)
            .map(|_| {
                let (c, compute) = (Rc::clone(&coalescer), counted(&runs));
                Box::pin(async move { c.run(compute).await })
                    as std::pin::Pin<Box<dyn Future<Output = _>>>
            })
            .collect();
        let results = run_all(futures);
        assert_eq!(runs.get(), 1);
        assert!(results.iter().all(|(value, _)| *value == 1u32));
        assert_eq!(
            results
                .iter()
                .filter(|(_, source)| *source == Via::Ran)
                .count(),
            1
        );
    }

    #[test]
    fn without_ttl_a_later_caller_runs_again() {
        let coalescer = Coalescer::new(true, Duration::ZERO);
        let runs = Rc::new(Cell::new(0u32));
        assert_eq!(
            future::block_on(coalescer.run(counted(&runs))),
            (1, Via::Ran)
        );
        assert_eq!(
            future::block_on(coalescer.run(counted(&runs))),
            (2, Via::Ran)
        );
    }

    #[test]
    fn with_ttl_a_later_caller_reuses_the_value() {
        let coalescer = Coalescer::new(true, Duration::from_secs(60));
        let runs = Rc::new(Cell::new(0u32));
        assert_eq!(
            future::block_on(coalescer.run(counted(&runs))),
            (1, Via::Ran)
        );
        assert_eq!(
            future::block_on(coalescer.run(counted(&runs))),
            (1, Via::Cached)
        );
    }

    #[test]
    fn disabled_runs_every_caller() {
        let coalescer = Rc::new(Coalescer::new(false, Duration::from_secs(60)));
        let runs = Rc::new(Cell::new(0u32));
        let futures = (0..10)
            .map(|_| {
                let (c, compute) = (Rc::clone(&coalescer), counted(&runs));
                Box::pin(async move { c.run(compute).await.0 })
                    as std::pin::Pin<Box<dyn Future<Output = _>>>
            })
            .collect();
        run_all(futures);
        assert_eq!(runs.get(), 10);
    }

    /// Polls `future` once, with a waker that does nothing (the test polls again by hand).
    fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(Waker::noop()))
    }

    #[test]
    fn a_flight_is_reused_only_when_nobody_else_holds_it() {
        let coalescer = Coalescer::new(true, Duration::ZERO);
        let open = Cell::new(false);
        let runs = Cell::new(0u32);
        let gate = &open;
        // Each run takes the next number and answers it once `open` is set.
        let compute = || {
            runs.set(runs.get() + 1);
            let run = runs.get();
            poll_fn(move |_| match gate.get() {
                true => Poll::Ready(run),
                false => Poll::Pending,
            })
        };
        let mut leader = std::pin::pin!(coalescer.run(compute));
        assert!(poll_once(leader.as_mut()).is_pending());
        let mut waiter = std::pin::pin!(coalescer.run(compute));
        assert!(poll_once(waiter.as_mut()).is_pending());
        open.set(true);
        assert_eq!(poll_once(leader.as_mut()), Poll::Ready((1, Via::Ran)));
        // The waiter has not read the first value yet: a new leader must not take its flight.
        assert!(coalescer.spare.borrow().is_none());
        open.set(false);
        let mut next = std::pin::pin!(coalescer.run(compute));
        assert!(poll_once(next.as_mut()).is_pending());
        assert_eq!(poll_once(waiter.as_mut()), Poll::Ready((1, Via::Waited)));
        open.set(true);
        assert_eq!(poll_once(next.as_mut()), Poll::Ready((2, Via::Ran)));
        // Nobody waited on the second flight: it is kept, reset, and the third one runs in it.
        let kept = coalescer.spare.borrow().as_ref().map(Rc::as_ptr);
        assert!(kept.is_some());
        let mut third = std::pin::pin!(coalescer.run(compute));
        assert!(poll_once(third.as_mut()).is_ready());
        assert_eq!(coalescer.spare.borrow().as_ref().map(Rc::as_ptr), kept);
        assert_eq!(runs.get(), 3);
    }

    #[test]
    fn a_waiter_takes_over_when_the_leader_is_dropped() {
        let coalescer = Rc::new(Coalescer::new(true, Duration::ZERO));
        let runs = Rc::new(Cell::new(0u32));
        // The first run never finishes; the second answers at once.
        let compute = {
            let runs = Rc::clone(&runs);
            move || {
                let runs = Rc::clone(&runs);
                async move {
                    runs.set(runs.get() + 1);
                    if runs.get() == 1 {
                        future::pending::<()>().await;
                    }
                    runs.get()
                }
            }
        };
        let ex = LocalExecutor::new();
        let leader = ex.spawn({
            let (c, compute) = (Rc::clone(&coalescer), compute.clone());
            async move { c.run(compute).await }
        });
        let waiter = ex.spawn({
            let c = Rc::clone(&coalescer);
            async move { c.run(compute).await }
        });
        // Let the leader start and the waiter queue up behind it, then cancel the leader.
        while ex.try_tick() {}
        assert_eq!(runs.get(), 1);
        drop(leader);
        assert_eq!(future::block_on(ex.run(waiter)), (2, Via::Ran));
    }
}
