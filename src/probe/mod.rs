//! One FastCGI round trip under one deadline: resolve, connect, send, bounded read, verdict.
//!
//! A `Probe` is built once from the configuration (the request bytes are rendered then) and run
//! for every `/fcgi-ping`. Whatever the peer does, `Probe::run` returns within the configured
//! timeout with a [`Verdict`]; every failure carries a stable [`Reason`] word (the same word goes
//! into the HTTP body and the log line) and a one-line detail that names the destination.
//!
//! Rooms: `target` (where to connect: name resolution, the connect), `request` (the FastCGI
//! request, rendered once and logged at start), this file (the exchange
//! under one deadline), `judge` (a pure verdict on a complete answer), `report` (the log
//! lines and their throttles, kept by the caller), `keep` (a timed-out probe's connection kept
//! open for its answer), `lane` (the status page through php-fpm's `pm.status_listen`, and the
//! fallback to the main listener). The probe itself never logs (but the lane, when it goes absent
//! or answers again); what a failure means for liveness is [`crate::liveness`]'s.

pub(crate) mod coalesce;
pub(crate) mod counters;
pub(crate) mod judge;
pub(crate) mod keep;
pub(crate) mod lane;
pub(crate) mod report;
mod request;
mod target;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::time::{Duration, Instant};

use crate::config::{Config, Destination, Host};
use crate::deadline;
use crate::limits::{FCGI_READ_CHUNK, MAX_FCGI_STATUS_STDOUT};
use crate::os::listen_queue::{self, View};
use crate::os::socket::Stream;
use crate::proto::cgi;
use crate::proto::fcgi::{Answer, DecodeError, Decoder};
use crate::proto::status::{self, Status};

use judge::Asked;
use target::{Resolve, Target};

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
    /// php-fpm answered the status page's path with 404: `pm.status_path` is not set in the
    /// pool (status page probes only; a ping answered 404 is `bad_status`).
    NotConfigured,
    /// No answer within the timeout while other connections wait in the listener's queue
    /// (the kernel's view): every worker is busy.
    Busy,
    /// Liveness only: the pool made no progress for `BUSY_GRACE` while connections waited.
    Stuck,
}

impl Reason {
    /// Whether a failure of this kind means the connection left the listener's queue: a
    /// worker took it (only workers accept; the answer or its close came from one), or the
    /// kernel reset it with the listener (`closed_early` when php-fpm stops). Not when the
    /// connection was never made, or is still waiting.
    pub(crate) fn answered(self) -> bool {
        match self {
            Reason::ClosedEarly
            | Reason::ProtocolError
            | Reason::ResponseTooLarge
            | Reason::FcgiOverloaded
            | Reason::FcgiRejected
            | Reason::BadStatus
            | Reason::UnexpectedResponse
            | Reason::NotConfigured => true,
            Reason::ResolveFailed
            | Reason::ConnectRefused
            | Reason::ConnectFailed
            | Reason::Timeout
            | Reason::Busy
            | Reason::Stuck => false,
        }
    }

    /// Every reason, for documentation and metrics.
    pub const ALL: [Reason; 14] = [
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
        Reason::NotConfigured,
        Reason::Busy,
        Reason::Stuck,
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
            Reason::NotConfigured => "not_configured",
            Reason::Busy => "busy",
            Reason::Stuck => "stuck",
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
    /// The operating system's error number, when a connect failed with one (`ECONNREFUSED`,
    /// `ENOENT`, `EACCES`...): the exit status of the php-fpm-healthcheck mode.
    pub errno: Option<i32>,
    /// For a timeout: what the probe was waiting for when its deadline passed.
    pub stage: Option<Stage>,
}

impl Failure {
    pub(crate) fn new(reason: Reason, detail: String) -> Self {
        Self {
            reason,
            detail,
            errno: None,
            stage: None,
        }
    }

