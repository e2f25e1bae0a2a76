//! Respond: the answer to one request, as a function of the shared state and the request. It
//! routes, runs the probes (single-flight), reads the status page, renders the metrics, and
//! returns a [`Reply`]; it owns no socket, so it neither reads nor writes one.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use crate::config::{Config, ProcessMetrics};
use crate::os::listen_queue::View;
use crate::probe::busy::{self, Progress};
use crate::probe::coalesce::{Coalescer, Source};
use crate::probe::report::Reporter;
use crate::probe::{Failure, Held, Probe, Reason, Verdict};
use crate::proto::http::{self, Head, Method, Route};
use crate::proto::metrics::{self, Metrics};
use crate::proto::status::{self, Status};

use super::Shared;

/// The probing concern of the server: the probes, their single-flight, and what they count.
pub(crate) struct Probing {
    probe: Probe,
    ping: Coalescer<Verdict>,
    /// The log of the ping's outcomes (throttled).
    ping_log: Reporter,
    status_probe: Probe,
    status_log: Reporter,
    /// The status page is shared by concurrent requests; each applies its own thresholds.
    /// Shared as `Rc`: a waiter gets the page without a copy (a full page of 1,000 children is
    /// hundreds of KB).
    status_page: Coalescer<Result<Rc<Status>, Failure>>,
    /// The full status page (`?full`), read only when a threshold or `PROCESS_METRICS` needs
    /// its per-process part; shared like `status_page`.
    full_probe: Probe,
    full_page: Coalescer<Result<Rc<Status>, Failure>>,
    /// Whether `/metrics` reads the full page (`PROCESS_METRICS` is not `off`).
    metrics_full: bool,
    metrics: Metrics,
    ok: http::Canned,
    not_found: http::Canned,
    not_allowed: http::Canned,
    fail_status: u16,
    /// Whether a status page is configured (`STATUS_PATH` is not `off`).
    status_on: bool,
    /// When the pool last moved, the one kept connection, liveness (`/fcgi-live`).
    pub(crate) progress: Progress,
    /// The last status page of the kind `/metrics` reads (full or not) and when it was read,
    /// repeated (marked stale) while php-fpm is busy.
    last_page: RefCell<Option<(Rc<Status>, Instant)>>,
    /// `/fcgi-live` results: ok, then by [`Reason::ALL`].
    live_results: metrics::Results,
}

impl Probing {
    pub(crate) fn new(config: &Config, probe: Probe) -> Self {
        Self {
            probe,
            ping: Coalescer::new(config.coalesce, config.cache_ttl),
            ping_log: Reporter::new(),
            status_probe: Probe::status(config),
            status_log: Reporter::new(),
            status_page: Coalescer::new(config.coalesce, config.cache_ttl),
            full_probe: Probe::status_full(config),
            full_page: Coalescer::new(config.coalesce, config.cache_ttl),
            metrics_full: config.process_metrics != ProcessMetrics::Off,
            metrics: Metrics::new(config.process_metrics == ProcessMetrics::PerProcess),
            ok: http::Canned::new(200, "ok\n"),
            not_found: http::Canned::new(404, "not found\n"),
            not_allowed: http::Canned::new(405, "method not allowed\n"),
            fail_status: config.fail_status,
            status_on: config.status_path.is_some(),
            progress: Progress::new(config.busy_grace, Instant::now()),
            last_page: RefCell::new(None),
            live_results: metrics::Results::default(),
        }
    }

    /// The ping probe (the keeper reads kept connections with it).
    pub(crate) fn probe(&self) -> &Probe {
        &self.probe
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

    /// php-fpm's status page, fetched once for all concurrent requests (`/fcgi-status` with any
    /// thresholds, `/metrics`), and counted; `full`: the full page (`?full`), with its own
    /// single-flight.
    async fn status_page(&self, full: bool) -> Result<Rc<Status>, Failure> {
        let started = Instant::now();
        let (probe, flight) = match full {
            true => (&self.full_probe, &self.full_page),
            false => (&self.status_probe, &self.status_page),
        };
        let (page, source) = flight
            .run(|| async {
                let started = Instant::now();
                let (verdict, answer, held) = probe.run_holding().await;
                let verdict = self.settle(probe, verdict, held);
                let took = started.elapsed();
                self.status_log
                    .report(probe, &verdict, answer.as_ref(), took);
                probe.read_status(verdict, answer).map(Rc::new)
            })
            .await;
        self.metrics
            .record(metrics::Kind::Status, &page, source, started.elapsed());
        if let (Ok(page), Source::Ran) = (&page, source) {
            self.metrics.saw_pool(page);
            if full == self.metrics_full {
                *self.last_page.borrow_mut() = Some((Rc::clone(page), Instant::now()));
            }
        }
        page
    }

    /// The status page for `/metrics` (`None` when `STATUS_PATH=off`), and when it was read if it
    /// is the last one repeated (stale) because php-fpm is busy: at once while a probe connection
    /// of ours waits in php-fpm's queue (a page asked now would wait behind it), or after the
    /// page failed `busy`, `timeout` or `fcgi_overloaded`.
    async fn metrics_page(&self) -> (Option<Result<Rc<Status>, Failure>>, Option<Instant>) {
        if !self.status_on {
            return (None, None);
        }
        if self.progress.kept() > 0 {
            if let Some((last, read)) = self.last_page.borrow().clone() {
                return (Some(Ok(last)), Some(read));
            }
        }
        let page = self.status_page(self.metrics_full).await;
        if page.is_err() {
            self.metrics.scrape_failed();
        }
        match self.stale_page(&page) {
            Some((last, read)) => (Some(Ok(last)), Some(read)),
            None => (Some(page), None),
        }
    }

    /// For `/metrics` while php-fpm is busy (the page timed out or is `busy`): the last page
    /// read and its age, to be shown marked stale.
    fn stale_page(&self, page: &Result<Rc<Status>, Failure>) -> Option<(Rc<Status>, Instant)> {
        match page {
            Err(failure) if busy::waiting(failure.reason) => self.last_page.borrow().clone(),
            _ => None,
        }
    }
}

impl Probing {
    /// The ping through the single-flight (one FastCGI request for concurrent callers), counted.
    async fn shared_ping(&self) -> Verdict {
        let started = Instant::now();
        let (verdict, source) = self.ping.run(|| self.ping()).await;
        self.metrics
            .record_ping(&verdict, source, started.elapsed());
        verdict
    }

