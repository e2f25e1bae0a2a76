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
        /// `--live`: the liveness question (busy is alive; waits up to `BUSY_GRACE` for progress).
        live: bool,
        /// `--status` and its thresholds: check the status page instead of the ping.
        status: Option<Vec<Threshold>>,
        /// `--pool NAME`: only that pool of `POOLS` (`None`: every pool).
        pool: Option<String>,
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
    /// Nothing: a scrape reads the summary only, as without this setting.
    Off,
    /// The aggregates (children by state, oldest request, largest last request memory and
    /// cpu), without process ids: a scrape reads the full page.
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
    /// One line for `--help`.
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
        help: "address:port to listen on (IPv4, or [IPv6]:port)",
        apply: |raw, c| parse_server(raw).map(|v| c.server = v) },
    Setting { var: "DESTINATION", flag: "--destination", default: "127.0.0.1",
        help: "FastCGI server: host name, IP address, or Unix socket (/path or unix:/path)",
        apply: |raw, c| parse_destination(raw).map(|v| c.destination = v) },
    Setting { var: "DESTINATION_PORT", flag: "--destination-port", default: "9000",
        help: "FastCGI TCP port (ignored for a Unix socket)",
        apply: |raw, c| {
            let port = parse_port(raw)?;
            if let Destination::Tcp { port: slot, .. } = &mut c.destination {
                *slot = port;
            }
            Ok(())
        } },
    Setting { var: "POOLS", flag: "--pools", default: "off",
        help: "several pools: name=/path.sock,name=host:port,... or dir:/run/php (every socket there)",
        apply: |raw, c| parse_pools(raw, &c.destination).map(|v| c.pools = v) },
    Setting { var: "PING_PATH", flag: "--ping-path", default: "/fpm-ping",
        help: "php-fpm's ping.path",
        apply: |raw, c| parse_ping_path(raw).map(|v| c.ping_path = v) },
    Setting { var: "PING_RESPONSE", flag: "--ping-response", default: "pong",
        help: "text the answer must contain (php-fpm's ping.response)",
        apply: |raw, c| parse_ping_response(raw).map(|v| c.ping_response = v) },
    Setting { var: "TIMEOUT", flag: "--timeout", default: DEFAULT_TIMEOUT,
        help: "deadline for one whole probe: 500ms, 2s, or seconds",
        apply: |raw, c| parse_duration_setting(raw).map(|v| c.timeout = v) },
    Setting { var: "FAIL_STATUS", flag: "--fail-status", default: "503",
        help: "HTTP status of an unhealthy answer, 400-599 (404: as the original tool)",
        apply: |raw, c| parse_fail_status(raw).map(|v| c.fail_status = v) },
    Setting { var: "CLIENT_TIMEOUT", flag: "--client-timeout", default: "5s",
        help: "deadline for a client's request head; idle keep-alive limit",
        apply: |raw, c| parse_duration_setting(raw).map(|v| c.client_timeout = v) },
    Setting { var: "MAX_CONNECTIONS", flag: "--max-connections", default: "1024",
        help: "cap on open HTTP connections",
        apply: |raw, c| parse_max_connections(raw).map(|v| c.max_connections = v) },
    Setting { var: "COALESCE", flag: "--coalesce", default: "on",
        help: "on: concurrent probes share one FastCGI request; off: one each (benchmarks)",
        apply: |raw, c| parse_switch(raw).map(|v| c.coalesce = v) },
    Setting { var: "CACHE_TTL", flag: "--cache-ttl", default: "0",
        help: "reuse a verdict for this long after its probe (0: only share in-flight)",
        apply: |raw, c| parse_ttl(raw).map(|v| c.cache_ttl = v) },
    Setting { var: "STATUS_PATH", flag: "--status-path", default: "/fpm-status",
        help: "php-fpm's pm.status_path, for /fcgi-status, /metrics, check --status (off: none)",
        apply: |raw, c| parse_status_path(raw).map(|v| c.status_path = v) },
    Setting { var: "STATUS_LISTEN", flag: "--status-listen", default: "off",
        help: "php-fpm's pm.status_listen, where the status page is read (POOLS: name=main+lane)",
        apply: |raw, c| parse_status_listen(raw, c).map(|v| c.status_listen = v) },
    Setting { var: "PROCESS_METRICS", flag: "--process-metrics", default: "off",
        help: "/metrics from php-fpm's full status page: off, aggregates (no pid labels), per-process",
        apply: |raw, c| parse_process_metrics(raw).map(|v| c.process_metrics = v) },
    Setting { var: "IDLE_EXIT", flag: "--idle-exit", default: "off",
        help: "exit 0 after this long without a connection (systemd socket activation)",
        apply: |raw, c| parse_idle_exit(raw).map(|v| c.idle_exit = v) },
    Setting { var: "BUSY_GRACE", flag: "--busy-grace", default: "60s",
        help: "/fcgi-live: a busy pool is alive until it made no progress this long (off: busy fails it)",
        apply: |raw, c| parse_busy_grace(raw).map(|v| c.busy_grace = v) },
    Setting { var: "RUST_LOG", flag: "--log-level", default: "info",
        help: "log level: error, warn, info, debug, trace, off",
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
                continue;
            }
            "--live" if check => {
                live = true;
                continue;
            }
            "--status" if check => {
                status.get_or_insert_with(Vec::new);
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
    Ok(if check {
        Command::Check {
            config,
            verbose,
            live,
            status,
            pool,
        }
    } else {
        Command::Serve(config)
    })
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
    pools.sort_by(|a, b| a.0.cmp(&b.0));
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
    match parse_span(&raw.value) {
        Some(Duration::ZERO) => Ok(None),
        Some(span) if span >= MIN_DURATION => Ok(Some(span)),
        _ => Err(raw.error("is not off, 0 or a duration between 1ms and 1h (examples: 30s, 5m)")),
    }
}

