//! Probing a real php-fpm: healthy over every kind of destination, and each way it can be down or wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::fcgi::fcgi_get;
use common::{
    free_port, get, ipv6_loopback_available, timed_get, wait_until, Client, Listen, PhpFpm,
    TempDir, Tool,
};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// "Promptly" for failures that need no waiting (refused, missing socket).
const PROMPT: Duration = Duration::from_secs(1);

/// A tool probing TCP `host`:`port`, with `extra` variables.
fn tool_for_tcp(host: &str, port: u16, extra: &[(&str, &str)]) -> Tool {
    Tool::probing(host, port, extra)
}

fn tool_for(fpm: &PhpFpm, extra: &[(&str, &str)]) -> Tool {
    match fpm.listen() {
        Listen::Tcp(addr) => tool_for_tcp(&addr.ip().to_string(), addr.port(), extra),
        Listen::Unix(path) => {
            let path = path.to_str().unwrap();
            let mut env = vec![("DESTINATION", path)];
            env.extend_from_slice(extra);
            Tool::start(&env)
        }
    }
}

/// Asserts `/fcgi-ping` answers healthy, for GET and HEAD.
fn assert_healthy(tool: &Tool) {
    let response = get(tool.addr(), "/fcgi-ping");
    response.assert_ok();
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "{response:?}"
    );
    let head = Client::connect(tool.addr()).request("HEAD", "/fcgi-ping");
    assert_eq!(
        (head.status, head.content_length(), head.body.as_str()),
        (200, Some(3), ""),
        "{head:?}"
    );
}

/// Polls `/fcgi-ping` until it is healthy (php-fpm may first work through connections queued while it was
/// stopped), at most `within`.
fn await_healthy(tool: &Tool, within: Duration) {
    wait_until(within, "/fcgi-ping to become healthy again", || {
        (get(tool.addr(), "/fcgi-ping").status == 200).then_some(())
    });
    assert_healthy(tool);
}

/// Asserts a failing probe: `status`, the body's reason word, a body naming `destination`, within `within`,
/// and a WARN log line with the reason; `/health` stays 200 meanwhile.
fn assert_unhealthy(tool: &Tool, status: u16, reason: &str, destination: &str, within: Duration) {
    let (response, took) = timed_get(tool.addr(), "/fcgi-ping");
    response.assert_failure(status, reason);
    assert!(
        response.body.contains(destination),
        "the body should name {destination:?}: {:?}",
        response.body
    );
    assert!(
        took < within,
        "`{reason}` took {took:?}, more than {within:?}"
    );
    tool.wait_for_log(&["WARN", reason]);
    get(tool.addr(), "/health").assert_ok();
}

#[test]
fn harness_speaks_fastcgi_to_php_fpm() {
    let tcp = PhpFpm::tcp();
    let unix = PhpFpm::unix();
    let answers = [
        fcgi_get(TcpStream::connect(tcp.addr()).unwrap(), "/fpm-ping").unwrap(),
        fcgi_get(
            UnixStream::connect(unix.socket_path()).unwrap(),
            "/fpm-ping",
        )
        .unwrap(),
    ];
    for answer in answers {
        assert_eq!(answer.protocol_status, 0);
        assert!(
            answer.stdout.ends_with("\r\n\r\npong"),
            "php-fpm ping stdout: {:?}",
            answer.stdout
        );
    }
    for fpm in [&tcp, &unix] {
        let workers = fpm.worker_pids();
        assert_eq!(workers.len(), 2, "php-fpm static workers: {workers:?}");
        assert!(!workers.contains(&fpm.master_pid()));
    }
}

#[test]
fn healthy_over_tcp() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[]);
    assert_healthy(&tool);
    // Several probes in a row on one keep-alive connection.
    let mut client = Client::connect(tool.addr());
    for _ in 0..5 {
        client.request("GET", "/fcgi-ping").assert_ok();
    }
}

