//! One table per fact: `config::SETTINGS`, `config::ENDPOINTS` and `config::EXIT_CODES` are the
//! README's tables, `--help` prints them, and the man page is made from `--help`; these tests
//! compare all four, and the tests' list of variables with the settings.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::ffi::OsStr;
use std::process::Command;

use common::tool::{argv, command};
use common::{run_to_exit, TempDir};
use fastcgi_healthcheck::config::{ENDPOINTS, EXIT_CODES, SETTINGS};

/// The rows of the README's table whose header line is `header`, each as its cells (trimmed).
fn readme_table(header: &str) -> Vec<Vec<String>> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut lines = readme.lines().skip_while(|line| *line != header).skip(2); // the header and its `| --- |` line
    assert!(
        readme.lines().any(|line| line == header),
        "README.md has no table headed {header:?}"
    );
    let mut rows = Vec::new();
    for line in lines.by_ref().take_while(|line| line.starts_with('|')) {
        let inner = line
            .strip_prefix("| ")
            .and_then(|l| l.strip_suffix(" |"))
            .unwrap_or_else(|| panic!("README row {line:?} is not `| cell | ... |`"));
        rows.push(inner.split(" | ").map(str::to_owned).collect());
    }
    rows
}

/// Asserts that the README's table under `header` has exactly `expected`'s rows, printing the
/// whole table as it should be when it does not.
fn assert_readme_table(header: &str, expected: &[Vec<String>]) {
    let found = readme_table(header);
    if found != expected {
        let table: Vec<String> = expected
            .iter()
            .map(|row| format!("| {} |", row.join(" | ")))
            .collect();
        let wrong: Vec<String> = found
            .iter()
            .filter(|row| !expected.contains(row))
            .map(|row| format!("| {} |", row.join(" | ")))
            .collect();
        panic!(
            "README.md's table {header:?} disagrees with src/config.rs.\n\
             rows that are wrong:\n{}\n\nthe table as it should be:\n{header}\n{}",
            wrong.join("\n"),
            table.join("\n")
        );
    }
}

/// The text's words, one space apart (wrapping and indentation left out).
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn help() -> String {
    let run = run_to_exit(&[], &["--help"]);
    assert_eq!(run.status.code(), Some(0), "{}", run.stderr);
    run.stdout
}

#[test]
fn the_readme_tables_are_the_tables_of_src_config() {
    let code = |text: &str| format!("`{text}`");
    let settings: Vec<Vec<String>> = SETTINGS
        .iter()
        .map(|s| {
            vec![
                code(s.var),
                code(s.flag),
                code(s.default),
                s.help.to_owned(),
            ]
        })
        .collect();
    assert_readme_table("| variable | flag | default | meaning |", &settings);
    let endpoints: Vec<Vec<String>> = ENDPOINTS
        .iter()
        .map(|(request, answer)| vec![(*request).to_owned(), (*answer).to_owned()])
        .collect();
    assert_readme_table("| request | answer |", &endpoints);
    let exit_codes: Vec<Vec<String>> = EXIT_CODES
        .iter()
        .map(|(exit, serving, check)| vec![code(exit), (*serving).to_owned(), (*check).to_owned()])
        .collect();
    assert_readme_table("| code | serving | `check` |", &exit_codes);
}

#[test]
fn help_says_what_the_tables_say() {
    let help = help();
    for s in &SETTINGS {
        let line = help
            .lines()
            .find(|line| line.split_whitespace().next() == Some(s.var))
            .unwrap_or_else(|| panic!("--help has no line for {}:\n{help}", s.var));
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(&cells[1..], &[s.flag, s.default], "{line}");
        let row = words(&format!("{} {} {} {}", s.var, s.flag, s.default, s.help));
        assert!(words(&help).contains(&row), "--help lacks {row:?}:\n{help}");
    }
    for (request, answer) in ENDPOINTS {
        let row = words(&format!("{request} {answer}"));
        assert!(words(&help).contains(&row), "--help lacks {row:?}:\n{help}");
    }
    for (exit, serving, check) in EXIT_CODES {
        let row = words(&format!("{exit} serving: {serving} check: {check}"));
        assert!(words(&help).contains(&row), "--help lacks {row:?}:\n{help}");
    }
}

/// The man page is `scripts/debian/manpage` of `--help`: read with `man`, it holds every line.
#[test]
fn the_man_page_says_what_help_says() {
    let dir = TempDir::new();
    let page = dir.path().join("fastcgi-healthcheck.1");
    let made = Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/debian/manpage"
    ))
    .args(argv())
    .output()
    .unwrap();
    assert!(
        made.status.success(),
        "manpage: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    std::fs::write(&page, &made.stdout).unwrap();
    let man = Command::new("man")
        .args(["-l", "-P", "cat"])
        .arg(&page)
        .env("MANWIDTH", "250")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (Debian's man-db package: apt-get install man-db)");
    assert!(
        man.status.success(),
        "man: {}",
        String::from_utf8_lossy(&man.stderr)
    );
    let manual = words(&String::from_utf8_lossy(&man.stdout));
    for line in help().lines().filter(|line| !line.trim().is_empty()) {
        // A section's name loses its colon in the manual.
        let line = words(line.trim_end_matches(':'));
        assert!(
            manual.contains(&line),
            "the man page lacks {line:?}:\n{manual}"
        );
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
