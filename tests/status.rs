//! `/fcgi-status` and `check --status` against a real php-fpm: thresholds that hold and fail (a
//! listen queue made to grow, idle processes made zero), the status page missing, bad parameters.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::fcgi::fcgi_get;
use common::{get, run_to_exit, wait_until, PhpFpm, TempDir, Tool};

fn tool_for(fpm: &PhpFpm, extra: &[(&str, &str)]) -> Tool {
    Tool::probing("127.0.0.1", fpm.port(), extra)
}

#[test]
fn every_field_is_listed_and_thresholds_hold_or_fail() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[]);
    let response = get(
        tool.addr(),
        "/fcgi-status?max-listen-queue=10&min-total-processes=1",
    );
    response.assert_ok_status();
    assert!(response.body.starts_with("ok\n"), "{response:?}");
    for field in [
        "pool: ",
        "process manager: ",
        "start time: ",
        "start since: ",
        "accepted conn: ",
        "listen queue: ",
        "max listen queue: ",
        "listen queue len: ",
        "idle processes: ",
        "active processes: ",
        "total processes: ",
        "max active processes: ",
        "max children reached: ",
        "slow requests: ",
    ] {
        assert!(
            response.body.contains(&format!("\n{field}")),
            "{field:?} missing: {}",
            response.body
        );
    }
    let response = get(
        tool.addr(),
        "/fcgi-status?max-total-processes=1&min-idle-processes=0",
    );
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response.body.starts_with("total processes 2 > 1\n"),
        "{}",
        response.body
    );
    // HEAD: same status, no body.
    let head =
        common::Client::connect(tool.addr()).request("HEAD", "/fcgi-status?max-total-processes=1");
    assert_eq!((head.status, head.body.as_str()), (503, ""));
}

#[test]
fn unknown_or_malformed_parameters_are_400_naming_them() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[]);
    for (query, named) in [
        ("max-queue=1", "max-queue"),
        ("listen-queue=1", "listen-queue"),
        ("max-listen-queue=ten", "max-listen-queue"),
        ("min-pool=1", "min-pool"),
    ] {
        let response = get(tool.addr(), &format!("/fcgi-status?{query}"));
        assert_eq!(response.status, 400, "{query}: {response:?}");
        assert!(
            response.body.starts_with(named),
            "{query}: {}",
            response.body
        );
    }
}

#[test]
fn a_missing_status_page_is_bad_status() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[("STATUS_PATH", "/not-the-status")]);
    let response = get(tool.addr(), "/fcgi-status");
    response.assert_failure(503, "bad_status");
    assert!(
        response.body.contains("pm.status_path = /not-the-status"),
        "{}",
        response.body
    );
}

/// Both workers busy (one running a slow script, one answering the status page): no idle process.
#[test]
fn idle_processes_fall_to_zero_while_workers_are_busy() {
    let fpm = PhpFpm::tcp();
    let scripts = TempDir::new();
    let script = scripts.join("slow.php");
    std::fs::write(&script, "<?php usleep(3000000); echo 'done';").unwrap();
    let addr = fpm.addr();
    let script_path = script.display().to_string();
    let slow = thread::spawn(move || {
        fcgi_get(TcpStream::connect(addr).unwrap(), &script_path)
            .unwrap()
            .stdout
    });
    let tool = tool_for(&fpm, &[]);
    let response = wait_until(
        Duration::from_secs(3),
        "a worker to be busy with the slow script",
        || {
            let response = get(tool.addr(), "/fcgi-status?min-idle-processes=1");
            (response.status == 503).then_some(response)
        },
    );
    assert!(
        response.body.starts_with("idle processes 0 < 1\n"),
        "{}",
        response.body
    );
    assert!(slow.join().unwrap().contains("done"));
    // The client has its answer before the worker that ran the script is back in accept(): for a
    // moment php-fpm still counts it as active, so the page is read until it is idle again.
    let response = wait_until(
        Duration::from_secs(5),
        "the freed worker to be counted idle",
        || {
            let response = get(tool.addr(), "/fcgi-status?min-idle-processes=1");
            (response.status != 503).then_some(response)
        },
    );
    response.assert_ok_status();
}

/// Workers stopped while requests arrive: the listen queue grows, and php-fpm's `max listen
/// queue` keeps the high-water mark once it is served again.
#[test]
fn a_growing_listen_queue_fails_its_threshold() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[]);
    get(tool.addr(), "/fcgi-status?max-max-listen-queue=0").assert_ok_status();
    fpm.stop_workers();
    let addr = fpm.addr();
    let queued: Vec<_> = (0..5)
        .map(|_| {
            thread::spawn(move || {
                fcgi_get(TcpStream::connect(addr).unwrap(), "/fpm-ping").map(|a| a.stdout)
            })
        })
        .collect();
    wait_until(
        Duration::from_secs(5),
        "5 connections in php-fpm's listen queue",
        || (common::sys::listen_queue(addr.port()) >= 5).then_some(()),
    );
    // php-fpm's master samples the queue once a second.
    thread::sleep(Duration::from_millis(2500));
    fpm.resume_workers();
    for request in queued {
        assert!(request.join().unwrap().unwrap().contains("pong"));
    }
    let response = get(tool.addr(), "/fcgi-status?max-max-listen-queue=2");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response.body.starts_with("max listen queue "),
        "{}",
        response.body
    );
}

#[test]
fn check_status_exit_codes() {
    let fpm = PhpFpm::tcp();
    let port = fpm.port().to_string();
    let env = [
        ("DESTINATION", "127.0.0.1"),
        ("DESTINATION_PORT", port.as_str()),
    ];
    let ok = run_to_exit(
        &env,
        &[
            "check",
            "--status",
            "--max-listen-queue",
            "10",
            "--min-idle-processes",
            "1",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", ok.stderr);
    // php-fpm-healthcheck's style: a bare field fails when the value is greater.
    let failed = run_to_exit(&env, &["check", "--status", "--total-processes=1"]);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(failed.stderr.trim(), "threshold: total processes 2 > 1");
    let bad = run_to_exit(&env, &["check", "--max-queue=1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(bad.stderr.contains("--max-queue"), "{}", bad.stderr);
}
