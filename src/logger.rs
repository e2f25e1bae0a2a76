//! The log: one line per record on stderr, `LEVEL [target] message`, levels per module from
//! `RUST_LOG`.
//!
//! Written here rather than taken from a logging crate because a log must never take the
//! process down: a closed or full stderr (a log shipper that restarted, `2>/dev/full`) loses
//! lines, it does not panic. Control characters are escaped, so nothing a peer sends can forge
//! log lines or reach a terminal raw.

use std::fmt::Write as _;
use std::io::Write as _;

use log::{LevelFilter, Log, Metadata, Record};

use crate::config::LogSpec;

/// The process's logger.
struct Logger {
    spec: LogSpec,
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
        let _ = write!(line, "{:<5} [{}] ", record.level(), record.target());
        let message = record.args().to_string();
        for c in message.chars() {
            if c.is_control() {
                line.extend(c.escape_default());
            } else {
                line.push(c);
            }
        }
        line.push('\n');
        // A lost line is better than a dead health checker.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().lock().flush();
    }
}

/// Installs the logger for `spec` (once; later calls do nothing).
pub fn init(spec: &LogSpec) {
    let max = spec
        .modules
        .iter()
        .map(|(_, level)| *level)
        .chain([spec.default])
        .max()
        .unwrap_or(LevelFilter::Off);
    let logger: &'static Logger = Box::leak(Box::new(Logger { spec: spec.clone() }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_module_prefix_wins() {
        let logger = Logger {
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
