//! One FastCGI round trip under one deadline: resolve, connect, send, bounded read, verdict.
//!
//! A [`Probe`] is built once from the configuration (the request bytes are rendered then) and run
//! for every `/fcgi-ping`. Whatever the peer does, [`Probe::run`] returns within the configured
//! timeout with a [`Verdict`]; every failure carries a stable [`Reason`] word (the same word goes
//! into the HTTP body and the log line) and a one-line detail that names the destination.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use async_executor::Task;

use std::io::{Read, Write};
use std::path::Path;

use async_io::{Async, IoSafe};
use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use log::{debug, warn};

use crate::cgi::{self, CgiError};
use crate::coalesce::Coalescer;
use crate::config::{Config, Destination, Host};
use crate::deadline;
use crate::fcgi::{self, protocol_status, Answer, DecodeError, Decoder};
use crate::status::{self, Status};
use crate::throttle::{Gate, Throttle};

/// Why a probe failed: one stable word per kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The destination's host name did not resolve.
    ResolveFailed,
    /// The destination refused the connection (nothing listens there).
    ConnectRefused,
    /// Any other connect error: no such socket file, permission denied, unreachable.
    ConnectFailed,
    /// The whole probe took longer than the timeout.
    Timeout,
    /// The peer closed the connection before `FCGI_END_REQUEST`.
    ClosedEarly,
    /// The peer sent malformed or unexpected FastCGI records.
    ProtocolError,
    /// The peer sent more than the stdout or stderr cap.
    ResponseTooLarge,
    /// `END_REQUEST` with protocol status OVERLOADED.
    FcgiOverloaded,
    /// `END_REQUEST` with protocol status CANT_MPX_CONN, UNKNOWN_ROLE or unknown.
    FcgiRejected,
    /// The CGI `Status:` header is not 2xx.
    BadStatus,
    /// The answer is not a CGI response with the expected body.
    UnexpectedResponse,
}

impl Reason {
    /// Every reason, for documentation and metrics.
    pub const ALL: [Reason; 11] = [
        Reason::ResolveFailed,
        Reason::ConnectRefused,
        Reason::ConnectFailed,
        Reason::Timeout,
        Reason::ClosedEarly,
        Reason::ProtocolError,
        Reason::ResponseTooLarge,
        Reason::FcgiOverloaded,
        Reason::FcgiRejected,
        Reason::BadStatus,
        Reason::UnexpectedResponse,
    ];

    /// The word used in the HTTP body, the log and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ResolveFailed => "resolve_failed",
            Reason::ConnectRefused => "connect_refused",
            Reason::ConnectFailed => "connect_failed",
            Reason::Timeout => "timeout",
            Reason::ClosedEarly => "closed_early",
            Reason::ProtocolError => "protocol_error",
            Reason::ResponseTooLarge => "response_too_large",
            Reason::FcgiOverloaded => "fcgi_overloaded",
            Reason::FcgiRejected => "fcgi_rejected",
            Reason::BadStatus => "bad_status",
            Reason::UnexpectedResponse => "unexpected_response",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed probe: the reason word and a one-line detail naming the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The kind of failure.
    pub reason: Reason,
    /// What happened, on one line.
    pub detail: String,
}

