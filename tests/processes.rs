//! The full status page (`?full`) against a real php-fpm: workers in known states (idle, running
//! a 5 s script, waiting for a slow client's headers, reading a slow client's body) counted as
//! `ps` counts the pool's children; `max-oldest-request-seconds` failing while the script runs
//! and passing after, over HTTP and in `check --status`; a pool of 1,000 children read whole
//! within the answer's cap and the documented memory bound; a page past the cap (a fake peer:
//! php-fpm would need thousands of children) reported truncated, never guessed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::thread;
use std::time::Duration;

use common::fcgi::{
    answer, encode_params, fcgi_get, record, BEGIN_REQUEST, PARAMS, ROLE_RESPONDER, STDIN,
};
use common::sys::poll;
use common::{get, run_to_exit, wait_until, Behavior, FakePeer, PhpFpm, TempDir, Tool};

/// Peak RSS of the tool while it answers `/metrics` with `PROCESS_METRICS=per-process` for a
/// pool of 1,000 children (docs/endpoints.md). Measured 3.6 MB (release build), about 5 MB for
/// the tests' debug build.
const MAX_RSS_KIB: u64 = 8 * 1024;

/// The value of the sample `series` (the whole series text as it appears).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
        .parse()
        .unwrap()
}

/// `fastcgi_healthcheck_processes` for one state of pool `www`.
fn in_state(metrics: &str, state: &str) -> u64 {
    sample(
        metrics,
        &format!("fastcgi_healthcheck_processes{{pool=\"www\",state=\"{state}\"}}"),
    ) as u64
}

