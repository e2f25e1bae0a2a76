//! systemd integration: socket activation (`LISTEN_PID`, `LISTEN_FDS`) and readiness
//! notification (`NOTIFY_SOCKET`), without libsystemd.
//!
//! The protocol is the one of `sd_listen_fds(3)` and `sd_notify(3)`: systemd passes the
//! listening sockets from descriptor 3 on and names the receiving process in `LISTEN_PID`; a
//! service tells systemd its state by sending `READY=1` and `STOPPING=1` datagrams to the Unix
//! socket named in `NOTIFY_SOCKET` (a path, or an abstract name written with a leading `@`).

use std::ffi::OsString;
use std::io;
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener};

use crate::config::ConfigError;

/// The first descriptor systemd passes.
pub(crate) const LISTEN_FDS_START: i32 = 3;

/// What `LISTEN_PID` and `LISTEN_FDS` say to this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Not socket-activated (no variables, or they are meant for another process).
    None,
    /// systemd passed this many listening sockets, from descriptor 3 on.
    Sockets(u32),
}

/// Reads `LISTEN_PID` and `LISTEN_FDS` (pure: the environment and our pid come in).
pub fn activation<E>(env: E, pid: u32) -> Result<Activation, ConfigError>
where
    E: Fn(&str) -> Option<OsString>,
{
    let text = |name: &str| env(name).map(|v| v.to_string_lossy().trim().to_owned());
    let Some(listen_pid) = text("LISTEN_PID") else {
        return Ok(Activation::None);
    };
    let listen_pid: u32 = listen_pid.parse().map_err(|_| {
        ConfigError(format!(
            "LISTEN_PID={listen_pid:?} is not a process id (set by systemd socket activation)"
        ))
    })?;
    if listen_pid != pid {
        return Ok(Activation::None);
    }
    let fds = text("LISTEN_FDS").unwrap_or_default();
    match fds.parse::<u32>() {
        Ok(0) => Ok(Activation::None),
        Ok(1) => Ok(Activation::Sockets(1)),
        Ok(n) => Err(ConfigError(format!(
            "LISTEN_FDS={fds:?}: systemd passed {n} sockets, but this program serves one; keep one ListenStream= in the .socket unit"
        ))),
        Err(_) => Err(ConfigError(format!(
            "LISTEN_FDS={fds:?} is not a number of file descriptors (set by systemd socket activation; ListenStream= in the .socket unit)"
        ))),
    }
}

/// A listening socket systemd passed.
#[derive(Debug)]
pub enum Inherited {
    /// A TCP listener (`ListenStream=127.0.0.1:8080`).
    Tcp(TcpListener),
    /// A Unix stream listener (`ListenStream=/run/fastcgi-healthcheck.sock`).
    Unix(UnixListener),
}

/// Takes descriptor 3 as the listening socket when systemd passed it to this process, and then
/// unsets the activation variables so that children do not inherit them (call it at start,
/// before the program starts threads). Fails when it is not a listening stream socket.
pub fn take_listener() -> Result<Inherited, ConfigError> {
    use rustix::net::AddressFamily;

    let not_a_listener = |what: &str| {
        ConfigError(format!(
            "LISTEN_FDS: file descriptor {LISTEN_FDS_START} {what}; systemd must pass a listening stream socket (ListenStream= in the .socket unit, Accept=no)"
        ))
    };
    let fd: OwnedFd = crate::os::sys::adopt_listen_fd()
        .map_err(|e| not_a_listener(&format!("cannot be used: {e}")))?;
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    rustix::io::ioctl_fionbio(&fd, true)
        .map_err(|e| not_a_listener(&format!("cannot be made non-blocking: {e}")))?;
    let family = rustix::net::getsockname(&fd)
        .map(|addr| addr.address_family())
        .map_err(|e| not_a_listener(&format!("has no address: {e}")))?;
    match family {
        AddressFamily::INET | AddressFamily::INET6 => Ok(Inherited::Tcp(TcpListener::from(fd))),
        AddressFamily::UNIX => Ok(Inherited::Unix(UnixListener::from(fd))),
        _ => Err(not_a_listener("is neither a TCP nor a Unix socket")),
    }
}

/// Sends `state` (`READY=1`, `STOPPING=1`) to systemd when `NOTIFY_SOCKET` names a socket.
pub(crate) fn notify(state: &str) -> io::Result<()> {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let socket = UnixDatagram::unbound()?;
    // A full notification queue must not stall the one thread that serves.
    socket.set_nonblocking(true)?;
    let bytes = target.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &target)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)], pid: u32) -> Result<Activation, ConfigError> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        activation(
            |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
            pid,
        )
    }

    #[test]
    fn activation_is_for_our_pid_only() {
        assert_eq!(read(&[], 42), Ok(Activation::None));
        assert_eq!(
            read(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "1")], 42),
            Ok(Activation::Sockets(1))
        );
        assert_eq!(
            read(&[("LISTEN_PID", "41"), ("LISTEN_FDS", "1")], 42),
            Ok(Activation::None)
        );
        assert_eq!(
            read(&[("LISTEN_PID", "42"), ("LISTEN_FDS", "0")], 42),
            Ok(Activation::None)
        );
    }

    #[test]
    fn a_wrong_listen_fds_is_a_clear_error() {
        for fds in ["", "two", "-1", "2"] {
            let error = read(&[("LISTEN_PID", "42"), ("LISTEN_FDS", fds)], 42).unwrap_err();
            assert!(error.0.starts_with("LISTEN_FDS="), "{error}");
        }
        assert!(read(&[("LISTEN_PID", "me")], 42)
            .unwrap_err()
            .0
            .starts_with("LISTEN_PID="));
    }
}
