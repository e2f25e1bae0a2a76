//! The listener, the accept loop, the connection cap, each connection's keep-alive loop, and the
//! orderly stop on SIGTERM or SIGINT.
//!
//! Invariants:
//! - At most `MAX_CONNECTIONS` connections are served at once (fewer if the open-file limit
//!   cannot hold them, said at start). At the cap, room is made by closing, in this order: the
//!   connection idle the longest (it waits for the first byte of its next request), then the
//!   oldest one stuck for more than [`SLOW_REQUEST`] in a partial request or in writing answers
//!   its client does not read (pipelined requests from a slow reader). Only when every
//!   connection is answering (probing, writing to a reading client) or just started a request
//!   does a newcomer get a prompt `503` and a close.
//! - Every wait has a deadline: a request (head and body) and a keep-alive pause within
//!   `CLIENT_TIMEOUT`, a write within `CLIENT_TIMEOUT`, a probe within `TIMEOUT`, the stop within
//!   `TIMEOUT` + 1 s.
//! - A connection buffers at most one request head ([`MAX_HEAD_BYTES`]) and a few queued
//!   responses ([`MAX_QUEUED_RESPONSE_BYTES`]).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_executor::{LocalExecutor, Task};
use async_io::Timer;
use async_signal::{Signal, Signals};
use futures_lite::{future, StreamExt};
use log::{debug, info, warn};

use crate::coalesce::{Coalescer, Source};
use crate::config::Config;
use crate::deadline;
use crate::http::{self, Body, Method, Route};
use crate::limits::{
    ACCEPT_BACKOFF, HTTP_READ_CHUNK, MAX_DRAINED_BODY, MAX_HEAD_BYTES, MAX_QUEUED_RESPONSE_BYTES,
    MAX_REJECTING, REJECT_WRITE_TIMEOUT,
};
use crate::metrics::{self, Metrics};
use crate::probe::{Failure, Probe, Verdict};
use crate::socket::{Listener, Stream};
use crate::status::{self, Status};
use crate::systemd::{self, Inherited};
use crate::throttle::{Gate, Throttle};

/// Why the server could not start.
#[derive(Debug)]
pub enum ServeError {
    /// `SERVER` could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        error: io::Error,
    },
    /// The socket systemd passed could not be served.
    Inherited(io::Error),
    /// The signal handlers could not be installed.
    Signals(io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind { addr, error } => write!(
                f,
                "cannot listen on SERVER={addr}: {error}; choose a free address:port with SERVER or --server"
            ),
            ServeError::Inherited(error) => write!(
                f,
                "cannot serve the socket systemd passed (LISTEN_FDS): {error}; check ListenStream= in the .socket unit"
            ),
            ServeError::Signals(error) => {
                write!(f, "cannot install the SIGTERM/SIGINT handlers: {error}")
            }
        }
    }
}

impl std::error::Error for ServeError {}

/// How long an error-close waits for the client's last bytes before closing, so the client reads
/// our answer instead of a reset.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes read and dropped while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// A request whose head or body is still incomplete after this long may be closed to make room
/// for a newcomer at the connection cap (a real client sends its request in one go).
pub const SLOW_REQUEST: Duration = Duration::from_secs(1);

/// How often the stop checks whether busy connections have finished.
const STOP_POLL: Duration = Duration::from_millis(10);

/// After a storm of at least this many open connections, the memory they used is handed back to
/// the operating system as soon as they have all closed.
const STORM_CONNECTIONS: usize = 128;

/// Otherwise free memory is handed back when the last connection closes, at most this often (a
/// probe every few seconds leaves the server at its idle size between probes).
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// File descriptors kept free for the listener, the log, signals, name lookups and the like.
const RESERVED_FDS: u64 = 32;

/// What a connection is doing, for the choice of whom to close at the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the first byte of a request (new, or between keep-alive requests).
    Idle { since: Instant },
    /// Receiving a request (head or body) since the first byte came.
    Reading { since: Instant },
    /// Answering: routing, probing, writing what the client reads.
    Busy,
    /// Writing answers the client does not read (its buffers are full) since then.
    Writing { since: Instant },
}