/// The pool's children as `ps` lists them.
fn ps_children(master: u32) -> usize {
    let out = Command::new("ps")
        .args(["--ppid", &master.to_string(), "--no-headers", "-o", "pid"])
        .output()
        .expect("ps (apt-get install procps)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn tool_for(fpm: &PhpFpm, extra: &[(&str, &str)]) -> Tool {
    let socket = fpm.socket_path().display().to_string();
    let mut env = vec![("DESTINATION", socket.as_str()), ("TIMEOUT", "5s")];
    env.extend_from_slice(extra);
    Tool::start(&env)
}

/// A client that sends BEGIN_REQUEST and then `rest`, and never finishes: php-fpm's worker waits
/// for it. Closed on drop.
fn slow_client(fpm: &PhpFpm, rest: &[u8]) -> UnixStream {
    let mut stream = UnixStream::connect(fpm.socket_path()).unwrap();
    let mut begin = ROLE_RESPONDER.to_be_bytes().to_vec();
    begin.extend_from_slice(&[0; 6]);
    stream.write_all(&record(BEGIN_REQUEST, 1, &begin)).unwrap();
    stream.write_all(rest).unwrap();
    stream
}

#[test]
fn workers_in_known_states_match_ps_and_a_long_request_fails_its_threshold() {
    let fpm = PhpFpm::unix_sized(5, "");
    let scripts = TempDir::new();
    let script = scripts.join("sleep.php");
    std::fs::write(&script, "<?php usleep(5000000); echo 'done';").unwrap();
    let tool = tool_for(&fpm, &[("PROCESS_METRICS", "aggregates")]);
    let stuck = "/fcgi-status?max-oldest-request-seconds=2";

    // At rest: every worker idle but the one answering the status page (once php-fpm, just
    // started, has counted every worker: it does so once a second).
    let at_rest = poll(Duration::from_secs(5), || {
        let metrics = get(tool.addr(), "/metrics").body;
        (in_state(&metrics, "Idle") == 4).then_some(metrics)
    });
    let metrics = at_rest.unwrap_or_else(|| get(tool.addr(), "/metrics").body);
    assert_eq!(in_state(&metrics, "Idle"), 4, "{metrics}");
    assert_eq!(in_state(&metrics, "Running"), 1, "{metrics}");
    let response = get(tool.addr(), stuck);
    response.assert_ok_status();
    assert!(
        response.body.contains("\nprocesses read: 5\n"),
        "{}",
        response.body
    );

    // A 5 s script, a client that never finishes its headers, one that never finishes its body.
    let socket = fpm.socket_path().to_owned();
    let script_path = script.display().to_string();
    let sleeper = thread::spawn(move || {
        fcgi_get(UnixStream::connect(socket).unwrap(), &script_path)
            .unwrap()
            .stdout
    });
    let params = encode_params(&[
        ("SCRIPT_FILENAME", script.to_str().unwrap()),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/upload?secret=\x1b[2J"),
        ("CONTENT_LENGTH", "100"),
        ("CONTENT_TYPE", "application/x-www-form-urlencoded"),
    ]);
    let headers = slow_client(&fpm, &record(PARAMS, 1, &params));
    let body = slow_client(
        &fpm,
        &[
            record(PARAMS, 1, &params),
            record(PARAMS, 1, &[]),
            record(STDIN, 1, b"a=1&"),
        ]
        .concat(),
    );
    let metrics = wait_until(
        Duration::from_secs(5),
        "workers running, reading headers, getting request information",
        || {
            let metrics = get(tool.addr(), "/metrics").body;
            // The fifth worker may still be `Finishing` the scrape before: poll until it idles.
            let seen = (
                in_state(&metrics, "Running"),
                in_state(&metrics, "Reading headers"),
                in_state(&metrics, "Getting request information"),
                in_state(&metrics, "Idle"),
            );
            (seen == (2, 1, 1, 1)).then_some(metrics)
        },
    );
    let counted: u64 = [
        "Idle",
        "Reading headers",
        "Getting request information",
        "Running",
        "Finishing",
        "Ending",
        "other",
    ]
    .iter()
    .map(|state| in_state(&metrics, state))
    .sum();
    assert_eq!(counted as usize, ps_children(fpm.master_pid()), "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "fastcgi_healthcheck_processes_left_out{pool=\"www\"}"
        ),
        0.0
    );
    assert!(
        !metrics.contains("upload") && !metrics.contains("secret"),
        "a request URI in /metrics:\n{metrics}"
    );
    drop(headers);
    drop(body);

    // While the script runs past 2 s: the threshold fails, over HTTP and in check --status.
    let response = wait_until(
        Duration::from_secs(4),
        "max-oldest-request-seconds=2 to fail while the script runs",
        || {
            let response = get(tool.addr(), stuck);
            (response.status == 503).then_some(response)
        },
    );
    assert!(
        response.body.starts_with("oldest request seconds ")
            && response.body.lines().next().unwrap().ends_with(" > 2"),
        "{}",
        response.body
    );
    assert!(
        !response.body.contains("secret") && !response.body.contains('\x1b'),
        "{}",
        response.body
    );
    let socket = fpm.socket_path().display().to_string();
    let check = run_to_exit(
        &[("DESTINATION", &socket), ("TIMEOUT", "5s")],
        &["check", "--status", "--max-oldest-request-seconds", "2"],
    );
    assert_eq!(check.status.code(), Some(1), "{}", check.stderr);
    assert!(
        check
            .stderr
            .starts_with("threshold: oldest request seconds "),
        "{}",
        check.stderr
    );

    // After it (once php-fpm has marked its worker idle, just after the answer): both pass.
    assert!(sleeper.join().unwrap().contains("done"));
    wait_until(
        Duration::from_secs(2),
        "max-oldest-request-seconds=2 to pass after the script",
        || (get(tool.addr(), stuck).status == 200).then_some(()),
    );
    let check = run_to_exit(
        &[("DESTINATION", &socket), ("TIMEOUT", "5s")],
        &["check", "--status", "--max-oldest-request-seconds", "2"],
    );
    assert_eq!(check.status.code(), Some(0), "{}", check.stderr);
}

/// The summary alone (`PROCESS_METRICS=off`, thresholds on summary fields) never asks `?full`.
#[test]
fn the_full_page_is_read_only_when_asked() {
    let page = "Content-type: text/plain\r\n\r\npool: www\naccepted conn: 7\ntotal processes: 1\n\n****\npid: 9\nstate: Running\nrequest duration: 3000000\n";
    let peer = FakePeer::start(Behavior::hold(answer(1, page)));
    let tool = Tool::probing("127.0.0.1", peer.port(), &[("PROCESS_METRICS", "off")]);
    get(tool.addr(), "/metrics").assert_ok_status();
    get(tool.addr(), "/fcgi-status?max-accepted-conn=100").assert_ok_status();
    let uris: Vec<String> = peer
        .requests()
        .iter()
        .filter_map(|r| r.param("REQUEST_URI"))
        .collect();
    assert_eq!(uris, ["/fpm-status", "/fpm-status"]);
    let response = get(tool.addr(), "/fcgi-status?max-oldest-request-seconds=2");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response
            .body
            .starts_with("oldest request seconds 3.000000 > 2\n"),
        "{}",
        response.body
    );
    assert_eq!(
        peer.requests()
            .last()
            .unwrap()
            .param("REQUEST_URI")
            .as_deref(),
        Some("/fpm-status?full")
    );
}

/// A page past the answer's cap: the summary counts, the per-process part is truncated, and a
/// threshold it cannot check fails saying so.
#[test]
fn a_page_past_the_cap_is_truncated_not_guessed() {
    // Children of about 1.1 KB (a long script path), so that fewer than 1,000 fit in the cap.
    let block = format!("\n************************\npid: 7\nstate: Idle\nstart time: 05/Dec/2026:16:21:24 +0000\nrequests: 1\nrequest duration: 10\nrequest URI: /x\nscript: /{}\nlast request cpu: 0.00\nlast request memory: 0\n", "s".repeat(950));
    let children = 1_200_000 / block.len();
    let mut page = format!("Content-type: text/plain\r\n\r\npool: www\naccepted conn: 7\nidle processes: {children}\ntotal processes: {children}\n");
    for _ in 0..children {
        page.push_str(&block);
    }
    let peer = FakePeer::start(Behavior::hold(answer(1, &page)));
    let tool = Tool::probing(
        "127.0.0.1",
        peer.port(),
        &[("PROCESS_METRICS", "per-process"), ("TIMEOUT", "5s")],
    );
    let response = get(tool.addr(), "/fcgi-status?max-oldest-request-seconds=30");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response.body.starts_with(
            "oldest request seconds unknown: the per-process part of the status page is truncated\n"
        ),
        "{}",
        response.body
    );
    assert!(
        response.body.contains("\ntotal processes: "),
        "{}",
        response.body
    );
    assert!(
        response.body.contains("\nprocesses truncated: yes\n"),
        "{}",
        response.body
    );
    let metrics = get(tool.addr(), "/metrics").body;
    let series = metrics.matches("\nphpfpm_process_state{").count();
    assert!(series > 0 && series < children.min(1000), "{series}");
    let left_out = sample(
        &metrics,
        "fastcgi_healthcheck_processes_left_out{pool=\"www\"}",
    );
    assert_eq!(left_out as usize, children - series);
    assert_eq!(
        sample(
            &metrics,
            "fastcgi_healthcheck_process_pages_truncated_total"
        ),
        2.0
    );
    assert_eq!(sample(&metrics, "phpfpm_up{pool=\"www\"}"), 1.0);
}