impl Failure {
    fn new(reason: Reason, detail: String) -> Self {
        Self { reason, detail }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

/// The result of one probe.
pub type Verdict = Result<(), Failure>;

/// A probe of one FastCGI destination, ready to run.
#[derive(Debug)]
pub struct Probe {
    destination: Destination,
    label: String,
    path: String,
    /// The php-fpm pool setting that makes it answer `path` (for hints).
    setting: &'static str,
    request: Vec<u8>,
    expect: Vec<u8>,
    timeout: Duration,
    /// The name lookup in progress, if any: kept across probes so that a lookup that outlives a
    /// probe's deadline is awaited by the next probe instead of started again on another thread.
    lookup: RefCell<Option<Task<Lookup>>>,
    /// Concurrent probes (coalescing off) share the lookup; only one of them polls it.
    lookups: Coalescer<Lookup>,
    /// Bounds the warn lines of unhealthy verdicts.
    log: Throttle,
    /// Bounds the warn lines about the peer's stderr (a PHP notice in every answer).
    stderr_log: Throttle,
}

/// The addresses of a name, or why it did not resolve.
type Lookup = Result<Vec<SocketAddr>, String>;

/// At most this many unhealthy verdicts are logged per second; the rest are counted.
const LOGGED_FAILURES_PER_SECOND: u32 = 10;

/// At most this many answers' stderr are logged per 10 s; the rest are counted.
const LOGGED_STDERR_PER_10S: u32 = 3;

/// What a probe is doing, for the detail of a timeout.
#[derive(Debug, Clone, Copy)]
enum Stage {
    Resolving,
    Connecting,
    Reading,
}

impl Probe {
    /// A probe of `config.ping_path` at `config.destination`.
    pub fn new(config: &Config) -> Self {
        Self::for_path(
            config,
            &config.ping_path,
            &config.ping_response,
            "ping.path",
        )
    }

    /// A probe of php-fpm's status page (`config.status_path`, or php-fpm's usual `/fpm-status`
    /// when it is off), accepting any body.
    pub fn status(config: &Config) -> Self {
        let path = config.status_path.as_deref().unwrap_or("/fpm-status");
        Self::for_path(config, path, "", "pm.status_path")
    }

    /// A probe of `path` (php-fpm's `setting`) at `config.destination` whose body must contain
    /// `expect`.
    fn for_path(config: &Config, path: &str, expect: &str, setting: &'static str) -> Self {
        let (script, query) = path.split_once('?').unwrap_or((path, ""));
        Self {
            destination: config.destination.clone(),
            label: config.destination.to_string(),
            path: path.to_owned(),
            setting,
            request: fcgi::render_request(script, query),
            expect: expect.as_bytes().to_vec(),
            timeout: config.timeout,
            lookup: RefCell::new(None),
            lookups: Coalescer::new(true, Duration::ZERO),
            log: Throttle::new(Duration::from_secs(1), LOGGED_FAILURES_PER_SECOND),
            stderr_log: Throttle::new(Duration::from_secs(10), LOGGED_STDERR_PER_10S),
        }
    }

    /// Fetches and reads php-fpm's status page (a probe made with [`Probe::status`]).
    pub async fn fetch_status(&self) -> Result<Status, Failure> {
        let (verdict, answer) = self.run_keeping_answer().await;
        verdict?;
        let stdout = answer.map(|answer| answer.stdout).unwrap_or_default();
        let body = cgi::split(&stdout)
            .map(|(_, body)| body)
            .unwrap_or_default();
        status::parse(body).map_err(|e| {
            Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "{} answered {} with {e}; is {} = {} set in the php-fpm pool?",
                    self.label, self.path, self.setting, self.path
                ),
            )
        })
    }

    /// The destination as shown in messages (`127.0.0.1:9000`, `unix:/run/php.sock`).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Runs one probe; returns within the timeout. Logs one warn line when unhealthy.
    pub async fn run(&self) -> Verdict {
        self.run_keeping_answer().await.0
    }

    /// As [`Probe::run`], and also returns the FastCGI answer when one arrived complete.
    pub async fn run_keeping_answer(&self) -> (Verdict, Option<Answer>) {
        let started = Instant::now();
        let stage = Cell::new(Stage::Resolving);
        let received = Cell::new(0usize);
        let exchange = self.exchange(&stage, &received);
        let (verdict, answer) = match deadline::at(deadline::after(self.timeout), exchange).await {
            Some(Ok(answer)) => (self.judge(&answer), Some(answer)),
            Some(Err(failure)) => (Err(failure), None),
            None => (Err(self.timed_out(stage.get(), received.get())), None),
        };
        if let Some(answer) = answer.as_ref().filter(|a| a.stderr_len > 0) {
            if let Gate::Log { suppressed } = self.stderr_log.gate(Instant::now()) {
                warn!(
                    "probe {} {}: the FastCGI server wrote {} bytes to stderr: {}{}",
                    self.label,
                    self.path,
                    answer.stderr_len,
                    cgi::quote(&answer.stderr),
                    Suppressed(suppressed, "answers with stderr")
                );
            }
        }
        if let Some(answer) = &answer {
            debug!(
                "probe {} {}: sent {} bytes (BEGIN_REQUEST, PARAMS, STDIN); got {} bytes of stdout {}, \
                 {} bytes of stderr, END_REQUEST app status {} protocol status {}",
                self.label,
                self.path,
                self.request.len(),
                answer.stdout.len(),
                cgi::quote(&answer.stdout),
                answer.stderr_len,
                answer.app_status,
                answer.protocol_status
            );
        }
        let elapsed = started.elapsed();
        match &verdict {
            Ok(()) => debug!(
                "probe {} {}: healthy in {:?}",
                self.label, self.path, elapsed
            ),
            Err(failure) => {
                if let Gate::Log { suppressed } = self.log.gate(Instant::now()) {
                    warn!(
                        "probe {} {}: unhealthy after {}ms: {failure}{}",
                        self.label,
                        self.path,
                        elapsed.as_millis(),
                        Suppressed(suppressed, "unhealthy verdicts")
                    );
                }
            }
        }
        (verdict, answer)
    }

