//! One pool: its probes, their single-flight and cache, what they count, and the inputs of its
//! liveness (what each probe got, the kernel's view of its queue, the kept connection's answer,
//! the status lane's page), which [`crate::liveness`] judges. A pool owns no socket but its
//! probes' own; [`super::pools`] holds every pool of the process. Its status page is read
//! through its status lane when it has one ([`crate::probe::lane`]), else (or when the lane
//! refuses or is missing) through its listener.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{info, warn};

use crate::config::{Config, Destination, ProcessMetrics};
use crate::deadline;
use crate::liveness::{self, Liveness, Observation, LANE_AFTER_PING};
use crate::os::listen_queue::View;
use crate::probe::coalesce::{Coalescer, Via};
use crate::probe::counters::{Counters, ProbeKind};
use crate::probe::keep::Keeper;
use crate::probe::lane::{self, Lane, Source};
use crate::probe::report::Reporter;
use crate::probe::{Failure, Held, Probe, Reason, Verdict};
use crate::proto::metrics::{Figures, Writer};
use crate::proto::status::Status;

use super::pools::Nudge;

/// A status page shared by concurrent requests, each applying its own thresholds; shared as
/// `Rc`, so that a waiter gets the page without a copy (a full page of 1,000 children is hundreds
/// of KB).
type Page = Result<Rc<Status>, Failure>;

/// The figures of the last status page of the kind `/metrics` reads: when it was read, and where.
type LastPage = (Figures, Instant, Source);

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
            status: Probe::status_at(config, &config.destination, false),
            full: Probe::status_at(config, &config.destination, true),
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
    status_page: Coalescer<(Page, Source)>,
    /// The full status page (`?full`), read only when a threshold or `PROCESS_METRICS` needs
    /// its per-process part; shared like `status_page`.
    full_probe: Probe,
    full_page: Coalescer<(Page, Source)>,
    /// php-fpm's `pm.status_listen` for this pool, where the status page is read first.
    lane: Option<Box<Lane>>,
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
    /// The figures of the last status page of the kind `/metrics` reads (full or not), when and
    /// where it was read, repeated (marked stale) while php-fpm is busy: numbers, not the page.
    last_page: RefCell<Option<LastPage>>,
    /// Whether php-fpm's last answer for the status page was `not_configured`, said once in the
    /// log (again only after a page was read since).
    not_configured: Cell<bool>,
    /// The kernel's listen-queue view, how many of the connections it counts were ours, and
    /// when it was read (see [`QUEUE_VIEW_AGE`]).
    queue_view: RefCell<Option<(View, u64, Instant)>>,
    /// A pool of a `dir:` directory: asks for a re-read when its socket is gone (`ENOENT`).
    rediscover: Option<Rc<Nudge>>,
    /// When liveness last read the status lane's page itself (at most once per
    /// [`QUEUE_VIEW_AGE`]).
    lane_read: Cell<Option<Instant>>,
}

