//! `/metrics`: Prometheus text validated by `promtool check metrics` (Debian's prometheus
//! package), php-fpm figures equal to the status page's, probe counters, one status fetch per
//! scrape.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::net::{IpAddr, Ipv4Addr};

use common::fcgi::answer;
use common::{free_port, get, Behavior, Client, FakePeer, PhpFpm, Tool};

/// The value of the sample `name{labels}` (the whole series text as it appears).
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing:\n{text}"))
        .parse()
        .unwrap()
}

/// A field of the `/fcgi-status` body.
fn field(body: &str, name: &str) -> u64 {
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("{name} missing:\n{body}"))
        .parse()
        .unwrap()
}

#[test]
fn metrics_are_valid_and_match_the_status_page() {
    let fpm = PhpFpm::tcp();
    let port = fpm.port().to_string();
    // The status page is cached for a while, so that both reads see the same page: the full one,
    // which /metrics reads by default (PROCESS_METRICS=aggregates) and a per-process threshold
    // makes /fcgi-status read.
    let tool = Tool::start(&[("DESTINATION_PORT", port.as_str()), ("CACHE_TTL", "30s")]);
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let status = get(tool.addr(), "/fcgi-status?min-running-processes=0");
    status.assert_ok_status();
    let metrics = get(tool.addr(), "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    common::promtool::check_metrics(&metrics.body);
    let text = &metrics.body;
    assert_eq!(sample(text, "phpfpm_up{pool=\"www\"}"), 1);
    for (metric, name) in [
        ("phpfpm_accepted_connections", "accepted conn"),
        ("phpfpm_listen_queue", "listen queue"),
        ("phpfpm_max_listen_queue", "max listen queue"),
        ("phpfpm_listen_queue_length", "listen queue len"),
        ("phpfpm_idle_processes", "idle processes"),
        ("phpfpm_active_processes", "active processes"),
        ("phpfpm_total_processes", "total processes"),
        ("phpfpm_max_active_processes", "max active processes"),
        ("phpfpm_max_children_reached", "max children reached"),
        ("phpfpm_slow_requests", "slow requests"),
        ("phpfpm_start_since", "start since"),
    ] {
        assert_eq!(
            sample(text, &format!("{metric}{{pool=\"www\"}}")),
            field(&status.body, name),
            "{metric}"
        );
    }
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"ok\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_probes_total{probe=\"status\",result=\"ok\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_coalesced_total{probe=\"status\",source=\"cached\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_probe_duration_seconds_count{probe=\"ping\"}"
        ),
        1
    );
    assert!(sample(text, "fastcgi_healthcheck_open_connections") >= 1);
}

#[test]
fn php_fpm_down_is_phpfpm_up_0_and_counted_by_reason() {
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)).to_string();
    let tool = Tool::start(&[("DESTINATION_PORT", port.as_str())]);
    get(tool.addr(), "/fcgi-ping").assert_failure(503, "connect_refused");
    let metrics = get(tool.addr(), "/metrics");
    assert_eq!(
        metrics.status, 200,
        "a scrape succeeds while php-fpm is down"
    );
    common::promtool::check_metrics(&metrics.body);
    assert!(
        metrics.body.lines().any(|l| l == "phpfpm_up 0"),
        "before any page was read there is no pool to name: {}",
        metrics.body
    );
    assert_eq!(sample(&metrics.body, "phpfpm_scrape_failures"), 1);
    assert_eq!(
        sample(
            &metrics.body,
            "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"connect_refused\"}"
        ),
        1
    );
}

/// A fake php-fpm whose status page names pool `www` (7 accepted connections), and a tool
/// probing it.
fn status_page_peer() -> (FakePeer, Tool) {
    let page = "Content-type: text/plain\r\n\r\npool: www\naccepted conn: 7\ntotal processes: 2\n";
    let peer = FakePeer::start(Behavior::hold(answer(1, page)));
    let tool = Tool::probing("127.0.0.1", peer.port(), &[]);
    (peer, tool)
}

#[test]
fn a_scrape_fetches_the_status_page_once_and_nothing_else() {
    let (peer, tool) = status_page_peer();
    let metrics = get(tool.addr(), "/metrics");
    common::promtool::check_metrics(&metrics.body);
    assert_eq!(
        sample(&metrics.body, "phpfpm_accepted_connections{pool=\"www\"}"),
        7
    );
    let requests = peer.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].param("SCRIPT_NAME").as_deref(),
        Some("/fpm-status")
    );
}

/// `HEAD /metrics` is answered as `GET`, without the body (the README and `--help` say so).
#[test]
fn head_metrics_is_get_without_the_body() {
    let tool = Tool::start(&[("STATUS_PATH", "off")]);
    let mut client = Client::connect(tool.addr());
    let head = client.request("HEAD", "/metrics");
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.body, "", "{head:?}");
    assert!(head.content_length().is_some_and(|n| n > 0), "{head:?}");
    assert_eq!(client.request("GET", "/metrics").status, 200);
}

