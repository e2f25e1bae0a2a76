//! Single-flight: concurrent probes share one FastCGI request; `COALESCE=off` and `CACHE_TTL`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::tool::{self, scaled};
use common::{
    get, server_read_everything, wait_until, Behavior, Client, FakePeer, PhpFpm, Response, Tool,
};

fn tool_for_peer(peer: &FakePeer, extra: &[(&str, &str)]) -> Tool {
    Tool::probing("127.0.0.1", peer.port(), extra)
}

/// `clients` simultaneous GET /fcgi-ping, each on its own connection, released together.
fn simultaneous_pings(tool: &Tool, clients: usize) -> Vec<Response> {
    let barrier = Arc::new(Barrier::new(clients));
    let addr = tool.addr();
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                barrier.wait();
                client.request("GET", "/fcgi-ping")
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn concurrent_probes_share_one_fastcgi_request() {
    // The answer takes 1 s, so every client arrives while the first probe is in flight.
    let peer = FakePeer::start(Behavior::Late(Duration::from_secs(1)));
    let tool = tool_for_peer(&peer, &[("TIMEOUT", "5s")]);
    let responses = simultaneous_pings(&tool, 50);
    for response in &responses {
        response.assert_ok();
    }
    assert_eq!(
        peer.requests().len(),
        1,
        "50 concurrent probes should cost one FastCGI request"
    );
}

#[test]
fn a_shared_failure_reaches_every_waiter() {
    let peer = FakePeer::start(Behavior::silent());
    let tool = tool_for_peer(&peer, &[("TIMEOUT", "500ms")]);
    let responses = simultaneous_pings(&tool, 20);
    for response in &responses {
        response.assert_failure(503, "timeout");
    }
    assert_eq!(peer.requests().len(), 1);
    // The warning may reach the log reader after the responses reach the clients.
    tool.wait_for_log(&["WARN", "timeout"]);
    let logs = tool.logs();
    let warnings = logs
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("timeout"))
        .count();
    assert_eq!(warnings, 1, "one probe, one warning: {logs:#?}");
}

#[test]
fn coalesce_off_sends_one_request_per_probe() {
    let peer = FakePeer::start(Behavior::Late(Duration::from_millis(500)));
    let tool = tool_for_peer(&peer, &[("TIMEOUT", "5s"), ("COALESCE", "off")]);
    for response in simultaneous_pings(&tool, 20) {
        response.assert_ok();
    }
    assert_eq!(peer.requests().len(), 20);
}

#[test]
fn without_cache_ttl_each_later_probe_asks_again() {
    let peer = FakePeer::start(Behavior::healthy());
    let tool = tool_for_peer(&peer, &[]);
    for _ in 0..3 {
        get(tool.addr(), "/fcgi-ping").assert_ok();
    }
    assert_eq!(peer.requests().len(), 3);
}

#[test]
fn cache_ttl_reuses_a_verdict_then_expires() {
    let peer = FakePeer::start(Behavior::healthy());
    // Long enough that two requests in a row fall within it even on a busy machine.
    let tool = tool_for_peer(&peer, &[("CACHE_TTL", "2s")]);
    for _ in 0..3 {
        get(tool.addr(), "/fcgi-ping").assert_ok();
    }
    assert_eq!(
        peer.requests().len(),
        1,
        "within the TTL the verdict is reused"
    );
    // After the TTL a probe asks again; and a failure is cached like a success.
    peer.set(Behavior::garbage());
    wait_until(
        Duration::from_secs(10),
        "the cached verdict to expire",
        || (get(tool.addr(), "/fcgi-ping").status == 503).then_some(()),
    );
    let asked = peer.requests().len();
    get(tool.addr(), "/fcgi-ping").assert_failure(503, "protocol_error");
    assert_eq!(
        peer.requests().len(),
        asked,
        "the failure just seen is answered from the cache, without a FastCGI request"
    );
}

