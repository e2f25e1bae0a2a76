//! The alert rules and the Grafana dashboard of `scripts/prometheus/`, proven with Debian's
//! Prometheus (2.42): `promtool check rules` and the rules' unit tests (`promtool test rules`); the
//! dashboard's JSON shape; and a live Prometheus that scrapes the tool in front of a real php-fpm
//! under load, loads the rules, and answers every panel's expressions with data, and the same
//! for a process watching two pools (`POOLS`), each panel per pool. The single-pool run
//! draws the dashboard's panels with `render-dashboard.py` (set `DASHBOARD_PNG=docs/dashboard.png`
//! to redraw the README's picture, with a php-fpm outage in the middle).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::sys::poll;
use common::{free_port, Client, PhpFpm, TempDir, Tool};
use serde_json::Value;

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";
const PYTHON: &str = "/usr/bin/python3";
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/prometheus");
/// The scrape job the rules and the docs name.
const JOB: &str = "fastcgi-healthcheck";
/// What the test puts for the dashboard's variables (Grafana's `$__rate_interval` is 4 scrape
/// intervals at least; the test scrapes every second).
const VARIABLES: [(&str, &str); 3] = [
    ("$__rate_interval", "10s"),
    ("${pool}", "www"),
    ("$pool", "www"),
];

/// `path`, or a failure that says which Debian package installs it.
fn need(path: &'static str, package: &str) -> &'static str {
    assert!(
        Path::new(path).exists(),
        "{path} not found: install it with \"apt-get install {package}\" (Debian/Ubuntu)"
    );
    path
}

fn file(name: &str) -> PathBuf {
    Path::new(DIR).join(name)
}

/// Runs promtool from `/` (so that relative paths inside the files must be relative to them);
/// returns whether it succeeded, and its output.
fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(need(PROMTOOL, "prometheus"))
        .args(args)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The alert names of alerts.yml, in order, with each rule's text.
fn alert_rules() -> Vec<(String, String)> {
    let text = fs::read_to_string(file("alerts.yml")).unwrap();
    let mut rules: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            rules.push((name.to_owned(), String::new()));
        } else if let Some((_, body)) = rules.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    rules
}

#[test]
fn alert_rules_are_clean_and_pass_their_unit_tests() {
    let rules = file("alerts.yml");
    let (ok, out) = promtool(&["check", "rules", rules.to_str().unwrap()]);
    assert!(ok, "promtool check rules {}:\n{out}", rules.display());
    let count = alert_rules().len();
    assert!(
        out.contains(&format!("SUCCESS: {count} rules found")),
        "{count} alerts expected:\n{out}"
    );

    let tests = file("alerts.test.yml");
    let (ok, out) = promtool(&["test", "rules", tests.to_str().unwrap()]);
    assert!(ok, "promtool test rules {}:\n{out}", tests.display());
    assert!(out.contains("SUCCESS"), "{out}");

    // The harness can fail: a test that expects an alert after one failed status read.
    let wrong = file("testdata/alerts-wrong.test.yml");
    let (ok, out) = promtool(&["test", "rules", wrong.to_str().unwrap()]);
    assert!(
        !ok && out.contains("FAILED") && out.contains("PhpFpmDown"),
        "promtool test rules should fail on {}:\n{out}",
        wrong.display()
    );
}

/// The critical alerts of alerts.yml, by name.
fn critical_alerts() -> Vec<String> {
    alert_rules()
        .into_iter()
        .filter(|(_, body)| body.contains("severity: critical"))
        .map(|(name, _)| name)
        .collect()
}

