//! The `php-fpm-healthcheck` mode against Debian's php-fpm: the binary installed under that name
//! in a temp directory on `PATH` and started by that name, as a drop-in for renatomefi's script
//! (its options, variables, output lines and exit codes), with a deadline.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::sys::{children_of, poll, signal, which, Ipv6OffNamespace};
use common::tool::{self, scaled};
use common::{free_port, Listen, PhpFpm, TempDir};

const NAME: &str = "php-fpm-healthcheck";

/// The binary under test, installed as `php-fpm-healthcheck` (a hard link, or a copy across
/// file systems) in a temp directory that becomes the child's whole `PATH`.
struct Installed {
    dir: TempDir,
}

impl Installed {
    fn new() -> Self {
        let dir = TempDir::new();
        tool::install_as(dir.path(), NAME);
        Self { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(NAME)
    }

    /// The command that runs it by name (under the emulator, by its path: qemu-user does not
    /// search `PATH`, and passes that path on as argv[0]), behind `wrapper` (e.g. `setpriv ...`).
    fn command(&self, wrapper: &[&str], env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut argv: Vec<String> = wrapper.iter().map(|s| (*s).to_owned()).collect();
        match tool::runner() {
            Some(runner) => {
                argv.push(which(runner));
                argv.push(self.path().display().to_string());
            }
            None => argv.push(NAME.to_owned()),
        }
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .args(args)
            .env_clear()
            .env("PATH", self.dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    }

    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Run {
        finish(self.command(&[], env, args))
    }
}

/// A finished run: exit status, the whole stdout and stderr, how long it took.
#[derive(Debug)]
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `command` to its end (10 s at most, scaled under an emulator; then the test fails).
fn finish(mut command: Command) -> Run {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = reader(Box::new(child.stdout.take().unwrap()));
    let stderr = reader(Box::new(child.stderr.take().unwrap()));
    let Some(status) = poll(Duration::from_secs(10), || child.try_wait().ok().flatten()) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not exit within 10 s");
    };
    let took = started.elapsed();
    Run {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        took,
    }
}

/// `FCGI_CONNECT` for `fpm`: the socket path, or 127.0.0.1:port.
fn connect(fpm: &PhpFpm) -> String {
    match fpm.listen() {
        Listen::Unix(path) => path.display().to_string(),
        Listen::Tcp(addr) => addr.to_string(),
    }
}

/// The variables that point the mode at `fpm`'s status page (`/fpm-status` in the harness).
fn env_for(fpm: &PhpFpm) -> Vec<(&'static str, String)> {
    vec![
        ("FCGI_CONNECT", connect(fpm)),
        ("FCGI_STATUS_PATH", "/fpm-status".to_owned()),
    ]
}

fn borrow<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The value of `field` in a verbose run's printed status page.
fn printed(run: &Run, field: &str) -> u64 {
    let prefix = format!("{field}:");
    run.stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field:?} in the printed page: {run:?}"))
}

/// The page php-fpm prints, line by line: the key padded to 22 columns, then the value; `None`
/// for values that change between runs (only digits are accepted there, or any text for the
/// start time).
const PAGE: [(&str, Option<&str>); 14] = [
    ("pool", Some("www")),
    ("process manager", Some("static")),
    ("start time", None),
    ("start since", None),
    ("accepted conn", None),
    ("listen queue", Some("0")),
    ("max listen queue", Some("0")),
    ("listen queue len", None),
    // How many workers are busy depends on when the pool's readiness check, or the previous
    // run, let go of its worker: a number, checked as such.
    ("idle processes", None),
    ("active processes", None),
    ("total processes", Some("2")),
    ("max active processes", None),
    ("max children reached", Some("0")),
    ("slow requests", Some("0")),
];

