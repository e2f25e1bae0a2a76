//! Respond: the answer to one request, as a function of the shared state and the request. It
//! routes (to one pool, or to all of them), runs the probes (single-flight), reads the status
//! pages, renders the metrics, and returns a [`Reply`]; it owns no socket, so it neither reads
//! nor writes one.

use std::rc::Rc;

use smol::LocalExecutor;

use crate::config::{Config, ProcessMetrics};
use crate::join::join_all;
use crate::probe::{Failure, Verdict};
use crate::proto::http::{self, Head, Method, Route};
use crate::proto::metrics::{self, Writer};
use crate::proto::status::{self, Status, Threshold};

use super::pool::{Pool, ENOENT};
use super::pools::{Lookup, PoolSet};
use super::Shared;

/// The probing concern of the server: the pools and the fixed answers.
pub(crate) struct Probing {
    pub(crate) pools: PoolSet,
    ok: http::Canned,
    not_found: http::Canned,
    not_allowed: http::Canned,
    fail_status: u16,
    /// Whether a status page is configured (`STATUS_PATH` is not `off`).
    status_on: bool,
    /// Whether `/metrics` writes php-fpm_exporter's per-child series.
    per_process: bool,
}

impl Probing {
    pub(crate) fn new(config: &Config, ex: &Rc<LocalExecutor<'static>>) -> Self {
        Self {
            pools: PoolSet::new(config, ex),
            ok: http::Canned::new(200, "ok\n"),
            not_found: http::Canned::new(404, "not found\n"),
            not_allowed: http::Canned::new(405, "method not allowed\n"),
            fail_status: config.fail_status,
            status_on: config.status_path.is_some(),
            per_process: config.process_metrics == ProcessMetrics::PerProcess,
        }
    }

