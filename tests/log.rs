//! The log never stalls serving: a reader that stops reading stderr loses log lines (counted and
//! reported once it reads again), never probes; php-fpm's stderr is throttled like the other
//! warnings a client can cause. When stderr is systemd's journal, lines carry its priorities.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::fcgi::{answer, record, PHP_FPM_PING_STDOUT, STDERR};
use common::sys::{poll, signal};
use common::tool::command;
use common::{free_port, get, Behavior, Client, FakePeer, TempDir, Tool};

/// A healthy answer preceded by a PHP notice on FastCGI stderr, as a custom `PING_PATH` script
/// that triggers a notice gives it.
fn noisy_peer() -> FakePeer {
    let mut bytes = record(
        STDERR,
        1,
        b"PHP Notice:  Undefined variable: x in /var/www/ping.php on line 3",
    );
    bytes.extend(answer(1, PHP_FPM_PING_STDOUT));
    FakePeer::start(Behavior::hold(bytes))
}

/// The reproduction: php-fpm writes to stderr with every answer, and the tool's stderr
/// is a pipe nobody drains (64 KiB fill up after a few hundred lines). Every probe must still be
/// answered promptly; once the pipe is read again, the tool says how many lines were lost.
#[test]
fn an_undrained_stderr_never_stalls_a_probe() {
    let peer = noisy_peer();
    let addr = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    let (server, port) = (addr.to_string(), peer.port().to_string());
    // debug: several lines per probe, none of them throttled.
    let mut child = command(
        &[
            ("SERVER", server.as_str()),
            ("DESTINATION_PORT", port.as_str()),
            ("RUST_LOG", "debug"),
        ],
        &[],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = child.stderr.take().unwrap();
    common::wait_until(Duration::from_secs(10), "the tool to listen", || {
        std::net::TcpStream::connect(addr).ok()
    });

    let mut slowest = Duration::ZERO;
    for i in 0..2000 {
        let started = Instant::now();
        let mut client = Client::connect(addr);
        let response = client
            .try_send(b"GET /fcgi-ping HTTP/1.1\r\nHost: t\r\n\r\n")
            .and_then(|()| client.try_read_response("GET"));
        let took = started.elapsed();
        match response {
            Ok(response) => response.assert_ok(),
            Err(error) => {
                let _ = child.kill();
                panic!("probe {i} failed after {took:?} while nobody read stderr: {error}");
            }
        }
        slowest = slowest.max(took);
    }
    // A stalled log stalls for good (the read above times out after 10 s); this bound is
    // generous for a busy machine.
    assert!(
        slowest < Duration::from_secs(5),
        "the slowest probe took {slowest:?}"
    );

    // Read the pipe again: the writer catches up and reports what it dropped.
    let (lines, received) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    get(addr, "/fcgi-ping").assert_ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if line.contains("log lines were lost") => break line,
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "no report of lost log lines; the last lines read:\n{}",
                    seen[seen.len().saturating_sub(20)..].join("\n")
                );
            }
        }
    };
    assert!(report.starts_with("WARN"), "{report}");
    let lost: u64 = report
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("no count in {report:?}"));
    assert!(lost > 0, "{report}");
    let _ = child.kill();
    let _ = child.wait();
}

/// php-fpm's stderr is logged like every other warning a client can cause: a few lines per
/// second and a count of the rest, not one line per probe.
#[test]
fn php_fpm_stderr_is_throttled() {
    let peer = noisy_peer();
    let tool = Tool::probing("127.0.0.1", peer.port(), &[]);
    for _ in 0..200 {
        get(tool.addr(), "/fcgi-ping").assert_ok();
    }
    // The probes are answered; the throttled lines come with them (or not at all).
    get(tool.addr(), "/health").assert_ok();
    let logs = tool.logs();
    let noted = logs
        .iter()
        .filter(|line| line.contains("to stderr"))
        .count();
    assert!(
        noted >= 1,
        "php-fpm's stderr was not logged at all: {logs:#?}"
    );
    assert!(
        noted <= 30,
        "{noted} lines about php-fpm's stderr for 200 probes: {:#?}",
        &logs[..10]
    );
}

/// `JOURNAL_STREAM` for `path`, as systemd formats it for the journal's stream: `DEVICE:INODE`,
/// both decimal.
fn journal_stream_of(path: &Path) -> String {
    let meta = std::fs::metadata(path).unwrap();
    format!("{}:{}", meta.dev(), meta.ino())
}

