//! Configuration: command-line flags and environment variables become one validated [`Config`].
//!
//! Every setting has an environment variable (the original tool's names and defaults) and a
//! `--flag`; a flag wins over the variable, the variable over the default. An invalid value is
//! never replaced by a default: it becomes a [`ConfigError`] whose message names the variable or
//! flag and the accepted form. Parsing is pure: the environment comes in as a function.

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use log::LevelFilter;

use crate::limits::MAX_CONFIG_TEXT;
use crate::proto::status::{self, Threshold};

/// What the command line asked for.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // made once at start
pub enum Command {
    /// Run the HTTP server.
    Serve(Config),
    /// Probe once and exit: `check [-v]`.
    Check {
        /// The configuration (the same settings as the server's).
        config: Config,
        /// Print the FastCGI answer.
        verbose: bool,
        /// `--live`: the liveness question (busy is alive; dead is not), within `TIMEOUT`.
        live: bool,
        /// `--status` and its thresholds: check the status page instead of the ping.
        status: Option<Vec<Threshold>>,
        /// `--pool NAME`: only that pool of `POOLS` (`None`: every pool).
        pool: Option<String>,
        /// Probe logs asked for (`RUST_LOG` or `--log-level`); without, the verdict line alone.
        logs: bool,
    },
    /// Print the manual.
    Help,
    /// Print the version.
    Version,
}

/// The validated configuration of a serving process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub server: SocketAddr,
    /// The FastCGI server to probe (without `POOLS`).
    pub destination: Destination,
    /// The pools to probe: one from `destination`, or `POOLS`.
    pub pools: Pools,
    /// Path sent as `SCRIPT_NAME`, `SCRIPT_FILENAME`, `REQUEST_URI`, `DOCUMENT_URI`.
    pub ping_path: String,
    /// Text the response body must contain (empty: any body).
    pub ping_response: String,
    /// php-fpm's `pm.status_path`, for `/fcgi-status`, `/metrics` and `check --status`; `None`
    /// (`STATUS_PATH=off`): no status page.
    pub status_path: Option<String>,
    /// php-fpm's `pm.status_listen` of `DESTINATION`'s pool (`STATUS_LISTEN`), the status lane
    /// through which the status page is read; `None` (`off`): through `DESTINATION`.
    pub status_listen: Option<Destination>,
    /// What `/metrics` reads of php-fpm's per-process status page (`PROCESS_METRICS`).
    pub process_metrics: ProcessMetrics,
    /// One deadline for the whole probe.
    pub timeout: Duration,
    /// HTTP status for an unhealthy probe.
    pub fail_status: u16,
    /// Deadline for a client to send a request head, and idle limit of a keep-alive connection.
    pub client_timeout: Duration,
    /// Cap on open HTTP connections.
    pub max_connections: usize,
    /// Whether concurrent probes share one FastCGI request.
    pub coalesce: bool,
    /// How long a verdict is reused after its probe finished (zero: not at all).
    pub cache_ttl: Duration,
    /// Exit after this long without a connection (socket activation); `None`: never.
    pub idle_exit: Option<Duration>,
    /// How long a busy pool may go without progress before `/fcgi-live` calls it stuck, and how
    /// long a probe's connection is kept open for its answer; `None` (`off`): liveness is the
    /// ping's verdict and nothing is kept.
    pub busy_grace: Option<Duration>,
    /// Log levels.
    pub log: LogSpec,
}

/// What `/metrics` exports of the per-process part of php-fpm's status page (`PROCESS_METRICS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessMetrics {
    /// Nothing: a scrape reads the summary only.
    Off,
    /// The aggregates (children by state, oldest request, largest last request memory and
    /// cpu), without process ids: a scrape reads the full page. The default.
    Aggregates,
    /// The aggregates and php-fpm_exporter's per-child series (at most
    /// [`crate::limits::MAX_PROCESSES`] children).
    PerProcess,
}

/// Which pools the process probes (`POOLS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pools {
    /// `POOLS=off` (the default): one pool, `DESTINATION`; endpoints and metrics as without
    /// pools (no names, no `pool` label on our own series).
    One,
    /// `POOLS=name=destination,...` (`name=destination+lane`: with its status lane): these, in
    /// name order.
    Named(Vec<(String, Listeners)>),
    /// `POOLS=dir:/path`: every Unix socket in that directory, named after its file less
    /// `.sock` (`NAME.status.sock` is the status lane of `NAME.sock`), re-read while serving.
    Dir(PathBuf),
}

/// Where one pool of `POOLS` listens: php-fpm's `listen` and, when named, its
/// `pm.status_listen` (the status lane).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners {
    /// The pool's listener: the ping, and the status page when there is no lane.
    pub main: Destination,
    /// The status lane: the status page, while it answers.
    pub lane: Option<Destination>,
}

/// Most pools one process probes. Every pool costs its own state (measured in
/// docs/performance.md: about 8 KiB, 18 KiB once probed, more with `PROCESS_METRICS`) and,
/// while probed, up to four descriptors (ping, status page, full status page, a kept
/// connection): 512 descriptors at 128 pools, which the connection cap makes room for
/// (`server::table`), and a `/metrics` scrape of all of them stays within a few MB.
pub const MAX_POOLS: usize = 128;

/// Longest pool name.
pub const MAX_POOL_NAME: usize = 64;

/// Whether `name` is a pool name: a plain word of letters, digits, `_`, `-` and `.`, at most
/// [`MAX_POOL_NAME`] bytes (it becomes a URL path segment and a label value as is).
pub fn pool_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_POOL_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && name != "."
        && name != ".."
}

/// Where the FastCGI server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A TCP host (name or address) and port.
    Tcp {
        /// Host name or IP address.
        host: Host,
        /// TCP port.
        port: u16,
    },
    /// A Unix stream socket.
    Unix(PathBuf),
}

/// A TCP host: an address used as is, or a name resolved at every probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
    /// A DNS name.
    Name(String),
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Tcp {
                host: Host::Ip(ip),
                port,
            } => write!(f, "{}", SocketAddr::new(*ip, *port)),
            Destination::Tcp {
                host: Host::Name(name),
                port,
            } => write!(f, "{name}:{port}"),
            Destination::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// Log levels: a default and per-module overrides (`RUST_LOG=warn,fastcgi_client=debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSpec {
    /// Level for every module without an override.
    pub default: LevelFilter,
    /// `(module prefix, level)` overrides.
    pub modules: Vec<(String, LevelFilter)>,
}

/// A setting that could not be used; the message names it and says what is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// One setting: its variable, its flag, its default, one line of help, and the parser that
/// sets its field of [`Config`]. The one table of settings, [`SETTINGS`], drives parsing,
/// `--help`, the README's configuration table (a test compares them) and the tests' list of
/// variables: adding a setting touches that table and its parser only.
pub struct Setting {
    /// The environment variable.
    pub var: &'static str,
    /// The command-line flag.
    pub flag: &'static str,
    /// The default, as text (parsed like any value).
    pub default: &'static str,
    /// What it means: the README table's last cell, and `--help`'s text under the setting's
    /// line (the same words, wrapped). One line of Markdown: code in backquotes, no `|`.
    pub help: &'static str,
    /// Parses the value and sets its field.
    apply: fn(&Raw, &mut Config) -> Result<(), ConfigError>,
}

/// Default probe deadline. It stays below one second so that a Kubernetes probe with the
/// default `timeoutSeconds: 1` receives our verdict and reason instead of timing out itself.
pub const DEFAULT_TIMEOUT: &str = "800ms";