    /// As [`Failure::new`], for a failure with the OS error `errno`.
    pub(crate) fn with_errno(reason: Reason, detail: String, errno: Option<i32>) -> Self {
        Self {
            errno,
            ..Self::new(reason, detail)
        }
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
pub(crate) struct Probe {
    target: Target,
    path: String,
    /// The php-fpm pool setting that makes it answer `path` (for hints).
    setting: &'static str,
    request: Vec<u8>,
    expect: Vec<u8>,
    timeout: Duration,
    /// php-fpm's status page as the server and `check` read it: a 404 is `not_configured`.
    status_page: bool,
    /// php-fpm's full status page (`?full`): stdout is kept up to
    /// [`MAX_FCGI_STATUS_STDOUT`] and truncated past it, and its per-process part is read.
    full: bool,
    /// The read buffer of the last answer, for the next one (no allocation or zeroing of 4 KiB
    /// per probe); empty while a probe runs.
    buffer: RefCell<Vec<u8>>,
    /// The stdout storage of the last answer, for the next one (no allocation per probe),
    /// when its caller hands it back ([`Probe::recycle_answer`]); empty while a probe runs.
    stdout: RefCell<Vec<u8>>,
}

/// The largest read buffer kept between probes: the usual one read ([`FCGI_READ_CHUNK`]) with a
/// partial record before it.
const RECYCLED_BUFFER: usize = 2 * FCGI_READ_CHUNK;

/// The largest stdout storage kept between probes: an answer that fits one read
/// ([`FCGI_READ_CHUNK`]; php-fpm's pong is about 150 bytes, its short status page about 500).
/// A full status page's is dropped.
const RECYCLED_STDOUT: usize = FCGI_READ_CHUNK;

/// The connection of a probe whose deadline passed while it waited for its answer: the request
/// is sent, the answer so far decoded. Dropping it closes the connection.
#[derive(Debug)]
pub(crate) struct Held {
    stream: Stream,
    decoder: Decoder,
    /// When the probe started (connect included).
    pub(crate) since: Instant,
}

/// What a probe waits for: the detail of a timeout, whether a timed-out probe's connection can
/// be handed over (only while it waits for its answer), and what liveness makes of it (a
/// listener that does not take the connection is at fault, as one that refuses it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The name's addresses.
    Name,
    /// The connect and the write of the request.
    Connect,
    /// The answer, the request sent.
    Answer,
}

impl Probe {
    /// A probe of `config.ping_path` at `config.destination`.
    pub(crate) fn new(config: &Config) -> Self {
        Self::ping_at(config, &config.destination)
    }

    /// A probe of `config.ping_path` at `destination` (one pool of `POOLS`).
    pub(crate) fn ping_at(config: &Config, destination: &Destination) -> Self {
        Self::for_path(
            config,
            destination,
            &config.ping_path,
            &config.ping_response,
            "ping.path",
        )
    }

    /// A probe of php-fpm's status page (`config.status_path`, or php-fpm's usual `/fpm-status`
    /// when it is off) at `destination`, accepting any body. `full`: the full page
    /// (`STATUS_PATH?full`), with its own larger cap on the answer ([`MAX_FCGI_STATUS_STDOUT`]),
    /// read only when a threshold or a metric needs the per-process part.
    pub(crate) fn status_at(config: &Config, destination: &Destination, full: bool) -> Self {
        let path = config.status_path.as_deref().unwrap_or("/fpm-status");
        if !full {
            return Self {
                status_page: true,
                ..Self::for_path(config, destination, path, "", "pm.status_path")
            };
        }
        let separator = if path.contains('?') { '&' } else { '?' };
        Self {
            full: true,
            status_page: true,
            ..Self::for_path(
                config,
                destination,
                &format!("{path}{separator}full"),
                "",
                "pm.status_path",
            )
        }
    }