/// Runs the tool with stderr appended to `log` and `JOURNAL_STREAM` set to `journal_stream` (if
/// any), at debug level: it logs where it listens (info), one refused probe (warn) and the
/// probe's steps (debug), then stops on SIGTERM. Returns what it wrote to `log`.
fn log_lines(log: &Path, journal_stream: Option<&str>) -> Vec<String> {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let addr = SocketAddr::new(ip, free_port(ip));
    // Nothing listens there: the probe fails with connect_refused, which is logged as a warning.
    let (server, refused) = (addr.to_string(), free_port(ip).to_string());
    let mut env = vec![
        ("SERVER", server.as_str()),
        ("DESTINATION", "127.0.0.1"),
        ("DESTINATION_PORT", refused.as_str()),
        ("RUST_LOG", "debug"),
    ];
    if let Some(stream) = journal_stream {
        env.push(("JOURNAL_STREAM", stream));
    }
    let stderr = File::options().append(true).open(log).unwrap();
    let mut child = command(&env, &[])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    common::wait_until(Duration::from_secs(10), "the tool to listen", || {
        std::net::TcpStream::connect(addr).ok()
    });
    let response = get(addr, "/fcgi-ping");
    assert_ne!(
        response.status, 200,
        "a probe of a closed port: {response:?}"
    );
    assert!(signal(&[child.id()], "TERM"), "kill -TERM {}", child.id());
    let exited = poll(Duration::from_secs(5), || child.try_wait().ok().flatten());
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the tool did not exit within 5 s of SIGTERM");
    }
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether some line of `lines` starts with `marker` and contains `text`.
fn has(lines: &[String], marker: &str, text: &str) -> bool {
    lines
        .iter()
        .any(|line| line.starts_with(marker) && line.contains(text))
}

/// Under systemd, stderr is a stream to the journal and `JOURNAL_STREAM` names it: each line then
/// starts with its sd-daemon priority (`<4>` for a warning), which journald stores as the entry's
/// priority, and has no level word. A stderr that is not that very stream (redirected to a file
/// or a pipe, or the variable unset) gets the plain lines.
#[test]
fn lines_carry_journal_priorities_only_when_stderr_is_the_journal() {
    let dir = TempDir::new();
    let (journal, other) = (dir.join("journal"), dir.join("other"));
    File::create(&journal).unwrap();
    File::create(&other).unwrap();

    let lines = log_lines(&journal, Some(&journal_stream_of(&journal)));
    let shown = lines.join("\n");
    assert!(
        has(&lines, "<6>[fastcgi_healthcheck", "listening on"),
        "{shown}"
    );
    assert!(
        has(&lines, "<4>[fastcgi_healthcheck", "connect_refused"),
        "{shown}"
    );
    assert!(has(&lines, "<7>[", ""), "no debug line at <7>:\n{shown}");
    for line in &lines {
        let priority = line.get(..4).unwrap_or_default();
        assert!(
            ["<3>[", "<4>[", "<6>[", "<7>["].contains(&priority),
            "a line without a journal priority: {line:?}\n{shown}"
        );
    }

    // The same run with JOURNAL_STREAM naming another file (stderr was redirected since), and
    // without it: the plain lines.
    let stream_of_other = journal_stream_of(&other);
    for (case, stream) in [
        ("another file", Some(stream_of_other.as_str())),
        ("unset", None),
    ] {
        let log = dir.join(&format!("plain-{}", case.replace(' ', "-")));
        File::create(&log).unwrap();
        let lines = log_lines(&log, stream);
        let shown = lines.join("\n");
        assert!(
            has(&lines, "INFO  [fastcgi_healthcheck", "listening on"),
            "JOURNAL_STREAM {case}:\n{shown}"
        );
        assert!(
            has(&lines, "WARN  [fastcgi_healthcheck", "connect_refused"),
            "JOURNAL_STREAM {case}:\n{shown}"
        );
        assert!(
            lines.iter().all(|line| !line.starts_with('<')),
            "JOURNAL_STREAM {case}: a journal priority on a plain stderr:\n{shown}"
        );
    }
}

