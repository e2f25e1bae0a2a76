//! The log never stalls serving: a reader that stops reading stderr loses log lines (counted and
//! reported once it reads again), never probes; php-fpm's stderr is throttled like the other
//! warnings a client can cause.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::fcgi::{answer, record, PHP_FPM_PING_STDOUT, STDERR};
use common::tool::command;
use common::{free_port, get, Behavior, Client, FakePeer, Tool};

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