/// TCP connections in TIME-WAIT whose local (`local == true`) or remote port is `port`, from
/// /proc/net/tcp and tcp6 (state 06).
fn time_wait_on(port: u16, local: bool) -> usize {
    let field = if local { 1 } else { 2 };
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|line| {
                    let cols: Vec<&str> = line.split_whitespace().collect();
                    let port_of = |addr: &str| {
                        addr.rsplit(':')
                            .next()
                            .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                    };
                    cols.len() > 3 && cols[3] == "06" && port_of(cols[field]) == Some(port)
                })
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .count()
}

/// A probe closes its finished connection with a reset (as HAProxy's health checks do): neither
/// php-fpm nor this host keeps a TIME-WAIT socket per probe, and php-fpm logs nothing about it.
#[test]
fn probes_leave_no_time_wait_sockets_behind() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[("COALESCE", "off")]);
    let mut client = Client::connect(tool.addr());
    for _ in 0..100 {
        client.request("GET", "/fcgi-ping").assert_ok();
    }
    let (at_fpm, here) = (
        time_wait_on(fpm.port(), true),
        time_wait_on(fpm.port(), false),
    );
    assert!(
        at_fpm + here < 10,
        "100 probes left {at_fpm} TIME-WAIT sockets at php-fpm and {here} on the probing side"
    );
    let log = fpm.log();
    assert!(
        !log.contains("WARNING") && !log.contains("ERROR"),
        "php-fpm logged: {log}"
    );
}

#[test]
fn healthy_over_unix_socket_in_both_spellings() {
    let fpm = PhpFpm::unix();
    let path = fpm.socket_path().to_str().unwrap().to_owned();
    for destination in [path.clone(), format!("unix:{path}")] {
        let tool = Tool::start(&[("DESTINATION", &destination), ("DESTINATION_PORT", "1")]);
        assert_healthy(&tool);
    }
}

#[test]
fn healthy_with_host_name_localhost() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for_tcp("localhost", fpm.port(), &[]);
    assert_healthy(&tool);
}

#[test]
fn healthy_over_ipv6_loopback() {
    assert!(
        ipv6_loopback_available(),
        "cannot bind the IPv6 loopback [::1] on this machine: enable it \
         (sysctl -w net.ipv6.conf.lo.disable_ipv6=0; in Docker, --sysctl net.ipv6.conf.lo.disable_ipv6=0)"
    );
    let fpm = PhpFpm::tcp_on(IpAddr::V6(Ipv6Addr::LOCALHOST));
    for destination in ["::1", "[::1]"] {
        let tool = tool_for_tcp(destination, fpm.port(), &[("SERVER", "[::1]:0")]);
        assert_eq!(
            tool.addr().ip(),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            "SERVER=[::1]:0 should listen on [::1]"
        );
        assert_healthy(&tool);
    }
}

#[test]
fn tcp_refused_fails_promptly_then_recovers_when_php_fpm_starts() {
    let port = free_port(LOCALHOST);
    let tool = tool_for_tcp("127.0.0.1", port, &[]);
    assert_unhealthy(
        &tool,
        503,
        "connect_refused",
        &format!("127.0.0.1:{port}"),
        PROMPT,
    );

    let _fpm = PhpFpm::start(Listen::Tcp(SocketAddr::new(LOCALHOST, port)));
    assert_healthy(&tool);
}

#[test]
fn missing_unix_socket_fails_promptly_then_recovers_when_php_fpm_starts() {
    let dir = TempDir::new();
    let socket = dir.join("later.sock");
    let tool = Tool::start(&[("DESTINATION", socket.to_str().unwrap())]);
    assert_unhealthy(
        &tool,
        503,
        "connect_failed",
        socket.to_str().unwrap(),
        PROMPT,
    );

    let _fpm = PhpFpm::start(Listen::Unix(socket));
    assert_healthy(&tool);
}

#[test]
fn stale_unix_socket_file_is_connect_refused() {
    let dir = TempDir::new();
    let socket = dir.join("stale.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(
        socket.exists(),
        "the socket file stays after its listener is gone"
    );
    let tool = Tool::start(&[("DESTINATION", &format!("unix:{}", socket.display()))]);
    assert_unhealthy(
        &tool,
        503,
        "connect_refused",
        socket.to_str().unwrap(),
        PROMPT,
    );
}

