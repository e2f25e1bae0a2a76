//! The connection table: who is open, what each is doing, and whom to close at the cap.
//!
//! Invariants:
//! - At most `max_connections` connections are in the table. At the cap, room is made by
//!   closing, in this order: the connection idle the longest (it waits for the first byte of its
//!   next request), then the oldest one stuck for more than [`SLOW_REQUEST`] in a partial request
//!   or in writing answers its client does not read (pipelined requests from a slow reader).
//!   Only when every connection is answering (probing, writing to a reading client) or just
//!   started a request is a newcomer refused (`503`, at most [`MAX_REJECTING`] at once).
//! - Removing a connection from the table cancels its task. The socket closes when the executor
//!   next runs that task (it drops the task's future), not at the removal: for that moment a
//!   newcomer admitted in its place holds one descriptor more than the cap, which the
//!   descriptor budget at start allows for.

// Plain counting on the table's own figures (`rejecting` goes up below MAX_REJECTING and down
// once per refused newcomer); the open-file limit comes from the kernel, may be "infinite"
// (u64::MAX), and is still summed with saturating steps.
#![allow(clippy::arithmetic_side_effects)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use smol::Task;

use crate::config::Config;
use crate::limits::MAX_REJECTING;
use crate::throttle::{Gate, Throttle};

/// A request whose head or body is still incomplete after this long (or a write its client has
/// not read for this long) may be closed to make room for a newcomer at the connection cap: a
/// real client sends its request in one go and reads its answer.
pub(crate) const SLOW_REQUEST: Duration = Duration::from_secs(1);

/// File descriptors kept free for the listener, the log, signals, name lookups and the like.
const RESERVED_FDS: u64 = 32;

/// File descriptors one pool of `POOLS` may hold at once: its ping, status page and full status
/// page in flight, and a kept connection.
const FDS_PER_POOL: u64 = 4;

/// The descriptors the pools of `config` may hold beside the connections (a `dir:` list may
/// grow to [`crate::config::MAX_POOLS`]); the one pool of `DESTINATION` fits in
/// [`RESERVED_FDS`].
fn pool_fds(config: &Config) -> u64 {
    let pools = match &config.pools {
        crate::config::Pools::One => 0,
        crate::config::Pools::Named(named) => named.len(),
        crate::config::Pools::Dir(_) => crate::config::MAX_POOLS,
    };
    u64::try_from(pools)
        .unwrap_or(u64::MAX)
        .saturating_mul(FDS_PER_POOL)
}

/// What a connection is doing, for the choice of whom to close at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the first byte of a request (new, or between keep-alive requests).
    Idle { since: Instant },
    /// Receiving a request (head or body) since the first byte came.
    Reading { since: Instant },
    /// Answering: routing, probing, writing what the client reads.
    Busy,
    /// Writing answers the client does not read (its buffers are full) since then.
    Writing { since: Instant },
}

/// An open connection: dropping it cancels its task; the socket closes when the executor next
/// runs it.
struct Conn {
    phase: Rc<Cell<Phase>>,
    _task: Task<()>,
}

/// The open connections and the cap.
pub(crate) struct Table {
    max_connections: usize,
    conns: RefCell<BTreeMap<u64, Conn>>,
    next_id: Cell<u64>,
    /// Newcomers being answered `503` now.
    rejecting: Cell<usize>,
    /// Set by the stop: answers say `Connection: close`, idle connections end.
    stopping: Cell<bool>,
    cap_log: Throttle,
}

impl Table {
    /// An empty table for at most `max_connections`.
    pub(crate) fn new(max_connections: usize) -> Self {
        Self {
            max_connections,
            conns: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
            rejecting: Cell::new(0),
            stopping: Cell::new(false),
            cap_log: Throttle::new(Duration::from_secs(10), 1),
        }
    }

    /// Connections open now.
    pub(crate) fn open(&self) -> usize {
        self.conns.borrow().len()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.open() >= self.max_connections
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.get()
    }

