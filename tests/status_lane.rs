//! The status lane (`STATUS_LISTEN`, php-fpm's `pm.status_listen`) against a real php-fpm: while
//! every worker is busy and connections queue, `/metrics`, `/fcgi-status` and `check --status`
//! read php-fpm's fresh figures through the lane within `TIMEOUT` (every worker active), and
//! `/metrics` says they came from the lane; a lane that refuses or is missing falls back to
//! `DESTINATION` and says so (the log, once; `/metrics`; `check`'s verdict line); the ping never
//! goes through the lane; the tool reads a lane one page at a time, whatever `COALESCE` says.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::promtool::{check_metrics, value};
use common::sleeper::{sleepers, Docroot};
use common::sys::signal;
use common::{free_port, get, run_to_exit, timed_get, wait_until, Listen, PhpFpm, Tool};

/// The tool's default `TIMEOUT`.
const TIMEOUT: Duration = Duration::from_millis(800);

/// What a `check` may take beyond `TIMEOUT` on this shared machine (starting the process).
const SLACK: Duration = Duration::from_millis(700);

/// The variables that point the tool at `fpm` (`DESTINATION`, and its port for TCP).
fn destination(fpm: &PhpFpm) -> Vec<(&'static str, String)> {
    match fpm.listen() {
        Listen::Unix(path) => vec![("DESTINATION", path.display().to_string())],
        Listen::Tcp(addr) => vec![
            ("DESTINATION", addr.ip().to_string()),
            ("DESTINATION_PORT", addr.port().to_string()),
        ],
    }
}

