//! Every pool of a host from one process (`POOLS`): one real php-fpm master with three pools
//! (`api` and `www` on Unix sockets in one directory, `admin` on TCP), each named endpoint per
//! pool, the all-pools answers naming the failing pools, a pool removed by a reload and added
//! back, discovery of a socket directory, hung pools that never delay `/metrics`, the pool label
//! on every series of a pool, `check` and `check --pool`, coalescing and the cache per pool
//! (fake peers), and the configuration errors.
//!
//! The first two tests prove the harness alone (the master, its reload, a sleeper saturating one
//! pool), without the tool.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::fcgi::fcgi_get;
use common::pools::{FpmPools, PoolSpec};
use common::promtool::{samples, value};
use common::sleeper::{sleepers, Docroot};
use common::{
    get, run_to_exit, timed_get, wait_until, Behavior, Client, FakePeer, Listen, Response, Tool,
};

/// The `TIMEOUT` of the hung-pool test: long enough that two pools read one after the other
/// (2 x TIMEOUT) cannot pass for two read together (TIMEOUT + SLACK).
const TIMEOUT: Duration = Duration::from_secs(2);

/// What an answer may take beyond `TIMEOUT` on this shared machine.
const SLACK: Duration = Duration::from_millis(700);

/// How long discovery may keep a list: a removed pool is gone, an added one there, within this
/// (and [`DISCOVERY_SLACK`]).
const DISCOVERY_AGE: Duration = Duration::from_secs(10);

/// What discovery may take beyond [`DISCOVERY_AGE`] on this shared machine (the reload, the
/// discovery task's turn).
const DISCOVERY_SLACK: Duration = Duration::from_secs(2);

/// The series without a pool label: the process's own.
const GLOBAL_SERIES: [&str; 3] = [
    "fastcgi_healthcheck_build_info",
    "fastcgi_healthcheck_open_connections",
    "fastcgi_healthcheck_pools",
];

/// Whether php-fpm answers its ping at `listen` within `within`, asked over FastCGI directly.
fn fpm_pings(listen: &Listen, within: Duration) -> bool {
    let answer = match listen {
        Listen::Unix(path) => UnixStream::connect(path).and_then(|stream| {
            stream.set_read_timeout(Some(within))?;
            fcgi_get(stream, "/fpm-ping")
        }),
        Listen::Tcp(addr) => TcpStream::connect(addr).and_then(|stream| {
            stream.set_read_timeout(Some(within))?;
            fcgi_get(stream, "/fpm-ping")
        }),
    };
    answer.is_ok_and(|a| a.stdout.ends_with("pong"))
}

/// The tool probing every pool of `fpm` by name (`POOLS=NAME=DESTINATION,...`), with `extra`.
fn tool_for(fpm: &FpmPools, extra: &[(&str, &str)]) -> Tool {
    let pools = fpm.pools_env();
    let mut env = vec![("POOLS", pools.as_str())];
    env.extend_from_slice(extra);
    Tool::start(&env)
}

/// The body an unknown pool's endpoints answer with (404).
fn unknown_body(name: &str, known: &[&str]) -> String {
    format!(
        "unknown pool \"{name}\": known pools are {}\n",
        known.join(", ")
    )
}

/// Asserts an all-pools failure: `status` and exactly one line per failing pool, in name order,
/// each `NAME reason: detail` with `reason` one of the pool's `reasons`.
fn assert_pools_fail(response: &Response, status: u16, failing: &[(&str, &[&str])]) {
    assert_eq!(response.status, status, "{response:?}");
    let lines: Vec<&str> = response.body.lines().collect();
    assert!(response.body.ends_with('\n'), "{response:?}");
    assert_eq!(
        lines.len(),
        failing.len(),
        "one line per failing pool {failing:?}: {response:?}"
    );
    for (line, (name, reasons)) in lines.iter().zip(failing) {
        let named = reasons
            .iter()
            .any(|reason| line.starts_with(&format!("{name} {reason}: ")));
        assert!(
            named,
            "line {line:?} is not `{name} REASON: detail` with REASON one of {reasons:?}"
        );
    }
}

/// The pools whose status page `/metrics` reads (its `phpfpm_up` series), in name order.
fn fpm_pools_in(text: &str) -> Vec<String> {
    let pools: BTreeSet<String> = samples(text)
        .into_iter()
        .filter(|s| s.name == "phpfpm_up")
        .filter_map(|s| s.labels.get("pool").cloned())
        .collect();
    pools.into_iter().collect()
}

fn metrics(tool: &Tool) -> String {
    let response = get(tool.addr(), "/metrics");
    assert_eq!(response.status, 200, "{response:?}");
    response.body
}

