//! `fastcgi-healthcheck check`: one probe, its verdict as the exit status.
//!
//! For Docker `HEALTHCHECK`, Kubernetes `exec` probes and cron jobs in images without curl or a
//! shell. Healthy: `ok` on stdout, exit 0. Unhealthy: one line on stderr (the reason word first,
//! as in the HTTP body), exit 1. Always within `TIMEOUT` (and a read of the kernel's queue): a
//! timeout is `busy` when others wait in php-fpm's queue, as `/fcgi-ping` says, and `--live`
//! asks the server's liveness ([`crate::liveness`]) about this one probe. When stderr is the
//! journal, an unhealthy line starts with `<4>` (a warning) and an unknown `--pool` with `<3>`
//! (an error). `--status` reads the page through the status lane (`STATUS_LISTEN`, or a pool's
//! `+lane`) when there is one and it answers.

use std::io::Write;
use std::time::Instant;

use crate::config::{Config, Destination, Listeners, Pools};
use crate::deadline;
use crate::join::join_all;
use crate::liveness::{self, Liveness, Observation, LANE_AFTER_PING};
use crate::os::discover;
use crate::os::listen_queue::View;
use crate::probe::lane::{self, Lane};
use crate::probe::report::Reporter;
use crate::probe::{Failure, Probe, Reason, Verdict};
use crate::proto::cgi;
use crate::proto::fcgi::Answer;
use crate::proto::status::{self, Status, Threshold};

/// Exit status of a healthy check.
const HEALTHY: u8 = 0;
/// Exit status of an unhealthy check.
const UNHEALTHY: u8 = 1;
/// Exit status of a `--pool` that names no pool (as a configuration error).
const UNKNOWN_POOL: u8 = 2;

/// What `check` asks each pool.
#[derive(Debug, Clone, Copy)]
pub enum Question<'a> {
    /// Is it healthy (the ping)?
    Ping,
    /// Is it alive (`--live`)?
    Live,
    /// Does its status page hold these thresholds (`--status`)?
    Status(&'a [Threshold]),
}

/// `check` with `POOLS`: `--pool NAME` asks that pool as `check` asks the one pool of
/// `DESTINATION` (the same output); without it every pool is asked at once, and the unhealthy
/// ones are printed one per line, `NAME reason: detail`.
pub fn run_pools(config: &Config, pool: Option<&str>, question: Question<'_>, verbose: bool) -> u8 {
    let pools = match pool_list(&config.pools) {
        Ok(pools) => pools,
        Err(error) => {
            err(&format!("{error}\n"));
            return UNHEALTHY;
        }
    };
    if let Some(name) = pool {
        let Some((_, at)) = pools.iter().find(|(known, _)| known == name) else {
            let known: Vec<&str> = pools.iter().map(|(n, _)| n.as_str()).collect();
            crate::os::log::to_stderr(
                log::Level::Error,
                &format!(
                    "--pool {name:?}: unknown pool; known pools are {}\n",
                    match known.is_empty() {
                        true => "none".to_owned(),
                        false => known.join(", "),
                    }
                ),
            );
            return UNKNOWN_POOL;
        };
        let config = Config {
            destination: at.main.clone(),
            status_listen: at.lane.clone(),
            pools: Pools::One,
            ..config.clone()
        };
        return match question {
            Question::Ping => run(&config, verbose, None),
            Question::Live => run_live(&config),
            Question::Status(thresholds) => run(&config, verbose, Some(thresholds)),
        };
    }
    if pools.is_empty() {
        if let Pools::Dir(dir) = &config.pools {
            err(&format!("{}\n", discover::none_found(dir)));
        }
        return UNHEALTHY;
    }
    let asks = pools
        .iter()
        .map(|(_, at)| ask(config, at, question))
        .collect();
    let answers = smol::block_on(join_all(asks));
    crate::os::log::flush();
    let (mut failed, mut healthy) = (String::new(), String::new());
    for ((name, _), answer) in pools.iter().zip(answers) {
        match answer {
            Err(line) => failed.push_str(&format!("{name} {line}\n")),
            // Without -v, a healthy pool's line only when it has a note (a status lane that
            // refused or is missing).
            Ok(note) if verbose || !note.is_empty() => {
                healthy.push_str(&format!("{name} ok{note}\n"));
            }
            Ok(_) => {}
        }
    }
    // -v: every pool's line (the FastCGI answers are for --pool NAME -v).
    out(&healthy);
    match failed.is_empty() {
        true => {
            out("ok\n");
            HEALTHY
        }
        false => {
            err(&failed);
            UNHEALTHY
        }
    }
}

