//! `fastcgi-healthcheck check`: one probe, the verdict as the exit status (0, 1, 2), against a
//! real php-fpm.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use common::{free_port, run_to_exit, Listen, PhpFpm};

/// The environment that points the tool at `fpm`.
fn destination(fpm: &PhpFpm) -> Vec<(&'static str, String)> {
    match fpm.listen() {
        Listen::Unix(path) => vec![("DESTINATION", path.display().to_string())],
        Listen::Tcp(addr) => vec![
            ("DESTINATION", addr.ip().to_string()),
            ("DESTINATION_PORT", addr.port().to_string()),
        ],
    }
}

fn check(env: &[(&'static str, String)], args: &[&str]) -> (common::tool::Finished, Duration) {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut all_args = vec!["check"];
    all_args.extend_from_slice(args);
    let started = Instant::now();
    let finished = run_to_exit(&env, &all_args);
    (finished, started.elapsed())
}

#[test]
fn healthy_php_fpm_exits_0_with_ok() {
    for fpm in [PhpFpm::unix(), PhpFpm::tcp()] {
        let (finished, _) = check(&destination(&fpm), &[]);
        assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
        assert_eq!(finished.stdout.trim(), "ok");
        assert_eq!(finished.stderr, "", "a healthy check is quiet on stderr");
    }
}

#[test]
fn refused_exits_1_with_one_line_reason() {
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
    let env = vec![
        ("DESTINATION", "127.0.0.1".to_owned()),
        ("DESTINATION_PORT", port),
    ];
    let (finished, took) = check(&env, &[]);
    assert_eq!(finished.status.code(), Some(1));
    assert_eq!(finished.stderr.lines().count(), 1, "{:?}", finished.stderr);
    assert!(
        finished.stderr.starts_with("connect_refused: "),
        "{:?}",
        finished.stderr
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

/// What the shell scripts people use today cannot do: a stopped php-fpm does not hang `check`.
#[test]
fn stopped_workers_exit_1_within_the_timeout() {
    let fpm = PhpFpm::unix();
    fpm.stop_workers();
    let mut env = destination(&fpm);
    env.push(("TIMEOUT", "500ms".to_owned()));
    let (finished, took) = check(&env, &[]);
    fpm.resume_workers();
    assert_eq!(finished.status.code(), Some(1));
    assert!(
        finished.stderr.starts_with("timeout: "),
        "{:?}",
        finished.stderr
    );
    assert!(took >= Duration::from_millis(500), "took {took:?}");
    assert!(
        took < Duration::from_millis(500) + Duration::from_secs(1),
        "took {took:?}"
    );
}

#[test]
fn wrong_ping_path_exits_1_with_bad_status() {
    let fpm = PhpFpm::unix();
    let (finished, _) = check(&destination(&fpm), &["--ping-path", "/nope"]);
    assert_eq!(finished.status.code(), Some(1));
    assert!(
        finished.stderr.starts_with("bad_status: "),
        "{:?}",
        finished.stderr
    );
}

#[test]
fn verbose_prints_the_fastcgi_answer() {
    let fpm = PhpFpm::unix();
    let (finished, _) = check(&destination(&fpm), &["-v"]);
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert!(
        finished.stdout.contains("protocol status 0"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.contains("stdout: pong"),
        "{}",
        finished.stdout
    );
    assert!(
        finished.stdout.trim_end().ends_with("ok"),
        "{}",
        finished.stdout
    );
}

#[test]
fn invalid_settings_exit_2_naming_them() {
    let (finished, _) = check(&[("TIMEOUT", "soon".to_owned())], &[]);
    assert_eq!(finished.status.code(), Some(2));
    assert!(finished.stderr.contains("TIMEOUT"), "{:?}", finished.stderr);
    let (finished, _) = check(&[], &["--bogus"]);
    assert_eq!(finished.status.code(), Some(2));
    assert!(finished.stderr.contains("--bogus"), "{:?}", finished.stderr);
}

/// A full stderr (`2>/dev/full`) loses the reason line; it does not change the exit status.
#[test]
fn a_full_stderr_does_not_change_the_verdict() {
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
    let status = common::tool::command(&[("DESTINATION_PORT", port.as_str())], &["check"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create("/dev/full").unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
}

/// `check --live --min-idle-processes 5` printed `ok` and ignored the threshold. Against a healthy
/// php-fpm, where each of these would say `ok`, a flag the mode ignores exits 2 on one line naming
/// it; the same settings in the environment (the server's too) are not refused.
#[test]
fn a_flag_the_mode_ignores_exits_2_naming_it() {
    let fpm = PhpFpm::unix();
    let env = destination(&fpm);
    for (args, flag) in [
        (
            &["--live", "--min-idle-processes", "5"][..],
            "--min-idle-processes",
        ),
        (&["--live", "--status"], "--status"),
        (&["--live", "-v"], "-v"),
        (&["--server", "0.0.0.0:80"], "--server"),
        (&["--fail-status", "404"], "--fail-status"),
        (&["--client-timeout=1s"], "--client-timeout"),
        (&["--max-connections", "5"], "--max-connections"),
        (&["--coalesce", "off"], "--coalesce"),
        (&["--cache-ttl", "1s"], "--cache-ttl"),
        (&["--idle-exit", "1m"], "--idle-exit"),
        (&["--process-metrics", "aggregates"], "--process-metrics"),
        (&["--busy-grace", "20s"], "--busy-grace"),
        (&["--status-path", "/fpm-status"], "--status-path"),
        (&["--status", "--ping-path", "/fpm-ping"], "--ping-path"),
        (&["--status", "--ping-response", "pong"], "--ping-response"),
    ] {
        let (finished, _) = check(&env, args);
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{args:?}: {:?}",
            finished.stderr
        );
        assert_eq!(finished.stdout, "", "{args:?}");
        assert_eq!(
            finished.stderr.lines().count(),
            1,
            "{args:?}: {:?}",
            finished.stderr
        );
        assert!(
            finished
                .stderr
                .contains(&format!("{flag} is ignored by check")),
            "{args:?}: {:?}",
            finished.stderr
        );
    }
    let mut shared = env.clone();
    for (var, value) in [
        ("SERVER", "0.0.0.0:8080"),
        ("BUSY_GRACE", "20s"),
        ("FAIL_STATUS", "404"),
        ("IDLE_EXIT", "1m"),
        ("PROCESS_METRICS", "aggregates"),
    ] {
        shared.push((var, value.to_owned()));
    }
    for args in [
        &[][..],
        &["--live", "--busy-grace", "20s"],
        &[
            "--status",
            "--status-path",
            "/fpm-status",
            "--min-idle-processes",
            "1",
        ],
    ] {
        let (finished, _) = check(&shared, args);
        assert_eq!(
            finished.status.code(),
            Some(0),
            "{args:?}: {:?}",
            finished.stderr
        );
        assert_eq!(finished.stdout.trim(), "ok", "{args:?}");
    }
    // --log-level is read by check too: the probe's debug lines come before the verdict.
    let (finished, _) = check(&env, &["--log-level", "debug"]);
    assert_eq!(finished.status.code(), Some(0), "{:?}", finished.stderr);
    assert!(finished.stderr.contains("DEBUG"), "{:?}", finished.stderr);
}