/// The harness: one master with three pools answers on each; a pool removed from the config
/// and reloaded with SIGUSR2 is gone (its socket file unlinked, its TCP port refusing), the
/// others answer on fresh workers; added back, it answers again at the same address.
#[test]
fn harness_a_three_pool_master_reloads_a_pool_away_and_back() {
    let mut fpm = FpmPools::three();
    assert_eq!(fpm.names(), ["admin", "api", "www"]);
    for name in fpm.names() {
        assert!(
            fpm_pings(fpm.listen(name), Duration::from_secs(5)),
            "{name}"
        );
        assert_eq!(fpm.workers_of(name).len(), fpm.size(name), "{name}");
        assert_eq!(
            fpm.status_field(name, "total processes"),
            fpm.size(name) as u64,
            "{name}"
        );
    }
    let socket_dir = fpm.socket_dir().to_path_buf();
    let in_dir = || -> BTreeSet<String> {
        fs::read_dir(&socket_dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        in_dir(),
        BTreeSet::from(["api.sock".into(), "www.sock".into()])
    );

    let www_before = fpm.workers_of("www");
    let api_socket = match fpm.listen("api") {
        Listen::Unix(path) => path.clone(),
        Listen::Tcp(addr) => panic!("api is on {addr}"),
    };
    fpm.remove("api");
    // What discovery relies on: php-fpm unlinks a removed pool's socket file on reload.
    assert!(
        !api_socket.exists(),
        "php-fpm left the removed pool's socket file {} behind after the reload",
        api_socket.display()
    );
    assert_eq!(in_dir(), BTreeSet::from(["www.sock".into()]));
    assert!(fpm.workers_of("api").is_empty());
    let www_after = fpm.workers_of("www");
    assert_eq!(www_after.len(), 2);
    assert!(
        www_after.iter().all(|pid| !www_before.contains(pid)),
        "a reload replaces every worker: before {www_before:?}, after {www_after:?}"
    );
    for name in ["admin", "www"] {
        assert!(
            fpm_pings(fpm.listen(name), Duration::from_secs(5)),
            "{name}"
        );
    }

    fpm.remove("admin");
    assert!(!fpm.listen("admin").accepts_connections());
    fpm.add("api");
    fpm.add("admin");
    assert_eq!(
        in_dir(),
        BTreeSet::from(["api.sock".into(), "www.sock".into()])
    );
    for name in fpm.names() {
        assert!(
            fpm_pings(fpm.listen(name), Duration::from_secs(5)),
            "{name}"
        );
        assert_eq!(fpm.workers_of(name).len(), fpm.size(name), "{name}");
    }
    let log = fpm.log();
    assert_eq!(log.matches("Reloading in progress").count(), 4, "{log}");
}

/// The harness: sleepers saturate one pool (its ping gets no answer) while the master's other
/// pools answer at once.
#[test]
fn harness_a_sleeper_saturates_one_pool_only() {
    let fpm = FpmPools::three();
    let docroot = Docroot::new();
    let clients = sleepers(fpm.listen("www"), &docroot, 4, 2000);
    wait_until(
        Duration::from_secs(5),
        "www's ping to go unanswered",
        || (!fpm_pings(fpm.listen("www"), Duration::from_millis(500))).then_some(()),
    );
    for name in ["admin", "api"] {
        assert!(
            fpm_pings(fpm.listen(name), Duration::from_millis(500)),
            "{name} is held up by www's sleepers"
        );
    }
    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }
    assert!(fpm_pings(fpm.listen("www"), Duration::from_secs(5)));
}

/// `/fcgi-ping/NAME`, `/fcgi-live/NAME` and `/fcgi-status/NAME` ask that pool and no other (its
/// status page, its number of processes); the all-pools forms answer for all.
#[test]
fn each_pool_answers_on_its_own_endpoints() {
    let fpm = FpmPools::three();
    let tool = tool_for(&fpm, &[]);
    for name in fpm.names() {
        get(tool.addr(), &format!("/fcgi-ping/{name}")).assert_ok();
        get(tool.addr(), &format!("/fcgi-live/{name}")).assert_ok();
        let head = Client::connect(tool.addr()).request("HEAD", &format!("/fcgi-ping/{name}"));
        assert_eq!((head.status, head.body.as_str()), (200, ""), "{head:?}");

        let status = get(tool.addr(), &format!("/fcgi-status/{name}"));
        status.assert_ok_status();
        assert!(status.body.starts_with("ok\n"), "{name}: {status:?}");
        let fpm_pool = format!("\npool: {}\n", FpmPools::fpm_name(name));
        assert!(
            status.body.contains(&fpm_pool),
            "/fcgi-status/{name} is not {fpm_pool:?}'s status page: {}",
            status.body
        );
        let size = fpm.size(name);
        // php-fpm's master counts its children into the page once a second: wait for all.
        wait_until(
            Duration::from_secs(5),
            "every worker counted in the status page",
            || {
                let page = get(tool.addr(), &format!("/fcgi-status/{name}"));
                page.body
                    .contains(&format!("\ntotal processes: {size}\n"))
                    .then_some(())
            },
        );
        get(
            tool.addr(),
            &format!("/fcgi-status/{name}?max-total-processes={size}&max-listen-queue=10"),
        )
        .assert_ok_status();
        let failed = get(
            tool.addr(),
            &format!("/fcgi-status/{name}?max-total-processes={}", size - 1),
        );
        assert_eq!(failed.status, 503, "{name}: {failed:?}");
        assert!(
            failed
                .body
                .starts_with(&format!("total processes {size} > {}\n", size - 1)),
            "{name}: {}",
            failed.body
        );
    }
    get(tool.addr(), "/fcgi-ping").assert_ok();
    get(tool.addr(), "/fcgi-live").assert_ok();
    get(tool.addr(), "/fcgi-status").assert_ok_status();
    get(tool.addr(), "/fcgi-status?max-total-processes=3").assert_ok_status();

    // All pools' thresholds: only api (3 processes) fails at most 2.
    let failed = get(tool.addr(), "/fcgi-status?max-total-processes=2");
    assert_eq!(failed.status, 503, "{failed:?}");
    assert!(
        failed.body.contains("api") && failed.body.contains("total processes 3 > 2"),
        "{}",
        failed.body
    );
    for passing in ["total processes 2 >", "total processes 1 >"] {
        assert!(!failed.body.contains(passing), "{}", failed.body);
    }
}