/// The pools of `POOLS`, by name (a `dir:` directory read now).
fn pool_list(pools: &Pools) -> Result<Vec<(String, Listeners)>, String> {
    match pools {
        Pools::One => Ok(Vec::new()),
        Pools::Named(named) => Ok(named.clone()),
        Pools::Dir(dir) => {
            let found = discover::sockets(dir).map_err(|unreadable| unreadable.reason())?;
            Ok(found
                .pools
                .iter()
                .map(|(name, path)| {
                    let lane = found
                        .lane(name)
                        .map(|lane| Destination::Unix(lane.to_owned()));
                    let main = Destination::Unix(path.clone());
                    (name.clone(), Listeners { main, lane })
                })
                .collect())
        }
    }
}

/// One pool's answer to `question`: `Err` with its line when unhealthy, else a note for its
/// `ok` line (empty, or a status lane's fallback).
async fn ask(config: &Config, at: &Listeners, question: Question<'_>) -> Result<String, String> {
    let probe = Probe::ping_at(config, &at.main);
    match question {
        Question::Live => live(&probe, config, at.lane.as_ref())
            .await
            .map(|_| String::new())
            .map_err(|failure| failure.to_string()),
        Question::Ping => run_reported(&probe)
            .await
            .0
            .map(|()| String::new())
            .map_err(|failure| failure.to_string()),
        Question::Status(thresholds) => {
            let full = status::needs_processes(thresholds);
            let (page, note) = read_page(config, &at.main, at.lane.as_ref(), full).await;
            let page = page.map_err(|failure| format!("{failure}{note}"))?;
            let queued = status::needs_queued(thresholds).then(|| probe.listen_queue().queued());
            let failed = status::evaluate(&page, queued.as_ref(), thresholds);
            match failed.is_empty() {
                true => Ok(note),
                false => Err(format!("{}{note}", threshold_line(&failed))),
            }
        }
    }
}

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

