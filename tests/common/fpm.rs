//! A real php-fpm master + 2 static workers, configured in a temp dir, killed (all of it) on drop;
//! optionally with a status lane (`pm.status_listen`), whose ondemand children are not workers.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::sys::{self, children_of, poll, signal, TempDir};

const WORKERS: usize = 2;

/// When php-fpm's master has counted its workers into the status page (its maintenance runs
/// once a second from the start), with room for a clock tick.
const MASTER_FIRST_COUNT: Duration = Duration::from_millis(1300);

/// Where php-fpm listens.
#[derive(Clone, Debug)]
pub enum Listen {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl Listen {
    fn config_value(&self) -> String {
        match self {
            Self::Unix(path) => path.display().to_string(),
            Self::Tcp(addr) => addr.to_string(),
        }
    }

    /// Whether a connection to it succeeds now.
    pub fn accepts_connections(&self) -> bool {
        match self {
            Self::Unix(path) => UnixStream::connect(path).is_ok(),
            Self::Tcp(addr) => TcpStream::connect_timeout(addr, Duration::from_secs(1)).is_ok(),
        }
    }
}

/// The php-fpm binary: `$PHP_FPM`, else the first `/usr/sbin/php-fpm*`. Panics if there is none: the tests
/// need it and must not pass silently without it.
pub fn php_fpm_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PHP_FPM") {
        return PathBuf::from(path);
    }
    let mut found: Vec<PathBuf> = fs::read_dir("/usr/sbin")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found.into_iter().next().unwrap_or_else(|| {
        panic!(
            "php-fpm not found: install it with \"apt-get install php-fpm\" (Debian/Ubuntu) \
             or set PHP_FPM=/path/to/php-fpm"
        )
    })
}

pub struct PhpFpm {
    child: Child,
    /// How many static workers the pool has (`pm.max_children`).
    size: usize,
    listen: Listen,
    /// The status lane (`pm.status_listen`), when configured.
    lane: Option<Listen>,
    workers: Vec<u32>,
    down: bool,
    /// Holds the config, log and pid file (and the socket for [`PhpFpm::unix`]); removed on drop.
    dir: TempDir,
}

impl PhpFpm {
    /// php-fpm on a Unix socket in its own temp dir.
    pub fn unix() -> Self {
        Self::unix_with("")
    }

    /// php-fpm on a Unix socket, with `pool_lines` added to the pool's configuration.
    pub fn unix_with(pool_lines: &str) -> Self {
        Self::unix_sized(WORKERS, pool_lines)
    }

