//! `fastcgi-healthcheck check`: one probe, its verdict as the exit status.
//!
//! For Docker `HEALTHCHECK`, Kubernetes `exec` probes and cron jobs in images without curl or a
//! shell. Healthy: `ok` on stdout, exit 0. Unhealthy: one line on stderr (the reason word first,
//! as in the HTTP body), exit 1. Always within `TIMEOUT`.

use std::io::Write;

use crate::config::Config;
use crate::deadline;
use crate::probe::busy;
use crate::probe::report::Reporter;
use crate::probe::{Failure, Probe, Reason, Verdict};
use crate::proto::cgi;
use crate::proto::fcgi::Answer;
use crate::proto::status::{self, Threshold};

/// Exit status of a healthy check.
const HEALTHY: u8 = 0;
/// Exit status of an unhealthy check.
const UNHEALTHY: u8 = 1;

/// Probes once; prints the verdict (and with `verbose` the FastCGI answer); returns the exit
/// status. With `status`, checks php-fpm's status page against those thresholds instead.
pub fn run(config: &Config, verbose: bool, status: Option<&[Threshold]>) -> u8 {
    if let Some(thresholds) = status {
        return run_status(config, verbose, thresholds);
    }
    let probe = Probe::new(config);
    let (verdict, answer) = run_logged(&probe);
    if verbose {
        match &answer {
            Some(answer) => out(&describe(answer)),
            None => err(&format!(
                "no complete FastCGI answer from {}\n",
                probe.label()
            )),
        }
    }
    match verdict {
        Ok(()) => {
            out("ok\n");
            HEALTHY
        }
        Err(failure) => {
            err(&format!("{failure}\n"));
            UNHEALTHY
        }
    }
}

/// `check --live`: is php-fpm alive? Healthy: yes. Dead (refused, missing, a broken answer):
/// no, at once. Busy or timing out: alive if php-fpm answers anything (the probe's own
/// connection, kept open, or a new probe every `TIMEOUT`) within `BUSY_GRACE` of the first
/// probe; else `stuck`. So it can take up to `BUSY_GRACE` (plus `TIMEOUT`).
pub fn run_live(config: &Config) -> u8 {
    let probe = Probe::new(config);
    let verdict = smol::block_on(live(&probe, config.busy_grace));
    crate::os::log::flush();
    match verdict {
        Ok(note) => {
            out(&format!("ok{note}\n"));
            HEALTHY
        }
        Err(failure) => {
            err(&format!("{failure}\n"));
            UNHEALTHY
        }
    }
}

/// The liveness verdict of [`run_live`]; `Ok` carries a note for a busy pool.
async fn live(probe: &Probe, grace: Option<std::time::Duration>) -> Result<String, Failure> {
    let started = std::time::Instant::now();
    let reporter = Reporter::new();
    loop {
        let begun = std::time::Instant::now();
        let (verdict, answer, held) = probe.run_holding().await;
        let verdict = match verdict {
            Err(failure) if failure.reason == Reason::Timeout => {
                let own = u64::from(held.is_some());
                Err(busy::classify(
                    failure,
                    &probe.listen_queue(),
                    own,
                    probe.timeout(),
                ))
            }
            other => other,
        };
        reporter.report(probe, &verdict, answer.as_ref(), begun.elapsed());
        let failure = match verdict {
            Ok(()) => return Ok(String::new()),
            Err(failure) => failure,
        };
        let Some(grace) = grace.filter(|_| busy::waiting(failure.reason)) else {
            return Err(failure);
        };
        let until = deadline::later(started, grace);
        if let Some(held) = held {
            if let Some((_, Some(_))) = deadline::at(until, probe.finish(held)).await {
                return Ok(format!(
                    " ({}: php-fpm answered after {}ms)",
                    failure.reason,
                    started.elapsed().as_millis()
                ));
            }
        }
        if std::time::Instant::now() >= until {
            return Err(Failure::new(
                Reason::Stuck,
                format!(
                    "no progress for {grace:?} (BUSY_GRACE) while connections wait; last probe: {failure}"
                ),
            ));
        }
        // No connection to wait on (a full queue refused it): ask again after a pause.
        smol::Timer::after(
            probe
                .timeout()
                .min(until.saturating_duration_since(std::time::Instant::now())),
        )
        .await;
    }
}

/// Runs `probe` once and logs its outcome (shown with `RUST_LOG`), before the verdict line.
fn run_logged(probe: &Probe) -> (Verdict, Option<Answer>) {
    let started = std::time::Instant::now();
    let (verdict, answer) = smol::block_on(probe.run_keeping_answer());
    Reporter::new().report(probe, &verdict, answer.as_ref(), started.elapsed());
    crate::os::log::flush();
    (verdict, answer)
}

/// Writes to stdout; a closed or full stdout loses the text, it does not change the verdict.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes to stderr, as [`out`].
fn err(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// `check --status`: the status page must be readable and every threshold hold.
fn run_status(config: &Config, verbose: bool, thresholds: &[Threshold]) -> u8 {
    let probe = match status::needs_processes(thresholds) {
        true => Probe::status_full(config),
        false => Probe::status(config),
    };
    let (verdict, answer) = run_logged(&probe);
    match probe.read_status(verdict, answer) {
        Ok(page) => {
            let failed = status::evaluate(&page, thresholds);
            if verbose {
                out(&status::render(&page, &failed));
            }
            if failed.is_empty() {
                if !verbose {
                    out("ok\n");
                }
                HEALTHY
            } else {
                err(&format!("threshold: {}\n", failed.join("; ")));
                UNHEALTHY
            }
        }
        Err(failure) => {
            err(&format!("{failure}\n"));
            UNHEALTHY
        }
    }
}

/// The FastCGI answer, for `--verbose`: protocol status, then stdout and stderr, escaped so that
/// control characters from the peer cannot reach the terminal.
pub(crate) fn describe(answer: &Answer) -> String {
    let mut text = format!(
        "FastCGI END_REQUEST: protocol status {}, app status {}\n",
        answer.protocol_status, answer.app_status
    );
    for line in String::from_utf8_lossy(&answer.stdout).split_inclusive('\n') {
        text.push_str("stdout: ");
        text.push_str(
            &line
                .trim_end_matches(['\r', '\n'])
                .escape_debug()
                .to_string(),
        );
        text.push('\n');
    }
    if answer.stderr_len > 0 {
        text.push_str(&format!(
            "stderr ({} bytes): {}\n",
            answer.stderr_len,
            cgi::quote(&answer.stderr)
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_an_answer_without_raw_control_characters() {
        let answer = Answer {
            stdout: b"Content-type: text/plain\r\n\r\npong\x1b[2J".to_vec(),
            stderr: b"oops".to_vec(),
            stderr_len: 4,
            app_status: 0,
            protocol_status: 0,
            stdout_truncated: false,
        };
        let text = describe(&answer);
        assert!(
            text.contains("stdout: Content-type: text/plain\n"),
            "{text}"
        );
        assert!(text.contains("stdout: pong\\u{1b}[2J\n"), "{text}");
        assert!(text.contains("stderr (4 bytes): \"oops\""), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