/// Runs the tool to its exit with `env` and `args`, stderr appended to `log` (with
/// `JOURNAL_STREAM` naming that file when `journal`); returns its exit code and what it wrote.
fn exit_with_stderr_in(
    log: &Path,
    journal: bool,
    env: &[(&str, &str)],
    args: &[&str],
) -> (i32, String) {
    File::create(log).unwrap();
    let stream = journal_stream_of(log);
    let mut env = env.to_vec();
    if journal {
        env.push(("JOURNAL_STREAM", stream.as_str()));
    }
    let stderr = File::options().append(true).open(log).unwrap();
    let mut child = command(&env, args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let status = poll(Duration::from_secs(30), || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{args:?} with {env:?} did not exit within 30 s");
    };
    (
        status.code().unwrap_or(-1),
        std::fs::read_to_string(log).unwrap(),
    )
}

/// The lines written outside the logger carry the journal's priority too, so that `journalctl -p
/// err` finds the fatal ones and `-p warning` an unhealthy `check`: a setting refused before
/// logging starts, a SERVER that cannot be listened on, `check`'s verdict (with and without
/// RUST_LOG), an unknown `check --pool`. On a plain stderr they stay as they were.
#[test]
fn fatal_errors_and_check_verdicts_carry_journal_priorities() {
    let dir = TempDir::new();
    let log = dir.join("stderr");
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let taken = std::net::TcpListener::bind((ip, 0)).unwrap();
    let server = taken.local_addr().unwrap().to_string();
    let refused = free_port(ip).to_string();
    let socket = dir.join("nothing.sock").display().to_string();
    let pools = format!("www={socket}");
    struct Case<'a> {
        name: &'a str,
        env: Vec<(&'a str, &'a str)>,
        args: Vec<&'a str>,
        code: i32,
        /// The priority the journal's first line starts with, then `text`.
        priority: &'a str,
        text: &'a str,
    }
    let cases = [
        Case {
            name: "a refused setting",
            env: vec![("TIMEOUT", "soon")],
            args: vec![],
            code: 2,
            priority: "<3>",
            text: "fastcgi-healthcheck: TIMEOUT=",
        },
        Case {
            name: "a SERVER in use",
            env: vec![("SERVER", server.as_str())],
            args: vec![],
            code: 1,
            priority: "<3>",
            text: "fastcgi-healthcheck: cannot listen on SERVER=",
        },
        Case {
            name: "an unhealthy check",
            env: vec![("DESTINATION_PORT", refused.as_str())],
            args: vec!["check"],
            code: 1,
            priority: "<4>",
            text: "connect_refused: ",
        },
        Case {
            name: "an unhealthy check with RUST_LOG",
            env: vec![("DESTINATION", socket.as_str()), ("RUST_LOG", "error")],
            args: vec!["check"],
            code: 1,
            priority: "<4>",
            text: "connect_failed: ",
        },
        Case {
            name: "an unknown check --pool",
            env: vec![("POOLS", pools.as_str())],
            args: vec!["check", "--pool", "api"],
            code: 2,
            priority: "<3>",
            text: "--pool \"api\": unknown pool; known pools are www",
        },
        Case {
            name: "check --status without a status page",
            env: vec![("STATUS_PATH", "off")],
            args: vec!["check", "--status"],
            code: 2,
            priority: "<3>",
            text: "fastcgi-healthcheck: check --status needs a status page",
        },
    ];
    for Case {
        name: case,
        env,
        args,
        code,
        priority,
        text,
    } in &cases
    {
        let (exit, journal) = exit_with_stderr_in(&log, true, env, args);
        assert_eq!(exit, *code, "{case}: {journal}");
        let first = journal.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("{priority}{text}")),
            "{case}: the journal's line is not {priority}{text}...:\n{journal}"
        );
        assert!(
            journal.lines().all(|line| line.starts_with('<')),
            "{case}: a line without a priority:\n{journal}"
        );
        let (exit, plain) = exit_with_stderr_in(&log, false, env, args);
        assert_eq!(exit, *code, "{case}: {plain}");
        assert!(
            plain.lines().next().unwrap_or_default().starts_with(text),
            "{case}: the plain line changed:\n{plain}"
        );
        assert!(
            !plain.contains('<'),
            "{case}: a priority on a plain stderr:\n{plain}"
        );
    }
    drop(taken);
}
