//! Liveness: is php-fpm healthy, busy, stuck or dead? One pure state machine ([`Liveness`]) with
//! an injected clock: every input carries its instant, and nothing here reads a clock, a socket
//! or a file. The server (`/fcgi-live`, the `busy` of `/fcgi-ping`, the stuck gauge) and `check`
//! both ask it. Its inputs:
//! - the verdicts of probes ([`Liveness::probed`]): an answer is progress; a probe that got no
//!   answer while php-fpm held its connection (busy, a timeout waiting for the answer, a full
//!   queue) begins or continues a wait; anything else is dead at once, a listener that does not
//!   take the connection (a timeout while connecting) included, as one that refuses it;
//! - the kernel's listen queue: a timeout while connections other than ours wait is `busy`
//!   ([`classify`]); whether those figures can be read at all, and why not ([`Liveness::saw`]);
//! - the answer of a probe connection kept open after its deadline ([`Liveness::answered`]);
//! - php-fpm's own per-process blocks, from a full status page read while every worker is busy
//!   (through `pm.status_listen`: [`Observation`], judged by [`judge_page`], fed with
//!   [`Liveness::observed`]).
//!
//! The table (its tests go through the clock):
//!
//! | state | when | liveness |
//! | --- | --- | --- |
//! | healthy | the last probe was answered (or a kept connection was) | alive |
//! | busy since T | probes get no answer since T, the start of the first that got none | alive |
//! | stuck | busy, and no progress for `BUSY_GRACE` since T or since the last sign of progress (a worker starting a request, on the page); or the page proves it at once | fails `stuck` |
//! | dead | refused, missing, a broken answer, a connect that times out with room in the queue | fails at once, with the probe's reason |
//!
//! Invariant: stuck is counted from when waiting began, never from the last answer seen (a
//! `/fcgi-live` asked less often than `BUSY_GRACE` is not stuck at its first busy probe).

use std::time::{Duration, Instant};

use crate::os::listen_queue::{Queue, Unseen, View};
use crate::probe::{Failure, Reason, Stage, Verdict};
use crate::proto::status::Status;

/// How long `/fcgi-live` and `check --live` give the status lane's full page after a ping that
/// got no answer: their verdict comes within `TIMEOUT` plus this (the lane answers in a few
/// milliseconds; one that does not is no help here).
pub(crate) const LANE_AFTER_PING: Duration = Duration::from_millis(100);

/// Whether `failure` says php-fpm holds the connection but no worker answered in time (busy, a
/// timeout waiting for the answer, a full queue): liveness waits `BUSY_GRACE` before it calls
/// that `stuck`. A timeout while resolving or connecting is not waiting: nothing took the
/// connection.
pub(crate) fn waiting(failure: &Failure) -> bool {
    match failure.reason {
        Reason::Busy | Reason::FcgiOverloaded => true,
        Reason::Timeout => matches!(failure.stage, Some(Stage::Answer) | None),
        _ => false,
    }
}

/// What the kernel's queue makes of a timeout: `busy` when connections other than ours (`own`:
/// this probe's and every other connection of ours that may wait there) are queued while the
/// probe waited for its answer, or when the queue is full while it waited to connect (as a Unix
/// listener's `EAGAIN`: php-fpm overloaded, not gone). Other failures stay as they are.
pub(crate) fn classify(failure: Failure, view: &View, own: u64, timeout: Duration) -> Failure {
    if failure.reason != Reason::Timeout {
        return failure;
    }
    let View::Seen(Queue { queued, backlog }) = *view else {
        return failure;
    };
    let label = failure
        .detail
        .split_once(" within ")
        .and_then(|(head, _)| head.strip_prefix("no complete answer from "))
        .unwrap_or("php-fpm")
        .to_owned();
    let shown = match backlog {
        Some(backlog) => backlog.to_string(),
        None => "unknown".to_owned(),
    };
    match failure.stage {
        Some(Stage::Connect) if backlog.is_some_and(|backlog| queued >= backlog) => Failure::new(
            Reason::Busy,
            format!(
                "no connection taken within {timeout:?}: the listen queue is full, {queued} connections queued (backlog {shown}) on {label}"
            ),
        ),
        Some(Stage::Answer) | None if queued > own => Failure::new(
            Reason::Busy,
            format!(
                "no worker answered within {timeout:?}; {} connections queued (backlog {shown}) on {label}",
                queued.saturating_sub(own)
            ),
        ),
        _ => failure,
    }
}