/// An unknown name is 404 on every endpoint, naming the known pools in order.
#[test]
fn an_unknown_pool_is_404_naming_the_known_pools() {
    let fpm = FpmPools::three();
    let tool = tool_for(&fpm, &[]);
    let body = unknown_body("nope", &["admin", "api", "www"]);
    for path in [
        "/fcgi-ping/nope",
        "/fcgi-live/nope",
        "/fcgi-status/nope",
        "/fcgi-status/nope?max-listen-queue=10",
    ] {
        let response = get(tool.addr(), path);
        assert_eq!(
            (response.status, response.body.as_str()),
            (404, body.as_str()),
            "{path}: {response:?}"
        );
    }
    let head = Client::connect(tool.addr()).request("HEAD", "/fcgi-ping/nope");
    assert_eq!((head.status, head.body.as_str()), (404, ""), "{head:?}");
    // php-fpm's own name for a pool is not ours.
    let fpm_name = FpmPools::fpm_name("www");
    let response = get(tool.addr(), &format!("/fcgi-ping/{fpm_name}"));
    assert_eq!(response.status, 404, "{response:?}");
}

/// A pool removed from php-fpm's config (reload): only its endpoints fail, and the all-pools
/// answers name it (then both removed pools, in name order, with FAIL_STATUS); added back, all
/// is healthy again.
#[test]
fn a_removed_pool_fails_only_its_endpoints_and_the_all_pools_answers_name_it() {
    let mut fpm = FpmPools::three();
    let tool = tool_for(&fpm, &[]);
    let fail_500 = tool_for(&fpm, &[("FAIL_STATUS", "500")]);
    get(tool.addr(), "/fcgi-ping").assert_ok();

    fpm.remove("api");
    for endpoint in ["/fcgi-ping/api", "/fcgi-live/api", "/fcgi-status/api"] {
        get(tool.addr(), endpoint).assert_failure(503, "connect_failed");
    }
    for name in ["admin", "www"] {
        get(tool.addr(), &format!("/fcgi-ping/{name}")).assert_ok();
        get(tool.addr(), &format!("/fcgi-live/{name}")).assert_ok();
        get(tool.addr(), &format!("/fcgi-status/{name}")).assert_ok_status();
    }
    let api: (&str, &[&str]) = ("api", &["connect_failed"]);
    assert_pools_fail(&get(tool.addr(), "/fcgi-ping"), 503, &[api]);
    assert_pools_fail(&get(tool.addr(), "/fcgi-live"), 503, &[api]);
    let status = get(tool.addr(), "/fcgi-status");
    assert_eq!(status.status, 503, "{status:?}");
    assert!(status.body.contains("api"), "{status:?}");

    fpm.remove("admin");
    get(tool.addr(), "/fcgi-ping/admin").assert_failure(503, "connect_refused");
    get(tool.addr(), "/fcgi-ping/www").assert_ok();
    let both = [("admin", &["connect_refused"][..]), api];
    assert_pools_fail(&get(tool.addr(), "/fcgi-ping"), 503, &both);
    assert_pools_fail(&get(fail_500.addr(), "/fcgi-ping"), 500, &both);

    fpm.add("admin");
    fpm.add("api");
    get(tool.addr(), "/fcgi-ping").assert_ok();
    get(tool.addr(), "/fcgi-live").assert_ok();
    get(tool.addr(), "/fcgi-ping/api").assert_ok();
    get(fail_500.addr(), "/fcgi-ping").assert_ok();
}