/// State shared by the accept loop and every connection (one thread: `Rc` and `Cell`).
struct Shared {
    config: Config,
    max_connections: usize,
    probe: Probe,
    ping: Coalescer<Verdict>,
    status_probe: Probe,
    /// The status page is shared by concurrent requests; each applies its own thresholds.
    status_page: Coalescer<Result<Status, Failure>>,
    metrics: Metrics,
    ok: http::Canned,
    not_found: http::Canned,
    not_allowed: http::Canned,
    conns: RefCell<BTreeMap<u64, Conn>>,
    next_id: Cell<u64>,
    rejecting: Cell<usize>,
    stopping: Cell<bool>,
    cap_log: Throttle,
    /// Most connections open at once since memory was last released.
    peak: Cell<usize>,
    /// When free memory was last handed back (never yet: `None`).
    trimmed: Cell<Option<Instant>>,
    /// When a connection last opened or closed (for `IDLE_EXIT`).
    last_activity: Cell<Instant>,
}

impl Shared {
    /// The state of a server for `config`, probing with `probe`, serving `max_connections`.
    fn new(config: Config, probe: Probe, max_connections: usize) -> Self {
        Self {
            max_connections,
            ping: Coalescer::new(config.coalesce, config.cache_ttl),
            status_probe: Probe::status(&config),
            status_page: Coalescer::new(config.coalesce, config.cache_ttl),
            metrics: Metrics::default(),
            ok: http::Canned::new(200, "ok\n"),
            not_found: http::Canned::new(404, "not found\n"),
            not_allowed: http::Canned::new(405, "method not allowed\n"),
            config,
            probe,
            conns: RefCell::new(BTreeMap::new()),
            next_id: Cell::new(0),
            rejecting: Cell::new(0),
            stopping: Cell::new(false),
            cap_log: Throttle::new(Duration::from_secs(10), 1),
            peak: Cell::new(0),
            trimmed: Cell::new(None),
            last_activity: Cell::new(Instant::now()),
        }
    }
}

/// An open connection: dropping it cancels its task, which closes the socket.
struct Conn {
    phase: Rc<Cell<Phase>>,
    _task: Task<()>,
}

/// Serves on the socket systemd passed, or else binds `config.server`, until SIGTERM or SIGINT
/// (or `IDLE_EXIT` without connections).
pub async fn serve(
    ex: Rc<LocalExecutor<'static>>,
    config: Config,
    inherited: Option<Inherited>,
) -> Result<(), ServeError> {
    let addr = config.server;
    let max_connections = fit_connection_cap(&config);
    let from_systemd = inherited.is_some();
    let listener = match inherited {
        Some(inherited) => Listener::inherit(inherited).map_err(ServeError::Inherited),
        None => Listener::bind(addr).map_err(|error| ServeError::Bind { addr, error }),
    }?;
    let signals = Signals::new([Signal::Term, Signal::Int]).map_err(ServeError::Signals)?;
    let probe = Probe::new(&config);
    info!(
        "listening on {}{}, probing {} {} (timeout {:?}, fail status {}, coalescing {}, cache {})",
        listener.describe(),
        if from_systemd {
            " (socket from systemd)"
        } else {
            ""
        },
        probe.label(),
        config.ping_path,
        config.timeout,
        config.fail_status,
        if config.coalesce { "on" } else { "off" },
        CacheTtl(config.cache_ttl),
    );
    // One shared clock for every wait of this thread (see `deadline`): no reactor wake-up per wait.
    let _ticker = ex.spawn(deadline::run_ticker());
    let shared = Rc::new(Shared::new(config, probe, max_connections));
    if let Err(error) = systemd::notify("READY=1") {
        warn!("cannot tell systemd we are ready (NOTIFY_SOCKET): {error}");
    }

    // The accept loop is a task of its own, so that it is polled only when the listener or a
    // signal is ready: the executor polls its main future at every wake-up of the thread, and
    // an accept or signal-pipe read that can only fail would cost two system calls each time.
    let accepting = ex.spawn(accept(
        Rc::clone(&ex),
        listener,
        signals,
        Rc::clone(&shared),
    ));
    let mut signals = accepting.await;
    if let Err(error) = systemd::notify("STOPPING=1") {
        warn!("cannot tell systemd we are stopping (NOTIFY_SOCKET): {error}");
    }
    // A second SIGTERM or SIGINT during the grace ends it: the connections still answering are
    // dropped with the executor.
    let second = async {
        if let Some(Ok(signal)) = signals.next().await {
            warn!(
                "received {} during the stop: exiting without waiting for the answering connections",
                signal_name(signal)
            );
        }
    };
    future::or(stop(&shared), second).await;
    Ok(())
}