    /// A probe of `path` (php-fpm's `setting`) at `destination` whose body must contain
    /// `expect`; a `?query` in `path` is sent as the query string.
    fn for_path(
        config: &Config,
        destination: &Destination,
        path: &str,
        expect: &str,
        setting: &'static str,
    ) -> Self {
        let (script, query) = path.split_once('?').unwrap_or((path, ""));
        let request = request::render(script, query);
        let target = Target::new(destination, Resolve::Every);
        Self::with_request(target, path, request, expect, setting, config.timeout)
    }

    /// A probe of the status page at `path`, taken literally as the script name (no query split,
    /// as php-fpm-healthcheck sends `FCGI_STATUS_PATH`), accepting any body; a host name is
    /// resolved as `cgi-fcgi` does (its first IPv4 address, one connect).
    pub(crate) fn literal_status(destination: &Destination, path: &str, timeout: Duration) -> Self {
        let request = request::render(path, "");
        let target = Target::new(destination, Resolve::FirstIpv4);
        Self::with_request(target, path, request, "", "pm.status_path", timeout)
    }

    fn with_request(
        target: Target,
        path: &str,
        request: Vec<u8>,
        expect: &str,
        setting: &'static str,
        timeout: Duration,
    ) -> Self {
        Self {
            target,
            path: path.to_owned(),
            setting,
            request,
            expect: expect.as_bytes().to_vec(),
            timeout,
            status_page: false,
            full: false,
            buffer: RefCell::default(),
            stdout: RefCell::default(),
        }
    }

    /// This probe's request (rendered once) sent to `destination` instead: a pool found while
    /// serving is built from the start-up's probes, without rendering a request.
    pub(crate) fn at(&self, destination: &Destination) -> Self {
        Self {
            target: self.target.to(destination),
            path: self.path.clone(),
            setting: self.setting,
            request: self.request.clone(),
            expect: self.expect.clone(),
            timeout: self.timeout,
            status_page: self.status_page,
            full: self.full,
            buffer: RefCell::default(),
            stdout: RefCell::default(),
        }
    }

    /// A decoder for this probe's answer: the full status page keeps
    /// [`MAX_FCGI_STATUS_STDOUT`] and marks the rest truncated; any other answer past
    /// `MAX_FCGI_STDOUT` is an error.
    fn decoder(&self) -> Decoder {
        let buffer = self.buffer.take();
        let stdout = self.stdout.take();
        self.decoder_with(buffer, stdout)
    }

    fn decoder_with(&self, buffer: Vec<u8>, stdout: Vec<u8>) -> Decoder {
        let decoder = if self.full {
            Decoder::truncating(MAX_FCGI_STATUS_STDOUT)
        } else {
            Decoder::new()
        };
        decoder.with_buffer(buffer).with_stdout(stdout)
    }

    /// Keeps the read buffer of a finished probe for the next one, unless an unusual answer
    /// (a record larger than one read) grew it; and the stdout storage of an answer that did
    /// not complete.
    fn recycle(&self, mut decoder: Decoder) {
        self.keep_stdout(decoder.take_stdout());
        let buffer = decoder.into_buffer();
        if buffer.len() <= RECYCLED_BUFFER {
            self.buffer.replace(buffer);
        }
    }

    /// Takes back the stdout storage of an answer of this probe, done with, for the next one
    /// (unless it is larger than [`RECYCLED_STDOUT`]).
    pub(crate) fn recycle_answer(&self, answer: Answer) {
        self.keep_stdout(answer.stdout);
    }

    /// Keeps `stdout` for the next answer if it is within [`RECYCLED_STDOUT`] and larger than
    /// what is kept (two probes of one `Probe` can run at once when coalescing is off).
    fn keep_stdout(&self, stdout: Vec<u8>) {
        let mut kept = self.stdout.borrow_mut();
        if stdout.capacity() <= RECYCLED_STDOUT && stdout.capacity() > kept.capacity() {
            *kept = stdout;
        }
    }

    /// The destination as shown in messages (`127.0.0.1:9000`, `unix:/run/php.sock`).
    pub(crate) fn label(&self) -> &str {
        self.target.label()
    }

