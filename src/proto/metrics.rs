//! Counters of what the server did, and their Prometheus text exposition (format 0.0.4), with
//! php-fpm's pool figures named as php-fpm_exporter names them so that existing dashboards work.
//!
//! Recording is a few integer additions on the request path; [`render`] is pure.

use std::cell::{Cell, RefCell};
use std::fmt::Write;
use std::time::Duration;

use crate::probe::busy::{Waits, WAIT_BUCKETS};
use crate::probe::coalesce::Source;
use crate::probe::{Failure, Reason, Verdict};
use crate::proto::status::{decimal, Process, Processes, Status};

/// Which probe a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `/fcgi-ping`.
    Ping,
    /// `/fcgi-status` and `/metrics` (the status page).
    Status,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ping => "ping",
            Kind::Status => "status",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Ping => 0,
            Kind::Status => 1,
        }
    }
}

/// Upper bounds of the probe duration histogram: microseconds, and the `le` label in seconds
/// (integers only: no floating-point code in the binary). 0.5 and 0.75 tell a probe near the
/// default 800 ms `TIMEOUT` (the `FastcgiHealthcheckProbeLatencyNearTimeout` alert) from a merely
/// slow one.
pub const BUCKETS: [(u64, &str); 11] = [
    (1_000, "0.001"),
    (2_500, "0.0025"),
    (5_000, "0.005"),
    (10_000, "0.01"),
    (25_000, "0.025"),
    (50_000, "0.05"),
    (100_000, "0.1"),
    (250_000, "0.25"),
    (500_000, "0.5"),
    (750_000, "0.75"),
    (1_000_000, "1"),
];

/// One probe kind's figures.
#[derive(Debug, Default)]
struct Probes {
    /// Healthy results.
    ok: Cell<u64>,
    /// Failures, by [`Reason::ALL`] order.
    failed: [Cell<u64>; Reason::ALL.len()],
    /// Durations: counts per bucket (not cumulative), then the sum in microseconds.
    buckets: [Cell<u64>; BUCKETS.len()],
    over: Cell<u64>,
    sum_micros: Cell<u64>,
    waited: Cell<u64>,
    cached: Cell<u64>,
}

/// What the server counts.
#[derive(Debug, Default)]
pub struct Metrics {
    probes: [Probes; 2],
    /// The pool named by the last status page read (label-safe), so that `phpfpm_up` and
    /// `phpfpm_scrape_failures` keep their `pool` label while php-fpm is down.
    pool: RefCell<Option<String>>,
    /// `/metrics` scrapes whose status page could not be read.
    scrape_failures: Cell<u64>,
    /// Whether php-fpm_exporter's per-child series are rendered (`PROCESS_METRICS=per-process`).
    per_process: bool,
    /// Full status pages read whose per-process part was truncated.
    truncated_pages: Cell<u64>,
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().saturating_add(by));
}

impl Metrics {
    /// Counters at zero; `per_process`: render php-fpm_exporter's per-child series when a full
    /// status page is given.
    pub fn new(per_process: bool) -> Self {
        Self {
            per_process,
            ..Self::default()
        }
    }

    /// Counts one answer given from a probe of `kind`: its result and duration when this caller
    /// ran it, a coalesced wait or cache hit otherwise.
    pub(crate) fn record<T>(
        &self,
        kind: Kind,
        result: &Result<T, Failure>,
        source: Source,
        took: Duration,
    ) {
        let Some(probes) = self.probes.get(kind.index()) else {
            return;
        };
        match source {
            Source::Waited => return bump(&probes.waited, 1),
            Source::Cached => return bump(&probes.cached, 1),
            Source::Ran => {}
        }
        match result {
            Ok(_) => bump(&probes.ok, 1),
            Err(failure) => {
                let index = Reason::ALL.iter().position(|r| *r == failure.reason);
                if let Some(cell) = index.and_then(|i| probes.failed.get(i)) {
                    bump(cell, 1);
                }
            }
        }
        match BUCKETS
            .iter()
            .position(|(bound, _)| took <= Duration::from_micros(*bound))
            .and_then(|i| probes.buckets.get(i))
        {
            Some(cell) => bump(cell, 1),
            None => bump(&probes.over, 1),
        }
        bump(
            &probes.sum_micros,
            u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
        );
    }

