//! The server: the listener and the accept loop, the connection table and its cap, each
//! connection as read a request, then respond, then send, and the orderly stop.
//!
//! Rooms: `table` (who is open, whom to close at the cap), `connection` (one client's
//! loop, and what happens when its task is dropped at any await), `respond` (the reply to a
//! request, owning no socket), `housekeeping` (memory trim, idle exit). This file wires them:
//! accept, admit or refuse, stop.
//!
//! Invariants:
//! - At most `MAX_CONNECTIONS` connections are served at once (fewer if the open-file limit
//!   cannot hold them, said at start); see `table` for whom the cap closes.
//! - Every wait has a deadline: a request (head and body) and a keep-alive pause within
//!   `CLIENT_TIMEOUT`, a write within `CLIENT_TIMEOUT`, a probe within `TIMEOUT`, the stop within
//!   `TIMEOUT` + 1 s, or at once on a second SIGTERM or SIGINT.
//! - A connection buffers at most one request head ([`MAX_HEAD_BYTES`]) and a few queued
//!   responses ([`MAX_QUEUED_RESPONSE_BYTES`]).
//!
//! [`MAX_HEAD_BYTES`]: crate::limits::MAX_HEAD_BYTES
//! [`MAX_QUEUED_RESPONSE_BYTES`]: crate::limits::MAX_QUEUED_RESPONSE_BYTES

mod connection;
mod housekeeping;
mod pool;
mod pools;
mod respond;
mod table;

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use async_signal::{Signal, Signals};
use log::{info, warn};
use smol::future;
use smol::stream::StreamExt;
use smol::LocalExecutor;
use smol::Timer;

use crate::config::Config;
use crate::deadline;
use crate::limits::{ACCEPT_BACKOFF, REJECT_WRITE_TIMEOUT};
use crate::os::socket::{Listener, Stream};
use crate::os::systemd::{self, Inherited};

use connection::Client;
use housekeeping::Housekeeping;
use respond::Probing;
use table::{Phase, Table};

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

/// How often the stop checks whether busy connections have finished.
const STOP_POLL: Duration = Duration::from_millis(10);

/// State shared by the accept loop and every connection (one thread: `Rc` and `Cell`), by
/// concern.
pub(crate) struct Shared {
    config: Config,
    /// The probes, their single-flight, the metrics.
    probing: Probing,
    /// The open connections and the cap.
    table: Table,
    /// Memory trim and idle exit.
    house: Housekeeping,
}

impl Shared {
    /// The state of a server for `config`, serving `max_connections`; pools' keepers run on
    /// `ex` (which it does not own: the executor owns the connections, which own this).
    fn new(config: Config, ex: &Rc<LocalExecutor<'static>>, max_connections: usize) -> Self {
        Self {
            probing: Probing::new(&config, ex),
            table: Table::new(max_connections),
            house: Housekeeping::new(),
            config,
        }
    }
}