/// Every setting, in the order of `--help` and the README. Each row sets its own field of
/// [`Config`] (`DESTINATION_PORT` the port of a TCP `DESTINATION`, so it comes after it).
#[rustfmt::skip]
pub const SETTINGS: [Setting; 18] = [
    Setting { var: "SERVER", flag: "--server", default: "127.0.0.1:8080",
        help: "address:port to listen on: IPv4, or `[IPv6]:port`; port `0` picks a free port (logged)",
        apply: |raw, c| parse_server(raw).map(|v| c.server = v) },
    Setting { var: "DESTINATION", flag: "--destination", default: "127.0.0.1",
        help: "FastCGI server: host name, IPv4, IPv6 (`::1` or `[::1]`), or a Unix socket by its \
              absolute path, `/path` or `unix:/path`",
        apply: |raw, c| parse_destination(raw).map(|v| c.destination = v) },
    Setting { var: "DESTINATION_PORT", flag: "--destination-port", default: "9000",
        help: "FastCGI TCP port, 1-65535 (ignored for a Unix socket, but still checked)",
        apply: |raw, c| {
            let port = parse_port(raw)?;
            if let Destination::Tcp { port: slot, .. } = &mut c.destination {
                *slot = port;
            }
            Ok(())
        } },
    Setting { var: "POOLS", flag: "--pools", default: "off",
        help: "several pools from one process: `www=/run/php/www.sock,api=127.0.0.1:9001` (a name is \
              letters, digits, `_`, `-`, `.`), or `dir:/run/php` (every socket there, named after its \
              file less `.sock`); at most 128; not with `DESTINATION`",
        apply: |raw, c| parse_pools(raw, &c.destination).map(|v| c.pools = v) },
    Setting { var: "PING_PATH", flag: "--ping-path", default: "/fpm-ping",
        help: "php-fpm's `ping.path`, sent as `SCRIPT_NAME`, `SCRIPT_FILENAME`, `REQUEST_URI`, \
              `DOCUMENT_URI`",
        apply: |raw, c| parse_ping_path(raw).map(|v| c.ping_path = v) },
    Setting { var: "PING_RESPONSE", flag: "--ping-response", default: "pong",
        help: "text the answer's body must contain (php-fpm's `ping.response`; empty: any body)",
        apply: |raw, c| parse_ping_response(raw).map(|v| c.ping_response = v) },
    Setting { var: "TIMEOUT", flag: "--timeout", default: DEFAULT_TIMEOUT,
        help: "one deadline for the whole probe: resolve, connect, write, read. `500ms`, `2s`, `1m`, \
              between `1ms` and `1h`; a bare number is seconds, at most `60` (write `800ms`, not \
              `800`)",
        apply: |raw, c| parse_duration_setting(raw).map(|v| c.timeout = v) },
    Setting { var: "FAIL_STATUS", flag: "--fail-status", default: "503",
        help: "HTTP status of an unhealthy answer, 400-599; `404` reproduces the original tool",
        apply: |raw, c| parse_fail_status(raw).map(|v| c.fail_status = v) },
    Setting { var: "CLIENT_TIMEOUT", flag: "--client-timeout", default: "5s",
        help: "a client must send its request within this (else `408`); idle keep-alive connections \
              close after it",
        apply: |raw, c| parse_duration_setting(raw).map(|v| c.client_timeout = v) },
    Setting { var: "MAX_CONNECTIONS", flag: "--max-connections", default: "1024",
        help: "cap on open HTTP connections, 1-1048576",
        apply: |raw, c| parse_max_connections(raw).map(|v| c.max_connections = v) },
    Setting { var: "COALESCE", flag: "--coalesce", default: "on",
        help: "`on`: concurrent probes share one FastCGI request; `off`: one request per probe (for \
              benchmarks; not with `POOLS`)",
        apply: |raw, c| parse_switch(raw).map(|v| c.coalesce = v) },
    Setting { var: "CACHE_TTL", flag: "--cache-ttl", default: "0",
        help: "reuse a verdict for this long after its probe finished (`250ms`, `1s`); `0`: only share \
              a probe in flight; needs `COALESCE=on`",
        apply: |raw, c| parse_ttl(raw).map(|v| c.cache_ttl = v) },
    Setting { var: "STATUS_PATH", flag: "--status-path", default: "/fpm-status",
        help: "php-fpm's `pm.status_path`, for `/fcgi-status`, `/metrics` and `check --status`; `off`: \
              none",
        apply: |raw, c| parse_status_path(raw).map(|v| c.status_path = v) },
    Setting { var: "STATUS_LISTEN", flag: "--status-listen", default: "off",
        help: "php-fpm 8.0+'s `pm.status_listen`, where the status page is read, fresh while every \
              worker is busy: `127.0.0.1:9001`, `[::1]:9001`, `9001` (on `DESTINATION`'s host), \
              `/run/php/www.status.sock`; through `DESTINATION` while it refuses or is missing. With \
              `POOLS`: `www=/run/php/www.sock+/run/php/www.status.sock`; `dir:` pairs \
              `NAME.status.sock` with `NAME.sock`",
        apply: |raw, c| parse_status_listen(raw, c).map(|v| c.status_listen = v) },
    Setting { var: "PROCESS_METRICS", flag: "--process-metrics", default: "aggregates",
        help: "what `/metrics` reads of php-fpm's full status page (`?full`): `off`: nothing (the \
              summary only); `aggregates`: children by state, the oldest running request, the largest \
              last request memory and cpu, no process ids; `per-process`: also php-fpm_exporter's \
              per-child series (at most 1,000 children)",
        apply: |raw, c| parse_process_metrics(raw).map(|v| c.process_metrics = v) },
    Setting { var: "IDLE_EXIT", flag: "--idle-exit", default: "off",
        help: "exit 0 after this long without a connection (`30s`, `5m`), for systemd socket \
              activation; `off` or `0`: never",
        apply: |raw, c| parse_idle_exit(raw).map(|v| c.idle_exit = v) },
    Setting { var: "BUSY_GRACE", flag: "--busy-grace", default: "60s",
        help: "`/fcgi-live` (and `check --live` with `STATUS_LISTEN`): a busy pool (every worker \
              taken, connections queued) stays alive until it made no progress this long, then fails \
              `stuck`; more than `TIMEOUT`; `off`: busy fails liveness at once, as `/fcgi-ping`",
        apply: |raw, c| parse_busy_grace(raw).map(|v| c.busy_grace = v) },
    Setting { var: "RUST_LOG", flag: "--log-level", default: "info",
        help: "log level: `error`, `warn`, `info`, `debug`, `trace`, `off`, or `module=level` pairs, \
              comma-separated (`warn,fastcgi_healthcheck=debug`)",
        apply: |raw, c| parse_log(raw).map(|v| c.log = v) },
];

impl Config {
    /// The configuration before any setting applied: every field is then set by its row of
    /// [`SETTINGS`] (from a flag, a variable or the row's default), so none of these stays.
    fn unset() -> Self {
        Self {
            server: SocketAddr::from(([127, 0, 0, 1], 0)),
            destination: Destination::Unix(PathBuf::new()),
            pools: Pools::One,
            ping_path: String::new(),
            ping_response: String::new(),
            status_path: None,
            status_listen: None,
            process_metrics: ProcessMetrics::Off,
            timeout: Duration::ZERO,
            fail_status: 503,
            client_timeout: Duration::ZERO,
            max_connections: 1,
            coalesce: true,
            cache_ttl: Duration::ZERO,
            idle_exit: None,
            busy_grace: None,
            log: LogSpec {
                default: LevelFilter::Off,
                modules: Vec::new(),
            },
        }
    }
}

/// Where a raw value came from, so an error can name it.
#[derive(Clone, Copy)]
enum Given {
    Flag,
    Env,
    Default,
}

/// A setting's value as given, and where from.
struct Raw {
    value: String,
    given: Given,
    setting: &'static Setting,
}

impl Raw {
    /// The error for this value: `NAME="value" <what is wrong>`.
    fn error(&self, what: &str) -> ConfigError {
        let name = match self.given {
            Given::Flag => self.setting.flag,
            Given::Env | Given::Default => self.setting.var,
        };
        ConfigError(format!("{name}={:?} {what}", self.value))
    }
}

