//! The log: one line per record on stderr, `LEVEL [target] message`, levels per module from
//! `RUST_LOG`. When stderr is systemd's journal (`JOURNAL_STREAM` names the very stream on
//! descriptor 2), a line is `<N>[target] message` instead: `N` is its sd-daemon priority (3 error,
//! 4 warn, 6 info, 7 debug and trace), which journald stores as the entry's `PRIORITY`, and the
//! `LEVEL` word is left out because the journal shows the priority already.
//!
//! Written here rather than taken from a logging crate because a log must never take the
//! process down or stall it. The serving thread only formats a line and queues it (a bounded
//! queue, `QUEUED_BYTES`); a writer thread of its own does the blocking writes. When the reader
//! of stderr stalls (a log shipper that stopped reading a pipe), the queue fills and new lines
//! are dropped and counted; once the writer has caught up it says how many were lost. A closed or
//! full stderr (`2>/dev/full`) loses lines, it does not panic. Control characters are escaped,
//! so nothing a peer sends can forge log lines or reach a terminal raw.
//!
//! Lines written outside the logger ([`to_stderr`]: a configuration error before logging
//! starts, a server that cannot listen, `check`'s verdict) carry the journal's priority too.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogSpec;

/// Most bytes of lines waiting for the writer (as much as a pipe holds); more are dropped and
/// counted, so a stalled reader costs at most this much memory.
const QUEUED_BYTES: usize = 64 * 1024;

/// How long [`flush`] waits for the writer at exit (a stalled stderr must not hold the exit).
const FLUSH_WAIT: Duration = Duration::from_secs(1);

/// The writer thread's stack: it only copies bytes.
const WRITER_STACK: usize = 64 * 1024;

/// Lines between the serving thread and the writer.
#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    /// Signalled when a line is queued.
    queued: Condvar,
    /// Signalled when the writer has written everything queued.
    drained: Condvar,
}

#[derive(Default)]
struct State {
    lines: VecDeque<String>,
    /// Bytes in `lines`.
    bytes: usize,
    /// Lines dropped because the queue was full, not yet reported.
    lost: u64,
    /// Whether the writer holds lines it has not finished writing.
    writing: bool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot happen (no code that panics runs under it);
        // if it did, the state is still a valid queue.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `line`, or counts it as lost when the queue is full. Never blocks on the writer.
    fn push(&self, line: String) {
        let mut state = self.lock();
        let bytes = state.bytes.saturating_add(line.len());
        if bytes > QUEUED_BYTES {
            state.lost = state.lost.saturating_add(1);
            return;
        }
        state.bytes = bytes;
        state.lines.push_back(line);
        drop(state);
        self.queued.notify_one();
    }

    /// The writer: writes what is queued, and reports lost lines (in `style`) once it has caught
    /// up.
    fn write_forever(&self, style: Style) {
        let mut batch = String::new();
        loop {
            let mut state = self.lock();
            state.writing = false;
            while state.lines.is_empty() && state.lost == 0 {
                self.drained.notify_all();
                state = self
                    .queued
                    .wait(state)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            batch.clear();
            state.lines.drain(..).for_each(|line| batch.push_str(&line));
            state.bytes = 0;
            if batch.is_empty() {
                // Caught up: say what the stall cost.
                let lost = std::mem::take(&mut state.lost);
                let _ = writeln!(
                    batch,
                    "{}[{}] {lost} log lines were lost: stderr was not read fast enough (serving went on)",
                    style.marker(log::Level::Warn),
                    module_path!()
                );
            }
            state.writing = true;
            drop(state);
            // A lost line is better than a dead health checker.
            let _ = std::io::stderr().lock().write_all(batch.as_bytes());
        }
    }

    /// Waits (at most `within`) until the writer has written everything queued.
    fn flush(&self, within: Duration) {
        let state = self.lock();
        let _ = self
            .drained
            .wait_timeout_while(state, within, |s| !s.lines.is_empty() || s.writing);
    }
}

/// How a line shows its level: depends on where stderr goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// A terminal, a pipe (Docker, a log shipper), a file: `LEVEL [target] message`.
    Plain,
    /// systemd's journal: `<N>[target] message`, `N` the sd-daemon priority.
    Journal,
}