/// `POOLS=dir:`: the Unix sockets of the directory by file name (the TCP pool is not there); a
/// pool removed by a reload is gone within a second once a probe meets its socket gone, and
/// within 10 s unasked; one added back is found within a second of a request naming it (which
/// answers 404 until then), and within 10 s when not.
#[test]
fn discovery_follows_the_socket_directory() {
    let mut fpm = FpmPools::three();
    // Not sockets, so not pools.
    fs::write(fpm.socket_dir().join("plain.sock"), "").unwrap();
    fs::create_dir(fpm.socket_dir().join("sub.sock")).unwrap();
    let pools = fpm.discovery_env();
    let tool = Tool::start(&[("POOLS", &pools)]);
    get(tool.addr(), "/fcgi-ping/api").assert_ok();
    get(tool.addr(), "/fcgi-ping/www").assert_ok();
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let response = get(tool.addr(), "/fcgi-ping/admin");
    assert_eq!(
        (response.status, response.body.as_str()),
        (404, unknown_body("admin", &["api", "www"]).as_str()),
        "{response:?}"
    );
    assert_eq!(fpm_pools_in(&metrics(&tool)), ["api", "www"]);

    // Removed: a socket gone (ENOENT) is a pool php-fpm dropped, so the all-pools answer leaves
    // it out at once; named, it fails (still listed) until the discovery task, asked by that
    // probe, has re-read the directory (at most once a second), then it is unknown.
    fpm.remove("api");
    let removed = Instant::now();
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let gone = unknown_body("api", &["www"]);
    wait_until(
        Duration::from_secs(3),
        "discovery, asked by the probe that met ENOENT, to drop the removed pool api",
        || {
            let response = get(tool.addr(), "/fcgi-ping/api");
            match response.status {
                404 => {
                    assert_eq!(response.body, gone);
                    Some(())
                }
                503 => None,
                _ => panic!("/fcgi-ping/api after its removal: {response:?}"),
            }
        },
    );
    eprintln!(
        "discovery dropped api {:?} after the reload",
        removed.elapsed()
    );
    get(tool.addr(), "/fcgi-ping").assert_ok();
    assert_eq!(fpm_pools_in(&metrics(&tool)), ["www"]);

    // Added back and named: the unknown name asks for a re-read (404 until it is done).
    fpm.add("api");
    wait_until(
        Duration::from_secs(2),
        "/fcgi-ping/api to find the pool added back",
        || (get(tool.addr(), "/fcgi-ping/api").status == 200).then_some(()),
    );
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let text = metrics(&tool);
    assert_eq!(
        value(&text, "phpfpm_up", &[("pool", "api")]),
        Some(1.0),
        "{text}"
    );

    // Removed and added back without being named: /metrics follows within 10 s each way.
    fpm.remove("www");
    wait_until(
        DISCOVERY_AGE + DISCOVERY_SLACK,
        "/metrics to drop the removed pool www",
        || (fpm_pools_in(&metrics(&tool)) == ["api"]).then_some(()),
    );
    fpm.add("www");
    let added = Instant::now();
    wait_until(
        DISCOVERY_AGE + DISCOVERY_SLACK,
        "/metrics to show the pool www added back",
        || {
            let text = metrics(&tool);
            (value(&text, "phpfpm_up", &[("pool", "www")]) == Some(1.0)).then_some(())
        },
    );
    eprintln!("discovery found www {:?} after the reload", added.elapsed());
    get(tool.addr(), "/fcgi-ping").assert_ok();
}

