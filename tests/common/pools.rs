//! One real php-fpm master with several pools: Unix sockets in one directory that holds nothing
//! else (for `POOLS=dir:`), TCP on 127.0.0.1 at a free port. A pool can be removed from the
//! configuration and added back, each with a reload (SIGUSR2), as an operator would. Master and
//! workers are killed (all of them) on drop.
//!
//! php-fpm's own name for a pool (its `[section]`, which its status page reports as `pool:`) is
//! ours with `fpm-` in front, so a test can tell the tool's pool name (`POOLS`, the socket file
//! less `.sock`) from php-fpm's.
//!
//! A Unix pool may have a status lane (`pm.status_listen`) on `NAME.status.sock` beside its socket,
//! as `POOLS=dir:` pairs them. Its children (ondemand, `php-fpm: pool fpm-NAME_status`) are not
//! the pool's workers; a reload while one is alive would count it.
//!
//! What php-fpm 8.2 does on a reload (seen here, and checked by tests/pools.rs's harness test):
//! the master keeps its pid and re-executes itself, every worker of every pool is replaced, the
//! listeners of the pools still configured are inherited (same socket, same inode), and the
//! listener of a removed pool is closed, its Unix socket file unlinked.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fpm::{end_master, php_fpm_binary, status_field, Listen};
use super::sys::{self, children_of, poll, signal, TempDir};

/// Where a pool listens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum On {
    /// `NAME.sock` in the master's socket directory.
    Unix,
    /// 127.0.0.1 at a free port.
    Tcp,
}

/// A pool to configure: our name for it, where it listens, how many static workers it has,
/// whether it has a status lane.
#[derive(Clone, Debug)]
pub struct PoolSpec {
    pub name: &'static str,
    pub on: On,
    pub size: usize,
    pub lane: bool,
}

impl PoolSpec {
    /// A pool of 2 static workers on `NAME.sock`.
    pub fn unix(name: &'static str) -> Self {
        Self {
            name,
            on: On::Unix,
            size: 2,
            lane: false,
        }
    }

    /// A pool of 2 static workers on 127.0.0.1 at a free port.
    pub fn tcp(name: &'static str) -> Self {
        Self {
            name,
            on: On::Tcp,
            size: 2,
            lane: false,
        }
    }

    /// The same pool with `size` static workers (`pm.max_children`).
    pub fn sized(self, size: usize) -> Self {
        Self { size, ..self }
    }

    /// The same pool (on a Unix socket) with a status lane on `NAME.status.sock` beside it.
    pub fn with_lane(self) -> Self {
        assert_eq!(
            self.on,
            On::Unix,
            "{}: a lane beside a Unix socket only",
            self.name
        );
        Self { lane: true, ..self }
    }
}

struct Pool {
    spec: PoolSpec,
    listen: Listen,
    /// Whether the pool is in php-fpm's configuration now.
    configured: bool,
}

/// A php-fpm master with several pools, killed on drop.
pub struct FpmPools {
    child: Child,
    /// In name order.
    pools: Vec<Pool>,
    /// Every worker pid seen, for the kill on drop.
    workers: Vec<u32>,
    /// How many times php-fpm has said "ready to handle connections" (1 + the reloads).
    readies: usize,
    /// The Unix sockets and nothing else.
    sockets: TempDir,
    /// The configuration, log and pid file.
    dir: TempDir,
}

const READY: &str = "ready to handle connections";

impl FpmPools {
    /// The three pools of the proof: `api` (3 workers) and `www` (2) on Unix sockets in
    /// one directory, `admin` (1) on TCP. The sizes differ so that a threshold on the number of
    /// processes tells the pools apart.
    pub fn three() -> Self {
        Self::start(&[
            PoolSpec::tcp("admin").sized(1),
            PoolSpec::unix("api").sized(3),
            PoolSpec::unix("www"),
        ])
    }

    /// One master with `specs`; retries with other ports if a chosen TCP port was taken.
    pub fn start(specs: &[PoolSpec]) -> Self {
        assert!(!specs.is_empty(), "php-fpm needs at least one pool");
        let mut last_error = String::new();
        for _ in 0..5 {
            match Self::try_start(specs) {
                Ok(pools) => return pools,
                Err(error) => last_error = error,
            }
        }
        panic!("php-fpm with pools {specs:?} did not start: {last_error}");
    }