/// Parses the command line (without the program name) and the environment.
pub fn parse<E>(args: &[OsString], env: E) -> Result<Command, ConfigError>
where
    E: Fn(&str) -> Option<OsString>,
{
    let mut flags: [Option<String>; SETTINGS.len()] = Default::default();
    let check = args.first().is_some_and(|first| first == "check");
    let mut verbose = false;
    // The flag that asked for the status page (`--status` or the first threshold), as given.
    let mut status_flag: Option<&str> = None;
    let mut verbose_flag: Option<&str> = None;
    let mut live = false;
    let mut status: Option<Vec<Threshold>> = None;
    let mut pool: Option<String> = None;
    let mut args = args.iter().skip(usize::from(check));
    while let Some(arg) = args.next() {
        let arg = arg
            .to_str()
            .ok_or_else(|| ConfigError(format!("argument {arg:?} is not valid UTF-8")))?;
        match arg {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "-v" | "--verbose" if check => {
                verbose = true;
                verbose_flag.get_or_insert(arg);
                continue;
            }
            "--live" if check => {
                live = true;
                continue;
            }
            "--status" if check => {
                status.get_or_insert_with(Vec::new);
                status_flag.get_or_insert(arg);
                continue;
            }
            _ => {}
        }
        if check && (arg == "--pool" || arg.starts_with("--pool=")) {
            let value = match arg.strip_prefix("--pool=") {
                Some(value) => Some(value.to_owned()),
                None => args.next().and_then(|v| v.to_str()).map(str::to_owned),
            };
            pool = Some(value.filter(|v| !v.is_empty()).ok_or_else(|| {
                ConfigError("--pool needs the name of a pool of POOLS".to_owned())
            })?);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (arg, None),
        };
        let Some(index) = SETTINGS.iter().position(|s| s.flag == name) else {
            if let Some(threshold) = name
                .strip_prefix("--")
                .filter(|_| check)
                .and_then(threshold_flag)
            {
                let value = match inline {
                    Some(value) => value,
                    None => args
                        .next()
                        .and_then(|v| v.to_str())
                        .map(str::to_owned)
                        .unwrap_or_default(),
                };
                let threshold = status::parse_threshold(&threshold, &value)
                    .map_err(|e| ConfigError(format!("--{e}")))?;
                status.get_or_insert_with(Vec::new).push(threshold);
                status_flag.get_or_insert(name);
                continue;
            }
            return Err(ConfigError(format!(
                "unknown argument {arg:?}; run with --help for the list of flags"
            )));
        };
        let value = match inline {
            Some(value) => value,
            None => args
                .next()
                .and_then(|v| v.to_str())
                .map(str::to_owned)
                .ok_or_else(|| ConfigError(format!("{name} needs a value (UTF-8)")))?,
        };
        if let Some(slot) = flags.get_mut(index) {
            *slot = Some(value);
        }
    }

    let flagged = flags.each_ref().map(Option::is_some);
    let mut config = Config::unset();
    let mut destination_given = None;
    for (setting, flag) in SETTINGS.iter().zip(flags) {
        let (value, given) = match (flag, env(setting.var)) {
            (Some(value), _) => (value, Given::Flag),
            (None, Some(value)) => match value.into_string() {
                Ok(value) => (value, Given::Env),
                Err(value) => {
                    return Err(ConfigError(format!(
                        "{}={value:?} is not valid UTF-8",
                        setting.var
                    )))
                }
            },
            (None, None) => (setting.default.to_owned(), Given::Default),
        };
        let raw = Raw {
            value,
            given,
            setting,
        };
        if setting.var == "DESTINATION" && !matches!(given, Given::Default) {
            destination_given = Some(raw.value.clone());
        }
        (setting.apply)(&raw, &mut config)?;
    }
    if let (Some(destination), false) = (&destination_given, config.pools == Pools::One) {
        return Err(ConfigError(format!(
            "POOLS and DESTINATION={destination:?} both name the FastCGI server: POOLS lists every \
             pool (name=/path.sock or name=host:port), so unset DESTINATION (or unset POOLS)"
        )));
    }
    if !config.coalesce && config.pools != Pools::One {
        // Each request asking every pool would open one FastCGI connection per pool.
        return Err(ConfigError(
            "COALESCE=off asks one FastCGI request per probe, but with POOLS a request for every \
             pool would open one per pool per connection: set COALESCE=on (or unset POOLS)"
                .to_owned(),
        ));
    }
    // Liveness (the server's /fcgi-live, check --live) waits BUSY_GRACE for progress after a
    // probe timed out at TIMEOUT; the other checks do not read BUSY_GRACE.
    let liveness = !check || live;
    if let Some(grace) = config
        .busy_grace
        .filter(|g| liveness && *g <= config.timeout)
    {
        return Err(ConfigError(format!(
            "BUSY_GRACE={grace:?} must be longer than TIMEOUT={:?}: a busy pool is alive until it \
             made no progress for BUSY_GRACE, which a probe that waits TIMEOUT cannot see; raise \
             BUSY_GRACE (default 60s), or set BUSY_GRACE=off",
            config.timeout
        )));
    }
    if pool.is_some() && config.pools == Pools::One {
        return Err(ConfigError(
            "--pool names a pool of POOLS, but POOLS is not set (one pool: DESTINATION)".to_owned(),
        ));
    }
    if !config.coalesce && !config.cache_ttl.is_zero() {
        // The cache keeps the verdict of a shared probe; COALESCE=off shares nothing.
        return Err(ConfigError(format!(
            "CACHE_TTL={:?} reuses verdicts, but COALESCE=off asks for one FastCGI request per \
             probe; set one of them back (COALESCE=on, or CACHE_TTL=0)",
            config.cache_ttl
        )));
    }
    if check {
        let mode = CheckMode {
            live,
            status: status_flag,
            verbose: verbose_flag.filter(|_| config.pools == Pools::One || pool.is_some()),
            lanes: match &config.pools {
                Pools::One => config.status_listen.is_some(),
                Pools::Named(named) => named.iter().any(|(_, at)| at.lane.is_some()),
                Pools::Dir(_) => true,
            },
        };
        let unread = SETTINGS
            .iter()
            .zip(flagged)
            .filter(|(_, flagged)| *flagged)
            .find_map(|(setting, _)| mode.unread(setting.var).map(|why| (setting.flag, why)));
        if let Some((flag, why)) = mode.unused_flag().or(unread) {
            return Err(ConfigError(format!(
                "{flag} is ignored by {}: {why}; drop it",
                mode.name()
            )));
        }
    }
    Ok(if check {
        let logs = env("RUST_LOG").is_some()
            || SETTINGS
                .iter()
                .zip(flagged)
                .any(|(setting, flagged)| flagged && setting.var == "RUST_LOG");
        Command::Check {
            config,
            verbose,
            live,
            status,
            pool,
            logs,
        }
    } else {
        Command::Serve(config)
    })
}

/// The mode of `check` asked for, and the flags that chose it, to refuse what it would ignore.
struct CheckMode<'a> {
    /// `--live`.
    live: bool,
    /// `--status` or the first threshold flag, as given.
    status: Option<&'a str>,
    /// `-v` or `--verbose` as given; `None` when every pool of `POOLS` is asked (no `--pool`),
    /// where `-v` prints each pool's line in every mode.
    verbose: Option<&'a str>,
    /// Whether a status lane may be read (`STATUS_LISTEN`, a pool's `+lane`, or `dir:`'s
    /// `NAME.status.sock`): `--live` reads its page, at `STATUS_PATH`.
    lanes: bool,
}

impl CheckMode<'_> {
    /// The mode's name, as the command line spells it.
    fn name(&self) -> &'static str {
        match (self.live, self.status) {
            (true, _) => "check --live",
            (false, Some(_)) => "check --status",
            (false, None) => "check",
        }
    }

    /// A flag of `check` itself that this mode ignores, and why.
    fn unused_flag(&self) -> Option<(&str, &'static str)> {
        if !self.live {
            return None;
        }
        if let Some(flag) = self.status {
            return Some((
                flag,
                "the status page and its thresholds are check --status's, a probe of its own \
                 (run it separately)",
            ));
        }
        self.verbose
            .map(|flag| (flag, "it prints no FastCGI answer"))
    }

    /// Why this mode does not read the setting `var`, if it does not. A flag for it is refused,
    /// since a deadline or threshold silently ignored reads as one that holds. Variables are not
    /// refused: the environment is the server's too.
    fn unread(&self, var: &str) -> Option<&'static str> {
        let status = self.status.is_some();
        // Whether the status page is read: by --status, or by --live through a lane.
        let page = status || (self.live && self.lanes);
        match var {
            "SERVER" | "CLIENT_TIMEOUT" | "MAX_CONNECTIONS" | "IDLE_EXIT" => {
                Some("it is for the HTTP server, and check serves no HTTP")
            }
            "FAIL_STATUS" => Some("check answers with its exit status (1: unhealthy), not HTTP"),
            "COALESCE" | "CACHE_TTL" => {
                Some("it shares probes among HTTP requests, and check makes one")
            }
            "PROCESS_METRICS" => {
                Some("it chooses what /metrics reads, and check serves no /metrics")
            }
            "BUSY_GRACE" if !self.live => Some("only check --live waits for a busy pool"),
            "STATUS_PATH" if !page => Some(
                "only check --status reads the status page, and check --live through a status \
                 lane (STATUS_LISTEN)",
            ),
            "STATUS_LISTEN" if !status && !self.live => {
                Some("only check --status and check --live read the status lane")
            }
            "PING_PATH" | "PING_RESPONSE" if status => {
                Some("it reads the status page (STATUS_PATH), not the ping")
            }
            _ => None,
        }
    }
}

/// The threshold name of a `check` flag without its dashes: `max-listen-queue` and `min-...` as
/// they are; a bare field (`listen-queue`, php-fpm-healthcheck's style) means `max-`.
fn threshold_flag(flag: &str) -> Option<String> {
    if flag.starts_with("max-") || flag.starts_with("min-") {
        return Some(flag.to_owned());
    }
    let field = flag.replace('-', " ");
    status::NUMERIC_FIELDS
        .contains(&field.as_str())
        .then(|| format!("max-{flag}"))
}

fn parse_server(raw: &Raw) -> Result<SocketAddr, ConfigError> {
    raw.value.trim().parse().map_err(|_| {
        raw.error("is not an address:port to listen on (examples: 127.0.0.1:8080, 0.0.0.0:8080, [::]:8080)")
    })
}

/// The destination; a TCP one with port 0 until `DESTINATION_PORT` sets it.
fn parse_destination(raw: &Raw) -> Result<Destination, ConfigError> {
    let port = 0;
    let value = raw.value.trim();
    if let Some(path) = value.strip_prefix("unix:") {
        return unix_path(raw, path);
    }
    if value.starts_with('/') {
        return unix_path(raw, value);
    }
    let host = parse_host(value).ok_or_else(|| {
        if value.contains(':') && value.rsplit_once(':').is_some_and(|(h, p)| parse_host(h).is_some() && p.parse::<u16>().is_ok()) {
            raw.error("has a port in it; put the host in DESTINATION and the port in DESTINATION_PORT")
        } else {
            raw.error("is not a host name, an IP address, or a Unix socket path (/run/php/php-fpm.sock or unix:/run/php/php-fpm.sock)")
        }
    })?;
    Ok(Destination::Tcp { host, port })
}

