//! Configuration: invalid values exit 2 naming the variable, flags win over the environment, --help,
//! --version, log levels, and a busy listen address.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, TcpListener};

use common::tool::TOOL_VARS;
use common::{free_port, get, run_to_exit, Behavior, FakePeer, Tool};

/// A configuration that must be refused, and the names of which one must appear in the error.
struct Case<'a> {
    env: Vec<(&'a str, &'a str)>,
    args: Vec<&'a str>,
    names: Vec<&'a str>,
}

/// `var=value` in the environment, which must be named in the error.
fn env_case<'a>(var: &'a str, value: &'a str) -> Case<'a> {
    Case {
        env: vec![(var, value)],
        args: Vec::new(),
        names: vec![var],
    }
}

/// Command-line `args`; the error must name one of `names` (the variable or the flag).
fn flag_case<'a>(args: &[&'a str], names: &[&'a str]) -> Case<'a> {
    Case {
        env: Vec::new(),
        args: args.to_vec(),
        names: names.to_vec(),
    }
}

/// How a run falls short of a configuration error: exit 2, one stderr line naming the setting, before
/// listening. `None` when it is right.
fn config_error_problem(case: &Case) -> Option<String> {
    let run = run_to_exit(&case.env, &case.args);
    let lines = run
        .stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count();
    let named = case.names.iter().any(|name| run.stderr.contains(name));
    let right =
        run.status.code() == Some(2) && lines == 1 && named && !run.stderr.contains("listening on");
    (!right).then(|| {
        let want = format!("want exit 2 and one line naming one of {:?}", case.names);
        format!(
            "{:?} {:?}: exit {:?}, stderr {:?}; {want}",
            case.env,
            case.args,
            run.status.code(),
            run.stderr
        )
    })
}

/// Asserts every case is a configuration error naming its setting; reports all the wrong ones at once.
fn assert_config_errors(cases: &[Case]) {
    let problems: Vec<String> = cases.iter().filter_map(config_error_problem).collect();
    assert!(
        problems.is_empty(),
        "{} wrong configuration error(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn invalid_environment_values_exit_2_naming_the_variable() {
    assert_config_errors(&[
        env_case("DESTINATION_PORT", "abc"),
        env_case("DESTINATION_PORT", "0"),
        env_case("DESTINATION_PORT", "65536"),
        env_case("DESTINATION_PORT", "-1"),
        env_case("TIMEOUT", "soon"),
        env_case("TIMEOUT", "5 minutes"),
        env_case("SERVER", "nowhere"),
        env_case("SERVER", "127.0.0.1"),
        env_case("SERVER", "127.0.0.1:99999"),
        env_case("FAIL_STATUS", "200"),
        env_case("FAIL_STATUS", "399"),
        env_case("FAIL_STATUS", "600"),
        env_case("FAIL_STATUS", "abc"),
        env_case("PING_PATH", "nope"),
        env_case("MAX_CONNECTIONS", "0"),
        env_case("MAX_CONNECTIONS", "many"),
        env_case("CLIENT_TIMEOUT", "never"),
        env_case("RUST_LOG", "loud"),
    ]);
}

#[test]
fn invalid_flag_values_exit_2_naming_the_setting() {
    assert_config_errors(&[
        flag_case(
            &["--destination-port", "abc"],
            &["DESTINATION_PORT", "--destination-port"],
        ),
        flag_case(&["--timeout=soon"], &["TIMEOUT", "--timeout"]),
        flag_case(&["--fail-status", "200"], &["FAIL_STATUS", "--fail-status"]),
        flag_case(
            &["--max-connections=0"],
            &["MAX_CONNECTIONS", "--max-connections"],
        ),
        flag_case(&["--log-level", "loud"], &["RUST_LOG", "--log-level"]),
        flag_case(&["--ping-path", "nope"], &["PING_PATH", "--ping-path"]),
        flag_case(&["--timeout"], &["TIMEOUT", "--timeout"]),
        flag_case(&["--bogus-flag"], &["--bogus-flag"]),
    ]);
}

/// `STATUS_LISTEN` takes what php-fpm's `pm.status_listen` takes; anything else exits 2 with one
/// line naming it and giving examples, before listening.
#[test]
fn invalid_status_listen_exits_2_naming_it_with_examples() {
    let mut cases: Vec<Case> = [
        "",
        "0",
        "65536",
        "127.0.0.1",
        "127.0.0.1:",
        "::1:9001",
        "[::1]",
        "relative.sock",
        "unix:relative.sock",
        "host name:9001",
    ]
    .into_iter()
    .map(|value| env_case("STATUS_LISTEN", value))
    .collect();
    cases.push(flag_case(
        &["--status-listen", "nowhere"],
        &["--status-listen"],
    ));
    // With POOLS each pool names its lane there.
    cases.push(Case {
        env: vec![
            ("POOLS", "www=/run/php/www.sock"),
            ("STATUS_LISTEN", "9001"),
        ],
        args: Vec::new(),
        names: vec!["STATUS_LISTEN"],
    });
    cases.push(env_case("POOLS", "www=/run/php/www.sock+relative.sock"));
    assert_config_errors(&cases);
    let run = run_to_exit(&[("STATUS_LISTEN", "127.0.0.1")], &[]);
    assert!(
        run.stderr.contains("127.0.0.1:9001") && run.stderr.contains("/run/php/status.sock"),
        "{}",
        run.stderr
    );
    // Never DESTINATION_PORT: a host without a port is refused, not completed.
    let run = run_to_exit(
        &[("DESTINATION_PORT", "9001"), ("STATUS_LISTEN", "localhost")],
        &[],
    );
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
}

/// The forms of `pm.status_listen`, as the start-up line shows where the page is read: a port
/// alone is on DESTINATION's host (php-fpm listens on every address of its own).
#[test]
fn status_listen_forms_show_in_the_start_up_line() {
    for (env, shown) in [
        (
            vec![("DESTINATION", "fpm.internal"), ("STATUS_LISTEN", "9001")],
            "fpm.internal:9000 (status page through fpm.internal:9001)",
        ),
        (
            vec![
                ("DESTINATION", "/run/php/www.sock"),
                ("STATUS_LISTEN", "9001"),
            ],
            "unix:/run/php/www.sock (status page through 127.0.0.1:9001)",
        ),
        (
            vec![("STATUS_LISTEN", "[::1]:9001")],
            "127.0.0.1:9000 (status page through [::1]:9001)",
        ),
        (
            vec![("STATUS_LISTEN", "unix:/run/php/www.status.sock")],
            "127.0.0.1:9000 (status page through unix:/run/php/www.status.sock)",
        ),
    ] {
        let tool = Tool::start(&env);
        tool.wait_for_log(&["listening on", &format!("probing {shown} /fpm-ping")]);
    }
}

/// Every duration setting.
const DURATIONS: [&str; 5] = [
    "TIMEOUT",
    "CLIENT_TIMEOUT",
    "CACHE_TTL",
    "IDLE_EXIT",
    "BUSY_GRACE",
];

/// `TIMEOUT=800` was read as 800 seconds (the start-up line said `timeout 800s`). A bare number
/// is seconds, so above a minute it is refused with the two spellings it may have meant, and
/// every duration error says what a bare number means.
#[test]
fn a_bare_number_above_a_minute_exits_2_asking_for_a_unit() {
    for var in DURATIONS {
        let run = run_to_exit(&[(var, "800")], &[]);
        assert_eq!(run.status.code(), Some(2), "{var}=800: {}", run.stderr);
        assert_eq!(
            run.stderr,
            format!(
                "fastcgi-healthcheck: {var}=\"800\" is 800 seconds: a bare number means \
                 seconds, at most 60; write 800ms or 800s"
            )
        );
        for bad in ["5000", "soon", "2h", "-1"] {
            let run = run_to_exit(&[(var, bad)], &[]);
            assert_eq!(run.status.code(), Some(2), "{var}={bad}: {}", run.stderr);
            assert!(
                run.stderr.contains("a bare number means seconds"),
                "{var}={bad}: {}",
                run.stderr
            );
        }
    }
    let run = run_to_exit(&[], &["--timeout", "800"]);
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("--timeout=\"800\"") && run.stderr.contains("write 800ms or 800s"),
        "{}",
        run.stderr
    );
    // Up to a minute a bare number is taken: the check runs and finds nothing listening (1).
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
    let env = [("DESTINATION_PORT", port.as_str()), ("TIMEOUT", "60")];
    let run = run_to_exit(&env, &["check"]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("connect_refused: "),
        "{}",
        run.stderr
    );
}

#[test]
fn a_cache_without_coalescing_exits_2_naming_both() {
    // COALESCE=off ignored CACHE_TTL silently while the start-up line said "cache 250ms".
    let case = Case {
        env: vec![("COALESCE", "off"), ("CACHE_TTL", "250ms")],
        args: Vec::new(),
        names: vec!["CACHE_TTL"],
    };
    assert_config_errors(&[case]);
    let run = run_to_exit(&[("COALESCE", "off"), ("CACHE_TTL", "250ms")], &[]);
    assert!(run.stderr.contains("COALESCE=off"), "{}", run.stderr);
}

#[test]
fn flags_win_over_the_environment() {
    let peer = FakePeer::start(Behavior::healthy());
    let port = peer.port().to_string();
    let port_flag = format!("--destination-port={port}");
    // The environment points at a dead port; the flags at the healthy peer, in both flag spellings.
    let env = [
        ("DESTINATION", "192.0.2.1"),
        ("DESTINATION_PORT", "1"),
        ("FAIL_STATUS", "500"),
    ];
    let tool = Tool::start_with_args(&env, &["--destination", "127.0.0.1", &port_flag]);
    get(tool.addr(), "/fcgi-ping").assert_ok();

    peer.set(Behavior::silent());
    let tool = Tool::start_with_args(
        &env,
        &[
            "--destination=127.0.0.1",
            "--destination-port",
            &port,
            "--fail-status",
            "418",
            "--timeout",
            "300ms",
        ],
    );
    get(tool.addr(), "/fcgi-ping").assert_failure(418, "timeout");
}

#[test]
fn help_exits_0_and_documents_every_variable() {
    for flag in ["--help", "-h"] {
        let run = run_to_exit(&[], &[flag]);
        assert_eq!(run.status.code(), Some(0), "{flag}: {}", run.stderr);
        let manual = format!("{}{}", run.stdout, run.stderr);
        // Every setting; systemd's own variables are systemd's to document.
        let missing: Vec<&str> = TOOL_VARS
            .into_iter()
            .filter(|var| {
                !var.starts_with("LISTEN_") && !["NOTIFY_SOCKET", "JOURNAL_STREAM"].contains(var)
            })
            .filter(|var| !manual.contains(var))
            .collect();
        assert!(
            missing.is_empty(),
            "{flag} does not mention {missing:?}:\n{manual}"
        );
        assert!(
            !manual.contains("listening on"),
            "{flag} must not start the server"
        );
    }
}

#[test]
fn version_exits_0_with_name_and_version() {
    let expected = format!("fastcgi-healthcheck {}", env!("CARGO_PKG_VERSION"));
    for flag in ["--version", "-V"] {
        let run = run_to_exit(&[], &[flag]);
        assert_eq!(run.status.code(), Some(0), "{flag}: {}", run.stderr);
        let output = format!("{}{}", run.stdout, run.stderr);
        assert_eq!(output.trim(), expected, "{flag}");
    }
}

#[test]
fn busy_listen_address_exits_1_naming_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = run_to_exit(&[("SERVER", &addr)], &[]);
    assert_eq!(run.status.code(), Some(1), "stderr: {}", run.stderr);
    assert!(
        run.stderr.contains(&addr),
        "stderr should name {addr}: {}",
        run.stderr
    );
}