/// `scrapes` of the tool's `/metrics`, as promtool's input series one minute apart (a sample
/// missing from a scrape is `_`), with the target's `job`, `instance` and `up`.
fn input_series(scrapes: &[String]) -> String {
    let target = format!("job=\"{JOB}\",instance=\"app:8080\"");
    let mut series: BTreeMap<String, Vec<String>> = BTreeMap::new();
    series.insert(
        format!("up{{{target}}}"),
        vec!["1".to_owned(); scrapes.len()],
    );
    for (i, text) in scrapes.iter().enumerate() {
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            let key = match name.split_once('{') {
                Some((metric, labels)) => format!("{metric}{{{target},{labels}"),
                None => format!("{name}{{{target}}}"),
            };
            let values = series
                .entry(key)
                .or_insert_with(|| vec!["_".to_owned(); scrapes.len()]);
            values[i] = value.to_owned();
        }
    }
    series
        .iter()
        .map(|(key, values)| {
            format!(
                "      - series: '{key}'\n        values: '{}'\n",
                values.join(" ")
            )
        })
        .collect()
}

/// Runs promtool's rule tests of alerts.yml over `scrapes`, expecting no critical alert at the
/// last scrape; returns whether they passed, promtool's output and the tests it ran.
fn no_critical_alert_over(scrapes: &[String]) -> (bool, String, String) {
    let dir = TempDir::new();
    let end = scrapes.len() - 1;
    let expectations: String = critical_alerts()
        .iter()
        .map(|name| {
            format!(
                "      - eval_time: {end}m\n        alertname: {name}\n        exp_alerts: []\n"
            )
        })
        .collect();
    let test = format!(
        "rule_files:\n  - {}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{}    alert_rule_test:\n{expectations}",
        file("alerts.yml").display(),
        input_series(scrapes)
    );
    let path = dir.join("scraped.test.yml");
    fs::write(&path, &test).unwrap();
    let (ok, out) = promtool(&["test", "rules", path.to_str().unwrap()]);
    (ok, out, test)
}

/// `n` scrapes of `tool`'s `/metrics`, each after two pings.
fn scrapes(tool: &Tool, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| {
            for _ in 0..2 {
                let _ = common::get(tool.addr(), "/fcgi-ping");
            }
            let metrics = common::get(tool.addr(), "/metrics");
            assert_eq!(metrics.status, 200, "{metrics:?}");
            metrics.body
        })
        .collect()
}

/// Issue 26: a php-fpm pool without a status page (`pm.status_path` unset, Debian's default)
/// behind the default `STATUS_PATH` is up, its ping healthy: the rules over the tool's own
/// `/metrics`, 16 scrapes taken one minute apart for promtool, fire no critical alert. The same
/// over a php-fpm that is not there does (`PhpFpmDown`): the harness can fail.
#[test]
fn no_critical_alert_fires_for_a_pool_without_a_status_page() {
    let fpm = PhpFpm::tcp_with("pm.status_path =\n");
    let tool = Tool::probing("127.0.0.1", fpm.port(), &[]);
    let (ok, out, test) = no_critical_alert_over(&scrapes(&tool, 16));
    assert!(
        ok,
        "a critical alert fired for a pool without a status page:\n{out}\n{test}"
    );

    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let nothing = Tool::probing("127.0.0.1", free_port(ip), &[]);
    let (ok, out, test) = no_critical_alert_over(&scrapes(&nothing, 16));
    assert!(
        !ok && out.contains("alertname: PhpFpmDown"),
        "no PhpFpmDown for a php-fpm that is not there:\n{out}\n{test}"
    );
}

#[test]
fn every_alert_is_labelled_annotated_and_tested_both_ways() {
    let tests = fs::read_to_string(file("alerts.test.yml")).unwrap();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    // For each alert name: (checked silent at some time, checked firing at some time).
    let mut checked: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname: ") else {
            continue;
        };
        let entry = checked.entry(name).or_default();
        match lines.get(i + 1) {
            Some(&"exp_alerts: []") => entry.0 = true,
            Some(&"exp_alerts:") => entry.1 = true,
            other => panic!("alertname: {name} is followed by {other:?}, not exp_alerts"),
        }
    }
    let rules = alert_rules();
    assert!(rules.len() >= 10, "{rules:?}");
    for (name, body) in &rules {
        assert_eq!(
            checked.get(name.as_str()),
            Some(&(true, true)),
            "{name}: alerts.test.yml must check it both silent (exp_alerts: []) and firing"
        );
        for needle in ["severity: ", "summary: ", "description: "] {
            assert!(body.contains(needle), "{name} has no {needle}:\n{body}");
        }
        let names_target = body.contains("$labels.instance") || body.contains("job=");
        assert!(
            names_target,
            "{name}'s annotations name neither the instance nor the job:\n{body}"
        );
        let php_fpm_series = body.contains("expr: phpfpm_")
            || body.contains("(phpfpm_")
            || body.contains("expr: increase(phpfpm_");
        assert!(
            !php_fpm_series || body.contains("$labels.pool"),
            "{name} is about a php-fpm pool but does not name it:\n{body}"
        );
    }
    for name in checked.keys() {
        assert!(
            rules.iter().any(|(rule, _)| rule == name),
            "alerts.test.yml tests {name}, which alerts.yml does not define"
        );
    }
}