/// The verbose output, string for string: the connect line, the page, one line per check.
fn assert_verbose_page(run: &Run, target: &str, checks: &[&str]) {
    let lines: Vec<&str> = run.stdout.split_inclusive('\n').collect();
    assert_eq!(lines.len(), 2 + PAGE.len() + checks.len(), "{run:?}");
    assert_eq!(
        lines[0],
        format!("Trying to connect to php-fpm via: {target}\n")
    );
    assert_eq!(lines[1], "php-fpm status output:\n");
    for ((key, value), line) in PAGE.iter().zip(&lines[2..]) {
        let padded = format!("{:<22}", format!("{key}:"));
        let rest = line
            .strip_prefix(&padded)
            .and_then(|rest| rest.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("{line:?} is not {padded:?}...: {run:?}"));
        match value {
            Some(value) => assert_eq!(rest, *value, "{key}: {run:?}"),
            None if *key == "start time" => assert!(!rest.is_empty()),
            None => assert!(rest.bytes().all(|b| b.is_ascii_digit()) && !rest.is_empty()),
        }
    }
    for (check, line) in checks.iter().zip(&lines[2 + PAGE.len()..]) {
        assert_eq!(*line, format!("{check}\n"));
    }
}

#[test]
fn verbose_output_string_for_string_on_unix_and_tcp_pools() {
    let installed = Installed::new();
    for fpm in [PhpFpm::unix(), PhpFpm::tcp()] {
        let env = env_for(&fpm);
        let run = installed.run(
            &borrow(&env),
            &["-v", "--total-processes=2", "--listen-queue", "0"],
        );
        assert_eq!(run.code(), Some(0), "{run:?}");
        assert_eq!(run.stderr, "");
        assert_verbose_page(
            &run,
            &format!("{}/fpm-status", connect(&fpm)),
            &[
                "'total processes' value '2' and expected is less than '2'",
                "'listen queue' value '0' and expected is less than '0'",
            ],
        );
        // --verbose is -v; and quiet runs print nothing.
        let run = installed.run(&borrow(&env), &["--verbose"]);
        assert_verbose_page(&run, &format!("{}/fpm-status", connect(&fpm)), &[]);
        let run = installed.run(&borrow(&env), &["--total-processes=2"]);
        assert_eq!(
            (run.code(), run.stdout.as_str(), run.stderr.as_str()),
            (Some(0), "", "")
        );
    }
}

/// Every field, with `=` and with a space: it reads the field that the dashes name, passes at
/// the page's value and fails (exit 1) one below it.
#[test]
fn every_option_with_equals_and_with_a_space() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    let fields = [
        "accepted-conn",
        "listen-queue",
        "max-listen-queue",
        "listen-queue-len",
        "idle-processes",
        "active-processes",
        "total-processes",
        "max-active-processes",
        "max-children-reached",
        "slow-requests",
    ];
    for field in fields {
        let name = field.replace('-', " ");
        for spaced in [false, true] {
            let args = |limit: i64| -> Vec<String> {
                if spaced {
                    vec![format!("--{field}"), limit.to_string()]
                } else {
                    vec![format!("--{field}={limit}")]
                }
            };
            // accepted conn counts each run's own connection; the other fields stay put.
            let step = u64::from(field == "accepted-conn");
            let now = printed(&installed.run(&borrow(&env), &["-v"]), &name);
            let value = now + step;
            let limit = i64::try_from(value).unwrap();
            let pass = args(limit);
            let pass: Vec<&str> = pass.iter().map(String::as_str).collect();
            let run = installed.run(&borrow(&env), &[&["-v"], pass.as_slice()].concat());
            assert_eq!(run.code(), Some(0), "{field} spaced={spaced}: {run:?}");
            assert!(
                run.stdout.ends_with(&format!(
                    "'{name}' value '{value}' and expected is less than '{limit}'\n"
                )),
                "{run:?}"
            );
            let value = value + step;
            let limit = i64::try_from(value).unwrap() - 1;
            let fail = args(limit);
            let fail: Vec<&str> = fail.iter().map(String::as_str).collect();
            let run = installed.run(&borrow(&env), &fail);
            assert_eq!(run.code(), Some(1), "{field} spaced={spaced}: {run:?}");
            assert_eq!(run.stdout, "");
            assert_eq!(
                run.stderr,
                format!("'{name}' value '{value}' is greater than expected '{limit}'\n")
            );
        }
    }
}