/// One worker of a page's per-process blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Worker {
    /// Its state is `Idle`.
    pub(crate) idle: bool,
    /// How long it has been on its current request (php-fpm's `request duration`, counted from
    /// when the worker accepted it); `None`: unknown.
    pub(crate) running_for: Option<Duration>,
}

/// What one reading of php-fpm's full status page shows of its workers: the input of the page
/// rules ([`judge_page`]). php-fpm 8.0+ serves the page on `pm.status_listen` while every worker
/// of the pool is busy; the page lists the children that exist now (with dynamic and ondemand
/// pools, not `pm.max_children`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observation {
    /// Its per-process blocks, in page order.
    pub(crate) workers: Vec<Worker>,
    /// Whether some blocks are missing (a cut answer, or not a full page).
    pub(crate) truncated: bool,
    /// `accepted conn`: connections the pool has accepted since it started.
    pub(crate) accepted: Option<u64>,
    /// When it was read.
    pub(crate) at: Instant,
}

impl Observation {
    /// What the full page `page`, read at `at`, shows (a page without per-process blocks is
    /// truncated: nothing can be decided from it).
    pub(crate) fn of(page: &Status, at: Instant) -> Self {
        let (workers, truncated) = match &page.processes {
            Some(processes) => (
                processes
                    .list
                    .iter()
                    .map(|process| Worker {
                        idle: !process.busy(),
                        running_for: process.request_duration.map(Duration::from_micros),
                    })
                    .collect(),
                processes.truncated,
            ),
            None => (Vec::new(), true),
        };
        Self {
            workers,
            truncated,
            accepted: page.number("accepted conn"),
            at,
        }
    }
}

/// What the page rules make of one reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageVerdict {
    /// Every worker is on a request, the youngest started `youngest` ago, within the grace: the
    /// pool moved then (busy, not stuck).
    Running { youngest: Duration },
    /// Every worker has been on its request for at least the grace (`youngest` the shortest):
    /// no worker started a request within it.
    Stuck { workers: usize, youngest: Duration },
    /// `idle` workers while connections wait beyond ours, and `accepted conn` did not rise from
    /// `accepted` since the last reading: the workers are frozen (`kill -STOP`), not between two
    /// requests of a churning pool (whose count rises).
    Frozen { idle: usize, accepted: u64 },
    /// Nothing decided (the kernel's rule applies): no blocks (an ondemand pool just after
    /// idling), a truncated page, a running worker of unknown duration, idle workers with
    /// nobody waiting or `accepted conn` rising, or no reading before to compare.
    Undecided,
}

/// The page rules: `page` against the reading `before` it (its `accepted conn` and when), with
/// `others` connections (besides ours) waiting in the kernel's queue (`None`: unknown).
pub(crate) fn judge_page(
    page: &Observation,
    before: Option<(u64, Instant)>,
    others: Option<u64>,
    grace: Duration,
) -> PageVerdict {
    if page.truncated || page.workers.is_empty() {
        return PageVerdict::Undecided;
    }
    let idle = page.workers.iter().filter(|worker| worker.idle).count();
    if idle == 0 {
        let youngest = page
            .workers
            .iter()
            .map(|worker| worker.running_for)
            .try_fold(Duration::MAX, |youngest, known| {
                known.map(|d| youngest.min(d))
            });
        return match youngest {
            None => PageVerdict::Undecided,
            Some(youngest) if youngest >= grace => PageVerdict::Stuck {
                workers: page.workers.len(),
                youngest,
            },
            Some(youngest) => PageVerdict::Running { youngest },
        };
    }
    let frozen = others.is_some_and(|others| others > 0)
        && before.is_some_and(|(accepted, at)| at < page.at && page.accepted == Some(accepted));
    match (frozen, page.accepted) {
        (true, Some(accepted)) => PageVerdict::Frozen { idle, accepted },
        _ => PageVerdict::Undecided,
    }
}

/// Where a pool stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Healthy,
    /// Waiting, counted from `since` (when waiting began, or the last progress after it).
    Busy {
        since: Instant,
    },
    Stuck {
        since: Instant,
    },
    Dead,
}

/// Whether the kernel's figures could be read, and if not, why (what was said last).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sight {
    Seen,
    Refused,
    NoSocketFile,
    Elsewhere,
}