/// `POOLS=dir:` pairs `NAME.status.sock` with `NAME.sock` as that pool's status lane (not a pool
/// of its own), and leaves out a lane without its pool, saying so once; `POOLS=NAME=...+LANE`
/// names it. Either way the pool's page comes through its lane, fresh while every worker is
/// busy, and `/metrics` says so; a pool without a lane reads through its socket.
#[test]
fn a_pool_s_status_lane_is_paired_by_name_or_named_after_a_plus() {
    /// The tool's default `TIMEOUT`.
    const DEFAULT_TIMEOUT: Duration = Duration::from_millis(800);
    let fpm = FpmPools::start(&[PoolSpec::unix("api"), PoolSpec::unix("www").with_lane()]);
    assert!(fpm.lane_path("www").exists(), "php-fpm made no lane socket");
    let ghost = std::os::unix::net::UnixListener::bind(fpm.lane_path("ghost")).unwrap();
    let discovery = fpm.discovery_env();
    let by_dir = Tool::start(&[("POOLS", discovery.as_str())]);
    let by_name = tool_for(&fpm, &[]);
    let lane = format!("unix:{}", fpm.lane_path("www").display());
    by_dir.wait_for_log(&["listening on", &format!("(status page through {lane})")]);
    let unknown = get(by_dir.addr(), "/fcgi-ping/www.status");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert_eq!(unknown.body, unknown_body("www.status", &["api", "www"]));
    let said = |tool: &Tool| {
        let line =
            "left out 1 status lane socket(s) without their pool's socket NAME.sock (ghost.status)";
        tool.logs().iter().filter(|l| l.contains(line)).count()
    };
    assert_eq!(said(&by_dir), 1, "{:?}", by_dir.logs());

    let stale = |text: &str, pool: &str, source: &str| {
        value(
            text,
            "fastcgi_healthcheck_status_page_stale",
            &[("pool", pool), ("source", source)],
        )
    };
    for tool in [&by_dir, &by_name] {
        let text = metrics(tool);
        assert_eq!(fpm_pools_in(&text), ["api", "www"], "{text}");
        assert_eq!(stale(&text, "www", "lane"), Some(0.0), "{text}");
        assert_eq!(stale(&text, "api", "main"), Some(0.0), "{text}");
    }

    let docroot = Docroot::new();
    let clients = sleepers(fpm.listen("www"), &docroot, 4, 3000);
    wait_until(Duration::from_secs(5), "www to fail busy", || {
        (get(by_dir.addr(), "/fcgi-ping/www").status != 200).then_some(())
    });
    for tool in [&by_dir, &by_name] {
        let (page, took) = wait_until(
            Duration::from_secs(5),
            "www's page to count every worker active",
            || {
                let (page, took) = timed_get(tool.addr(), "/fcgi-status/www");
                page.body
                    .contains("active processes: 2\n")
                    .then_some((page, took))
            },
        );
        page.assert_ok_status();
        assert!(took < DEFAULT_TIMEOUT, "/fcgi-status/www took {took:?}");
    }
    let env = [("POOLS", discovery.as_str())];
    let check = run_to_exit(&env, &["check", "--status", "--pool", "www", "-v"]);
    assert_eq!(check.status.code(), Some(0), "{}", check.stderr);
    assert!(
        check.stdout.contains("active processes: 2\n"),
        "{}",
        check.stdout
    );
    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }

    // Asked for an unknown name again, a second reading of the directory: said once.
    get(by_dir.addr(), "/fcgi-ping/www.status");
    assert_eq!(said(&by_dir), 1, "{:?}", by_dir.logs());
    drop(ghost);
}

/// `/metrics` of three pools passes promtool; every series but the process's own carries
/// `pool` with our name (never php-fpm's); each pool's figures are its own; the series names
/// are those of a single pool.
#[test]
fn every_series_of_a_pool_carries_our_pool_name() {
    let fpm = FpmPools::three();
    let tool = tool_for(&fpm, &[]);
    for name in fpm.names() {
        get(tool.addr(), &format!("/fcgi-ping/{name}")).assert_ok();
        get(tool.addr(), &format!("/fcgi-live/{name}")).assert_ok();
    }
    get(tool.addr(), "/fcgi-ping").assert_ok();
    let text = metrics(&tool);
    common::promtool::check_metrics(&text);

    let names: BTreeSet<String> = fpm.names().iter().map(|n| (*n).to_owned()).collect();
    let mut problems = Vec::new();
    for sample in samples(&text) {
        let pool = sample.labels.get("pool");
        let global = GLOBAL_SERIES.contains(&sample.name.as_str());
        match (global, pool) {
            (true, None) => {}
            (true, Some(_)) => problems.push(format!("{sample:?} is global, yet has a pool")),
            (false, Some(pool)) if names.contains(pool) => {}
            (false, _) => problems.push(format!("{sample:?}: pool is not one of {names:?}")),
        }
    }
    assert!(problems.is_empty(), "{}\n{text}", problems.join("\n"));
    for name in fpm.names() {
        let pool = [("pool", name)];
        assert_eq!(value(&text, "phpfpm_up", &pool), Some(1.0), "{name}");
        assert_eq!(
            value(&text, "phpfpm_total_processes", &pool),
            Some(fpm.size(name) as f64),
            "{name}'s figures are another pool's:\n{text}"
        );
        let pings = value(
            &text,
            "fastcgi_healthcheck_probes_total",
            &[("pool", name), ("probe", "ping"), ("result", "ok")],
        );
        assert!(pings.is_some_and(|n| n >= 2.0), "{name}: {pings:?}\n{text}");
    }

    // The names of the series are those of one pool.
    let single = Tool::start(&[(
        "DESTINATION",
        &match fpm.listen("www") {
            Listen::Unix(path) => path.display().to_string(),
            Listen::Tcp(addr) => panic!("www is on {addr}"),
        },
    )]);
    get(single.addr(), "/fcgi-ping").assert_ok();
    let series = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|line| line.strip_prefix("# TYPE "))
            .filter_map(|rest| rest.split(' ').next())
            .map(str::to_owned)
            .collect()
    };
    let one = series(&metrics(&single));
    let three = series(&text);
    let missing: Vec<&String> = one.difference(&three).collect();
    assert!(missing.is_empty(), "series missing with POOLS: {missing:?}");
}

