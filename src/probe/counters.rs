//! What the server counts of one pool's probes, and how those counts are written in `/metrics`
//! (through the pure [`crate::proto::metrics::Writer`]). Recording is a few integer additions on
//! the request path.

use std::cell::{Cell, RefCell};
use std::time::Duration;

use crate::proto::metrics::{self, Figures, Writer, BUCKETS};
use crate::proto::status::{decimal, Processes, Status};

use super::coalesce::Via;
use super::{Failure, Reason, Verdict};

/// Which probe a figure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeKind {
    /// `/fcgi-ping` and `/fcgi-live`.
    Ping,
    /// `/fcgi-status` and `/metrics` (the status page).
    Status,
}

impl ProbeKind {
    const ALL: [ProbeKind; 2] = [ProbeKind::Ping, ProbeKind::Status];

    fn label(self) -> &'static str {
        match self {
            ProbeKind::Ping => "ping",
            ProbeKind::Status => "status",
        }
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().saturating_add(by));
}

/// Results of one kind of verdict: healthy, and failures by [`Reason::ALL`] order.
#[derive(Debug, Default)]
pub(crate) struct Results {
    ok: Cell<u64>,
    failed: [Cell<u64>; Reason::ALL.len()],
}

impl Results {
    /// Counts one verdict.
    pub(crate) fn record<T>(&self, verdict: &Result<T, Failure>) {
        let cell = match verdict {
            Ok(_) => Some(&self.ok),
            Err(failure) => Reason::ALL
                .iter()
                .position(|r| *r == failure.reason)
                .and_then(|i| self.failed.get(i)),
        };
        if let Some(cell) = cell {
            bump(cell, 1);
        }
    }

    /// `(result label, count)`: `ok`, then every reason.
    fn each(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        std::iter::once(("ok", self.ok.get())).chain(
            Reason::ALL
                .iter()
                .zip(&self.failed)
                .map(|(reason, count)| (reason.as_str(), count.get())),
        )
    }
}

/// One probe kind's figures.
#[derive(Debug, Default)]
struct Probes {
    results: Results,
    /// Durations: counts per bucket of [`BUCKETS`] (not cumulative), above the last, and the sum.
    buckets: [Cell<u64>; BUCKETS.len()],
    over: Cell<u64>,
    sum_micros: Cell<u64>,
    waited: Cell<u64>,
    cached: Cell<u64>,
}

/// What the server counts of one pool.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    probes: [Probes; ProbeKind::ALL.len()],
    /// The pool named by the last status page read (label-safe), so that `phpfpm_up` and
    /// `phpfpm_scrape_failures` keep their `pool` label while php-fpm is down.
    pool_seen: RefCell<Option<String>>,
    /// `/metrics` scrapes whose status page could not be read.
    scrape_failures: Cell<u64>,
    /// Full status pages read whose per-process part was truncated.
    truncated_pages: Cell<u64>,
    /// `/fcgi-live` results.
    live: Results,
}

impl Counters {
    fn probes(&self, kind: ProbeKind) -> &Probes {
        match kind {
            ProbeKind::Ping => &self.probes[0],
            ProbeKind::Status => &self.probes[1],
        }
    }

    /// Counts one answer given from a probe of `kind`: its result and duration when this caller
    /// ran it, a coalesced wait or cache hit otherwise.
    pub(crate) fn record<T>(
        &self,
        kind: ProbeKind,
        result: &Result<T, Failure>,
        via: Via,
        took: Duration,
    ) {
        let probes = self.probes(kind);
        match via {
            Via::Waited => return bump(&probes.waited, 1),
            Via::Cached => return bump(&probes.cached, 1),
            Via::Ran => {}
        }
        probes.results.record(result);
        match BUCKETS
            .iter()
            .position(|(bound, _)| took <= Duration::from_micros(*bound))
            .and_then(|i| probes.buckets.get(i))
        {
            Some(cell) => bump(cell, 1),
            None => bump(&probes.over, 1),
        }
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        bump(&probes.sum_micros, micros);
    }

    /// Counts a ping verdict (see [`Counters::record`]).
    pub(crate) fn record_ping(&self, verdict: &Verdict, via: Via, took: Duration) {
        self.record(ProbeKind::Ping, verdict, via, took);
    }

    /// Counts a `/fcgi-live` verdict.
    pub(crate) fn record_live(&self, verdict: &Verdict) {
        self.live.record(verdict);
    }

    /// Remembers the pool a status page names (no allocation while it stays the same), and
    /// counts a truncated per-process part.
    pub(crate) fn saw_page(&self, page: &Status) {
        let name = page.text("pool").unwrap_or_default();
        let mut pool = self.pool_seen.borrow_mut();
        if pool.as_deref() != Some(name) || !metrics::is_label_value(name) {
            *pool = Some(metrics::label_value(name));
        }
        if page.processes.as_ref().is_some_and(|p| p.truncated) {
            bump(&self.truncated_pages, 1);
        }
    }

    /// Counts a `/metrics` scrape whose status page could not be read.
    pub(crate) fn scrape_failed(&self) {
        bump(&self.scrape_failures, 1);
    }