/// One pool's liveness: the state machine of the module's table.
#[derive(Debug)]
pub(crate) struct Liveness {
    /// `BUSY_GRACE`; `None` (`off`): liveness is the probe's verdict.
    grace: Option<Duration>,
    /// When the current wait began (the start of its first probe); `None`: not waiting.
    waiting_since: Option<Instant>,
    /// The last progress seen during the wait (a worker starting a request).
    moved: Option<Instant>,
    /// Whether the last probe's verdict was dead.
    dead: bool,
    /// Why php-fpm's page proved the pool stuck during this wait.
    page_stuck: Option<String>,
    /// The last page's `accepted conn`, and when it was read.
    last_page: Option<(u64, Instant)>,
    /// What was last said about the kernel's figures.
    sight: Option<Sight>,
}

impl Liveness {
    pub(crate) fn new(grace: Option<Duration>) -> Self {
        Self {
            grace,
            waiting_since: None,
            moved: None,
            dead: false,
            page_stuck: None,
            last_page: None,
            sight: None,
        }
    }

    /// A probe that started at `started` ended at `now` with `verdict` (after [`classify`]).
    pub(crate) fn probed(&mut self, verdict: &Verdict, started: Instant, now: Instant) {
        match verdict {
            Ok(()) => self.answered(),
            Err(failure) if waiting(failure) => {
                self.dead = false;
                if self.waiting_since.is_none() {
                    self.waiting_since = Some(started.min(now));
                    self.page_stuck = None;
                }
            }
            Err(_) => {
                self.end_wait();
                self.dead = true;
            }
        }
    }

    /// php-fpm answered a probe (a kept connection's answer included): the wait is over.
    pub(crate) fn answered(&mut self) {
        self.end_wait();
        self.dead = false;
    }

    fn end_wait(&mut self) {
        self.waiting_since = None;
        self.moved = None;
        self.page_stuck = None;
    }

    /// php-fpm's full page `page`, read while waiting, with `others` connections (besides ours)
    /// in the kernel's queue: progress (a worker started a request), or proof of stuck.
    pub(crate) fn observed(&mut self, page: &Observation, others: Option<u64>) {
        let before = std::mem::replace(&mut self.last_page, page.accepted.map(|a| (a, page.at)));
        let (Some(grace), Some(_)) = (self.grace, self.waiting_since) else {
            return;
        };
        match judge_page(page, before, others, grace) {
            PageVerdict::Running { youngest } => {
                self.page_stuck = None;
                if let Some(started) = page.at.checked_sub(youngest) {
                    self.moved = Some(self.moved.map_or(started, |moved| moved.max(started)));
                }
            }
            PageVerdict::Stuck { workers, youngest } => {
                self.page_stuck = Some(format!(
                    "every worker ({workers}) has been on its request for {}s or more (BUSY_GRACE={grace:?}): none started one within the grace",
                    youngest.as_secs()
                ));
            }
            PageVerdict::Frozen { idle, accepted } => {
                self.page_stuck = Some(format!(
                    "{idle} workers idle while {} connections wait, and php-fpm accepted none since the last reading (accepted conn {accepted}): its workers are frozen",
                    others.unwrap_or_default()
                ));
            }
            PageVerdict::Undecided => {}
        }
    }

    /// Where the pool stands at `now`.
    pub(crate) fn state(&self, now: Instant) -> State {
        if self.dead {
            return State::Dead;
        }
        let Some(since) = self.waiting_since else {
            return State::Healthy;
        };
        let since = self.moved.map_or(since, |moved| moved.max(since));
        let stuck = self.grace.is_some_and(|grace| {
            self.page_stuck.is_some() || now.saturating_duration_since(since) >= grace
        });
        match stuck {
            true => State::Stuck { since },
            false => State::Busy { since },
        }
    }

    /// Whether the pool is stuck at `now` (never with `BUSY_GRACE=off`).
    pub(crate) fn stuck(&self, now: Instant) -> bool {
        matches!(self.state(now), State::Stuck { .. })
    }

    /// The liveness verdict at `now` for a probe `verdict` (fed to [`Liveness::probed`] first):
    /// healthy and dead as they are; waiting alive until stuck, then `stuck`.
    pub(crate) fn live(&self, verdict: &Verdict, now: Instant) -> Verdict {
        let Err(failure) = verdict else {
            return Ok(());
        };
        let Some(grace) = self.grace else {
            return verdict.clone();
        };
        if !waiting(failure) {
            return verdict.clone();
        }
        let State::Stuck { since } = self.state(now) else {
            return Ok(());
        };
        let why = match &self.page_stuck {
            Some(why) => why.clone(),
            None => format!(
                "no progress for {}s while connections wait (BUSY_GRACE={grace:?})",
                now.saturating_duration_since(since).as_secs()
            ),
        };
        Err(Failure::new(
            Reason::Stuck,
            format!("{why}; last probe: {failure}"),
        ))
    }

