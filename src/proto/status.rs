//! php-fpm's status page (`pm.status_path`, plain-text `key: value` lines) and thresholds on its
//! numeric fields.
//!
//! Pure functions: [`parse`] reads the page, [`parse_full`] also its per-process part (`?full`),
//! [`parse_thresholds`] reads `max-<field>=N` and `min-<field>=N` pairs (from a query string or
//! `check` flags), [`evaluate`] says which hold. One threshold field is not php-fpm's:
//! [`QUEUED_CONNECTIONS`], the kernel's count of connections waiting on the listener, which the
//! caller reads (only when [`needs_queued`]) and passes beside the page.
//!
//! The per-process part is bounded ([`MAX_PROCESSES`] children, each block [`MAX_BLOCK_LINES`]
//! lines) and never guessed: a page cut by the FastCGI answer's cap loses its last, partial block
//! and says it is truncated. Its aggregates ([`Processes::by_state`],
//! [`Processes::oldest_request_micros`], the largest last request memory and cpu) carry no
//! process id. A request URI is kept as php-fpm wrote it and never rendered by this module.

use std::fmt;

use crate::limits::MAX_PROCESSES;

/// The numeric fields php-fpm reports, as they appear on the page.
pub const NUMERIC_FIELDS: [&str; 11] = [
    "start since",
    "accepted conn",
    "listen queue",
    "max listen queue",
    "listen queue len",
    "idle processes",
    "active processes",
    "total processes",
    "max active processes",
    "max children reached",
    "slow requests",
];

/// The text fields php-fpm reports.
pub const TEXT_FIELDS: [&str; 3] = ["pool", "process manager", "start time"];

/// Our own threshold field, beside the page's: the connections waiting on php-fpm's listener as
/// the kernel counts them. php-fpm's `listen queue` is always 0 on a Unix socket (php-src
/// #9943); this one is not.
pub const QUEUED_CONNECTIONS: &str = "queued connections";

/// The kernel's count for [`QUEUED_CONNECTIONS`], or why it cannot be read (one line).
pub type Queued = Result<u64, String>;

/// A parsed status page: every `key: value` line, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// `(key, value)` pairs, trimmed.
    pub fields: Vec<(String, String)>,
    /// The per-process part, when the full page (`?full`) was read.
    pub processes: Option<Processes>,
}

impl Status {
    /// The text of a field.
    pub fn text(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a numeric field.
    pub fn number(&self, key: &str) -> Option<u64> {
        self.text(key)?.parse().ok()
    }

    /// The value of a summary field or, with the full page read, of a [`PROCESS_FIELDS`]
    /// aggregate, in that field's unit times its scale (see [`ProcessField`]).
    fn measure(&self, field: &str) -> Option<u64> {
        match PROCESS_FIELDS.iter().find(|f| f.name == field) {
            Some(f) => self.processes.as_ref().and_then(|p| p.aggregate(f.name)),
            None => self.number(field),
        }
    }
}

/// Why a status page cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusError {
    /// No `pool:` line and no numeric field: not php-fpm's status page.
    NotAStatusPage,
}

impl fmt::Display for StatusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StatusError::NotAStatusPage => write!(f, "the answer is not php-fpm's status page (no \"pool:\" and \"accepted conn:\" lines)"),
        }
    }
}

/// Most lines read from a status page (php-fpm sends 14; `?full` adds per-process blocks, which
/// are not read).
const MAX_LINES: usize = 64;

/// Parses the body of php-fpm's plain-text status page.
pub fn parse(body: &[u8]) -> Result<Status, StatusError> {
    let text = String::from_utf8_lossy(body);
    let fields: Vec<(String, String)> = text
        .lines()
        .take(MAX_LINES)
        .take_while(|line| !line.starts_with('*'))
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect();
    let status = Status {
        fields,
        processes: None,
    };
    if status.text("pool").is_none() || status.number("accepted conn").is_none() {
        return Err(StatusError::NotAStatusPage);
    }
    Ok(status)
}

/// Most `key: value` lines read from one process block (php-fpm writes 14).
pub const MAX_BLOCK_LINES: usize = 32;

/// A `request duration` above this many microseconds (2^63) is php-fpm printing a negative
/// duration as unsigned (PHP bug 62382, e.g. 18446744073709550774): unknown, not 584,942 years.
pub const MAX_REQUEST_DURATION_MICROS: u64 = 1 << 63;

/// The states php-fpm 7.4+ writes, in its order. Before 7.4 the third read `Getting request
/// informations`; [`parse_full`] reads both as this spelling.
pub const STATES: [&str; 6] = [
    "Idle",
    "Reading headers",
    "Getting request information",
    "Running",
    "Finishing",
    "Ending",
];

