//! Busy is not dead: a real php-fpm (2 static workers) saturated by real PHP that sleeps, over TCP
//! and a Unix socket. `/fcgi-ping` fails `busy` with the kernel's queue in its reason while
//! `/fcgi-live` stays 200; the kept connection's answer is progress with its queue wait; a pool
//! that never moves is `stuck`; a dead one fails liveness at once; a php-fpm in another network
//! namespace works without the kernel figures; the kept connection is one at most and never
//! holds up a stop or an idle exit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::sleeper::{sleepers, Docroot};
use common::{
    get, run_to_exit, timed_get, wait_until, Behavior, Client, FakePeer, Listen, PhpFpm, Tool,
};

/// The tool's default `TIMEOUT`.
const TIMEOUT: Duration = Duration::from_millis(800);

/// What an answer may take beyond `TIMEOUT` on this shared machine (HTTP, the kernel view).
const SLACK: Duration = Duration::from_millis(700);

fn tool_for(fpm: &PhpFpm, extra: &[(&str, &str)]) -> Tool {
    match fpm.listen() {
        Listen::Tcp(addr) => Tool::probing(&addr.ip().to_string(), addr.port(), extra),
        Listen::Unix(path) => {
            let path = path.to_str().unwrap();
            let mut env = vec![("DESTINATION", path)];
            env.extend_from_slice(extra);
            Tool::start(&env)
        }
    }
}

/// The value of the metric line `name` (with its labels, exactly), if present.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
    })
}

