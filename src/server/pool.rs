//! One pool: its probes, their single-flight and cache, what they count, and the inputs of its
//! liveness (what each probe got, the kernel's view of its queue, the kept connection's answer),
//! which [`crate::liveness`] judges. A pool owns no socket but its probes' own; [`super::pools`]
//! holds every pool of the process.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::{Config, Destination, ProcessMetrics};
use crate::liveness::{self, Liveness};
use crate::os::listen_queue::View;
use crate::probe::coalesce::{Coalescer, Via};
use crate::probe::counters::{Counters, ProbeKind};
use crate::probe::keep::Keeper;
use crate::probe::report::Reporter;
use crate::probe::{Failure, Held, Probe, Reason, Verdict};
use crate::proto::metrics::Writer;
use crate::proto::status::Status;

use super::pools::Nudge;

/// A status page shared by concurrent requests, each applying its own thresholds; shared as
/// `Rc`, so that a waiter gets the page without a copy (a full page of 1,000 children is hundreds
/// of KB).
type Page = Result<Rc<Status>, Failure>;

/// `ENOENT`: the errno of a connect to a socket file that does not exist.
pub(crate) const ENOENT: i32 = libc::ENOENT;

/// How long a reading of the kernel's listen-queue view serves: however many probes and scrapes
/// of a pool fail at once, it is read at most once per this.
const QUEUE_VIEW_AGE: Duration = Duration::from_secs(1);

/// The requests every pool sends, rendered once at start: a pool (one found while serving
/// included) sends them to its own destination, without rendering anything.
pub(crate) struct Requests {
    ping: Probe,
    status: Probe,
    full: Probe,
}

impl Requests {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            ping: Probe::new(config),
            status: Probe::status(config),
            full: Probe::status_full(config),
        }
    }
}

/// One pool's probing.
pub(crate) struct Pool {
    /// Its name in `POOLS`; `None`: the one pool of `DESTINATION`.
    name: Option<String>,
    probe: Probe,
    ping: Coalescer<Verdict>,
    /// The log of the ping's outcomes (throttled).
    ping_log: Reporter,
    status_probe: Probe,
    status_log: Reporter,
    status_page: Coalescer<Page>,
    /// The full status page (`?full`), read only when a threshold or `PROCESS_METRICS` needs
    /// its per-process part; shared like `status_page`.
    full_probe: Probe,
    full_page: Coalescer<Page>,
    /// Whether `/metrics` reads the full page (`PROCESS_METRICS` is not `off`).
    metrics_full: bool,
    counters: Counters,
    /// Healthy, busy, stuck or dead (`/fcgi-live`, the stuck gauge).
    live: RefCell<Liveness>,
    /// The one kept connection.
    keeper: Keeper,
    /// Probes of this pool running now (ping, status page, full page): each may have a
    /// connection in php-fpm's queue, ours, not others'.
    in_flight: Cell<u64>,
    /// The last status page of the kind `/metrics` reads (full or not) and when it was read,
    /// repeated (marked stale) while php-fpm is busy.
    last_page: RefCell<Option<(Rc<Status>, Instant)>>,
    /// The kernel's listen-queue view, how many of the connections it counts were ours, and
    /// when it was read (see [`QUEUE_VIEW_AGE`]).
    queue_view: RefCell<Option<(View, u64, Instant)>>,
    /// A pool of a `dir:` directory: asks for a re-read when its socket is gone (`ENOENT`).
    rediscover: Option<Rc<Nudge>>,
}

impl Pool {
    /// The pool `name` (`None`: the one pool of `DESTINATION`) at `destination`, sending
    /// `requests`; `rediscover`: the call for a re-read of its `dir:` directory.
    pub(crate) fn new(
        config: &Config,
        name: Option<String>,
        destination: &Destination,
        requests: &Requests,
        rediscover: Option<Rc<Nudge>>,
    ) -> Self {
        Self {
            name,
            probe: requests.ping.at(destination),
            ping: Coalescer::new(config.coalesce, config.cache_ttl),
            ping_log: Reporter::new(),
            status_probe: requests.status.at(destination),
            status_log: Reporter::new(),
            status_page: Coalescer::new(config.coalesce, config.cache_ttl),
            full_probe: requests.full.at(destination),
            full_page: Coalescer::new(config.coalesce, config.cache_ttl),
            metrics_full: config.process_metrics != ProcessMetrics::Off,
            counters: Counters::default(),
            live: RefCell::new(Liveness::new(config.busy_grace)),
            keeper: Keeper::new(config.busy_grace),
            in_flight: Cell::new(0),
            last_page: RefCell::new(None),
            queue_view: RefCell::new(None),
            rediscover,
        }
    }

