//! The two kinds of socket the server listens on and serves (TCP, and Unix streams passed by
//! systemd), behind one listener type and one connection type.

use std::io;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};

use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

use crate::os::systemd::Inherited;

/// The listen queue asked for (the kernel caps it at `net.core.somaxconn`, 4096 by default).
/// The standard library's 128 overflows under a burst of connections, and a client whose SYN is
/// dropped retries only after a second: longer than a Kubernetes probe waits.
const BACKLOG: i32 = 4096;

/// A listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    /// TCP.
    Tcp(Async<TcpListener>),
    /// A Unix stream socket.
    Unix(Async<UnixListener>),
}

impl Listener {
    /// Binds a TCP address, with a listen queue of [`BACKLOG`].
    pub(crate) fn bind(addr: SocketAddr) -> io::Result<Self> {
        use rustix::net::{ipproto, AddressFamily, SocketFlags, SocketType};

        let family = if addr.is_ipv4() {
            AddressFamily::INET
        } else {
            AddressFamily::INET6
        };
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let socket =
            rustix::net::socket_with(family, SocketType::STREAM, flags, Some(ipproto::TCP))?;
        rustix::net::sockopt::set_socket_reuseaddr(&socket, true)?;
        rustix::net::bind(&socket, &addr)?;
        rustix::net::listen(&socket, BACKLOG)?;
        Async::new_nonblocking(TcpListener::from(socket)).map(Listener::Tcp)
    }

    /// Serves a socket systemd passed.
    pub(crate) fn inherit(inherited: Inherited) -> io::Result<Self> {
        match inherited {
            Inherited::Tcp(listener) => Async::new(listener).map(Listener::Tcp),
            Inherited::Unix(listener) => Async::new(listener).map(Listener::Unix),
        }
    }

    /// Where it listens, for the log: `http://127.0.0.1:8080` or `unix:/run/x.sock`.
    pub(crate) fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.get_ref().local_addr() {
                Ok(addr) => format!("http://{addr}"),
                Err(_) => "a TCP socket".to_owned(),
            },
            Listener::Unix(l) => match l.get_ref().local_addr() {
                Ok(addr) => match addr.as_pathname() {
                    Some(path) => format!("unix:{}", path.display()),
                    None => "an unnamed Unix socket".to_owned(),
                },
                Err(_) => "a Unix socket".to_owned(),
            },
        }
    }

    /// Accepts one connection, non-blocking from the start (`accept4` with `SOCK_NONBLOCK`:
    /// no `ioctl(FIONBIO)` per connection).
    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let stream = TcpStream::from(l.read_with(accept_nonblocking).await?);
                // Responses are small and complete: send them without waiting for more.
                let _ = stream.set_nodelay(true);
                Ok(Stream::Tcp(Async::new_nonblocking(stream)?))
            }
            Listener::Unix(l) => {
                let stream = UnixStream::from(l.read_with(accept_nonblocking).await?);
                Ok(Stream::Unix(Async::new_nonblocking(stream)?))
            }
        }
    }
}

/// `accept4(SOCK_NONBLOCK | SOCK_CLOEXEC)` on a listener.
fn accept_nonblocking(listener: &impl std::os::fd::AsFd) -> io::Result<std::os::fd::OwnedFd> {
    use rustix::net::SocketFlags;
    Ok(rustix::net::accept_with(
        listener,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
    )?)
}

/// One accepted connection.
#[derive(Debug)]
pub(crate) enum Stream {
    /// TCP.
    Tcp(Async<TcpStream>),
    /// A Unix stream.
    Unix(Async<UnixStream>),
}

impl Stream {
    /// Reads into `buf`; `Ok(0)` at the end of the stream.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf).await,
            Stream::Unix(s) => s.read(buf).await,
        }
    }

    /// Writes all of `buf`.
    pub(crate) async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(buf).await,
            Stream::Unix(s) => s.write_all(buf).await,
        }
    }

    /// Waits until a read would not block.
    pub(crate) async fn readable(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.readable().await,
            Stream::Unix(s) => s.readable().await,
        }
    }

    /// Shuts down our sending side (the peer reads the end of the stream).
    pub(crate) fn shutdown_write(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.get_ref().shutdown(Shutdown::Write),
            Stream::Unix(s) => s.get_ref().shutdown(Shutdown::Write),
        };
    }
}
