//! One table per fact: `config::SETTINGS` is the list of settings, and the README's
//! configuration table, `--help` and the tests' list of variables all agree with it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::ffi::OsStr;

use common::run_to_exit;
use common::tool::command;
use fastcgi_healthcheck::config::SETTINGS;

/// The rows `| `VAR` | `--flag` | `default` | meaning |` of the table under `## Configuration`.
fn readme_rows() -> Vec<(String, String, String)> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Configuration\n"))
        .expect("README.md has a '## Configuration' section");
    let unquote = |cell: &str| {
        let cell = cell.trim();
        cell.strip_prefix('`')
            .and_then(|c| c.strip_suffix('`'))
            .unwrap_or_else(|| panic!("README cell {cell:?} is not in backquotes"))
            .to_owned()
    };
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            assert!(
                cells.len() >= 4,
                "README row {line:?} has fewer than 4 cells"
            );
            (unquote(cells[0]), unquote(cells[1]), unquote(cells[2]))
        })
        .collect()
}

#[test]
fn the_readme_configuration_table_matches_the_settings() {
    let table: Vec<(String, String, String)> = SETTINGS
        .iter()
        .map(|s| (s.var.to_owned(), s.flag.to_owned(), s.default.to_owned()))
        .collect();
    let readme = readme_rows();
    let missing: Vec<String> = table
        .iter()
        .filter(|row| !readme.contains(row))
        .map(|(var, flag, default)| format!("| `{var}` | `{flag}` | `{default}` | ... |"))
        .collect();
    let extra: Vec<&(String, String, String)> =
        readme.iter().filter(|row| !table.contains(row)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "README.md's configuration table disagrees with config::SETTINGS.\n\
         rows to add (or correct):\n{}\nrows that are not settings: {extra:?}",
        missing.join("\n")
    );
    assert_eq!(readme, table, "same rows, but not in the order of --help");
}

#[test]
fn help_lists_every_setting_with_its_flag_and_default() {
    let run = run_to_exit(&[], &["--help"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    for s in &SETTINGS {
        let line = run
            .stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(s.var))
            .unwrap_or_else(|| panic!("--help has no line for {}:\n{}", s.var, run.stdout));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&words[1..3], &[s.flag, s.default], "{line}");
    }
}

/// The tests start the tool with an explicit environment: every setting's variable is removed
/// from what the test process would pass on (a `STATUS_PATH` in the developer's shell must not
/// change a test's outcome).
#[test]
fn the_tests_never_pass_a_setting_on_from_their_environment() {
    let command = command(&[], &[]);
    let handled: Vec<&OsStr> = command.get_envs().map(|(name, _)| name).collect();
    let leaking: Vec<&str> = SETTINGS
        .iter()
        .map(|s| s.var)
        .filter(|var| !handled.contains(&OsStr::new(var)))
        .collect();
    assert!(
        leaking.is_empty(),
        "the tests' environment passes on {leaking:?}"
    );
}