/// Parses a host name, an IP address, or a bracketed IPv6 address.
pub fn parse_host(value: &str) -> Option<Host> {
    let unbracketed = value.strip_prefix('[').and_then(|v| v.strip_suffix(']'));
    if let Some(inner) = unbracketed {
        return inner
            .parse::<std::net::Ipv6Addr>()
            .ok()
            .map(|ip| Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    let name = value.strip_suffix('.').unwrap_or(value);
    (!name.is_empty() && name.len() <= 253 && name.split('.').all(valid_label))
        .then(|| Host::Name(value.to_owned()))
}

/// The longest path a Unix socket address holds (`sun_path` is 108 bytes with the final NUL).
const MAX_UNIX_PATH: usize = 107;

fn unix_path(raw: &Raw, path: &str) -> Result<Destination, ConfigError> {
    if !path.starts_with('/') {
        return Err(raw.error("is not an absolute Unix socket path (unix:/run/php/php-fpm.sock)"));
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(raw.error(&format!(
            "is longer than the {MAX_UNIX_PATH} bytes a Unix socket path may have"
        )));
    }
    Ok(Destination::Unix(PathBuf::from(path)))
}

/// `POOLS`: `off`, `dir:/path`, or `name=destination,...` where a destination is a socket path
/// (`/path`, `unix:/path`), `host:port`, `[v6]:port`, or a host alone on `DESTINATION_PORT`
/// (`default`'s port), optionally followed by `+` and the pool's status lane (see
/// [`lane_destination`]).
fn parse_pools(raw: &Raw, default: &Destination) -> Result<Pools, ConfigError> {
    let value = raw.value.trim();
    if value == "off" {
        return Ok(Pools::One);
    }
    if let Some(dir) = value.strip_prefix("dir:") {
        if !dir.starts_with('/') {
            return Err(raw.error("names a directory that is not absolute (dir:/run/php)"));
        }
        return Ok(Pools::Dir(PathBuf::from(dir)));
    }
    let default_port = match default {
        Destination::Tcp { port, .. } => *port,
        Destination::Unix(_) => 9000,
    };
    let mut pools: Vec<(String, Listeners)> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let Some((name, destination)) = entry.split_once('=') else {
            return Err(raw.error(&format!(
                "has {entry:?} without a name: write name=/run/php/name.sock or name=host:port, \
                 separated by commas (or dir:/run/php, or off)"
            )));
        };
        let name = name.trim();
        if !pool_name_ok(name) {
            return Err(raw.error(&format!(
                "has the pool name {name:?}: a name is 1 to {MAX_POOL_NAME} letters, digits, _, - or ."
            )));
        }
        if pools.iter().any(|(known, _)| known == name) {
            return Err(raw.error(&format!("names the pool {name:?} twice")));
        }
        let (destination, lane) = match destination.split_once('+') {
            Some((destination, lane)) => (destination, Some(lane.trim())),
            None => (destination, None),
        };
        let main = pool_destination(destination.trim(), default_port).ok_or_else(|| {
            raw.error(&format!(
                "has {entry:?}, whose destination is not /path.sock, unix:/path, host:port, \
                 [IPv6]:port or a host"
            ))
        })?;
        let lane = match lane {
            Some(lane) => Some(lane_destination(lane, &main).ok_or_else(|| {
                raw.error(&format!(
                    "has {entry:?}, whose status lane (after +) is not php-fpm's \
                     pm.status_listen: /path.sock, unix:/path, host:port, [IPv6]:port or a port \
                     (www=/run/php/www.sock+/run/php/www.status.sock)"
                ))
            })?),
            None => None,
        };
        pools.push((name.to_owned(), Listeners { main, lane }));
    }
    if pools.len() > MAX_POOLS {
        return Err(raw.error(&format!(
            "lists {} pools; at most {MAX_POOLS} are probed by one process: run another",
            pools.len()
        )));
    }
    pools.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Pools::Named(pools))
}

/// One destination of `POOLS`, or `None` if it is none of the forms.
fn pool_destination(value: &str, default_port: u16) -> Option<Destination> {
    let path = value.strip_prefix("unix:").unwrap_or(value);
    if path.starts_with('/') {
        return (path.len() <= MAX_UNIX_PATH).then(|| Destination::Unix(PathBuf::from(path)));
    }
    if let Some(host) = parse_host(value) {
        return Some(Destination::Tcp {
            host,
            port: default_port,
        });
    }
    let (host, port) = value.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    Some(Destination::Tcp {
        host: parse_host(host)?,
        port,
    })
}

/// `STATUS_LISTEN`: `off`, or the status lane of `DESTINATION`'s pool (see
/// [`lane_destination`]); with `POOLS` each pool names its own lane there.
fn parse_status_listen(raw: &Raw, config: &Config) -> Result<Option<Destination>, ConfigError> {
    let value = raw.value.trim();
    if value == "off" {
        return Ok(None);
    }
    if config.pools != Pools::One {
        return Err(raw.error(
            "is the status lane of DESTINATION's pool, but POOLS is set: name each pool's lane \
             in POOLS after a + (www=/run/php/www.sock+/run/php/www.status.sock), or let dir: \
             pair NAME.status.sock with NAME.sock",
        ));
    }
    lane_destination(value, &config.destination)
        .map(Some)
        .ok_or_else(|| {
            raw.error(
                "is not php-fpm's pm.status_listen: host:port, [IPv6]:port, a port, or a Unix \
                 socket path (examples: 127.0.0.1:9001, 9001, /run/php/status.sock; off: none)",
            )
        })
}

/// A status lane as php-fpm's `pm.status_listen` takes it: `host:port`, `[v6]:port`, a Unix
/// socket path (`/path`, or `unix:/path` as `DESTINATION` takes it), or a port alone. php-fpm
/// listens on a port alone at every address of its host (IPv6 and IPv4-mapped), so from here it
/// is that port on `main`'s host (127.0.0.1 when `main` is a Unix socket). Never `main`'s port:
/// the lane is a listener of its own. `None` if it is none of the forms.
fn lane_destination(value: &str, main: &Destination) -> Option<Destination> {
    let path = value.strip_prefix("unix:").unwrap_or(value);
    if path.starts_with('/') {
        return (path.len() <= MAX_UNIX_PATH).then(|| Destination::Unix(PathBuf::from(path)));
    }
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    let port = |text: &str| text.parse::<u16>().ok().filter(|p| *p != 0 && digits(text));
    if digits(value) {
        let host = match main {
            Destination::Tcp { host, .. } => host.clone(),
            Destination::Unix(_) => Host::Ip(IpAddr::from([127, 0, 0, 1])),
        };
        return Some(Destination::Tcp {
            host,
            port: port(value)?,
        });
    }
    let (host, port_text) = value.rsplit_once(':')?;
    // An IPv6 address is bracketed: `::1:9001` would be ambiguous.
    if host.contains(':') && !host.starts_with('[') {
        return None;
    }
    Some(Destination::Tcp {
        host: parse_host(host)?,
        port: port(port_text)?,
    })
}

fn parse_port(raw: &Raw) -> Result<u16, ConfigError> {
    match raw.value.trim().parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(raw.error("is not a port number (1-65535)")),
    }
}

fn parse_ping_path(raw: &Raw) -> Result<String, ConfigError> {
    let path = raw.value.as_str();
    if !path.starts_with('/') {
        return Err(raw.error("must start with / (php-fpm's ping.path, e.g. /fpm-ping)"));
    }
    if path.len() > MAX_CONFIG_TEXT {
        return Err(raw.error(&format!("is longer than {MAX_CONFIG_TEXT} bytes")));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(raw.error("contains spaces or control characters"));
    }
    Ok(path.to_owned())
}

fn parse_status_path(raw: &Raw) -> Result<Option<String>, ConfigError> {
    if raw.value.trim() == "off" {
        return Ok(None);
    }
    parse_ping_path(raw).map(Some)
}

fn parse_ping_response(raw: &Raw) -> Result<String, ConfigError> {
    if raw.value.len() > MAX_CONFIG_TEXT {
        return Err(raw.error(&format!("is longer than {MAX_CONFIG_TEXT} bytes")));
    }
    Ok(raw.value.clone())
}

fn parse_fail_status(raw: &Raw) -> Result<u16, ConfigError> {
    match raw.value.trim().parse::<u16>() {
        Ok(status) if (400..=599).contains(&status) => Ok(status),
        _ => Err(raw
            .error("is not an HTTP error status (400-599, e.g. 503, or 404 as the original tool)")),
    }
}

/// Most connections we let anyone configure; each holds a file descriptor.
const MAX_MAX_CONNECTIONS: usize = 1 << 20;

fn parse_max_connections(raw: &Raw) -> Result<usize, ConfigError> {
    match raw.value.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(raw.error(&format!(
            "is not a connection count (1-{MAX_MAX_CONNECTIONS})"
        ))),
    }
}

