//! The Prometheus text exposition (format 0.0.4), pure: a [`Writer`] of families and samples over
//! plain numbers, php-fpm's status page as php-fpm_exporter names its figures (so that existing
//! dashboards work), and [`merge`], which joins the expositions of several pools family by
//! family. What the numbers count is kept by their owners (`probe::counters`, `probe::busy`).

use std::fmt::{Display, Write};

use crate::proto::status::{decimal, Aggregates, Process, Processes, Status, STATES};

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

/// Writes families and samples into a `String`; with a pool, every sample carries
/// `pool="NAME"` first (the pool must be label-safe: see [`label_value`]).
pub struct Writer<'a> {
    out: &'a mut String,
    pool: Option<&'a str>,
}

impl<'a> Writer<'a> {
    /// A writer appending to `out`, labelling every sample with `pool` when given.
    pub fn new(out: &'a mut String, pool: Option<&'a str>) -> Self {
        Self { out, pool }
    }

    /// The same text, labelled with `pool` instead (php-fpm's figures name the pool its page
    /// names).
    pub fn with_pool<'b>(&'b mut self, pool: Option<&'b str>) -> Writer<'b> {
        Writer {
            out: self.out,
            pool,
        }
    }

    /// A family's `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample: `name{pool="..",k="v",..} value`. Label values must be label-safe.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.sample_of(name, labels, &value);
    }

    /// [`Writer::sample`], not generic: one copy in the binary for every type of value.
    fn sample_of(&mut self, name: &str, labels: &[(&str, &str)], value: &dyn Display) {
        self.out.push_str(name);
        let pool = self.pool.map(|pool| ("pool", pool));
        let mut labels = pool.iter().chain(labels).peekable();
        if labels.peek().is_some() {
            self.out.push('{');
            for (i, (key, value)) in labels.enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{value}\"");
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    /// A family of one unlabelled (but for the pool) gauge.
    pub fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, "gauge", help);
        self.sample_of(name, &[], &value);
    }

    /// A histogram's samples: `counts` per bucket of `bounds` (not cumulative), `over` above the
    /// last, and the sum as text.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: impl Iterator<Item = (&'static str, u64)>,
        over: u64,
        sum: impl Display,
    ) {
        self.histogram_of(name, labels, &mut { buckets }, over, &sum);
    }

    /// [`Writer::histogram`], not generic.
    fn histogram_of(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        buckets: &mut dyn Iterator<Item = (&'static str, u64)>,
        over: u64,
        sum: &dyn Display,
    ) {
        let mut cumulative = 0u64;
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let bucket = format!("{name}_bucket");
        for (bound, count) in buckets {
            cumulative = cumulative.saturating_add(count);
            if let Some(le) = with_le.last_mut() {
                le.1 = bound;
            }
            self.sample_of(&bucket, &with_le, &cumulative);
        }
        let total = cumulative.saturating_add(over);
        if let Some(le) = with_le.last_mut() {
            le.1 = "+Inf";
        }
        self.sample_of(&bucket, &with_le, &total);
        self.sample_of(&format!("{name}_sum"), labels, sum);
        self.sample_of(&format!("{name}_count"), labels, &total);
    }
}

/// Whether `c` may stand in a label value as is.
fn label_safe(c: char) -> bool {
    c != '\\' && c != '"' && !c.is_control()
}

/// `text` as a label value: backslash, quote and control characters become `_` (then it needs
/// no escaping).
pub fn label_value(text: &str) -> String {
    text.chars()
        .map(|c| if label_safe(c) { c } else { '_' })
        .collect()
}

/// Whether `text` is a label value as is (see [`label_value`]).
pub fn is_label_value(text: &str) -> bool {
    text.chars().all(label_safe)
}

