//! The status lane: php-fpm 8.0+'s `pm.status_listen`, a second listener served by a reserved
//! pool (ondemand, at most 2 children) that answers the status page while every worker of the
//! main pool is busy.
//!
//! The status page (summary and `?full`) is read through the lane while it answers. When it
//! refuses the connection or is missing (php-fpm before 8.0 has none; a typo; a socket not made
//! yet), the caller reads the page through the main listener instead ([`Source::Fallback`]), and
//! the log says so when that changes, not at every read. Any other failure of the lane (a
//! timeout, a 404) is the page's failure: the main listener would not do better. The ping never
//! goes through the lane: a lane's answer proves nothing about the main pool.
//!
//! The lane's children are few, so concurrent reads queue there: the server reads it through
//! each pool's page single-flights (at most one summary and one full page at a time).

use std::cell::Cell;
use std::time::Instant;

use log::{info, warn};

use crate::config::{Config, Destination};
use crate::proto::status::Status;

use super::report::Reporter;
use super::{Failure, Probe, Reason};

/// Where a status page was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Through the status lane.
    Lane,
    /// Through the main listener (no lane is configured).
    Main,
    /// Through the main listener, because the lane refused or is missing.
    Fallback,
}

impl Source {
    /// The `source` label of `/metrics`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Lane => "lane",
            Source::Main => "main",
            Source::Fallback => "fallback",
        }
    }
}

/// What a read through the lane gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// The lane answered: the page, or why it is not one.
    Page(Result<Status, Failure>),
    /// The lane refused or is missing (the failure): read the page through the main listener.
    Absent(Failure),
}

/// One pool's status lane: its probes and whether it answered last.
#[derive(Debug)]
pub(crate) struct Lane {
    destination: Destination,
    summary: Probe,
    full: Probe,
    /// Whether the last read found the lane absent (`None`: not read yet).
    absent: Cell<Option<bool>>,
    /// The log of the lane's other failures (throttled).
    log: Reporter,
}

impl Lane {
    /// The lane at `destination`, read with `config`'s status path and timeout.
    pub(crate) fn new(config: &Config, destination: &Destination) -> Self {
        let summary = Probe::status_at(config, destination, false);
        Self::with(
            destination,
            summary,
            Probe::status_at(config, destination, true),
        )
    }

    /// The lane at `destination`, read by these probes of its summary and full page (made
    /// without rendering a request, for a pool found while serving).
    pub(crate) fn with(destination: &Destination, summary: Probe, full: Probe) -> Self {
        Self {
            destination: destination.clone(),
            summary,
            full,
            absent: Cell::new(None),
            log: Reporter::new(),
        }
    }

    /// Where it listens.
    pub(crate) fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The address, as the logs show it.
    pub(crate) fn label(&self) -> &str {
        self.summary.label()
    }

    /// Whether the lane may answer: its last read did not find it absent.
    pub(crate) fn may_answer(&self) -> bool {
        self.absent.get() != Some(true)
    }

    /// Reads the status page (`full`: `?full`) through the lane, within the timeout.
    /// [`Read::Absent`]: the lane refused or is missing, so the caller reads it through `main`
    /// (the main listener's label, for the log line said when this changes).
    pub(crate) async fn read(&self, full: bool, main: &str) -> Read {
        let probe = match full {
            true => &self.full,
            false => &self.summary,
        };
        let started = Instant::now();
        let (verdict, answer) = probe.run().await;
        let was_absent = self.absent.get();
        match verdict {
            Err(failure) if absent(failure.reason) => {
                self.absent.set(Some(true));
                if was_absent != Some(true) {
                    warn!(
                        "status lane {} (pm.status_listen): {failure}; reading the status page \
                         through {main} instead, where a busy pool answers it late or not at all",
                        self.label()
                    );
                }
                return Read::Absent(failure);
            }
            _ => {
                self.absent.set(Some(false));
                if was_absent == Some(true) {
                    info!(
                        "status lane {} (pm.status_listen) accepts connections again: the status \
                         page is read through it",
                        self.label()
                    );
                }
            }
        }
        self.log
            .report(probe, &verdict, answer.as_ref(), started.elapsed());
        Read::Page(probe.read_status(verdict, answer))
    }

    /// What a one-shot reader says after a fallback, after its verdict:
    /// ` (status lane LANE: REASON; read through MAIN)`.
    pub(crate) fn fallback_note(&self, failure: &Failure, main: &str) -> String {
        format!(
            " (status lane {}: {}; read through {main})",
            self.label(),
            failure.reason
        )
    }
}

/// Whether a lane read's failure means the lane is not there: nothing listens (refused), no
/// socket file or no such host (missing), or no permission to connect. Nothing reached php-fpm,
/// and trying the main listener costs no wait.
fn absent(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::ConnectRefused | Reason::ConnectFailed | Reason::ResolveFailed
    )
}