impl Style {
    /// Where stderr goes: the journal when `JOURNAL_STREAM` (systemd's `DEVICE:INODE`, both
    /// decimal) is the device and inode of descriptor 2; a stderr redirected since then (a
    /// pipe, a file) is not the journal any more, whatever the variable says.
    fn of_stderr() -> Self {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return Self::Plain;
        };
        match rustix::fs::fstat(std::io::stderr()) {
            Ok(stat) if names(&stream.to_string_lossy(), stat.st_dev, stat.st_ino) => Self::Journal,
            _ => Self::Plain,
        }
    }

    /// What a line of `level` starts with (before `[target]`).
    fn marker(self, level: log::Level) -> &'static str {
        match (self, level) {
            (Self::Plain, log::Level::Error) => "ERROR ",
            (Self::Plain, log::Level::Warn) => "WARN  ",
            (Self::Plain, log::Level::Info) => "INFO  ",
            (Self::Plain, log::Level::Debug) => "DEBUG ",
            (Self::Plain, log::Level::Trace) => "TRACE ",
            (Self::Journal, log::Level::Error) => "<3>",
            (Self::Journal, log::Level::Warn) => "<4>",
            (Self::Journal, log::Level::Info) => "<6>",
            (Self::Journal, log::Level::Debug | log::Level::Trace) => "<7>",
        }
    }
}

/// Whether `journal_stream` (`JOURNAL_STREAM`'s value, `DEVICE:INODE` in decimal) names the file
/// with device `dev` and inode `ino`. Anything malformed names nothing.
fn names<D: std::str::FromStr + PartialEq, I: std::str::FromStr + PartialEq>(
    journal_stream: &str,
    dev: D,
    ino: I,
) -> bool {
    journal_stream
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<D>().ok()?, i.parse::<I>().ok()?)))
        .is_some_and(|(d, i)| d == dev && i == ino)
}

/// The process's logger.
struct Logger {
    spec: LogSpec,
    style: Style,
    /// `None` when the writer thread could not start: lines are then written directly.
    queue: Option<&'static Queue>,
}

impl Logger {
    /// The level for `target`: the longest matching module prefix, else the default.
    fn level(&self, target: &str) -> LevelFilter {
        self.spec
            .modules
            .iter()
            .filter(|(module, _)| {
                target == module
                    || target
                        .strip_prefix(module.as_str())
                        .is_some_and(|rest| rest.starts_with("::"))
            })
            .max_by_key(|(module, _)| module.len())
            .map_or(self.spec.default, |(_, level)| *level)
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= self.level(metadata.target())
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = String::new();
        let _ = write!(
            line,
            "{}[{}] ",
            self.style.marker(record.level()),
            record.target()
        );
        let message = record.args().to_string();
        for c in message.chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        line.push('\n');
        match self.queue {
            Some(queue) => queue.push(line),
            None => {
                let _ = std::io::stderr().lock().write_all(line.as_bytes());
            }
        }
    }

    fn flush(&self) {
        if let Some(queue) = self.queue {
            queue.flush(FLUSH_WAIT);
        }
    }
}

/// The queue of the installed logger.
static QUEUE: OnceLock<Queue> = OnceLock::new();

/// Installs the logger for `spec` and starts its writer thread (once; later calls do nothing).
pub fn init(spec: &LogSpec) {
    let max = spec
        .modules
        .iter()
        .map(|(_, level)| *level)
        .chain([spec.default])
        .max()
        .unwrap_or(LevelFilter::Off);
    if max == LevelFilter::Off || QUEUE.get().is_some() {
        return;
    }
    let style = Style::of_stderr();
    let queue: &'static Queue = QUEUE.get_or_init(Queue::default);
    let writer = std::thread::Builder::new()
        .name("log".into())
        .stack_size(WRITER_STACK)
        .spawn(move || queue.write_forever(style));
    let logger: &'static Logger = Box::leak(Box::new(Logger {
        spec: spec.clone(),
        style,
        queue: writer.is_ok().then_some(queue),
    }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