/// Every panel that is not a row, rows' nested panels included.
fn panels(list: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in list.as_array().into_iter().flatten() {
        if panel["type"] == "row" {
            out.extend(panels(&panel["panels"]));
        } else {
            out.push(panel);
        }
    }
    out
}

/// Every panel with an id, rows included.
fn panels_and_rows(list: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in list.as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panels_and_rows(&panel["panels"]));
    }
    out
}

fn uses_datasource_variable(datasource: &Value) -> bool {
    matches!(
        datasource["uid"].as_str(),
        Some("${datasource}" | "$datasource")
    )
}

/// What keeps Grafana from importing `dashboard` as a dashboard of this kind, one line each.
fn dashboard_problems(dashboard: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if dashboard["schemaVersion"].as_u64().is_none_or(|v| v < 27) {
        problems.push(format!(
            "schemaVersion {} is not a number of at least 27 (rows as panels)",
            dashboard["schemaVersion"]
        ));
    }
    for key in ["title", "uid"] {
        if dashboard[key].as_str().is_none_or(str::is_empty) {
            problems.push(format!("no {key}"));
        }
    }
    if !dashboard["panels"].is_array() {
        problems.push("no top-level panels".to_owned());
    }
    let variables = dashboard["templating"]["list"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let variable = |name: &str| variables.iter().find(|v| v["name"] == name);
    match variable("datasource") {
        Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
        _ => problems
            .push("no variable \"datasource\" of type datasource with query prometheus".to_owned()),
    }
    match variable("pool") {
        Some(v) if v["type"] == "query" && uses_datasource_variable(&v["datasource"]) => {}
        _ => problems
            .push("no variable \"pool\" of type query on the datasource variable".to_owned()),
    }
    let mut ids: BTreeMap<u64, String> = BTreeMap::new();
    for panel in panels_and_rows(&dashboard["panels"]) {
        let title = panel["title"].as_str().unwrap_or_default().to_owned();
        match panel["id"].as_u64() {
            None => problems.push(format!("panel \"{title}\" has no numeric id")),
            Some(id) => {
                if let Some(other) = ids.insert(id, title.clone()) {
                    problems.push(format!(
                        "panel id {id} is used by both \"{other}\" and \"{title}\""
                    ));
                }
            }
        }
        if !["h", "w", "x", "y"]
            .iter()
            .all(|k| panel["gridPos"][k].is_u64())
        {
            problems.push(format!("panel \"{title}\" has no gridPos"));
        }
    }
    for panel in panels(&dashboard["panels"]) {
        let title = panel["title"].as_str().unwrap_or_default();
        if !uses_datasource_variable(&panel["datasource"]) {
            problems.push(format!(
                "panel \"{title}\": its datasource is not the datasource variable"
            ));
        }
        let targets = panel["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel \"{title}\" has no targets"));
        }
        for target in &targets {
            if target["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                problems.push(format!(
                    "panel \"{title}\" target {} has no expr",
                    target["refId"]
                ));
            }
            if !uses_datasource_variable(&target["datasource"]) {
                problems.push(format!(
                    "panel \"{title}\" target {}: its datasource is not the datasource variable",
                    target["refId"]
                ));
            }
        }
        if !targets
            .iter()
            .any(|t| t["expr"].as_str().unwrap_or_default().contains("$pool"))
        {
            problems.push(format!("panel \"{title}\" does not use the pool variable"));
        }
    }
    problems
}

