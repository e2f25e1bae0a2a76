//! Respond: the answer to one request, as a function of the shared state and the request. It
//! routes, runs the probes (single-flight), reads the status page, renders the metrics, and
//! returns a [`Reply`]; it owns no socket, so it neither reads nor writes one.

use std::rc::Rc;
use std::time::Instant;

use crate::config::{Config, ProcessMetrics};
use crate::probe::coalesce::{Coalescer, Source};
use crate::probe::report::Reporter;
use crate::probe::{Failure, Probe, Verdict};
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
    pub(crate) metrics: Metrics,
    ok: http::Canned,
    not_found: http::Canned,
    not_allowed: http::Canned,
    fail_status: u16,
    /// Whether a status page is configured (`STATUS_PATH` is not `off`).
    status_on: bool,
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
        }
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
                let (verdict, answer) = probe.run_keeping_answer().await;
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
        }
        page
    }
}

impl Probing {
    /// One ping, logged.
    async fn ping(&self) -> Verdict {
        let started = Instant::now();
        let (verdict, answer) = self.probe.run_keeping_answer().await;
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
        && matches!(head.route, Route::Ping | Route::Status | Route::Metrics)
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
            let page = match p.status_on {
                true => Some(p.status_page(p.metrics_full).await),
                false => None,
            };
            if let Some(Err(_)) = page {
                p.metrics.scrape_failed();
            }
            let open = shared.table.open();
            let page = page
                .as_ref()
                .map(|page| page.as_ref().map(|status| &**status));
            Reply::Metrics(metrics::render(&p.metrics, open, page))
        }
        (Route::Ping, _) => {
            let started = Instant::now();
            let (verdict, source) = p.ping.run(|| p.ping()).await;
            p.metrics.record_ping(&verdict, source, started.elapsed());
            match verdict {
                Ok(()) => Reply::Canned(&p.ok),
                Err(failure) => Reply::Text(p.fail_status, format!("{failure}\n")),
            }
        }
    }
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