/// One child of the pool, from its block of the full status page. A field php-fpm did not
/// write, or wrote unreadably, is `None` (numbers) or empty (text).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Process {
    /// `pid`.
    pub pid: u64,
    /// `state`, with the pre-7.4 spelling made the 7.4 one.
    pub state: String,
    /// `start time`, as written (a date).
    pub start_time: String,
    /// `start since`: seconds since the child started.
    pub start_since: Option<u64>,
    /// `requests`: requests the child has served.
    pub requests: Option<u64>,
    /// `request duration`, microseconds; `None` past [`MAX_REQUEST_DURATION_MICROS`].
    pub request_duration: Option<u64>,
    /// `request method`.
    pub request_method: String,
    /// `request URI`: anything a client sent. Never echo it unescaped, never make it a label.
    pub request_uri: String,
    /// `content length`.
    pub content_length: Option<u64>,
    /// `user`.
    pub user: String,
    /// `script`.
    pub script: String,
    /// `last request cpu`, hundredths of a percent (php-fpm writes two decimals).
    pub last_request_cpu: Option<u64>,
    /// `last request memory`, bytes.
    pub last_request_memory: Option<u64>,
}

impl Process {
    /// Whether the child is serving a request (any state but `Idle`).
    pub fn busy(&self) -> bool {
        self.state != "Idle"
    }
}

/// The per-process part of the full status page.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Processes {
    /// The children read, in page order: at most [`MAX_PROCESSES`].
    pub list: Vec<Process>,
    /// Whether some children are missing: the answer was cut at its cap, or the page had more
    /// than [`MAX_PROCESSES`] blocks.
    pub truncated: bool,
    /// Complete blocks seen past [`MAX_PROCESSES`] (a cut answer's lost blocks are not seen).
    pub skipped: u64,
}

/// An aggregate of the per-process part, usable as a threshold field (dashes for spaces). Its
/// value is an integer in the field's unit times `scale`; a threshold's limit is in the unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessField {
    /// The name (`oldest request seconds`).
    pub name: &'static str,
    /// Units of the value per unit of the limit (1,000,000 for seconds kept in microseconds).
    pub scale: u64,
}

/// The aggregates of the per-process part; none carries a process id.
pub const PROCESS_FIELDS: [ProcessField; 8] = [
    ProcessField {
        name: "oldest request seconds",
        scale: 1_000_000,
    },
    ProcessField {
        name: "last request memory",
        scale: 1,
    },
    ProcessField {
        name: "last request cpu",
        scale: 100,
    },
    ProcessField {
        name: "reading headers processes",
        scale: 1,
    },
    ProcessField {
        name: "getting request information processes",
        scale: 1,
    },
    ProcessField {
        name: "running processes",
        scale: 1,
    },
    ProcessField {
        name: "finishing processes",
        scale: 1,
    },
    ProcessField {
        name: "ending processes",
        scale: 1,
    },
];

/// The aggregates of a per-process part as plain numbers, without the children: what `/metrics`
/// writes of it, and keeps to repeat while php-fpm is busy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Aggregates {
    /// [`Processes::by_state`]'s counts, in its order.
    pub by_state: [u64; STATES.len() + 1],
    /// [`Processes::oldest_request_micros`].
    pub oldest_request_micros: Option<u64>,
    /// [`Processes::largest_last_request_memory`].
    pub largest_last_request_memory: Option<u64>,
    /// [`Processes::largest_last_request_cpu`].
    pub largest_last_request_cpu: Option<u64>,
    /// Children read.
    pub read: u64,
    /// [`Processes::skipped`].
    pub skipped: u64,
}

impl Processes {
    /// Its aggregates, as numbers.
    pub fn aggregates(&self) -> Aggregates {
        Aggregates {
            by_state: self.by_state().map(|(_, n)| n),
            oldest_request_micros: self.oldest_request_micros(),
            largest_last_request_memory: self.largest_last_request_memory(),
            largest_last_request_cpu: self.largest_last_request_cpu(),
            read: u64::try_from(self.list.len()).unwrap_or(u64::MAX),
            skipped: self.skipped,
        }
    }