/// Checks run in command-line order and the first failure ends the run.
#[test]
fn checks_run_in_command_line_order() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    let run = installed.run(
        &borrow(&env),
        &["-v", "--total-processes=1", "--idle-processes=0"],
    );
    assert_eq!(run.code(), Some(1));
    assert_eq!(
        run.stderr,
        "'total processes' value '2' is greater than expected '1'\n"
    );
    assert!(run
        .stdout
        .ends_with("'total processes' value '2' and expected is less than '1'\n"));
    // A unique prefix names the option, as getopt reads the original's.
    let run = installed.run(&borrow(&env), &["-v", "--idle=0", "--total", "1"]);
    assert_eq!(run.code(), Some(1));
    assert_eq!(
        run.stderr,
        "'idle processes' value '1' is greater than expected '0'\n"
    );
    assert!(run
        .stdout
        .ends_with("'idle processes' value '1' and expected is less than '0'\n"));
}

#[test]
fn invalid_options_exit_3_before_any_request() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    let before = fpm.status_field("accepted conn");
    for (args, stderr) in [
        (
            &["--nope", "--accepted-conn=1"][..],
            "php-fpm-healthcheck: unrecognized option '--nope'\nInvalid options, terminating.\n",
        ),
        (
            &["-x"][..],
            "php-fpm-healthcheck: invalid option -- 'x'\nInvalid options, terminating.\n",
        ),
        (
            &["--listen-queue"][..],
            "php-fpm-healthcheck: option '--listen-queue' requires an argument\nInvalid options, terminating.\n",
        ),
        (
            &["--max=1"][..],
            "php-fpm-healthcheck: option '--max=1' is ambiguous; possibilities: '--max-listen-queue' '--max-active-processes' '--max-children-reached'\nInvalid options, terminating.\n",
        ),
        (
            &["--listen-queue=abc"][..],
            "'--listen-queue' option value must be an integer, 'abc' given\n",
        ),
        (
            &["--slow-requests", ""][..],
            "'--slow-requests' option value must be an integer, '' given\n",
        ),
        (
            &["--accepted-conn=1", "--max-listen-queue", "1.5"][..],
            "'--max-listen-queue' option value must be an integer, '1.5' given\n",
        ),
    ] {
        let run = installed.run(&borrow(&env), args);
        assert_eq!(run.code(), Some(3), "{args:?}: {run:?}");
        assert_eq!(run.stderr, stderr, "{args:?}");
        assert_eq!(run.stdout, "");
    }
    // No request was made: the status fetch of this test is the only new connection.
    assert_eq!(fpm.status_field("accepted conn"), before + 1);
}

/// Exactly one FastCGI request per run, options or not, passing or failing.
#[test]
fn accepted_conn_rises_by_exactly_one_per_run() {
    let installed = Installed::new();
    let fpm = PhpFpm::tcp();
    let env = env_for(&fpm);
    let first = printed(&installed.run(&borrow(&env), &["-v"]), "accepted conn");
    let run = installed.run(&borrow(&env), &[]);
    assert_eq!((run.code(), run.stdout.as_str()), (Some(0), ""));
    let second = printed(&installed.run(&borrow(&env), &["-v"]), "accepted conn");
    assert_eq!(second, first + 2);
    let run = installed.run(&borrow(&env), &["--total-processes=1"]);
    assert_eq!(run.code(), Some(1));
    let third = printed(
        &installed.run(&borrow(&env), &["--verbose"]),
        "accepted conn",
    );
    assert_eq!(third, second + 2);
}

#[test]
fn defaults_status_path_and_a_big_caller_environment() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix_with("pm.status_path = /status\n");
    let big = "x".repeat(8 * 1024);
    let socket = connect(&fpm);
    let run = installed.run(
        &[("FCGI_CONNECT", &socket), ("BIG", &big)],
        &["-v", "--max-children-reached=0"],
    );
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert_verbose_page(
        &run,
        &format!("{socket}/status"),
        &["'max children reached' value '0' and expected is less than '0'"],
    );
    // FCGI_STATUS_PATH empty is unset, as the original's ${FCGI_STATUS_PATH:-/status}.
    let run = installed.run(&[("FCGI_CONNECT", &socket), ("FCGI_STATUS_PATH", "")], &[]);
    assert_eq!(run.code(), Some(0), "{run:?}");
}