#[test]
fn killed_php_fpm_is_connect_refused() {
    let mut fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[]);
    assert_healthy(&tool);
    fpm.kill();
    assert_unhealthy(
        &tool,
        503,
        "connect_refused",
        &fpm.addr().to_string(),
        PROMPT,
    );
}

#[test]
fn stopped_workers_time_out_while_the_server_keeps_answering() {
    let fpm = PhpFpm::tcp();
    let tool = tool_for(&fpm, &[("TIMEOUT", "500ms")]);
    assert_healthy(&tool);
    fpm.stop_workers();

    let started = Instant::now();
    let mut probe = Client::connect(tool.addr());
    probe.send(common::request_text("GET", "/fcgi-ping", &[]).as_bytes());
    // While that probe hangs, the server answers others at once...
    let (health, took) = timed_get(tool.addr(), "/healthz");
    health.assert_ok();
    assert!(
        took < Duration::from_millis(400),
        "/healthz took {took:?} while a probe was hanging"
    );
    assert!(
        !probe.has_pending_data(),
        "the probe answered before its 500 ms deadline although php-fpm is stopped"
    );
    // ...and the probe fails at its deadline.
    let response = probe.read_response("GET");
    let took = started.elapsed();
    response.assert_failure(503, "timeout");
    assert!(
        (Duration::from_millis(450)..Duration::from_millis(1500)).contains(&took),
        "timeout after {took:?}, expected TIMEOUT=500ms + at most 1 s"
    );
    tool.wait_for_log(&["WARN", "timeout"]);

    fpm.resume_workers();
    await_healthy(&tool, Duration::from_secs(5));
}

/// php-fpm answers, but not what `var=value` makes the tool expect: fails with `reason`.
fn assert_mismatch(var: &str, value: &str, reason: &str) {
    let fpm = PhpFpm::unix();
    let tool = tool_for(&fpm, &[(var, value)]);
    assert_unhealthy(
        &tool,
        503,
        reason,
        fpm.socket_path().to_str().unwrap(),
        PROMPT,
    );
}

#[test]
fn unknown_ping_path_is_bad_status() {
    assert_mismatch("PING_PATH", "/not-the-ping-path", "bad_status");
}

#[test]
fn wrong_ping_response_is_unexpected_response() {
    assert_mismatch(
        "PING_RESPONSE",
        "definitely-not-pong",
        "unexpected_response",
    );
}

#[test]
fn fail_status_is_honoured() {
    let port = free_port(LOCALHOST);
    let tool = tool_for_tcp("127.0.0.1", port, &[("FAIL_STATUS", "404")]);
    assert_unhealthy(&tool, 404, "connect_refused", &port.to_string(), PROMPT);
    let head = Client::connect(tool.addr()).request("HEAD", "/fcgi-ping");
    assert_eq!(head.status, 404);
    let get_length = get(tool.addr(), "/fcgi-ping").body.len();
    assert_eq!(
        head.content_length(),
        Some(get_length),
        "HEAD announces the GET body's length: {head:?}"
    );
}

/// A hung pool behind a Unix socket: once its listen queue is full, a connect is refused at once
/// (EAGAIN), which is `fcgi_overloaded`, not a mysterious connect error.
#[test]
fn full_unix_listen_queue_is_fcgi_overloaded() {
    let fpm = PhpFpm::unix_with("listen.backlog = 1\n");
    let tool = tool_for(&fpm, &[("TIMEOUT", "300ms"), ("COALESCE", "off")]);
    assert_healthy(&tool);
    fpm.stop_workers();
    // The first probes wait in the queue and time out; then the queue is full.
    let response = wait_until(
        Duration::from_secs(10),
        "the listen queue to fill up",
        || {
            let response = get(tool.addr(), "/fcgi-ping");
            (!response.body.starts_with("timeout")).then_some(response)
        },
    );
    response.assert_failure(503, "fcgi_overloaded");
    assert!(response.body.contains("listen queue"), "{response:?}");
    fpm.resume_workers();
    await_healthy(&tool, Duration::from_secs(10));
}