    /// php-fpm on a Unix socket with `size` static workers (`pm.max_children`) and
    /// `pool_lines` added to the pool's configuration; ready once every worker is up.
    pub fn unix_sized(size: usize, pool_lines: &str) -> Self {
        let dir = TempDir::new();
        let socket = dir.join("fpm.sock");
        Self::start_sized(dir, Listen::Unix(socket), size, pool_lines)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// php-fpm on a Unix socket, started through `wrapper` (a command that runs its arguments,
    /// such as `unshare -n`: the socket is reached by path from any network namespace).
    pub fn unix_under(wrapper: &[&str], pool_lines: &str) -> Self {
        let dir = TempDir::new();
        let socket = dir.join("fpm.sock");
        Self::start_under(wrapper, dir, Listen::Unix(socket), pool_lines)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// php-fpm on 127.0.0.1 at a free port, with `pool_lines` added to the pool's configuration.
    pub fn tcp_with(pool_lines: &str) -> Self {
        Self::on_free_port(IpAddr::V4(Ipv4Addr::LOCALHOST), |addr| {
            Self::start_in(TempDir::new(), Listen::Tcp(addr), pool_lines)
        })
    }

    /// php-fpm on 127.0.0.1 at a free port.
    pub fn tcp() -> Self {
        Self::tcp_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    /// php-fpm on `ip` at a free port.
    pub fn tcp_on(ip: IpAddr) -> Self {
        Self::on_free_port(ip, |addr| {
            Self::start_in(TempDir::new(), Listen::Tcp(addr), "")
        })
    }

    /// php-fpm on a Unix socket with `size` static workers and its status lane
    /// (`pm.status_listen`) on `status.sock` beside it, `pool_lines` added to the pool's
    /// configuration. (php-fpm binds every listener before it says it is ready.)
    pub fn unix_with_lane(size: usize, pool_lines: &str) -> Self {
        let dir = TempDir::new();
        let (socket, lane) = (dir.join("fpm.sock"), dir.join("status.sock"));
        let lines = format!("pm.status_listen = {}\n{pool_lines}", lane.display());
        let mut fpm = Self::start_sized(dir, Listen::Unix(socket), size, &lines)
            .unwrap_or_else(|error| panic!("{error}"));
        fpm.lane = Some(Listen::Unix(lane));
        fpm
    }

    /// php-fpm on 127.0.0.1 at a free port with `size` static workers and its status lane at
    /// another free port, written as a port alone (`pm.status_listen = PORT`: every address of
    /// the host, IPv6 and IPv4-mapped), `pool_lines` added to the pool's configuration.
    pub fn tcp_with_lane(size: usize, pool_lines: &str) -> Self {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Self::on_free_port(ip, |addr| {
            let lane = SocketAddr::new(ip, sys::free_port(ip));
            let lines = format!("pm.status_listen = {}\n{pool_lines}", lane.port());
            let mut fpm = Self::start_sized(TempDir::new(), Listen::Tcp(addr), size, &lines)?;
            fpm.lane = Some(Listen::Tcp(lane));
            Ok(fpm)
        })
    }

    /// php-fpm started by `start` on `ip` at a free port; retries with other ports if a chosen
    /// one got taken meanwhile.
    fn on_free_port(ip: IpAddr, start: impl Fn(SocketAddr) -> Result<Self, String>) -> Self {
        let mut last_error = String::new();
        for _ in 0..5 {
            match start(SocketAddr::new(ip, sys::free_port(ip))) {
                Ok(fpm) => return fpm,
                Err(error) => last_error = error,
            }
        }
        panic!("php-fpm did not start on {ip}: {last_error}");
    }

    /// The status lane (`pm.status_listen`); panics for a php-fpm without one.
    pub fn lane(&self) -> &Listen {
        self.lane
            .as_ref()
            .unwrap_or_else(|| panic!("this php-fpm has no status lane"))
    }

    /// The configuration file (rewrite it, then SIGUSR2 the master, to reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("php-fpm.conf")
    }

    /// What php-fpm has written to its error log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("php-fpm.log")).unwrap_or_default()
    }

    /// php-fpm listening exactly at `listen`.
    pub fn start(listen: Listen) -> Self {
        Self::start_in(TempDir::new(), listen, "").unwrap_or_else(|error| panic!("{error}"))
    }

    fn start_in(dir: TempDir, listen: Listen, pool_lines: &str) -> Result<Self, String> {
        Self::start_with(&[], dir, listen, WORKERS, pool_lines)
    }

    fn start_sized(
        dir: TempDir,
        listen: Listen,
        size: usize,
        pool_lines: &str,
    ) -> Result<Self, String> {
        Self::start_with(&[], dir, listen, size, pool_lines)
    }

    fn start_under(
        wrapper: &[&str],
        dir: TempDir,
        listen: Listen,
        pool_lines: &str,
    ) -> Result<Self, String> {
        Self::start_with(wrapper, dir, listen, WORKERS, pool_lines)
    }

    /// Starts php-fpm (under `wrapper`, a command and its arguments, if any) with `size` static
    /// workers.
    fn start_with(
        wrapper: &[&str],
        dir: TempDir,
        listen: Listen,
        size: usize,
        pool_lines: &str,
    ) -> Result<Self, String> {
        let config = dir.join("php-fpm.conf");
        let error_log = dir.join("php-fpm.log");
        let text = config_text(&dir, &error_log, &listen, size) + pool_lines;
        fs::write(&config, text).expect("write php-fpm config");
        let binary = php_fpm_binary();
        let command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&binary);
                command
            }
            None => Command::new(&binary),
        };
        let child = spawn(command, &config, dir.path())?;
        let mut fpm = Self {
            child,
            size,
            listen,
            lane: None,
            workers: Vec::new(),
            down: false,
            dir,
        };
        fpm.await_ready(&error_log)?;
        Ok(fpm)
    }

    /// Waits (10 s at most, 60 s for a pool of hundreds) for "ready to handle connections" in the log,
    /// a connectable socket and all the workers; fails early if php-fpm exits (e.g. the port was taken).
    fn await_ready(&mut self, error_log: &Path) -> Result<(), String> {
        let master = self.master_pid();
        let within = Duration::from_secs(if self.size > 100 { 60 } else { 10 });
        let ready = poll(within, || {
            if self.child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            let log = fs::read_to_string(error_log).unwrap_or_default();
            let up = log.contains("ready to handle connections")
                && self.listen.accepts_connections()
                && children_of(master).len() == self.size;
            up.then_some(true)
        });
        if ready == Some(true) {
            self.workers = children_of(master);
            // The status page counts workers as the master's scoreboard does, which the master
            // updates once a second: until its first update, `total processes` is short. Wait
            // for the master's first second.
            poll(Duration::from_secs(5), || {
                sys::process_age(master)
                    .is_some_and(|age| age >= MASTER_FIRST_COUNT)
                    .then_some(())
            });
            return Ok(());
        }
        let log = fs::read_to_string(error_log).unwrap_or_default();
        Err(format!(
            "php-fpm on {} not ready (exited or 10 s passed); its log:\n{log}",
            self.listen.config_value()
        ))
    }

    /// A field of php-fpm's plain-text status page (`accepted conn`, `listen queue`, ...), fetched
    /// over FastCGI directly (the fetch itself counts as one accepted connection).
    pub fn status_field(&self, name: &str) -> u64 {
        status_field(&self.listen, name)
    }

    pub fn listen(&self) -> &Listen {
        &self.listen
    }

    /// The Unix socket path; panics for a TCP php-fpm.
    pub fn socket_path(&self) -> &Path {
        match &self.listen {
            Listen::Unix(path) => path,
            Listen::Tcp(addr) => panic!("php-fpm listens on TCP {addr}, not a Unix socket"),
        }
    }

    /// The TCP address; panics for a Unix socket php-fpm.
    pub fn addr(&self) -> SocketAddr {
        match &self.listen {
            Listen::Tcp(addr) => *addr,
            Listen::Unix(path) => {
                panic!("php-fpm listens on Unix socket {}, not TCP", path.display())
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.addr().port()
    }

    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }

    /// The worker pids seen at start-up (children of the master).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.workers.clone()
    }

    /// SIGSTOP every worker: the listen socket still accepts, nobody answers.
    /// Freezes every worker with SIGSTOP and returns once each one is stopped. Waiting matters: a
    /// worker that was signalled in accept() but has not run yet takes a connection that arrives
    /// meanwhile before it stops, and holds it out of the listen queue.
    pub fn stop_workers(&self) {
        let workers = live_php_fpm(&self.workers);
        assert!(signal(&workers, "STOP"), "kill -STOP {workers:?} failed");
        sys::wait_until(
            Duration::from_secs(5),
            "the php-fpm workers to stop after SIGSTOP",
            || {
                workers
                    .iter()
                    .all(|&pid| sys::is_stopped(pid))
                    .then_some(())
            },
        );
    }

    pub fn resume_workers(&self) {
        let workers = live_php_fpm(&self.workers);
        assert!(signal(&workers, "CONT"), "kill -CONT {workers:?} failed");
    }

    /// Crashes php-fpm (SIGKILL to master and workers) and waits until its socket refuses connections.
    pub fn kill(&mut self) {
        self.shut_down(false);
        sys::wait_until(
            Duration::from_secs(10),
            "the killed php-fpm's socket to refuse connections",
            || (!self.listen.accepts_connections()).then_some(()),
        );
    }

    /// Ends master and workers once, leaving no stray process (see [`end_master`]).
    fn shut_down(&mut self, graceful: bool) {
        if self.down {
            return;
        }
        self.down = true;
        end_master(&mut self.child, &self.workers, graceful);
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        self.shut_down(true);
    }
}

