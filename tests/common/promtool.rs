//! `promtool check metrics` (Debian's prometheus package) on a `/metrics` text, and its samples
//! read back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const PROMTOOL: &str = "/usr/bin/promtool";

/// The lint problems expected of php-fpm_exporter's own names: its counters
/// `phpfpm_scrape_failures` and (`PROCESS_METRICS=per-process`) `phpfpm_process_requests` have no
/// `_total` suffix, and dashboards and alerts query those names.
const KNOWN: [&str; 2] = [
    "phpfpm_scrape_failures counter metrics should have \"_total\" suffix",
    "phpfpm_process_requests counter metrics should have \"_total\" suffix",
];

/// Asserts that `text` passes `promtool check metrics`, but for the [`KNOWN`] lint problems
/// (exit 3, lint only).
pub fn check_metrics(text: &str) {
    assert!(
        Path::new(PROMTOOL).exists(),
        "{PROMTOOL} not found: install it with \"apt-get install prometheus\""
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("promtool's stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's output");
    let problems =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let only_known = out.status.code() == Some(3)
        && problems
            .lines()
            .filter(|l| !l.trim().is_empty())
            .all(|l| KNOWN.iter().any(|k| l.contains(k)));
    assert!(
        out.status.success() || only_known,
        "promtool check metrics: {problems}\n{text}"
    );
}

/// One sample of the Prometheus text.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Every sample of a `/metrics` text (label values hold no comma, quote or brace here).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no value in {line:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (
                    name,
                    rest.strip_suffix('}')
                        .unwrap_or_else(|| panic!("unclosed labels in {line:?}")),
                ),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    (key.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect();
            Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

/// The value of the first sample `name` that has every one of `labels`.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}