    async fn exchange(
        &self,
        stage: &Cell<Stage>,
        received: &Cell<usize>,
    ) -> Result<Answer, Failure> {
        match &self.destination {
            Destination::Unix(path) => {
                stage.set(Stage::Connecting);
                let stream = connect_unix(path).map_err(|e| self.unix_connect_failure(&e))?;
                self.talk(stream, stage, received).await
            }
            Destination::Tcp {
                host: Host::Ip(ip),
                port,
            } => {
                self.exchange_tcp(SocketAddr::new(*ip, *port), stage, received)
                    .await
            }
            Destination::Tcp {
                host: Host::Name(name),
                port,
            } => {
                let addrs = self
                    .lookups
                    .run(|| self.lookup(name, *port))
                    .await
                    .0
                    .map_err(|e| {
                        Failure::new(
                            Reason::ResolveFailed,
                            format!("cannot resolve {}: {e}", self.label),
                        )
                    })?;
                let mut last = Failure::new(
                    Reason::ResolveFailed,
                    format!("{} resolves to no address", self.label),
                );
                // Each address in the order the resolver gives, until one accepts the connection.
                for addr in addrs {
                    match self.exchange_tcp(addr, stage, received).await {
                        Err(failure)
                            if matches!(
                                failure.reason,
                                Reason::ConnectRefused | Reason::ConnectFailed
                            ) =>
                        {
                            debug!("probe {}: {addr}: {failure}", self.label);
                            last = failure;
                        }
                        other => return other,
                    }
                }
                Err(last)
            }
        }
    }

    async fn exchange_tcp(
        &self,
        addr: SocketAddr,
        stage: &Cell<Stage>,
        received: &Cell<usize>,
    ) -> Result<Answer, Failure> {
        stage.set(Stage::Connecting);
        let stream = connect_tcp(addr).map_err(|e| self.connect_failure(&e))?;
        self.talk(stream, stage, received).await
    }