    fn try_start(specs: &[PoolSpec]) -> Result<Self, String> {
        let sockets = TempDir::new();
        let dir = TempDir::new();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut pools: Vec<Pool> = specs
            .iter()
            .map(|spec| Pool {
                listen: match spec.on {
                    On::Unix => Listen::Unix(sockets.join(&format!("{}.sock", spec.name))),
                    On::Tcp => Listen::Tcp(SocketAddr::new(ip, sys::free_port(ip))),
                },
                spec: spec.clone(),
                configured: true,
            })
            .collect();
        pools.sort_by_key(|pool| pool.spec.name);
        let config = dir.join("php-fpm.conf");
        fs::write(&config, config_text(&dir, &pools)).expect("write php-fpm config");
        let child = super::fpm::spawn(Command::new(php_fpm_binary()), &config, dir.path())?;
        let mut fpm = Self {
            child,
            pools,
            workers: Vec::new(),
            readies: 0,
            sockets,
            dir,
        };
        fpm.await_ready()?;
        Ok(fpm)
    }

    /// Waits (15 s at most) for one more "ready to handle connections" in the log, every
    /// configured pool accepting connections, every removed one refusing them, and every worker
    /// up; fails early if php-fpm exits (e.g. a port was taken).
    fn await_ready(&mut self) -> Result<(), String> {
        let master = self.master_pid();
        let want = self.readies + 1;
        let workers: usize = self.configured().map(|pool| pool.spec.size).sum();
        let ready = poll(Duration::from_secs(15), || {
            if self.child.try_wait().ok().flatten().is_some() {
                return Some(false);
            }
            let up = self.log().matches(READY).count() >= want
                && self
                    .pools
                    .iter()
                    .all(|pool| pool.listen.accepts_connections() == pool.configured)
                && children_of(master).len() == workers
                // A child just forked carries the master's title until it sets its own, so
                // count each pool's workers by title too (what `workers_of` reads).
                && self
                    .configured()
                    .all(|pool| self.workers_of(pool.spec.name).len() == pool.spec.size);
            up.then_some(true)
        });
        if ready == Some(true) {
            self.readies = want;
            let now = children_of(master);
            self.workers.extend(now);
            return Ok(());
        }
        Err(format!(
            "php-fpm with pools {:?} not ready (exited or 15 s passed); its log:\n{}",
            self.configured().map(|p| p.spec.name).collect::<Vec<_>>(),
            self.log()
        ))
    }

    fn configured(&self) -> impl Iterator<Item = &Pool> {
        self.pools.iter().filter(|pool| pool.configured)
    }

    fn pool(&self, name: &str) -> &Pool {
        self.pools
            .iter()
            .find(|pool| pool.spec.name == name)
            .unwrap_or_else(|| panic!("no pool {name:?} in this php-fpm"))
    }

    /// Rewrites the configuration with `name` in or out, reloads the master with SIGUSR2 and
    /// waits until it is ready again.
    fn reload_with(&mut self, name: &str, configured: bool) {
        let pool = self
            .pools
            .iter_mut()
            .find(|pool| pool.spec.name == name)
            .unwrap_or_else(|| panic!("no pool {name:?} in this php-fpm"));
        assert_ne!(
            pool.configured,
            configured,
            "pool {name:?} is already {}",
            if configured { "configured" } else { "removed" }
        );
        pool.configured = configured;
        assert!(
            self.configured().next().is_some(),
            "php-fpm needs at least one pool: {name:?} is the last"
        );
        fs::write(self.config_path(), config_text(&self.dir, &self.pools))
            .expect("write php-fpm config");
        assert!(
            signal(&[self.master_pid()], "USR2"),
            "kill -USR2 {} failed",
            self.master_pid()
        );
        self.await_ready().unwrap_or_else(|error| panic!("{error}"));
    }

    /// Removes pool `name` from the configuration and reloads php-fpm (SIGUSR2): once this
    /// returns, the other pools answer on fresh workers and `name`'s listener is closed.
    pub fn remove(&mut self, name: &str) {
        self.reload_with(name, false);
    }