/// A field of the plain-text status page of the pool listening at `listen` (`accepted conn`,
/// `listen queue`, ...), fetched over FastCGI directly (the fetch itself counts as one accepted
/// connection).
pub fn status_field(listen: &Listen, name: &str) -> u64 {
    let answer = match listen {
        Listen::Unix(path) => {
            super::fcgi::fcgi_get(UnixStream::connect(path).expect("connect"), "/fpm-status")
        }
        Listen::Tcp(addr) => {
            super::fcgi::fcgi_get(TcpStream::connect(addr).expect("connect"), "/fpm-status")
        }
    }
    .expect("php-fpm status page");
    let prefix = format!("{name}:");
    answer
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name:?} in the status page: {}", answer.stdout))
}

/// Ends the php-fpm master `child` and its workers (`workers`: those seen at some point, on top
/// of its children now), leaving no stray process. If `graceful`, SIGTERM to the master first: it
/// ends and reaps its workers. Whatever is left is then killed: the master is frozen with SIGSTOP
/// (so it cannot fork replacement workers), then the master and all its workers get SIGKILL.
pub fn end_master(child: &mut Child, workers: &[u32], graceful: bool) {
    let master = child.id();
    if graceful {
        let mut pids = children_of(master);
        pids.extend(live_php_fpm(workers));
        signal(&pids, "CONT");
        signal(&[master], "TERM");
        if poll(Duration::from_secs(2), || child.try_wait().ok().flatten()).is_some() {
            return;
        }
    }
    signal(&[master], "STOP");
    let _ = poll(Duration::from_secs(2), || {
        sys::is_stopped(master).then_some(())
    });
    let mut pids = children_of(master);
    pids.extend(live_php_fpm(workers));
    pids.push(master);
    signal(&pids, "KILL");
    let _ = child.wait();
}