fn dashboard() -> Value {
    let path = file("dashboard.json");
    serde_json::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display()))
}

#[test]
fn dashboard_is_a_grafana_dashboard_with_pool_and_datasource_variables() {
    let good = dashboard();
    assert_eq!(dashboard_problems(&good), Vec::<String>::new());
    let titles: Vec<&str> = panels(&good["panels"])
        .iter()
        .filter_map(|p| p["title"].as_str())
        .collect();
    assert!(titles.len() >= 11, "{titles:?}");

    // Broken on purpose, so that the check is seen to fail: a panel inside a row takes the id of
    // a top-level panel; a panel names a fixed data source; a panel ignores the pool.
    let mut broken = good.clone();
    let first_id = broken["panels"][1]["id"].clone();
    broken["panels"][0]["panels"] = serde_json::json!([{
        "type": "timeseries", "id": first_id, "title": "Nested",
        "gridPos": {"h": 1, "w": 1, "x": 0, "y": 0},
        "datasource": {"type": "prometheus", "uid": "P1809F7CD0C75ACF3"},
        "targets": [{"refId": "A", "expr": "up", "datasource": {"uid": "${datasource}"}}],
    }]);
    let problems = dashboard_problems(&broken);
    for needle in [
        format!("panel id {first_id} is used by both"),
        "panel \"Nested\": its datasource is not the datasource variable".to_owned(),
        "panel \"Nested\" does not use the pool variable".to_owned(),
    ] {
        assert!(
            problems.iter().any(|p| p.contains(&needle)),
            "{needle} not found in {problems:#?}"
        );
    }
}