    /// `200 ok`, or `FAIL_STATUS` with the failure's line.
    fn verdict_reply(&self, verdict: Verdict) -> Reply<'_> {
        match verdict {
            Ok(()) => Reply::Canned(&self.ok),
            Err(failure) => self.text(self.fail_status, format!("{failure}\n")),
        }
    }

    /// The verdicts of every pool as one reply: `200 ok` when all are healthy, else
    /// `FAIL_STATUS` with one line per failing pool, `NAME reason: detail`.
    /// A pool of a `POOLS=dir:` directory whose socket was missing (`ENOENT`) is left out:
    /// php-fpm dropped it on a reload (the discovery task is asked to re-read the directory).
    fn verdicts_reply(&self, pools: &[Rc<Pool>], verdicts: Vec<Verdict>) -> Reply<'_> {
        let (mut body, mut dropped) = (String::new(), 0usize);
        for (pool, verdict) in pools.iter().zip(verdicts) {
            if let Err(failure) = verdict {
                if failure.errno == Some(ENOENT) && self.pools.discovered() {
                    dropped = dropped.saturating_add(1);
                    continue;
                }
                let name = pool.name().unwrap_or_default();
                body.push_str(&format!("{name} {failure}\n"));
            }
        }
        if dropped == pools.len() {
            return self.text(self.fail_status, format!("{}\n", self.pools.none_found()));
        }
        match body.is_empty() {
            true => Reply::Canned(&self.ok),
            false => self.text(self.fail_status, body),
        }
    }

    fn text(&self, status: u16, body: String) -> Reply<'_> {
        Reply::Text {
            status,
            body,
            kind: http::PLAIN_TEXT,
        }
    }

    /// The pool or pools a route asks: `/fcgi-ping/NAME` one, `/fcgi-ping` the one pool of
    /// `DESTINATION` or every pool of `POOLS`; else the reply (not found, unknown pool).
    fn asked(&self, name: Option<&str>) -> Result<Asked, Reply<'_>> {
        match (name, self.pools.named()) {
            (None, false) => self
                .pools
                .one()
                .map(Asked::One)
                .ok_or(Reply::Canned(&self.not_found)),
            (Some(_), false) => Err(Reply::Canned(&self.not_found)),
            (None, true) => {
                let pools = self.pools.all();
                match pools.is_empty() {
                    // No pool found is no healthy pool.
                    true => {
                        Err(self.text(self.fail_status, format!("{}\n", self.pools.none_found())))
                    }
                    false => Ok(Asked::All(pools)),
                }
            }
            (Some(name), true) => match self.pools.get(name) {
                Lookup::Found(pool) => Ok(Asked::One(pool)),
                Lookup::Unknown(known) => {
                    let shown = match crate::config::pool_name_ok(name) {
                        true => format!("{name:?}"),
                        false => "(not a pool name)".to_owned(),
                    };
                    let known = match known.is_empty() {
                        true => "none (POOLS finds no pool)".to_owned(),
                        false => known.join(", "),
                    };
                    Err(self.text(
                        404,
                        format!("unknown pool {shown}: known pools are {known}\n"),
                    ))
                }
            },
        }
    }

    /// The status page of one pool or all, and the ping or liveness of all pools.
    async fn pooled(&self, route: Route, asked: Asked, head: &Head) -> Reply<'_> {
        if route == Route::Status {
            let query = head.query.as_deref().unwrap_or_default();
            let thresholds = match status::parse_thresholds(query) {
                Ok(thresholds) => thresholds,
                Err(message) => return self.text(400, format!("{message}\n")),
            };
            return match asked {
                Asked::One(pool) => {
                    let page = pool.status_page(status::needs_processes(&thresholds)).await;
                    status_reply(self, &pool, page, &thresholds)
                }
                Asked::All(pools) => self.statuses(&pools, &thresholds).await,
            };
        }
        let pools = match asked {
            Asked::One(pool) => Rc::from([pool]),
            Asked::All(pools) => pools,
        };
        let verdicts = match route {
            Route::Live => join_all(pools.iter().map(|pool| pool.live()).collect()).await,
            _ => join_all(pools.iter().map(|pool| pool.ping()).collect()).await,
        };
        self.verdicts_reply(&pools, verdicts)
    }

    /// `/fcgi-status` of every pool: `200` when every pool's page holds every threshold, else
    /// `FAIL_STATUS`; the body has one line per pool (`NAME ok`, its failed thresholds, or why
    /// its page could not be read), then each page read.
    async fn statuses(&self, pools: &[Rc<Pool>], thresholds: &[Threshold]) -> Reply<'_> {
        let full = status::needs_processes(thresholds);
        let pages = join_all(pools.iter().map(|pool| pool.status_page(full)).collect()).await;
        let (mut lines, mut pages_text, mut failed_any) = (String::new(), String::new(), false);
        for (pool, page) in pools.iter().zip(&pages) {
            let name = pool.name().unwrap_or_default();
            match page {
                Ok(page) => {
                    let queued = status::needs_queued(thresholds).then(|| pool.queued());
                    let failed = status::evaluate(page, queued.as_ref(), thresholds);
                    failed_any |= !failed.is_empty();
                    match failed.is_empty() {
                        true => lines.push_str(&format!("{name} ok\n")),
                        false => lines.push_str(&format!("{name} {}\n", failed.join("; "))),
                    }
                    pages_text.push_str(&format!("\n[{name}]\n"));
                    status::render_fields(&mut pages_text, page, queued.as_ref());
                }
                Err(failure) => {
                    failed_any = true;
                    lines.push_str(&format!("{name} {failure}\n"));
                }
            }
        }
        lines.push_str(&pages_text);
        let code = if failed_any { self.fail_status } else { 200 };
        self.text(code, lines)
    }

    /// `/metrics`: this process's figures, then each pool's (every pool read concurrently, each
    /// under its own `TIMEOUT`), joined family by family.
    async fn metrics(&self, open: usize) -> String {
        let mut global = String::with_capacity(512);
        {
            let mut w = Writer::new(&mut global, None);
            w.family(
                "fastcgi_healthcheck_build_info",
                "gauge",
                "The running version.",
            );
            w.sample(
                "fastcgi_healthcheck_build_info",
                &[("version", env!("CARGO_PKG_VERSION"))],
                1,
            );
            w.gauge(
                "fastcgi_healthcheck_open_connections",
                "HTTP connections open now.",
                open,
            );
        }
        if let Some(pool) = self.pools.one() {
            let mut out = global;
            out.reserve(4096);
            pool.write_metrics(&mut out, self.status_on, self.per_process)
                .await;
            return out;
        }
        let pools = self.pools.all();
        Writer::new(&mut global, None).gauge(
            "fastcgi_healthcheck_pools",
            "Pools this process probes (POOLS).",
            pools.len(),
        );
        let parts = join_all(
            pools
                .iter()
                .map(|pool| async move {
                    let mut out = String::with_capacity(4096);
                    pool.write_metrics(&mut out, self.status_on, self.per_process)
                        .await;
                    out
                })
                .collect(),
        )
        .await;
        let mut all = Vec::with_capacity(parts.len().saturating_add(1));
        all.push(global);
        all.extend(parts);
        metrics::merge(&all)
    }
}

