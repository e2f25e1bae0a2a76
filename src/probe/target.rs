//! The target of a probe: where the FastCGI server listens, its name resolution, the connect,
//! and the words of a failed connect (a socket we may not open names its owner, group and mode
//! and who we are; a path that is not a socket says so).
//!
//! A name resolves one of two ways ([`Resolve`]): every address in the resolver's order, each
//! tried in turn (the server), or as `cgi-fcgi` does (`gethostbyname`: the first IPv4 address,
//! one connect), so that the `php-fpm-healthcheck` mode fails with the script's errno.
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
use crate::os::ids::Names;
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

/// How a host name becomes the addresses to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Resolve {
    /// Every address, in the resolver's order, each tried in turn.
    Every,
    /// The first IPv4 address only, as `cgi-fcgi` (libfcgi's `OS_FcgiConnect` calls
    /// `gethostbyname`): where `localhost` is also `::1` and IPv6 is off, the one connect is
    /// refused (111), not unavailable (99).
    FirstIpv4,
}

/// Where a probe connects.
#[derive(Debug)]
pub(crate) struct Target {
    destination: Destination,
    label: String,
    resolve: Resolve,
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
    pub(crate) fn new(destination: &Destination, resolve: Resolve) -> Self {
        Self {
            label: destination.to_string(),
            destination: destination.clone(),
            resolve,
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
            // A relative socket path (`www.sock`) is a host name here: say how to give a path.
            let hint = match self.resolve {
                Resolve::Every => "; a Unix socket is given by its absolute path",
                Resolve::FirstIpv4 => "",
            };
            Failure::new(
                Reason::ResolveFailed,
                format!("cannot resolve {}: {e}{hint}", self.label),
            )
        })?;
        match self.resolve {
            Resolve::Every if !addrs.is_empty() => Ok(Addresses::Many(addrs)),
            Resolve::Every => Err(Failure::new(
                Reason::ResolveFailed,
                format!("{} resolves to no address", self.label),
            )),
            Resolve::FirstIpv4 => match addrs.into_iter().find(SocketAddr::is_ipv4) {
                Some(addr) => Ok(Addresses::One(addr)),
                None => Err(Failure::new(
                    Reason::ResolveFailed,
                    format!(
                        "{} has no IPv4 address (as cgi-fcgi, this mode resolves names to \
                         IPv4 only; give an IPv6 address as [::1]:9000)",
                        self.label
                    ),
                )),
            },
        }
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
        connect_unix(path).map_err(|e| self.unix_connect_failure(path, &e))
    }

    /// Starts a TCP connect to `addr`.
    fn connect_tcp(&self, addr: SocketAddr) -> Result<Async<std::net::TcpStream>, Failure> {
        connect_tcp(addr).map_err(|e| self.connect_failure(&e))
    }

    /// The failure of a Unix connect, in the words of its cause:
    /// - EAGAIN: the listen queue is full (the pool is hung or too small);
    /// - EACCES: who owns the socket (or the directory we cannot enter), and who we are;
    /// - ECONNREFUSED from a path that is not a socket (the kernel refuses those too).
    fn unix_connect_failure(&self, path: &Path, error: &io::Error) -> Failure {
        let errno = error.raw_os_error();
        match error.kind() {
            io::ErrorKind::WouldBlock => Failure::with_errno(
                Reason::FcgiOverloaded,
                format!(
                    "the listen queue of {} is full; are php-fpm's workers hung or too few?",
                    self.label
                ),
                errno,
            ),
            io::ErrorKind::PermissionDenied => Failure::with_errno(
                Reason::ConnectFailed,
                format!(
                    "cannot connect to {}: {error}; {}",
                    self.label,
                    permission_denied(path)
                ),
                errno,
            ),
            io::ErrorKind::ConnectionRefused => match not_a_socket(path) {
                Some(kind) => Failure::with_errno(
                    Reason::ConnectFailed,
                    format!(
                        "{} is {kind}, not a socket; give the path of php-fpm's socket (the \
                         pool's listen)",
                        self.label
                    ),
                    errno,
                ),
                None => self.connect_failure(error),
            },
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

/// Why we may not connect to the Unix socket at `path`, and what to do: the directory on the
/// way that we cannot enter, or the socket's owner, group and mode; and who we are.
fn permission_denied(path: &Path) -> String {
    let names = Names::load();
    let me = names.process();
    // The first directory from the root down that we may not search, if any.
    let mut dirs: Vec<&Path> = path
        .ancestors()
        .skip(1)
        .filter(|dir| !dir.as_os_str().is_empty())
        .collect();
    dirs.reverse();
    let closed = dirs.into_iter().find(|dir| {
        rustix::fs::access(*dir, rustix::fs::Access::EXEC_OK) == Err(rustix::io::Errno::ACCESS)
    });
    if let Some(dir) = closed {
        let about = std::fs::metadata(dir).map_or_else(|e| e.to_string(), |m| names.file(&m));
        return format!(
            "the directory {} ({about}) is closed to this process, {me}; run it as a user who \
             may enter that directory, or open the directory to it",
            dir.display()
        );
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return format!("this process runs as {me}");
    };
    let about = names.file(&meta);
    let group = names.group_name(std::os::unix::fs::MetadataExt::gid(&meta));
    let user = names.user_name(rustix::process::geteuid().as_raw());
    format!(
        "the socket has {about}, and this process runs as {me}; run it as a member of group \
         {group} (usermod -aG {group} {user}), or set listen.owner, listen.group and \
         listen.mode in the php-fpm pool to let it in"
    )
}

/// What `path` is, when it exists and is not a socket (`a directory`, `a regular file`...).
fn not_a_socket(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;

    let kind = std::fs::metadata(path).ok()?.file_type();
    if kind.is_socket() {
        None
    } else if kind.is_dir() {
        Some("a directory")
    } else if kind.is_file() {
        Some("a regular file")
    } else {
        Some("a special file")
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