/// A Prometheus server of our own: a temp config and TSDB, a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Prometheus {
    /// Starts Prometheus with `config` and waits until `/-/ready` answers 200; retries on another
    /// port if the chosen one was taken meanwhile.
    fn start(config: &str) -> Self {
        let binary = need(PROMETHEUS, "prometheus");
        let mut last_log = String::new();
        for _ in 0..3 {
            let dir = TempDir::new();
            fs::write(dir.join("prometheus.yml"), config).unwrap();
            let addr = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            );
            let log = fs::File::create(dir.join("prometheus.log")).unwrap();
            let child = Command::new(binary)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={addr}"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|error| panic!("spawn {binary}: {error}"));
            let mut server = Self { child, addr, dir };
            let ready = poll(Duration::from_secs(60), || {
                if server.child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                server
                    .http("/-/ready")
                    .is_some_and(|(status, _)| status == 200)
                    .then_some(true)
            });
            if ready == Some(true) {
                return server;
            }
            last_log = server.log();
        }
        panic!("Prometheus did not become ready; its log:\n{last_log}");
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// One HTTP/1.0 GET (so the body is not chunked and ends at EOF): status and body.
    fn http(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", self.addr).ok()?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).ok()?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some((status, body.to_owned()))
    }

    /// A JSON API call; `Err` carries Prometheus's `error` (e.g. a parse error).
    fn api(&self, path: &str) -> Result<Value, String> {
        let (status, body) = self
            .http(path)
            .unwrap_or_else(|| panic!("no answer from Prometheus to {path}"));
        let json: Value = serde_json::from_str(&body)
            .unwrap_or_else(|error| panic!("{path}: HTTP {status}, not JSON ({error}): {body}"));
        if status == 200 && json["status"] == "success" {
            Ok(json["data"].clone())
        } else {
            Err(format!(
                "HTTP {status}, {}: {}",
                json["errorType"].as_str().unwrap_or_default(),
                json["error"].as_str().unwrap_or(&body)
            ))
        }
    }

    /// An instant query's result vector.
    fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr)))?;
        Ok(data["result"].as_array().cloned().unwrap_or_default())
    }

    /// The first finite value of an instant query, if any.
    fn value(&self, expr: &str) -> Option<f64> {
        self.query(expr).ok()?.iter().find_map(finite)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A vector sample's value, if it is a finite number.
fn finite(sample: &Value) -> Option<f64> {
    let value: f64 = sample["value"][1].as_str()?.parse().ok()?;
    value.is_finite().then_some(value)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Grafana's substitution of the dashboard's variables.
fn substitute(expr: &str) -> String {
    VARIABLES
        .iter()
        .fold(expr.to_owned(), |e, (name, value)| e.replace(name, value))
}

/// Why a panel's query is no good: it does not parse (the expression and Prometheus's error), or
/// it returns no series with a number (the panel named).
fn check_query(prometheus: &Prometheus, panel: &str, expr: &str) -> Result<(), String> {
    let query = substitute(expr);
    if query.contains('$') {
        return Err(format!(
            "panel \"{panel}\": a variable the test does not know is left in {query}"
        ));
    }
    match prometheus.query(&query) {
        Err(error) => Err(format!(
            "panel \"{panel}\": Prometheus rejects\n  {query}\n  {error}"
        )),
        Ok(result) if !result.iter().any(|s| finite(s).is_some()) => Err(format!(
            "panel \"{panel}\" returns no data: {query} gave {result:?}"
        )),
        Ok(_) => Ok(()),
    }
}

/// The values the dashboard's pool variable offers: its `label_values(SELECTOR, pool)` asked as
/// Grafana asks it, from Prometheus's label values API.
fn pool_variable_values(prometheus: &Prometheus, dashboard: &Value) -> Value {
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let pool = variables.iter().find(|v| v["name"] == "pool").unwrap();
    let definition = pool["definition"].as_str().unwrap();
    let selector = definition
        .strip_prefix("label_values(")
        .and_then(|rest| rest.strip_suffix(", pool)"))
        .unwrap_or_else(|| {
            panic!("the pool variable is not label_values(..., pool): {definition}")
        });
    prometheus
        .api(&format!(
            "/api/v1/label/pool/values?match[]={}",
            encode(selector)
        ))
        .unwrap()
}

/// Every (panel title, expression) of the dashboard.
fn queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(&dashboard["panels"])
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect()
}

/// Clients that ask `/fcgi-ping` all at once every 50 ms (so that coalescing has company), until
/// stopped or 5 minutes have passed.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, clients: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    for _ in 0..6000 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        // Pacing, not waiting for readiness: start at the next 50 ms mark.
                        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                        let into = Duration::from_nanos((now.as_nanos() % 50_000_000) as u64);
                        thread::sleep(Duration::from_millis(50) - into);
                        let sent = client
                            .try_send(b"GET /fcgi-ping HTTP/1.1\r\nHost: t\r\n\r\n")
                            .is_ok();
                        if !sent || client.try_read_response("GET").is_err() {
                            client = Client::connect(addr);
                        }
                    }
                })
            })
            .collect();
        Self { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Waits until Prometheus has `more` scrapes of the tool beyond what it had when called.
fn wait_scrapes(prometheus: &Prometheus, more: f64) {
    let scrapes = format!("count_over_time(up{{job=\"{JOB}\"}}[1h])");
    let start = prometheus.value(&scrapes).unwrap_or(0.0);
    let within = Duration::from_secs_f64(10.0 + 3.0 * more);
    let seen = poll(within, || {
        prometheus.value(&scrapes).filter(|n| *n >= start + more)
    });
    assert!(
        seen.is_some(),
        "Prometheus did not scrape the tool {more} more times within {within:?}; its log:\n{}",
        prometheus.log()
    );
}

#[test]
fn every_panel_returns_data_from_a_live_prometheus() {
    let fpm = PhpFpm::tcp();
    let tool = Tool::probing("127.0.0.1", fpm.port(), &[]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{}']\n",
        file("alerts.yml").display(),
        tool.addr()
    );
    let prometheus = Prometheus::start(&config);
    let started = unix_now();
    let load = Load::start(tool.addr(), 8);

    // Debian's Prometheus loads the rule file and evaluates every rule without error.
    let rules = alert_rules().len();
    let healthy = poll(Duration::from_secs(60), || {
        let data = prometheus.api("/api/v1/rules").ok()?;
        let states: Vec<String> = data["groups"]
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| r["health"].as_str().unwrap_or_default().to_owned())
            .collect();
        (states.len() == rules && states.iter().all(|h| h == "ok")).then_some(())
    });
    assert!(
        healthy.is_some(),
        "Prometheus did not load and evaluate the {rules} rules: {:?}\nlog:\n{}",
        prometheus.api("/api/v1/rules"),
        prometheus.log()
    );

    // A few scrapes under load, then every expression of every panel, until all have data.
    wait_scrapes(&prometheus, 5.0);
    let dashboard = dashboard();
    let queries = queries(&dashboard);
    let failures = || -> Vec<String> {
        queries
            .iter()
            .filter_map(|(panel, expr)| check_query(&prometheus, panel, expr).err())
            .collect()
    };
    assert_panels_answer(&failures, "dead panels");

    // The pool variable's query offers the pool.
    assert_eq!(
        pool_variable_values(&prometheus, &dashboard),
        serde_json::json!(["www"])
    );

    // The check itself fails as it should: with Prometheus's error and the expression, or with
    // the panel's name.
    let error = check_query(
        &prometheus,
        "Broken",
        "sum(rate(fastcgi_healthcheck_probes_total[$__rate_interval])",
    )
    .unwrap_err();
    assert!(
        error.contains("sum(rate(fastcgi_healthcheck_probes_total[10s])")
            && error.contains("parse error"),
        "{error}"
    );
    let error = check_query(&prometheus, "Dead", "fastcgi_healthcheck_no_such_series").unwrap_err();
    assert!(
        error.starts_with("panel \"Dead\" returns no data"),
        "{error}"
    );

    // The picture: from this Prometheus, by the script the README names.
    let picture = std::env::var_os("DASHBOARD_PNG").map(PathBuf::from);
    if picture.is_some() {
        outage_for_the_picture(&prometheus, &fpm);
    }
    drop(load);
    let scratch = TempDir::new();
    let out = picture.unwrap_or_else(|| scratch.join("dashboard.png"));
    render(&prometheus, started, &out);
    let png = fs::read(&out).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000,
        "{} is not a picture of the panels ({} bytes)",
        out.display(),
        png.len()
    );
    drop(tool);
}

