//! Operating-system helpers: temp dirs, signals, /proc scanning, free ports, polling.

use std::fs;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// A unique directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("fcgi-hc-test-{}-{n}", std::process::id()));
        // A leftover from an earlier run with a recycled pid is stale: start clean.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` every 10 ms until it returns `Some`, or `None` once `within` has passed (scaled
/// under an emulator: see `tool::scaled`).
pub fn poll<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + super::tool::scaled(within);
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Like [`poll`], but panics naming `what` when the deadline passes.
pub fn wait_until<T>(within: Duration, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(within, check).unwrap_or_else(|| panic!("timed out after {within:?} waiting for {what}"))
}

/// Sends `signal` (e.g. "STOP", "KILL") to every pid with the `kill` command; returns whether it reached
/// them all (pids already gone are not an error worth printing).
pub fn signal(pids: &[u32], signal: &str) -> bool {
    if pids.is_empty() {
        return true;
    }
    Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(std::process::Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Pids of the live processes whose parent is `parent` (from the ppid field of /proc/*/stat).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| parent_of(pid) == Some(parent))
        .collect()
}

/// The ppid of `pid`, or `None` if it is gone or a zombie.
fn parent_of(pid: u32) -> Option<u32> {
    let (state, ppid) = stat(pid)?;
    (state != 'Z' && state != 'X').then_some(ppid)
}

/// Whether `pid` is stopped (by SIGSTOP).
pub fn is_stopped(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state == 'T')
}

/// How long ago `pid` started (from the starttime field of /proc/PID/stat and /proc/uptime),
/// to the clock tick.
pub fn process_age(pid: u32) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, starttime field 22.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let started_ticks: f64 = rest.split_whitespace().nth(19)?.parse().ok()?;
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // USER_HZ is 100 on every Linux we run on.
    let age = uptime - started_ticks / 100.0;
    (age >= 0.0).then(|| Duration::from_secs_f64(age))
}

/// The state letter and ppid of `pid` from /proc/PID/stat.
fn stat(pid: u32) -> Option<(char, u32)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ')'.
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
    let state = fields.next()?.chars().next()?;
    Some((state, fields.next()?.parse().ok()?))
}

/// A port on `ip` that was free a moment ago (bound to port 0, then released).
pub fn free_port(ip: IpAddr) -> u16 {
    let listener = TcpListener::bind(SocketAddr::new(ip, 0)).expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}

/// Whether this machine lets us bind the IPv6 loopback.
pub fn ipv6_loopback_available() -> bool {
    TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0)).is_ok()
}

/// One line of /proc/net/tcp{,6}: local and remote port, state (`01`: established), receive queue.
struct TcpSocket {
    local: u16,
    remote: u16,
    established: bool,
    listening: bool,
    rx_queue: u64,
}

/// The TCP sockets of this machine, from /proc/net/tcp and /proc/net/tcp6.
fn tcp_sockets() -> Vec<TcpSocket> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some(TcpSocket {
                local: hex_port(fields.get(1)?)?,
                remote: hex_port(fields.get(2)?)?,
                established: *fields.get(3)? == "01",
                listening: *fields.get(3)? == "0A",
                rx_queue: u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?,
            })
        })
        .collect()
}

/// How many connections wait in the accept queue of the TCP listener on `port` (a listening
/// socket's receive queue in /proc/net/tcp).
pub fn listen_queue(port: u16) -> u64 {
    tcp_sockets()
        .iter()
        .filter(|s| s.local == port && s.listening)
        .map(|s| s.rx_queue)
        .sum()
}

/// Whether the server side of the TCP connection `server_port` <-> `client_port` has read everything the
/// client sent (its receive queue is empty). Lets a test know the server has seen a partial request
/// without sleeping.
pub fn server_drained(server_port: u16, client_port: u16) -> bool {
    tcp_sockets()
        .iter()
        .any(|s| s.local == server_port && s.remote == client_port && s.rx_queue == 0)
}

/// Whether at least `connections` connections to `server_port` are established and the server
/// has read everything they sent (receive queues empty). Never true of an empty set: a check
/// before the connections exist must not pass.
pub fn server_read_everything(server_port: u16, connections: usize) -> bool {
    let served: Vec<TcpSocket> = tcp_sockets()
        .into_iter()
        .filter(|s| s.local == server_port && s.established)
        .collect();
    served.len() >= connections && served.iter().all(|s| s.rx_queue == 0)
}

/// The port of a /proc/net/tcp address such as `0100007F:1F90`.
fn hex_port(address: &str) -> Option<u16> {
    u16::from_str_radix(address.rsplit(':').next()?, 16).ok()
}

/// A finished command's stdout then stderr, for assertion messages.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The full path of `program` on the test's own `PATH` (a child run with a `PATH` of its own
/// needs it); fails the test, saying which Debian package brings it, when there is none.
pub fn which(program: &str) -> String {
    if program.contains('/') {
        return program.to_owned();
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            let package = match program {
                "setpriv" | "unshare" | "mount" => "util-linux",
                "ip" => "iproute2",
                "sh" => "dash",
                "cat" => "coreutils",
                _ => "qemu-user-static",
            };
            panic!("{program} is missing: install it with \"apt-get install {package}\"")
        })
        .display()
        .to_string()
}

/// A Debian container's network, where the tests run their command: `/etc/hosts` maps
/// `localhost` to both 127.0.0.1 and ::1, and IPv6 is off (so a connect to ::1 fails with
/// EADDRNOTAVAIL). Made with `unshare -m -n` (a mount and a network namespace of the command's
/// own), a hosts file bound over /etc/hosts, `lo` up, and IPv6 disabled; nothing listens there.
/// Needs root (CI runs as root), util-linux and iproute2: without them the test fails, saying so.
pub struct Ipv6OffNamespace {
    /// Holds the hosts file.
    _dir: TempDir,
    wrapper: Vec<String>,
}

impl Ipv6OffNamespace {
    pub fn new() -> Self {
        let dir = TempDir::new();
        let hosts = dir.join("hosts");
        fs::write(
            &hosts,
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n",
        )
        .expect("write the hosts file");
        let script = format!(
            "{mount} --bind '{hosts}' /etc/hosts && {ip} link set lo up || exit 125\n\
             for knob in all default lo; do\n\
             \x20   f=/proc/sys/net/ipv6/conf/$knob/disable_ipv6\n\
             \x20   if [ -e $f ]; then echo 1 > $f || exit 125; fi\n\
             done\n\
             exec \"$@\"\n",
            mount = which("mount"),
            ip = which("ip"),
            hosts = hosts.display(),
        );
        let wrapper = vec![
            which("unshare"),
            "-m".to_owned(),
            "-n".to_owned(),
            which("sh"),
            "-c".to_owned(),
            script,
            "sh".to_owned(),
        ];
        let made = Self { _dir: dir, wrapper };
        // The namespace itself must work, or every verdict in it would mislead.
        let mut probe: Vec<String> = made.wrapper.clone();
        probe.push(which("cat"));
        probe.push("/etc/hosts".to_owned());
        let out = Command::new(&probe[0])
            .args(&probe[1..])
            .output()
            .expect("run unshare");
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("::1 localhost"),
            "cannot make a network namespace with localhost on 127.0.0.1 and ::1 and IPv6 off \
             (this test needs root, unshare from util-linux and ip from iproute2): {}",
            output_text(&out)
        );
        made
    }

    /// The wrapper's argv: runs its arguments in the namespace.
    pub fn wrapper(&self) -> Vec<&str> {
        self.wrapper.iter().map(String::as_str).collect()
    }
}