/// `KiB` of `field` (`VmHWM`, `VmRSS`) in /proc/PID/status.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix(" kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[test]
fn a_pool_of_1000_children_is_read_whole_within_the_cap_and_the_memory_bound() {
    let fpm = PhpFpm::unix_sized(1000, "");
    let tool = tool_for(&fpm, &[("PROCESS_METRICS", "per-process")]);
    let response = get(tool.addr(), "/fcgi-status?max-oldest-request-seconds=30");
    response.assert_ok_status();
    assert!(
        response.body.contains("\nprocesses read: 1000\n")
            && response.body.contains("\nprocesses truncated: no\n"),
        "{}",
        response.body
    );
    let before = memory_kib(tool.pid(), "VmHWM");
    let mut metrics = String::new();
    for _ in 0..3 {
        metrics = get(tool.addr(), "/metrics").body;
    }
    let peak = memory_kib(tool.pid(), "VmHWM");
    println!(
        "1,000 children: /metrics {} bytes, peak RSS {before} KiB before the scrapes, {peak} KiB after",
        metrics.len()
    );
    assert_eq!(metrics.matches("\nphpfpm_process_state{").count(), 1000);
    assert_eq!(metrics.matches("\nphpfpm_process_requests{").count(), 1000);
    assert_eq!(
        sample(
            &metrics,
            "fastcgi_healthcheck_processes_left_out{pool=\"www\"}"
        ),
        0.0
    );
    assert_eq!(
        sample(
            &metrics,
            "fastcgi_healthcheck_process_pages_truncated_total"
        ),
        0.0
    );
    let counted: u64 = ["Idle", "Running"]
        .iter()
        .map(|s| in_state(&metrics, s))
        .sum();
    assert_eq!(counted as usize, ps_children(fpm.master_pid()));
    // 100 clients at once share one read of the page, not 100 copies of it.
    let addr = tool.addr();
    let clients: Vec<_> = (0..100)
        .map(|_| {
            thread::spawn(move || get(addr, "/fcgi-status?max-oldest-request-seconds=30").status)
        })
        .collect();
    for client in clients {
        assert_eq!(client.join().unwrap(), 200);
    }
    let peak = memory_kib(tool.pid(), "VmHWM");
    println!("after 100 concurrent /fcgi-status: peak RSS {peak} KiB");
    assert!(
        peak <= MAX_RSS_KIB,
        "peak RSS {peak} KiB during /metrics of 1,000 children, over the documented {MAX_RSS_KIB} KiB"
    );
}

