//! The Debian package (`scripts/debian/build-deb`) for real on this machine: lintian passes it with
//! no error and no warning left unexplained, `dpkg -i` installs it, the installed binary's `check`
//! answers from a real php-fpm, `man fastcgi-healthcheck` says what `--help` says, the installed
//! units (and one template instance) pass `systemd-analyze verify` with no warning, one template
//! instance serves through `systemd-socket-activate` with its env file and exits when idle, and
//! `dpkg --purge` leaves none of its files behind.
//!
//! It installs into this machine's /usr, /etc and /lib (CI runs as root), and purges on the way out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::sys::output_text;
use common::tool::{static_binary, TOOL_VARS};
use common::{wait_until, PhpFpm, TempDir};

const PACKAGE: &str = "fastcgi-healthcheck";
const INSTALLED: &str = "/usr/bin/fastcgi-healthcheck";
const UNITS: &str = "/lib/systemd/system";

/// Runs `program args`, failing with how to install it when it is missing.
fn run(program: &str, args: &[&str], install: &str) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("{program}: {error}: install it with \"{install}\""))
}

/// Builds the amd64 package from the static binary into `dir`; returns its path.
fn build_package(dir: &Path) -> PathBuf {
    let binary = static_binary();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/debian/build-deb");
    let out = Command::new(&script)
        .arg(
            String::from_utf8(run("dpkg", &["--print-architecture"], "dpkg").stdout)
                .unwrap()
                .trim(),
        )
        .arg(&binary)
        .arg(dir)
        .output()
        .expect("run scripts/debian/build-deb");
    assert!(
        out.status.success(),
        "build-deb failed:\n{}",
        output_text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(stdout.lines().last().expect("the package's path").trim())
}

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PACKAGE]).output();
    }
}