    /// The path asked for.
    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    /// Bytes of the FastCGI request.
    pub(crate) fn request_len(&self) -> usize {
        self.request.len()
    }

    /// What this probe asks, for the judge.
    fn asked(&self) -> Asked<'_> {
        Asked {
            label: self.label(),
            path: &self.path,
            setting: self.setting,
            expect: &self.expect,
            status_page: self.status_page,
        }
    }

    /// Reads php-fpm's status page out of a probe's outcome (a probe made with
    /// [`Probe::status_at`]).
    pub(crate) fn read_status(
        &self,
        verdict: Verdict,
        answer: Option<Answer>,
    ) -> Result<Status, Failure> {
        verdict?;
        let (stdout, cut) = answer
            .map(|answer| (answer.stdout, answer.stdout_truncated))
            .unwrap_or_default();
        let body = cgi::split(&stdout)
            .map(|(_, body)| body)
            .unwrap_or_default();
        let page = match self.full {
            true => status::parse_full(body, cut),
            false => status::parse(body),
        };
        self.keep_stdout(stdout);
        page.map_err(|e| {
            Failure::new(
                Reason::UnexpectedResponse,
                format!(
                    "{} answered {} with {e}; is {} = {} set in the php-fpm pool?",
                    self.label(),
                    self.path,
                    self.setting,
                    self.path
                ),
            )
        })
    }

    /// Runs one probe, within the timeout; also returns the FastCGI answer when one arrived
    /// complete.
    pub(crate) async fn run(&self) -> (Verdict, Option<Answer>) {
        let (verdict, answer, _held) = self.run_holding().await;
        (verdict, answer)
    }

    /// Runs one probe, within the timeout, as [`Probe::run`]; when the deadline
    /// passes while the request waits for its answer, also hands over the connection (for the
    /// caller to keep open, or to drop: that closes it).
    pub(crate) async fn run_holding(&self) -> (Verdict, Option<Answer>, Option<Held>) {
        let started = Instant::now();
        let waiting = Cell::new(Stage::Name);
        let mut slot = None;
        let mut decoder = self.decoder();
        let exchange = self.exchange(&waiting, &mut slot, &mut decoder);
        match deadline::at(deadline::after(self.timeout), exchange).await {
            Some(Ok(answer)) => {
                self.recycle(decoder);
                (judge::judge(&answer, self.asked()), Some(answer), None)
            }
            Some(Err(failure)) => {
                self.recycle(decoder);
                (Err(failure), None, None)
            }
            None => {
                let failure = self.timed_out(waiting.get(), decoder.received());
                let held = match (waiting.get(), slot) {
                    (Stage::Answer, Some(stream)) => Some(Held {
                        stream,
                        decoder,
                        since: started,
                    }),
                    _ => None,
                };
                (Err(failure), None, held)
            }
        }
    }

    /// Waits (without a deadline: the caller sets one) for the answer on a connection handed
    /// over by [`Probe::run_holding`], and judges it.
    pub(crate) async fn finish(&self, held: Held) -> (Verdict, Option<Answer>) {
        let Held {
            mut stream,
            mut decoder,
            ..
        } = held;
        match self.read_answer(&mut stream, &mut decoder).await {
            Ok(answer) => (judge::judge(&answer, self.asked()), Some(answer)),
            Err(failure) => (Err(failure), None),
        }
    }

    /// The kernel's view of the destination's listen queue (without asking php-fpm).
    pub(crate) fn listen_queue(&self) -> View {
        match self.target.destination() {
            Destination::Unix(path) => listen_queue::unix(path),
            Destination::Tcp {
                host: Host::Ip(ip),
                port,
            } => listen_queue::tcp(*port, Some(*ip)),
            Destination::Tcp { port, .. } => listen_queue::tcp(*port, None),
        }
    }