/// While php-fpm is busy a scrape repeats the last page's figures (stale): the summary and the
/// aggregates, kept as numbers, not the page, so the per-child series of `per-process` are not
/// repeated.
#[test]
fn a_busy_scrape_repeats_the_figures_not_the_children() {
    let page = "Content-type: text/plain\r\n\r\npool: www\naccepted conn: 7\ntotal processes: 2\n\n****\npid: 9\nstate: Running\nstart time: 05/Dec/2026:16:21:24 +0000\nrequest duration: 3000000\n\n****\npid: 10\nstate: Idle\n";
    let peer = FakePeer::start(Behavior::hold(answer(1, page)));
    let tool = Tool::probing(
        "127.0.0.1",
        peer.port(),
        &[("PROCESS_METRICS", "per-process"), ("TIMEOUT", "300ms")],
    );
    let fresh = get(tool.addr(), "/metrics").body;
    // Then php-fpm takes no more requests in time: the page's read times out.
    peer.set(Behavior::silent());
    let stale = get(tool.addr(), "/metrics").body;
    assert_eq!(
        sample(
            &stale,
            "fastcgi_healthcheck_status_page_stale{source=\"main\"}"
        ),
        1.0,
        "{stale}"
    );
    for series in [
        "phpfpm_up{pool=\"www\"}",
        "phpfpm_accepted_connections{pool=\"www\"}",
        "phpfpm_total_processes{pool=\"www\"}",
        "fastcgi_healthcheck_processes{pool=\"www\",state=\"Running\"}",
        "fastcgi_healthcheck_processes{pool=\"www\",state=\"Idle\"}",
        "fastcgi_healthcheck_oldest_request_seconds{pool=\"www\"}",
        "fastcgi_healthcheck_processes_left_out{pool=\"www\"}",
    ] {
        assert_eq!(sample(&stale, series), sample(&fresh, series), "{series}");
    }
    assert_eq!(
        fresh.matches("\nphpfpm_process_state{").count(),
        2,
        "{fresh}"
    );
    assert!(!stale.contains("\nphpfpm_process_"), "{stale}");
}