/// Writes `text` (whole lines) to stderr outside the logger: when stderr is the journal, each
/// line starts with the priority of `level` (`<3>` an error, `<4>` a warning), so that
/// `journalctl -p` finds it; elsewhere the text is written as it is. A closed or full stderr
/// loses it.
pub fn to_stderr(level: log::Level, text: &str) {
    let marker = match Style::of_stderr() {
        Style::Journal => Style::Journal.marker(level),
        Style::Plain => "",
    };
    let _ = std::io::stderr()
        .lock()
        .write_all(prefixed(marker, text).as_bytes());
}

/// Every line of `text` with `marker` before it.
fn prefixed(marker: &str, text: &str) -> String {
    let mut out = String::with_capacity(text.len().saturating_add(marker.len()));
    for line in text.split_inclusive('\n') {
        out.push_str(marker);
        out.push_str(line);
    }
    out
}

/// Waits (a second at most) until the lines logged so far are written: call before exiting.
pub fn flush() {
    log::logger().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let queue = Queue::default();
        let line = "x".repeat(1023) + "\n";
        for _ in 0..100 {
            queue.push(line.clone());
        }
        let state = queue.lock();
        assert_eq!(state.lines.len(), QUEUED_BYTES / line.len());
        assert_eq!(state.bytes, QUEUED_BYTES);
        assert_eq!(state.lost, 100 - 64);
    }

    #[test]
    fn journal_stream_names_one_device_and_inode() {
        assert!(names("64769:1234", 64769_u64, 1234_u64));
        assert!(!names("64769:1235", 64769_u64, 1234_u64));
        assert!(!names("64768:1234", 64769_u64, 1234_u64));
        for malformed in [
            "",
            ":",
            "64769",
            "64769:",
            ":1234",
            "64769:1234:5",
            "x:1234",
            "-1:1234",
        ] {
            assert!(!names(malformed, 64769_u64, 1234_u64), "{malformed:?}");
        }
    }

    #[test]
    fn the_journal_gets_priorities_instead_of_level_words() {
        use log::Level;
        let journal: Vec<_> = [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ]
        .map(|level| Style::Journal.marker(level))
        .into();
        assert_eq!(journal, ["<3>", "<4>", "<6>", "<7>", "<7>"]);
        for level in [
            Level::Error,
            Level::Warn,
            Level::Info,
            Level::Debug,
            Level::Trace,
        ] {
            // The plain marker is what `{:<5} ` of the level gave before the journal style.
            assert_eq!(Style::Plain.marker(level), format!("{level:<5} "));
        }
    }

    #[test]
    fn every_line_written_outside_the_logger_gets_the_marker() {
        assert_eq!(prefixed("<4>", "a\nb c\n"), "<4>a\n<4>b c\n");
        assert_eq!(prefixed("<3>", "no newline"), "<3>no newline");
        assert_eq!(prefixed("", "a\nb\n"), "a\nb\n");
        assert_eq!(prefixed("<3>", ""), "");
    }

    #[test]
    fn the_longest_module_prefix_wins() {
        let logger = Logger {
            queue: None,
            style: Style::Plain,
            spec: LogSpec {
                default: LevelFilter::Warn,
                modules: vec![
                    ("fastcgi_healthcheck".to_owned(), LevelFilter::Info),
                    ("fastcgi_healthcheck::probe".to_owned(), LevelFilter::Debug),
                ],
            },
        };
        assert_eq!(
            logger.level("fastcgi_healthcheck::probe"),
            LevelFilter::Debug
        );
        assert_eq!(
            logger.level("fastcgi_healthcheck::server"),
            LevelFilter::Info
        );
        assert_eq!(logger.level("fastcgi_healthcheck_other"), LevelFilter::Warn);
        assert_eq!(logger.level("fastcgi_client::client"), LevelFilter::Warn);
    }
}