/// Words of `text` joined by single spaces, each line's trailing colon dropped: `--help` and the
/// rendered manual page (whose section headers lose theirs) compare equal on these.
fn words(text: &str) -> String {
    text.lines()
        .map(|line| line.trim().trim_end_matches(':'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// `KEY=VALUE` lines of an env file, comments and blank lines skipped.
fn env_file(path: &Path) -> Vec<(String, String)> {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (key, value) = line.split_once('=').expect("KEY=VALUE");
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// The values of `key=` lines of an installed unit file, `%i` replaced by `instance`.
fn unit_values(unit: &str, key: &str, instance: &str) -> Vec<String> {
    let path = Path::new(UNITS).join(unit);
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.replace("%i", instance))
        .collect()
}

fn get_unix(path: &Path, target: &str) -> String {
    let mut stream = UnixStream::connect(path)
        .unwrap_or_else(|error| panic!("connect {}: {error}", path.display()));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn package_lints_installs_serves_a_template_instance_and_purges_clean() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test installs the package with dpkg, which needs root (CI runs as root)"
    );
    let dir = TempDir::new();
    let deb = build_package(dir.path());
    let deb_str = deb.to_str().unwrap();

    // lintian: exit 0, no error, and no warning (each kept one is overridden, with its reason, in
    // scripts/debian/lintian-overrides).
    let out = run("lintian", &[deb_str], "apt-get install lintian");
    let report = output_text(&out);
    assert!(out.status.success(), "lintian failed:\n{report}");
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("E:") || l.starts_with("W:")),
        "lintian:\n{report}"
    );

    // The package's files, to check that purge removes them all.
    let listing = String::from_utf8(run("dpkg-deb", &["-c", deb_str], "dpkg").stdout).unwrap();
    let files: Vec<String> = listing
        .lines()
        .filter(|line| !line.starts_with('d'))
        .filter_map(|line| line.split_whitespace().last())
        .map(|path| path.trim_start_matches('.').to_owned())
        .collect();
    assert!(files.iter().any(|f| f == INSTALLED), "{listing}");

    let out = run("dpkg", &["-i", deb_str], "dpkg");
    let installed = Installed;
    assert!(out.status.success(), "dpkg -i:\n{}", output_text(&out));

    // The installed binary's check against a real php-fpm, and against nothing.
    let fpm = PhpFpm::unix();
    let socket = fpm.socket_path().to_str().unwrap().to_owned();
    let check = |destination: &str| {
        let mut command = Command::new(INSTALLED);
        for var in TOOL_VARS {
            command.env_remove(var);
        }
        command
            .env("DESTINATION", destination)
            .arg("check")
            .output()
            .unwrap()
    };
    let out = check(&socket);
    assert_eq!(out.status.code(), Some(0), "check: {}", output_text(&out));
    let out = check("/nonexistent/php-fpm.sock");
    assert_eq!(
        out.status.code(),
        Some(1),
        "check of nothing: {}",
        output_text(&out)
    );

    // man fastcgi-healthcheck holds every line of --help.
    let help = String::from_utf8(
        Command::new(INSTALLED)
            .arg("--help")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let man = Command::new("man")
        .args(["-P", "cat", PACKAGE])
        .env("MANWIDTH", "250")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (Debian's man-db package: apt-get install man-db)");
    let manual = words(&String::from_utf8_lossy(&man.stdout));
    assert!(man.status.success(), "man: {}", output_text(&man));
    for line in help.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            manual.contains(&words(line)),
            "the manual lacks {line:?}:\n{manual}"
        );
    }

    // systemd-analyze verify: the installed units, and one instance of the templates.
    let instance = format!("pkgtest{}", std::process::id());
    let socket_unit = format!("{PACKAGE}@{instance}.socket");
    let service_unit = format!("{PACKAGE}@{instance}.service");
    let out = run(
        "systemd-analyze",
        &[
            "verify",
            "--man=no",
            &format!("{UNITS}/{PACKAGE}.socket"),
            &format!("{UNITS}/{PACKAGE}.service"),
            &socket_unit,
            &service_unit,
        ],
        "apt-get install systemd",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );

    // One template instance: its env file (from the shipped example), started on the first
    // connection to the socket unit's path by systemd-socket-activate with the service's
    // ExecStart and environment; it answers from php-fpm and exits once idle.
    let env_path = PathBuf::from(
        unit_values(&format!("{PACKAGE}@.service"), "EnvironmentFile", &instance)
            .pop()
            .expect("an EnvironmentFile= in the template service"),
    );
    let example = fs::read_to_string("/etc/fastcgi-healthcheck/example.env").unwrap();
    let env_text = example
        .lines()
        .map(|line| {
            if line.starts_with("DESTINATION=") {
                format!("DESTINATION={socket}")
            } else if line.starts_with("IDLE_EXIT=") {
                "IDLE_EXIT=1s".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    fs::write(&env_path, env_text).unwrap();
    let listen = PathBuf::from(
        unit_values(&format!("{PACKAGE}@.socket"), "ListenStream", &instance)
            .pop()
            .expect("a ListenStream= in the template socket"),
    );
    fs::create_dir_all(listen.parent().unwrap()).unwrap();
    let exec = unit_values(&format!("{PACKAGE}@.service"), "ExecStart", &instance)
        .pop()
        .expect("an ExecStart= in the template service");
    // Environment= first, then the env file, which wins (as systemd does).
    let mut env: Vec<String> =
        unit_values(&format!("{PACKAGE}@.service"), "Environment", &instance);
    env.extend(
        env_file(&env_path)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}")),
    );
    let mut activate = Command::new("/usr/bin/systemd-socket-activate");
    activate.arg("-l").arg(&listen);
    for var in TOOL_VARS {
        activate.env_remove(var);
    }
    for pair in &env {
        activate.arg("-E").arg(pair);
    }
    let mut child = activate
        .args(exec.split_whitespace())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("systemd-socket-activate (apt-get install systemd)");
    wait_until(Duration::from_secs(10), "the instance's socket", || {
        UnixStream::connect(&listen).ok()
    });
    let answer = get_unix(&listen, "/fcgi-ping");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let status = wait_until(Duration::from_secs(10), "the idle instance to exit", || {
        child.try_wait().ok().flatten()
    });
    assert!(status.success(), "the instance exited with {status}");
    fs::remove_file(&env_path).unwrap();
    let _ = fs::remove_file(&listen);
    let _ = fs::remove_dir(listen.parent().unwrap());

    // Purge: the package is gone and so is every file it shipped, the conffile and its folder too.
    drop(installed);
    let out = run("dpkg-query", &["-W", "-f=${Status}", PACKAGE], "dpkg");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("installed"),
        "still installed: {}",
        output_text(&out)
    );
    let left: Vec<&String> = files.iter().filter(|f| Path::new(f).exists()).collect();
    assert!(left.is_empty(), "left behind after purge: {left:?}");
    for folder in [
        "/etc/fastcgi-healthcheck",
        "/usr/share/doc/fastcgi-healthcheck",
    ] {
        assert!(
            !Path::new(folder).exists(),
            "{folder} left behind after purge"
        );
    }
}