#[test]
fn every_log_level_is_accepted() {
    let peer = FakePeer::start(Behavior::end_request_status(2));
    let port = peer.port().to_string();
    for level in ["error", "warn", "info", "debug", "trace", "off"] {
        let env = [("DESTINATION_PORT", port.as_str()), ("RUST_LOG", level)];
        let tool = Tool::start_without_listening_log(&env, &[]);
        get(tool.addr(), "/fcgi-ping").assert_failure(503, "fcgi_overloaded");
        get(tool.addr(), "/health").assert_ok();
        // Everything the tool wrote, read to the end after it exited.
        let logs = tool.stop_and_logs();
        match level {
            "off" | "error" => assert!(
                !logs.contains("WARN"),
                "RUST_LOG={level} shows warnings:\n{logs}"
            ),
            _ => assert!(
                logs.lines()
                    .any(|l| l.starts_with("WARN") && l.contains("fcgi_overloaded")),
                "RUST_LOG={level} hides the unhealthy probe:\n{logs}"
            ),
        }
        if matches!(level, "off" | "error" | "warn") {
            assert!(
                !logs.contains("INFO"),
                "RUST_LOG={level} shows info lines:\n{logs}"
            );
        }
    }
    let tool = Tool::start_without_listening_log(
        &[("RUST_LOG", "info"), ("DESTINATION_PORT", &port)],
        &["--log-level", "off"],
    );
    get(tool.addr(), "/fcgi-ping").assert_failure(503, "fcgi_overloaded");
    let logs = tool.stop_and_logs();
    assert!(
        logs.is_empty(),
        "--log-level off wins over RUST_LOG=info: {logs:?}"
    );
}
