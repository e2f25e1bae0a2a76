//! The HTTP side: routing, keep-alive, pipelining, limits, slow and abusive clients, shutdown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use common::sys::server_drained;
use common::{
    free_port, get, request_text, timed_get, wait_until, Behavior, Client, FakePeer, Response, Tool,
};

/// A clearly prompt answer on a busy 2-core machine.
const PROMPT: Duration = Duration::from_millis(500);
const MARGIN: Duration = Duration::from_secs(1);

/// A tool whose FastCGI destination refuses connections (so /fcgi-ping fails fast), plus `extra`.
fn tool(extra: &[(&str, &str)]) -> Tool {
    Tool::probing(
        "127.0.0.1",
        free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        extra,
    )
}

fn assert_no_store(response: &Response) {
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "{response:?}"
    );
    assert!(
        response.content_length().is_some(),
        "Content-Length on every response: {response:?}"
    );
}

/// Asserts an error answer that ends the connection: `status`, `Connection: close`, then EOF.
fn assert_answered_then_closed(client: &mut Client, status: u16) {
    let response = client.read_response("GET");
    assert_eq!(response.status, status, "{response:?}");
    assert_no_store(&response);
    assert!(
        response.says_close(),
        "`Connection: close` on a response before closing: {response:?}"
    );
    assert!(
        client.closed_within(Duration::from_secs(2)),
        "the connection should be closed after {status}"
    );
}

#[test]
fn health_routes_answer_ok_for_get_and_head() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    for path in ["/health", "/healthz", "/", "/health?verbose=1"] {
        let response = client.request("GET", path);
        response.assert_ok();
        assert_no_store(&response);
        assert!(
            !response.says_close(),
            "HTTP/1.1 keeps the connection: {response:?}"
        );
        let head = client.request("HEAD", path);
        assert_eq!(
            (head.status, head.content_length(), head.body.as_str()),
            (200, Some(3), ""),
            "{head:?}"
        );
    }
    // No stray body bytes after the HEAD answers.
    client.request("GET", "/health").assert_ok();
    assert!(
        client.unread().is_empty(),
        "unexpected bytes: {:?}",
        String::from_utf8_lossy(client.unread())
    );
}

#[test]
fn unknown_path_is_404_and_other_methods_are_405_with_allow() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    let not_found = client.request("GET", "/nope");
    assert_eq!(not_found.status, 404, "{not_found:?}");
    assert_no_store(&not_found);
    for (method, path) in [
        ("POST", "/health"),
        ("PUT", "/fcgi-ping"),
        ("DELETE", "/"),
        ("OPTIONS", "/healthz"),
    ] {
        client.send(request_text(method, path, &["Content-Length: 0"]).as_bytes());
        let response = client.read_response(method);
        assert_eq!(response.status, 405, "{method} {path}: {response:?}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"), "{response:?}");
        assert_no_store(&response);
    }
    client.request("GET", "/healthz").assert_ok();
}

#[test]
fn failing_probe_response_has_the_same_framing() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    let response = client.request("GET", "/fcgi-ping");
    response.assert_failure(503, "connect_refused");
    assert_no_store(&response);
    let head = client.request("HEAD", "/fcgi-ping");
    assert_eq!(
        (head.status, head.content_length(), head.body.as_str()),
        (503, Some(response.body.len()), "")
    );
    client.request("GET", "/health").assert_ok();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    let requests = [
        ("GET", "/health", 200),
        ("GET", "/nope", 404),
        ("POST", "/healthz", 405),
        ("HEAD", "/", 200),
        ("GET", "/fcgi-ping", 503),
        ("GET", "/healthz", 200),
    ];
    let batch: String = requests
        .iter()
        .map(|(method, path, _)| request_text(method, path, &["Content-Length: 0"]))
        .collect();
    client.send(batch.as_bytes());
    for (method, path, status) in requests {
        let response = client.read_response(method);
        assert_eq!(
            response.status, status,
            "{method} {path} in the pipeline: {response:?}"
        );
    }
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    client.send(b"GET /health HTTP/1.0\r\n\r\n");
    let response = client.read_response("GET");
    response.assert_ok();
    assert!(response.says_close(), "{response:?}");
    assert!(
        client.closed_within(Duration::from_secs(2)),
        "HTTP/1.0 connection should close"
    );

    let mut client = Client::connect(tool.addr());
    for _ in 0..2 {
        client.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        let response = client.read_response("GET");
        response.assert_ok();
        assert!(
            !response.says_close(),
            "HTTP/1.0 with keep-alive stays open: {response:?}"
        );
    }
}