/// The pool or pools a request asks.
enum Asked {
    One(Rc<Pool>),
    All(Rc<[Rc<Pool>]>),
}

/// The answer to one request: fixed bytes, or a status with a text of a content type.
pub(crate) enum Reply<'a> {
    Canned(&'a http::Canned),
    Text {
        status: u16,
        body: String,
        kind: &'static str,
    },
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
        // A pool's path without POOLS is no path of ours, whatever the method.
        _ if head.pool.is_some() && !p.pools.named() => Reply::Canned(&p.not_found),
        (_, Method::Other) => Reply::Canned(&p.not_allowed),
        (Route::Health, _) => Reply::Canned(&p.ok),
        (Route::Metrics, _) => Reply::Text {
            status: 200,
            body: Box::pin(p.metrics(shared.table.open())).await,
            kind: http::PROMETHEUS_TEXT,
        },
        (Route::Status, _) if !p.status_on => p.text(
            404,
            "not found: the status page is off (STATUS_PATH=off)\n".to_owned(),
        ),
        (route, _) => {
            let asked = match p.asked(head.pool.as_deref()) {
                Ok(asked) => asked,
                Err(reply) => return reply,
            };
            match (route, asked) {
                (Route::Live, Asked::One(pool)) => p.verdict_reply(pool.live().await),
                (Route::Ping, Asked::One(pool)) => p.verdict_reply(pool.ping().await),
                // Off the hot path, boxed: the connection's future stays small.
                (route, asked) => Box::pin(p.pooled(route, asked, head)).await,
            }
        }
    }
}

/// `/fcgi-status` of one pool: its page (and the kernel's queue, when a threshold asks for it)
/// and the thresholds that failed.
fn status_reply<'s>(
    p: &'s Probing,
    pool: &Pool,
    page: Result<Rc<Status>, Failure>,
    thresholds: &[Threshold],
) -> Reply<'s> {
    match page {
        Ok(page) => {
            let queued = status::needs_queued(thresholds).then(|| pool.queued());
            let failed = status::evaluate(&page, queued.as_ref(), thresholds);
            let code = if failed.is_empty() {
                200
            } else {
                p.fail_status
            };
            p.text(code, status::render(&page, queued.as_ref(), &failed))
        }
        Err(failure) => p.text(p.fail_status, format!("{failure}\n")),
    }
}

/// Appends `reply` to `out` as an HTTP response.
pub(crate) fn render(out: &mut Vec<u8>, reply: Reply<'_>, head_only: bool, close: bool) {
    match reply {
        Reply::Canned(canned) => out.extend_from_slice(canned.bytes(head_only, close)),
        Reply::Text { status, body, kind } => {
            let response = http::Response {
                status,
                body: &body,
                head_only,
                close,
            };
            http::render_typed(out, response, kind);
        }
    }
}