/// [`destination`] and `STATUS_LISTEN` as php-fpm's `pm.status_listen` has it: the socket path,
/// or the port alone.
fn with_lane(fpm: &PhpFpm) -> Vec<(&'static str, String)> {
    let lane = match fpm.lane() {
        Listen::Unix(path) => path.display().to_string(),
        Listen::Tcp(addr) => addr.port().to_string(),
    };
    let mut env = destination(fpm);
    env.push(("STATUS_LISTEN", lane));
    env
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

fn start(env: &[(&'static str, String)]) -> Tool {
    Tool::start(&borrowed(env))
}

/// `check` with `env` and `args`, and how long it took.
fn check(env: &[(&'static str, String)], args: &[&str]) -> (common::tool::Finished, Duration) {
    let mut all = vec!["check"];
    all.extend_from_slice(args);
    let started = Instant::now();
    let finished = run_to_exit(&borrowed(env), &all);
    (finished, started.elapsed())
}

fn metrics(tool: &Tool) -> String {
    let response = get(tool.addr(), "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

/// `fastcgi_healthcheck_status_page_stale{source=SOURCE}`.
fn stale(text: &str, source: &str) -> Option<f64> {
    value(
        text,
        "fastcgi_healthcheck_status_page_stale",
        &[("source", source)],
    )
}

/// php-fpm's figure `name` for the pool (php-fpm calls it `www`).
fn figure(text: &str, name: &str) -> Option<f64> {
    value(text, name, &[("pool", "www")])
}

/// Every worker busy, two connections queued behind them, and a probe connection of ours kept
/// in the queue: each reader still gets php-fpm's figures, fresh (every worker active, none
/// idle), within `TIMEOUT`, through the lane.
fn saturated_figures_come_through_the_lane(fpm: &PhpFpm) {
    let docroot = Docroot::new();
    let mut env = with_lane(fpm);
    env.push(("PROCESS_METRICS", "aggregates".to_owned()));
    let tool = start(&env);
    let before = metrics(&tool);
    assert_eq!(stale(&before, "lane"), Some(0.0), "{before}");
    assert_eq!(
        figure(&before, "phpfpm_idle_processes"),
        Some(2.0),
        "{before}"
    );

    let clients = sleepers(fpm.listen(), &docroot, 4, 4000);
    wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        let response = get(tool.addr(), "/fcgi-ping");
        (response.status != 200).then_some(())
    });
    // php-fpm recounts its summary about once a second.
    wait_until(
        Duration::from_secs(5),
        "the lane's page to count every worker active",
        || (figure(&metrics(&tool), "phpfpm_active_processes") == Some(2.0)).then_some(()),
    );

    let (scrape, took) = timed_get(tool.addr(), "/metrics");
    eprintln!("{:?}: /metrics in {took:?} while saturated", fpm.listen());
    assert!(took < TIMEOUT, "/metrics took {took:?} while saturated");
    check_metrics(&scrape.body);
    let text = &scrape.body;
    assert_eq!(stale(text, "lane"), Some(0.0), "{text}");
    assert_eq!(figure(text, "phpfpm_up"), Some(1.0), "{text}");
    assert_eq!(figure(text, "phpfpm_active_processes"), Some(2.0), "{text}");
    assert_eq!(figure(text, "phpfpm_idle_processes"), Some(0.0), "{text}");
    // The full page (PROCESS_METRICS) came through the lane too: both children are running.
    let running = value(
        text,
        "fastcgi_healthcheck_processes",
        &[("state", "Running")],
    );
    assert_eq!(running, Some(2.0), "{text}");
    // Without the lane, a scrape now repeats the last page (tests/busy.rs): a ping connection
    // of ours waits in the queue.
    assert_eq!(
        value(text, "fastcgi_healthcheck_kept_connections", &[]),
        Some(1.0),
        "{text}"
    );

    let (status, took) = timed_get(tool.addr(), "/fcgi-status");
    assert!(took < TIMEOUT, "/fcgi-status took {took:?} while saturated");
    status.assert_ok_status();
    for line in ["active processes: 2\n", "idle processes: 0\n"] {
        assert!(status.body.contains(line), "{line:?}: {status:?}");
    }

    let (verbose, took) = check(&env, &["--status", "-v"]);
    assert!(took < TIMEOUT + SLACK, "check --status took {took:?}");
    assert_eq!(verbose.status.code(), Some(0), "{}", verbose.stderr);
    assert!(
        verbose.stdout.contains("active processes: 2\n"),
        "{}",
        verbose.stdout
    );
    let (over, took) = check(&env, &["--status", "--max-active-processes", "1"]);
    assert!(took < TIMEOUT + SLACK, "check --status took {took:?}");
    assert_eq!(over.status.code(), Some(1), "{}", over.stderr);
    assert_eq!(over.stderr, "threshold: active processes 2 > 1");

    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }
}

#[test]
fn a_saturated_unix_pool_reports_through_its_lane_socket() {
    saturated_figures_come_through_the_lane(&PhpFpm::unix_with_lane(2, ""));
}

/// The lane on TCP, written as a port alone on both sides (`pm.status_listen = PORT`,
/// `STATUS_LISTEN=PORT`: DESTINATION's host).
#[test]
fn a_saturated_tcp_pool_reports_through_its_lane_port() {
    saturated_figures_come_through_the_lane(&PhpFpm::tcp_with_lane(2, ""));
}

/// The lane's socket removed: every read falls back to `DESTINATION` and says so: the log once,
/// `/metrics` with `source="fallback"`, `check` after its verdict. Saturated then, `/metrics`
/// repeats the last page (stale) at once, as without a lane.
#[test]
fn a_missing_lane_falls_back_to_destination_and_says_so() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let env = with_lane(&fpm);
    let tool = start(&env);
    assert_eq!(stale(&metrics(&tool), "lane"), Some(0.0));
    let Listen::Unix(lane) = fpm.lane() else {
        panic!("unix_with_lane has a Unix lane")
    };
    std::fs::remove_file(lane).unwrap();

    for _ in 0..3 {
        let text = metrics(&tool);
        assert_eq!(stale(&text, "fallback"), Some(0.0), "{text}");
        assert_eq!(figure(&text, "phpfpm_up"), Some(1.0), "{text}");
        get(tool.addr(), "/fcgi-status").assert_ok_status();
    }
    let lane_label = format!("unix:{}", lane.display());
    let main_label = format!("unix:{}", fpm.socket_path().display());
    let line = tool.wait_for_log(&[
        "WARN",
        &format!("status lane {lane_label} (pm.status_listen): connect_failed: "),
        &format!("reading the status page through {main_label} instead"),
    ]);
    let said = tool
        .logs()
        .iter()
        .filter(|l| l.contains("status lane"))
        .count();
    assert_eq!(said, 1, "said when it changes, not at every read: {line}");

    let (finished, _) = check(&env, &["--status"]);
    assert_eq!(finished.status.code(), Some(0), "{}", finished.stderr);
    assert_eq!(
        finished.stdout,
        format!("ok (status lane {lane_label}: connect_failed; read through {main_label})")
    );
    assert_eq!(finished.stderr, "");

    let docroot = Docroot::new();
    let clients = sleepers(fpm.listen(), &docroot, 4, 3000);
    wait_until(Duration::from_secs(5), "/fcgi-ping to fail busy", || {
        let response = get(tool.addr(), "/fcgi-ping");
        (response.status != 200).then_some(())
    });
    let (scrape, took) = timed_get(tool.addr(), "/metrics");
    assert!(took < TIMEOUT, "/metrics took {took:?}");
    assert_eq!(
        stale(&scrape.body, "fallback"),
        Some(1.0),
        "{}",
        scrape.body
    );
    let age = value(
        &scrape.body,
        "fastcgi_healthcheck_status_page_age_seconds",
        &[("source", "fallback")],
    );
    assert!(age.is_some(), "{}", scrape.body);
    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }
}

/// php-fpm without a lane (before 8.0, or no `pm.status_listen`): `STATUS_LISTEN` refused, the
/// page comes through `DESTINATION`; once something answers there, through the lane again, said
/// once each way.
#[test]
fn a_refused_lane_falls_back_to_destination_until_it_answers() {
    let fpm = PhpFpm::tcp();
    let mut env = destination(&fpm);
    let lane = std::net::SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    env.push(("STATUS_LISTEN", lane.to_string()));
    let tool = start(&env);
    let text = metrics(&tool);
    assert_eq!(stale(&text, "fallback"), Some(0.0), "{text}");
    assert_eq!(figure(&text, "phpfpm_up"), Some(1.0), "{text}");
    tool.wait_for_log(&["WARN", &format!("status lane {lane}"), "connect_refused"]);
    get(tool.addr(), "/fcgi-ping").assert_ok();

    // A php-fpm answering its status page there (another master's listener stands in for a
    // lane that comes up).
    let _answering = PhpFpm::start(Listen::Tcp(lane));
    let text = metrics(&tool);
    assert_eq!(stale(&text, "lane"), Some(0.0), "{text}");
    tool.wait_for_log(&[
        "INFO",
        &format!("status lane {lane}"),
        "accepts connections again",
    ]);
    let said = tool
        .logs()
        .iter()
        .filter(|l| l.contains("status lane"))
        .count();
    assert_eq!(said, 2, "{:?}", tool.logs());
}

/// The ping goes to `DESTINATION` only: a lane that answers does not make a missing pool
/// healthy.
#[test]
fn the_ping_never_goes_through_the_lane() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let mut env = with_lane(&fpm);
    let missing = PathBuf::from(fpm.socket_path()).with_file_name("missing.sock");
    env[0] = ("DESTINATION", missing.display().to_string());
    let tool = start(&env);
    get(tool.addr(), "/fcgi-ping").assert_failure(503, "connect_failed");
    get(tool.addr(), "/fcgi-live").assert_failure(503, "connect_failed");
    let status = get(tool.addr(), "/fcgi-status");
    status.assert_ok_status();
    assert!(status.body.contains("pool: www\n"), "{status:?}");
}

/// The lane's children are at most two, so the tool reads it one page at a time per kind, even
/// with `COALESCE=off`: with php-fpm's master stopped (the ondemand lane forks no child, so a
/// read waits for `TIMEOUT`), simultaneous `/fcgi-status` requests share one lane read.
#[test]
fn simultaneous_pages_share_one_lane_read_whatever_coalesce_says() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let mut env = with_lane(&fpm);
    env.push(("COALESCE", "off".to_owned()));
    let tool = start(&env);
    assert!(signal(&[fpm.master_pid()], "STOP"));
    const CLIENTS: usize = 8;
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let addr = tool.addr();
    let answers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                get(addr, "/fcgi-status")
            })
        })
        .collect();
    let answers: Vec<_> = answers.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(signal(&[fpm.master_pid()], "CONT"));
    for answer in &answers {
        answer.assert_failure(503, "timeout");
    }
    let text = metrics(&tool);
    let ran = value(
        &text,
        "fastcgi_healthcheck_probes_total",
        &[("probe", "status"), ("result", "timeout")],
    );
    let waited = value(
        &text,
        "fastcgi_healthcheck_coalesced_total",
        &[("probe", "status"), ("source", "waited")],
    )
    .unwrap();
    let ran = ran.unwrap();
    eprintln!("{CLIENTS} simultaneous /fcgi-status: {ran} lane read(s), {waited} waited");
    assert_eq!(ran + waited, CLIENTS as f64, "{text}");
    assert!(ran < CLIENTS as f64, "every request read the lane: {text}");
}