/// The expositions of several pools as one: each family's `# HELP`/`# TYPE` once, then its
/// samples from every part in order (the text format wants a family's samples together).
/// Families come in the order they first appear. Every part must open each family with its
/// `# HELP`/`# TYPE` lines, as [`Writer`] users do: a sample before any header has no family and
/// is left out.
pub fn merge<S: AsRef<str>>(parts: &[S]) -> String {
    let total = parts.iter().map(|p| p.as_ref().len()).sum::<usize>();
    // (name, header lines, samples)
    let mut families: Vec<(&str, String, String)> = Vec::new();
    for part in parts {
        let mut current: Option<usize> = None;
        for line in part.as_ref().lines() {
            let header = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "));
            if let Some(rest) = header {
                let name = rest.split(' ').next().unwrap_or_default();
                let index = match families.iter().position(|(n, _, _)| *n == name) {
                    Some(index) => index,
                    None => {
                        families.push((name, String::new(), String::new()));
                        families.len().saturating_sub(1)
                    }
                };
                // One `# HELP` and one `# TYPE` per family: later parts repeat the first's.
                let kind = line.get(..6).unwrap_or_default();
                if let Some((_, headers, _)) = families.get_mut(index) {
                    if !headers.lines().any(|l| l.starts_with(kind)) {
                        headers.push_str(line);
                        headers.push('\n');
                    }
                }
                current = Some(index);
                continue;
            }
            if let Some((_, _, samples)) = current.and_then(|i| families.get_mut(i)) {
                samples.push_str(line);
                samples.push('\n');
            }
        }
    }
    let mut out = String::with_capacity(total);
    for (_, headers, samples) in families {
        out.push_str(&headers);
        out.push_str(&samples);
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

/// php-fpm's figures of one status page as numbers: what a scrape writes of it, and what a pool
/// keeps to repeat (stale) while php-fpm is busy. No children and no text but the pool's name, so
/// keeping it costs a few numbers whatever the size of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Figures {
    /// The page's `pool` (label-safe).
    pub pool: String,
    /// The summary's numbers, in the order of [`PHP_FPM_METRICS`].
    numbers: [Option<u64>; PHP_FPM_METRICS.len()],
    /// The per-process aggregates, when the full page was read.
    aggregates: Option<Aggregates>,
}

impl Figures {
    /// The figures of `page`.
    pub fn of(page: &Status) -> Self {
        Self {
            pool: label_value(page.text("pool").unwrap_or_default()),
            numbers: PHP_FPM_METRICS.map(|(_, _, field, _)| page.number(field)),
            aggregates: page.processes.as_ref().map(Processes::aggregates),
        }
    }

    /// The summary's value of `field` (one of [`PHP_FPM_METRICS`]'s).
    fn number(&self, field: &str) -> Option<u64> {
        PHP_FPM_METRICS
            .iter()
            .zip(self.numbers)
            .find(|((_, _, f, _), _)| *f == field)
            .and_then(|(_, n)| n)
    }
}

/// php-fpm's figures for one scrape of one pool.
#[derive(Debug, Clone, Copy)]
pub struct PhpFpm<'a> {
    /// The `pool` label of php-fpm's figures (label-safe): the page's pool, or while php-fpm is
    /// down the last one seen (so that `phpfpm_up{pool="www"} == 0` fires); `None` before any
    /// page named one.
    pub pool: Option<&'a str>,
    /// The figures of the page read for this scrape, or repeated; `None`: it could not be read
    /// (`phpfpm_up 0`).
    pub figures: Option<&'a Figures>,
    /// The children, for php-fpm_exporter's per-child series (`PROCESS_METRICS=per-process`,
    /// and a full page read for this scrape); `None`: no per-child series.
    pub children: Option<&'a Processes>,
    /// `/metrics` scrapes whose page could not be read.
    pub scrape_failures: u64,
    /// Full pages read whose per-process part was truncated.
    pub truncated_pages: u64,
}

/// php-fpm's figures: `phpfpm_up`, the scrape failures, the page's summary, and with a full page
/// the process aggregates (and the per-child series when given).
pub fn php_fpm(w: &mut Writer<'_>, f: &PhpFpm<'_>) {
    {
        let mut fpm = w.with_pool(f.pool);
        fpm.gauge(
            "phpfpm_up",
            "Could PHP-FPM's status page be read?",
            u8::from(f.figures.is_some()),
        );
        // php-fpm_exporter's name and type (a counter without `_total`: dashboards query it).
        fpm.family(
            "phpfpm_scrape_failures",
            "counter",
            "The number of failures scraping from PHP-FPM.",
        );
        fpm.sample("phpfpm_scrape_failures", &[], f.scrape_failures);
    }
    let Some(figures) = f.figures else {
        return;
    };
    let mut fpm = w.with_pool(f.pool);
    for ((name, kind, _, help), value) in PHP_FPM_METRICS.iter().zip(figures.numbers) {
        if let Some(value) = value {
            fpm.family(name, kind, help);
            fpm.sample(name, &[], value);
        }
    }
    if let Some(aggregates) = &figures.aggregates {
        process_aggregates(&mut fpm, figures, aggregates);
        if let Some(children) = f.children {
            per_process(&mut fpm, children);
        }
        w.family(
            "fastcgi_healthcheck_process_pages_truncated_total",
            "counter",
            "Full status pages read whose per-process part was truncated.",
        );
        w.sample(
            "fastcgi_healthcheck_process_pages_truncated_total",
            &[],
            f.truncated_pages,
        );
    }
}

