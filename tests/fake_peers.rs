//! Misbehaving FastCGI peers: each fault gives its own reason word within the deadline, and the tool keeps
//! serving (and recovers) afterwards.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::time::Duration;

use common::fcgi::{BEGIN_REQUEST, CANT_MPX_CONN, OVERLOADED, PARAMS, STDIN, UNKNOWN_ROLE};
use common::{get, timed_get, Behavior, FakePeer, Tool};

/// The probe deadline used here, and the slack allowed on top of it on a busy machine.
const TIMEOUT: Duration = Duration::from_millis(500);
const MARGIN: Duration = Duration::from_secs(1);

fn tool_for(peer: &FakePeer, extra: &[(&str, &str)]) -> Tool {
    let mut env = vec![("TIMEOUT", "500ms")];
    env.extend_from_slice(extra);
    Tool::probing("127.0.0.1", peer.port(), &env)
}

/// Probes a peer showing `fault`: expects 503 with `reason`, within TIMEOUT + MARGIN, a WARN line with the
/// reason (and only one WARN line), the tool alive and answering /health, and healthy again once the peer
/// behaves.
fn assert_fault(fault: Behavior, reason: &str) -> Duration {
    let peer = FakePeer::start(fault);
    let mut tool = tool_for(&peer, &[]);
    let (response, took) = timed_get(tool.addr(), "/fcgi-ping");
    response.assert_failure(503, reason);
    assert!(
        response.body.contains(&peer.port().to_string()),
        "the body should name the destination: {response:?}"
    );
    assert!(took < TIMEOUT + MARGIN, "`{reason}` took {took:?}");
    tool.wait_for_log(&["WARN", reason]);

    tool.assert_alive();
    get(tool.addr(), "/health").assert_ok();
    peer.set(Behavior::healthy());
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let warnings: Vec<String> = tool
        .logs()
        .into_iter()
        .filter(|line| line.contains("WARN"))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one WARN line for the one failed probe: {warnings:?}"
    );
    took
}

/// Like [`assert_fault`] for faults that only the deadline can end: the answer comes at TIMEOUT, not before.
fn assert_times_out(fault: Behavior) {
    let took = assert_fault(fault, "timeout");
    assert!(
        took >= TIMEOUT - Duration::from_millis(50),
        "timed out after {took:?}, before TIMEOUT=500ms"
    );
}