    /// The timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Resolves, connects and exchanges; each address of a name in turn until one accepts the
    /// connection. When every address fails, a refusal is the verdict over other failures:
    /// `localhost` as 127.0.0.1 and ::1 with IPv6 off is refused (nothing listens), not
    /// unavailable. The connection stays in `slot` (and the answer so far in `decoder`) when the
    /// caller's deadline drops this future.
    async fn exchange(
        &self,
        waiting: &Cell<Stage>,
        slot: &mut Option<Stream>,
        decoder: &mut Decoder,
    ) -> Result<Answer, Failure> {
        let addresses = self.target.addresses().await?;
        let mut last = None;
        for endpoint in addresses.endpoints() {
            waiting.set(Stage::Connect);
            if last.is_some() {
                // Another address after a failed connect: a fresh decoder on the same storage.
                let stdout = decoder.take_stdout();
                *decoder = self.decoder_with(std::mem::take(decoder).into_buffer(), stdout);
            }
            let outcome = match self.target.connect(endpoint) {
                Ok(stream) => self.talk(slot.insert(stream), waiting, decoder).await,
                Err(failure) => Err(failure),
            };
            match outcome {
                Err(failure)
                    if matches!(
                        failure.reason,
                        Reason::ConnectRefused | Reason::ConnectFailed
                    ) =>
                {
                    let refused = |f: &Failure| f.reason == Reason::ConnectRefused;
                    if !last.as_ref().is_some_and(refused) {
                        last = Some(failure);
                    }
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| {
            Failure::new(
                Reason::ResolveFailed,
                format!("{} resolves to no address", self.label()),
            )
        }))
    }

    /// Sends the request in one write (on a TCP socket whose connect may still be in progress:
    /// on loopback it has completed by then, elsewhere the write waits for it) and reads the
    /// answer.
    async fn talk(
        &self,
        stream: &mut Stream,
        waiting: &Cell<Stage>,
        decoder: &mut Decoder,
    ) -> Result<Answer, Failure> {
        stream.write_all(&self.request).await.map_err(|e| {
            if target::is_connect_error(&e) {
                self.target.connect_failure(&e)
            } else {
                Failure::new(
                    Reason::ClosedEarly,
                    format!("{} failed while taking the request: {e}", self.label()),
                )
            }
        })?;
        waiting.set(Stage::Answer);
        self.read_answer(stream, decoder).await
    }

    /// Reads the answer into a bounded decoder, waiting for readability first instead of
    /// trying a read that cannot succeed yet. Cancel-safe: bytes read are in `decoder`.
    async fn read_answer(
        &self,
        stream: &mut Stream,
        decoder: &mut Decoder,
    ) -> Result<Answer, Failure> {
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
                        self.label(),
                        decoder.received()
                    ),
                )
            })?;
            if read == 0 {
                return Err(Failure::new(
                    Reason::ClosedEarly,
                    format!(
                        "{} closed the connection after {} bytes, before FCGI_END_REQUEST",
                        self.label(),
                        decoder.received()
                    ),
                ));
            }
            match decoder.commit(read) {
                Ok(Some(answer)) => return Ok(answer),
                Ok(None) => {}
                Err(e) => return Err(self.decode_failure(e)),
            }
            ready = Ok(());
        }
    }

    fn decode_failure(&self, error: DecodeError) -> Failure {
        let reason = match error {
            DecodeError::StdoutTooLarge
            | DecodeError::StderrTooLarge
            | DecodeError::AnswerTooLarge => Reason::ResponseTooLarge,
            _ => Reason::ProtocolError,
        };
        Failure::new(reason, format!("{} sent {error}", self.label()))
    }

    fn timed_out(&self, waiting: Stage, received: usize) -> Failure {
        let doing = match waiting {
            Stage::Name => "resolving the name".to_owned(),
            Stage::Connect => "connecting and sending the request".to_owned(),
            Stage::Answer => format!("reading the answer, {received} bytes received"),
        };
        Failure {
            stage: Some(waiting),
            ..Failure::new(
                Reason::Timeout,
                format!(
                    "no complete answer from {} within {:?} (while {doing})",
                    self.label(),
                    self.timeout
                ),
            )
        }
    }
}