fn parse_process_metrics(raw: &Raw) -> Result<ProcessMetrics, ConfigError> {
    match raw.value.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(ProcessMetrics::Off),
        "aggregates" => Ok(ProcessMetrics::Aggregates),
        "per-process" => Ok(ProcessMetrics::PerProcess),
        _ => Err(raw.error("is not off, aggregates or per-process")),
    }
}

fn parse_switch(raw: &Raw) -> Result<bool, ConfigError> {
    match raw.value.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(raw.error("is not on or off")),
    }
}

fn parse_idle_exit(raw: &Raw) -> Result<Option<Duration>, ConfigError> {
    if matches!(raw.value.trim(), "off" | "") {
        return Ok(None);
    }
    let span = setting_duration(raw, true, "off, 0 or a duration", "30s, 5m")?;
    Ok((!span.is_zero()).then_some(span))
}

fn parse_busy_grace(raw: &Raw) -> Result<Option<Duration>, ConfigError> {
    if raw.value.trim() == "off" {
        return Ok(None);
    }
    setting_duration(raw, false, "off or a duration", "60s, 5m, off").map(Some)
}

fn parse_ttl(raw: &Raw) -> Result<Duration, ConfigError> {
    setting_duration(raw, true, "0 or a duration", "0, 250ms, 2s")
}

fn parse_duration_setting(raw: &Raw) -> Result<Duration, ConfigError> {
    setting_duration(raw, false, "a duration", "500ms, 2s, 1m")
}

/// The largest bare number a duration setting takes: a bare number is seconds, and
/// `TIMEOUT=800` meant 800 ms far more often than 13 minutes, so above this a unit is required.
const MAX_BARE_SECONDS: u64 = 60;

/// The value of a duration setting: the one reading behind every one of them. `zero` says
/// whether `0` is accepted; `what` and `examples` word the error, which always says what a bare
/// number means. A bare number above [`MAX_BARE_SECONDS`] is refused with the two spellings it
/// may have meant.
fn setting_duration(
    raw: &Raw,
    zero: bool,
    what: &str,
    examples: &str,
) -> Result<Duration, ConfigError> {
    let text = raw.value.trim();
    let span = parse_span(text);
    let bare = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if bare && span.is_none_or(|span| span > Duration::from_secs(MAX_BARE_SECONDS)) {
        let meant: Vec<String> = ["ms", "s"]
            .iter()
            .map(|unit| format!("{text}{unit}"))
            .filter(|spelled| parse_span(spelled).is_some())
            .collect();
        if !meant.is_empty() {
            return Err(raw.error(&format!(
                "is {text} seconds: a bare number means seconds, at most {MAX_BARE_SECONDS}; \
                 write {}",
                meant.join(" or ")
            )));
        }
    }
    span.filter(|span| (zero && span.is_zero()) || *span >= MIN_DURATION)
        .ok_or_else(|| {
            raw.error(&format!(
                "is not {what} between 1ms and 1h (examples: {examples}; a bare number means \
                 seconds, at most {MAX_BARE_SECONDS})"
            ))
        })
}

/// Shortest accepted duration other than zero.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// Longest accepted duration.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Parses `500ms`, `2s`, `1.5s`, `1m`, or a bare number of seconds (`2`, `0.5`).
/// Accepts 1 ms to 1 h; anything else is `None`. Exact decimal arithmetic (no floating point):
/// `0.001` is exactly 1 ms; digits below a nanosecond are dropped. The settings take a bare
/// number up to a minute only ([`setting_duration`]); php-fpm-healthcheck's `--timeout` is
/// seconds by that interface.
pub fn parse_duration(text: &str) -> Option<Duration> {
    parse_span(text).filter(|span| *span >= MIN_DURATION)
}

/// As [`parse_duration`], but zero (`0`, `0s`, `0ms`, `0.0m`) is accepted too: the one parser
/// behind every duration setting, so that they all read the same text the same way. A number
/// is required: a unit alone (`ms`, `s`, `.`) is `None`.
fn parse_span(text: &str) -> Option<Duration> {
    const NANOS_PER_MS: u128 = 1_000_000;
    let text = text.trim();
    let (number, unit_nanos) = if let Some(n) = text.strip_suffix("ms") {
        (n, NANOS_PER_MS)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1_000 * NANOS_PER_MS)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60_000 * NANOS_PER_MS)
    } else {
        (text, 1_000 * NANOS_PER_MS)
    };
    let number = number.trim();
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return None;
    }
    // More than 12 significant whole digits is beyond an hour in any unit; fraction digits past
    // the 18th are below a nanosecond for every unit.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 12 {
        return None;
    }
    let fraction = fraction.get(..18).unwrap_or(fraction);
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let (numerator, scale) = if fraction.is_empty() {
        (0, 1)
    } else {
        let exponent = u32::try_from(fraction.len()).ok()?;
        (
            fraction.parse::<u128>().ok()?,
            10u128.checked_pow(exponent)?,
        )
    };
    let nanos = whole
        .checked_mul(unit_nanos)?
        .checked_add(numerator.checked_mul(unit_nanos)?.checked_div(scale)?)?;
    let duration = Duration::from_nanos(u64::try_from(nanos).ok()?);
    (duration <= MAX_DURATION).then_some(duration)
}

fn parse_log(raw: &Raw) -> Result<LogSpec, ConfigError> {
    parse_log_spec(&raw.value).ok_or_else(|| {
        raw.error("is not a log level (error, warn, info, debug, trace, off; or module=level, comma-separated)")
    })
}

/// Parses `info`, `debug`, or `warn,fastcgi_client=debug`.
pub fn parse_log_spec(text: &str) -> Option<LogSpec> {
    let mut spec = LogSpec {
        default: LevelFilter::Info,
        modules: Vec::new(),
    };
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((module, level)) => {
                let module = module.trim().replace('-', "_");
                if module.is_empty() {
                    return None;
                }
                spec.modules.push((module, level.trim().parse().ok()?));
            }
            None => spec.default = part.parse().ok()?,
        }
    }
    Some(spec)
}

/// The endpoints: the request and its answer, as the README's table has them (a test compares
/// them) and `--help` prints them. One line of Markdown each: code in backquotes, no `|`.
pub const ENDPOINTS: [(&str, &str); 8] = [
    (
        "`GET` or `HEAD /fcgi-ping`",
        "readiness: one FastCGI request to `PING_PATH`: `200` body `ok`; or `FAIL_STATUS` with a \
         one-line body `reason: detail` (`busy` at once when every worker is taken)",
    ),
    (
        "`GET` or `HEAD /fcgi-live`",
        "liveness: the same probe (shared with `/fcgi-ping`), but a busy pool is alive: `200` \
         while php-fpm's listener accepts and the pool made progress within `BUSY_GRACE`; \
         `FAIL_STATUS` at once when php-fpm is dead (`connect_refused`, `connect_failed`, \
         `resolve_failed`, a broken answer), and `stuck` when nothing moved for `BUSY_GRACE` \
         while connections waited",
    ),
    (
        "`GET` or `HEAD /fcgi-status?max-listen-queue=10&min-idle-processes=1`",
        "php-fpm's status page (`STATUS_PATH`) and thresholds on it: `200`, or `FAIL_STATUS` \
         with the failed thresholds first; `404` with `STATUS_PATH=off`",
    ),
    (
        "`GET` or `HEAD /metrics`",
        "Prometheus text: probe results, durations, coalescing, connections, and php-fpm's pool \
         figures (`phpfpm_*`)",
    ),
    (
        "`GET` or `HEAD /fcgi-ping/NAME`, `/fcgi-live/NAME`, `/fcgi-status/NAME`",
        "with `POOLS`: that pool, as above; without a name, every pool: one line per failing \
         pool, `NAME reason: detail`; an unknown name is `404` naming the known pools",
    ),
    (
        "`GET` or `HEAD /health`, `/healthz`, `/`",
        "`200` body `ok`: this process is alive (no FastCGI)",
    ),
    ("any other path", "`404`"),
    (
        "another method on a known path",
        "`405` with `Allow: GET, HEAD`",
    ),
];

/// The exit codes: the code, what it means while serving, and for `check`, as the README's
/// table has them (a test compares them) and `--help` prints them.
pub const EXIT_CODES: [(&str, &str, &str); 3] = [
    (
        "0",
        "stopped by SIGTERM or SIGINT (answers in progress get `TIMEOUT` + 1 s; a second signal \
         ends it at once), or by `IDLE_EXIT`; `--help`, `--version`",
        "healthy (`ok` on stdout)",
    ),
    (
        "1",
        "cannot listen on `SERVER`, or the socket inherited from systemd (`LISTEN_FDS`) fails \
         (the message names it and the OS error)",
        "unhealthy: one line on stderr, `reason: detail` as in the HTTP body (with `POOLS`: one \
         per failing pool, `NAME reason: detail`)",
    ),
    (
        "2",
        "invalid flag or setting, or a wrong `LISTEN_PID` or `LISTEN_FDS` (the message names it \
         and the accepted form)",
        "the same; a flag the mode ignores (`check --live --min-idle-processes 5`); `--status` \
         with `STATUS_PATH=off`; a `--pool` that names no pool",
    ),
];