    /// Children per state: every one of [`STATES`] (zero included), then `other` for states
    /// php-fpm does not write today.
    pub fn by_state(&self) -> [(&'static str, u64); STATES.len() + 1] {
        let mut counts = STATES.map(|s| (s, 0u64));
        let mut other = 0u64;
        for process in &self.list {
            match counts.iter_mut().find(|(s, _)| *s == process.state) {
                Some((_, n)) => *n = n.saturating_add(1),
                None => other = other.saturating_add(1),
            }
        }
        let [a, b, c, d, e, f] = counts;
        [a, b, c, d, e, f, ("other", other)]
    }

    /// The longest request duration among busy children, microseconds (0 when none is busy;
    /// `None` when a busy child's duration is unknown and no other is known).
    pub fn oldest_request_micros(&self) -> Option<u64> {
        let busy = self.list.iter().filter(|p| p.busy());
        let known: Vec<u64> = busy.clone().filter_map(|p| p.request_duration).collect();
        if known.is_empty() && busy.count() > 0 {
            return None;
        }
        Some(known.into_iter().max().unwrap_or(0))
    }

    /// The largest `last request memory` in the page, bytes.
    pub fn largest_last_request_memory(&self) -> Option<u64> {
        self.list.iter().filter_map(|p| p.last_request_memory).max()
    }

    /// The largest `last request cpu` in the page, hundredths of a percent.
    pub fn largest_last_request_cpu(&self) -> Option<u64> {
        self.list.iter().filter_map(|p| p.last_request_cpu).max()
    }

    /// The value of one of [`PROCESS_FIELDS`], scaled.
    fn aggregate(&self, field: &str) -> Option<u64> {
        match field {
            "oldest request seconds" => self.oldest_request_micros(),
            "last request memory" => self.largest_last_request_memory(),
            "last request cpu" => self.largest_last_request_cpu(),
            _ => {
                let state = field.strip_suffix(" processes")?;
                self.by_state()
                    .iter()
                    .find(|(s, _)| s.eq_ignore_ascii_case(state))
                    .map(|(_, n)| *n)
            }
        }
    }
}

/// Parses the body of php-fpm's full status page (`?full`): the summary as [`parse`], then one
/// block per child, each after a line of `*`. `cut`: the FastCGI answer was truncated at its cap,
/// so the last block may be partial: it is dropped, and the part marked truncated.
pub fn parse_full(body: &[u8], cut: bool) -> Result<Status, StatusError> {
    let mut status = parse(body)?;
    let text = String::from_utf8_lossy(body);
    let lines = text.split('\n').skip_while(|line| !line.starts_with('*'));
    let mut processes = Processes {
        truncated: cut,
        ..Processes::default()
    };
    let mut current: Option<Process> = None;
    let mut lines_in_block = 0usize;
    let finish = |process: Option<Process>, processes: &mut Processes| {
        let Some(process) = process else {
            return;
        };
        if processes.list.len() < MAX_PROCESSES {
            processes.list.push(process);
        } else {
            processes.skipped = processes.skipped.saturating_add(1);
            processes.truncated = true;
        }
    };
    for line in lines {
        if line.starts_with('*') {
            finish(current.take(), &mut processes);
            current = Some(Process::default());
            lines_in_block = 0;
            continue;
        }
        let Some(process) = current.as_mut() else {
            continue;
        };
        lines_in_block = lines_in_block.saturating_add(1);
        if lines_in_block > MAX_BLOCK_LINES {
            continue;
        }
        if let Some((key, value)) = line.split_once(':') {
            set_process_field(process, key.trim(), value.trim());
        }
    }
    // The last block: complete unless the answer was cut (then part of it may be missing).
    if !cut {
        finish(current.take(), &mut processes);
    }
    // A block without a pid is not a child.
    processes.list.retain(|p| p.pid != 0);
    status.processes = Some(processes);
    Ok(status)
}

fn set_process_field(p: &mut Process, key: &str, value: &str) {
    let number = || value.parse::<u64>().ok();
    match key {
        "pid" => p.pid = number().unwrap_or(0),
        "state" => {
            p.state = match value {
                "Getting request informations" => "Getting request information".to_owned(),
                other => other.to_owned(),
            }
        }
        "start time" => p.start_time = value.to_owned(),
        "start since" => p.start_since = number(),
        "requests" => p.requests = number(),
        "request duration" => {
            p.request_duration = number().filter(|d| *d <= MAX_REQUEST_DURATION_MICROS);
        }
        "request method" => p.request_method = value.to_owned(),
        "request URI" => p.request_uri = value.to_owned(),
        "content length" => p.content_length = number(),
        "user" => p.user = value.to_owned(),
        "script" => p.script = value.to_owned(),
        "last request cpu" => p.last_request_cpu = hundredths(value),
        "last request memory" => p.last_request_memory = number(),
        _ => {}
    }
}

/// `12.34` as 1234 (at most two decimals, as php-fpm writes `%.2f`).
pub fn hundredths(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if fraction.len() > 2 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    let fraction: u64 = match fraction.len() {
        0 => 0,
        1 => fraction.parse::<u64>().ok()?.checked_mul(10)?,
        _ => fraction.parse().ok()?,
    };
    whole.checked_mul(100)?.checked_add(fraction)
}

/// `value` (in units times `scale`) as a decimal number of units: `5123456` at scale 1,000,000
/// is `5.123456`.
pub fn decimal(value: u64, scale: u64) -> String {
    match scale {
        0 | 1 => value.to_string(),
        _ => {
            let digits = scale.ilog10() as usize;
            format!(
                "{}.{:0digits$}",
                value.checked_div(scale).unwrap_or(0),
                value.checked_rem(scale).unwrap_or(0)
            )
        }
    }
}

/// A bound on one numeric field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Threshold {
    /// The field, as on the page (`listen queue`).
    pub field: &'static str,
    /// `max`: fails when the value is above `limit`; `min`: when below.
    pub kind: Bound,
    /// The limit.
    pub limit: u64,
}