#[test]
fn connection_close_is_honoured() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    client.send(request_text("GET", "/health", &["Connection: close"]).as_bytes());
    let response = client.read_response("GET");
    response.assert_ok();
    assert!(response.says_close(), "{response:?}");
    assert!(client.closed_within(Duration::from_secs(2)));
}

#[test]
fn request_body_is_consumed_before_the_next_request() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    client.send(b"GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n\r\nhello world");
    client.read_response("GET").assert_ok();
    client.send(b"POST /healthz HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nGET /");
    assert_eq!(client.read_response("POST").status, 405);
    let body = "b".repeat(60_000);
    client.send(
        format!(
            "GET /health HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    client.read_response("GET").assert_ok();
    client.request("GET", "/healthz").assert_ok();
    assert!(
        client.unread().is_empty(),
        "body bytes were not taken for a request"
    );
}

#[test]
fn expect_100_continue_is_answered_at_once_then_closed() {
    // The client sends its head and waits for `100 Continue` before its body; the body was
    // waited for until CLIENT_TIMEOUT (the answer was a 408), or until curl gave up after 1 s.
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    let started = Instant::now();
    client.send(
        request_text(
            "POST",
            "/health",
            &["Expect: 100-continue", "Content-Length: 5"],
        )
        .as_bytes(),
    );
    let response = client.read_response("POST");
    let took = started.elapsed();
    assert_eq!(response.status, 405, "{response:?}");
    assert!(took < PROMPT, "answered after {took:?}");
    assert!(response.says_close(), "{response:?}");
    assert!(client.closed_within(Duration::from_secs(2)));
    // A client that sent its body anyway keeps its connection.
    let mut client = Client::connect(tool.addr());
    client.send(b"GET /health HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello");
    client.read_response("GET").assert_ok();
    client.request("GET", "/healthz").assert_ok();
}

#[test]
fn http_1_0_close_wins_over_keep_alive() {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    client.send(b"GET /health HTTP/1.0\r\nConnection: close, keep-alive\r\n\r\n");
    let response = client.read_response("GET");
    response.assert_ok();
    assert!(response.says_close(), "{response:?}");
    assert!(client.closed_within(Duration::from_secs(2)));
}

/// Sends GET /health with the `extra` header line and asserts it is answered with `status`, then closed;
/// the tool serves the next client.
fn assert_answered_then_closed_for_header(extra: &str, status: u16) {
    let tool = tool(&[]);
    let mut client = Client::connect(tool.addr());
    client.send(request_text("GET", "/health", &[extra]).as_bytes());
    assert_answered_then_closed(&mut client, status);
    get(tool.addr(), "/health").assert_ok();
}

#[test]
fn body_over_64_kib_is_answered_then_closed() {
    assert_answered_then_closed_for_header("Content-Length: 100000", 200);
}

#[test]
fn chunked_request_is_answered_then_closed() {
    assert_answered_then_closed_for_header("Transfer-Encoding: chunked", 200);
}

#[test]
fn head_over_8_kib_is_431_and_closed() {
    assert_answered_then_closed_for_header(&format!("X-Filler: {}", "a".repeat(9 * 1024)), 431);
}

#[test]
fn malformed_head_is_400_and_closed() {
    let tool = tool(&[]);
    for garbage in [
        "this is not http\r\n\r\n",
        "GET /health HTTP/1.1\r\nno colon here\r\n\r\n",
    ] {
        let mut client = Client::connect(tool.addr());
        client.send(garbage.as_bytes());
        assert_answered_then_closed(&mut client, 400);
    }
    get(tool.addr(), "/health").assert_ok();
}

/// The time from `started` to the connection being closed, asserting it falls in `expected`.
fn assert_closed_at(client: &mut Client, started: Instant, expected: std::ops::Range<Duration>) {
    assert!(
        client.closed_within(expected.end),
        "not closed within {:?}",
        expected.end
    );
    let took = started.elapsed();
    assert!(
        expected.contains(&took),
        "closed after {took:?}, expected within {expected:?}"
    );
}

#[test]
fn slow_head_gets_408_after_client_timeout() {
    let tool = tool(&[("CLIENT_TIMEOUT", "1s")]);
    let mut client = Client::connect(tool.addr());
    let started = Instant::now();
    client.send(b"GET /health HTTP/1.1\r\nHost: te");
    let response = client.read_response("GET");
    let took = started.elapsed();
    assert_eq!(response.status, 408, "{response:?}");
    assert_no_store(&response);
    assert!(response.says_close(), "{response:?}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(1) + MARGIN).contains(&took),
        "408 after {took:?}"
    );
    assert!(client.closed_within(Duration::from_secs(1)));
}

#[test]
fn silent_connection_is_closed_without_answer_after_client_timeout() {
    let tool = tool(&[("CLIENT_TIMEOUT", "1s")]);
    let mut client = Client::connect(tool.addr());
    assert_closed_at(
        &mut client,
        Instant::now(),
        Duration::from_millis(900)..Duration::from_secs(1) + MARGIN,
    );
    assert!(
        client.unread().is_empty(),
        "no answer for a client that sent nothing: {:?}",
        client.unread()
    );
}

#[test]
fn idle_keep_alive_connection_is_closed_after_client_timeout() {
    let tool = tool(&[("CLIENT_TIMEOUT", "1s")]);
    let mut client = Client::connect(tool.addr());
    client.request("GET", "/health").assert_ok();
    assert_closed_at(
        &mut client,
        Instant::now(),
        Duration::from_millis(900)..Duration::from_secs(1) + MARGIN,
    );
}

/// A client that sends an ever-growing head, 512 bytes every 20 ms, until the server cuts it off (or 5 s).
fn start_oversized_client(tool: &Tool) -> thread::JoinHandle<()> {
    let mut client = Client::connect(tool.addr());
    thread::spawn(move || {
        client.send(b"GET /health HTTP/1.1\r\nHost: test\r\n");
        let line = format!("X-Filler: {}\r\n", "a".repeat(500));
        for _ in 0..250 {
            if client.try_send(line.as_bytes()).is_err() {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    })
}

#[test]
fn slow_oversized_and_hanging_requests_do_not_delay_others() {
    let peer = FakePeer::start(Behavior::silent());
    let port = peer.port().to_string();
    let tool = Tool::start(&[
        ("DESTINATION", "127.0.0.1"),
        ("DESTINATION_PORT", &port),
        ("TIMEOUT", "3s"),
    ]);

    let mut slow = Client::connect(tool.addr());
    slow.send(b"GET /health HTTP/1.1\r\nHo");
    let oversized = start_oversized_client(&tool);
    let mut hanging = Client::connect(tool.addr());
    hanging.send(request_text("GET", "/fcgi-ping", &[]).as_bytes());

    for _ in 0..5 {
        let (response, took) = timed_get(tool.addr(), "/health");
        response.assert_ok();
        assert!(
            took < PROMPT,
            "/health took {took:?} next to slow, oversized and hanging clients"
        );
    }
    oversized.join().unwrap();
    // The slow client was not forgotten either.
    slow.send(b"st: test\r\n\r\n");
    slow.read_response("GET").assert_ok();
}

/// With MAX_CONNECTIONS=4 and 4 idle connections (fresh if `!used`, else after one request each), a fifth
/// client is served promptly and one idle connection is closed to make room.
fn assert_idle_connection_evicted(used: bool) {
    let tool = tool(&[("MAX_CONNECTIONS", "4"), ("CLIENT_TIMEOUT", "30s")]);
    let mut idle: Vec<Client> = (0..4).map(|_| Client::connect(tool.addr())).collect();
    if used {
        for client in &mut idle {
            client.request("GET", "/health").assert_ok();
        }
    }
    let (response, took) = timed_get(tool.addr(), "/health");
    response.assert_ok();
    assert!(took < PROMPT + MARGIN, "the newcomer waited {took:?}");
    let evicted = idle
        .iter_mut()
        .map(|client| client.closed_within(Duration::from_millis(300)))
        .filter(|&closed| closed)
        .count();
    assert!(
        evicted >= 1,
        "no idle connection was closed to make room for the newcomer"
    );
}

#[test]
fn max_connections_evicts_a_fresh_idle_connection() {
    assert_idle_connection_evicted(false);
}

#[test]
fn max_connections_evicts_a_keep_alive_idle_connection() {
    assert_idle_connection_evicted(true);
}

#[test]
fn max_connections_all_busy_newcomer_gets_503() {
    // Two connections busy probing a peer that never answers (for 2 s, the probe deadline).
    let peer = FakePeer::start(Behavior::silent());
    let tool = Tool::probing(
        "127.0.0.1",
        peer.port(),
        &[
            ("MAX_CONNECTIONS", "2"),
            ("TIMEOUT", "2s"),
            ("COALESCE", "off"),
        ],
    );
    let server_port = tool.addr().port();
    let mut busy: Vec<Client> = (0..2).map(|_| Client::connect(tool.addr())).collect();
    for client in &mut busy {
        client.send(request_text("GET", "/fcgi-ping", &[]).as_bytes());
        wait_drained(server_port, client, "the server to read the request");
    }
    wait_until(
        Duration::from_secs(5),
        "both probes to reach the peer",
        || (peer.requests().len() == 2).then_some(()),
    );
    let started = Instant::now();
    let mut newcomer = Client::connect(tool.addr());
    newcomer.send(request_text("GET", "/health", &[]).as_bytes());
    assert_answered_then_closed(&mut newcomer, 503);
    assert!(
        started.elapsed() < PROMPT + MARGIN,
        "the 503 took {:?}",
        started.elapsed()
    );
    // The busy ones are still served: their probes time out.
    for client in &mut busy {
        client.read_response("GET").assert_failure(503, "timeout");
    }
}

/// A client in the middle of sending its request body is busy, not idle: a newcomer at the cap
/// does not push it out (within the first second), and it gets its answer. A stalled request
/// gives way after a second by design, so a try whose newcomer came later (a loaded machine) is
/// not a verdict: it is tried again.
#[test]
fn max_connections_a_body_in_progress_is_not_idle() {
    for _ in 0..5 {
        let tool = tool(&[("MAX_CONNECTIONS", "1"), ("CLIENT_TIMEOUT", "30s")]);
        let server_port = tool.addr().port();
        let mut sending = Client::connect(tool.addr());
        let started = std::time::Instant::now();
        sending.send(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n0123456789");
        wait_drained(
            server_port,
            &sending,
            "the server to read the head and half the body",
        );
        let mut newcomer = Client::connect(tool.addr());
        newcomer.send(request_text("GET", "/health", &[]).as_bytes());
        let answer = newcomer.read_response("GET");
        if started.elapsed() >= Duration::from_millis(900) {
            continue;
        }
        assert_eq!(answer.status, 503, "{answer:?}");
        assert!(answer.says_close(), "{answer:?}");
        assert!(newcomer.closed_within(Duration::from_secs(2)));
        sending.send(b"0123456789");
        assert_eq!(sending.read_response("POST").status, 405);
        return;
    }
    panic!("five tries, each past the first second: the machine is too loaded to tell");
}

#[test]
fn max_connections_stalled_requests_give_way_after_a_second() {
    // Two connections that sent one byte of a request and stopped (a slowloris) fill the cap.
    let tool = tool(&[("MAX_CONNECTIONS", "2"), ("CLIENT_TIMEOUT", "30s")]);
    let server_port = tool.addr().port();
    let mut stalled: Vec<Client> = (0..2).map(|_| Client::connect(tool.addr())).collect();
    for client in &mut stalled {
        client.send(b"G");
        wait_drained(server_port, client, "the server to read the byte");
    }
    let started = Instant::now();
    // A newcomer may be refused while the stalled requests are young; after a second they give way.
    let response = wait_until(Duration::from_secs(5), "a newcomer to be served", || {
        let mut newcomer = Client::connect(tool.addr());
        newcomer.send(request_text("GET", "/health", &[]).as_bytes());
        let response = newcomer.read_response("GET");
        if response.status == 503 {
            thread::sleep(Duration::from_millis(100));
            return None;
        }
        Some(response)
    });
    response.assert_ok();
    assert!(
        started.elapsed() < Duration::from_secs(1) + MARGIN,
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stalled
            .iter_mut()
            .any(|client| client.closed_within(Duration::from_secs(2))),
        "one stalled connection should have been closed to make room"
    );
}

/// Under a low open-file limit (systemd's default soft limit is 1024) the cap shrinks to what the
/// limit holds, with a warning, so that idle connections give way before descriptors run out and
/// a probe never fails for want of one.
#[test]
fn a_low_open_file_limit_lowers_the_cap_and_probes_keep_working() {
    let peer = FakePeer::start(Behavior::healthy());
    let port = peer.port().to_string();
    let env = [
        ("DESTINATION", "127.0.0.1"),
        ("DESTINATION_PORT", port.as_str()),
    ];
    let tool = Tool::start_under(&["prlimit", "--nofile=256:256"], &env);
    assert!(
        tool.logs().iter().any(|l| l.starts_with("WARN")
            && l.contains("MAX_CONNECTIONS")
            && l.contains("ulimit")),
        "{:#?}",
        tool.logs()
    );
    let idle: Vec<Client> = (0..300).map(|_| Client::connect(tool.addr())).collect();
    let started = Instant::now();
    get(tool.addr(), "/fcgi-ping").assert_ok();
    assert!(
        started.elapsed() < PROMPT + MARGIN,
        "took {:?}",
        started.elapsed()
    );
    drop(idle);
}

/// Logging to a stderr that cannot be written (a log shipper gone, `2>/dev/full`) loses the lines
/// and nothing else: the server keeps answering.
#[test]
fn a_full_stderr_does_not_stop_the_server() {
    let server = SocketAddr::new(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    );
    let refused = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
    let server_text = server.to_string();
    let mut child = common::tool::command(
        &[
            ("SERVER", server_text.as_str()),
            ("DESTINATION_PORT", refused.as_str()),
            ("RUST_LOG", "debug"),
        ],
        &[],
    )
    .stderr(std::fs::File::create("/dev/full").unwrap())
    .spawn()
    .unwrap();
    wait_until(Duration::from_secs(10), "the tool to listen", || {
        std::net::TcpStream::connect(server).ok()
    });
    for _ in 0..20 {
        get(server, "/fcgi-ping").assert_failure(503, "connect_refused");
    }
    get(server, "/health").assert_ok();
    assert!(child.try_wait().unwrap().is_none(), "the server died");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_and_sigint_exit_zero_promptly() {
    for signal in ["TERM", "INT"] {
        let mut tool = tool(&[]);
        let mut idle = Client::connect(tool.addr());
        idle.request("GET", "/health").assert_ok();
        let started = Instant::now();
        tool.signal(signal);
        let status = tool.wait_exit(Duration::from_secs(3));
        assert!(status.is_some(), "still running 3 s after SIG{signal}");
        assert_eq!(
            status.unwrap().code(),
            Some(0),
            "exit status after SIG{signal}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "SIG{signal} exit took {:?}",
            started.elapsed()
        );
    }
}

/// A tool probing a peer that never answers (probe deadline `timeout`), and a client whose
/// `/fcgi-ping` is in flight: the probe has reached the peer.
fn probe_in_flight(timeout: &str) -> (FakePeer, Tool, Client) {
    let peer = FakePeer::start(Behavior::silent());
    let tool = Tool::probing("127.0.0.1", peer.port(), &[("TIMEOUT", timeout)]);
    let mut in_flight = Client::connect(tool.addr());
    in_flight.send(request_text("GET", "/fcgi-ping", &[]).as_bytes());
    wait_until(
        Duration::from_secs(5),
        "the probe to reach the peer",
        || (!peer.requests().is_empty()).then_some(()),
    );
    (peer, tool, in_flight)
}

/// During the stop's grace (a probe in flight may take `TIMEOUT` + 1 s), a second SIGTERM or
/// SIGINT ends the process at once.
#[test]
fn a_second_signal_ends_the_stop_at_once() {
    for (first, second) in [("TERM", "TERM"), ("INT", "INT"), ("TERM", "INT")] {
        let (_peer, mut tool, _in_flight) = probe_in_flight("20s");
        tool.signal(first);
        tool.wait_for_log(&["stopping"]);
        assert!(
            tool.wait_exit(Duration::from_millis(300)).is_none(),
            "the first SIG{first} must let the probe finish"
        );
        let started = Instant::now();
        tool.signal(second);
        let status = tool.wait_exit(Duration::from_secs(3));
        assert!(
            status.is_some(),
            "still running 3 s after a second signal (SIG{first}, then SIG{second})"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn sigterm_lets_an_in_flight_probe_finish() {
    let (_peer, mut tool, mut in_flight) = probe_in_flight("1s");
    let started = Instant::now();
    tool.signal("TERM");
    in_flight
        .read_response("GET")
        .assert_failure(503, "timeout");
    let status = tool.wait_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|status| status.code()),
        Some(0),
        "exit status after SIGTERM with a probe in flight"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1) + Duration::from_secs(1) + MARGIN,
        "stopping took {took:?}"
    );
}

/// Waits (5 s at most) until the server has read everything `client` sent: `what` names it.
fn wait_drained(server_port: u16, client: &Client, what: &str) {
    let client_port = client.local_port();
    wait_until(Duration::from_secs(5), what, || {
        server_drained(server_port, client_port).then_some(())
    });
}