#[test]
fn the_same_mode_as_the_first_argument() {
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    let mut argv = tool::argv();
    argv.push(NAME);
    let mut command = Command::new(argv[0]);
    command
        .args(&argv[1..])
        .args(["-v", "--total-processes", "1"])
        .env_clear()
        .envs(borrow(&env))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let run = finish(command);
    assert_eq!(run.code(), Some(1), "{run:?}");
    assert_eq!(
        run.stderr,
        "'total processes' value '2' is greater than expected '1'\n"
    );
    assert!(run.stdout.starts_with("Trying to connect to php-fpm via: "));
    // And --help of the main program says so.
    let help = finish({
        let mut c = Command::new(tool::argv()[0]);
        c.args(&tool::argv()[1..])
            .arg("--help")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    });
    assert!(
        help.stdout
            .contains("fastcgi-healthcheck php-fpm-healthcheck [-v] [--<field>=N]..."),
        "{help:?}"
    );
}

/// php-fpm's pool lines for workers that run as nobody (so that a script's file mode counts), and,
/// with `powered`, send `X-Powered-By` (`expose_php`, Off in Debian's php.ini, On without one as
/// in the official image): one more header line before php-fpm's `File not found.`.
fn pool_lines(powered: bool) -> String {
    let mut lines = "user = nobody\ngroup = nogroup\n".to_owned();
    if powered {
        lines.push_str("php_admin_flag[expose_php] = on\n");
    }
    lines
}

/// Every answer php-fpm gives, with the exit status of php-fpm-healthcheck 0.5.0 and ours: the
/// same. The codes were read off the script itself, run with Debian's cgi-fcgi (libfcgi-bin
/// 2.4.2) against these pools on 2026-12-07 (docs/php-fpm-healthcheck.md). The script exits 8
/// only when `cgi-fcgi`'s output from its fifth line on is `File not found.`: php-fpm's 404 with
/// `X-Powered-By` has three header lines, so its body is the fifth line; with Debian's php.ini
/// it has two, the fifth line is past the body, and the script passes. Where it passes on a
/// broken answer, we pass too and say what is wrong on stderr.
#[test]
fn exit_codes_as_the_script_on_every_answer() {
    let installed = Installed::new();
    let docroot = TempDir::new();
    std::fs::write(docroot.join("file.txt"), "not php\n").unwrap();
    let locked = docroot.join("locked.php");
    std::fs::write(&locked, "<?php echo 'secret';\n").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let at = |name: &str| docroot.join(name).display().to_string();
    // (what, FCGI_STATUS_PATH, exit with Debian's php.ini, exit with X-Powered-By, on stderr)
    let cases = [
        ("the status page", "/fpm-status".to_owned(), 0, 0, ""),
        ("the ping", "/fpm-ping".to_owned(), 0, 0, ""),
        (
            "404, Primary script unknown",
            "/status".to_owned(),
            0,
            8,
            "Status: \"404 Not Found\"; is pm.status_path = /status set in the php-fpm pool? \
             php-fpm said: \"Primary script unknown\". Passing all the same",
        ),
        (
            "404, no such script",
            at("missing.php"),
            0,
            8,
            "\"404 Not Found\"",
        ),
        (
            "403 Access denied., security.limit_extensions",
            at("file.txt"),
            0,
            0,
            "has been denied (see security.limit_extensions)\". Passing all the same",
        ),
        (
            "403 Access denied., EACCES opening the script",
            at("locked.php"),
            0,
            0,
            "(Permission denied)\". Passing all the same",
        ),
    ];
    for powered in [false, true] {
        let fpm = PhpFpm::unix_with(&pool_lines(powered));
        let socket = connect(&fpm);
        for (what, path, debian_code, powered_code, says) in &cases {
            let code = if powered { *powered_code } else { *debian_code };
            let env = [
                ("FCGI_CONNECT", socket.as_str()),
                ("FCGI_STATUS_PATH", path),
            ];
            let run = installed.run(&env, &[]);
            let case = format!("{what} (X-Powered-By: {powered}): {run:?}");
            assert_eq!(run.code(), Some(code), "{case}");
            assert_eq!(run.stdout, "", "{case}");
            match (code, *says) {
                (8, _) => assert_eq!(run.stderr, "php-fpm status page non reachable\n", "{case}"),
                (_, "") => assert_eq!(run.stderr, "", "{case}"),
                (_, says) => {
                    assert!(
                        run.stderr.starts_with(&format!(
                            "php-fpm-healthcheck: bad_status: unix:{socket} answered {path} with "
                        )),
                        "{case}"
                    );
                    assert!(run.stderr.contains(says), "{case}");
                    assert_eq!(run.stderr.lines().count(), 1, "{case}");
                }
            }
        }
    }
}