    /// Resolves `name` on a helper thread (getaddrinfo blocks), reusing a lookup still running
    /// from an earlier probe.
    async fn lookup(&self, name: &str, port: u16) -> Lookup {
        // A lookup that finished after its probe gave up is old news: ask again. One still
        // running is joined (its answer comes after this probe started).
        if self.lookup.borrow().as_ref().is_some_and(Task::is_finished) {
            *self.lookup.borrow_mut() = None;
        }
        std::future::poll_fn(|cx| {
            let mut slot = self.lookup.borrow_mut();
            let task = slot.get_or_insert_with(|| {
                let name = name.to_owned();
                blocking::unblock(move || {
                    (name.as_str(), port)
                        .to_socket_addrs()
                        .map(Iterator::collect)
                        .map_err(|e| e.to_string())
                })
            });
            match Pin::new(task).poll(cx) {
                Poll::Ready(result) => {
                    *slot = None;
                    Poll::Ready(result)
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Sends the request in one write (on a TCP socket whose connect may still be in progress:
    /// on loopback it has completed by then, elsewhere the write waits for it) and reads the answer
    /// into a bounded decoder, waiting for readability first instead of trying a read that
    /// cannot succeed yet.
    async fn talk<T>(
        &self,
        mut stream: Async<T>,
        stage: &Cell<Stage>,
        received: &Cell<usize>,
    ) -> Result<Answer, Failure>
    where
        T: IoSafe + Read + Write,
    {
        stream.write_all(&self.request).await.map_err(|e| {
            if is_connect_error(&e) {
                self.connect_failure(&e)
            } else {
                Failure::new(
                    Reason::ClosedEarly,
                    format!("{} failed while taking the request: {e}", self.label),
                )
            }
        })?;
        stage.set(Stage::Reading);
        let mut decoder = Decoder::new();
        let mut ready = stream.readable().await;
        loop {
            let read = match ready {
                Ok(()) => stream.read(decoder.spare()).await,
                Err(e) => Err(e),
            };
            let read = read.map_err(|e| {
                Failure::new(
                    Reason::ClosedEarly,
                    format!(
                        "{} failed after {} bytes of answer: {e}",
                        self.label,
                        decoder.received()
                    ),
                )
            })?;
            if read == 0 {
                return Err(Failure::new(
                    Reason::ClosedEarly,
                    format!(
                        "{} closed the connection after {} bytes, before FCGI_END_REQUEST",
                        self.label,
                        decoder.received()
                    ),
                ));
            }
            match decoder.commit(read) {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => received.set(decoder.received()),
                Err(e) => return Err(self.decode_failure(e)),
            }
            ready = Ok(());
        }
    }

    /// Turns a complete answer into a verdict.
    fn judge(&self, answer: &Answer) -> Verdict {
        let name = match answer.protocol_status {
            protocol_status::REQUEST_COMPLETE => None,
            protocol_status::OVERLOADED => Some((Reason::FcgiOverloaded, "OVERLOADED")),
            protocol_status::CANT_MPX_CONN => Some((Reason::FcgiRejected, "CANT_MPX_CONN")),
            protocol_status::UNKNOWN_ROLE => Some((Reason::FcgiRejected, "UNKNOWN_ROLE")),
            _ => Some((Reason::FcgiRejected, "unknown")),
        };
        if let Some((reason, name)) = name {
            return Err(Failure::new(
                reason,
                format!(
                    "{} ended the request with protocol status {} ({name})",
                    self.label, answer.protocol_status
                ),
            ));
        }
        cgi::check(&answer.stdout, &self.expect).map_err(|e| {
            let (reason, hint) = match &e {
                CgiError::BadStatus(_) | CgiError::UnparsableStatus(_) => (
                    Reason::BadStatus,
                    format!(
                        "is {} = {} set in the php-fpm pool?",
                        self.setting, self.path
                    ),
                ),
                CgiError::BodyMismatch(_) => (
                    Reason::UnexpectedResponse,
                    format!(
                        "expected {} (PING_RESPONSE / ping.response)",
                        cgi::quote(&self.expect)
                    ),
                ),
                CgiError::NoHeaderEnd => (
                    Reason::UnexpectedResponse,
                    "is it php-fpm's ping.path?".to_owned(),
                ),
            };
            Failure::new(
                reason,
                format!("{} answered {} with {e}; {hint}", self.label, self.path),
            )
        })
    }

    /// A Unix socket whose listen queue is full refuses a non-blocking connect with EAGAIN: the
    /// pool is hung or too small.
    fn unix_connect_failure(&self, error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::WouldBlock => Failure::new(
                Reason::FcgiOverloaded,
                format!(
                    "the listen queue of {} is full; are php-fpm's workers hung or too few?",
                    self.label
                ),
            ),
            _ => self.connect_failure(error),
        }
    }

    fn connect_failure(&self, error: &io::Error) -> Failure {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            Failure::new(
                Reason::ConnectRefused,
                format!(
                    "{} refused the connection; is php-fpm running and listening there?",
                    self.label
                ),
            )
        } else {
            Failure::new(
                Reason::ConnectFailed,
                format!("cannot connect to {}: {error}", self.label),
            )
        }
    }

    fn decode_failure(&self, error: DecodeError) -> Failure {
        let reason = match error {
            DecodeError::StdoutTooLarge | DecodeError::StderrTooLarge => Reason::ResponseTooLarge,
            _ => Reason::ProtocolError,
        };
        Failure::new(reason, format!("{} sent {error}", self.label))
    }

    fn timed_out(&self, stage: Stage, received: usize) -> Failure {
        let doing = match stage {
            Stage::Resolving => "resolving the name".to_owned(),
            Stage::Connecting => "connecting and sending the request".to_owned(),
            Stage::Reading => format!("reading the answer, {received} bytes received"),
        };
        Failure::new(
            Reason::Timeout,
            format!(
                "no complete answer from {} within {:?} (while {doing})",
                self.label, self.timeout
            ),
        )
    }
}

/// ` (N more WHAT were not logged)` when a throttle suppressed N lines, else nothing.
struct Suppressed(u64, &'static str);

impl fmt::Display for Suppressed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => Ok(()),
            n => write!(f, " ({n} more {} were not logged)", self.1),
        }
    }
}

/// Whether an error of a write on a freshly connecting socket is the connect's own failure.
fn is_connect_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
            | io::ErrorKind::AddrNotAvailable
    )
}

/// Starts a non-blocking TCP connect and returns the socket at once, registered with the
/// reactor: the caller writes right away (async-io's own connect would first wait for
/// writability and check `SO_ERROR`, three system calls that loopback does not need).
fn connect_tcp(addr: SocketAddr) -> io::Result<Async<std::net::TcpStream>> {
    use rustix::net::{ipproto, AddressFamily, SocketFlags, SocketType};

    let family = if addr.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    };
    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let socket = rustix::net::socket_with(family, SocketType::STREAM, flags, Some(ipproto::TCP))?;
    // Closed with a reset, as HAProxy closes its health checks: the answer is complete (or given
    // up on) by then, and php-fpm, which closes first and then waits for our end, keeps no
    // TIME-WAIT socket per probe; it saves both sides the FIN/ACK exchange.
    rustix::net::sockopt::set_socket_linger(&socket, Some(Duration::ZERO))?;
    match rustix::net::connect(&socket, &addr) {
        Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
        Err(e) => return Err(e.into()),
    }
    Async::new_nonblocking(std::net::TcpStream::from(socket))
}

/// Connects a Unix stream socket without blocking: it completes at once, or fails at once
/// (`EAGAIN` when the listen queue is full).
fn connect_unix(path: &Path) -> io::Result<Async<std::os::unix::net::UnixStream>> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)?;
    rustix::net::connect(&socket, &SocketAddrUnix::new(path)?)?;
    Async::new_nonblocking(std::os::unix::net::UnixStream::from(socket))
}