/// Width of `--help`'s wrapped text (its usage lines may be longer).
const HELP_WIDTH: usize = 100;

/// Appends `body` to `text`, wrapped at [`HELP_WIDTH`] after `indent`, words kept whole.
fn push_wrapped(text: &mut String, indent: &str, body: &str) {
    let mut width = 0usize;
    for word in body.split(' ') {
        if width == 0 {
            text.push_str(indent);
            width = indent.len();
        } else if width.saturating_add(1).saturating_add(word.len()) > HELP_WIDTH {
            text.push('\n');
            text.push_str(indent);
            width = indent.len();
        } else {
            text.push(' ');
            width = width.saturating_add(1);
        }
        text.push_str(word);
        width = width.saturating_add(word.len());
    }
    text.push('\n');
}

/// The manual printed by `--help`, and through it the man page (scripts/debian/manpage): the
/// settings, endpoints and exit codes from their tables, the README's tables' words.
pub fn help() -> String {
    const INDENT: &str = "        ";
    let mut text = format!(
        "fastcgi-healthcheck {version}\n\
         Answers HTTP health probes by pinging a FastCGI server (php-fpm).\n\n\
         USAGE:\n    fastcgi-healthcheck [--flag value]...            serve HTTP probes\n\
         \x20   fastcgi-healthcheck check [-v] [--flag value]... probe once: exit 0 healthy, 1 unhealthy\n\
         \x20   fastcgi-healthcheck php-fpm-healthcheck [-v] [--<field>=N]... php-fpm-healthcheck's interface (also by that name)\n\n\
         SETTINGS (environment variable, flag, default; a flag wins over the variable):\n",
        version = env!("CARGO_PKG_VERSION")
    );
    for s in &SETTINGS {
        text.push_str(&format!("    {:<17} {:<19} {}\n", s.var, s.flag, s.default));
        push_wrapped(&mut text, INDENT, s.help);
    }
    text.push_str("\nENDPOINTS:\n");
    for (request, answer) in &ENDPOINTS {
        push_wrapped(&mut text, "    ", request);
        push_wrapped(&mut text, INDENT, answer);
    }
    text.push_str(
        "\nCHECK (one probe; the settings above, as flags or variables):\n\
         \x20   check [-v]                   the ping: exit 0 healthy, 1 unhealthy (the reason on stderr)\n\
         \x20   check --live                 liveness within TIMEOUT: 0 healthy or busy, 1 dead (stuck needs\n\
         \x20                                STATUS_LISTEN: one probe has no history)\n\
         \x20   check --status [--max-<field> N] [--min-<field> N] [--<field> N]\n\
         \x20                                the status page against thresholds (--<field>: maximum)\n\
         \x20   check --pool NAME            with POOLS: that pool only (else every pool)\n\
         \x20   A flag the mode does not read is refused (exit 2): check --live takes no threshold.\n\n\
         EXIT CODES:\n",
    );
    for (code, serving, check) in &EXIT_CODES {
        text.push_str(&format!("    {code}\n"));
        push_wrapped(&mut text, INDENT, &format!("serving: {serving}"));
        push_wrapped(&mut text, INDENT, &format!("check: {check}"));
    }
    text.push_str(
        "\nphp-fpm needs `ping.path = /fpm-ping` (and optionally `ping.response = pong`) in the pool.\n",
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Command, ConfigError> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        parse(&args, |name| env.get(name).cloned())
    }

    fn config(args: &[&str], env: &[(&str, &str)]) -> Config {
        match run(args, env) {
            Ok(Command::Serve(config)) => config,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn error(args: &[&str], env: &[(&str, &str)]) -> String {
        match run(args, env) {
            Err(ConfigError(message)) => message,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_match_the_original_tool() {
        let c = config(&[], &[]);
        assert_eq!(c.server, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.destination.to_string(), "127.0.0.1:9000");
        assert_eq!(c.ping_path, "/fpm-ping");
        assert_eq!(c.ping_response, "pong");
        assert_eq!(c.timeout, Duration::from_millis(800));
        assert!(c.timeout < Duration::from_secs(1));
        assert_eq!(c.fail_status, 503);
        assert_eq!(c.log.default, LevelFilter::Info);
    }

    #[test]
    fn flags_win_over_environment() {
        let c = config(
            &["--destination-port", "9001", "--timeout=2s"],
            &[("DESTINATION_PORT", "9002"), ("TIMEOUT", "1s")],
        );
        assert_eq!(c.destination.to_string(), "127.0.0.1:9001");
        assert_eq!(c.timeout, Duration::from_secs(2));
    }

    #[test]
    fn destinations() {
        let dest = |v: &str| config(&[], &[("DESTINATION", v)]).destination;
        assert_eq!(
            dest("/run/php/fpm.sock"),
            Destination::Unix("/run/php/fpm.sock".into())
        );
        assert_eq!(
            dest("unix:/run/php/fpm.sock"),
            Destination::Unix("/run/php/fpm.sock".into())
        );
        assert_eq!(dest("::1").to_string(), "[::1]:9000");
        assert_eq!(dest("[::1]").to_string(), "[::1]:9000");
        assert_eq!(
            dest("php-fpm.default.svc.cluster.local").to_string(),
            "php-fpm.default.svc.cluster.local:9000"
        );
        assert_eq!(
            dest("localhost"),
            Destination::Tcp {
                host: Host::Name("localhost".into()),
                port: 9000
            }
        );
    }

    #[test]
    fn invalid_values_name_their_variable() {
        for (var, value) in [
            ("DESTINATION_PORT", "abc"),
            ("DESTINATION_PORT", "0"),
            ("DESTINATION_PORT", "65536"),
            ("TIMEOUT", "soon"),
            ("TIMEOUT", "0"),
            ("TIMEOUT", "-1s"),
            ("TIMEOUT", "2h"),
            ("SERVER", "nowhere"),
            ("SERVER", "127.0.0.1"),
            ("FAIL_STATUS", "200"),
            ("FAIL_STATUS", "x"),
            ("PING_PATH", "fpm-ping"),
            ("PING_PATH", "/a b"),
            ("DESTINATION", "unix:relative.sock"),
            ("DESTINATION", "bad host!"),
            ("DESTINATION", ""),
            ("MAX_CONNECTIONS", "0"),
            ("CLIENT_TIMEOUT", "forever"),
            ("RUST_LOG", "loud"),
            ("COALESCE", "maybe"),
            ("CACHE_TTL", "a while"),
            ("IDLE_EXIT", "later"),
            ("PROCESS_METRICS", "on"),
        ] {
            let message = error(&[], &[(var, value)]);
            assert!(
                message.starts_with(&format!("{var}=")),
                "{var}={value}: {message}"
            );
        }
    }

    #[test]
    fn status_listen_takes_the_forms_of_pm_status_listen() {
        let lane = |env: &[(&str, &str)]| config(&[], env).status_listen.map(|d| d.to_string());
        assert_eq!(lane(&[]), None);
        assert_eq!(lane(&[("STATUS_LISTEN", "off")]), None);
        for (value, expected) in [
            ("127.0.0.1:9001", "127.0.0.1:9001"),
            ("[::1]:9001", "[::1]:9001"),
            ("php-fpm:9001", "php-fpm:9001"),
            ("/run/php/status.sock", "unix:/run/php/status.sock"),
            ("unix:/run/php/status.sock", "unix:/run/php/status.sock"),
            // A port alone is every address of php-fpm's host: DESTINATION's host.
            ("9001", "127.0.0.1:9001"),
        ] {
            assert_eq!(
                lane(&[("STATUS_LISTEN", value)]).as_deref(),
                Some(expected),
                "{value}"
            );
        }
        let env = [("DESTINATION", "php-fpm"), ("STATUS_LISTEN", " 9001 ")];
        assert_eq!(lane(&env).as_deref(), Some("php-fpm:9001"));
        let env = [
            ("DESTINATION", "/run/php/www.sock"),
            ("STATUS_LISTEN", "9001"),
        ];
        assert_eq!(lane(&env).as_deref(), Some("127.0.0.1:9001"));
        // Never DESTINATION_PORT: a host alone has no port.
        let env = [("DESTINATION_PORT", "9001"), ("STATUS_LISTEN", "127.0.0.1")];
        assert!(error(&[], &env).starts_with("STATUS_LISTEN=\"127.0.0.1\" is not php-fpm's"));
        for bad in [
            "",
            "0",
            "65536",
            "+9001",
            "127.0.0.1:",
            "127.0.0.1:0",
            "::1:9001",
            "[::1]",
            "bad host!:9001",
            "unix:relative.sock",
            "relative.sock",
        ] {
            let message = error(&[], &[("STATUS_LISTEN", bad)]);
            assert!(message.starts_with("STATUS_LISTEN="), "{bad}: {message}");
            assert!(message.contains("127.0.0.1:9001"), "{bad}: {message}");
        }
        let message = error(&["--status-listen", "x"], &[]);
        assert!(message.starts_with("--status-listen=\"x\""), "{message}");
        let message = error(
            &[],
            &[("POOLS", "www=/a.sock"), ("STATUS_LISTEN", "/b.sock")],
        );
        assert!(
            message.starts_with("STATUS_LISTEN=") && message.contains("www=/run/php/www.sock+"),
            "{message}"
        );
    }

    #[test]
    fn pools_name_their_lanes_after_a_plus() {
        let pools = |value: &str| match config(&[], &[("POOLS", value)]).pools {
            Pools::Named(named) => named,
            other => panic!("{value}: {other:?}"),
        };
        let named = pools("www=/run/php/www.sock+/run/php/www.status.sock,api=10.0.0.5:9000+9001,admin=127.0.0.1:9002");
        let shown: Vec<String> = named
            .iter()
            .map(|(name, at)| match &at.lane {
                Some(lane) => format!("{name} {} {lane}", at.main),
                None => format!("{name} {}", at.main),
            })
            .collect();
        assert_eq!(
            shown,
            [
                "admin 127.0.0.1:9002",
                "api 10.0.0.5:9000 10.0.0.5:9001",
                "www unix:/run/php/www.sock unix:/run/php/www.status.sock"
            ]
        );
        let named = pools("a=/a.sock+unix:/a.status.sock,b=[::1]:9000+[::1]:9001");
        assert_eq!(
            named[0].1.lane,
            Some(Destination::Unix("/a.status.sock".into()))
        );
        assert_eq!(
            named[1].1.lane.as_ref().map(ToString::to_string).as_deref(),
            Some("[::1]:9001")
        );
        for bad in [
            "www=/a.sock+",
            "www=/a.sock+relative",
            "www=/a.sock+0",
            "www=/a.sock+a.b:x",
        ] {
            let message = error(&[], &[("POOLS", bad)]);
            assert!(
                message.starts_with("POOLS=") && message.contains("status lane"),
                "{bad}: {message}"
            );
        }
    }

    #[test]
    fn process_metrics_values() {
        assert_eq!(config(&[], &[]).process_metrics, ProcessMetrics::Aggregates);
        for (value, expected) in [
            ("aggregates", ProcessMetrics::Aggregates),
            ("Per-Process", ProcessMetrics::PerProcess),
            (" off ", ProcessMetrics::Off),
        ] {
            let c = config(&[], &[("PROCESS_METRICS", value)]);
            assert_eq!(c.process_metrics, expected, "{value}");
        }
        let message = error(&["--process-metrics", "pids"], &[]);
        assert!(
            message.starts_with("--process-metrics=\"pids\" is not off, aggregates or per-process"),
            "{message}"
        );
    }

    #[test]
    fn a_port_in_destination_gets_a_hint() {
        let message = error(&[], &[("DESTINATION", "127.0.0.1:9000")]);
        assert!(message.contains("DESTINATION_PORT"), "{message}");
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let message = error(&["--timeout", "soon"], &[]);
        assert!(message.starts_with("--timeout="), "{message}");
        assert!(error(&["--bogus"], &[]).contains("--bogus"));
        assert!(error(&["--timeout"], &[]).contains("--timeout"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("0.001"), Some(Duration::from_millis(1)));
        assert_eq!(parse_duration(".25s"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2."), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5ms"), Some(Duration::from_micros(1500)));
        assert_eq!(parse_duration("0.5m"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("60m"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_duration("0000000000000002s"),
            Some(Duration::from_secs(2))
        );
        assert_eq!(parse_duration("0.0"), None);
        assert_eq!(
            parse_duration("1.0000000000000000000000001"),
            Some(Duration::from_secs(1))
        );
        for bad in [
            "",
            "s",
            "ms",
            "1e3",
            "NaN",
            "inf",
            "0",
            "0.0001",
            "-2",
            "1..2",
            "99999999999999999999999",
            ".",
            "1.2.3",
            "+1",
            "0.999ms",
            "60.001m",
            "3601",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    /// Every duration setting: `800` is 800 seconds, so above a minute a bare number is refused
    /// with the two spellings it may have meant, and every duration error says what a bare
    /// number means.
    #[test]
    fn a_bare_number_above_a_minute_needs_a_unit() {
        for var in [
            "TIMEOUT",
            "CLIENT_TIMEOUT",
            "CACHE_TTL",
            "IDLE_EXIT",
            "BUSY_GRACE",
        ] {
            assert_eq!(
                error(&[], &[(var, "800")]),
                format!(
                    "{var}=\"800\" is 800 seconds: a bare number means seconds, at most 60; \
                     write 800ms or 800s"
                )
            );
            // Beyond an hour in seconds: only the milliseconds are offered.
            let message = error(&[], &[(var, " 5000 ")]);
            assert!(message.ends_with("write 5000ms"), "{message}");
            assert!(error(&[], &[(var, "60.5")]).ends_with("write 60.5ms or 60.5s"));
            for bad in ["soon", "1.2.3", "99999999", "2h"] {
                let message = error(&[], &[(var, bad)]);
                assert!(
                    message.contains("a bare number means seconds, at most 60"),
                    "{var}={bad}: {message}"
                );
            }
        }
        let timeout = [
            ("TIMEOUT", "60"),
            ("CLIENT_TIMEOUT", "1.5"),
            ("BUSY_GRACE", "2m"),
        ];
        let c = config(&[], &timeout);
        assert_eq!(c.timeout, Duration::from_secs(60));
        assert_eq!(c.client_timeout, Duration::from_millis(1500));
        let c = config(&["--timeout", "800ms", "--idle-exit=800s"], &[]);
        assert_eq!(c.timeout, Duration::from_millis(800));
        assert_eq!(c.idle_exit, Some(Duration::from_secs(800)));
        assert!(error(&["--timeout", "800"], &[]).starts_with("--timeout=\"800\" is 800 seconds"));
        // php-fpm-healthcheck's --timeout is whole seconds by its own interface: not a setting.
        assert_eq!(parse_duration("800"), Some(Duration::from_secs(800)));
    }

    #[test]
    fn coalescing_settings() {
        let c = config(&[], &[]);
        assert!(c.coalesce);
        assert_eq!(c.cache_ttl, Duration::ZERO);
        let c = config(&["--coalesce=off"], &[]);
        assert!(!c.coalesce);
        let c = config(&[], &[("CACHE_TTL", "250ms")]);
        assert_eq!(c.cache_ttl, Duration::from_millis(250));
        // A cache without coalescing would be silently ignored: an error naming both.
        let error = error(&["--coalesce=off"], &[("CACHE_TTL", "250ms")]);
        assert!(
            error.contains("CACHE_TTL=250ms") && error.contains("COALESCE=off"),
            "{error}"
        );
        assert!(!config(&["--coalesce=off"], &[("CACHE_TTL", "0")]).coalesce);
        for zero in ["0", "0s", "0ms", "0.0"] {
            assert_eq!(
                config(&[], &[("CACHE_TTL", zero)]).cache_ttl,
                Duration::ZERO,
                "{zero}"
            );
        }
    }

    /// `0`, `0s` and `0ms` mean the same in every duration setting, and a unit without a number
    /// is an error that names the variable (never a silent default).
    #[test]
    fn zero_durations_agree_and_a_bare_unit_is_an_error() {
        for zero in ["0", "0s", "0ms", "0m", "0.0"] {
            assert_eq!(
                config(&[], &[("CACHE_TTL", zero)]).cache_ttl,
                Duration::ZERO,
                "{zero}"
            );
            assert_eq!(
                config(&[], &[("IDLE_EXIT", zero)]).idle_exit,
                None,
                "{zero}"
            );
            for var in ["TIMEOUT", "CLIENT_TIMEOUT"] {
                let message = error(&[], &[(var, zero)]);
                assert!(
                    message.starts_with(&format!("{var}=")),
                    "{var}={zero}: {message}"
                );
            }
        }
        for var in ["CACHE_TTL", "IDLE_EXIT", "TIMEOUT", "CLIENT_TIMEOUT"] {
            for bad in ["ms", "s", "m", ".", "mmm", ".ms", "m0", " s"] {
                let message = error(&[], &[(var, bad)]);
                assert!(
                    message.starts_with(&format!("{var}=")),
                    "{var}={bad}: {message}"
                );
            }
        }
    }

    #[test]
    fn log_specs() {
        let spec = parse_log_spec("warn,fastcgi-client=debug").unwrap();
        assert_eq!(spec.default, LevelFilter::Warn);
        assert_eq!(
            spec.modules,
            vec![("fastcgi_client".to_owned(), LevelFilter::Debug)]
        );
        assert_eq!(parse_log_spec("DEBUG").unwrap().default, LevelFilter::Debug);
        assert!(parse_log_spec("x=loud").is_none());
    }

    #[test]
    fn busy_grace_and_check_live() {
        assert_eq!(config(&[], &[]).busy_grace, Some(Duration::from_secs(60)));
        assert_eq!(config(&["--busy-grace", "off"], &[]).busy_grace, None);
        assert_eq!(
            config(&[], &[("BUSY_GRACE", "3s")]).busy_grace,
            Some(Duration::from_secs(3))
        );
        let short = [("BUSY_GRACE", "2s"), ("TIMEOUT", "2s")];
        let message = error(&[], &short);
        assert!(
            message.starts_with("BUSY_GRACE=2s must be longer than TIMEOUT=2s: "),
            "{message}"
        );
        assert!(error(&["check", "--live"], &short).starts_with("BUSY_GRACE=2s must be longer"));
        // A check that does not ask liveness does not read BUSY_GRACE.
        assert!(matches!(run(&["check"], &short), Ok(Command::Check { .. })));
        assert!(config(&[], &[("BUSY_GRACE", "off"), ("TIMEOUT", "1m")])
            .busy_grace
            .is_none());
        let message = error(&[], &[("BUSY_GRACE", "soon")]);
        assert!(message.starts_with("BUSY_GRACE=\"soon\" "), "{message}");
        assert!(message.contains("off"), "{message}");
        match run(&["check", "--live"], &[]) {
            Ok(Command::Check { live, status, .. }) => assert!(live && status.is_none()),
            other => panic!("expected check --live, got {other:?}"),
        }
        assert!(error(&["--live"], &[]).contains("--live"));
    }

    #[test]
    fn check_takes_the_same_settings_and_verbose() {
        match run(
            &["check", "-v", "--timeout", "2s"],
            &[("DESTINATION", "/run/php.sock")],
        ) {
            Ok(Command::Check {
                config, verbose, ..
            }) => {
                assert!(verbose);
                assert_eq!(config.timeout, Duration::from_secs(2));
                assert_eq!(config.destination.to_string(), "unix:/run/php.sock");
            }
            other => panic!("expected check, got {other:?}"),
        }
        assert!(
            error(&["-v"], &[]).contains("-v"),
            "verbose is for check only"
        );
        assert!(error(&["check", "--timeout", "soon"], &[]).starts_with("--timeout="));
    }

    /// A flag the chosen `check` mode would ignore is refused, naming it; the same settings
    /// from the environment (shared with the server) are not.
    #[test]
    fn check_refuses_what_its_mode_ignores() {
        for (args, flag, mode) in [
            (
                &["--live", "--min-idle-processes", "5"][..],
                "--min-idle-processes",
                "check --live",
            ),
            (&["--status", "--live"], "--status", "check --live"),
            (
                &["--live", "--listen-queue=1"],
                "--listen-queue",
                "check --live",
            ),
            (&["--live", "-v"], "-v", "check --live"),
            (&["--verbose", "--live"], "--verbose", "check --live"),
            (&["--server", "0.0.0.0:80"], "--server", "check"),
            (
                &["--live", "--fail-status=404"],
                "--fail-status",
                "check --live",
            ),
            (&["--client-timeout", "1s"], "--client-timeout", "check"),
            (&["--max-connections", "5"], "--max-connections", "check"),
            (&["--coalesce", "off"], "--coalesce", "check"),
            (
                &["--status", "--cache-ttl", "1s"],
                "--cache-ttl",
                "check --status",
            ),
            (&["--idle-exit", "1m"], "--idle-exit", "check"),
            (
                &["--process-metrics", "aggregates"],
                "--process-metrics",
                "check",
            ),
            (&["--busy-grace", "20s"], "--busy-grace", "check"),
            (
                &["--status", "--busy-grace=20s"],
                "--busy-grace",
                "check --status",
            ),
            (&["--status-path", "/status"], "--status-path", "check"),
            (
                &["--live", "--status-path", "/status"],
                "--status-path",
                "check --live",
            ),
            (&["--status-listen", "9001"], "--status-listen", "check"),
            (
                &["--status", "--ping-path", "/ping"],
                "--ping-path",
                "check --status",
            ),
            (
                &["--max-idle-processes=3", "--ping-response", "x"],
                "--ping-response",
                "check --status",
            ),
        ] {
            let mut all = vec!["check"];
            all.extend_from_slice(args);
            let message = error(&all, &[]);
            assert!(
                message.starts_with(&format!("{flag} is ignored by {mode}: "))
                    && message.ends_with("; drop it"),
                "{args:?}: {message}"
            );
        }
        for args in [
            &[
                "--live",
                "--busy-grace",
                "20s",
                "--ping-path",
                "/p",
                "--timeout=1s",
            ][..],
            &[
                "--status",
                "--status-path",
                "/s",
                "-v",
                "--max-listen-queue=1",
            ],
            &[
                "-v",
                "--ping-response",
                "pong",
                "--log-level",
                "debug",
                "--destination",
                "/x.sock",
            ],
            // The lane's page is read at STATUS_PATH by --live too.
            &[
                "--live",
                "--status-listen",
                "/x.status.sock",
                "--status-path",
                "/s",
            ],
            &["--status", "--status-listen", "9001"],
        ] {
            let mut all = vec!["check"];
            all.extend_from_slice(args);
            assert!(
                matches!(run(&all, &[]), Ok(Command::Check { .. })),
                "{args:?}"
            );
        }
        // Every pool's line is what -v prints with --live and POOLS (no --pool).
        let pools = [("POOLS", "a=/a.sock,b=/b.sock")];
        assert!(matches!(
            run(&["check", "--live", "-v"], &pools),
            Ok(Command::Check { .. })
        ));
        let message = error(&["check", "--live", "-v", "--pool", "a"], &pools);
        assert!(
            message.starts_with("-v is ignored by check --live"),
            "{message}"
        );
        // --live reads STATUS_PATH where a pool has a lane (after + in POOLS, or dir:'s).
        let live_path = ["check", "--live", "--status-path", "/s"];
        let message = error(&live_path, &pools);
        assert!(
            message.starts_with("--status-path is ignored by check --live"),
            "{message}"
        );
        for pools in ["a=/a.sock+/a.status.sock,b=/b.sock", "dir:/run/php"] {
            assert!(
                matches!(
                    run(&live_path, &[("POOLS", pools)]),
                    Ok(Command::Check { .. })
                ),
                "{pools}"
            );
        }
        // The environment is shared with the server: never refused.
        let env = [
            ("SERVER", "0.0.0.0:8080"),
            ("BUSY_GRACE", "20s"),
            ("STATUS_PATH", "/status"),
            ("FAIL_STATUS", "404"),
            ("IDLE_EXIT", "1m"),
        ];
        for args in [&["check"][..], &["check", "--live"], &["check", "--status"]] {
            assert!(
                matches!(run(args, &env), Ok(Command::Check { .. })),
                "{args:?}"
            );
        }
        // --log-level asks check for its probe logs, as RUST_LOG does.
        let logs = |args: &[&str], env: &[(&str, &str)]| match run(args, env) {
            Ok(Command::Check { logs, .. }) => logs,
            other => panic!("expected check, got {other:?}"),
        };
        assert!(!logs(&["check"], &[]));
        assert!(logs(&["check", "--log-level", "debug"], &[]));
        assert!(logs(&["check"], &[("RUST_LOG", "warn")]));
    }

    #[test]
    fn check_status_thresholds() {
        match run(
            &[
                "check",
                "--status",
                "--max-listen-queue",
                "10",
                "--min-idle-processes=1",
                "--accepted-conn=5",
            ],
            &[],
        ) {
            Ok(Command::Check {
                status: Some(t), ..
            }) => {
                let shown: Vec<String> = t
                    .iter()
                    .map(|t| format!("{:?} {} {}", t.kind, t.field, t.limit))
                    .collect();
                assert_eq!(
                    shown,
                    [
                        "Max listen queue 10",
                        "Min idle processes 1",
                        "Max accepted conn 5"
                    ]
                );
            }
            other => panic!("expected check --status, got {other:?}"),
        }
        assert!(
            matches!(run(&["check", "--status"], &[]), Ok(Command::Check { status: Some(t), .. }) if t.is_empty())
        );
        assert!(matches!(
            run(&["check"], &[]),
            Ok(Command::Check { status: None, .. })
        ));
        assert!(error(&["check", "--max-listen-queue", "x"], &[]).contains("--max-listen-queue"));
        assert!(error(&["check", "--max-queue=1"], &[]).contains("--max-queue"));
        assert!(error(&["--max-listen-queue=1"], &[]).contains("unknown argument"));
        // Found by the config_values fuzz target: a threshold flag with a newline in its name.
        let message = error(&["check", "--max-x\ny=1"], &[]);
        assert_eq!(message.lines().count(), 1, "{message}");
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(run(&["--help"], &[]), Ok(Command::Help)));
        assert!(matches!(run(&["-V"], &[]), Ok(Command::Version)));
        let text = help();
        for s in &SETTINGS {
            assert!(text.contains(s.var) && text.contains(s.flag));
        }
    }
}