/// A wrong FCGI_STATUS_PATH (here the README's pool has /fpm-status, the default is /status)
/// exits 8 with the script's line; `-v` names the variable and the path asked.
#[test]
fn a_wrong_status_path_exits_8_and_verbose_names_it() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix_with(&pool_lines(true));
    let socket = connect(&fpm);
    let env = [("FCGI_CONNECT", socket.as_str())];
    let run = installed.run(&env, &["-v", "--listen-queue=10"]);
    assert_eq!(run.code(), Some(8), "{run:?}");
    assert_eq!(
        run.stdout,
        format!(
            "Trying to connect to php-fpm via: {socket}/status\nphp-fpm status output:\nFile not found.\n"
        )
    );
    assert_eq!(
        run.stderr,
        format!(
            "php-fpm status page non reachable\n\
             php-fpm-healthcheck: php-fpm at {socket} answered \"File not found.\" for \
             FCGI_STATUS_PATH=/status; set it to the pool's pm.status_path (this mode reads the \
             status page, not the ping)\n"
        )
    );
    let run = installed.run(&env, &[]);
    assert_eq!(
        (run.code(), run.stdout.as_str(), run.stderr.as_str()),
        (Some(8), "", "php-fpm status page non reachable\n")
    );
    // With Debian's php.ini, the script passes on the same 404, and so do we, saying why; a
    // check then fails on its missing field (our one deviation here).
    let debian = PhpFpm::unix();
    let socket = connect(&debian);
    let env = [("FCGI_CONNECT", socket.as_str())];
    let run = installed.run(&env, &[]);
    assert_eq!(run.code(), Some(0), "{run:?}");
    assert!(run.stderr.contains("\"404 Not Found\""), "{run:?}");
    let run = installed.run(&env, &["--listen-queue=10"]);
    assert_eq!(run.code(), Some(1), "{run:?}");
    assert!(
        run.stderr.ends_with(&format!(
            "php-fpm-healthcheck: 'listen queue' is missing from the status page at \
             {socket}/status; is FCGI_STATUS_PATH php-fpm's pm.status_path?\n"
        )),
        "{run:?}"
    );
}

/// pm.status_path removed from the pool and php-fpm reloaded (SIGUSR2): exit 8 where php-fpm
/// sends X-Powered-By (the official image's case, upstream's test_fpm.py).
#[test]
fn status_path_disabled_by_a_reload_exits_8() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix_with(&pool_lines(true));
    let env = env_for(&fpm);
    assert_eq!(installed.run(&borrow(&env), &[]).code(), Some(0));
    let config = std::fs::read_to_string(fpm.config_path()).unwrap();
    let without = config.replace("pm.status_path = /fpm-status\n", "");
    assert_ne!(config, without, "the harness's pool sets pm.status_path");
    std::fs::write(fpm.config_path(), without).unwrap();
    let master = fpm.master_pid();
    assert!(signal(&[master], "USR2"));
    let reloaded = poll(Duration::from_secs(10), || {
        let log = fpm.log();
        (log.matches("ready to handle connections").count() >= 2
            && children_of(master).len() == 2
            && std::os::unix::net::UnixStream::connect(fpm.socket_path()).is_ok())
        .then_some(())
    });
    assert!(reloaded.is_some(), "php-fpm did not reload: {}", fpm.log());
    let run = installed.run(&borrow(&env), &["-v", "--accepted-conn=1000"]);
    assert_eq!(run.code(), Some(8), "{run:?}");
    assert!(
        run.stdout
            .ends_with("php-fpm status output:\nFile not found.\n"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .starts_with("php-fpm status page non reachable\n"),
        "{run:?}"
    );
}

