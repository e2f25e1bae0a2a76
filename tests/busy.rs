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
    // The first failure may still be `timeout`: the kernel's view is read at most once a
    // second, and the scrape above read it before the sleepers came.
    let (busy, took) = wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        let (response, took) = timed_get(tool.addr(), "/fcgi-ping");
        (response.body.starts_with("busy: ")).then_some((response, took))
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

/// `check --live` answers within `TIMEOUT` in every state, from one probe and the kernel's
/// queue: healthy 0; busy 0 with a note (others queued, or every worker on a long request with
/// only our connection waiting); dead 1 (refused, a socket file missing). Plain `check` says
/// `busy` under saturation, as `/fcgi-ping` does.
#[test]
fn check_live_answers_within_the_timeout_in_every_state() {
    let timeout = Duration::from_millis(300);
    let mut fpm = PhpFpm::unix();
    let docroot = Docroot::new();
    let path = fpm.socket_path().display().to_string();
    let env = [("DESTINATION", path.as_str()), ("TIMEOUT", "300ms")];
    let check = |args: &[&str]| {
        let started = Instant::now();
        let finished = run_to_exit(&env, args);
        (finished, started.elapsed())
    };
    let (healthy, took) = check(&["check", "--live"]);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert_eq!(healthy.stdout, "ok");
    eprintln!("check --live, healthy: {took:?}");

    // Every worker on a long request, only our connection waiting.
    let long = sleepers(fpm.listen(), &docroot, 2, 4000);
    let (alone, took) = wait_until(Duration::from_secs(5), "every worker to be taken", || {
        let (finished, took) = check(&["check", "--live"]);
        (finished.stdout.starts_with("ok (")).then_some((finished, took))
    });
    assert_eq!(alone.status.code(), Some(0), "{alone:?}");
    assert!(
        alone.stdout.starts_with("ok (timeout: ")
            && alone
                .stdout
                .contains("php-fpm holds our connection in its queue"),
        "{alone:?}"
    );
    assert!(took < timeout + SLACK, "check --live took {took:?}");
    eprintln!("check --live, every worker on a long request: {took:?}");

    // Others queued: busy, for --live (alive) and for a plain check (unhealthy), as /fcgi-ping.
    let crowd = sleepers(fpm.listen(), &docroot, 3, 3000);
    let (busy, took) = wait_until(
        Duration::from_secs(5),
        "others to wait in the queue",
        || {
            let (finished, took) = check(&["check", "--live"]);
            (finished.stdout.starts_with("ok (busy: ")).then_some((finished, took))
        },
    );
    assert_eq!(busy.status.code(), Some(0), "{busy:?}");
    assert!(took < timeout + SLACK, "check --live took {took:?}");
    eprintln!("check --live, busy: {took:?}: {}", busy.stdout.trim_end());
    let (plain, took) = check(&["check"]);
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert!(
        plain
            .stderr
            .starts_with("busy: no worker answered within 300ms; "),
        "{plain:?}"
    );
    assert!(took < timeout + SLACK, "check took {took:?}");

    // Dead: refused (the socket file left by a crash), then missing.
    fpm.kill();
    let (refused, took) = check(&["check", "--live"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    assert!(refused.stderr.starts_with("connect_"), "{refused:?}");
    assert!(took < timeout + SLACK, "check --live took {took:?}");
    drop(fpm);
    let (missing, _) = check(&["check", "--live"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(
        missing.stderr.starts_with("connect_failed: "),
        "{missing:?}"
    );
    for client in long.into_iter().chain(crowd) {
        let _ = client.join();
    }
}

/// Frozen workers (`kill -STOP`) with only our connection queued look like every worker on a
/// long request to one probe: `check --live` exits 0 within `TIMEOUT` (one shot has no history:
/// failing `stuck` needs php-fpm's own page, through `pm.status_listen`), and never waits for
/// `BUSY_GRACE`.
#[test]
fn check_live_on_frozen_workers_answers_within_the_timeout() {
    let fpm = PhpFpm::unix();
    let path = fpm.socket_path().display().to_string();
    fpm.stop_workers();
    let started = Instant::now();
    let finished = run_to_exit(
        &[("DESTINATION", path.as_str()), ("TIMEOUT", "300ms")],
        &["check", "--live"],
    );
    let took = started.elapsed();
    fpm.resume_workers();
    assert_eq!(finished.status.code(), Some(0), "{finished:?}");
    assert!(finished.stdout.starts_with("ok (timeout: "), "{finished:?}");
    assert!(took < Duration::from_millis(300) + SLACK, "took {took:?}");
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
        "listen queue figures unavailable: no listening Unix socket of this network namespace",
        "said again when the cause changes",
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
    // Another cause: php-fpm stopped and its socket file is gone. Said once more, naming it.
    drop(fpm);
    wait_until(Duration::from_secs(5), "the new cause to be said", || {
        metrics(&tool);
        tool.logs()
            .iter()
            .any(|l| l.contains("listen queue figures unavailable: the socket file "))
            .then_some(())
    });
    metrics(&tool);
    let said = tool
        .logs()
        .iter()
        .filter(|l| l.contains("listen queue figures unavailable"))
        .count();
    assert_eq!(said, 2, "{:?}", tool.logs());
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
    // Busy once the kernel's view (read at most once a second) shows the sleepers.
    let live = wait_until(Duration::from_secs(5), "/fcgi-live to fail busy", || {
        let response = get(tool.addr(), "/fcgi-live");
        (response.body.starts_with("busy: ")).then_some(response)
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

/// Stuck is counted from when waiting began, not from the last answer seen: a `/fcgi-live` asked
/// less often than `BUSY_GRACE` is alive at its first busy probe, and stuck `BUSY_GRACE` after it.
#[test]
fn stuck_counts_from_when_waiting_began() {
    let fpm = PhpFpm::tcp();
    let docroot = Docroot::new();
    let tool = tool_for(&fpm, &[("BUSY_GRACE", "3s"), ("TIMEOUT", "500ms")]);
    get(tool.addr(), "/fcgi-live").assert_ok();
    let answered = Instant::now();
    let clients = sleepers(fpm.listen(), &docroot, 3, 30_000);
    wait_until(Duration::from_secs(5), "a sleeper to queue", || {
        (common::sys::listen_queue(fpm.port()) >= 1).then_some(())
    });
    // Nobody asks for longer than the grace after the last answer (the scenario's gap, not a
    // wait for readiness).
    std::thread::sleep(Duration::from_secs(4).saturating_sub(answered.elapsed()));
    let first = Instant::now();
    let live = get(tool.addr(), "/fcgi-live");
    assert_eq!(
        live.status,
        200,
        "the first busy probe, {:?} after the last answer: {live:?}",
        answered.elapsed()
    );
    let stuck = wait_until(Duration::from_secs(10), "/fcgi-live to fail stuck", || {
        let response = get(tool.addr(), "/fcgi-live");
        (response.status != 200).then_some(response)
    });
    stuck.assert_failure(503, "stuck");
    assert!(
        first.elapsed() >= Duration::from_secs(3),
        "stuck {:?} after waiting began, before BUSY_GRACE=3s",
        first.elapsed()
    );
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}

/// A hung pool with no traffic is not busy: the pool's own status-page reads, in flight beside a
/// ping (a `/metrics` scrape), are our connections in its queue, not others'.
#[test]
fn a_hung_pool_with_a_scrape_in_flight_is_not_busy() {
    let fpm = PhpFpm::unix();
    // Nothing kept (BUSY_GRACE=off): every scrape reads the page beside the ping.
    let env = [
        ("TIMEOUT", "500ms"),
        ("PROCESS_METRICS", "aggregates"),
        ("BUSY_GRACE", "off"),
    ];
    let tool = tool_for(&fpm, &env);
    // No scrape before: the kernel's view is first read by the first round.
    get(tool.addr(), "/fcgi-ping").assert_ok();
    fpm.stop_workers();
    let addr = tool.addr();
    for round in 0..3 {
        let scrape = std::thread::spawn(move || get(addr, "/metrics"));
        let ping = get(addr, "/fcgi-ping");
        ping.assert_failure(503, "timeout");
        assert_eq!(scrape.join().unwrap().status, 200, "round {round}");
    }
    fpm.resume_workers();
}

/// Starts the tool as a Kubernetes sidecar would run: its own mount and PID namespaces (the
/// pod's network), with php-fpm's socket directory `dir` mounted at `at`, probing
/// `at/NAME` where php-fpm listens on `dir/NAME`.
fn sidecar(dir: &std::path::Path, at: &std::path::Path, name: &str) -> Tool {
    assert!(
        std::path::Path::new("/usr/bin/unshare").exists(),
        "this test needs unshare: apt-get install util-linux"
    );
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test mounts in a namespace of its own: run it as root (CI does)"
    );
    let (dir, at) = (dir.to_str().unwrap(), at.to_str().unwrap());
    let destination = format!("{at}/{name}");
    Tool::start_under(
        &[
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "sh",
            "-c",
            "mount --bind \"$0\" \"$1\" && shift && exec \"$@\"",
            dir,
            at,
        ],
        &[("DESTINATION", destination.as_str())],
    )
}

/// Saturates `fpm` and asks `tool` (a sidecar) for `/fcgi-ping` until it fails: `busy`, with the
/// kernel's queue, which the sidecar found by the socket file.
fn sidecar_sees_busy(fpm: &PhpFpm, tool: &Tool) {
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let text = metrics(tool);
    assert_eq!(
        metric(&text, "fastcgi_healthcheck_listen_queue_available"),
        Some(1.0),
        "{text}\n{:?}",
        tool.logs()
    );
    let docroot = Docroot::new();
    let clients = sleepers(fpm.listen(), &docroot, 4, 2500);
    let busy = wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        let response = get(tool.addr(), "/fcgi-ping");
        (response.body.starts_with("busy: ")).then_some(response)
    });
    busy.assert_failure(503, "busy");
    get(tool.addr(), "/fcgi-live").assert_ok();
    for client in clients {
        assert!(client.join().unwrap());
    }
}

/// A sidecar mounts the socket's directory at another path than php-fpm's: the name php-fpm
/// bound is not the path probed, the socket file is the same, and the queue is seen.
#[test]
fn a_sidecar_with_the_socket_at_another_path_sees_the_queue() {
    let fpm = PhpFpm::unix();
    let at = common::TempDir::new();
    let dir = fpm.socket_path().parent().unwrap().to_owned();
    let tool = sidecar(&dir, at.path(), "fpm.sock");
    sidecar_sees_busy(&fpm, &tool);
}

/// An overlayfs mount, unmounted (lazily) on drop.
struct Overlay {
    merged: common::TempDir,
    _layers: common::TempDir,
}

impl Overlay {
    fn mount() -> Self {
        let layers = common::TempDir::new();
        let merged = common::TempDir::new();
        for dir in ["lower", "upper", "work"] {
            std::fs::create_dir(layers.join(dir)).unwrap();
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            layers.join("lower").display(),
            layers.join("upper").display(),
            layers.join("work").display()
        );
        let status = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &options])
            .arg(merged.path())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "mount -t overlay failed (run as root, as CI does)"
        );
        Self {
            merged,
            _layers: layers,
        }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.merged.path())
            .status();
    }
}

/// php-fpm's socket on overlayfs (as on a container's root), seen by a sidecar at another path.
#[test]
fn a_socket_on_overlayfs_is_found_by_its_file() {
    assert_eq!(
        rustix::process::geteuid().as_raw(),
        0,
        "this test mounts overlayfs: run it as root (CI does)"
    );
    let overlay = Overlay::mount();
    let socket = overlay.merged.join("fpm.sock");
    let fpm = PhpFpm::start(Listen::Unix(socket));
    let at = common::TempDir::new();
    let tool = sidecar(overlay.merged.path(), at.path(), "fpm.sock");
    sidecar_sees_busy(&fpm, &tool);
    drop(tool);
    drop(fpm);
}