/// The start-up line names the cache as a person would: `off`, or its duration.
#[test]
fn the_start_up_line_says_cache_off_or_its_ttl() {
    let peer = FakePeer::start(Behavior::healthy());
    for (ttl, shown) in [
        ("0", "cache off"),
        ("0ms", "cache off"),
        ("250ms", "cache 250ms"),
    ] {
        let tool = tool_for_peer(&peer, &[("CACHE_TTL", ttl)]);
        let line = tool.wait_for_log(&["listening on"]);
        assert!(
            line.contains(&format!("{shown})")),
            "CACHE_TTL={ttl}: {line}"
        );
    }
}

/// The storm the original tool cannot take: 1,000 probes at once against a real php-fpm cost it
/// one FastCGI request. The workers are stopped while the probes arrive, so all of them are in
/// flight together; then they continue and every client gets its 200.
#[test]
fn a_storm_of_1000_probes_costs_php_fpm_one_request() {
    let fpm = PhpFpm::tcp();
    let tool = Tool::probing(
        "127.0.0.1",
        fpm.port(),
        &[("TIMEOUT", "10s"), ("CLIENT_TIMEOUT", "30s")],
    );
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let before = fpm.status_field("accepted conn");

    fpm.stop_workers();
    let request = b"GET /fcgi-ping HTTP/1.1\r\nHost: storm\r\n\r\n";
    let mut clients: Vec<Client> = (0..1000)
        .map(|_| {
            let mut client = Client::connect(tool.addr());
            client.send(request);
            client
        })
        .collect();
    wait_until(
        Duration::from_secs(10),
        "the tool to read all 1,000 requests",
        || server_read_everything(tool.addr().port(), 1000).then_some(()),
    );
    fpm.resume_workers();

    for client in &mut clients {
        client.read_response("GET").assert_ok();
    }
    // One request for the storm, one for this status query.
    let after = fpm.status_field("accepted conn");
    assert_eq!(
        after - before,
        2,
        "php-fpm accepted {} connections during the storm",
        after - before - 1
    );
}

/// The tool's resident memory in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// After a storm of connections has passed, the tool's memory goes back to near what it was
/// before: bounded per connection while it lasts, handed back when it is over.
#[test]
fn memory_returns_near_idle_after_a_storm() {
    let peer = FakePeer::start(Behavior::healthy());
    let tool = tool_for_peer(&peer, &[]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let storm = || {
        let mut clients: Vec<Client> = (0..1000).map(|_| Client::connect(tool.addr())).collect();
        for client in &mut clients {
            client.send(b"GET /health HTTP/1.1\r\nHost: storm\r\n\r\n");
        }
        for client in &mut clients {
            client.read_response("GET").assert_ok();
        }
        clients
    };
    if tool::runner().is_some() {
        // Under qemu-user the process's RSS is the emulator's too, with its cache of translated
        // code, which grows the first time each code path runs and never shrinks: one storm
        // first, so that the idle figure holds the translations of a storm's paths.
        drop(storm());
        wait_until(
            scaled(Duration::from_secs(5)),
            "the warm-up storm's connections to close",
            || {
                let metrics = get(tool.addr(), "/metrics").body;
                // The scrape's own connection is the one left open.
                metrics
                    .contains("\nfastcgi_healthcheck_open_connections 1\n")
                    .then_some(())
            },
        );
    }
    let idle = rss_kib(tool.pid());
    for _ in 0..2 {
        let clients = storm();
        let during = rss_kib(tool.pid());
        assert!(
            during < idle + 8 * 1024,
            "1,000 connections took {} KiB",
            during - idle
        );
        drop(clients);
        // Handed back: below the storm's figure and near idle again (the trim follows the last
        // close, which the clients' drop does not wait for).
        let mut last = during;
        let released = common::sys::poll(scaled(Duration::from_secs(5)), || {
            last = rss_kib(tool.pid());
            (last < during && last < idle + 1024).then_some(last)
        });
        assert!(
            released.is_some(),
            "memory not released within 5 s: idle {idle} KiB, storm {during} KiB, now {last} KiB"
        );
    }
}
