//! The binary under test: spawned with an explicit environment, stderr captured line by line.

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, LazyLock, Mutex};
use std::thread;
use std::time::Duration;

use fastcgi_healthcheck::config::SETTINGS;

use super::sys::{free_port, poll, signal};

/// The binary under test: `FASTCGI_HEALTHCHECK_BIN` when set (a cross build, such as the aarch64 one
/// of `scripts/cross`), else the one cargo built for these tests.
static BIN: LazyLock<String> = LazyLock::new(|| {
    std::env::var("FASTCGI_HEALTHCHECK_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_fastcgi-healthcheck").to_owned())
});

/// The emulator that runs [`bin`], from `FASTCGI_HEALTHCHECK_RUNNER` (e.g. `qemu-aarch64-static`).
static RUNNER: LazyLock<Option<String>> =
    LazyLock::new(|| std::env::var("FASTCGI_HEALTHCHECK_RUNNER").ok());

/// How much longer than native a wait may take, from `FASTCGI_HEALTHCHECK_TIME_SCALE` (a whole
/// number, 1 when unset): everything is slower under an emulator.
static TIME_SCALE: LazyLock<u32> = LazyLock::new(|| {
    std::env::var("FASTCGI_HEALTHCHECK_TIME_SCALE").map_or(1, |text| {
        text.parse().unwrap_or_else(|_| {
            panic!("FASTCGI_HEALTHCHECK_TIME_SCALE={text:?} is not a whole number")
        })
    })
});

/// The path of the binary under test.
pub fn bin() -> &'static str {
    &BIN
}

/// The binary under test installed as `dir/name` (a hard link, or a copy across file systems):
/// for a program name of its own, or a path that any user may run (a build directory under a
/// 0700 home is closed to `nobody`).
pub fn install_as(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let to = dir.join(name);
    if std::fs::hard_link(bin(), &to).is_err() {
        std::fs::copy(bin(), &to).expect("copy the binary under test");
    }
    to
}

/// The emulator the binary runs under, if any.
pub fn runner() -> Option<&'static str> {
    RUNNER.as_deref()
}

/// The command line that starts the binary under test: the emulator (if any), then the binary.
pub fn argv() -> Vec<&'static str> {
    runner().into_iter().chain([bin()]).collect()
}

/// `limit` scaled for the emulator (unchanged at native speed).
pub fn scaled(limit: Duration) -> Duration {
    limit * *TIME_SCALE
}

/// The host's static binary, built by `scripts/build-static` (its last line is the path); for the
/// tests of what ships it (empty root, Debian package, container image), which cannot run under
/// an emulator and say so.
pub fn static_binary() -> std::path::PathBuf {
    native_only("it builds and runs the host's static binary (scripts/build-static)");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-static");
    let out = Command::new(&script)
        .output()
        .expect("run scripts/build-static");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/build-static failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(
        stdout
            .lines()
            .last()
            .expect("a path on the last line")
            .trim(),
    )
}

/// For a test that starts the host's binary some other way: fails it, saying so, when the tests
/// are run against another binary (`FASTCGI_HEALTHCHECK_BIN` or `FASTCGI_HEALTHCHECK_RUNNER` set).
pub fn native_only(why: &str) {
    assert!(
        runner().is_none() && std::env::var_os("FASTCGI_HEALTHCHECK_BIN").is_none(),
        "this test does not run against FASTCGI_HEALTHCHECK_BIN/FASTCGI_HEALTHCHECK_RUNNER: {why}"
    );
}

/// systemd's socket activation, readiness and journal variables, which the tool reads too.
const SYSTEMD_VARS: [&str; 5] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "JOURNAL_STREAM",
];

/// Every variable the tool reads: its settings (the one table, `config::SETTINGS`) and systemd's.
/// Never inherited from the test's environment, only set explicitly.
pub const TOOL_VARS: [&str; SETTINGS.len() + SYSTEMD_VARS.len()] = {
    let mut vars = [""; SETTINGS.len() + SYSTEMD_VARS.len()];
    let mut i = 0;
    while i < SETTINGS.len() {
        vars[i] = SETTINGS[i].var;
        i += 1;
    }
    let mut j = 0;
    while j < SYSTEMD_VARS.len() {
        vars[SETTINGS.len() + j] = SYSTEMD_VARS[j];
        j += 1;
    }
    vars
};

