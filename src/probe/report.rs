//! The log of a probe's outcome, kept by whoever runs the probe (the server, `check`): the words
//! of the lines and their throttles. A client controls how often probes run, so the lines a
//! probe can cause (unhealthy verdicts, the peer's stderr) are throttled: a few per window and
//! a count of the rest.

use std::fmt;
use std::time::{Duration, Instant};

use log::{debug, warn};

use crate::proto::cgi;
use crate::proto::fcgi::Answer;
use crate::throttle::{Gate, Throttle};

use super::{Probe, Verdict};

/// At most this many unhealthy verdicts are logged per second; the rest are counted.
const LOGGED_FAILURES_PER_SECOND: u32 = 10;

/// At most this many answers' stderr are logged per 10 s; the rest are counted.
const LOGGED_STDERR_PER_10S: u32 = 3;

/// Logs the outcomes of one probe's runs.
#[derive(Debug)]
pub(crate) struct Reporter {
    failures: Throttle,
    stderr: Throttle,
}

impl Reporter {
    pub(crate) const fn new() -> Self {
        Self {
            failures: Throttle::new(Duration::from_secs(1), LOGGED_FAILURES_PER_SECOND),
            stderr: Throttle::new(Duration::from_secs(10), LOGGED_STDERR_PER_10S),
        }
    }

    /// Logs one run of `probe` that took `took`: the peer's stderr and an unhealthy verdict as
    /// warnings (throttled), the answer and a healthy verdict at debug level.
    pub(crate) fn report(
        &self,
        probe: &Probe,
        verdict: &Verdict,
        answer: Option<&Answer>,
        took: Duration,
    ) {
        let (label, path) = (probe.label(), probe.path());
        if let Some(answer) = answer.filter(|a| a.stderr_len > 0) {
            if let Gate::Log { suppressed } = self.stderr.gate(Instant::now()) {
                warn!(
                    "probe {label} {path}: the FastCGI server wrote {} bytes to stderr: {}{}",
                    answer.stderr_len,
                    cgi::quote(&answer.stderr),
                    Suppressed(suppressed, "answers with stderr")
                );
            }
        }
        if let Some(answer) = answer {
            debug!(
                "probe {label} {path}: sent {} bytes (BEGIN_REQUEST, PARAMS, STDIN); got {} bytes of stdout {}, \
                 {} bytes of stderr, END_REQUEST app status {} protocol status {}",
                probe.request_len(),
                answer.stdout.len(),
                cgi::quote(&answer.stdout),
                answer.stderr_len,
                answer.app_status,
                answer.protocol_status
            );
        }
        match verdict {
            Ok(()) => debug!("probe {label} {path}: healthy in {took:?}"),
            Err(failure) => {
                if let Gate::Log { suppressed } = self.failures.gate(Instant::now()) {
                    warn!(
                        "probe {label} {path}: unhealthy after {}ms: {failure}{}",
                        took.as_millis(),
                        Suppressed(suppressed, "unhealthy verdicts")
                    );
                }
            }
        }
    }
}

/// ` (N more WHAT were not logged)` when a throttle suppressed N lines, else nothing.
struct Suppressed(u64, &'static str);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} more {} were not logged)", self.1),
        }
    }
}