    /// The kernel's view of this pool's listen queue and how many of the connections it counts
    /// were ours (the running probes', the kept and the abandoned ones): read now, or the
    /// reading of less than [`QUEUE_VIEW_AGE`] ago, with its count of then. A change in whether
    /// it can be read (or why not) is logged.
    fn queue_view(&self, now: Instant) -> (View, u64) {
        if let Some((view, own, read)) = &*self.queue_view.borrow() {
            if now.saturating_duration_since(*read) < QUEUE_VIEW_AGE {
                return (view.clone(), *own);
            }
        }
        let view = self.probe.listen_queue();
        match (self.live.borrow_mut().saw(&view), &view) {
            (Some(line), View::Seen(_)) => info!("{}{line}", self.log_prefix()),
            (Some(line), View::Unavailable(_)) => warn!("{}{line}", self.log_prefix()),
            (None, _) => {}
        }
        let own = self.in_flight.get().saturating_add(self.keeper.ours());
        *self.queue_view.borrow_mut() = Some((view.clone(), own, now));
        (view, own)
    }

    /// `pool NAME: ` for a log line of a named pool; empty for the one pool.
    fn log_prefix(&self) -> String {
        match &self.name {
            Some(name) => format!("pool {name}: "),
            None => String::new(),
        }
    }

    /// Counts a probe of this pool as running until the guard is dropped.
    fn flight(&self) -> Flight<'_> {
        self.in_flight.set(self.in_flight.get().saturating_add(1));
        Flight(&self.in_flight)
    }

    /// Its name in `POOLS` (`None`: the one pool).
    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The destination, as the logs show it.
    pub(crate) fn label(&self) -> &str {
        self.probe.label()
    }

    /// The keeper of this pool's kept connection (see [`Keeper::keep`]): runs until dropped.
    pub(crate) async fn keep(&self) {
        let answered = || self.live.borrow_mut().answered();
        self.keeper.keep(&self.probe, answered).await;
    }

    /// After a probe of `probe` that started at `started` (still counted as running): a
    /// timeout becomes `busy` when the kernel shows others queued, and its connection is
    /// offered to the keeper (only a timeout reads the kernel's view); liveness hears the
    /// verdict.
    fn settle(
        &self,
        probe: &Probe,
        verdict: Verdict,
        held: Option<Held>,
        started: Instant,
    ) -> Verdict {
        let now = Instant::now();
        let verdict = match verdict {
            Ok(()) => {
                self.keeper.moved();
                Ok(())
            }
            Err(failure) if failure.reason == Reason::Timeout => {
                let (view, own) = self.queue_view(now);
                let failure = liveness::classify(failure, &view, own, probe.timeout());
                self.keeper.hold(held);
                Err(failure)
            }
            Err(failure) => {
                if let (Some(nudge), true) = (&self.rediscover, failure.errno == Some(ENOENT)) {
                    nudge.ask();
                }
                Err(failure)
            }
        };
        self.live.borrow_mut().probed(&verdict, started, now);
        verdict
    }

    /// The ping through the single-flight (one FastCGI request for concurrent callers), counted.
    pub(crate) async fn ping(&self) -> Verdict {
        let started = Instant::now();
        let (verdict, via) = self.ping.run(|| self.ping_once()).await;
        self.counters.record_ping(&verdict, via, started.elapsed());
        verdict
    }

    /// One ping, logged.
    async fn ping_once(&self) -> Verdict {
        let started = Instant::now();
        let _flight = self.flight();
        let (verdict, answer, held) = self.probe.run_holding().await;
        let verdict = self.settle(&self.probe, verdict, held, started);
        self.ping_log
            .report(&self.probe, &verdict, answer.as_ref(), started.elapsed());
        if let Some(answer) = answer {
            self.probe.recycle_answer(answer);
        }
        verdict
    }

    /// The liveness verdict: the shared ping (counted as one with `/fcgi-ping`), judged for
    /// liveness (busy is alive until stuck), counted.
    pub(crate) async fn live(&self) -> Verdict {
        let verdict = self.ping().await;
        let live = self.live.borrow().live(&verdict, Instant::now());
        self.counters.record_live(&live);
        live
    }

    /// php-fpm's status page, fetched once for all concurrent requests (`/fcgi-status` with any
    /// thresholds, `/metrics`), and counted; `full`: the full page (`?full`), with its own
    /// single-flight.
    pub(crate) async fn status_page(&self, full: bool) -> Page {
        let started = Instant::now();
        let (probe, flight) = match full {
            true => (&self.full_probe, &self.full_page),
            false => (&self.status_probe, &self.status_page),
        };
        let (page, via) = flight
            .run(|| async {
                let started = Instant::now();
                let _flight = self.flight();
                let (verdict, answer, held) = probe.run_holding().await;
                let verdict = self.settle(probe, verdict, held, started);
                self.status_log
                    .report(probe, &verdict, answer.as_ref(), started.elapsed());
                probe.read_status(verdict, answer).map(Rc::new)
            })
            .await;
        self.counters
            .record(ProbeKind::Status, &page, via, started.elapsed());
        if let (Ok(page), Via::Ran) = (&page, via) {
            self.counters.saw_page(page);
            if full == self.metrics_full {
                *self.last_page.borrow_mut() = Some((Rc::clone(page), Instant::now()));
            }
        }
        page
    }

    /// The status page for `/metrics`, and when it was read if it is the last one repeated
    /// (stale) because php-fpm is busy: at once while a probe connection of ours waits in
    /// php-fpm's queue (a page asked now would wait behind it), or after the page failed `busy`,
    /// `timeout` or `fcgi_overloaded`.
    async fn metrics_page(&self) -> (Page, Option<Instant>) {
        if self.keeper.kept() > 0 {
            if let Some((last, read)) = self.last_page.borrow().clone() {
                return (Ok(last), Some(read));
            }
        }
        let page = self.status_page(self.metrics_full).await;
        if page.is_err() {
            self.counters.scrape_failed();
        }
        let stale = match &page {
            Err(failure) if liveness::waiting(failure) => self.last_page.borrow().clone(),
            _ => None,
        };
        match stale {
            Some((last, read)) => (Ok(last), Some(read)),
            None => (page, None),
        }
    }

    /// This pool's part of `/metrics`: its probes, php-fpm's figures (read now unless
    /// `status_on` is false), the busy figures, liveness. Labelled with the pool's name, when it
    /// has one.
    pub(crate) async fn write_metrics(&self, out: &mut String, status_on: bool, per_process: bool) {
        let page = match status_on {
            true => Some(self.metrics_page().await),
            false => None,
        };
        let mut w = Writer::new(out, self.name.as_deref());
        self.counters.write_probes(&mut w);
        if let Some((page, _)) = &page {
            let page = page.as_ref().map(|page| &**page);
            self.counters
                .write_php_fpm(&mut w, self.name.as_deref(), page, per_process);
        }
        let now = Instant::now();
        let (view, _) = self.queue_view(now);
        write_queue(&mut w, &view);
        self.keeper.write_metrics(&mut w);
        w.gauge("fastcgi_healthcheck_stuck", "1 while php-fpm made no progress for BUSY_GRACE while probes waited (what /fcgi-live fails as stuck).", u8::from(self.live.borrow().stuck(now)));
        self.counters.write_live(&mut w);
        if let Some((_, stale)) = page {
            w.gauge("fastcgi_healthcheck_status_page_stale", "1 when the phpfpm_* figures are the last status page read, repeated because php-fpm is busy; 0 when read for this scrape.", u8::from(stale.is_some()));
            if let Some(read) = stale {
                w.gauge(
                    "fastcgi_healthcheck_status_page_age_seconds",
                    "How old the repeated (stale) status page figures are.",
                    now.saturating_duration_since(read).as_secs(),
                );
            }
        }
    }
}