/// `CACHE_TTL` for the start-up line: `off`, or the duration.
struct CacheTtl(Duration);

impl fmt::Display for CacheTtl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            f.write_str("off")
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// The name of a signal we handle.
fn signal_name(signal: Signal) -> &'static str {
    match signal {
        Signal::Int => "SIGINT",
        _ => "SIGTERM",
    }
}

/// Accepts connections until SIGTERM or SIGINT; gives the signal stream back for the stop.
async fn accept(
    ex: Rc<LocalExecutor<'static>>,
    listener: Listener,
    mut signals: Signals,
    shared: Rc<Shared>,
) -> Signals {
    loop {
        // The signal first: a connection flood must not delay the stop.
        let stop = async {
            stop_signal(&mut signals).await;
            None
        };
        // Then a waiting connection, before an idle exit that would drop it.
        let accepted = future::or(
            stop,
            future::or(async { Some(listener.accept().await) }, idle_exit(&shared)),
        )
        .await;
        match accepted {
            Some(Ok(stream)) => admit(&ex, &shared, stream),
            Some(Err(error)) if out_of_resources(&error) => {
                // Free a descriptor if we can, and do not spin; a signal still stops at once.
                make_room(&shared, Instant::now());
                if let Gate::Log { suppressed } = shared.cap_log.gate(Instant::now()) {
                    warn!("accept failed: {error} ({suppressed} similar events not logged); retrying in {ACCEPT_BACKOFF:?}");
                }
                let backoff = async {
                    Timer::after(ACCEPT_BACKOFF).await;
                    false
                };
                let signalled = async {
                    stop_signal(&mut signals).await;
                    true
                };
                if future::or(signalled, backoff).await {
                    break;
                }
            }
            Some(Err(error)) => {
                // That one connection failed (ECONNABORTED: reset before we took it); the
                // others are fine.
                if let Gate::Log { suppressed } = shared.cap_log.gate(Instant::now()) {
                    warn!("accept failed: {error} ({suppressed} similar events not logged)");
                }
            }
            None => break,
        }
        // Let the connections run between accepts, even while a flood keeps the backlog full.
        future::yield_now().await;
    }
    signals
}

/// Waits for SIGTERM or SIGINT and says so.
async fn stop_signal(signals: &mut Signals) {
    let name = match signals.next().await {
        Some(Ok(signal)) => signal_name(signal),
        _ => "SIGTERM",
    };
    info!("received {name}, stopping");
}

/// Whether a failed `accept` means the process or system ran out of descriptors or memory
/// (wait a moment and make room), rather than one connection failing (go on at once).
fn out_of_resources(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    ) || error.kind() == io::ErrorKind::OutOfMemory
}

/// Completes (with `None`, "stop") once `IDLE_EXIT` has passed without an open connection; never
/// when `IDLE_EXIT` is off.
async fn idle_exit<T>(shared: &Shared) -> Option<T> {
    let Some(idle) = shared.config.idle_exit else {
        return future::pending().await;
    };
    loop {
        let since = shared.last_activity.get();
        let due = deadline::later(since, idle);
        // Through the shared deadline wheel: no reactor timer re-armed at every accept.
        deadline::at(due, future::pending::<()>()).await;
        if shared.conns.borrow().is_empty() && shared.last_activity.get() == since {
            info!("no connection for {idle:?} (IDLE_EXIT): exiting");
            return None;
        }
        if !shared.conns.borrow().is_empty() {
            // Look again once the connections are gone and another idle period has passed.
            shared.last_activity.set(Instant::now());
        }
    }
}