/// Starts php-fpm as `command` in the foreground with `config`, its prefix `dir`, as root
/// allowed (`-R`), its output dropped (it logs to its `error_log`).
pub(crate) fn spawn(mut command: Command, config: &Path, dir: &Path) -> Result<Child, String> {
    command
        .args(["-R", "-F", "-y"])
        .arg(config)
        .arg("-p")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|error| format!("spawn php-fpm: {error}"))
}

/// The pids of `pids` that are still php-fpm processes. A worker seen at start may have ended
/// since (a reload, `request_terminate_timeout`, a kill), and its pid gone to another process, a
/// thread of this very test binary among them: a STOP or KILL sent to it would stop or kill the
/// tests (seen: a test's read interrupted, EINTR, by a stop and continue of its own process).
pub fn live_php_fpm(pids: &[u32]) -> Vec<u32> {
    pids.iter()
        .copied()
        .filter(|pid| {
            fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("php-fpm"))
        })
        .collect()
}

fn config_text(dir: &TempDir, error_log: &Path, listen: &Listen, size: usize) -> String {
    format!(
        "[global]\n\
         pid = {pid}\n\
         error_log = {log}\n\
         daemonize = no\n\
         \n{pool}",
        pid = dir.join("php-fpm.pid").display(),
        log = error_log.display(),
        pool = pool_section("www", listen, size),
    )
}

/// One pool's section: `size` static workers at `listen`, with the ping and status paths the
/// tests use.
pub(crate) fn pool_section(section: &str, listen: &Listen, size: usize) -> String {
    format!(
        "[{section}]\n\
         listen = {listen}\n\
         listen.mode = 0666\n\
         pm = static\n\
         pm.max_children = {size}\n\
         ping.path = /fpm-ping\n\
         ping.response = pong\n\
         pm.status_path = /fpm-status\n",
        listen = listen.config_value(),
    )
}