    /// Remembers the pool a status page names (no allocation while it stays the same).
    pub fn saw_pool(&self, page: &Status) {
        let name = page.text("pool").unwrap_or_default();
        let mut pool = self.pool.borrow_mut();
        if pool.as_deref() != Some(name) || !name.chars().all(label_safe) {
            *pool = Some(label_value(name));
        }
        if page.processes.as_ref().is_some_and(|p| p.truncated) {
            bump(&self.truncated_pages, 1);
        }
    }

    /// Counts a `/metrics` scrape whose status page could not be read.
    pub fn scrape_failed(&self) {
        bump(&self.scrape_failures, 1);
    }

    /// Counts a ping verdict (see [`Metrics::record`]).
    pub fn record_ping(&self, verdict: &Verdict, source: Source, took: Duration) {
        self.record(Kind::Ping, verdict, source, took);
    }
}

/// The exposition: this process's figures, and php-fpm's when `status` is given (`Some(Err)`:
/// the page could not be read, so `phpfpm_up 0`).
pub fn render(
    metrics: &Metrics,
    open_connections: usize,
    status: Option<Result<&Status, &Failure>>,
) -> String {
    let mut out = String::with_capacity(4096);
    let _ = writeln!(
        out,
        "# HELP fastcgi_healthcheck_build_info The running version."
    );
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_build_info gauge");
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );

    let _ = writeln!(out, "# HELP fastcgi_healthcheck_probes_total FastCGI probes by kind and result (ok, or the failure reason).");
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_probes_total counter");
    for kind in [Kind::Ping, Kind::Status] {
        let Some(p) = metrics.probes.get(kind.index()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_probes_total{{probe=\"{}\",result=\"ok\"}} {}",
            kind.label(),
            p.ok.get()
        );
        for (reason, count) in Reason::ALL.iter().zip(&p.failed) {
            let _ = writeln!(
                out,
                "fastcgi_healthcheck_probes_total{{probe=\"{}\",result=\"{reason}\"}} {}",
                kind.label(),
                count.get()
            );
        }
    }

    let _ = writeln!(out, "# HELP fastcgi_healthcheck_probe_duration_seconds Duration of the FastCGI probes this process ran.");
    let _ = writeln!(
        out,
        "# TYPE fastcgi_healthcheck_probe_duration_seconds histogram"
    );
    for kind in [Kind::Ping, Kind::Status] {
        let Some(p) = metrics.probes.get(kind.index()) else {
            continue;
        };
        let mut cumulative = 0u64;
        for ((_, bound), count) in BUCKETS.iter().zip(&p.buckets) {
            cumulative = cumulative.saturating_add(count.get());
            let _ = writeln!(out, "fastcgi_healthcheck_probe_duration_seconds_bucket{{probe=\"{}\",le=\"{bound}\"}} {cumulative}", kind.label());
        }
        let total = cumulative.saturating_add(p.over.get());
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_probe_duration_seconds_bucket{{probe=\"{}\",le=\"+Inf\"}} {total}",
            kind.label()
        );
        let micros = p.sum_micros.get();
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_probe_duration_seconds_sum{{probe=\"{}\"}} {}.{:06}",
            kind.label(),
            micros / 1_000_000,
            micros % 1_000_000
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_probe_duration_seconds_count{{probe=\"{}\"}} {total}",
            kind.label()
        );
    }

    let _ = writeln!(out, "# HELP fastcgi_healthcheck_coalesced_total Requests answered by another request's probe (waited) or a cached verdict (cached).");
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_coalesced_total counter");
    for kind in [Kind::Ping, Kind::Status] {
        let Some(p) = metrics.probes.get(kind.index()) else {
            continue;
        };
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_coalesced_total{{probe=\"{}\",source=\"waited\"}} {}",
            kind.label(),
            p.waited.get()
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_coalesced_total{{probe=\"{}\",source=\"cached\"}} {}",
            kind.label(),
            p.cached.get()
        );
    }

    let _ = writeln!(
        out,
        "# HELP fastcgi_healthcheck_open_connections HTTP connections open now."
    );
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_open_connections gauge");
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_open_connections {open_connections}"
    );

    if let Some(status) = status {
        render_php_fpm(&mut out, metrics, status);
    }
    out
}

/// php-fpm's figures, named as php-fpm_exporter names them. Its counters without a `_total`
/// suffix are typed `gauge` here: the names are what dashboards query (and `rate()` works on a
/// gauge), and the exposition passes `promtool check metrics` without lint problems.
const PHP_FPM_METRICS: [(&str, &str, &str, &str); 11] = [
    ("phpfpm_start_since", "gauge", "start since", "Number of seconds since FPM has started."),
    ("phpfpm_accepted_connections", "gauge", "accepted conn", "The number of requests accepted by the pool."),
    ("phpfpm_listen_queue", "gauge", "listen queue", "The number of requests in the queue of pending connections."),
    ("phpfpm_max_listen_queue", "gauge", "max listen queue", "The maximum number of requests in the queue of pending connections since FPM has started."),
    ("phpfpm_listen_queue_length", "gauge", "listen queue len", "The size of the socket queue of pending connections."),
    ("phpfpm_idle_processes", "gauge", "idle processes", "The number of idle processes."),
    ("phpfpm_active_processes", "gauge", "active processes", "The number of active processes."),
    ("phpfpm_total_processes", "gauge", "total processes", "The number of idle + active processes."),
    ("phpfpm_max_active_processes", "gauge", "max active processes", "The maximum number of active processes since FPM has started."),
    ("phpfpm_max_children_reached", "gauge", "max children reached", "The number of times, the process limit has been reached, when pm tries to start more children."),
    ("phpfpm_slow_requests", "gauge", "slow requests", "The number of requests that exceeded your 'request_slowlog_timeout' value."),
];

/// Whether `c` may stand in a label value as is.
fn label_safe(c: char) -> bool {
    c != '\\' && c != '"' && !c.is_control()
}

/// `text` as a label value: backslash, quote and control characters become `_` (then it needs
/// no escaping).
fn label_value(text: &str) -> String {
    text.chars()
        .map(|c| if label_safe(c) { c } else { '_' })
        .collect()
}

fn render_php_fpm(out: &mut String, metrics: &Metrics, status: Result<&Status, &Failure>) {
    // php-fpm_exporter labels every figure with its pool: this page's, or while php-fpm is down
    // the last one seen (so that `phpfpm_up{pool="www"} == 0` fires); before any page was read
    // there is no pool to name.
    let pool = match status {
        Ok(page) => Some(label_value(page.text("pool").unwrap_or_default())),
        Err(_) => metrics.pool.borrow().clone(),
    };
    let label = |out: &mut String, name: &str| {
        let _ = match pool.as_deref() {
            Some(pool) => write!(out, "{name}{{pool=\"{pool}\"}}"),
            None => write!(out, "{name}"),
        };
    };
    let _ = writeln!(out, "# HELP phpfpm_up Could PHP-FPM's status page be read?");
    let _ = writeln!(out, "# TYPE phpfpm_up gauge");
    label(out, "phpfpm_up");
    let _ = writeln!(out, " {}", u8::from(status.is_ok()));
    // php-fpm_exporter's name and type (a counter without `_total`: dashboards query this name).
    let _ = writeln!(
        out,
        "# HELP phpfpm_scrape_failures The number of failures scraping from PHP-FPM."
    );
    let _ = writeln!(out, "# TYPE phpfpm_scrape_failures counter");
    label(out, "phpfpm_scrape_failures");
    let _ = writeln!(out, " {}", metrics.scrape_failures.get());
    let Ok(page) = status else {
        return;
    };
    for (name, kind, field, help) in PHP_FPM_METRICS {
        if let Some(value) = page.number(field) {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            label(out, name);
            let _ = writeln!(out, " {value}");
        }
    }
    if let Some(processes) = &page.processes {
        let pool = pool.unwrap_or_default();
        render_process_aggregates(out, metrics, &pool, page, processes);
        if metrics.per_process {
            render_per_process(out, &pool, processes);
        }
    }
}

/// The aggregates of the full status page's per-process part, under our names, labelled with
/// the pool only (no process id): what `PROCESS_METRICS=aggregates` adds.
fn render_process_aggregates(
    out: &mut String,
    metrics: &Metrics,
    pool: &str,
    page: &Status,
    processes: &Processes,
) {
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_processes Children of the php-fpm pool by state, counted in its full status page (other: a state php-fpm does not write today).");
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_processes gauge");
    for (state, count) in processes.by_state() {
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_processes{{pool=\"{pool}\",state=\"{state}\"}} {count}"
        );
    }
    if let Some(micros) = processes.oldest_request_micros() {
        let _ = writeln!(out, "# HELP fastcgi_healthcheck_oldest_request_seconds How long the oldest request in progress has run (0: no child busy); a stuck worker shows here.");
        let _ = writeln!(
            out,
            "# TYPE fastcgi_healthcheck_oldest_request_seconds gauge"
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_oldest_request_seconds{{pool=\"{pool}\"}} {}",
            decimal(micros, 1_000_000)
        );
    }
    if let Some(bytes) = processes.largest_last_request_memory() {
        let _ = writeln!(out, "# HELP fastcgi_healthcheck_last_request_memory_max_bytes The largest peak memory of a child's last request, in the full status page.");
        let _ = writeln!(
            out,
            "# TYPE fastcgi_healthcheck_last_request_memory_max_bytes gauge"
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_last_request_memory_max_bytes{{pool=\"{pool}\"}} {bytes}"
        );
    }
    if let Some(hundredths) = processes.largest_last_request_cpu() {
        let _ = writeln!(out, "# HELP fastcgi_healthcheck_last_request_cpu_max_ratio The largest cpu share of a child's last request (php-fpm's last request cpu / 100), in the full status page.");
        let _ = writeln!(
            out,
            "# TYPE fastcgi_healthcheck_last_request_cpu_max_ratio gauge"
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_last_request_cpu_max_ratio{{pool=\"{pool}\"}} {}",
            decimal(hundredths, 10_000)
        );
    }
    let read = u64::try_from(processes.list.len()).unwrap_or(u64::MAX);
    let total = page.number("total processes").unwrap_or(read);
    let left_out = total.saturating_sub(read).max(processes.skipped);
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_processes_left_out Children of the pool not read from its full status page (past 1,000 children or the answer's cap).");
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_processes_left_out gauge");
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_processes_left_out{{pool=\"{pool}\"}} {left_out}"
    );
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_process_pages_truncated_total Full status pages read whose per-process part was truncated.");
    let _ = writeln!(
        out,
        "# TYPE fastcgi_healthcheck_process_pages_truncated_total counter"
    );
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_process_pages_truncated_total {}",
        metrics.truncated_pages.get()
    );
}

/// php-fpm_exporter's per-child series: its names, types and meaning (from its README), its
/// dashboard's labels (`state`, `pid_hash`), and `pool`. At most [`crate::limits::MAX_PROCESSES`]
/// children: the rest is `fastcgi_healthcheck_processes_left_out`.
fn render_per_process(out: &mut String, pool: &str, processes: &Processes) {
    let ids: Vec<String> = processes.list.iter().map(pid_hash).collect();
    let children = || ids.iter().zip(&processes.list);
    let _ = writeln!(
        out,
        "# HELP phpfpm_process_state The state of the process (Idle, Running, ...)."
    );
    let _ = writeln!(out, "# TYPE phpfpm_process_state gauge");
    for (id, p) in children() {
        let _ = writeln!(
            out,
            "phpfpm_process_state{{pool=\"{pool}\",pid_hash=\"{id}\",state=\"{}\"}} 1",
            label_value(&p.state)
        );
    }
    // php-fpm_exporter's name and type (a counter without `_total`: its dashboard queries it).
    let _ = writeln!(
        out,
        "# HELP phpfpm_process_requests The number of requests the process has served."
    );
    let _ = writeln!(out, "# TYPE phpfpm_process_requests counter");
    for (id, p) in children() {
        if let Some(n) = p.requests {
            let _ = writeln!(
                out,
                "phpfpm_process_requests{{pool=\"{pool}\",pid_hash=\"{id}\"}} {n}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP phpfpm_process_request_duration The duration in microseconds of the requests."
    );
    let _ = writeln!(out, "# TYPE phpfpm_process_request_duration gauge");
    for (id, p) in children() {
        if let Some(micros) = p.request_duration {
            let _ = writeln!(
                out,
                "phpfpm_process_request_duration{{pool=\"{pool}\",pid_hash=\"{id}\"}} {micros}"
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP phpfpm_process_last_request_cpu The %cpu the last request consumed."
    );
    let _ = writeln!(out, "# TYPE phpfpm_process_last_request_cpu gauge");
    for (id, p) in children() {
        if let Some(hundredths) = p.last_request_cpu {
            let _ = writeln!(
                out,
                "phpfpm_process_last_request_cpu{{pool=\"{pool}\",pid_hash=\"{id}\"}} {}",
                decimal(hundredths, 100)
            );
        }
    }
    let _ = writeln!(out, "# HELP phpfpm_process_last_request_memory The max amount of memory the last request consumed.");
    let _ = writeln!(out, "# TYPE phpfpm_process_last_request_memory gauge");
    for (id, p) in children() {
        if let Some(bytes) = p.last_request_memory {
            let _ = writeln!(
                out,
                "phpfpm_process_last_request_memory{{pool=\"{pool}\",pid_hash=\"{id}\"}} {bytes}"
            );
        }
    }
}

/// A child's `pid_hash` label: FNV-1a (64 bits, hex) of its pid and start time, so that a pid
/// reused by a new child is a new series. Only a label: never the request URI.
fn pid_hash(p: &Process) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let pid = p.pid.to_string();
    for byte in pid.bytes().chain([b' ']).chain(p.start_time.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Results of one kind of verdict: healthy, and failures by [`Reason::ALL`] order.
#[derive(Debug, Default)]
pub struct Results {
    ok: Cell<u64>,
    failed: [Cell<u64>; Reason::ALL.len()],
}

impl Results {
    /// Counts one verdict.
    pub fn record(&self, verdict: &Verdict) {
        let cell = match verdict {
            Ok(()) => Some(&self.ok),
            Err(failure) => Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .and_then(|i| self.failed.get(i)),
        };
        if let Some(cell) = cell {
            bump(cell, 1);
        }
    }
}

/// The busy/stuck figures of `/metrics` (issue 16), rendered by [`render_busy`].
#[derive(Debug)]
pub struct BusyFigures<'a> {
    /// The kernel's view of the listener: `(queued, backlog)`, or why it is unavailable.
    pub queue: Result<(u64, Option<u64>), &'a str>,
    /// The queue waits the kept connections measured.
    pub waits: &'a Waits,
    /// Whether a connection is kept open now.
    pub keeping: bool,
    /// Whether the pool is stuck now (as `/fcgi-live` would say).
    pub stuck: bool,
    /// `/fcgi-live` results.
    pub live: &'a Results,
    /// `None`: no status page; `Some(None)`: the page shown is fresh; `Some(Some(age))`: it is
    /// the last one read, this old, repeated while php-fpm is busy.
    pub stale_age: Option<Option<Duration>>,
}

/// Appends the busy/stuck figures: the kernel's listen queue, the kept connection and queue
/// waits, liveness, and the staleness of the status page figures.
pub fn render_busy(out: &mut String, f: &BusyFigures<'_>) {
    let gauge = |out: &mut String, name: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        let _ = writeln!(out, "{name} {value}");
    };
    gauge(out, "fastcgi_healthcheck_listen_queue_available", "Whether the kernel's view of php-fpm's listen queue can be read (0: php-fpm is in another network namespace).", u64::from(f.queue.is_ok()));
    if let Ok((queued, backlog)) = f.queue {
        gauge(out, "fastcgi_healthcheck_listen_queue_connections", "Connections waiting in php-fpm's listen queue, read from the kernel now (no worker needed).", queued);
        if let Some(backlog) = backlog {
            gauge(
                out,
                "fastcgi_healthcheck_listen_queue_backlog",
                "The backlog of php-fpm's listener, read from the kernel.",
                backlog,
            );
        }
    }
    gauge(out, "fastcgi_healthcheck_kept_connections", "Probe connections kept open after their deadline, waiting for php-fpm's answer (at most 1).", u64::from(f.keeping));
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_kept_connections_total Probe connections kept open after their deadline, and how many php-fpm answered.");
    let _ = writeln!(
        out,
        "# TYPE fastcgi_healthcheck_kept_connections_total counter"
    );
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_kept_connections_total{{result=\"kept\"}} {}",
        f.waits.kept.get()
    );
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_kept_connections_total{{result=\"answered\"}} {}",
        f.waits.answered.get()
    );
    if let Some(last) = f.waits.last_millis.get() {
        let _ = writeln!(out, "# HELP fastcgi_healthcheck_queue_wait_seconds_last What the last kept connection waited for its answer: a real request's wait in the queue under this load.");
        let _ = writeln!(
            out,
            "# TYPE fastcgi_healthcheck_queue_wait_seconds_last gauge"
        );
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_queue_wait_seconds_last {}.{:03}",
            last / 1000,
            last % 1000
        );
    }
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_queue_wait_seconds What kept connections waited for their answer.");
    let _ = writeln!(
        out,
        "# TYPE fastcgi_healthcheck_queue_wait_seconds histogram"
    );
    let mut cumulative = 0u64;
    for ((_, bound), count) in WAIT_BUCKETS.iter().zip(&f.waits.buckets) {
        cumulative = cumulative.saturating_add(count.get());
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_queue_wait_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        );
    }
    let total = cumulative.saturating_add(f.waits.over.get());
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_queue_wait_seconds_bucket{{le=\"+Inf\"}} {total}"
    );
    let sum = f.waits.sum_millis.get();
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_queue_wait_seconds_sum {}.{:03}",
        sum / 1000,
        sum % 1000
    );
    let _ = writeln!(out, "fastcgi_healthcheck_queue_wait_seconds_count {total}");
    gauge(out, "fastcgi_healthcheck_stuck", "1 while php-fpm made no progress for BUSY_GRACE while probes waited (what /fcgi-live fails as stuck).", u64::from(f.stuck));
    let _ = writeln!(out, "# HELP fastcgi_healthcheck_live_total /fcgi-live answers by result (ok, or the failure reason).");
    let _ = writeln!(out, "# TYPE fastcgi_healthcheck_live_total counter");
    let _ = writeln!(
        out,
        "fastcgi_healthcheck_live_total{{result=\"ok\"}} {}",
        f.live.ok.get()
    );
    for (reason, count) in Reason::ALL.iter().zip(&f.live.failed) {
        let _ = writeln!(
            out,
            "fastcgi_healthcheck_live_total{{result=\"{reason}\"}} {}",
            count.get()
        );
    }
    if let Some(stale) = f.stale_age {
        gauge(out, "fastcgi_healthcheck_status_page_stale", "1 when the phpfpm_* figures are the last status page read, repeated because php-fpm is busy; 0 when read for this scrape.", u64::from(stale.is_some()));
        if let Some(age) = stale {
            gauge(
                out,
                "fastcgi_healthcheck_status_page_age_seconds",
                "How old the repeated (stale) status page figures are.",
                age.as_secs(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::status;

    #[test]
    fn counts_results_durations_and_waits() {
        let metrics = Metrics::default();
        metrics.record_ping(&Ok(()), Source::Ran, Duration::from_micros(700));
        metrics.record_ping(&Ok(()), Source::Waited, Duration::ZERO);
        let failure = Failure {
            reason: Reason::Timeout,
            detail: String::new(),
            errno: None,
        };
        metrics.record_ping(&Err(failure), Source::Ran, Duration::from_secs(2));
        let text = render(&metrics, 3, None);
        for line in [
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"ok\"} 1",
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"timeout\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.001\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"1\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"+Inf\"} 2",
            "fastcgi_healthcheck_probe_duration_seconds_count{probe=\"ping\"} 2",
            "fastcgi_healthcheck_coalesced_total{probe=\"ping\",source=\"waited\"} 1",
            "fastcgi_healthcheck_open_connections 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("phpfpm_"));
    }

    #[test]
    fn bucket_bounds_are_inclusive_and_exact() {
        let metrics = Metrics::default();
        for took in [
            Duration::from_millis(1),
            Duration::from_millis(1) + Duration::from_nanos(1),
            Duration::from_secs(1),
            Duration::from_micros(1_234_567),
        ] {
            metrics.record_ping(&Ok(()), Source::Ran, took);
        }
        let text = render(&metrics, 0, None);
        for line in [
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.001\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.0025\"} 2",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"1\"} 3",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"+Inf\"} 4",
            "fastcgi_healthcheck_probe_duration_seconds_sum{probe=\"ping\"} 2.236567",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn buckets_tell_near_the_default_timeout() {
        let metrics = Metrics::default();
        for millis in [400, 600, 800] {
            metrics.record_ping(&Ok(()), Source::Ran, Duration::from_millis(millis));
        }
        let text = render(&metrics, 0, None);
        for line in [
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.25\"} 0",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.5\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.75\"} 2",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"1\"} 3",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn php_fpm_figures_follow_the_status_page() {
        let page = status::parse(b"pool: www\nprocess manager: static\nstart since: 5\naccepted conn: 7\nlisten queue: 1\nmax listen queue: 2\nlisten queue len: 511\nidle processes: 1\nactive processes: 1\ntotal processes: 2\nmax active processes: 2\nmax children reached: 0\nslow requests: 0\n").unwrap();
        let text = render(&Metrics::default(), 0, Some(Ok(&page)));
        assert!(text.contains("phpfpm_up{pool=\"www\"} 1\n"));
        assert!(text.contains("phpfpm_accepted_connections{pool=\"www\"} 7\n"));
        assert!(text.contains("phpfpm_listen_queue_length{pool=\"www\"} 511\n"));
        let down = Err(Failure {
            reason: Reason::ConnectRefused,
            detail: String::new(),
            errno: None,
        });
        assert!(render(&Metrics::default(), 0, Some(down.as_ref())).contains("phpfpm_up 0\n"));
    }

    const FULL: &[u8] = b"pool: www\naccepted conn: 7\ntotal processes: 3\n\n****\npid: 11\nstate: Running\nstart time: 05/Dec/2026:16:21:24 +0000\nrequests: 4\nrequest duration: 2500000\nrequest URI: /a?\"\\\nlast request cpu: 12.5\nlast request memory: 2097152\n\n****\npid: 12\nstate: Getting request informations\nrequests: 0\nrequest duration: 18446744073709550774\nlast request cpu: 0.00\nlast request memory: 0\n";

    #[test]
    fn process_aggregates_without_pids_and_per_process_on_demand() {
        let page = status::parse_full(FULL, false).unwrap();
        let text = render(&Metrics::new(false), 0, Some(Ok(&page)));
        for line in [
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"Running\"} 1",
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"Getting request information\"} 1",
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"Idle\"} 0",
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"other\"} 0",
            "fastcgi_healthcheck_oldest_request_seconds{pool=\"www\"} 2.500000",
            "fastcgi_healthcheck_last_request_memory_max_bytes{pool=\"www\"} 2097152",
            "fastcgi_healthcheck_last_request_cpu_max_ratio{pool=\"www\"} 0.1250",
            "fastcgi_healthcheck_processes_left_out{pool=\"www\"} 1",
            "fastcgi_healthcheck_process_pages_truncated_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        assert!(!text.contains("phpfpm_process_"), "{text}");
        assert!(!text.contains("/a?"), "the request URI is no label: {text}");

        let text = render(&Metrics::new(true), 0, Some(Ok(&page)));
        let id = pid_hash(&Process {
            pid: 11,
            start_time: "05/Dec/2026:16:21:24 +0000".to_owned(),
            ..Process::default()
        });
        for line in [
            format!("phpfpm_process_state{{pool=\"www\",pid_hash=\"{id}\",state=\"Running\"}} 1"),
            format!("phpfpm_process_requests{{pool=\"www\",pid_hash=\"{id}\"}} 4"),
            format!("phpfpm_process_request_duration{{pool=\"www\",pid_hash=\"{id}\"}} 2500000"),
            format!("phpfpm_process_last_request_cpu{{pool=\"www\",pid_hash=\"{id}\"}} 12.50"),
            format!("phpfpm_process_last_request_memory{{pool=\"www\",pid_hash=\"{id}\"}} 2097152"),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
        // The unknown duration (PHP bug 62382) is no sample, not 584,942 years.
        assert_eq!(text.matches("phpfpm_process_request_duration{").count(), 1);
        assert_eq!(text.matches("phpfpm_process_state{").count(), 2);
        assert!(!text.contains("/a?"), "the request URI is no label: {text}");
    }
}