/// The connection cap the open-file limit can hold: raises the soft limit to the hard one if
/// needed, and lowers the cap (with a warning) if even that is not enough. Each connection needs
/// one descriptor, and one more while it probes when coalescing is off.
fn fit_connection_cap(config: &Config) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

    let per_connection: u64 = if config.coalesce { 1 } else { 2 };
    let wanted = u64::try_from(config.max_connections)
        .unwrap_or(u64::MAX)
        .saturating_mul(per_connection)
        .saturating_add(u64::try_from(MAX_REJECTING).unwrap_or(u64::MAX))
        .saturating_add(RESERVED_FDS);
    let limit = getrlimit(Resource::Nofile);
    let mut soft = limit.current.unwrap_or(u64::MAX);
    if soft < wanted {
        let raised = limit.maximum.map_or(wanted, |hard| hard.min(wanted));
        if setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(raised),
                maximum: limit.maximum,
            },
        )
        .is_ok()
        {
            soft = raised;
        }
    }
    if soft >= wanted {
        return config.max_connections;
    }
    let fit = soft
        .saturating_sub(u64::try_from(MAX_REJECTING).unwrap_or(u64::MAX))
        .saturating_sub(RESERVED_FDS)
        .checked_div(per_connection)
        .unwrap_or(0)
        .max(1);
    let fit = usize::try_from(fit)
        .unwrap_or(config.max_connections)
        .min(config.max_connections);
    warn!(
        "MAX_CONNECTIONS={} needs {wanted} open files but the limit (ulimit -n) is {soft}: serving at most {fit} connections; raise the limit or lower MAX_CONNECTIONS",
        config.max_connections
    );
    fit
}

/// Starts serving `stream`, making room at the cap or refusing it.
fn admit(ex: &LocalExecutor<'_>, shared: &Rc<Shared>, stream: Stream) {
    let now = Instant::now();
    shared.last_activity.set(now);
    let full = shared.conns.borrow().len() >= shared.max_connections;
    if full && !make_room(shared, now) {
        refuse(ex, shared, stream);
        return;
    }
    let id = shared.next_id.get();
    shared.next_id.set(id.wrapping_add(1));
    let phase = Rc::new(Cell::new(Phase::Idle { since: now }));
    let task = ex.spawn(connection(Rc::clone(shared), stream, Rc::clone(&phase), id));
    let open = {
        let mut conns = shared.conns.borrow_mut();
        conns.insert(id, Conn { phase, _task: task });
        conns.len()
    };
    shared.peak.set(shared.peak.get().max(open));
}

/// Closes one connection to make room: the one idle the longest, else the oldest one stuck in a
/// request for more than [`SLOW_REQUEST`]. `false` when there is none.
fn make_room(shared: &Shared, now: Instant) -> bool {
    let mut conns = shared.conns.borrow_mut();
    let pick = |want_idle: bool| {
        conns
            .iter()
            .filter_map(|(id, conn)| match conn.phase.get() {
                Phase::Idle { since } if want_idle => Some((since, *id)),
                Phase::Reading { since } | Phase::Writing { since }
                    if !want_idle && now.saturating_duration_since(since) > SLOW_REQUEST =>
                {
                    Some((since, *id))
                }
                _ => None,
            })
            .min()
            .map(|(_, id)| id)
    };
    let Some(id) = pick(true).or_else(|| pick(false)) else {
        return false;
    };
    let closed = conns.remove(&id);
    drop(conns);
    drop(closed);
    debug!("connection cap reached: closed an idle or stalled connection to make room");
    true
}

/// Answers `503` to a newcomer when every connection is busy, within a short deadline.
fn refuse(ex: &LocalExecutor<'_>, shared: &Rc<Shared>, stream: Stream) {
    if let Gate::Log { suppressed } = shared.cap_log.gate(Instant::now()) {
        warn!(
            "all {} connections (MAX_CONNECTIONS) are busy: refusing newcomers with 503 ({suppressed} similar events not logged)",
            shared.max_connections
        );
    }
    if shared.rejecting.get() >= MAX_REJECTING {
        return; // dropping the stream closes it
    }
    shared
        .rejecting
        .set(shared.rejecting.get().saturating_add(1));
    let shared = Rc::clone(shared);
    ex.spawn(async move {
        let mut client = Client::new(stream);
        let body = "busy: every connection is in use (MAX_CONNECTIONS); retry\n";
        let response = http::Response {
            status: 503,
            body,
            head_only: false,
            close: true,
        };
        http::render(&mut client.out, response);
        let _ = deadline::at(
            deadline::after(REJECT_WRITE_TIMEOUT),
            client.close_after_error(),
        )
        .await;
        shared
            .rejecting
            .set(shared.rejecting.get().saturating_sub(1));
    })
    .detach();
}