impl Pool {
    /// The pool `name` (`None`: the one pool of `DESTINATION`) at `destination`, with its
    /// status lane `lane`, sending `requests`; `rediscover`: the call for a re-read of its
    /// `dir:` directory. With a lane the page reads are single-flight whatever `COALESCE` says:
    /// the lane's two children would queue more.
    pub(crate) fn new(
        config: &Config,
        name: Option<String>,
        (destination, lane): (&Destination, Option<&Destination>),
        requests: &Requests,
        rediscover: Option<Rc<Nudge>>,
    ) -> Self {
        let pages_coalesce = config.coalesce || lane.is_some();
        let lane = lane.map(|lane| {
            let (summary, full) = (requests.status.at(lane), requests.full.at(lane));
            Box::new(Lane::with(lane, summary, full))
        });
        Self {
            name,
            probe: requests.ping.at(destination),
            ping: Coalescer::new(config.coalesce, config.cache_ttl),
            ping_log: Reporter::new(),
            status_probe: requests.status.at(destination),
            status_log: Reporter::new(),
            status_page: Coalescer::new(pages_coalesce, config.cache_ttl),
            full_probe: requests.full.at(destination),
            full_page: Coalescer::new(pages_coalesce, config.cache_ttl),
            lane,
            metrics_full: config.process_metrics != ProcessMetrics::Off,
            counters: Counters::default(),
            live: RefCell::new(Liveness::new(config.busy_grace)),
            keeper: Keeper::new(config.busy_grace),
            in_flight: Cell::new(0),
            last_page: RefCell::new(None),
            not_configured: Cell::new(false),
            queue_view: RefCell::new(None),
            rediscover,
            lane_read: Cell::new(None),
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

    /// Where its status lane listens, if it has one.
    pub(crate) fn lane(&self) -> Option<&Destination> {
        self.lane.as_deref().map(Lane::destination)
    }

    /// The keeper of this pool's kept connection (see [`Keeper::keep`]): runs until dropped.
    pub(crate) async fn keep(&self) {
        let answered = || self.live.borrow_mut().answered();
        self.keeper.keep(&self.probe, answered).await;
    }

    /// After a probe of `probe` that started at `started` (still counted as running): a
    /// timeout becomes `busy` when the kernel shows others queued, and its connection is
    /// offered to the keeper (only a timeout reads the kernel's view). Liveness hears the
    /// verdict when it is `judged` (the ping's; a page's when no answer came), else that php-fpm
    /// answered.
    fn settle(
        &self,
        probe: &Probe,
        verdict: Verdict,
        held: Option<Held>,
        started: Instant,
        judged: bool,
    ) -> Verdict {
        let now = Instant::now();
        let verdict = match verdict {
            Ok(()) => {
                self.keeper.moved(started);
                Ok(())
            }
            Err(failure) if failure.reason == Reason::Timeout => {
                let (view, own) = self.queue_view(now);
                let failure = liveness::classify(failure, &view, own, probe.timeout());
                self.keeper.hold(held);
                Err(failure)
            }
            Err(failure) => {
                if failure.reason.answered() {
                    // This connection left the queue: so did those given up before it.
                    self.keeper.moved(started);
                }
                if let (Some(nudge), true) = (&self.rediscover, failure.errno == Some(ENOENT)) {
                    nudge.ask();
                }
                Err(failure)
            }
        };
        let mut live = self.live.borrow_mut();
        match judged {
            true => live.probed(&verdict, started, now),
            false => live.answered(),
        }
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
        let verdict = self.settle(&self.probe, verdict, held, started, true);
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
        if verdict.as_ref().err().is_some_and(liveness::waiting) {
            // Boxed: off the healthy path, and a connection's future stays small.
            Box::pin(self.observe_lane()).await;
        }
        let live = self.live.borrow().live(&verdict, Instant::now());
        self.counters.record_live(&live);
        live
    }

    /// After a ping that got no answer: the status lane's full page for liveness, within
    /// [`LANE_AFTER_PING`] and at most once per [`QUEUE_VIEW_AGE`] (a scrape's lane read feeds
    /// it too). A lane found absent before is tried again (a refused or missing lane costs no
    /// wait): nothing else would try it while every scrape repeats the kept page.
    async fn observe_lane(&self) {
        let Some(lane) = self.lane.as_deref() else {
            return;
        };
        let now = Instant::now();
        let recent = |read: Instant| now.saturating_duration_since(read) < QUEUE_VIEW_AGE;
        if self.lane_read.get().is_some_and(recent) {
            return;
        }
        self.lane_read.set(Some(now));
        let read = lane.read(true, self.probe.label());
        if let Some(lane::Read::Page(Ok(page))) =
            deadline::at(deadline::after(LANE_AFTER_PING), read).await
        {
            self.observe(&page);
        }
    }

    /// Feeds liveness a full page read through the lane now, with the kernel's count of the
    /// connections besides ours.
    fn observe(&self, page: &Status) {
        let now = Instant::now();
        let (view, own) = self.queue_view(now);
        let others = view.queued().ok().map(|queued| queued.saturating_sub(own));
        self.lane_read.set(Some(now));
        self.live
            .borrow_mut()
            .observed(&Observation::of(page, now), others);
    }

    /// php-fpm's status page, fetched once for all concurrent requests (`/fcgi-status` with any
    /// thresholds, `/metrics`), and counted; `full`: the full page (`?full`), with its own
    /// single-flight.
    pub(crate) async fn status_page(&self, full: bool) -> Page {
        self.read_page(full).await.0
    }

    /// [`Pool::status_page`], and where it was read: through the lane while it answers, else
    /// through the listener (a fallback when the lane refused or is missing).
    async fn read_page(&self, full: bool) -> (Page, Source) {
        let started = Instant::now();
        let (probe, flight) = match full {
            true => (&self.full_probe, &self.full_page),
            false => (&self.status_probe, &self.status_page),
        };
        let ((page, source), via) = flight
            .run(|| async {
                if let Some(lane) = &self.lane {
                    if let lane::Read::Page(page) = lane.read(full, probe.label()).await {
                        return (page.map(Rc::new), Source::Lane);
                    }
                }
                let started = Instant::now();
                let _flight = self.flight();
                let (verdict, answer, held) = probe.run_holding().await;
                // An answer, whatever it says of the page, is progress; no answer is the pool's.
                let judged = answer.is_none();
                let verdict = self.settle(probe, verdict, held, started, judged);
                match &verdict {
                    // A setting, not an event: said once, not at every scrape.
                    Err(failure) if failure.reason == Reason::NotConfigured => {
                        if !self.not_configured.replace(true) {
                            warn!("probe {} {}: {failure} (said once: /metrics leaves out the phpfpm_* figures until the page is read)", probe.label(), probe.path());
                        }
                    }
                    _ => self
                        .status_log
                        .report(probe, &verdict, answer.as_ref(), started.elapsed()),
                }
                let source = match self.lane {
                    Some(_) => Source::Fallback,
                    None => Source::Main,
                };
                (probe.read_status(verdict, answer).map(Rc::new), source)
            })
            .await;
        self.counters
            .record(ProbeKind::Status, &page, via, started.elapsed());
        if let (Ok(page), Via::Ran, Source::Lane, true) = (&page, via, source, full) {
            self.observe(page);
        }
        if let (Ok(page), Via::Ran) = (&page, via) {
            self.not_configured.set(false);
            self.counters.saw_page(page);
            if full == self.metrics_full {
                *self.last_page.borrow_mut() = Some((Figures::of(page), Instant::now(), source));
            }
        }
        (page, source)
    }

    /// The kernel's count of connections waiting on the pool's listener, less our own probe
    /// connections there (the running probes', the kept one, those given up), as read at most
    /// once a second: the figure of a `max-queued-connections` threshold.
    pub(crate) fn queued(&self) -> Result<u64, String> {
        let (view, own) = self.queue_view(Instant::now());
        view.queued().map(|queued| queued.saturating_sub(own))
    }

    /// The status page for `/metrics` and where it was read: read now, or the last one's
    /// figures repeated (stale) because php-fpm is busy: at once while a probe connection of ours
    /// waits in the listener's queue (a page asked there now would wait behind it) and no lane
    /// may answer instead, or after the page failed `busy`, `timeout` or `fcgi_overloaded`.
    async fn metrics_page(&self) -> (Scraped, Source) {
        let lane_may_answer = self.lane.as_ref().is_some_and(|lane| lane.may_answer());
        if self.keeper.kept() > 0 && !lane_may_answer {
            if let Some((last, read, source)) = self.last_page.borrow().clone() {
                return (Scraped::Stale(last, read), source);
            }
        }
        let (page, source) = self.read_page(self.metrics_full).await;
        let failure = match page {
            Ok(page) => return (Scraped::Read(page), source),
            Err(failure) if failure.reason == Reason::NotConfigured => {
                return (Scraped::NotConfigured, source)
            }
            Err(failure) => failure,
        };
        self.counters.scrape_failed();
        let stale = match liveness::waiting(&failure) {
            true => self.last_page.borrow().clone(),
            false => None,
        };
        match stale {
            Some((last, read, source)) => (Scraped::Stale(last, read), source),
            None => (Scraped::Failed, source),
        }
    }

    /// This pool's part of `/metrics`: its probes, php-fpm's figures (read now unless
    /// `status_on` is false), the busy figures, liveness. Labelled with the pool's name, when it
    /// has one.
    pub(crate) async fn write_metrics(&self, out: &mut String, status_on: bool, per_process: bool) {
        let scraped = match status_on {
            true => Some(self.metrics_page().await),
            false => None,
        };
        let mut w = Writer::new(out, self.name.as_deref());
        self.counters.write_probes(&mut w);
        let (mut stale, mut fresh) = (None, None);
        // (figures, children) of php-fpm's part; none at all when its page is not configured.
        let part = match scraped.as_ref().map(|(scraped, _)| scraped) {
            Some(Scraped::Read(page)) => Some((
                Some(&*fresh.insert(Figures::of(page))),
                page.processes.as_ref().filter(|_| per_process),
            )),
            Some(Scraped::Stale(figures, read)) => {
                stale = Some(*read);
                Some((Some(figures), None))
            }
            Some(Scraped::Failed) => Some((None, None)),
            Some(Scraped::NotConfigured) | None => None,
        };
        if let Some((figures, children)) = part {
            self.counters
                .write_php_fpm(&mut w, self.name.as_deref(), figures, children);
        }
        let now = Instant::now();
        let (view, _) = self.queue_view(now);
        write_queue(&mut w, &view);
        self.keeper.write_metrics(&mut w);
        w.gauge("fastcgi_healthcheck_stuck", "1 while php-fpm made no progress for BUSY_GRACE while probes waited (what /fcgi-live fails as stuck).", u8::from(self.live.borrow().stuck(now)));
        self.counters.write_live(&mut w);
        if let Some((scraped, source)) = &scraped {
            w.gauge("fastcgi_healthcheck_status_page_configured", "0 when php-fpm answered STATUS_PATH with 404 at this scrape (pm.status_path is not set in the pool): the phpfpm_* figures are left out; else 1.", u8::from(!matches!(scraped, Scraped::NotConfigured)));
            let source = [("source", source.as_str())];
            w.family("fastcgi_healthcheck_status_page_stale", "gauge", "1 when the phpfpm_* figures are the last status page read, repeated because php-fpm is busy; 0 when read for this scrape. source: where the page was read: lane (the status lane, pm.status_listen), main (the pool's listener), fallback (the listener, because the lane refused or is missing).");
            w.sample(
                "fastcgi_healthcheck_status_page_stale",
                &source,
                u8::from(stale.is_some()),
            );
            if let Some(read) = stale {
                w.family(
                    "fastcgi_healthcheck_status_page_age_seconds",
                    "gauge",
                    "How old the repeated (stale) status page figures are; source as for fastcgi_healthcheck_status_page_stale.",
                );
                w.sample(
                    "fastcgi_healthcheck_status_page_age_seconds",
                    &source,
                    now.saturating_duration_since(read).as_secs(),
                );
            }
        }
    }
}

/// What a scrape got of the status page.
#[allow(clippy::large_enum_variant)] // one at a time, held by a scrape between no awaits
enum Scraped {
    /// The page, read for this scrape.
    Read(Rc<Status>),
    /// The figures of the last page, repeated while php-fpm is busy, and when it was read.
    Stale(Figures, Instant),
    /// Nothing: the page could not be read (`phpfpm_up 0`).
    Failed,
    /// php-fpm answered 404: it has no status page (`pm.status_path` unset). No `phpfpm_*`
    /// figures at all, as with `STATUS_PATH=off`: php-fpm is up, and `phpfpm_up 0` would page
    /// someone for a setting.
    NotConfigured,
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
        let at = (&destination, None);
        let pool = Pool::new(&config, None, at, &Requests::new(&config), None);
        let read = Instant::now();
        assert_eq!(queued(pool.queue_view(read)), (0, 0));
        let _waiting = UnixStream::connect(&path).unwrap();
        let _probe = pool.flight();
        let almost = read + QUEUE_VIEW_AGE - Duration::from_millis(1);
        assert_eq!(queued(pool.queue_view(almost)), (0, 0), "read again");
        assert_eq!(queued(pool.queue_view(read + QUEUE_VIEW_AGE)), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Our connections given up in php-fpm's queue stop counting as ours once a connection that
    /// started after them leaves the queue, whatever php-fpm answered it: a 404 or a malformed
    /// page moved the queue as a pong does. (They kept counting after any answer but a pong, so
    /// that a later timeout saw fewer others queued than there were.) Those that started after
    /// the answered one may still wait, and stay counted.
    #[test]
    fn any_answer_of_a_worker_clears_the_connections_given_up() {
        let dir = std::env::temp_dir().join(format!("fch-pool-moved-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("www.sock");
        // A listener that never accepts: each probe's connection waits in its queue.
        let _listener = UnixListener::bind(&path).unwrap();
        let env = |name: &str| match name {
            "TIMEOUT" => Some("100ms".into()),
            "BUSY_GRACE" => Some("60s".into()),
            _ => None,
        };
        let Ok(crate::config::Command::Serve(config)) = crate::config::parse(&[], env) else {
            panic!("config with TIMEOUT=100ms BUSY_GRACE=60s");
        };
        let destination = Destination::Unix(path.clone());
        let pool = Pool::new(
            &config,
            None,
            (&destination, None),
            &Requests::new(&config),
            None,
        );
        let timed_out = || {
            let (verdict, _, held) = smol::block_on(pool.probe.run_holding());
            assert_eq!(verdict.as_ref().map_err(|f| f.reason), Err(Reason::Timeout));
            assert!(
                held.is_some(),
                "a probe waiting for its answer is handed over"
            );
            let _ = pool.settle(&pool.probe, verdict, held, Instant::now(), true);
        };
        timed_out(); // kept
        timed_out(); // given up: one kept already
        assert_eq!(pool.keeper.ours(), 2);
        for reason in Reason::ALL.into_iter().filter(|reason| reason.answered()) {
            let answer = Err(Failure::new(reason, "an answer".to_owned()));
            let _ = pool.settle(&pool.probe, answer, None, Instant::now(), true);
            assert_eq!(pool.keeper.ours(), 1, "after {reason:?}: the kept one only");
            timed_out();
            assert_eq!(pool.keeper.ours(), 2);
        }
        // An answer to a probe that started before the one given up leaves it counted.
        let before = Instant::now();
        timed_out();
        assert_eq!(pool.keeper.ours(), 3);
        let _ = pool.settle(&pool.probe, Ok(()), None, before, true);
        assert_eq!(pool.keeper.ours(), 2, "the kept one and the last given up");
        // A failure that proves nothing of the queue leaves them counted.
        for reason in Reason::ALL.into_iter().filter(|reason| !reason.answered()) {
            let failure = Err(Failure::new(reason, "no answer".to_owned()));
            let _ = pool.settle(&pool.probe, failure, None, Instant::now(), true);
            assert_eq!(pool.keeper.ours(), 2, "after {reason:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