/// Panels of one figure per process, whose series have no `pool` label in either mode: they show
/// each instance that serves a chosen pool.
const PER_PROCESS_PANELS: [&str; 1] = ["Open connections"];

/// Why a panel's query is no good for `pool` (a value of the pool variable: a name, or the All
/// value): as [`check_query`], and also when a series of a per-pool panel carries no pool or
/// another pool than `expected`, or when a pool of `expected` has no series.
fn check_pool_query(
    prometheus: &Prometheus,
    panel: &str,
    expr: &str,
    pool: &str,
    expected: &[&str],
) -> Result<(), String> {
    let query = expr
        .replace("$__rate_interval", VARIABLES[0].1)
        .replace("${pool}", pool)
        .replace("$pool", pool);
    let result = prometheus
        .query(&query)
        .map_err(|error| format!("panel \"{panel}\": Prometheus rejects\n  {query}\n  {error}"))?;
    let with_data: Vec<&Value> = result.iter().filter(|s| finite(s).is_some()).collect();
    if with_data.is_empty() {
        return Err(format!(
            "panel \"{panel}\" returns no data for pool {pool}: {query} gave {result:?}"
        ));
    }
    if PER_PROCESS_PANELS.contains(&panel) {
        return Ok(());
    }
    let pools: BTreeSet<&str> = with_data
        .iter()
        .map(|s| s["metric"]["pool"].as_str().unwrap_or(""))
        .collect();
    let stray: Vec<&&str> = pools.iter().filter(|p| !expected.contains(p)).collect();
    let missing: Vec<&&str> = expected.iter().filter(|p| !pools.contains(*p)).collect();
    if stray.is_empty() && missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "panel \"{panel}\" with pool {pool}: series of pools {stray:?} (\"\": none), \
             none of {missing:?}: {query} gave {result:?}"
        ))
    }
}