    /// Puts pool `name` back in the configuration and reloads php-fpm (SIGUSR2): once this
    /// returns, every configured pool answers, `name` on the same socket path or port as before.
    pub fn add(&mut self, name: &str) {
        self.reload_with(name, true);
    }

    /// Our names of all the pools, removed ones included, in name order.
    pub fn names(&self) -> Vec<&'static str> {
        self.pools.iter().map(|pool| pool.spec.name).collect()
    }

    /// php-fpm's own name for pool `name` (its `[section]`, the status page's `pool:`).
    pub fn fpm_name(name: &str) -> String {
        format!("fpm-{name}")
    }

    /// Where pool `name` listens (or listened, once removed).
    pub fn listen(&self, name: &str) -> &Listen {
        &self.pool(name).listen
    }

    /// The status lane socket of pool `name` (`NAME.status.sock`), whether it has one or not.
    pub fn lane_path(&self, name: &str) -> PathBuf {
        self.sockets.join(&lane_file(name))
    }

    /// How many static workers pool `name` has.
    pub fn size(&self, name: &str) -> usize {
        self.pool(name).spec.size
    }

    /// The directory of the Unix sockets, which holds nothing else: `POOLS=dir:` this.
    pub fn socket_dir(&self) -> &Path {
        self.sockets.path()
    }

    /// `POOLS` naming every pool (removed ones included), `NAME=/path.sock` (`+/lane.sock` with a
    /// lane) or `NAME=127.0.0.1:PORT`.
    pub fn pools_env(&self) -> String {
        self.pools
            .iter()
            .map(|pool| match &pool.listen {
                Listen::Unix(path) if pool.spec.lane => format!(
                    "{}={}+{}",
                    pool.spec.name,
                    path.display(),
                    self.lane_path(pool.spec.name).display()
                ),
                Listen::Unix(path) => format!("{}={}", pool.spec.name, path.display()),
                Listen::Tcp(addr) => format!("{}={addr}", pool.spec.name),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `POOLS` for discovery: `dir:` and the socket directory.
    pub fn discovery_env(&self) -> String {
        format!("dir:{}", self.socket_dir().display())
    }

    /// A field of pool `name`'s status page, fetched over FastCGI directly (the fetch counts as
    /// one accepted connection).
    pub fn status_field(&self, name: &str, field: &str) -> u64 {
        status_field(self.listen(name), field)
    }

    /// The pids of pool `name`'s workers now (by their title, `php-fpm: pool fpm-NAME`).
    pub fn workers_of(&self, name: &str) -> Vec<u32> {
        let title = format!("php-fpm: pool {}", Self::fpm_name(name));
        children_of(self.master_pid())
            .into_iter()
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    let first = cmdline.split(|&b| b == 0).next().unwrap_or_default();
                    String::from_utf8_lossy(first).trim_end() == title
                })
            })
            .collect()
    }

    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("php-fpm.conf")
    }

    /// What php-fpm has written to its error log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("php-fpm.log")).unwrap_or_default()
    }
}

impl Drop for FpmPools {
    fn drop(&mut self) {
        end_master(&mut self.child, &self.workers, true);
    }
}

/// The file name of pool `name`'s status lane, beside its socket.
fn lane_file(name: &str) -> String {
    format!("{name}.status.sock")
}

fn config_text(dir: &TempDir, pools: &[Pool]) -> String {
    let mut text = format!(
        "[global]\n\
         pid = {pid}\n\
         error_log = {log}\n\
         daemonize = no\n",
        pid = dir.join("php-fpm.pid").display(),
        log = dir.join("php-fpm.log").display(),
    );
    for pool in pools.iter().filter(|pool| pool.configured) {
        text.push('\n');
        text.push_str(&super::fpm::pool_section(
            &FpmPools::fpm_name(pool.spec.name),
            &pool.listen,
            pool.spec.size,
        ));
        if let (true, Listen::Unix(socket)) = (pool.spec.lane, &pool.listen) {
            let lane = socket.with_file_name(lane_file(pool.spec.name));
            text.push_str(&format!("pm.status_listen = {}\n", lane.display()));
        }
    }
    text
}