const STARTUP: Duration = Duration::from_secs(10);

/// The tool's command: inherited tool and systemd variables removed (never inherited from the test's
/// environment, only set explicitly), `SERVER=127.0.0.1:0`, then `env` and `args`.
pub fn command(env: &[(&str, &str)], args: &[&str]) -> Command {
    command_under(&[], env, args)
}

/// As [`command`], run through `wrapper` (e.g. `["prlimit", "--nofile=256"]`) when it is not empty.
pub fn command_under(wrapper: &[&str], env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut argv = wrapper.to_vec();
    argv.extend(self::argv());
    command_program(&argv, env, args)
}

/// As [`command`], but running `argv` (a program and its first arguments, e.g. `["chroot", ROOT,
/// "/fastcgi-healthcheck"]`) instead of the binary under test.
pub fn command_program(argv: &[&str], env: &[(&str, &str)], args: &[&str]) -> Command {
    let (program, program_args) = argv.split_first().expect("a program");
    let mut command = Command::new(program);
    command.args(program_args);
    for var in TOOL_VARS {
        command.env_remove(var);
    }
    command
        .env("SERVER", "127.0.0.1:0")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null());
    command
}

/// Spawns the tool with piped stderr.
fn spawn_child(argv: &[&str], env: &[(&str, &str)], args: &[&str], stdout: Stdio) -> Child {
    command_program(argv, env, args)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("spawn {argv:?}: {error}"))
}

type Lines = Arc<Mutex<Vec<String>>>;

/// Collects a pipe's lines into a shared vector from a background thread.
fn collect_lines(pipe: impl Read + Send + 'static) -> Lines {
    let lines = Lines::default();
    let sink = lines.clone();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            sink.lock().expect("lines lock").push(line);
        }
    });
    lines
}

/// All the lines of a pipe whose process has exited: waits (5 s at most) for the reader thread to reach EOF,
/// which it signals by dropping its handle on `lines`.
fn all_lines(lines: &Lines) -> String {
    let _ = poll(Duration::from_secs(5), || {
        (Arc::strong_count(lines) == 1).then_some(())
    });
    lines.lock().expect("lines lock").join("\n")
}

/// A running tool, killed on drop.
pub struct Tool {
    child: Child,
    addr: SocketAddr,
    logs: Lines,
}