    /// `200 ok`, or `FAIL_STATUS` with the failure's line.
    fn verdict_reply(&self, verdict: Verdict) -> Reply<'_> {
        match verdict {
            Ok(()) => Reply::Canned(&self.ok),
            Err(failure) => Reply::Text(self.fail_status, format!("{failure}\n")),
        }
    }

    /// One ping, logged.
    async fn ping(&self) -> Verdict {
        let started = Instant::now();
        let (verdict, answer, held) = self.probe.run_holding().await;
        let verdict = self.settle(&self.probe, verdict, held);
        self.ping_log
            .report(&self.probe, &verdict, answer.as_ref(), started.elapsed());
        verdict
    }
}

/// The answer to one request: fixed bytes, or a status with a one-line text.
pub(crate) enum Reply<'a> {
    Canned(&'a http::Canned),
    Text(u16, String),
    Metrics(String),
}

/// Whether answering `head` may wait on php-fpm (so that answers queued before it are sent
/// first).
pub(crate) fn waits(head: &Head) -> bool {
    head.method != Method::Other
        && matches!(
            head.route,
            Route::Ping | Route::Live | Route::Status | Route::Metrics
        )
}

/// The reply to `head`.
pub(crate) async fn respond<'s>(shared: &'s Shared, head: &Head) -> Reply<'s> {
    let p = &shared.probing;
    match (head.route, head.method) {
        (Route::NotFound, _) => Reply::Canned(&p.not_found),
        (_, Method::Other) => Reply::Canned(&p.not_allowed),
        (Route::Health, _) => Reply::Canned(&p.ok),
        (Route::Status, _) if !p.status_on => Reply::Text(
            404,
            "not found: the status page is off (STATUS_PATH=off)\n".to_owned(),
        ),
        (Route::Status, _) => {
            match status::parse_thresholds(head.query.as_deref().unwrap_or_default()) {
                Err(message) => Reply::Text(400, format!("{message}\n")),
                Ok(thresholds) => match p.status_page(status::needs_processes(&thresholds)).await {
                    Ok(page) => {
                        let failed = status::evaluate(&page, &thresholds);
                        let code = if failed.is_empty() {
                            200
                        } else {
                            p.fail_status
                        };
                        Reply::Text(code, status::render(&page, &failed))
                    }
                    Err(failure) => Reply::Text(p.fail_status, format!("{failure}\n")),
                },
            }
        }
        (Route::Metrics, _) => {
            let (page, stale) = p.metrics_page().await;
            let open = shared.table.open();
            let page = page
                .as_ref()
                .map(|page| page.as_ref().map(|status| &**status));
            let mut text = metrics::render(&p.metrics, open, page);
            busy_metrics(p, &mut text, stale, p.status_on);
            Reply::Metrics(text)
        }
        (Route::Live, _) => {
            // The ping, shared with `/fcgi-ping` (and counted as one), judged for liveness.
            let verdict = p.shared_ping().await;
            let live = p.progress.live(&verdict, Instant::now());
            p.live_results.record(&live);
            p.verdict_reply(live)
        }
        (Route::Ping, _) => p.verdict_reply(p.shared_ping().await),
    }
}

/// Appends the busy/stuck figures to a `/metrics` text: the kernel's view of the listen queue
/// (read now), the kept connection and the queue waits, liveness, and whether the status page
/// figures are stale (`stale`: when the page shown was read).
fn busy_metrics(p: &Probing, out: &mut String, stale: Option<Instant>, status_on: bool) {
    let view = p.probe.listen_queue();
    p.progress.unavailable(&view);
    let now = Instant::now();
    let figures = metrics::BusyFigures {
        queue: match &view {
            View::Seen(queue) => Ok((queue.queued, queue.backlog)),
            View::Unavailable(why) => Err(why),
        },
        waits: &p.progress.waits,
        keeping: p.progress.kept() > 0,
        stuck: p.progress.stuck(now),
        live: &p.live_results,
        stale_age: match (status_on, stale) {
            (false, _) => None,
            (true, None) => Some(None),
            (true, Some(read)) => Some(Some(now.saturating_duration_since(read))),
        },
    };
    metrics::render_busy(out, &figures);
}

/// Appends `reply` to `out` as an HTTP response.
pub(crate) fn render(out: &mut Vec<u8>, reply: Reply<'_>, head_only: bool, close: bool) {
    match reply {
        Reply::Canned(canned) => out.extend_from_slice(canned.bytes(head_only, close)),
        Reply::Text(status, body) => {
            let response = http::Response {
                status,
                body: &body,
                head_only,
                close,
            };
            http::render(out, response);
        }
        Reply::Metrics(body) => {
            let response = http::Response {
                status: 200,
                body: &body,
                head_only,
                close,
            };
            http::render_typed(out, response, http::PROMETHEUS_TEXT);
        }
    }
}