    /// The next connection's id.
    pub(crate) fn next_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        id
    }

    /// Adds a connection's task; returns how many are open.
    pub(crate) fn insert(&self, id: u64, phase: Rc<Cell<Phase>>, task: Task<()>) -> usize {
        let mut conns = self.conns.borrow_mut();
        conns.insert(id, Conn { phase, _task: task });
        conns.len()
    }

    /// Takes a finished connection out (its task ends in this very poll); returns how many are
    /// still open.
    pub(crate) fn remove_finished(&self, id: u64) -> usize {
        let (own, open) = {
            let mut conns = self.conns.borrow_mut();
            (conns.remove(&id), conns.len())
        };
        // Dropping our own task handle here is fine: the task completes in this very poll.
        drop(own);
        open
    }

    /// Closes one connection to make room: the one idle the longest, else the oldest one stuck
    /// for more than [`SLOW_REQUEST`]. `false` when there is none.
    pub(crate) fn make_room(&self, now: Instant) -> bool {
        let mut conns = self.conns.borrow_mut();
        let pick = |want_idle: bool| {
            conns
                .iter()
                .filter_map(|(id, conn)| match conn.phase.get() {
                    Phase::Idle { since } if want_idle => Some((since, *id)),
                    Phase::Reading { since } | Phase::Writing { since }
                        if !want_idle && now.saturating_duration_since(since) > SLOW_REQUEST =>
                    {
                        Some((since, *id))
                    }
                    _ => None,
                })
                .min()
                .map(|(_, id)| id)
        };
        let Some(id) = pick(true).or_else(|| pick(false)) else {
            return false;
        };
        let closed = conns.remove(&id);
        drop(conns);
        drop(closed);
        debug!("connection cap reached: closed an idle or stalled connection to make room");
        true
    }

    /// Whether a newcomer may get its `503` (else it is closed at once); says so in the log
    /// (throttled). Call [`Table::refused`] when its answer is done.
    pub(crate) fn refusing(&self) -> bool {
        if let Gate::Log { suppressed } = self.cap_log.gate(Instant::now()) {
            warn!(
                "all {} connections (MAX_CONNECTIONS) are busy: refusing newcomers with 503 ({suppressed} similar events not logged)",
                self.max_connections
            );
        }
        if self.rejecting.get() >= MAX_REJECTING {
            return false;
        }
        self.rejecting.set(self.rejecting.get() + 1);
        true
    }

    /// A refused newcomer's answer is done.
    pub(crate) fn refused(&self) {
        self.rejecting.set(self.rejecting.get() - 1);
    }

    /// Logs a failed accept (throttled with the cap's warnings).
    pub(crate) fn log_accept_error(&self, error: &std::io::Error, retry: Option<Duration>) {
        if let Gate::Log { suppressed } = self.cap_log.gate(Instant::now()) {
            match retry {
                Some(after) => warn!("accept failed: {error} ({suppressed} similar events not logged); retrying in {after:?}"),
                None => warn!("accept failed: {error} ({suppressed} similar events not logged)"),
            }
        }
    }

    /// Starts the stop, and closes every connection that is not answering; returns how many
    /// are left.
    pub(crate) fn close_waiting(&self) -> usize {
        self.stopping.set(true);
        let waiting: Vec<Conn> = {
            let mut conns = self.conns.borrow_mut();
            let ids: Vec<u64> = conns
                .iter()
                .filter(|(_, c)| c.phase.get() != Phase::Busy)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| conns.remove(id)).collect()
        };
        drop(waiting);
        self.open()
    }

    /// Closes every connection; returns how many there were.
    pub(crate) fn close_all(&self) -> usize {
        let left = std::mem::take(&mut *self.conns.borrow_mut());
        let count = left.len();
        drop(left);
        count
    }
}

/// The connection cap the open-file limit can hold: raises the soft limit to the hard one if
/// needed, and lowers the cap (with a warning) if even that is not enough. Each connection needs
/// one descriptor, and one more while it probes when coalescing is off.
pub(crate) fn fit_connection_cap(config: &Config) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    let per_connection: u64 = if config.coalesce { 1 } else { 2 };
    let wanted = u64::try_from(config.max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(per_connection)
        .saturating_add(u64::try_from(MAX_REJECTING).unwrap_or(u64::MAX))
        .saturating_add(RESERVED_FDS)
        .saturating_add(pool_fds(config));
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )
        .is_ok()
        {
            soft = raised;
        }
    }
    if soft >= wanted {
        return config.max_connections;
    }
    let room = soft
        .saturating_sub(u64::try_from(MAX_REJECTING).unwrap_or(u64::MAX))
        .saturating_sub(RESERVED_FDS)
        .saturating_sub(pool_fds(config));
    let fit = usize::try_from((room / per_connection).max(1))
        .unwrap_or(config.max_connections)
        .min(config.max_connections);
    warn!(
        "MAX_CONNECTIONS={} needs {wanted} open files{} but the limit (ulimit -n) is {soft}: serving at most {fit} connections; raise the limit or lower MAX_CONNECTIONS",
        config.max_connections,
        match pool_fds(config) {
            0 => String::new(),
            fds => format!(" ({fds} of them for the pools of POOLS)"),
        },
    );
    fit
}
