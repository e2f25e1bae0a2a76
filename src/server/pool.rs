//! One pool: its probes, their single-flight and cache, what they count, and whether it moves.
//! A pool owns no socket but its probes' own; [`super::pools`] holds every pool of the process.
//! Its status page is read through its status lane when it has one ([`crate::probe::lane`]),
//! else (or when the lane refuses or is missing) through its listener.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use log::warn;

use crate::config::{Config, Destination, ProcessMetrics};
use crate::os::listen_queue::View;
use crate::probe::busy::{self, Progress};
use crate::probe::coalesce::{Coalescer, Via};
use crate::probe::counters::{Counters, ProbeKind};
use crate::probe::lane::{self, Lane, Source};
use crate::probe::report::Reporter;
use crate::probe::{Failure, Held, Probe, Reason, Verdict};
use crate::proto::metrics::{Figures, Writer};
use crate::proto::status::Status;

/// A status page shared by concurrent requests, each applying its own thresholds; shared as
/// `Rc`, so that a waiter gets the page without a copy (a full page of 1,000 children is hundreds
/// of KB).
type Page = Result<Rc<Status>, Failure>;

/// The figures of the last status page of the kind `/metrics` reads: when it was read, and where.
type LastPage = (Figures, Instant, Source);

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
    /// When the pool last moved, the one kept connection, liveness (`/fcgi-live`).
    progress: Progress,
    /// The figures of the last status page of the kind `/metrics` reads (full or not), when and
    /// where it was read, repeated (marked stale) while php-fpm is busy: numbers, not the page.
    last_page: RefCell<Option<LastPage>>,
    /// Whether php-fpm's last answer for the status page was `not_configured`, said once in the
    /// log (again only after a page was read since).
    not_configured: Cell<bool>,
}

impl Pool {
    /// The pool `name` at `destination` (`None`: the one pool, `config.destination`), with its
    /// status lane `lane`. With a lane the page reads are single-flight whatever `COALESCE`
    /// says: the lane's two children would queue more.
    pub(crate) fn new(
        config: &Config,
        name: Option<String>,
        destination: &Destination,
        lane: Option<&Destination>,
    ) -> Self {
        let pages_coalesce = config.coalesce || lane.is_some();
        Self {
            name,
            probe: Probe::ping_at(config, destination),
            ping: Coalescer::new(config.coalesce, config.cache_ttl),
            ping_log: Reporter::new(),
            status_probe: Probe::status_at(config, destination, false),
            status_log: Reporter::new(),
            status_page: Coalescer::new(pages_coalesce, config.cache_ttl),
            full_probe: Probe::status_at(config, destination, true),
            full_page: Coalescer::new(pages_coalesce, config.cache_ttl),
            lane: lane.map(|lane| Box::new(Lane::new(config, lane))),
            metrics_full: config.process_metrics != ProcessMetrics::Off,
            counters: Counters::default(),
            progress: Progress::new(config.busy_grace, Instant::now()),
            last_page: RefCell::new(None),
            not_configured: Cell::new(false),
        }
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

    /// The keeper of this pool's busy probe connection (see [`Progress::keep`]): runs until
    /// dropped.
    pub(crate) async fn keep(&self) {
        self.progress.keep(&self.probe).await;
    }

    /// After a probe of `probe`: a healthy answer is progress; a timeout becomes `busy` when the
    /// kernel shows others queued, and its connection is offered to the keeper. Only a failed
    /// probe reads the kernel's view.
    fn settle(&self, probe: &Probe, verdict: Verdict, held: Option<Held>) -> Verdict {
        let failure = match verdict {
            Ok(()) => {
                self.progress.moved(Instant::now());
                return Ok(());
            }
            Err(failure) if failure.reason == Reason::Timeout => failure,
            Err(failure) => {
                self.progress.waited(busy::waiting(failure.reason));
                return Err(failure);
            }
        };
        let view = probe.listen_queue();
        self.progress.unavailable(&view);
        let own = u64::from(held.is_some()).saturating_add(self.progress.ours());
        let failure = busy::classify(failure, &view, own, probe.timeout());
        self.progress.waited(true);
        self.progress.hold(held);
        Err(failure)
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
        let (verdict, answer, held) = self.probe.run_holding().await;
        let verdict = self.settle(&self.probe, verdict, held);
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
        let live = self.progress.live(&verdict, Instant::now());
        self.counters.record_live(&live);
        live
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
                let (verdict, answer, held) = probe.run_holding().await;
                let verdict = self.settle(probe, verdict, held);
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
    /// connections there (the kept one, those given up): the figure of a
    /// `max-queued-connections` threshold.
    pub(crate) fn queued(&self) -> Result<u64, String> {
        let view = self.probe.listen_queue();
        self.progress.unavailable(&view);
        view.queued()
            .map(|queued| queued.saturating_sub(self.progress.ours()))
    }

    /// The status page for `/metrics` and where it was read: read now, or the last one's
    /// figures repeated (stale) because php-fpm is busy: at once while a probe connection of ours
    /// waits in the listener's queue (a page asked there now would wait behind it) and no lane
    /// may answer instead, or after the page failed `busy`, `timeout` or `fcgi_overloaded`.
    async fn metrics_page(&self) -> (Scraped, Source) {
        let lane_may_answer = self.lane.as_ref().is_some_and(|lane| lane.may_answer());
        if self.progress.kept() > 0 && !lane_may_answer {
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
        let stale = match busy::waiting(failure.reason) {
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
        let view: View = self.probe.listen_queue();
        self.progress.unavailable(&view);
        let now = Instant::now();
        self.progress.write_metrics(&mut w, &view, now);
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