fn parse_busy_grace(raw: &Raw) -> Result<Option<Duration>, ConfigError> {
    if raw.value.trim() == "off" {
        return Ok(None);
    }
    parse_duration(&raw.value).map(Some).ok_or_else(|| {
        raw.error("is not off or a duration between 1ms and 1h (examples: 60s, 5m, off)")
    })
}

fn parse_ttl(raw: &Raw) -> Result<Duration, ConfigError> {
    match parse_span(&raw.value) {
        Some(span) if span == Duration::ZERO || span >= MIN_DURATION => Ok(span),
        _ => Err(raw.error("is not 0 or a duration between 1ms and 1h (examples: 0, 250ms, 2s)")),
    }
}

fn parse_duration_setting(raw: &Raw) -> Result<Duration, ConfigError> {
    parse_duration(&raw.value).ok_or_else(|| {
        raw.error("is not a duration between 1ms and 1h (examples: 500ms, 2s, 1.5, 1m)")
    })
}

/// Shortest accepted duration other than zero.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// Longest accepted duration.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Parses `500ms`, `2s`, `1.5s`, `1m`, or a bare number of seconds (`2`, `0.5`).
/// Accepts 1 ms to 1 h; anything else is `None`. Exact decimal arithmetic (no floating point):
/// `0.001` is exactly 1 ms; digits below a nanosecond are dropped.
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

/// The manual printed by `--help`.
pub fn help() -> String {
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
        text.push_str(&format!(
            "    {:<17} {:<19} {:<15} {}\n",
            s.var, s.flag, s.default, s.help
        ));
    }
    text.push_str(
        "\nENDPOINTS:\n\
         \x20   GET|HEAD /fcgi-ping          one FastCGI request to PING_PATH: 200 `ok`, or FAIL_STATUS\n\
         \x20                                and a one-line reason (connect_refused, timeout, bad_status, ...)\n\
         \x20   GET|HEAD /fcgi-status        php-fpm's status page (STATUS_PATH); thresholds in the query:\n\
         \x20                                ?max-listen-queue=10&min-idle-processes=1 (200, or FAIL_STATUS)\n\
         \x20   GET|HEAD /fcgi-live          liveness: the same probe, but a busy pool is alive (200) until\n\
         \x20                                it made no progress for BUSY_GRACE (stuck); dead fails at once\n\
         \x20   GET /metrics                 Prometheus text: probes, durations, php-fpm's pool (phpfpm_*)\n\
         \x20   GET|HEAD /fcgi-ping/NAME     with POOLS: one pool (also /fcgi-live/NAME, /fcgi-status/NAME);\n\
         \x20                                without a name every pool: one line per failing pool\n\
         \x20   GET|HEAD /health /healthz /  200 `ok`: this process is alive (no FastCGI)\n\n\
         CHECK:\n\
         \x20   check [-v]                   one ping; exit 0 healthy, 1 unhealthy (reason on stderr)\n\
         \x20   check --live                 liveness: busy waits up to BUSY_GRACE for php-fpm's answer\n\
         \x20   check --status [--max-<field> N] [--min-<field> N] [--<field> N]\n\
         \x20                                the status page against thresholds (--<field>: maximum)\n\
         \x20   check --pool NAME            with POOLS: that pool only (else every pool)\n\n\
         EXIT CODES:\n\
         \x20   0  stopped by SIGTERM or SIGINT, or --help/--version; check: healthy\n\
         \x20   1  could not listen on SERVER; check: unhealthy (the reason on stderr)\n\
         \x20   2  invalid flag or setting (the message names it); check --pool: unknown pool\n\n\
         php-fpm needs `ping.path = /fpm-ping` (and optionally `ping.response = pong`) in the pool.\n",
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
        assert_eq!(config(&[], &[]).process_metrics, ProcessMetrics::Off);
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
