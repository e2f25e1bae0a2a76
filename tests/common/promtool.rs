//! `promtool check metrics` (Debian's prometheus package) on a `/metrics` text.

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