/// The multi-pool process (issue 20): one php-fpm master with two pools, `[www]` on TCP with two
/// static workers and `[api]` on a Unix socket, ondemand; the tool watches both with `POOLS`,
/// named `front` and `api` (so that a `pool` label seen is the POOLS name, not php-fpm's), under
/// load on `/fcgi-ping` (all pools). For each pool, and for All: every panel returns data, and
/// every series of a per-pool panel carries the pool chosen, each one of them.
#[test]
fn every_panel_returns_data_for_each_pool_of_a_multi_pool_process() {
    let sockets = TempDir::new();
    let api = sockets.join("api.sock");
    let fpm = PhpFpm::tcp_with(&format!(
        "\n[api]\nlisten = {}\nlisten.mode = 0666\npm = ondemand\npm.max_children = 2\n\
         ping.path = /fpm-ping\nping.response = pong\npm.status_path = /fpm-status\n",
        api.display()
    ));
    let pools = format!("front=127.0.0.1:{},api={}", fpm.port(), api.display());
    let tool = Tool::start(&[("POOLS", pools.as_str())]);
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{}']\n",
        file("alerts.yml").display(),
        tool.addr()
    );
    let prometheus = Prometheus::start(&config);
    let load = Load::start(tool.addr(), 4);
    wait_scrapes(&prometheus, 5.0);

    let dashboard = dashboard();
    assert_eq!(
        pool_variable_values(&prometheus, &dashboard),
        serde_json::json!(["api", "front"])
    );
    // All is the variable's allValue, as Grafana substitutes it.
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    let all = variables.iter().find(|v| v["name"] == "pool").unwrap()["allValue"]
        .as_str()
        .unwrap()
        .to_owned();
    let cases: [(&str, &[&str]); 3] = [
        ("front", &["front"]),
        ("api", &["api"]),
        (all.as_str(), &["api", "front"]),
    ];
    let queries = queries(&dashboard);
    let failures = || -> Vec<String> {
        let mut out = Vec::new();
        for (pool, expected) in &cases {
            for (panel, expr) in &queries {
                if let Err(error) = check_pool_query(&prometheus, panel, expr, pool, expected) {
                    out.push(error);
                }
            }
        }
        out
    };
    assert_panels_answer(&failures, "panels not per pool");

    // The check fails as it should: a query that merges the pools has no pool label.
    let merged = check_pool_query(
        &prometheus,
        "Merged",
        "sum by (probe) (rate(fastcgi_healthcheck_probes_total{pool=~\"$pool\"}[$__rate_interval]))",
        "api",
        &["api"],
    )
    .unwrap_err();
    assert!(merged.contains("series of pools [\"\"]"), "{merged}");
    drop(load);
    drop(tool);
}

/// For the README's picture: more load, php-fpm's workers stopped until the tool has counted
/// a run of ping timeouts, then load again.
fn outage_for_the_picture(prometheus: &Prometheus, fpm: &PhpFpm) {
    wait_scrapes(prometheus, 40.0);
    fpm.stop_workers();
    let timeouts = "fastcgi_healthcheck_probes_total{probe=\"ping\",result=\"timeout\"}";
    let counted = poll(Duration::from_secs(60), || {
        prometheus.value(timeouts).filter(|n| *n >= 15.0)
    });
    fpm.resume_workers();
    assert!(
        counted.is_some(),
        "no ping timeouts counted while php-fpm was stopped"
    );
    wait_scrapes(prometheus, 40.0);
}