/// `check --live` with the lane answers within `TIMEOUT` (plus the lane's second reading): 0
/// while every worker runs a request younger than `BUSY_GRACE`, `stuck` once the youngest
/// running request is older (no worker started one within the grace), as php-fpm's own page
/// shows; `/fcgi-live` says the same.
#[test]
fn check_live_with_the_lane_is_stuck_once_every_request_is_older_than_the_grace() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let docroot = Docroot::new();
    let mut env = with_lane(&fpm);
    env.push(("TIMEOUT", "500ms".to_owned()));
    env.push(("BUSY_GRACE", "3s".to_owned()));
    let tool = start(&env);
    let clients = sleepers(fpm.listen(), &docroot, 3, 30_000);
    let started = Instant::now();
    let (busy, took) = wait_until(Duration::from_secs(5), "every worker to be taken", || {
        let (finished, took) = check(&env, &["--live"]);
        (finished.stdout.starts_with("ok (")).then_some((finished, took))
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the workers took too long to fill: {busy:?}"
    );
    assert_eq!(busy.status.code(), Some(0), "{busy:?}");
    assert!(
        took < Duration::from_millis(500) + SLACK,
        "check --live took {took:?}"
    );
    let (stuck, took) = wait_until(
        Duration::from_secs(10),
        "check --live to fail stuck",
        || {
            let (finished, took) = check(&env, &["--live"]);
            (finished.status.code() == Some(1)).then_some((finished, took))
        },
    );
    assert!(
        stuck
            .stderr
            .starts_with("stuck: every worker (2) has been on its request for "),
        "{stuck:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "stuck after {:?}, before BUSY_GRACE=3s",
        started.elapsed()
    );
    assert!(
        took < Duration::from_millis(500) + SLACK,
        "check --live took {took:?}"
    );
    eprintln!(
        "check --live with the lane: stuck in {took:?}: {}",
        stuck.stderr
    );
    let live = get(tool.addr(), "/fcgi-live");
    live.assert_failure(503, "stuck");
    assert!(live.body.contains("every worker (2)"), "{live:?}");
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}