/// Stops: connections waiting for a client close now; answering ones may finish within
/// `TIMEOUT` + 1 s.
async fn stop(shared: &Shared) {
    shared.stopping.set(true);
    let grace = deadline::after(shared.config.timeout.saturating_add(Duration::from_secs(1)));
    loop {
        let waiting: Vec<Conn> = {
            let mut conns = shared.conns.borrow_mut();
            let ids: Vec<u64> = conns
                .iter()
                .filter(|(_, c)| c.phase.get() != Phase::Busy)
                .map(|(id, _)| *id)
                .collect();
            ids.iter().filter_map(|id| conns.remove(id)).collect()
        };
        drop(waiting);
        if shared.conns.borrow().is_empty() || Instant::now() >= grace {
            break;
        }
        Timer::after(STOP_POLL).await;
    }
    let left = std::mem::take(&mut *shared.conns.borrow_mut());
    if !left.is_empty() {
        warn!("stopped with {} connections still answering", left.len());
    }
    drop(left);
    info!("stopped");
}

/// One connection's task: serve it, then leave the table.
async fn connection(shared: Rc<Shared>, stream: Stream, phase: Rc<Cell<Phase>>, id: u64) {
    Client::new(stream).serve(&shared, &phase).await;
    let (own, open) = {
        let mut conns = shared.conns.borrow_mut();
        (conns.remove(&id), conns.len())
    };
    let now = Instant::now();
    shared.last_activity.set(now);
    // Dropping our own task handle here is fine: the task completes in this very poll.
    drop(own);
    if open == 0 {
        let storm = shared.peak.replace(0) >= STORM_CONNECTIONS;
        let due = shared
            .trimmed
            .get()
            .is_none_or(|last| now.saturating_duration_since(last) >= TRIM_INTERVAL);
        if storm || due {
            debug!("no connection open: releasing free memory");
            shared.trimmed.set(Some(now));
            crate::sys::release_free_memory();
        }
    }
}

/// The answer to one request: fixed bytes, or a status with a one-line text.
enum Reply<'a> {
    Canned(&'a http::Canned),
    Text(u16, String),
    Metrics(String),
}

/// php-fpm's status page, fetched once for all concurrent requests (`/fcgi-status` with any
/// thresholds, `/metrics`), and counted.
async fn status_page(shared: &Shared) -> Result<Status, Failure> {
    let started = Instant::now();
    let (page, source) = shared
        .status_page
        .run(|| shared.status_probe.fetch_status())
        .await;
    shared
        .metrics
        .record(metrics::Kind::Status, &page, source, started.elapsed());
    if let (Ok(page), Source::Ran) = (&page, source) {
        shared.metrics.saw_pool(page);
    }
    page
}

/// How a read for more request bytes ended.
enum Read {
    Data,
    Closed,
    TimedOut,
}

/// One HTTP client: the socket, unparsed input, queued output.
struct Client {
    stream: Stream,
    buf: Vec<u8>,
    out: Vec<u8>,
    /// Whether a response has been queued on this connection.
    answered: bool,
}