fn metrics(tool: &Tool) -> String {
    let response = get(tool.addr(), "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

/// Saturated for a few seconds: busy with the queue in the reason, alive throughout, `/metrics`
/// within `TIMEOUT` with the kernel's queue and stale status figures, then the kept connection's
/// answer recorded as progress with its wait, and healthy again.
fn saturated(fpm: &PhpFpm) {
    let docroot = Docroot::new();
    let tool = tool_for(fpm, &[]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let before = metrics(&tool);
    assert_eq!(
        metric(&before, "fastcgi_healthcheck_listen_queue_available"),
        Some(1.0),
        "{before}"
    );
    assert_eq!(
        metric(
            &before,
            "fastcgi_healthcheck_status_page_stale{source=\"main\"}"
        ),
        Some(0.0)
    );

    // 2 workers sleep 2.5 s, 2 more clients wait in the queue (then sleep 2.5 s in turn).
    let clients = sleepers(fpm.listen(), &docroot, 4, 2500);
    let (busy, took) = wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        let (response, took) = timed_get(tool.addr(), "/fcgi-ping");
        (response.status != 200).then_some((response, took))
    });
    busy.assert_failure(503, "busy");
    assert!(
        busy.body
            .starts_with(&format!("busy: no worker answered within {TIMEOUT:?}; "))
            && busy.body.contains(" connections queued (backlog "),
        "{busy:?}"
    );
    assert!(took < TIMEOUT + SLACK, "busy took {took:?}");
    eprintln!(
        "{:?}: busy answered in {took:?}: {}",
        fpm.listen(),
        busy.body.trim_end()
    );
    tool.wait_for_log(&["WARN", "busy: "]);

    let (scrape, took) = timed_get(tool.addr(), "/metrics");
    assert!(
        took < TIMEOUT,
        "/metrics took {took:?} with php-fpm saturated"
    );
    eprintln!(
        "{:?}: /metrics answered in {took:?} while saturated",
        fpm.listen()
    );
    common::promtool::check_metrics(&scrape.body);
    let queued = metric(&scrape.body, "fastcgi_healthcheck_listen_queue_connections");
    assert!(queued.is_some_and(|q| q > 0.0), "{}", scrape.body);
    assert_eq!(
        metric(
            &scrape.body,
            "fastcgi_healthcheck_status_page_stale{source=\"main\"}"
        ),
        Some(1.0),
        "{}",
        scrape.body
    );
    assert!(
        scrape.body.contains("phpfpm_up{pool=\"www\"} 1\n"),
        "{}",
        scrape.body
    );
    assert_eq!(
        metric(&scrape.body, "fastcgi_healthcheck_kept_connections"),
        Some(1.0),
        "{}",
        scrape.body
    );

    // Alive throughout, while the sleepers run.
    while clients.iter().any(|c| !c.is_finished()) {
        let live = get(tool.addr(), "/fcgi-live");
        assert_eq!(live.status, 200, "/fcgi-live while busy: {live:?}");
    }
    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }
    let answered = "fastcgi_healthcheck_kept_connections_total{result=\"answered\"}";
    let text = wait_until(
        Duration::from_secs(5),
        "the kept connection's answer",
        || {
            let text = metrics(&tool);
            metric(&text, answered)
                .is_some_and(|n| n >= 1.0)
                .then_some(text)
        },
    );
    common::promtool::check_metrics(&text);
    let wait = metric(&text, "fastcgi_healthcheck_queue_wait_seconds_last").unwrap();
    eprintln!("{:?}: the kept connection waited {wait} s", fpm.listen());
    assert!(wait > TIMEOUT.as_secs_f64(), "queue wait {wait} s:\n{text}");
    assert!(metric(&text, "fastcgi_healthcheck_queue_wait_seconds_count").unwrap() >= 1.0);
    tool.wait_for_log(&["INFO", "kept open after its deadline", "in the queue"]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
    get(tool.addr(), "/fcgi-live").assert_ok();
}

#[test]
fn a_saturated_tcp_pool_is_busy_not_dead() {
    saturated(&PhpFpm::tcp());
}

#[test]
fn a_saturated_unix_pool_is_busy_not_dead() {
    saturated(&PhpFpm::unix());
}

/// Workers that never finish: after BUSY_GRACE without progress `/fcgi-live` fails `stuck`; once
/// `request_terminate_timeout` kills them it is 200 again.
#[test]
fn a_pool_without_progress_is_stuck_until_its_workers_are_killed() {
    let fpm = PhpFpm::tcp_with("request_terminate_timeout = 6s\n");
    let docroot = Docroot::new();
    let tool = tool_for(&fpm, &[("BUSY_GRACE", "3s"), ("TIMEOUT", "500ms")]);
    // The last progress is this answer's, after `saturated`: stuck cannot come before 3 s from it.
    let saturated = Instant::now();
    get(tool.addr(), "/fcgi-live").assert_ok();
    let clients = sleepers(fpm.listen(), &docroot, 3, 60_000);
    let stuck = wait_until(Duration::from_secs(8), "/fcgi-live to fail stuck", || {
        let response = get(tool.addr(), "/fcgi-live");
        (response.status != 200).then_some(response)
    });
    stuck.assert_failure(503, "stuck");
    assert!(
        saturated.elapsed() >= Duration::from_secs(3),
        "stuck after {:?}, before BUSY_GRACE=3s",
        saturated.elapsed()
    );
    assert!(stuck.body.contains("BUSY_GRACE"), "{stuck:?}");
    assert_eq!(
        metric(&metrics(&tool), "fastcgi_healthcheck_stuck"),
        Some(1.0)
    );
    // php-fpm kills the sleepers after 6 s; a fresh worker answers again.
    wait_until(
        Duration::from_secs(15),
        "/fcgi-live to be 200 again",
        || (get(tool.addr(), "/fcgi-live").status == 200).then_some(()),
    );
    assert_eq!(
        metric(&metrics(&tool), "fastcgi_healthcheck_stuck"),
        Some(0.0)
    );
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}

/// A dead php-fpm fails liveness at once, however long BUSY_GRACE is; `check --live` too.
#[test]
fn a_dead_pool_fails_liveness_at_once() {
    for mut fpm in [PhpFpm::tcp(), PhpFpm::unix()] {
        let tool = tool_for(&fpm, &[]);
        get(tool.addr(), "/fcgi-live").assert_ok();
        fpm.kill();
        let (response, took) = timed_get(tool.addr(), "/fcgi-live");
        assert_eq!(response.status, 503, "{response:?}");
        assert!(
            response.body.starts_with("connect_refused: ")
                || response.body.starts_with("connect_failed: "),
            "{response:?}"
        );
        assert!(took < Duration::from_millis(500), "took {took:?}");
        let destination = match fpm.listen() {
            Listen::Tcp(addr) => vec![
                ("DESTINATION".to_owned(), addr.ip().to_string()),
                ("DESTINATION_PORT".to_owned(), addr.port().to_string()),
            ],
            Listen::Unix(path) => vec![("DESTINATION".to_owned(), path.display().to_string())],
        };
        let env: Vec<(&str, &str)> = destination
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let started = Instant::now();
        let finished = run_to_exit(&env, &["check", "--live"]);
        assert_eq!(finished.status.code(), Some(1), "{:?}", finished.stderr);
        assert!(
            finished.stderr.starts_with("connect_"),
            "{:?}",
            finished.stderr
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}

/// `check --live` on a busy pool waits for php-fpm's answer (within BUSY_GRACE): alive.
#[test]
fn check_live_waits_out_a_busy_pool() {
    let fpm = PhpFpm::unix();
    let docroot = Docroot::new();
    let clients = sleepers(fpm.listen(), &docroot, 3, 2000);
    let path = fpm.socket_path().display().to_string();
    // Once the sleepers hold both workers, a plain check fails and a live one waits.
    wait_until(Duration::from_secs(5), "a plain check to time out", || {
        let finished = run_to_exit(
            &[("DESTINATION", path.as_str()), ("TIMEOUT", "300ms")],
            &["check"],
        );
        (finished.status.code() == Some(1)).then_some(())
    });
    let finished = run_to_exit(
        &[
            ("DESTINATION", path.as_str()),
            ("TIMEOUT", "300ms"),
            ("BUSY_GRACE", "20s"),
        ],
        &["check", "--live"],
    );
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert!(finished.stdout.starts_with("ok ("), "{:?}", finished.stdout);
    for client in clients {
        assert!(client.join().unwrap());
    }
}

/// php-fpm in a network namespace of its own (`unshare -n`), reached through its Unix socket's
/// path: the kernel figures are unavailable (said once), the probes work as before.
#[test]
fn another_network_namespace_has_no_kernel_figures_and_nothing_breaks() {
    let unshare = PathBuf::from("/usr/bin/unshare");
    assert!(
        unshare.exists(),
        "this test needs unshare: apt-get install util-linux"
    );
    let fpm = PhpFpm::unix_under(&["unshare", "-n"], "");
    let docroot = Docroot::new();
    let tool = tool_for(&fpm, &[]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let text = metrics(&tool);
    assert_eq!(
        metric(&text, "fastcgi_healthcheck_listen_queue_available"),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains("fastcgi_healthcheck_listen_queue_connections"));
    tool.wait_for_log(&[
        "WARN",
        "listen queue figures unavailable",
        "this is said once",
    ]);
    let clients = sleepers(fpm.listen(), &docroot, 4, 2000);
    let response = wait_until(Duration::from_secs(5), "/fcgi-ping to fail", || {
        let response = get(tool.addr(), "/fcgi-ping");
        (response.status != 200).then_some(response)
    });
    // Without the kernel's view a saturated pool is a timeout, as before; still alive.
    response.assert_failure(503, "timeout");
    get(tool.addr(), "/fcgi-live").assert_ok();
    metrics(&tool);
    let said = tool
        .logs()
        .iter()
        .filter(|l| l.contains("listen queue figures unavailable"))
        .count();
    assert_eq!(said, 1, "{:?}", tool.logs());
    for client in clients {
        assert!(client.join().unwrap());
    }
    wait_until(Duration::from_secs(5), "healthy again", || {
        (get(tool.addr(), "/fcgi-ping").status == 200).then_some(())
    });
}

/// One kept connection at most, however many probes fail; a stop and an idle exit do not wait
/// for it.
#[test]
fn the_kept_connection_is_one_and_never_holds_up_a_stop_or_an_idle_exit() {
    let fpm = PhpFpm::tcp();
    let docroot = Docroot::new();
    let mut tool = tool_for(&fpm, &[("TIMEOUT", "300ms")]);
    let clients = sleepers(fpm.listen(), &docroot, 3, 20_000);
    wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        (get(tool.addr(), "/fcgi-ping").body.starts_with("busy: ")).then_some(())
    });
    for _ in 0..8 {
        let busy = get(tool.addr(), "/fcgi-ping");
        busy.assert_failure(503, "busy");
        // Our own given-up connections, still queued, are not counted as others'.
        assert!(
            busy.body.contains("; 1 connections queued (backlog "),
            "{busy:?}"
        );
        let text = metrics(&tool);
        assert_eq!(
            metric(&text, "fastcgi_healthcheck_kept_connections"),
            Some(1.0),
            "{text}\n{:?}",
            tool.logs()
        );
        assert_eq!(
            metric(
                &text,
                "fastcgi_healthcheck_kept_connections_total{result=\"kept\"}"
            ),
            Some(1.0),
            "{text}"
        );
    }
    // A tool with IDLE_EXIT keeps a connection too, and still exits after IDLE_EXIT.
    let mut idle = tool_for(&fpm, &[("TIMEOUT", "300ms"), ("IDLE_EXIT", "1s")]);
    let text = get(idle.addr(), "/fcgi-ping").body + &metrics(&idle);
    assert!(text.starts_with("busy: "), "{text}");
    assert_eq!(
        metric(&text, "fastcgi_healthcheck_kept_connections"),
        Some(1.0)
    );
    let started = Instant::now();
    assert!(
        idle.wait_exit(Duration::from_secs(4))
            .is_some_and(|s| s.success()),
        "IDLE_EXIT=1s was held up by the kept connection"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    // A stop closes it at once (BUSY_GRACE is 60 s).
    tool.signal("TERM");
    let status = tool.wait_exit(Duration::from_secs(2));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}

/// `/fcgi-live` and `/fcgi-ping` asked at once share one FastCGI request; HEAD works.
#[test]
fn live_and_ping_share_one_probe_in_flight() {
    let peer = FakePeer::start(Behavior::Late(Duration::from_millis(400)));
    let tool = Tool::probing("127.0.0.1", peer.port(), &[("TIMEOUT", "2s")]);
    let mut ping = Client::connect(tool.addr());
    let mut live = Client::connect(tool.addr());
    ping.send(common::request_text("GET", "/fcgi-ping", &[]).as_bytes());
    live.send(common::request_text("GET", "/fcgi-live", &[]).as_bytes());
    ping.read_response("GET").assert_ok();
    live.read_response("GET").assert_ok();
    assert_eq!(peer.requests().len(), 1, "one FastCGI request for both");
    let head = Client::connect(tool.addr()).request("HEAD", "/fcgi-live");
    assert_eq!(
        (head.status, head.content_length(), head.body.as_str()),
        (200, Some(3), ""),
        "{head:?}"
    );
}

/// `BUSY_GRACE=off`: nothing is kept, `/fcgi-live` fails `busy` as `/fcgi-ping` does, and
/// `/metrics` repeats the last status page (stale) once its read failed at `TIMEOUT`.
#[test]
fn busy_grace_off_keeps_nothing_and_liveness_follows_the_ping() {
    let fpm = PhpFpm::tcp();
    let docroot = Docroot::new();
    let tool = tool_for(&fpm, &[("BUSY_GRACE", "off")]);
    metrics(&tool);
    let clients = sleepers(fpm.listen(), &docroot, 4, 3000);
    let live = wait_until(Duration::from_secs(5), "/fcgi-live to fail busy", || {
        let response = get(tool.addr(), "/fcgi-live");
        (response.status != 200).then_some(response)
    });
    live.assert_failure(503, "busy");
    let (scrape, took) = timed_get(tool.addr(), "/metrics");
    assert!(
        (TIMEOUT..TIMEOUT + SLACK).contains(&took),
        "/metrics took {took:?}"
    );
    for (name, value) in [
        (
            "fastcgi_healthcheck_status_page_stale{source=\"main\"}",
            1.0,
        ),
        ("fastcgi_healthcheck_kept_connections", 0.0),
        (
            "fastcgi_healthcheck_kept_connections_total{result=\"kept\"}",
            0.0,
        ),
    ] {
        assert_eq!(
            metric(&scrape.body, name),
            Some(value),
            "{name}: {}",
            scrape.body
        );
    }
    assert!(scrape.body.contains("phpfpm_up{pool=\"www\"} 1\n"));
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}