/// Connection failures exit with the errno, and say what failed in one line.
#[test]
fn connection_failures_exit_with_the_errno() {
    let installed = Installed::new();
    // 111: nothing listens on the port.
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let connect = format!("127.0.0.1:{port}");
    let run = installed.run(&[("FCGI_CONNECT", &connect)], &["-v"]);
    assert_eq!(run.code(), Some(111), "{run:?}");
    assert_eq!(
        run.stdout,
        format!("Trying to connect to php-fpm via: {connect}/status\n")
    );
    assert_eq!(
        run.stderr,
        format!("php-fpm-healthcheck: connect_refused: {connect} refused the connection; is php-fpm running and listening there?\n")
    );
    // 2: no such socket file.
    let dir = TempDir::new();
    let missing = dir.join("php-fpm.sock").display().to_string();
    let run = installed.run(&[("FCGI_CONNECT", &missing)], &[]);
    assert_eq!(run.code(), Some(2), "{run:?}");
    assert_eq!(
        run.stderr,
        format!("php-fpm-healthcheck: connect_failed: cannot connect to unix:{missing}: No such file or directory (os error 2); is FCGI_CONNECT php-fpm's listen address?\n")
    );
    assert_eq!(run.stdout, "");
    // 111 as cgi-fcgi (the kernel refuses a path that is not a socket), saying what it is.
    std::fs::write(dir.join("file"), "").unwrap();
    for (name, kind) in [("file", "a regular file"), ("", "a directory")] {
        let path = dir.join(name).display().to_string();
        let run = installed.run(&[("FCGI_CONNECT", &path)], &[]);
        assert_eq!(run.code(), Some(111), "{run:?}");
        assert_eq!(
            run.stderr,
            format!("php-fpm-healthcheck: connect_failed: unix:{path} is {kind}, not a socket; give the path of php-fpm's socket (the pool's listen); is FCGI_CONNECT php-fpm's listen address?\n")
        );
    }
}

/// Where /etc/hosts maps localhost to 127.0.0.1 and ::1 and IPv6 is off (a Debian container),
/// `FCGI_CONNECT=localhost:9001` exits 111 as the script's cgi-fcgi does (gethostbyname: the
/// first IPv4 address, one connect), not 99 from ::1 (upstream's
/// test_exit_when_fpm_is_not_reachable_apt).
#[test]
fn localhost_is_refused_where_ipv6_is_off() {
    let namespace = Ipv6OffNamespace::new();
    let installed = Installed::new();
    let run = finish(installed.command(
        &namespace.wrapper(),
        &[("FCGI_CONNECT", "localhost:9001")],
        &["-v"],
    ));
    assert_eq!(run.code(), Some(111), "{run:?}");
    assert_eq!(
        run.stdout,
        "Trying to connect to php-fpm via: localhost:9001/status\n"
    );
    assert_eq!(
        run.stderr,
        "php-fpm-healthcheck: connect_refused: localhost:9001 refused the connection; is php-fpm running and listening there?\n"
    );
}