/// Serves on the socket systemd passed, or else binds `config.server`, until SIGTERM or SIGINT
/// (or `IDLE_EXIT` without connections).
pub async fn run(
    ex: Rc<LocalExecutor<'static>>,
    config: Config,
    inherited: Option<Inherited>,
) -> Result<(), ServeError> {
    let addr = config.server;
    let max_connections = table::fit_connection_cap(&config);
    let from_systemd = inherited.is_some();
    let listener = match inherited {
        Some(inherited) => Listener::inherit(inherited).map_err(ServeError::Inherited),
        None => Listener::bind(addr).map_err(|error| ServeError::Bind { addr, error }),
    }?;
    let signals = Signals::new([Signal::Term, Signal::Int]).map_err(ServeError::Signals)?;
    // One shared clock for every wait of this thread (see `deadline`): no reactor wake-up per wait.
    let _ticker = ex.spawn(deadline::run_ticker());
    let shared = Rc::new(Shared::new(config, &ex, max_connections));
    #[cfg(test)]
    tests::SERVED.with(|served| *served.borrow_mut() = Rc::downgrade(&shared));
    let config = &shared.config;
    info!(
        "listening on {}{}, probing {} {} (timeout {:?}, fail status {}, coalescing {}, cache {})",
        listener.describe(),
        if from_systemd {
            " (socket from systemd)"
        } else {
            ""
        },
        shared.probing.pools.describe(),
        config.ping_path,
        config.timeout,
        config.fail_status,
        if config.coalesce { "on" } else { "off" },
        CacheTtl(config.cache_ttl),
    );
    if let Err(error) = systemd::notify("READY=1") {
        warn!("cannot tell systemd we are ready (NOTIFY_SOCKET): {error}");
    }

    // The signal pipe and the accept loop are tasks of their own, each polled only when its
    // socket is ready: the executor polls its main future at every wake-up of the thread, and
    // async-io tries a read of the pipe at every poll, so a signal-pipe read or an accept that
    // can only fail would cost a system call each time (two per accepted connection, when the
    // accept loop also watched the pipe).
    let (signalled, received) = smol::channel::bounded(2);
    let _signals = ex.spawn(forward_signals(signals, signalled));
    let accepting = ex.spawn(accept(
        Rc::clone(&ex),
        listener,
        received.clone(),
        Rc::clone(&shared),
    ));
    accepting.await;
    // The keepers of busy probes' connections (one task per pool, never on a probe's path) are
    // dropped, which closes a kept connection, as soon as the stop begins.
    shared.probing.pools.stop();
    if let Err(error) = systemd::notify("STOPPING=1") {
        warn!("cannot tell systemd we are stopping (NOTIFY_SOCKET): {error}");
    }
    // A second SIGTERM or SIGINT during the grace ends it: the connections still answering are
    // dropped with the executor.
    let second = async {
        if let Ok(signal) = received.recv().await {
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

/// Passes each SIGTERM or SIGINT on; a failed signal pipe counts as SIGTERM (and ends it).
async fn forward_signals(mut signals: Signals, to: smol::channel::Sender<Signal>) {
    loop {
        let (signal, failed) = match signals.next().await {
            Some(Ok(signal)) => (signal, false),
            _ => (Signal::Term, true),
        };
        if to.send(signal).await.is_err() || failed {
            return;
        }
    }
}

/// Waits for SIGTERM or SIGINT and says so.
async fn stop_signal(received: &smol::channel::Receiver<Signal>) {
    let name = match received.recv().await {
        Ok(signal) => signal_name(signal),
        Err(_) => "SIGTERM",
    };
    info!("received {name}, stopping");
}

/// What a failed `accept` means for the accept loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AcceptError {
    /// The process or system ran out of descriptors or memory: make room, wait a moment.
    OutOfResources,
    /// That one connection failed before we took it (reset, a network error passed on by
    /// accept(2), a firewall's verdict): go on at once.
    OneConnection,
    /// Anything else is the listening socket's own trouble, which may persist: wait a moment,
    /// so the loop never spins.
    Listener,
}

fn accept_error(error: &io::Error) -> AcceptError {
    match error.raw_os_error() {
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM) => {
            AcceptError::OutOfResources
        }
        Some(
            libc::ECONNABORTED
            | libc::EPROTO
            | libc::EPERM
            | libc::EINTR
            | libc::ENETDOWN
            | libc::ENETUNREACH
            | libc::ENOPROTOOPT
            | libc::EHOSTDOWN
            | libc::EHOSTUNREACH
            | libc::ENONET,
        ) => AcceptError::OneConnection,
        _ if error.kind() == io::ErrorKind::OutOfMemory => AcceptError::OutOfResources,
        _ => AcceptError::Listener,
    }
}

/// Accepts connections until SIGTERM or SIGINT.
async fn accept(
    ex: Rc<LocalExecutor<'static>>,
    listener: Listener,
    signals: smol::channel::Receiver<Signal>,
    shared: Rc<Shared>,
) {
    let idle = shared.config.idle_exit;
    // One wait for the signal for the whole loop (polling the channel costs no system call).
    let mut stop = std::pin::pin!(stop_signal(&signals));
    loop {
        // The signal first: a connection flood must not delay the stop.
        let signalled = async {
            (&mut stop).await;
            None
        };
        // Then a waiting connection, before an idle exit that would drop it.
        let accepted = future::or(
            signalled,
            future::or(
                async { Some(listener.accept().await) },
                shared.house.idle_exit(&shared.table, idle),
            ),
        )
        .await;
        match accepted {
            Some(Ok(stream)) => admit(&ex, &shared, stream),
            Some(Err(error)) => {
                let kind = accept_error(&error);
                if kind == AcceptError::OneConnection {
                    shared.table.log_accept_error(&error, None);
                } else {
                    if kind == AcceptError::OutOfResources {
                        // Free a descriptor if we can.
                        shared.table.make_room(Instant::now());
                    }
                    shared.table.log_accept_error(&error, Some(ACCEPT_BACKOFF));
                    // Do not spin; a signal still stops at once.
                    let backoff = async {
                        Timer::after(ACCEPT_BACKOFF).await;
                        false
                    };
                    let signalled = async {
                        (&mut stop).await;
                        true
                    };
                    if future::or(signalled, backoff).await {
                        break;
                    }
                }
            }
            None => break,
        }
        // Let the connections run between accepts, even while a flood keeps the backlog full.
        future::yield_now().await;
    }
}

/// Starts serving `stream`, making room at the cap or refusing it.
fn admit(ex: &LocalExecutor<'_>, shared: &Rc<Shared>, stream: Stream) {
    let now = Instant::now();
    shared.house.arrived(now);
    if shared.table.is_full() && !shared.table.make_room(now) {
        refuse(ex, shared, stream);
        return;
    }
    let id = shared.table.next_id();
    let phase = Rc::new(Cell::new(Phase::Idle { since: now }));
    let task = ex.spawn(connection::run(
        Rc::clone(shared),
        stream,
        Rc::clone(&phase),
        id,
    ));
    let open = shared.table.insert(id, phase, task);
    shared.house.opened(open);
}

/// Answers `503` to a newcomer when every connection is busy, within a short deadline; past
/// [`crate::limits::MAX_REJECTING`] such answers at once, closes it without a word.
fn refuse(ex: &LocalExecutor<'_>, shared: &Rc<Shared>, stream: Stream) {
    if !shared.table.refusing() {
        return; // dropping the stream closes it
    }
    let shared = Rc::clone(shared);
    ex.spawn(async move {
        Client::new(stream).refuse(REJECT_WRITE_TIMEOUT).await;
        shared.table.refused();
    })
    .detach();
}

/// Stops: connections waiting for a client close now; answering ones may finish within
/// `TIMEOUT` + 1 s.
async fn stop(shared: &Shared) {
    let grace = deadline::after(shared.config.timeout.saturating_add(Duration::from_secs(1)));
    while shared.table.close_waiting() > 0 && Instant::now() < grace {
        Timer::after(STOP_POLL).await;
    }
    let left = shared.table.close_all();
    if left > 0 {
        warn!("stopped with {left} connections still answering");
    }
    info!("stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::HTTP_READ_CHUNK;
    use smol::Async;
    use std::cell::RefCell;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::rc::Weak;

    thread_local! {
        /// The state of the last server `run` on this thread, for the ownership test.
        pub(super) static SERVED: RefCell<Weak<Shared>> = const { RefCell::new(Weak::new()) };
    }

    /// Sends `signal` to this process (whose server has its handlers installed).
    fn signal_self(signal: rustix::process::Signal) {
        let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
    }

    /// Polls `ready` every 10 ms for up to 10 s; panics naming `what` if it never holds.
    fn poll_until(what: &str, mut ready: impl FnMut() -> bool) {
        let until = deadline::after(Duration::from_secs(10));
        while !ready() {
            assert!(Instant::now() < until, "{what} within 10 s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Ownership flows one way (tasks own the server's state, not the reverse): after `run`
    /// returns with a connection still answering (a second SIGTERM ends the stop's grace), the
    /// executor is ours alone, and dropping it drops the server's state and every pool, with
    /// a `POOLS=dir:` discovery task and a kept connection's keeper running.
    #[test]
    fn run_leaves_no_rc_behind() {
        let dir = std::env::temp_dir().join(format!("fch-rc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("www.sock");
        // A php-fpm that takes connections into its queue and never answers.
        let _silent = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = format!("127.0.0.1:{port}");
        let pools = format!("dir:{}", dir.display());
        let env = |name: &str| match name {
            "SERVER" => Some(server.clone().into()),
            "POOLS" => Some(pools.clone().into()),
            "TIMEOUT" => Some("30s".into()),
            "RUST_LOG" => Some("off".into()),
            _ => None,
        };
        let Ok(crate::config::Command::Serve(config)) = crate::config::parse(&[], env) else {
            panic!("the test's config");
        };
        let addr = config.server;
        let queued = socket.clone();
        let client = std::thread::spawn(move || {
            // Once /health answers, the accept loop runs and the signal handlers are installed.
            poll_until("/health to answer", || {
                let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
                    return false;
                };
                let _ = stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
                let mut head = [0u8; 12];
                stream.read_exact(&mut head).is_ok() && head.ends_with(b"200")
            });
            let mut waiting = std::net::TcpStream::connect(addr).unwrap();
            waiting
                .write_all(b"GET /fcgi-ping/www HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            poll_until("the probe to wait in php-fpm's queue", || {
                matches!(
                    crate::os::listen_queue::unix(&queued),
                    crate::os::listen_queue::View::Seen(queue) if queue.queued >= 1
                )
            });
            signal_self(rustix::process::Signal::TERM);
            poll_until("the listener to close", || {
                std::net::TcpStream::connect(addr).is_err()
            });
            signal_self(rustix::process::Signal::TERM);
            waiting
        });
        let ex: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
        let served = smol::block_on(ex.run(run(Rc::clone(&ex), config, None)));
        assert!(served.is_ok(), "{served:?}");
        let _waiting = client.join().unwrap();
        let shared = SERVED.with(|served| served.borrow().clone());
        let pools: Vec<Weak<pool::Pool>> = {
            let shared = shared
                .upgrade()
                .expect("a connection still answering holds the state");
            shared
                .probing
                .pools
                .all()
                .iter()
                .map(Rc::downgrade)
                .collect()
        };
        assert_eq!(pools.len(), 1);
        assert_eq!(
            Rc::strong_count(&ex),
            1,
            "the server still holds the executor"
        );
        drop(ex);
        assert_eq!(
            shared.strong_count(),
            0,
            "the server's state outlived its executor"
        );
        for pool in pools {
            assert_eq!(pool.strong_count(), 0, "a pool outlived the executor");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failing_inherited_socket_is_not_called_server() {
        let error = ServeError::Inherited(io::Error::from_raw_os_error(libc::EPERM));
        let message = error.to_string();
        assert!(message.contains("LISTEN_FDS"), "{message}");
        assert!(!message.contains("SERVER"), "{message}");
    }

    #[test]
    fn only_one_connections_failure_is_retried_at_once() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            let kind = accept_error(&io::Error::from_raw_os_error(errno));
            assert_eq!(kind, AcceptError::OutOfResources, "{errno}");
        }
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR] {
            let kind = accept_error(&io::Error::from_raw_os_error(errno));
            assert_eq!(kind, AcceptError::OneConnection, "{errno}");
        }
        // A broken listener (an inherited descriptor that stopped being a listening socket)
        // fails at every call: it must back off, not spin.
        for errno in [libc::EBADF, libc::EINVAL, libc::ENOTSOCK, libc::EOPNOTSUPP] {
            let kind = accept_error(&io::Error::from_raw_os_error(errno));
            assert_eq!(kind, AcceptError::Listener, "{errno}");
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

        pub(super) struct Counting;

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

        pub(super) fn now() -> isize {
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
        let ex: Rc<LocalExecutor<'static>> = Rc::new(LocalExecutor::new());
        let pools_ex = Rc::clone(&ex);
        smol::block_on(ex.run(async {
            let listener = Async::<TcpListener>::bind(([127, 0, 0, 1], 0)).unwrap();
            let stream = Async::<TcpStream>::connect(listener.get_ref().local_addr().unwrap())
                .await
                .unwrap();
            let shared = Rc::new(Shared::new(config, &pools_ex, 1));
            let phase = Rc::new(Cell::new(Phase::Busy));
            let future = connection::run(Rc::clone(&shared), Stream::Tcp(stream), phase, 0);
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