/// Two hung pools (sleepers hold every worker): `/metrics` answers within one TIMEOUT, the
/// healthy pool's status figures fresh at each scrape; its probes are not held up; the
/// all-pools ping names the hung ones within one TIMEOUT too. Two tools: one as configured by
/// default, which knows a busy pool from its kept connection and does not wait for its status
/// page; one with `BUSY_GRACE=off`, which waits for each hung pool's status page until TIMEOUT
/// (so two hung pools read one after the other would take two).
#[test]
fn hung_pools_never_delay_metrics_and_the_others_stay_fresh() {
    let fpm = FpmPools::three();
    let timeout = format!("{}ms", TIMEOUT.as_millis());
    let tool = tool_for(&fpm, &[("TIMEOUT", &timeout)]);
    let waiting = tool_for(&fpm, &[("TIMEOUT", &timeout), ("BUSY_GRACE", "off")]);
    let admin = [("pool", "admin")];
    let before = value(&metrics(&tool), "phpfpm_accepted_connections", &admin).unwrap();

    // Every worker of api (3) and www (2) sleeps 8 s, as many clients again wait in the queue:
    // both pools are hung for 16 s.
    let docroot = Docroot::new();
    let mut clients = sleepers(fpm.listen("api"), &docroot, 6, 8000);
    clients.extend(sleepers(fpm.listen("www"), &docroot, 4, 8000));
    for name in ["api", "www"] {
        wait_until(
            Duration::from_secs(10),
            &format!("/fcgi-ping/{name} to fail"),
            || (get(tool.addr(), &format!("/fcgi-ping/{name}")).status == 503).then_some(()),
        );
    }

    let (ping, took) = timed_get(tool.addr(), "/fcgi-ping/admin");
    ping.assert_ok();
    assert!(took < SLACK, "/fcgi-ping/admin took {took:?}");
    let (all, took) = timed_get(tool.addr(), "/fcgi-ping");
    let hung: &[&str] = &["busy", "timeout"];
    assert_pools_fail(&all, 503, &[("api", hung), ("www", hung)]);
    assert!(took < TIMEOUT + SLACK, "/fcgi-ping took {took:?}");

    let mut last = before;
    for (scrape, (which, tool)) in [
        ("default", &tool),
        ("BUSY_GRACE=off", &waiting),
        ("default", &tool),
        ("BUSY_GRACE=off", &waiting),
    ]
    .into_iter()
    .enumerate()
    {
        let (response, took) = timed_get(tool.addr(), "/metrics");
        assert_eq!(response.status, 200, "{response:?}");
        assert!(
            took < TIMEOUT + SLACK,
            "{which}: /metrics took {took:?} with two hung pools (TIMEOUT {TIMEOUT:?})"
        );
        // What makes this scrape a proof: it did wait for the hung pools' status pages.
        assert!(
            which == "default" || took >= TIMEOUT,
            "{which}: /metrics took {took:?}, so it did not wait for the hung status pages"
        );
        eprintln!("scrape {scrape} ({which}) with two hung pools took {took:?}");
        common::promtool::check_metrics(&response.body);
        assert_eq!(
            value(&response.body, "phpfpm_up", &admin),
            Some(1.0),
            "{}",
            response.body
        );
        let accepted = value(&response.body, "phpfpm_accepted_connections", &admin).unwrap();
        assert!(
            accepted > last,
            "scrape {scrape}: admin's accepted connections {accepted}, not above {last}: stale"
        );
        last = accepted;
    }

    for client in clients {
        assert!(client.join().unwrap(), "a sleeper was not answered");
    }
    wait_until(Duration::from_secs(10), "all pools healthy again", || {
        (get(tool.addr(), "/fcgi-ping").status == 200).then_some(())
    });
}