fn render(prometheus: &Prometheus, start: f64, out: &Path) {
    let script = file("render-dashboard.py");
    let result = Command::new(need(PYTHON, "python3-matplotlib"))
        .arg(&script)
        .arg(format!("--prometheus={}", prometheus.url()))
        .arg(format!("--dashboard={}", file("dashboard.json").display()))
        .arg("--pool=www")
        .arg(format!("--rate-interval={}", VARIABLES[0].1))
        .arg(format!("--start={start:.3}"))
        .arg(format!("--end={:.3}", unix_now()))
        .arg(format!("--out={}", out.display()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        result.status.success(),
        "{} failed (is python3-matplotlib installed? apt-get install python3-matplotlib):\n{}{}",
        script.display(),
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
}

/// The process panels of php-fpm_exporter's own Grafana dashboard (`grafana/kubernetes-php-fpm.json`
/// in hipages/php-fpm_exporter; not ours to ship, the README says where to get it): (panel
/// title, expression), copied as published. `$namespace` is the dashboard's variable; the
/// scrape below gives the target a `namespace` label, as Kubernetes service discovery does.
const EXPORTER_PROCESS_PANELS: [(&str, &str); 4] = [
    (
        "# of processes by state",
        "sum(phpfpm_process_state{namespace=\"$namespace\"}) by (state)",
    ),
    (
        "# of processes by state",
        "sum(phpfpm_process_state{namespace=\"$namespace\"})",
    ),
    (
        "Request Duration by process",
        "sum(phpfpm_process_request_duration{namespace=\"$namespace\"}) by (pid_hash)",
    ),
    (
        "Requests per process",
        "sum(phpfpm_process_requests{namespace=\"$namespace\"}) by (pid_hash)",
    ),
];

/// The namespace label the test's scrape gives the tool's target.
const NAMESPACE: &str = "php";

#[test]
fn php_fpm_exporter_dashboard_process_panels_return_data_with_per_process_metrics() {
    let fpm = PhpFpm::tcp();
    let tool = Tool::probing(
        "127.0.0.1",
        fpm.port(),
        &[("PROCESS_METRICS", "per-process")],
    );
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{}']\n        labels:\n          namespace: {NAMESPACE}\n",
        tool.addr()
    );
    let prometheus = Prometheus::start(&config);
    let _load = Load::start(tool.addr(), 2);
    wait_scrapes(&prometheus, 3.0);
    let failures = || -> Vec<String> {
        EXPORTER_PROCESS_PANELS
            .iter()
            .filter_map(|(panel, expr)| {
                check_query(&prometheus, panel, &expr.replace("$namespace", NAMESPACE)).err()
            })
            .collect()
    };
    let all_data = poll(Duration::from_secs(30), || {
        failures().is_empty().then_some(())
    });
    assert!(
        all_data.is_some(),
        "dead panels of php-fpm_exporter's dashboard:\n{}",
        failures().join("\n")
    );
    // One series per child (php-fpm's 2 workers), and the states by name.
    let by_child = prometheus
        .query(
            &EXPORTER_PROCESS_PANELS[3]
                .1
                .replace("$namespace", NAMESPACE),
        )
        .unwrap();
    assert_eq!(by_child.len(), 2, "{by_child:?}");
    let by_state = prometheus
        .query(
            &EXPORTER_PROCESS_PANELS[0]
                .1
                .replace("$namespace", NAMESPACE),
        )
        .unwrap();
    let total: f64 = by_state.iter().filter_map(finite).sum();
    assert_eq!(total, 2.0, "{by_state:?}");
    assert!(
        by_state
            .iter()
            .all(|s| ["Idle", "Running"].contains(&s["metric"]["state"].as_str().unwrap_or("?"))),
        "{by_state:?}"
    );
    drop(tool);
}

/// Fails at once on a query Prometheus rejects; then waits (60 s at most) until `failures` has
/// none left, or fails listing them under `what`.
fn assert_panels_answer(failures: &dyn Fn() -> Vec<String>, what: &str) {
    let unparsed: Vec<String> = failures()
        .into_iter()
        .filter(|f| f.contains("rejects"))
        .collect();
    assert!(unparsed.is_empty(), "{}", unparsed.join("\n"));
    let all_data = poll(Duration::from_secs(60), || {
        failures().is_empty().then_some(())
    });
    assert!(all_data.is_some(), "{what}:\n{}", failures().join("\n"));
}