impl Tool {
    /// Starts the tool with these variables (on top of `SERVER=127.0.0.1:0`) and waits until it listens.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_with_args(env, &[])
    }

    /// Starts the tool probing FastCGI at `host`:`port` over TCP, with `extra` variables (which
    /// win over these).
    pub fn probing(host: &str, port: u16, extra: &[(&str, &str)]) -> Self {
        let port = port.to_string();
        let mut env = vec![("DESTINATION", host), ("DESTINATION_PORT", port.as_str())];
        env.extend_from_slice(extra);
        Self::start(&env)
    }

    pub fn start_with_args(env: &[(&str, &str)], args: &[&str]) -> Self {
        Self::spawn(&argv(), env, args, |logs| {
            logs.iter().find_map(|line| listening_addr(line))
        })
    }

    /// Starts the tool on a free port of 127.0.0.1 and waits until it accepts connections: for log levels
    /// that hide the `listening on` line.
    pub fn start_without_listening_log(env: &[(&str, &str)], args: &[&str]) -> Self {
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            free_port(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        );
        let server = addr.to_string();
        let mut env = env.to_vec();
        env.push(("SERVER", &server));
        Self::spawn(&argv(), &env, args, |_| {
            TcpStream::connect(addr).is_ok().then_some(addr)
        })
    }

    /// Starts the tool through `wrapper` (a command that runs its arguments, such as `prlimit`).
    pub fn start_under(wrapper: &[&str], env: &[(&str, &str)]) -> Self {
        let mut argv = wrapper.to_vec();
        argv.extend(self::argv());
        Self::start_program(&argv, env)
    }

    /// Starts `argv`: a program that is, or runs, the tool (`["chroot", ROOT, "/fastcgi-healthcheck"]`).
    pub fn start_program(argv: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(argv, env, &[], |logs| {
            logs.iter().find_map(|line| listening_addr(line))
        })
    }

    /// Spawns `argv` and polls `listening` (given the stderr lines so far) for its address.
    fn spawn(
        argv: &[&str],
        env: &[(&str, &str)],
        args: &[&str],
        listening: impl Fn(&[String]) -> Option<SocketAddr>,
    ) -> Self {
        let mut child = spawn_child(argv, env, args, Stdio::null());
        let logs = collect_lines(child.stderr.take().expect("piped stderr"));
        // poll scales the limit under an emulator.
        let startup = scaled(STARTUP);
        let addr = poll(STARTUP, || {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the tool exited with {status} before listening; stderr:\n{}",
                    all_lines(&logs)
                );
            }
            listening(&logs.lock().expect("lines lock"))
        });
        let Some(addr) = addr else {
            let _ = child.kill();
            let stderr = logs.lock().expect("lines lock").join("\n");
            panic!("the tool was not listening within {startup:?}; stderr:\n{stderr}");
        };
        Self { child, addr, logs }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("lines lock").clone()
    }

    /// Waits (5 s at most) for a log line containing every one of `needles`, and returns it.
    pub fn wait_for_log(&self, needles: &[&str]) -> String {
        let found = poll(Duration::from_secs(5), || {
            self.logs()
                .into_iter()
                .find(|line| needles.iter().all(|needle| line.contains(needle)))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no log line containing {needles:?}; stderr:\n{}",
                self.logs().join("\n")
            )
        })
    }

    /// Asserts the process is still running (it did not crash on what the test just did).
    pub fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the tool died with {status}; stderr:\n{}",
                self.logs().join("\n")
            );
        }
    }

    pub fn signal(&self, name: &str) {
        assert!(
            signal(&[self.pid()], name),
            "kill -{name} {} failed",
            self.pid()
        );
    }

    /// Stops the tool with SIGTERM and returns its whole stderr, read to the end: for checks that
    /// something was never logged (lines still in the pipe would otherwise pass unseen).
    pub fn stop_and_logs(mut self) -> String {
        self.signal("TERM");
        assert!(
            self.wait_exit(Duration::from_secs(5)).is_some(),
            "the tool did not exit within 5 s of SIGTERM"
        );
        all_lines(&self.logs)
    }

    /// Waits for the process to exit; `None` if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        poll(within, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address in a `listening on http://ADDR` log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("listening on http://").nth(1)?;
    let addr = rest
        .split(|c: char| c.is_whitespace() || c == ',' || c == '/')
        .next()?;
    addr.parse().ok()
}

/// Result of a run that is expected to end by itself.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the tool and waits (10 s at most) for it to exit; a tool still running is killed and the test fails.
pub fn run_to_exit(env: &[(&str, &str)], args: &[&str]) -> Finished {
    run_program_to_exit(&argv(), env, args)
}

/// As [`run_to_exit`], running `argv` (see [`Tool::start_program`]).
pub fn run_program_to_exit(argv: &[&str], env: &[(&str, &str)], args: &[&str]) -> Finished {
    let mut child = spawn_child(argv, env, args, Stdio::piped());
    let stdout = collect_lines(child.stdout.take().expect("piped stdout"));
    let stderr = collect_lines(child.stderr.take().expect("piped stderr"));
    let within = scaled(STARTUP);
    let status = poll(STARTUP, || child.try_wait().ok().flatten());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the tool with {env:?} {args:?} did not exit within {within:?}; stderr:\n{}",
            all_lines(&stderr)
        );
    };
    Finished {
        status,
        stdout: all_lines(&stdout),
        stderr: all_lines(&stderr),
    }
}