/// Counts a running probe of a pool (see [`Pool::flight`]).
struct Flight<'a>(&'a Cell<u64>);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// The kernel's view of a pool's listen queue, read now, for `/metrics`.
fn write_queue(w: &mut Writer<'_>, view: &View) {
    w.gauge("fastcgi_healthcheck_listen_queue_available", "Whether the kernel's view of php-fpm's listen queue can be read (0: php-fpm is in another network namespace, its socket file is missing, or the kernel refused; the log says which).", u8::from(matches!(view, View::Seen(_))));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::listen_queue::Queue;
    use std::os::unix::net::{UnixListener, UnixStream};

    fn queued((view, own): (View, u64)) -> (u64, u64) {
        match view {
            View::Seen(Queue { queued, .. }) => (queued, own),
            View::Unavailable(why) => panic!("{why}"),
        }
    }

    /// However many probes and scrapes fail at once, the kernel's view of a pool's queue is
    /// read at most once a second; a reading keeps its own count of our connections.
    #[test]
    fn the_kernel_view_is_read_at_most_once_a_second() {
        let dir = std::env::temp_dir().join(format!("fch-pool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("www.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let Ok(crate::config::Command::Serve(config)) = crate::config::parse(&[], |_| None) else {
            panic!("default config");
        };
        let destination = Destination::Unix(path.clone());
        let pool = Pool::new(&config, None, &destination, &Requests::new(&config), None);
        let read = Instant::now();
        assert_eq!(queued(pool.queue_view(read)), (0, 0));
        let _waiting = UnixStream::connect(&path).unwrap();
        let _probe = pool.flight();
        let almost = read + QUEUE_VIEW_AGE - Duration::from_millis(1);
        assert_eq!(queued(pool.queue_view(almost)), (0, 0), "read again");
        assert_eq!(queued(pool.queue_view(read + QUEUE_VIEW_AGE)), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