/// php-fpm's figures of `page` alone (`None`: it could not be read), labelled with the pool the
/// page names, made label-safe; no counts. What the fuzz targets check for any page.
pub fn page_exposition(page: Option<&Status>, per_process: bool) -> String {
    let figures = page.map(Figures::of);
    let mut out = String::new();
    let fpm = PhpFpm {
        pool: figures.as_ref().map(|f| f.pool.as_str()),
        figures: figures.as_ref(),
        children: page
            .and_then(|page| page.processes.as_ref())
            .filter(|_| per_process),
        scrape_failures: 0,
        truncated_pages: 0,
    };
    php_fpm(&mut Writer::new(&mut out, None), &fpm);
    out
}

/// The aggregates of the full status page's per-process part, under our names, labelled with
/// the pool only (no process id): what `PROCESS_METRICS=aggregates` adds.
fn process_aggregates(w: &mut Writer<'_>, figures: &Figures, a: &Aggregates) {
    w.family("fastcgi_healthcheck_processes", "gauge", "Children of the php-fpm pool by state, counted in its full status page (other: a state php-fpm does not write today).");
    for (state, count) in STATES.iter().copied().chain(["other"]).zip(a.by_state) {
        w.sample("fastcgi_healthcheck_processes", &[("state", state)], count);
    }
    if let Some(micros) = a.oldest_request_micros {
        w.gauge("fastcgi_healthcheck_oldest_request_seconds", "How long the oldest request in progress has run (0: no child busy); a stuck worker shows here.", decimal(micros, 1_000_000));
    }
    if let Some(bytes) = a.largest_last_request_memory {
        w.gauge(
            "fastcgi_healthcheck_last_request_memory_max_bytes",
            "The largest peak memory of a child's last request, in the full status page.",
            bytes,
        );
    }
    if let Some(hundredths) = a.largest_last_request_cpu {
        w.gauge("fastcgi_healthcheck_last_request_cpu_max_ratio", "The largest cpu share of a child's last request (php-fpm's last request cpu / 100), in the full status page.", decimal(hundredths, 10_000));
    }
    let total = figures.number("total processes").unwrap_or(a.read);
    let left_out = total.saturating_sub(a.read).max(a.skipped);
    w.gauge("fastcgi_healthcheck_processes_left_out", "Children of the pool not read from its full status page (past 1,000 children or the answer's cap).", left_out);
}