/// `check --live`: is php-fpm alive? One probe, decided within `TIMEOUT` (and a read of the
/// kernel's queue) by the server's liveness: healthy, or busy (php-fpm holds our connection in
/// its queue, every worker on a request: exit 0 with a note), or dead (refused, missing, a
/// broken answer, a listener that does not take the connection: exit 1). One probe has no
/// history: a pool stuck with our connection in its queue looks busy (php-fpm's own page, read
/// through `pm.status_listen`, tells them apart).
pub fn run_live(config: &Config) -> u8 {
    let probe = Probe::new(config);
    let verdict = smol::block_on(live(&probe, config, config.status_listen.as_ref()));
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

/// The liveness verdict of [`run_live`]; `Ok` carries a note for a pool that did not answer.
/// With a status lane, its full page is read beside the ping and, when the ping waited,
/// again within [`LANE_AFTER_PING`]: two readings for the page rules.
async fn live(
    probe: &Probe,
    config: &Config,
    lane: Option<&Destination>,
) -> Result<String, Failure> {
    let lane = lane.map(|lane| Lane::new(config, lane));
    let started = Instant::now();
    let first = async {
        let lane = lane.as_ref()?;
        let read = lane.read(true, probe.label()).await;
        Some((read, Instant::now()))
    };
    let ((verdict, _, seen), first) = smol::future::zip(run_reported(probe), first).await;
    let mut liveness = Liveness::new(config.busy_grace);
    liveness.probed(&verdict, started, Instant::now());
    let waited = verdict.as_ref().err().is_some_and(liveness::waiting);
    if let (true, Some(lane)) = (waited, &lane) {
        if let Some((lane::Read::Page(Ok(page)), at)) = first {
            liveness.observed(&Observation::of(&page, at), None);
        }
        let again = deadline::at(
            deadline::after(LANE_AFTER_PING),
            lane.read(true, probe.label()),
        )
        .await;
        if let Some(lane::Read::Page(Ok(page))) = again {
            let others = seen.as_ref().and_then(|(view, own)| others(view, *own));
            liveness.observed(&Observation::of(&page, Instant::now()), others);
        }
    }
    liveness.live(&verdict, Instant::now())?;
    let Err(failure) = verdict else {
        return Ok(String::new());
    };
    Ok(match seen {
        Some((View::Seen(_), _)) if failure.reason == Reason::Timeout => format!(
            " ({failure}; php-fpm holds our connection in its queue: every worker is on a request)"
        ),
        Some((View::Unavailable(why), _)) => format!(" ({failure}; {why})"),
        _ => format!(" ({failure})"),
    })
}

/// The connections in the kernel's `view` besides `own` of ours (`None`: not readable).
fn others(view: &View, own: u64) -> Option<u64> {
    match view {
        View::Seen(queue) => Some(queue.queued.saturating_sub(own)),
        View::Unavailable(_) => None,
    }
}

/// Runs `probe` once and logs its outcome (shown with `RUST_LOG`), before the verdict line.
fn run_logged(probe: &Probe) -> (Verdict, Option<Answer>) {
    let (verdict, answer, _) = smol::block_on(run_reported(probe));
    crate::os::log::flush();
    (verdict, answer)
}

/// Runs `probe` once and logs its outcome. A timeout is judged by the kernel's view of the
/// queue (`busy` when others wait there, as `/fcgi-ping` judges it), returned when it was read
/// with how many of the connections it counts were ours.
async fn run_reported(probe: &Probe) -> (Verdict, Option<Answer>, Option<(View, u64)>) {
    let started = Instant::now();
    let (verdict, answer, held) = probe.run_holding().await;
    let (verdict, view) = match verdict {
        Err(failure) if failure.reason == Reason::Timeout => {
            let view = probe.listen_queue();
            let own = u64::from(held.is_some());
            let failure = liveness::classify(failure, &view, own, probe.timeout());
            (Err(failure), Some((view, own)))
        }
        other => (other, None),
    };
    drop(held);
    Reporter::new().report(probe, &verdict, answer.as_ref(), started.elapsed());
    (verdict, answer, view)
}

/// The line of failed thresholds (without its newline).
fn threshold_line(failed: &[String]) -> String {
    format!("threshold: {}", failed.join("; "))
}

/// Writes to stdout; a closed or full stdout loses the text, it does not change the verdict.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes an unhealthy verdict to stderr (as a warning, for the journal).
fn err(text: &str) {
    crate::os::log::to_stderr(log::Level::Warn, text);
}

/// The status page (`full`: `?full`), logged: through the status lane `lane` when there is one
/// and it answers, else through `destination`; and the note that says so after the verdict
/// when the lane refused or is missing (else empty).
async fn read_page(
    config: &Config,
    destination: &Destination,
    lane: Option<&Destination>,
    full: bool,
) -> (Result<Status, Failure>, String) {
    let probe = Probe::status_at(config, destination, full);
    let mut note = String::new();
    if let Some(lane) = lane {
        let lane = Lane::new(config, lane);
        match lane.read(full, probe.label()).await {
            lane::Read::Page(page) => return (page, note),
            lane::Read::Absent(failure) => note = lane.fallback_note(&failure, probe.label()),
        }
    }
    let (verdict, answer, _) = run_reported(&probe).await;
    (probe.read_status(verdict, answer), note)
}

/// `check --status`: the status page must be readable and every threshold hold.
fn run_status(config: &Config, verbose: bool, thresholds: &[Threshold]) -> u8 {
    let full = status::needs_processes(thresholds);
    let (page, note) = smol::block_on(read_page(
        config,
        &config.destination,
        config.status_listen.as_ref(),
        full,
    ));
    crate::os::log::flush();
    match page {
        Ok(page) => {
            let queued = status::needs_queued(thresholds)
                .then(|| Probe::new(config).listen_queue().queued());
            let failed = status::evaluate(&page, queued.as_ref(), thresholds);
            if verbose {
                out(&status::render(&page, queued.as_ref(), &failed));
                if !note.is_empty() {
                    out(&format!("{}\n", note.trim_start()));
                }
            }
            if failed.is_empty() {
                if !verbose {
                    out(&format!("ok{note}\n"));
                }
                HEALTHY
            } else {
                err(&format!("{}{note}\n", threshold_line(&failed)));
                UNHEALTHY
            }
        }
        Err(failure) => {
            err(&format!("{failure}{note}\n"));
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