    /// The kernel's figures as just read: the line to log when whether they can be read, or
    /// why not, changed since the last reading (`None`: nothing to say).
    pub(crate) fn saw(&mut self, view: &View) -> Option<String> {
        let sight = match view {
            View::Seen(_) => Sight::Seen,
            View::Unavailable(Unseen::Refused(_)) => Sight::Refused,
            View::Unavailable(Unseen::NoSocketFile(_)) => Sight::NoSocketFile,
            View::Unavailable(Unseen::Elsewhere(_)) => Sight::Elsewhere,
        };
        let before = self.sight.replace(sight);
        if before == Some(sight) {
            return None;
        }
        match view {
            View::Seen(_) => before.map(|_| {
                "listen queue figures available again: busy is told from timeout".to_owned()
            }),
            View::Unavailable(why) => Some(format!(
                "listen queue figures unavailable: {why}; busy cannot be told from timeout (said again when the cause changes)"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::arithmetic_side_effects)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(60);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn timeout(stage: Stage) -> Failure {
        Failure {
            stage: Some(stage),
            ..Failure::new(
                Reason::Timeout,
                "no complete answer from 127.0.0.1:9000 within 800ms (while reading the answer, 0 bytes received)".to_owned(),
            )
        }
    }

    fn seen(queued: u64, backlog: u64) -> View {
        View::Seen(Queue {
            queued,
            backlog: Some(backlog),
        })
    }

    fn busy() -> Verdict {
        Err(Failure::new(Reason::Busy, "queued".to_owned()))
    }

    #[test]
    fn a_timeout_with_others_queued_is_busy() {
        let ms = Duration::from_millis(800);
        let answer = timeout(Stage::Answer);
        assert_eq!(
            classify(answer.clone(), &seen(15, 511), 1, ms).to_string(),
            "busy: no worker answered within 800ms; 14 connections queued (backlog 511) on 127.0.0.1:9000"
        );
        // Only our own connections queued: a hang, not a crowd.
        assert_eq!(
            classify(answer.clone(), &seen(2, 511), 2, ms).reason,
            Reason::Timeout
        );
        let unseen = View::Unavailable(Unseen::Elsewhere(String::new()));
        assert_eq!(classify(answer, &unseen, 0, ms).reason, Reason::Timeout);
        let refused = Failure::new(Reason::ConnectRefused, String::new());
        assert_eq!(
            classify(refused, &seen(15, 511), 0, ms).reason,
            Reason::ConnectRefused
        );
        // Not taken while connecting: busy only when the queue is full.
        let connect = timeout(Stage::Connect);
        let full = classify(connect.clone(), &seen(512, 511), 1, ms);
        assert_eq!(full.reason, Reason::Busy, "{full}");
        assert!(full.detail.contains("listen queue is full"), "{full}");
        assert!(waiting(&full));
        let room = classify(connect, &seen(3, 511), 1, ms);
        assert_eq!(room.reason, Reason::Timeout);
        assert!(!waiting(&room), "a listener that takes nothing is dead");
        assert!(!waiting(&timeout(Stage::Name)));
    }

    /// The table, through the clock: healthy; busy since the start of the first probe that got
    /// no answer; stuck BUSY_GRACE after that, however rarely asked; dead at once; an answer
    /// (a kept connection's too) ends the wait.
    #[test]
    fn the_table_through_the_clock() {
        let t0 = Instant::now();
        let mut live = Liveness::new(Some(GRACE));
        assert_eq!(live.state(t0), State::Healthy);
        live.probed(&Ok(()), t0, t0);
        assert_eq!(live.live(&Ok(()), t0), Ok(()));

        // Asked rarely: the last answer was at t0; the first busy probe, 100 s later, is not
        // stuck (waiting began with it).
        let t1 = t0 + secs(100);
        live.probed(&busy(), t1, t1 + secs(1));
        assert_eq!(live.state(t1 + secs(1)), State::Busy { since: t1 });
        assert_eq!(live.live(&busy(), t1 + secs(1)), Ok(()));
        // Still busy at T + 59 s; later probes do not move T.
        live.probed(&busy(), t1 + secs(30), t1 + secs(31));
        assert_eq!(live.live(&busy(), t1 + secs(59)), Ok(()));
        let stuck = live.live(&busy(), t1 + secs(60)).unwrap_err();
        assert_eq!(stuck.reason, Reason::Stuck);
        assert!(
            stuck.detail.starts_with(
                "no progress for 60s while connections wait (BUSY_GRACE=60s); last probe: busy: "
            ),
            "{stuck}"
        );
        assert!(live.stuck(t1 + secs(60)));

        // The kept connection's answer: the wait is over; a new one begins with the next probe.
        live.answered();
        assert_eq!(live.state(t1 + secs(61)), State::Healthy);
        let t2 = t1 + secs(70);
        live.probed(&busy(), t2, t2 + secs(1));
        assert_eq!(live.state(t2 + secs(59)), State::Busy { since: t2 });

        // Dead at once, whatever the grace; a dead verdict is not judged for waiting.
        let refused = Err(Failure::new(Reason::ConnectRefused, String::new()));
        live.probed(&refused, t2 + secs(2), t2 + secs(2));
        assert_eq!(live.state(t2 + secs(2)), State::Dead);
        assert_eq!(live.live(&refused, t2 + secs(2)), refused);
        // php-fpm back, then busy again: a fresh wait.
        live.probed(&busy(), t2 + secs(100), t2 + secs(101));
        assert_eq!(
            live.state(t2 + secs(101)),
            State::Busy {
                since: t2 + secs(100)
            }
        );
        live.probed(&Ok(()), t2 + secs(102), t2 + secs(102));
        assert_eq!(live.state(t2 + secs(200)), State::Healthy);

        // BUSY_GRACE=off: liveness is the probe's verdict, never stuck.
        let mut off = Liveness::new(None);
        off.probed(&busy(), t0, t0);
        assert_eq!(off.live(&busy(), t0 + secs(1000)), busy());
        assert!(!off.stuck(t0 + secs(1000)));
    }

    fn page(workers: &[(bool, Option<u64>)], accepted: u64, at: Instant) -> Observation {
        Observation {
            workers: workers
                .iter()
                .map(|&(idle, secs)| Worker {
                    idle,
                    running_for: secs.map(Duration::from_secs),
                })
                .collect(),
            truncated: false,
            accepted: Some(accepted),
            at,
        }
    }

    /// A full page's blocks as the rules read them: `Idle` or not, the running time (unknown
    /// past php-fpm's range), `accepted conn`; a summary page decides nothing.
    #[test]
    fn an_observation_reads_a_full_page() {
        let body = "pool: www\naccepted conn: 12\nidle processes: 1\nactive processes: 2\n\n\
                    ************************\npid: 7\nstate: Idle\nrequest duration: 1500\n\n\
                    ************************\npid: 8\nstate: Running\nrequest duration: 2500000\n\n\
                    ************************\npid: 9\nstate: Finishing\n\
                    request duration: 18446744073709550774\n";
        let at = Instant::now();
        let page = crate::proto::status::parse_full(body.as_bytes(), false).unwrap();
        let seen = Observation::of(&page, at);
        assert_eq!(
            seen.workers,
            [
                Worker {
                    idle: true,
                    running_for: Some(Duration::from_micros(1500))
                },
                Worker {
                    idle: false,
                    running_for: Some(Duration::from_micros(2_500_000))
                },
                Worker {
                    idle: false,
                    running_for: None
                },
            ]
        );
        assert_eq!(
            (seen.truncated, seen.accepted, seen.at),
            (false, Some(12), at)
        );
        let summary = crate::proto::status::parse(body.as_bytes()).unwrap();
        assert!(Observation::of(&summary, at).truncated);
    }

    #[test]
    fn the_page_rules() {
        let t = Instant::now() + secs(1000);
        let running = page(&[(false, Some(5)), (false, Some(70))], 10, t);
        assert_eq!(
            judge_page(&running, None, Some(3), GRACE),
            PageVerdict::Running { youngest: secs(5) }
        );
        // Busy or not by the kernel's queue, every worker running within the grace is progress.
        assert_eq!(
            judge_page(&running, None, Some(0), GRACE),
            PageVerdict::Running { youngest: secs(5) }
        );
        let old = page(&[(false, Some(61)), (false, Some(70))], 10, t);
        assert_eq!(
            judge_page(&old, None, None, GRACE),
            PageVerdict::Stuck {
                workers: 2,
                youngest: secs(61)
            }
        );
        // Undecided: an unknown duration, no blocks, a truncated page.
        let unknown = page(&[(false, None), (false, Some(70))], 10, t);
        assert_eq!(
            judge_page(&unknown, None, Some(3), GRACE),
            PageVerdict::Undecided
        );
        let none = page(&[], 10, t);
        assert_eq!(
            judge_page(&none, None, Some(3), GRACE),
            PageVerdict::Undecided
        );
        let cut = Observation {
            truncated: true,
            ..old.clone()
        };
        assert_eq!(
            judge_page(&cut, None, Some(3), GRACE),
            PageVerdict::Undecided
        );
        // Idle workers while others wait: frozen when accepted conn did not rise since the
        // reading before; a churning pool's rises; nobody waiting, or no reading before, is
        // undecided.
        let idle = page(&[(true, Some(1)), (false, Some(2))], 10, t);
        let before = Some((10, t - secs(1)));
        assert_eq!(
            judge_page(&idle, before, Some(2), GRACE),
            PageVerdict::Frozen {
                idle: 1,
                accepted: 10
            }
        );
        assert_eq!(
            judge_page(&idle, Some((9, t - secs(1))), Some(2), GRACE),
            PageVerdict::Undecided
        );
        assert_eq!(
            judge_page(&idle, before, Some(0), GRACE),
            PageVerdict::Undecided
        );
        assert_eq!(
            judge_page(&idle, before, None, GRACE),
            PageVerdict::Undecided
        );
        assert_eq!(
            judge_page(&idle, None, Some(2), GRACE),
            PageVerdict::Undecided
        );
    }

    /// The page fed to the machine: a worker that started a request is progress (the grace
    /// counts from then); every worker older than the grace, or frozen ones, is stuck at once.
    #[test]
    fn pages_feed_the_table() {
        let t0 = Instant::now();
        let mut live = Liveness::new(Some(GRACE));
        live.probed(&busy(), t0, t0 + secs(1));
        // At t0 + 50 s a worker has run for 10 s: it started at t0 + 40 s.
        let at = t0 + secs(50);
        live.observed(
            &page(&[(false, Some(10)), (false, Some(45))], 7, at),
            Some(4),
        );
        assert_eq!(
            live.state(t0 + secs(99)),
            State::Busy {
                since: t0 + secs(40)
            }
        );
        assert!(live.stuck(t0 + secs(100)));
        // Every worker older than the grace: stuck now, with the page's reason.
        let mut live = Liveness::new(Some(GRACE));
        live.probed(&busy(), t0, t0 + secs(1));
        live.observed(
            &page(&[(false, Some(61)), (false, Some(62))], 7, t0 + secs(1)),
            Some(4),
        );
        let stuck = live.live(&busy(), t0 + secs(1)).unwrap_err();
        assert!(
            stuck
                .detail
                .starts_with("every worker (2) has been on its request for 61s or more"),
            "{stuck}"
        );
        // Frozen: two readings, accepted conn still, idle workers, others waiting.
        let mut live = Liveness::new(Some(GRACE));
        live.probed(&busy(), t0, t0 + secs(1));
        let frozen = [(true, Some(0)), (true, Some(0))];
        live.observed(&page(&frozen, 7, t0 + secs(1)), Some(4));
        assert_eq!(live.state(t0 + secs(1)), State::Busy { since: t0 });
        live.observed(&page(&frozen, 7, t0 + secs(2)), Some(4));
        let stuck = live.live(&busy(), t0 + secs(2)).unwrap_err();
        assert!(stuck.detail.contains("frozen"), "{stuck}");
        // The next answer ends it all.
        live.answered();
        assert_eq!(live.state(t0 + secs(3)), State::Healthy);
    }

    #[test]
    fn the_figures_warning_is_said_when_its_cause_changes() {
        let mut live = Liveness::new(Some(GRACE));
        assert_eq!(live.saw(&seen(0, 511)), None);
        let elsewhere = View::Unavailable(Unseen::Elsewhere("no listener here".to_owned()));
        let said = live.saw(&elsewhere).unwrap();
        assert!(
            said.starts_with("listen queue figures unavailable: no listener here;"),
            "{said}"
        );
        assert_eq!(live.saw(&elsewhere), None);
        let gone = View::Unavailable(Unseen::NoSocketFile("the socket file is gone".to_owned()));
        assert!(live.saw(&gone).unwrap().contains("the socket file is gone"));
        assert_eq!(live.saw(&gone), None);
        assert_eq!(
            live.saw(&seen(1, 511)).unwrap(),
            "listen queue figures available again: busy is told from timeout"
        );
        assert_eq!(live.saw(&seen(2, 511)), None);
    }
}