/// `check` asks every pool (one stderr line per failing pool); `check --pool NAME` one, as a
/// single-pool `check` does (`--status` included); an unknown pool exits 2 naming the known.
#[test]
fn check_asks_all_pools_or_one() {
    let mut fpm = FpmPools::three();
    let pools = fpm.pools_env();
    let env = [("POOLS", pools.as_str())];
    let run = |args: &[&str]| {
        let mut all = vec!["check"];
        all.extend_from_slice(args);
        run_to_exit(&env, &all)
    };
    for args in [
        &[][..],
        &["--pool", "admin"],
        &["--pool", "api"],
        &["--pool", "www"],
        &["--status", "--pool", "api", "--max-listen-queue", "10"],
    ] {
        let finished = run(args);
        assert_eq!(
            finished.status.code(),
            Some(0),
            "{args:?}: {}",
            finished.stderr
        );
        assert_eq!(finished.stderr, "", "{args:?}: a healthy check is quiet");
    }
    let failed = run(&["--status", "--pool", "api", "--max-total-processes", "2"]);
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    assert_eq!(failed.stderr.trim(), "threshold: total processes 3 > 2");
    let unknown = run(&["--pool", "nope"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", unknown.stderr);
    for named in ["nope", "admin", "api", "www"] {
        assert!(unknown.stderr.contains(named), "{}", unknown.stderr);
    }

    fpm.remove("api");
    let failed = run(&[]);
    assert_eq!(failed.status.code(), Some(1), "{}", failed.stderr);
    let lines: Vec<&str> = failed.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{:?}", failed.stderr);
    assert!(lines[0].starts_with("api connect_failed: "), "{lines:?}");
    let one = run(&["--pool", "api"]);
    assert_eq!(one.status.code(), Some(1), "{}", one.stderr);
    assert_eq!(one.stderr.lines().count(), 1, "{:?}", one.stderr);
    assert!(
        one.stderr.starts_with("connect_failed: "),
        "{:?}",
        one.stderr
    );
    assert_eq!(run(&["--pool", "www"]).status.code(), Some(0));
}

/// Each destination form of `POOLS`: a socket path, host:port, a name:port, a host alone taking
/// `DESTINATION_PORT`.
#[test]
fn every_destination_form_reaches_its_pool() {
    let fpm = FpmPools::start(&[PoolSpec::tcp("tcp"), PoolSpec::unix("sock")]);
    let addr = match fpm.listen("tcp") {
        Listen::Tcp(addr) => *addr,
        Listen::Unix(path) => panic!("tcp is on {}", path.display()),
    };
    let socket = match fpm.listen("sock") {
        Listen::Unix(path) => path.display().to_string(),
        Listen::Tcp(addr) => panic!("sock is on {addr}"),
    };
    let pools = format!(
        "bare=127.0.0.1,hostport={addr},named=localhost:{port},sock={socket}",
        port = addr.port()
    );
    let port = addr.port().to_string();
    let tool = Tool::start(&[("POOLS", &pools), ("DESTINATION_PORT", &port)]);
    for name in ["bare", "hostport", "named", "sock"] {
        get(tool.addr(), &format!("/fcgi-ping/{name}")).assert_ok();
    }
    get(tool.addr(), "/fcgi-ping").assert_ok();
}

/// `POOLS` with `DESTINATION` is an error naming both, in serve and check modes.
#[test]
fn pools_with_destination_exits_2_naming_both() {
    let env = [
        ("POOLS", "www=/run/php/www.sock"),
        ("DESTINATION", "/run/php/other.sock"),
    ];
    for args in [&[][..], &["check"]] {
        let finished = run_to_exit(&env, args);
        assert_eq!(
            finished.status.code(),
            Some(2),
            "{args:?}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains("POOLS") && finished.stderr.contains("DESTINATION"),
            "{args:?}: {}",
            finished.stderr
        );
        assert!(
            !finished.stderr.contains("listening on"),
            "{}",
            finished.stderr
        );
    }
}

/// Invalid `POOLS` exits 2 naming it; the limits themselves are accepted (a 64-character name,
/// 128 pools, every allowed character, each destination form).
#[test]
fn invalid_pools_exit_2_naming_pools() {
    let long_name = "n".repeat(64);
    let too_long = "n".repeat(65);
    let many = |n: usize| -> String {
        (0..n)
            .map(|i| format!("p{i}=127.0.0.1:{}", 9000 + i))
            .collect::<Vec<_>>()
            .join(",")
    };
    let refused = [
        "=/run/php/www.sock".to_owned(),
        "www=/run/php/a.sock,www=/run/php/b.sock".to_owned(),
        "w w=/run/php/www.sock".to_owned(),
        "w/w=/run/php/www.sock".to_owned(),
        "w:w=/run/php/www.sock".to_owned(),
        "www".to_owned(),
        "www=/run/php/www.sock,api".to_owned(),
        format!("{too_long}=/run/php/www.sock"),
        many(129),
    ];
    for pools in &refused {
        let finished = run_to_exit(&[("POOLS", pools)], &[]);
        assert_eq!(
            finished.status.code(),
            Some(2),
            "POOLS={pools:?}: {}",
            finished.stderr
        );
        assert!(
            finished.stderr.contains("POOLS") && !finished.stderr.contains("listening on"),
            "POOLS={pools:?}: {}",
            finished.stderr
        );
    }
    let accepted = [
        format!("{long_name}=/run/php/www.sock"),
        "a_b-c.D9=/run/php/www.sock,v6=[::1]:9001,host=localhost,port=127.0.0.1:9002".to_owned(),
        many(128),
    ];
    for pools in &accepted {
        let mut tool = Tool::start(&[("POOLS", pools)]);
        tool.assert_alive();
    }
}

/// GETs of `paths`, each on its own connection, released together.
fn simultaneous(tool: &Tool, paths: &[String]) -> Vec<Response> {
    simultaneous_at(tool.addr(), paths)
}

/// [`simultaneous`] on the tool at `addr`.
fn simultaneous_at(addr: std::net::SocketAddr, paths: &[String]) -> Vec<Response> {
    let barrier = Arc::new(Barrier::new(paths.len()));
    let threads: Vec<_> = paths
        .iter()
        .map(|path| {
            let (barrier, path) = (Arc::clone(&barrier), path.clone());
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                barrier.wait();
                client.request("GET", &path)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// Coalescing and the cache are per pool (fake FastCGI peers count the requests): concurrent
/// probes of two pools cost one request each, never one for both; a cached verdict of one pool
/// never answers for another; a storm on a silent pool does not hold up the other's probe.
#[test]
fn coalescing_and_the_cache_are_per_pool() {
    let a = FakePeer::start(Behavior::Late(Duration::from_secs(1)));
    let b = FakePeer::start(Behavior::Late(Duration::from_secs(1)));
    let pools = format!("a={},b={}", a.addr(), b.addr());
    let tool = Tool::start(&[("POOLS", &pools), ("TIMEOUT", "5s")]);
    let paths: Vec<String> = (0..20)
        .map(|i| format!("/fcgi-ping/{}", if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    for response in simultaneous(&tool, &paths) {
        response.assert_ok();
    }
    assert_eq!(
        (a.requests().len(), b.requests().len()),
        (1, 1),
        "10 concurrent probes of each pool: one FastCGI request per pool"
    );

    let a = FakePeer::start(Behavior::healthy());
    let b = FakePeer::start(Behavior::healthy());
    let pools = format!("a={},b={}", a.addr(), b.addr());
    let cached = Tool::start(&[("POOLS", &pools), ("CACHE_TTL", "5s")]);
    for path in [
        "/fcgi-ping/a",
        "/fcgi-ping/b",
        "/fcgi-ping/a",
        "/fcgi-ping/b",
    ] {
        get(cached.addr(), path).assert_ok();
    }
    assert_eq!(
        (a.requests().len(), b.requests().len()),
        (1, 1),
        "within CACHE_TTL each pool's verdict is reused, and only for that pool"
    );

    let silent = FakePeer::start(Behavior::silent());
    let healthy = FakePeer::start(Behavior::healthy());
    let pools = format!("silent={},healthy={}", silent.addr(), healthy.addr());
    let tool = Tool::start(&[("POOLS", &pools), ("TIMEOUT", "2s")]);
    let storm = thread::spawn({
        let tool = tool.addr();
        move || {
            let paths = vec!["/fcgi-ping/silent".to_owned(); 50];
            simultaneous_at(tool, &paths)
        }
    });
    wait_until(Duration::from_secs(5), "the silent pool's probe", || {
        (!silent.requests().is_empty()).then_some(())
    });
    let (response, took) = timed_get(tool.addr(), "/fcgi-ping/healthy");
    response.assert_ok();
    assert!(
        took < SLACK,
        "/fcgi-ping/healthy took {took:?} during a storm on the silent pool"
    );
    for response in storm.join().unwrap() {
        response.assert_failure(503, "timeout");
    }
}

/// Without `POOLS`, a pool's path is no path of ours: `404` whatever the method.
#[test]
fn a_pool_path_without_pools_is_404() {
    let tool = Tool::start(&[]);
    for method in ["GET", "POST", "HEAD"] {
        for path in ["/fcgi-ping/www", "/fcgi-status/www", "/fcgi-live/www"] {
            let response = Client::connect(tool.addr()).request(method, path);
            assert_eq!(response.status, 404, "{method} {path}: {response:?}");
        }
    }
    let refused = run_to_exit(&[("POOLS", "www=/run/www.sock"), ("COALESCE", "off")], &[]);
    assert_eq!(refused.status.code(), Some(2), "{}", refused.stderr);
    assert!(
        refused.stderr.contains("COALESCE=off") && refused.stderr.contains("POOLS"),
        "{}",
        refused.stderr
    );
}

/// A `dir:` directory without a socket is no healthy pool: `/fcgi-ping` and `check` fail
/// `connect_failed` naming the directory, and a socket appearing there is found.
#[test]
fn a_directory_without_sockets_is_unhealthy() {
    let dir = common::TempDir::new();
    let pools = format!("dir:{}", dir.path().display());
    let tool = Tool::start(&[("POOLS", &pools)]);
    let response = get(tool.addr(), "/fcgi-ping");
    assert_eq!(response.status, 503, "{response:?}");
    assert!(
        response
            .body
            .starts_with("connect_failed: no php-fpm socket in ")
            && response.body.contains(&dir.path().display().to_string()),
        "{}",
        response.body
    );
    let check = run_to_exit(&[("POOLS", &pools)], &["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", check.stderr);
    assert!(
        check.stderr.starts_with("connect_failed: "),
        "{}",
        check.stderr
    );
    let unknown = get(tool.addr(), "/fcgi-ping/www");
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(
        unknown.body.contains("known pools are none"),
        "{}",
        unknown.body
    );
}