    /// The probe figures: results, durations, coalesced answers.
    pub(crate) fn write_probes(&self, w: &mut Writer<'_>) {
        w.family(
            "fastcgi_healthcheck_probes_total",
            "counter",
            "FastCGI probes by kind and result (ok, or the failure reason).",
        );
        for kind in ProbeKind::ALL {
            for (result, count) in self.probes(kind).results.each() {
                w.sample(
                    "fastcgi_healthcheck_probes_total",
                    &[("probe", kind.label()), ("result", result)],
                    count,
                );
            }
        }
        w.family(
            "fastcgi_healthcheck_probe_duration_seconds",
            "histogram",
            "Duration of the FastCGI probes this process ran.",
        );
        for kind in ProbeKind::ALL {
            let p = self.probes(kind);
            let buckets = BUCKETS
                .iter()
                .zip(&p.buckets)
                .map(|((_, bound), count)| (*bound, count.get()));
            w.histogram(
                "fastcgi_healthcheck_probe_duration_seconds",
                &[("probe", kind.label())],
                buckets,
                p.over.get(),
                decimal(p.sum_micros.get(), 1_000_000),
            );
        }
        w.family(
            "fastcgi_healthcheck_coalesced_total",
            "counter",
            "Requests answered by another request's probe (waited) or a cached verdict (cached).",
        );
        for kind in ProbeKind::ALL {
            let p = self.probes(kind);
            for (source, count) in [("waited", &p.waited), ("cached", &p.cached)] {
                w.sample(
                    "fastcgi_healthcheck_coalesced_total",
                    &[("probe", kind.label()), ("source", source)],
                    count.get(),
                );
            }
        }
    }

    /// php-fpm's figures (`None`: the page could not be read), labelled `pool` (`None`: the
    /// page's own pool, or the last one seen while php-fpm is down); the per-child series of
    /// `children` when given.
    pub(crate) fn write_php_fpm(
        &self,
        w: &mut Writer<'_>,
        pool: Option<&str>,
        figures: Option<&Figures>,
        children: Option<&Processes>,
    ) {
        let seen = self.pool_seen.borrow();
        let label = pool
            .or(figures.map(|f| f.pool.as_str()))
            .or(seen.as_deref());
        let fpm = metrics::PhpFpm {
            pool: label,
            figures,
            children,
            scrape_failures: self.scrape_failures.get(),
            truncated_pages: self.truncated_pages.get(),
        };
        metrics::php_fpm(w, &fpm);
    }

    /// `/fcgi-live` results.
    pub(crate) fn write_live(&self, w: &mut Writer<'_>) {
        w.family(
            "fastcgi_healthcheck_live_total",
            "counter",
            "/fcgi-live answers by result (ok, or the failure reason).",
        );
        for (result, count) in self.live.each() {
            w.sample(
                "fastcgi_healthcheck_live_total",
                &[("result", result)],
                count,
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn text(counters: &Counters) -> String {
        let mut out = String::new();
        counters.write_probes(&mut Writer::new(&mut out, None));
        out
    }

    #[test]
    fn counts_results_durations_and_waits() {
        let counters = Counters::default();
        counters.record_ping(&Ok(()), Via::Ran, Duration::from_micros(700));
        counters.record_ping(&Ok(()), Via::Waited, Duration::ZERO);
        let failure = Failure::new(Reason::Timeout, String::new());
        counters.record_ping(&Err(failure), Via::Ran, Duration::from_secs(2));
        let text = text(&counters);
        for line in [
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"ok\"} 1",
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"timeout\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"0.001\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"1\"} 1",
            "fastcgi_healthcheck_probe_duration_seconds_bucket{probe=\"ping\",le=\"+Inf\"} 2",
            "fastcgi_healthcheck_probe_duration_seconds_count{probe=\"ping\"} 2",
            "fastcgi_healthcheck_coalesced_total{probe=\"ping\",source=\"waited\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    #[test]
    fn bucket_bounds_are_inclusive_and_exact() {
        let counters = Counters::default();
        for took in [
            Duration::from_millis(1),
            Duration::from_millis(1) + Duration::from_nanos(1),
            Duration::from_secs(1),
            Duration::from_micros(1_234_567),
        ] {
            counters.record_ping(&Ok(()), Via::Ran, took);
        }
        let text = text(&counters);
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
        let counters = Counters::default();
        for millis in [400, 600, 800] {
            counters.record_ping(&Ok(()), Via::Ran, Duration::from_millis(millis));
        }
        let text = text(&counters);
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
    fn php_fpm_keeps_the_last_pool_seen_while_down() {
        let counters = Counters::default();
        let page = crate::proto::status::parse(b"pool: www\naccepted conn: 7\n").unwrap();
        counters.saw_page(&page);
        counters.scrape_failed();
        let mut out = String::new();
        counters.write_php_fpm(&mut Writer::new(&mut out, None), None, None, None);
        assert!(out.contains("phpfpm_up{pool=\"www\"} 0\n"), "{out}");
        assert!(
            out.contains("phpfpm_scrape_failures{pool=\"www\"} 1\n"),
            "{out}"
        );
    }
}