#[test]
fn healthy_peer_is_ok() {
    let peer = FakePeer::start(Behavior::healthy());
    let tool = tool_for(&peer, &[]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
}

#[test]
fn request_is_a_plain_responder_get_of_the_ping_path() {
    let peer = FakePeer::start(Behavior::healthy());
    let tool = tool_for(&peer, &[("PING_PATH", "/custom-ping")]);
    get(tool.addr(), "/fcgi-ping?ignored=1").assert_ok();

    let requests = peer.requests();
    assert_eq!(requests.len(), 1, "one probe, one FastCGI connection");
    let request = &requests[0];
    assert!(
        request.complete(),
        "the request ends with an empty STDIN record: {request:?}"
    );
    assert!(
        request.records.iter().all(|r| r.id == 1),
        "every record has request id 1: {request:?}"
    );
    let begin = &request.records[0];
    assert_eq!(begin.kind, BEGIN_REQUEST);
    assert_eq!(
        &begin.content[..3],
        &[0, 1, 0],
        "role RESPONDER, flags 0 (no KEEP_CONN): {begin:?}"
    );
    assert!(
        request
            .records
            .iter()
            .any(|r| r.kind == PARAMS && r.content.is_empty()),
        "empty PARAMS ends the params"
    );
    assert_eq!(
        request.records.iter().filter(|r| r.kind == STDIN).count(),
        1,
        "only the empty STDIN record"
    );
    for name in [
        "SCRIPT_NAME",
        "SCRIPT_FILENAME",
        "REQUEST_URI",
        "DOCUMENT_URI",
    ] {
        assert_eq!(
            request.param(name).as_deref(),
            Some("/custom-ping"),
            "{name} in {:?}",
            request.params()
        );
    }
    assert_eq!(request.param("REQUEST_METHOD").as_deref(), Some("GET"));
}

#[test]
fn ping_response_is_searched_in_the_body() {
    let peer = FakePeer::start(Behavior::stdout(
        "Content-Type: text/plain\r\n\r\nstatus: all systems go",
    ));
    let tool = tool_for(&peer, &[("PING_RESPONSE", "systems go")]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
}

#[test]
fn garbage_is_protocol_error() {
    assert_fault(Behavior::garbage(), "protocol_error");
}

#[test]
fn wrong_request_id_is_protocol_error() {
    assert_fault(Behavior::wrong_request_id(), "protocol_error");
}

#[test]
fn unexpected_record_type_is_protocol_error() {
    assert_fault(Behavior::unexpected_record_type(), "protocol_error");
}

#[test]
fn short_end_request_is_protocol_error_not_a_crash() {
    assert_fault(Behavior::short_end_request(), "protocol_error");
}

#[test]
fn endless_empty_records_are_response_too_large_at_once() {
    // Empty records fill no content cap: before the record and byte bounds, the probe read them
    // (887 MB in 500 ms) until its deadline and ended `timeout`. The reason tells the two apart.
    assert_fault(Behavior::EndlessEmptyRecords, "response_too_large");
}

#[test]
fn endless_stdout_is_response_too_large() {
    assert_fault(Behavior::EndlessStdout, "response_too_large");
}

#[test]
fn overloaded_is_fcgi_overloaded() {
    assert_fault(Behavior::end_request_status(OVERLOADED), "fcgi_overloaded");
}

#[test]
fn cant_mpx_conn_is_fcgi_rejected() {
    assert_fault(Behavior::end_request_status(CANT_MPX_CONN), "fcgi_rejected");
}

#[test]
fn unknown_role_is_fcgi_rejected() {
    assert_fault(Behavior::end_request_status(UNKNOWN_ROLE), "fcgi_rejected");
}

#[test]
fn close_right_after_the_request_is_closed_early() {
    assert_fault(Behavior::close_after_request(), "closed_early");
}

#[test]
fn close_before_end_request_is_closed_early() {
    assert_fault(Behavior::partial_then_close(), "closed_early");
}

#[test]
fn cgi_error_status_is_bad_status() {
    assert_fault(
        Behavior::stdout(
            "Status: 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\npong",
        ),
        "bad_status",
    );
}

#[test]
fn a_hostile_status_reaches_bodies_and_terminals_escaped() {
    // ESC [2J clears an operator's screen, BEL rings; both came through raw in the body and in
    // `check`'s output.
    let peer = FakePeer::start(Behavior::stdout(
        "Status: 404 \x1b[2J\x07\r\nContent-Type: text/plain\r\n\r\npong",
    ));
    let tool = tool_for(&peer, &[]);
    let response = get(tool.addr(), "/fcgi-ping");
    response.assert_failure(503, "bad_status");
    assert!(
        !response.body.contains(['\x1b', '\x07']) && response.body.contains("\\u{1b}[2J"),
        "{:?}",
        response.body
    );
    let port = peer.port().to_string();
    let run = common::run_to_exit(
        &[("DESTINATION", "127.0.0.1"), ("DESTINATION_PORT", &port)],
        &["check"],
    );
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    let output = format!("{}{}", run.stdout, run.stderr);
    assert!(
        output.contains("bad_status") && !output.contains(['\x1b', '\x07']),
        "{output:?}"
    );
}

#[test]
fn body_without_ping_response_is_unexpected_response() {
    assert_fault(
        Behavior::stdout("Content-Type: text/plain\r\n\r\nsomething else"),
        "unexpected_response",
    );
}

#[test]
fn silent_peer_times_out() {
    assert_times_out(Behavior::silent());
}

#[test]
fn dripping_peer_times_out_at_the_whole_probe_deadline() {
    assert_times_out(Behavior::drip());
}

/// Asserts a probe of a silent peer fails with `timeout` after about `expected`.
fn assert_timeout_after(tool: &Tool, expected: Duration, setting: &str) {
    let (response, took) = timed_get(tool.addr(), "/fcgi-ping");
    response.assert_failure(503, "timeout");
    assert!(
        (expected - Duration::from_millis(50)..expected + MARGIN).contains(&took),
        "{setting}: timed out after {took:?}, expected about {expected:?}"
    );
}

#[test]
fn timeout_accepts_every_documented_form() {
    let peer = FakePeer::start(Behavior::silent());
    for (value, expected) in [
        ("300ms", 300),
        ("0.3", 300),
        ("1s", 1000),
        ("1", 1000),
        ("1.5", 1500),
    ] {
        let tool = tool_for(&peer, &[("TIMEOUT", value)]);
        assert_timeout_after(
            &tool,
            Duration::from_millis(expected),
            &format!("TIMEOUT={value}"),
        );
    }
}

#[test]
fn defaults_are_127_0_0_1_and_800ms() {
    let peer = FakePeer::start(Behavior::silent());
    let tool = Tool::start(&[("DESTINATION_PORT", &peer.port().to_string())]);
    assert_timeout_after(&tool, Duration::from_millis(800), "default TIMEOUT");
    assert_eq!(
        peer.requests().len(),
        1,
        "the default DESTINATION 127.0.0.1 reached the peer"
    );
}

#[test]
fn unresolvable_host_is_resolve_failed() {
    let tool = Tool::start(&[("DESTINATION", "no-such-host.invalid"), ("TIMEOUT", "5s")]);
    let response = get(tool.addr(), "/fcgi-ping");
    response.assert_failure(503, "resolve_failed");
    assert!(
        response.body.contains("no-such-host.invalid"),
        "the body names the host: {response:?}"
    );
    tool.wait_for_log(&["WARN", "resolve_failed"]);
}