/// php-fpm_exporter's per-child series: its names, types and meaning (from its README), its
/// dashboard's labels (`state`, `pid_hash`), and `pool`. At most [`crate::limits::MAX_PROCESSES`]
/// children: the rest is `fastcgi_healthcheck_processes_left_out`.
fn per_process(w: &mut Writer<'_>, processes: &Processes) {
    let ids: Vec<String> = processes.list.iter().map(pid_hash).collect();
    let children = || ids.iter().zip(&processes.list);
    w.family(
        "phpfpm_process_state",
        "gauge",
        "The state of the process (Idle, Running, ...).",
    );
    for (id, p) in children() {
        let state = label_value(&p.state);
        w.sample(
            "phpfpm_process_state",
            &[("pid_hash", id), ("state", &state)],
            1,
        );
    }
    // php-fpm_exporter's name and type (a counter without `_total`: its dashboard queries it).
    w.family(
        "phpfpm_process_requests",
        "counter",
        "The number of requests the process has served.",
    );
    for (id, p) in children() {
        if let Some(n) = p.requests {
            w.sample("phpfpm_process_requests", &[("pid_hash", id)], n);
        }
    }
    w.family(
        "phpfpm_process_request_duration",
        "gauge",
        "The duration in microseconds of the requests.",
    );
    for (id, p) in children() {
        if let Some(micros) = p.request_duration {
            w.sample(
                "phpfpm_process_request_duration",
                &[("pid_hash", id)],
                micros,
            );
        }
    }
    w.family(
        "phpfpm_process_last_request_cpu",
        "gauge",
        "The %cpu the last request consumed.",
    );
    for (id, p) in children() {
        if let Some(hundredths) = p.last_request_cpu {
            w.sample(
                "phpfpm_process_last_request_cpu",
                &[("pid_hash", id)],
                decimal(hundredths, 100),
            );
        }
    }
    w.family(
        "phpfpm_process_last_request_memory",
        "gauge",
        "The max amount of memory the last request consumed.",
    );
    for (id, p) in children() {
        if let Some(bytes) = p.last_request_memory {
            w.sample(
                "phpfpm_process_last_request_memory",
                &[("pid_hash", id)],
                bytes,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::proto::status;

    fn fpm(page: Option<&Status>, pool: Option<&str>, per_process: bool) -> String {
        let mut out = String::new();
        let figures = page.map(Figures::of);
        let fpm = PhpFpm {
            pool,
            figures: figures.as_ref(),
            children: page
                .and_then(|p| p.processes.as_ref())
                .filter(|_| per_process),
            scrape_failures: 2,
            truncated_pages: 0,
        };
        php_fpm(&mut Writer::new(&mut out, None), &fpm);
        out
    }

    #[test]
    fn samples_carry_the_pool_first() {
        let mut out = String::new();
        let mut w = Writer::new(&mut out, Some("api"));
        w.gauge("a", "A.", 1);
        w.sample("b", &[("probe", "ping")], 2);
        Writer::new(&mut out, None).sample("c", &[], 3);
        assert_eq!(
            out,
            "# HELP a A.\n# TYPE a gauge\na{pool=\"api\"} 1\nb{pool=\"api\",probe=\"ping\"} 2\nc 3\n"
        );
    }

    #[test]
    fn merge_groups_each_family_once() {
        let part = |pool: &str, extra: bool| {
            let mut out = String::new();
            let mut w = Writer::new(&mut out, Some(pool));
            w.gauge("up", "Up.", 1);
            if extra {
                w.gauge("only_some", "Sometimes.", 7);
            }
            w.family("h", "histogram", "H.");
            w.histogram("h", &[], [("1", 1)].into_iter(), 1, "0.5");
            out
        };
        let merged = merge(&[part("a", false), part("b", true)]);
        assert_eq!(merged.matches("# TYPE up gauge").count(), 1);
        assert_eq!(merged.matches("# HELP h H.").count(), 1);
        let up = merged.find("up{pool=\"a\"} 1").unwrap();
        assert!(
            merged[up..].starts_with("up{pool=\"a\"} 1\nup{pool=\"b\"} 1\n"),
            "{merged}"
        );
        let h = merged.find("h_bucket{pool=\"a\",le=\"1\"} 1").unwrap();
        assert!(
            merged[h..].contains("h_count{pool=\"a\"} 2\nh_bucket{pool=\"b\",le=\"1\"} 1\n"),
            "{merged}"
        );
        assert!(merged.contains("# TYPE only_some gauge\nonly_some{pool=\"b\"} 7\n"));
    }

    #[test]
    fn php_fpm_figures_follow_the_status_page() {
        let page = status::parse(b"pool: www\nprocess manager: static\nstart since: 5\naccepted conn: 7\nlisten queue: 1\nmax listen queue: 2\nlisten queue len: 511\nidle processes: 1\nactive processes: 1\ntotal processes: 2\nmax active processes: 2\nmax children reached: 0\nslow requests: 0\n").unwrap();
        let text = fpm(Some(&page), Some("www"), false);
        assert!(text.contains("phpfpm_up{pool=\"www\"} 1\n"));
        assert!(text.contains("phpfpm_scrape_failures{pool=\"www\"} 2\n"));
        assert!(text.contains("phpfpm_accepted_connections{pool=\"www\"} 7\n"));
        assert!(text.contains("phpfpm_listen_queue_length{pool=\"www\"} 511\n"));
        assert!(fpm(None, None, false).contains("phpfpm_up 0\n"));
        assert!(fpm(None, Some("www"), false).contains("phpfpm_up{pool=\"www\"} 0\n"));
    }

    const FULL: &[u8] = b"pool: www\naccepted conn: 7\ntotal processes: 3\n\n****\npid: 11\nstate: Running\nstart time: 05/Dec/2026:16:21:24 +0000\nrequests: 4\nrequest duration: 2500000\nrequest URI: /a?\"\\\nlast request cpu: 12.5\nlast request memory: 2097152\n\n****\npid: 12\nstate: Getting request informations\nrequests: 0\nrequest duration: 18446744073709550774\nlast request cpu: 0.00\nlast request memory: 0\n";

    #[test]
    fn process_aggregates_without_pids_and_per_process_on_demand() {
        let page = status::parse_full(FULL, false).unwrap();
        let text = fpm(Some(&page), Some("www"), false);
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

        let text = fpm(Some(&page), Some("www"), true);
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