/// Frozen workers (`kill -STOP`) while connections wait, with the lane up: php-fpm's page shows
/// them idle and `accepted conn` still between two readings, so liveness fails `stuck` long
/// before `BUSY_GRACE` (60 s), from one `check --live` and from `/fcgi-live`, instead of busy
/// until the grace.
#[test]
fn frozen_workers_with_the_lane_are_stuck_not_busy() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let docroot = Docroot::new();
    let mut env = with_lane(&fpm);
    env.push(("TIMEOUT", "500ms".to_owned()));
    let tool = start(&env);
    get(tool.addr(), "/fcgi-live").assert_ok();
    fpm.stop_workers();
    // Others' connections wait in the queue beside ours.
    let clients = sleepers(fpm.listen(), &docroot, 2, 10);
    let started = Instant::now();
    let (frozen, took) = wait_until(
        Duration::from_secs(10),
        "check --live to fail stuck",
        || {
            let (finished, took) = check(&env, &["--live"]);
            (finished.status.code() == Some(1)).then_some((finished, took))
        },
    );
    assert!(
        frozen.stderr.starts_with("stuck: 2 workers idle while ")
            && frozen.stderr.contains("frozen"),
        "{frozen:?}"
    );
    assert!(
        took < Duration::from_millis(500) + SLACK,
        "check --live took {took:?}"
    );
    let live = wait_until(Duration::from_secs(10), "/fcgi-live to fail stuck", || {
        let response = get(tool.addr(), "/fcgi-live");
        (response.status != 200).then_some(response)
    });
    live.assert_failure(503, "stuck");
    assert!(live.body.contains("frozen"), "{live:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "stuck only after {:?}",
        started.elapsed()
    );
    fpm.resume_workers();
    for client in clients {
        assert!(
            client.join().unwrap(),
            "a client was not answered after SIGCONT"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "/fcgi-live to be 200 again",
        || (get(tool.addr(), "/fcgi-live").status == 200).then_some(()),
    );
}

/// A lane found missing while a ping waited is tried again by liveness itself (at most once a
/// second), with no scrape to try it: once its socket is back, `/fcgi-live` judges php-fpm's own
/// page (every worker on a request older than `BUSY_GRACE`), not the kernel's rule alone.
#[test]
fn liveness_tries_a_missing_lane_again() {
    let fpm = PhpFpm::unix_with_lane(2, "");
    let docroot = Docroot::new();
    let mut env = with_lane(&fpm);
    env.push(("TIMEOUT", "500ms".to_owned()));
    env.push(("BUSY_GRACE", "3s".to_owned()));
    let tool = start(&env);
    get(tool.addr(), "/fcgi-live").assert_ok();
    let Listen::Unix(lane) = fpm.lane() else {
        panic!("unix_with_lane has a Unix lane")
    };
    // The listener stays; only its name is gone, then back.
    let aside = lane.with_file_name("aside.sock");
    std::fs::rename(lane, &aside).unwrap();
    let clients = sleepers(fpm.listen(), &docroot, 3, 30_000);
    // A ping that waits reads the lane: missing.
    wait_until(
        Duration::from_secs(10),
        "the lane to be found missing",
        || {
            get(tool.addr(), "/fcgi-live");
            let logs = tool.logs();
            logs.iter()
                .any(|l| l.contains("status lane") && l.contains("connect_failed"))
                .then_some(())
        },
    );
    std::fs::rename(&aside, lane).unwrap();
    let live = wait_until(
        Duration::from_secs(15),
        "/fcgi-live to fail stuck from php-fpm's page",
        || {
            let response = get(tool.addr(), "/fcgi-live");
            response
                .body
                .contains("every worker (2) has been on its request")
                .then_some(response)
        },
    );
    live.assert_failure(503, "stuck");
    drop(fpm);
    for client in clients {
        let _ = client.join();
    }
}