/// 13: a socket of another group (root:www-data 0660, as Debian's is www-data:www-data 0660),
/// probed as nobody (`setpriv`: root skips the permission check): the message names the
/// socket's owner, group and mode, who we are, and what to do, and not the listen address. In
/// the group, the same probe passes.
#[test]
fn permission_denied_exits_13_naming_owner_group_and_mode() {
    // The child's PATH holds only the installed binary: setpriv by its full path.
    let setpriv = which("setpriv");
    let installed = Installed::new();
    let fpm =
        PhpFpm::unix_with("listen.owner = root\nlisten.group = www-data\nlisten.mode = 0660\n");
    let socket = connect(&fpm);
    let mode = std::fs::metadata(fpm.socket_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "the pool's listen.mode applies");
    let env = env_for(&fpm);
    let nobody = [
        setpriv.as_str(),
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let run = finish(installed.command(&nobody, &borrow(&env), &[]));
    assert_eq!(run.code(), Some(13), "{run:?}");
    assert_eq!(
        run.stderr,
        format!(
            "php-fpm-healthcheck: connect_failed: cannot connect to unix:{socket}: Permission \
             denied (os error 13); the socket has owner root (0), group www-data (33), mode 0660, \
             and this process runs as user nobody (65534) with groups nogroup (65534); run it as \
             a member of group www-data (usermod -aG www-data nobody), or set listen.owner, \
             listen.group and listen.mode in the php-fpm pool to let it in\n"
        )
    );
    let member = [
        setpriv.as_str(),
        "--reuid=65534",
        "--regid=65534",
        "--groups=33",
    ];
    let run = finish(installed.command(&member, &borrow(&env), &[]));
    assert_eq!((run.code(), run.stderr.as_str()), (Some(0), ""), "{run:?}");
}

/// The deadline is `--timeout` (whole seconds, as the upstream branch that adds it, or a
/// duration) or 30 s; an application's `TIMEOUT` is not read.
#[test]
fn the_deadline_is_the_timeout_option_only() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    // Upstream's test_timeout.py: --timeout=1 passes on a healthy pool; a missing or non-integer
    // value exits 3.
    let run = installed.run(&borrow(&env), &["--timeout=1"]);
    assert_eq!((run.code(), run.stderr.as_str()), (Some(0), ""), "{run:?}");
    for (args, says) in [
        (
            &["--timeout"][..],
            "option '--timeout' requires an argument",
        ),
        (
            &["--timeout="][..],
            "'--timeout' option value must be an integer, '' given",
        ),
        (
            &["--timeout=abc"][..],
            "'--timeout' option value must be an integer, 'abc' given",
        ),
    ] {
        let run = installed.run(&borrow(&env), args);
        assert_eq!(run.code(), Some(3), "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
    // TIMEOUT is the application's: neither refused nor used.
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let refused = format!("127.0.0.1:{port}");
    for timeout in ["7200", "0", "soon", "1ms"] {
        let run = installed.run(&[("FCGI_CONNECT", &refused), ("TIMEOUT", timeout)], &[]);
        assert_eq!(run.code(), Some(111), "TIMEOUT={timeout}: {run:?}");
        let mut env = borrow(&env);
        env.push(("TIMEOUT", timeout));
        assert_eq!(
            installed.run(&env, &[]).code(),
            Some(0),
            "TIMEOUT={timeout}"
        );
    }
}

/// A hung pool (workers stopped): exit 124 within the deadline, naming the stage, where the
/// original waits forever.
#[test]
fn a_hung_pool_exits_124_within_the_deadline() {
    let installed = Installed::new();
    let fpm = PhpFpm::unix();
    let env = env_for(&fpm);
    let socket = connect(&fpm);
    fpm.stop_workers();
    let mut runs = Vec::new();
    for (args, deadline) in [
        (&["--timeout=1"][..], Duration::from_secs(1)),
        (&["--timeout", "0.5"][..], Duration::from_millis(500)),
        (&["--timeout=300ms"][..], Duration::from_millis(300)),
    ] {
        // An application's TIMEOUT changes nothing.
        let mut env = borrow(&env);
        env.push(("TIMEOUT", "5ms"));
        runs.push((installed.run(&env, args), deadline));
    }
    fpm.resume_workers();
    for (run, deadline) in runs {
        assert_eq!(run.code(), Some(124), "{run:?}");
        assert_eq!(
            run.stderr,
            format!("php-fpm-healthcheck: timeout: no complete answer from unix:{socket} within {deadline:?} (while reading the answer, 0 bytes received); are php-fpm's workers hung? (--timeout=SECONDS sets the deadline, 30 by default)\n")
        );
        assert!(run.took >= deadline, "{run:?}");
        assert!(
            run.took < deadline + scaled(Duration::from_secs(1)),
            "{deadline:?}: {run:?}"
        );
    }
}
