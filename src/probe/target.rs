//! The target of a probe: where the FastCGI server listens, its name resolution, and the
//! connect.
//!
//! Name resolution has one mechanism: a lookup runs on a helper thread (getaddrinfo blocks) and
//! publishes its answer in a shared slot, waking every waiter. A lookup still running when a
//! probe starts is joined (by any number of concurrent probes), so a lookup that outlives one
//! probe's deadline is awaited by the next probe instead of started again on another thread; a
//! lookup that finished before this probe started is old news and is asked again.

use std::cell::RefCell;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_listener::Event;
use smol::Async;

use crate::config::{Destination, Host};
use crate::os::socket::Stream;

use super::{Failure, Reason};

/// The addresses of a name, or why it did not resolve.
type Lookup = Result<Vec<SocketAddr>, String>;

/// A lookup on a helper thread: its answer once known, and the waiters' wake-up.
#[derive(Debug, Default)]
struct Pending {
    answer: Mutex<Option<Lookup>>,
    done: Event,
}

impl Pending {
    fn answer(&self) -> Option<Lookup> {
        self.answer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Where a probe connects.
#[derive(Debug)]
pub(crate) struct Target {
    destination: Destination,
    label: String,
    /// The lookup of a host name in progress (or just finished), if any.
    pending: RefCell<Option<Arc<Pending>>>,
}

/// The addresses to try, in order.
pub(crate) enum Addresses {
    /// A Unix socket.
    Unix,
    /// One address (an IP destination: no allocation).
    One(SocketAddr),
    /// A name's addresses, in the order the resolver gave.
    Many(Vec<SocketAddr>),
}

/// One place to connect to: the Unix socket, or one TCP address.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Endpoint {
    Unix,
    Tcp(SocketAddr),
}

impl Addresses {
    /// The places to try, in order.
    pub(crate) fn endpoints(&self) -> impl Iterator<Item = Endpoint> + '_ {
        let (first, rest) = match self {
            Addresses::Unix => (Some(Endpoint::Unix), &[][..]),
            Addresses::One(addr) => (Some(Endpoint::Tcp(*addr)), &[][..]),
            Addresses::Many(addrs) => (None, addrs.as_slice()),
        };
        first
            .into_iter()
            .chain(rest.iter().copied().map(Endpoint::Tcp))
    }
}

impl Target {
    pub(crate) fn new(destination: &Destination) -> Self {
        Self {
            label: destination.to_string(),
            destination: destination.clone(),
            pending: RefCell::new(None),
        }
    }

    /// Where it connects.
    pub(crate) fn destination(&self) -> &Destination {
        &self.destination
    }

    /// The destination as shown in messages (`127.0.0.1:9000`, `unix:/run/php.sock`).
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// The addresses to connect to: resolves a host name (on a helper thread).
    pub(crate) async fn addresses(&self) -> Result<Addresses, Failure> {
        let (name, port) = match &self.destination {
            Destination::Unix(_) => return Ok(Addresses::Unix),
            Destination::Tcp {
                host: Host::Ip(ip),
                port,
            } => return Ok(Addresses::One(SocketAddr::new(*ip, *port))),
            Destination::Tcp {
                host: Host::Name(name),
                port,
            } => (name, *port),
        };
        let addrs = self.lookup(name, port).await.map_err(|e| {
            Failure::new(
                Reason::ResolveFailed,
                format!("cannot resolve {}: {e}", self.label),
            )
        })?;
        if addrs.is_empty() {
            return Err(Failure::new(
                Reason::ResolveFailed,
                format!("{} resolves to no address", self.label),
            ));
        }
        Ok(Addresses::Many(addrs))
    }

    /// Joins the lookup in progress, or starts one.
    async fn lookup(&self, name: &str, port: u16) -> Lookup {
        let pending = {
            let mut slot = self.pending.borrow_mut();
            if slot.as_ref().is_some_and(|p| p.answer().is_some()) {
                *slot = None;
            }
            let pending = slot.get_or_insert_with(|| {
                let pending = Arc::new(Pending::default());
                let publish = Arc::clone(&pending);
                let name = name.to_owned();
                smol::unblock(move || {
                    let answer = (name.as_str(), port)
                        .to_socket_addrs()
                        .map(Iterator::collect)
                        .map_err(|e| e.to_string());
                    *publish
                        .answer
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(answer);
                    publish.done.notify(usize::MAX);
                })
                .detach();
                pending
            });
            Arc::clone(pending)
        };
        loop {
            let listener = pending.done.listen();
            if let Some(answer) = pending.answer() {
                return answer;
            }
            listener.await;
        }
    }

    /// Connects to `endpoint` (a TCP connect may still be in progress: see [`connect_tcp`]).
    pub(crate) fn connect(&self, endpoint: Endpoint) -> Result<Stream, Failure> {
        match endpoint {
            Endpoint::Unix => self.connect_unix().map(Stream::Unix),
            Endpoint::Tcp(addr) => self.connect_tcp(addr).map(Stream::Tcp),
        }
    }

    /// Connects a Unix stream socket (the target must be one).
    fn connect_unix(&self) -> Result<Async<std::os::unix::net::UnixStream>, Failure> {
        let Destination::Unix(path) = &self.destination else {
            return Err(Failure::new(
                Reason::ConnectFailed,
                format!("{} is not a Unix socket", self.label),
            ));
        };
        connect_unix(path).map_err(|e| self.unix_connect_failure(&e))
    }

    /// Starts a TCP connect to `addr`.
    fn connect_tcp(&self, addr: SocketAddr) -> Result<Async<std::net::TcpStream>, Failure> {
        connect_tcp(addr).map_err(|e| self.connect_failure(&e))
    }

    /// A Unix socket whose listen queue is full refuses a non-blocking connect with EAGAIN: the
    /// pool is hung or too small.
    fn unix_connect_failure(&self, error: &io::Error) -> Failure {
        match error.kind() {
            io::ErrorKind::WouldBlock => Failure::with_errno(
                Reason::FcgiOverloaded,
                format!(
                    "the listen queue of {} is full; are php-fpm's workers hung or too few?",
                    self.label
                ),
                error.raw_os_error(),
            ),
            _ => self.connect_failure(error),
        }
    }

    /// The failure of a connect (also reported by the first write on a connecting socket).
    pub(crate) fn connect_failure(&self, error: &io::Error) -> Failure {
        if error.kind() == io::ErrorKind::ConnectionRefused {
            Failure::with_errno(
                Reason::ConnectRefused,
                format!(
                    "{} refused the connection; is php-fpm running and listening there?",
                    self.label
                ),
                error.raw_os_error(),
            )
        } else {
            Failure::with_errno(
                Reason::ConnectFailed,
                format!("cannot connect to {}: {error}", self.label),
                error.raw_os_error(),
            )
        }
    }
}

/// Whether an error of a write on a freshly connecting socket is the connect's own failure.
pub(crate) fn is_connect_error(error: &io::Error) -> bool {
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