#[test]
fn status_path_off_leaves_php_fpm_out() {
    let tool = Tool::start(&[("STATUS_PATH", "off")]);
    let metrics = get(tool.addr(), "/metrics");
    common::promtool::check_metrics(&metrics.body);
    assert!(!metrics.body.contains("phpfpm_"), "{}", metrics.body);
    assert_eq!(get(tool.addr(), "/fcgi-status").status, 404);
}

/// An alert written for php-fpm_exporter (`phpfpm_up{pool="www"} == 0`) must fire when php-fpm
/// goes down after a successful scrape, and `phpfpm_scrape_failures{pool="www"}` counts.
#[test]
fn php_fpm_down_keeps_the_last_pool_label_and_counts_scrape_failures() {
    let (peer, tool) = status_page_peer();
    let up = get(tool.addr(), "/metrics");
    common::promtool::check_metrics(&up.body);
    assert_eq!(sample(&up.body, "phpfpm_up{pool=\"www\"}"), 1);
    assert_eq!(sample(&up.body, "phpfpm_scrape_failures{pool=\"www\"}"), 0);
    peer.set(Behavior::close_after_request());
    for expected in [1, 2] {
        let down = get(tool.addr(), "/metrics");
        common::promtool::check_metrics(&down.body);
        assert_eq!(sample(&down.body, "phpfpm_up{pool=\"www\"}"), 0);
        assert!(
            !down.body.lines().any(|l| l.starts_with("phpfpm_up ")),
            "{}",
            down.body
        );
        assert_eq!(
            sample(&down.body, "phpfpm_scrape_failures{pool=\"www\"}"),
            expected
        );
        assert!(
            down.body
                .contains("# TYPE phpfpm_scrape_failures counter\n"),
            "{}",
            down.body
        );
    }
}

/// `PROCESS_METRICS=per-process` against a real php-fpm: promtool passes (php-fpm_exporter's own
/// names excepted), one series per worker, and the aggregates agree with them.
#[test]
fn per_process_metrics_are_valid() {
    let fpm = PhpFpm::tcp();
    let port = fpm.port().to_string();
    let tool = Tool::start(&[
        ("DESTINATION_PORT", port.as_str()),
        ("PROCESS_METRICS", "per-process"),
    ]);
    let metrics = get(tool.addr(), "/metrics");
    common::promtool::check_metrics(&metrics.body);
    let text = &metrics.body;
    for name in [
        "phpfpm_process_state{",
        "phpfpm_process_requests{",
        "phpfpm_process_request_duration{",
        "phpfpm_process_last_request_cpu{",
        "phpfpm_process_last_request_memory{",
    ] {
        assert_eq!(
            text.matches(&format!("\n{name}")).count(),
            2,
            "{name}\n{text}"
        );
    }
    for (name, kind) in [
        ("phpfpm_process_state", "gauge"),
        ("phpfpm_process_requests", "counter"),
        ("phpfpm_process_request_duration", "gauge"),
        ("phpfpm_process_last_request_cpu", "gauge"),
        ("phpfpm_process_last_request_memory", "gauge"),
        ("fastcgi_healthcheck_processes", "gauge"),
        ("fastcgi_healthcheck_oldest_request_seconds", "gauge"),
        ("fastcgi_healthcheck_processes_left_out", "gauge"),
        (
            "fastcgi_healthcheck_process_pages_truncated_total",
            "counter",
        ),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n")),
            "{name}\n{text}"
        );
    }
    // The worker answering the status page is Running; the other is Idle.
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"Running\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            text,
            "fastcgi_healthcheck_processes{pool=\"www\",state=\"Idle\"}"
        ),
        1
    );
    // The default (aggregates): the aggregates, no per-child series.
    let default = Tool::start(&[("DESTINATION_PORT", port.as_str())]);
    let text = get(default.addr(), "/metrics").body;
    assert!(
        !text.contains("phpfpm_process_")
            && text.contains("\nfastcgi_healthcheck_processes{pool=\"www\",state=\"Running\"} 1\n")
            && text.contains("\nfastcgi_healthcheck_oldest_request_seconds{pool=\"www\"} "),
        "{text}"
    );
    // Off: not one figure from the full page.
    let off = Tool::start(&[
        ("DESTINATION_PORT", port.as_str()),
        ("PROCESS_METRICS", "off"),
    ]);
    let text = get(off.addr(), "/metrics").body;
    assert!(
        !text.contains("phpfpm_process_") && !text.contains("fastcgi_healthcheck_processes"),
        "{text}"
    );
}