/// Which side a [`Threshold`] bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// The value must not exceed the limit.
    Max,
    /// The value must not fall below the limit.
    Min,
}

/// Reads one `max-<field>` / `min-<field>` name (dashes for spaces) and its value; the error
/// starts with `name=value` and says what is accepted.
pub fn parse_threshold(name: &str, value: &str) -> Result<Threshold, String> {
    // Both halves escaped: the message stays one line whatever the name holds.
    let fail = |what: String| format!("{}={value:?} {what}", name.escape_debug());
    let (kind, field) = if let Some(field) = name.strip_prefix("max-") {
        (Bound::Max, field)
    } else if let Some(field) = name.strip_prefix("min-") {
        (Bound::Min, field)
    } else {
        return Err(fail(
            "is not a threshold; use max-<field>=N or min-<field>=N".to_owned(),
        ));
    };
    let wanted = field.replace('-', " ");
    let known = NUMERIC_FIELDS
        .iter()
        .copied()
        .chain(PROCESS_FIELDS.iter().map(|f| f.name))
        .chain([QUEUED_CONNECTIONS]);
    let Some(field) = known.clone().find(|f| *f == wanted) else {
        return Err(fail(format!(
            "names no numeric field of php-fpm's status page, nor queued-connections ({})",
            known
                .map(|f| f.replace(' ', "-"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let limit = value
        .trim()
        .parse()
        .map_err(|_| fail("is not a whole number".to_owned()))?;
    Ok(Threshold { field, kind, limit })
}

/// Reads thresholds from a query string (`max-listen-queue=10&min-idle-processes=1`). Any other
/// parameter is an error naming it.
pub fn parse_thresholds(query: &str) -> Result<Vec<Threshold>, String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            parse_threshold(name, value)
        })
        .collect()
}

/// Whether a threshold needs the kernel's [`QUEUED_CONNECTIONS`].
pub fn needs_queued(thresholds: &[Threshold]) -> bool {
    thresholds.iter().any(|t| t.field == QUEUED_CONNECTIONS)
}

/// Whether a threshold needs the per-process part of the page (`?full`).
pub fn needs_processes(thresholds: &[Threshold]) -> bool {
    thresholds
        .iter()
        .any(|t| PROCESS_FIELDS.iter().any(|f| f.name == t.field))
}

/// The thresholds that do not hold, each as a line such as `listen queue 12 > 10`.
///
/// On a truncated page a per-process aggregate is a lower bound (a count, or the largest value,
/// over the children read): it proves a `max-` threshold broken, or a `min-` one held, and
/// nothing else; otherwise the threshold fails as unknown. The missing children are not guessed.
/// A [`QUEUED_CONNECTIONS`] threshold is judged on `queued` (`None`: not read, unknown).
pub fn evaluate(status: &Status, queued: Option<&Queued>, thresholds: &[Threshold]) -> Vec<String> {
    thresholds
        .iter()
        .filter_map(|t| {
            let scale = PROCESS_FIELDS
                .iter()
                .find(|f| f.name == t.field)
                .map(|f| f.scale);
            let partial = scale.is_some() && status.processes.as_ref().is_some_and(|p| p.truncated);
            let unknown = || {
                format!(
                    "{} unknown: the per-process part of the status page is truncated",
                    t.field
                )
            };
            let value = match (t.field == QUEUED_CONNECTIONS, queued) {
                (false, _) => status.measure(t.field),
                (true, Some(Ok(count))) => Some(*count),
                (true, Some(Err(why))) => return Some(format!("{} unknown: {why}", t.field)),
                (true, None) => return Some(format!("{} unknown: not read", t.field)),
            };
            let Some(value) = value else {
                return Some(match partial {
                    true => unknown(),
                    false => format!("{} missing from the status page", t.field),
                });
            };
            let limit = t.limit.saturating_mul(scale.unwrap_or(1));
            let broken = match t.kind {
                Bound::Max => value > limit,
                Bound::Min => value < limit,
            };
            // A lower bound settles a broken maximum and a held minimum only.
            let settled = !partial || broken == (t.kind == Bound::Max);
            let shown = || decimal(value, scale.unwrap_or(1));
            match (settled, broken, t.kind) {
                (false, _, _) => Some(unknown()),
                (true, false, _) => None,
                (true, true, Bound::Max) => Some(format!("{} {} > {}", t.field, shown(), t.limit)),
                (true, true, Bound::Min) => Some(format!("{} {} < {}", t.field, shown(), t.limit)),
            }
        })
        .collect()
}

/// The body of `/fcgi-status`: the failed thresholds first (one per line), or `ok`, then every
/// field of the page as `key: value` (and `queued connections` when read).
pub fn render(status: &Status, queued: Option<&Queued>, failed: &[String]) -> String {
    let mut body = String::new();
    if failed.is_empty() {
        body.push_str("ok\n");
    }
    for line in failed {
        body.push_str(line);
        body.push('\n');
    }
    body.push('\n');
    render_fields(&mut body, status, queued);
    body
}

/// Every field of the page as `key: value` lines, the kernel's `queued connections` when read,
/// then the per-process aggregates (escaped), onto `body`.
pub fn render_fields(body: &mut String, status: &Status, queued: Option<&Queued>) {
    for (key, value) in &status.fields {
        body.push_str(&format!(
            "{}: {}\n",
            key.escape_debug(),
            value.escape_debug()
        ));
    }
    match queued {
        Some(Ok(count)) => body.push_str(&format!("{QUEUED_CONNECTIONS}: {count}\n")),
        Some(Err(why)) => body.push_str(&format!(
            "{QUEUED_CONNECTIONS}: unknown ({})\n",
            why.escape_debug()
        )),
        None => {}
    }
    if let Some(processes) = &status.processes {
        render_aggregates(body, processes);
    }
}

/// The per-process aggregates, after a blank line, as `key: value` lines (no process id, no
/// request URI).
fn render_aggregates(body: &mut String, processes: &Processes) {
    body.push('\n');
    // Idle children are the summary's `idle processes`.
    for (state, count) in processes.by_state().into_iter().skip(1) {
        body.push_str(&format!("{} processes: {count}\n", state.to_lowercase()));
    }
    for field in PROCESS_FIELDS.iter().take(3) {
        let value = processes
            .aggregate(field.name)
            .map_or_else(|| "unknown".to_owned(), |v| decimal(v, field.scale));
        body.push_str(&format!("{}: {value}\n", field.name));
    }
    body.push_str(&format!("processes read: {}\n", processes.list.len()));
    body.push_str(&format!(
        "processes truncated: {}\n",
        if processes.truncated { "yes" } else { "no" }
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &[u8] = b"pool:                 www\nprocess manager:      static\nstart time:           26/Nov/2026:11:15:06 +0000\nstart since:          61\naccepted conn:        7\nlisten queue:         12\nmax listen queue:     12\nlisten queue len:     511\nidle processes:       0\nactive processes:     2\ntotal processes:      2\nmax active processes: 2\nmax children reached: 0\nslow requests:        0\n";

    #[test]
    fn parses_every_field() {
        let status = parse(PAGE).unwrap();
        assert_eq!(status.text("pool"), Some("www"));
        assert_eq!(
            status.text("start time"),
            Some("26/Nov/2026:11:15:06 +0000")
        );
        for field in NUMERIC_FIELDS {
            assert!(status.number(field).is_some(), "{field}");
        }
        assert_eq!(status.number("listen queue"), Some(12));
    }

    #[test]
    fn not_a_status_page() {
        assert_eq!(
            parse(b"File not found.\n"),
            Err(StatusError::NotAStatusPage)
        );
        assert_eq!(parse(b""), Err(StatusError::NotAStatusPage));
        assert_eq!(
            parse(b"pool: www\naccepted conn: many\n"),
            Err(StatusError::NotAStatusPage)
        );
    }

    #[test]
    fn thresholds_from_a_query() {
        let t = parse_thresholds("max-listen-queue=10&min-idle-processes=1").unwrap();
        assert_eq!(
            t[0],
            Threshold {
                field: "listen queue",
                kind: Bound::Max,
                limit: 10
            }
        );
        assert_eq!(
            t[1],
            Threshold {
                field: "idle processes",
                kind: Bound::Min,
                limit: 1
            }
        );
        assert_eq!(
            evaluate(&parse(PAGE).unwrap(), None, &t),
            vec!["listen queue 12 > 10", "idle processes 0 < 1"]
        );
        assert!(evaluate(
            &parse(PAGE).unwrap(),
            None,
            &parse_thresholds("max-listen-queue=12").unwrap()
        )
        .is_empty());
    }

    #[test]
    fn renders_failures_then_fields() {
        let status = parse(PAGE).unwrap();
        let body = render(&status, None, &["listen queue 12 > 10".to_owned()]);
        assert!(
            body.starts_with("listen queue 12 > 10\n\npool: www\n"),
            "{body}"
        );
        assert!(render(&status, None, &[]).starts_with("ok\n\npool: www\n"));
    }

    #[test]
    fn control_characters_in_keys_are_escaped() {
        // Found by the status_full fuzz target (tests/fuzz/regressions/status_full).
        let status =
            parse(b"pool: www\np\x00rocess\x1b[2J manager: static\naccepted conn: 1\n").unwrap();
        let body = render(&status, None, &[]);
        assert!(
            body.contains("p\\0rocess\\u{1b}[2J manager: static\n"),
            "{body}"
        );
        assert!(
            !body.chars().any(|c| c.is_control() && c != '\n'),
            "{body:?}"
        );
    }

    /// `queued connections` is the kernel's figure, passed beside the page: judged like a field,
    /// unknown (failing) when it could not be read, and shown after the page's fields.
    #[test]
    fn queued_connections_is_the_kernels_figure_beside_the_page() {
        let page = parse(PAGE).unwrap();
        let t = parse_thresholds("max-queued-connections=2&max-listen-queue=20").unwrap();
        assert_eq!(t[0].field, QUEUED_CONNECTIONS);
        assert!(needs_queued(&t) && !needs_processes(&t));
        assert!(!needs_queued(&t[1..]));
        assert_eq!(
            evaluate(&page, Some(&Ok(5)), &t),
            vec!["queued connections 5 > 2"]
        );
        assert!(evaluate(&page, Some(&Ok(2)), &t).is_empty());
        let unavailable: Queued =
            Err("no listener on TCP port 9000 in this network namespace".to_owned());
        assert_eq!(
            evaluate(&page, Some(&unavailable), &t),
            vec!["queued connections unknown: no listener on TCP port 9000 in this network namespace"]
        );
        assert_eq!(
            evaluate(&page, None, &t),
            vec!["queued connections unknown: not read"]
        );
        let body = render(&page, Some(&Ok(5)), &[]);
        assert!(
            body.contains("slow requests: 0\nqueued connections: 5\n"),
            "{body}"
        );
        assert!(!render(&page, None, &[]).contains("queued"));
        assert!(render(&page, Some(&unavailable), &[])
            .contains("queued connections: unknown (no listener"));
    }

    #[test]
    fn bad_thresholds_name_the_parameter() {
        assert!(parse_thresholds("max-queue=1")
            .unwrap_err()
            .contains("max-queue"));
        assert!(parse_thresholds("listen-queue=1")
            .unwrap_err()
            .contains("listen-queue"));
        assert!(parse_thresholds("max-listen-queue=ten")
            .unwrap_err()
            .contains("max-listen-queue"));
        assert!(parse_thresholds("max-listen-queue=-1")
            .unwrap_err()
            .contains("max-listen-queue"));
        assert!(parse_thresholds("max-pool=1")
            .unwrap_err()
            .contains("max-pool"));
    }

    /// php-fpm 8.2's `?full` answer (body) for a pool of 3: one idle, one running a request
    /// for 5 s, one reading a slow client's body (old spelling of a state, and PHP bug 62382's
    /// duration on the idle one).
    const FULL: &str = "pool:                 www\nprocess manager:      static\nstart time:           05/Dec/2026:16:21:24 +0000\nstart since:          9\naccepted conn:        4\nlisten queue:         0\nmax listen queue:     0\nlisten queue len:     0\nidle processes:       1\nactive processes:     2\ntotal processes:      3\nmax active processes: 2\nmax children reached: 0\nslow requests:        0\n\n************************\npid:                  20589\nstate:                Idle\nstart time:           05/Dec/2026:16:21:24 +0000\nstart since:          9\nrequests:             2\nrequest duration:     18446744073709550774\nrequest method:       GET\nrequest URI:          /sleep.php?ms=10\ncontent length:       0\nuser:                 -\nscript:               /srv/sleep.php\nlast request cpu:     12.5\nlast request memory:  2097152\n\n************************\npid:                  20590\nstate:                Running\nstart time:           05/Dec/2026:16:21:24 +0000\nstart since:          9\nrequests:             1\nrequest duration:     5123456\nrequest method:       GET\nrequest URI:          /sleep.php?token=\x1b[2J\ncontent length:       0\nuser:                 -\nscript:               /srv/sleep.php\nlast request cpu:     0.00\nlast request memory:  0\n\n************************\npid:                  20591\nstate:                Getting request informations\nstart time:           05/Dec/2026:16:21:24 +0000\nstart since:          9\nrequests:             0\nrequest duration:     1000\nrequest method:       POST\nrequest URI:          /upload\ncontent length:       100\nuser:                 -\nscript:               -\nlast request cpu:     100.25\nlast request memory:  0\n";

    #[test]
    fn reads_every_process_field_and_the_quirks() {
        let status = parse_full(FULL.as_bytes(), false).unwrap();
        assert_eq!(status.number("total processes"), Some(3));
        let p = status.processes.as_ref().unwrap();
        assert!(!p.truncated);
        assert_eq!(p.list.len(), 3);
        let idle = &p.list[0];
        assert_eq!(idle.pid, 20589);
        assert_eq!(idle.state, "Idle");
        assert_eq!(idle.start_time, "05/Dec/2026:16:21:24 +0000");
        assert_eq!(idle.start_since, Some(9));
        assert_eq!(idle.requests, Some(2));
        assert_eq!(idle.request_duration, None, "PHP bug 62382 is unknown");
        assert_eq!(idle.request_method, "GET");
        assert_eq!(idle.request_uri, "/sleep.php?ms=10");
        assert_eq!(idle.content_length, Some(0));
        assert_eq!(idle.user, "-");
        assert_eq!(idle.script, "/srv/sleep.php");
        assert_eq!(idle.last_request_cpu, Some(1250));
        assert_eq!(idle.last_request_memory, Some(2_097_152));
        assert_eq!(p.list[2].state, "Getting request information");
        assert_eq!(p.list[2].last_request_cpu, Some(10025));
        assert_eq!(
            p.by_state(),
            [
                ("Idle", 1),
                ("Reading headers", 0),
                ("Getting request information", 1),
                ("Running", 1),
                ("Finishing", 0),
                ("Ending", 0),
                ("other", 0)
            ]
        );
        assert_eq!(p.oldest_request_micros(), Some(5_123_456));
        assert_eq!(p.largest_last_request_memory(), Some(2_097_152));
        assert_eq!(p.largest_last_request_cpu(), Some(10025));
        // The summary parser reads the same summary and no processes.
        let summary = parse(FULL.as_bytes()).unwrap();
        assert_eq!(summary.fields, status.fields);
        assert_eq!(summary.processes, None);
    }

    #[test]
    fn process_thresholds_and_their_rendering() {
        let status = parse_full(FULL.as_bytes(), false).unwrap();
        let t = parse_thresholds(
            "max-oldest-request-seconds=2&max-running-processes=1&max-last-request-cpu=100&max-last-request-memory=2097152",
        )
        .unwrap();
        assert!(needs_processes(&t));
        assert!(!needs_processes(
            &parse_thresholds("max-listen-queue=1").unwrap()
        ));
        assert_eq!(
            evaluate(&status, None, &t),
            vec![
                "oldest request seconds 5.123456 > 2",
                "last request cpu 100.25 > 100"
            ]
        );
        assert!(evaluate(
            &status,
            None,
            &parse_thresholds("max-oldest-request-seconds=6&min-running-processes=1").unwrap()
        )
        .is_empty());
        // Without the per-process part, a process threshold says so.
        assert_eq!(
            evaluate(&parse(PAGE).unwrap(), None, &t[..1]),
            vec!["oldest request seconds missing from the status page"]
        );
        let body = render(&status, None, &[]);
        for line in [
            "running processes: 1\n",
            "getting request information processes: 1\n",
            "oldest request seconds: 5.123456\n",
            "last request memory: 2097152\n",
            "last request cpu: 100.25\n",
            "processes read: 3\n",
            "processes truncated: no\n",
        ] {
            assert!(body.contains(line), "{line} missing:\n{body}");
        }
        assert!(
            !body.contains("sleep.php"),
            "no request URI nor script in {body}"
        );
        assert!(!body.contains('\x1b'));
    }

    #[test]
    fn a_cut_page_drops_its_partial_block_and_guesses_nothing() {
        let cut_at = FULL.find("request duration:     1000").unwrap();
        let status = parse_full(&FULL.as_bytes()[..cut_at], true).unwrap();
        let p = status.processes.as_ref().unwrap();
        assert!(p.truncated);
        assert_eq!(p.list.len(), 2, "the partial third block is dropped");
        assert_eq!(
            status.number("total processes"),
            Some(3),
            "the summary counts"
        );
        let t =
            parse_thresholds("max-oldest-request-seconds=10&max-oldest-request-seconds=1").unwrap();
        assert_eq!(
            evaluate(&status, None, &t),
            vec![
                "oldest request seconds unknown: the per-process part of the status page is truncated",
                "oldest request seconds 5.123456 > 1"
            ]
        );
        assert!(render(&status, None, &[]).contains("processes truncated: yes\n"));
    }

    /// A truncated page's aggregates are lower bounds: a `min-` threshold the children read
    /// already meet holds, one they do not meet is unknown (never a definite "X 0 < 1"); a
    /// `max-` one they break fails with the figure, one they keep is unknown.
    #[test]
    fn a_cut_page_settles_only_what_its_lower_bounds_prove() {
        let cut_at = FULL.find("request duration:     1000").unwrap();
        let status = parse_full(&FULL.as_bytes()[..cut_at], true).unwrap();
        // Read: one Idle, one Running (5.123456 s); the third child is lost.
        let failed = |query: &str| evaluate(&status, None, &parse_thresholds(query).unwrap());
        let unknown = |field: &str| {
            vec![format!(
                "{field} unknown: the per-process part of the status page is truncated"
            )]
        };
        assert!(
            failed("min-running-processes=1").is_empty(),
            "1 read is at least 1"
        );
        assert!(failed("min-oldest-request-seconds=5").is_empty());
        assert_eq!(
            failed("min-running-processes=2"),
            unknown("running processes")
        );
        assert_eq!(
            failed("min-finishing-processes=1"),
            unknown("finishing processes")
        );
        assert_eq!(
            failed("max-running-processes=0"),
            vec!["running processes 1 > 0"]
        );
        assert_eq!(
            failed("max-running-processes=1"),
            unknown("running processes")
        );
        // A largest value with no child read is unknown on a cut page, missing on a whole one.
        let none_read = parse_full(&FULL.as_bytes()[..FULL.find("pid:").unwrap()], true).unwrap();
        assert_eq!(
            evaluate(
                &none_read,
                None,
                &parse_thresholds("min-last-request-memory=1").unwrap()
            ),
            unknown("last request memory")
        );
        // The same thresholds on the whole page are definite either way.
        let whole = parse_full(FULL.as_bytes(), false).unwrap();
        let failed = |query: &str| evaluate(&whole, None, &parse_thresholds(query).unwrap());
        assert_eq!(
            failed("min-running-processes=2"),
            vec!["running processes 1 < 2"]
        );
        assert_eq!(
            failed("min-finishing-processes=1"),
            vec!["finishing processes 0 < 1"]
        );
        assert!(failed("max-running-processes=1").is_empty());
        assert_eq!(
            evaluate(
                &parse_full(PAGE, false).unwrap(),
                None,
                &parse_thresholds("min-last-request-memory=1").unwrap()
            ),
            vec!["last request memory missing from the status page"]
        );
    }

    #[test]
    fn children_past_the_bound_are_counted_not_kept() {
        let mut page = FULL.to_owned();
        let block = "\n************************\npid: 7\nstate: Idle\n";
        for _ in 0..MAX_PROCESSES {
            page.push_str(block);
        }
        let status = parse_full(page.as_bytes(), false).unwrap();
        let p = status.processes.unwrap();
        assert_eq!(p.list.len(), MAX_PROCESSES);
        assert_eq!(p.skipped, 3);
        assert!(p.truncated);
    }

    #[test]
    fn numbers_in_hundredths_and_decimals() {
        assert_eq!(hundredths("0.00"), Some(0));
        assert_eq!(hundredths("12.5"), Some(1250));
        assert_eq!(hundredths("7"), Some(700));
        assert_eq!(hundredths("1.234"), None);
        assert_eq!(hundredths("-1.00"), None);
        assert_eq!(hundredths("1.-1"), None);
        assert_eq!(hundredths("184467440737095516.16"), None);
        assert_eq!(decimal(5_000_001, 1_000_000), "5.000001");
        assert_eq!(decimal(1250, 100), "12.50");
        assert_eq!(decimal(42, 1), "42");
    }
}
