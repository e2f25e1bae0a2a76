//! Housekeeping: giving freed memory back to the operating system after connections close, and
//! the idle exit (`IDLE_EXIT`) of a socket-activated process.

use std::cell::Cell;
use std::time::{Duration, Instant};

use log::{debug, info};
use smol::future;

use crate::deadline;

use super::table::Table;

/// After a storm of at least this many open connections, the memory they used is handed back to
/// the operating system as soon as they have all closed.
const STORM_CONNECTIONS: usize = 128;

/// Otherwise free memory is handed back when the last connection closes, at most this often (a
/// probe every few seconds leaves the server at its idle size between probes).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// When connections came and went, for the memory trim and the idle exit.
pub(crate) struct Housekeeping {
    /// Most connections open at once since memory was last released.
    peak: Cell<usize>,
    /// When free memory was last handed back (never yet: `None`).
    trimmed: Cell<Option<Instant>>,
    /// When a connection last opened or closed (for `IDLE_EXIT`).
    last_activity: Cell<Instant>,
}

impl Housekeeping {
    pub(crate) fn new() -> Self {
        Self {
            peak: Cell::new(0),
            trimmed: Cell::new(None),
            last_activity: Cell::new(Instant::now()),
        }
    }

    /// A connection arrived at `now` (served or refused).
    pub(crate) fn arrived(&self, now: Instant) {
        self.last_activity.set(now);
    }

    /// A connection opened; `open` are open now.
    pub(crate) fn opened(&self, open: usize) {
        self.peak.set(self.peak.get().max(open));
    }

    /// A connection closed at `now`; `open` are still open. The last one to close hands free
    /// memory back after a storm, or at most every [`TRIM_INTERVAL`].
    pub(crate) fn closed(&self, open: usize, now: Instant) {
        self.last_activity.set(now);
        if open > 0 {
            return;
        }
        let storm = self.peak.replace(0) >= STORM_CONNECTIONS;
        let due = self
            .trimmed
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= TRIM_INTERVAL);
        if storm || due {
            debug!("no connection open: releasing free memory");
            self.trimmed.set(Some(now));
            crate::os::release_free_memory();
        }
    }

    /// Completes (with `None`, "stop") once `idle` has passed without an open connection; never
    /// when `idle` is `None` (`IDLE_EXIT` off).
    pub(crate) async fn idle_exit<T>(&self, table: &Table, idle: Option<Duration>) -> Option<T> {
        let Some(idle) = idle else {
            return future::pending().await;
        };
        loop {
            let since = self.last_activity.get();
            // Through the shared deadline wheel: no reactor timer re-armed at every accept.
            deadline::at(deadline::later(since, idle), future::pending::<()>()).await;
            if table.open() == 0 && self.last_activity.get() == since {
                info!("no connection for {idle:?} (IDLE_EXIT): exiting");
                return None;
            }
            if table.open() > 0 {
                // Look again once the connections are gone and another idle period has passed.
                self.last_activity.set(Instant::now());
            }
        }
    }
}