impl Client {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            out: Vec::new(),
            answered: false,
        }
    }

    /// The keep-alive loop: read a head, drain its body, answer, repeat.
    async fn serve(&mut self, shared: &Shared, phase: &Cell<Phase>) {
        let timeout = shared.config.client_timeout;
        loop {
            let deadline = deadline::after(timeout);
            let head = loop {
                match http::parse_head(&self.buf) {
                    Ok(Some(head)) => break head,
                    Ok(None) => {}
                    Err(error) => {
                        debug!("bad request head ({error:?}), answering {}", error.status());
                        let body = "the request head is malformed or too large\n";
                        self.answer_error(error.status(), body).await;
                        return;
                    }
                }
                if !self.flush(timeout, phase).await
                    || (self.buf.is_empty() && shared.stopping.get())
                {
                    return;
                }
                let between_requests = self.buf.is_empty();
                let read = self.read_more(deadline, phase, between_requests).await;
                match read {
                    Read::Data => {}
                    Read::Closed => return,
                    Read::TimedOut if self.buf.is_empty() => return,
                    Read::TimedOut => {
                        let body = "the request did not arrive in time (CLIENT_TIMEOUT)\n";
                        self.answer_error(408, body).await;
                        return;
                    }
                }
            };
            self.buf.drain(..head.len.min(self.buf.len()));

            let mut close = !head.keep_alive;
            match head.body {
                Body::None => {}
                Body::Length(len) if len <= MAX_DRAINED_BODY => {
                    match self.discard(len, deadline, phase).await {
                        Read::Data => {}
                        Read::Closed => return,
                        Read::TimedOut => {
                            let body = "the request did not arrive in time (CLIENT_TIMEOUT)\n";
                            self.answer_error(408, body).await;
                            return;
                        }
                    }
                }
                Body::Length(_) | Body::Chunked => close = true,
            }

            phase.set(Phase::Busy);
            let reply = match (head.route, head.method) {
                (Route::NotFound, _) => Reply::Canned(&shared.not_found),
                (_, Method::Other) => Reply::Canned(&shared.not_allowed),
                (Route::Health, _) => Reply::Canned(&shared.ok),
                (Route::Status, _) if shared.config.status_path.is_none() => Reply::Text(
                    404,
                    "not found: the status page is off (STATUS_PATH=off)\n".to_owned(),
                ),
                (Route::Status, _) => {
                    match status::parse_thresholds(head.query.as_deref().unwrap_or_default()) {
                        Err(message) => Reply::Text(400, format!("{message}\n")),
                        Ok(thresholds) => {
                            if !self.flush(timeout, phase).await {
                                return;
                            }
                            match status_page(shared).await {
                                Ok(page) => {
                                    let failed = status::evaluate(&page, &thresholds);
                                    let code = if failed.is_empty() {
                                        200
                                    } else {
                                        shared.config.fail_status
                                    };
                                    Reply::Text(code, status::render(&page, &failed))
                                }
                                Err(failure) => {
                                    Reply::Text(shared.config.fail_status, format!("{failure}\n"))
                                }
                            }
                        }
                    }
                }
                (Route::Metrics, _) => {
                    if !self.flush(timeout, phase).await {
                        return;
                    }
                    let page = match shared.config.status_path {
                        Some(_) => Some(status_page(shared).await),
                        None => None,
                    };
                    if let Some(Err(_)) = page {
                        shared.metrics.scrape_failed();
                    }
                    let open = shared.conns.borrow().len();
                    Reply::Metrics(metrics::render(&shared.metrics, open, page.as_ref()))
                }
                (Route::Ping, _) => {
                    if !self.flush(timeout, phase).await {
                        return;
                    }
                    let started = Instant::now();
                    let (verdict, source) = shared.ping.run(|| shared.probe.run()).await;
                    shared
                        .metrics
                        .record_ping(&verdict, source, started.elapsed());
                    match verdict {
                        Ok(()) => Reply::Canned(&shared.ok),
                        Err(failure) => {
                            Reply::Text(shared.config.fail_status, format!("{failure}\n"))
                        }
                    }
                }
            };
            close |= shared.stopping.get();
            self.answered = true;
            let head_only = head.method == Method::Head;
            match reply {
                Reply::Canned(canned) => self.out.extend_from_slice(canned.bytes(head_only, close)),
                Reply::Text(status, body) => {
                    let response = http::Response {
                        status,
                        body: &body,
                        head_only,
                        close,
                    };
                    http::render(&mut self.out, response);
                }
                Reply::Metrics(body) => {
                    let response = http::Response {
                        status: 200,
                        body: &body,
                        head_only,
                        close,
                    };
                    http::render_typed(&mut self.out, response, http::PROMETHEUS_TEXT);
                }
            }
            if close {
                // A body we did not read (chunked, too large) would turn the close into a reset
                // that can destroy the answer in flight: linger as after an error.
                let unread = !self.buf.is_empty()
                    || !matches!(head.body, Body::None | Body::Length(0..=MAX_DRAINED_BODY));
                if unread {
                    let _ = deadline::at(deadline::after(LINGER), self.close_after_error()).await;
                } else {
                    self.flush(timeout, phase).await;
                }
                return;
            }
            if self.out.len() >= MAX_QUEUED_RESPONSE_BYTES && !self.flush(timeout, phase).await {
                return;
            }
        }
    }

    /// Reads more request bytes (never more than one head's worth), keeping `phase` up to date:
    /// idle while nothing of the next request has come (`between_requests`), reading from its
    /// first byte until its body is in, with the time of that first byte.
    async fn read_more(
        &mut self,
        deadline: Instant,
        phase: &Cell<Phase>,
        between_requests: bool,
    ) -> Read {
        let start = self.buf.len();
        let room = MAX_HEAD_BYTES.saturating_sub(start).min(HTTP_READ_CHUNK);
        if room == 0 {
            return Read::Closed;
        }
        let now = Instant::now();
        match (phase.get(), between_requests) {
            (Phase::Idle { .. }, true) | (Phase::Reading { .. }, false) => {}
            (_, true) => phase.set(Phase::Idle { since: now }),
            (_, false) => phase.set(Phase::Reading { since: now }),
        }
        if between_requests && self.answered {
            // A client reads our answer before it sends its next request: wait for it rather
            // than try a read that cannot succeed yet (one system call less per request).
            match deadline::at(deadline, self.stream.readable()).await {
                Some(Ok(())) => {}
                Some(Err(_)) => return Read::Closed,
                None => return Read::TimedOut,
            }
        }
        self.buf.resize(start.saturating_add(room), 0);
        let spare = self.buf.get_mut(start..).unwrap_or_default();
        let read = deadline::at(deadline, self.stream.read(spare)).await;
        let (filled, outcome) = match read {
            Some(Ok(0)) | Some(Err(_)) => (0, Read::Closed),
            Some(Ok(n)) => (n, Read::Data),
            None => (0, Read::TimedOut),
        };
        self.buf.truncate(start.saturating_add(filled));
        if filled > 0 && start == 0 {
            phase.set(Phase::Reading {
                since: Instant::now(),
            });
        }
        outcome
    }

    /// Reads and drops a request body of `len` bytes.
    async fn discard(&mut self, len: u64, deadline: Instant, phase: &Cell<Phase>) -> Read {
        let mut remaining = len;
        loop {
            let buffered = u64::try_from(self.buf.len()).unwrap_or(u64::MAX);
            let take = remaining.min(buffered);
            self.buf.drain(
                ..usize::try_from(take)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len()),
            );
            remaining = remaining.saturating_sub(take);
            if remaining == 0 {
                return Read::Data;
            }
            match self.read_more(deadline, phase, false).await {
                Read::Data => {}
                other => return other,
            }
        }
    }

    /// Writes the queued responses within `timeout`; `false` if the client is gone or too slow.
    /// While a write waits for a client that does not read, `phase` says so: at the cap, such
    /// a connection gives way to a newcomer after [`SLOW_REQUEST`].
    async fn flush(&mut self, timeout: Duration, phase: &Cell<Phase>) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let deadline = deadline::after(timeout);
        let written = {
            let mut write = std::pin::pin!(self.stream.write_all(&self.out));
            match future::poll_once(&mut write).await {
                Some(done) => Some(done),
                None => {
                    let before = phase.replace(Phase::Writing {
                        since: Instant::now(),
                    });
                    let done = deadline::at(deadline, write).await;
                    phase.set(before);
                    done
                }
            }
        };
        self.out.clear();
        if self.out.capacity() > MAX_QUEUED_RESPONSE_BYTES {
            self.out = Vec::new();
        }
        matches!(written, Some(Ok(())))
    }

    /// Answers `status` with a close, then lingers so the client reads it.
    async fn answer_error(&mut self, status: u16, body: &str) {
        let response = http::Response {
            status,
            body,
            head_only: false,
            close: true,
        };
        http::render(&mut self.out, response);
        let _ = deadline::at(deadline::after(LINGER), self.close_after_error()).await;
    }

    /// Writes what is queued, shuts down our side, and reads what the client still sends
    /// (bounded) so that closing does not reset the connection before it reads our answer.
    async fn close_after_error(&mut self) {
        if self.stream.write_all(&self.out).await.is_err() {
            return;
        }
        self.out.clear();
        self.stream.shutdown_write();
        let mut dropped = 0usize;
        while dropped < LINGER_BYTES {
            self.buf.clear();
            self.buf.resize(HTTP_READ_CHUNK, 0);
            match self.stream.read(&mut self.buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => dropped = dropped.saturating_add(n),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_io::Async;
    use std::net::{TcpListener, TcpStream};

    /// An open connection costs its task's future plus at most one read chunk while it waits:
    /// the probe's sockets, timer and decoder live on the heap only while a probe runs.
    #[test]
    fn a_failing_inherited_socket_is_not_called_server() {
        let error = ServeError::Inherited(io::Error::from_raw_os_error(libc::EPERM));
        let message = error.to_string();
        assert!(message.contains("LISTEN_FDS"), "{message}");
        assert!(!message.contains("SERVER"), "{message}");
    }

    #[test]
    fn only_running_out_of_resources_backs_off_accepting() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(
                out_of_resources(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR] {
            assert!(
                !out_of_resources(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
    }

    /// Net bytes this thread holds on the heap (allocated minus freed), for the memory test.
    mod held {
        use std::alloc::{GlobalAlloc, Layout, System};
        use std::cell::Cell;

        thread_local! {
            static HELD: Cell<isize> = const { Cell::new(0) };
        }

        fn add(bytes: usize, sign: isize) {
            let bytes = isize::try_from(bytes).unwrap_or(isize::MAX);
            let _ =
                HELD.try_with(|held| held.set(held.get().wrapping_add(bytes.wrapping_mul(sign))));
        }

        pub struct Counting;

        // SAFETY: every call goes to the system allocator unchanged; the bookkeeping is a
        // const-initialised thread-local `Cell` without destructor, which never allocates.
        #[allow(unsafe_code)]
        unsafe impl GlobalAlloc for Counting {
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                add(layout.size(), 1);
                // SAFETY: forwarded with the caller's layout.
                unsafe { System.alloc(layout) }
            }

            unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
                add(layout.size(), -1);
                // SAFETY: `ptr` came from `alloc` above with this layout.
                unsafe { System.dealloc(ptr, layout) }
            }
        }

        pub fn now() -> isize {
            HELD.with(Cell::get)
        }
    }

    #[global_allocator]
    static ALLOCATOR: held::Counting = held::Counting;

    /// An open connection waiting for its request costs its task (the future plus the
    /// executor's header), its deadline's entry and one read chunk ([`HTTP_READ_CHUNK`]), on
    /// the heap (measured, not only the future's size): the probe's
    /// sockets, timer and decoder live there only while a probe runs.
    #[test]
    fn a_waiting_connection_is_small() {
        let Ok(crate::config::Command::Serve(config)) = crate::config::parse(&[], |_| None) else {
            panic!("default config");
        };
        let ex = LocalExecutor::new();
        async_io::block_on(ex.run(async {
            let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let stream = Async::<TcpStream>::connect(listener.get_ref().local_addr().unwrap())
                .await
                .unwrap();
            let probe = Probe::new(&config);
            let shared = Rc::new(Shared::new(config, probe, 1));
            let phase = Rc::new(Cell::new(Phase::Busy));
            let future = connection(Rc::clone(&shared), Stream::Tcp(stream), phase, 0);
            let future_size = std::mem::size_of_val(&future);
            assert!(future_size <= 1024, "the future alone is {future_size} bytes");
            // As when serving: the shared deadline wheel, already running.
            let _ticker = ex.spawn(deadline::run_ticker());
            future::yield_now().await;
            let before = held::now();
            let task = ex.spawn(future);
            // Let it run until it waits for the client's first byte.
            for _ in 0..10 {
                future::yield_now().await;
            }
            let held = held::now().wrapping_sub(before);
            assert!(!task.is_finished());
            // The rest: the executor's task header and waker, the wheel's entry (about 500 bytes).
            let bound = isize::try_from(future_size + HTTP_READ_CHUNK + 1024).unwrap();
            assert!(
                held <= bound,
                "a waiting connection holds {held} bytes of heap (bound {bound}; the future is {future_size})"
            );
            drop(task);
        }));
    }
}
