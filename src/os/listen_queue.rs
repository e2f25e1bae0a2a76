//! The kernel's view of a listener's accept queue, read without asking php-fpm (whose status page
//! is rendered by a worker, and so goes blind exactly when every worker is busy).
//!
//! - TCP: the LISTEN line (state `0A`) of the port in `/proc/net/tcp` and `/proc/net/tcp6`. For a
//!   listener the kernel prints the accept queue as `rx_queue` and the backlog as `tx_queue`.
//! - Unix: a NETLINK_SOCK_DIAG dump of listening Unix sockets (unix_diag) with
//!   `UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN`; the listener is the one bound to the destination's
//!   path, its `udiag_rqueue` the pending connections and `udiag_wqueue` the backlog.
//!
//! Both are readable unprivileged, in our own network namespace only: a php-fpm in another one
//! (two containers without a shared network) is not found, and the view is [`View::Unavailable`].
//!
//! Invariants: the parsers ([`tcp_listener`], [`unix_listener`]) are pure and total over any bytes;
//! every read is bounded ([`MAX_PROC_BYTES`], [`MAX_NETLINK_READS`] of [`NETLINK_BUFFER`] bytes)
//! and never blocks (`/proc` files are generated in memory; the netlink socket is non-blocking, and
//! the kernel builds a dump's parts during the `sendto` and each `recv`). This is read only when a
//! probe failed or `/metrics` is asked, never on a healthy probe.

use std::io::Read;
use std::path::Path;

/// What the kernel shows of a listener's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Connections waiting to be accepted.
    pub queued: u64,
    /// The most that may wait (the `listen()` backlog as the kernel capped it).
    pub backlog: u64,
}

/// The kernel's view of the destination's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The listener's queue.
    Seen(Queue),
    /// Not readable from here; why, on one line.
    Unavailable(String),
}

/// Most bytes read from one `/proc/net/tcp*` file. Listeners come first in these files (the
/// kernel walks its listening hash before the established one), so a host with many
/// connections still shows its listeners within this.
pub const MAX_PROC_BYTES: u64 = 1 << 20;

/// Size of one netlink read.
pub const NETLINK_BUFFER: usize = 32 * 1024;

/// Most netlink reads for one dump (listening Unix sockets only: a few per host).
pub const MAX_NETLINK_READS: usize = 64;

/// `TCP_LISTEN`, in `/proc/net/tcp` and as unix_diag's state.
const TCP_LISTEN: u32 = 10;

/// Reads the queue of the TCP listener on `port` (IPv4 and IPv6).
pub fn tcp(port: u16) -> View {
    let mut errors = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        match read_bounded(Path::new(file)) {
            Ok(text) => {
                if let Some(queue) = tcp_listener(&text, port) {
                    return View::Seen(queue);
                }
            }
            Err(error) => errors.push(format!("{file}: {error}")),
        }
    }
    if errors.len() == 2 {
        return View::Unavailable(format!("cannot read {}", errors.join("; ")));
    }
    View::Unavailable(format!(
        "no listener on port {port} in /proc/net/tcp{{,6}}: php-fpm is in another network namespace (or host)"
    ))
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut text = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_PROC_BYTES)
        .read_to_end(&mut text)?;
    Ok(text)
}

/// The queue of the listener on local `port` in the text of `/proc/net/tcp` or `tcp6`: the first
/// line in state `0A` (LISTEN) whose local address ends with `:PORT` (hex); `rx_queue` is the
/// accept queue, `tx_queue` the backlog. Malformed lines are skipped.
pub fn tcp_listener(text: &[u8], port: u16) -> Option<Queue> {
    text.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let line = std::str::from_utf8(line).ok()?;
        // sl local_address rem_address st tx_queue:rx_queue ...
        let mut cols = line.split_ascii_whitespace().skip(1);
        let local = cols.next()?;
        let _remote = cols.next()?;
        let state = u32::from_str_radix(cols.next()?, 16).ok()?;
        let (tx, rx) = cols.next()?.split_once(':')?;
        let (_, local_port) = local.rsplit_once(':')?;
        if state != TCP_LISTEN || u16::from_str_radix(local_port, 16).ok()? != port {
            return None;
        }
        Some(Queue {
            queued: u64::from_str_radix(rx, 16).ok()?,
            backlog: u64::from_str_radix(tx, 16).ok()?,
        })
    })
}

// NETLINK_SOCK_DIAG and unix_diag (linux/netlink.h, linux/sock_diag.h, linux/unix_diag.h).
const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const UDIAG_SHOW_NAME: u32 = 0x1;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_MSG: usize = 16;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_RQLEN: u16 = 4;

/// The dump request: an `nlmsghdr` and a `unix_diag_req` for listening sockets, with their
/// names and queue lengths.
pub fn unix_request() -> [u8; 40] {
    let mut req = [0u8; 40];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        for &b in bytes {
            if let Some(slot) = req.get_mut(at) {
                *slot = b;
            }
            at = at.saturating_add(1);
        }
    };
    put(&40u32.to_ne_bytes()); // nlmsg_len
    put(&SOCK_DIAG_BY_FAMILY.to_ne_bytes()); // nlmsg_type
    put(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes()); // nlmsg_flags
    put(&1u32.to_ne_bytes()); // nlmsg_seq
    put(&0u32.to_ne_bytes()); // nlmsg_pid
    put(&[libc::AF_UNIX as u8, 0, 0, 0]); // sdiag_family, sdiag_protocol, pad
    put(&(1u32 << TCP_LISTEN).to_ne_bytes()); // udiag_states
    put(&0u32.to_ne_bytes()); // udiag_ino
    put(&(UDIAG_SHOW_NAME | UDIAG_SHOW_RQLEN).to_ne_bytes()); // udiag_show
    put(&[0xff; 8]); // udiag_cookie: INET_DIAG_NOCOOKIE
    req
}

/// What one read of a unix_diag dump held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The listener bound to the path.
    Found(Queue),
    /// Not in this part; more parts follow.
    More,
    /// The dump ended without it.
    Done,
    /// The kernel answered an error (errno, positive).
    Error(i32),
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_ne_bytes([*b.first()?, *b.get(1)?]))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_ne_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// `len` rounded up to netlink's 4-byte alignment.
fn align4(len: usize) -> Option<usize> {
    Some(len.checked_add(3)? & !3)
}

/// Looks for the listener bound to `path` in one read of a unix_diag dump. Pure and total:
/// malformed messages end the part (as [`Part::More`]: the caller's read bound ends the dump).
pub fn unix_listener(part: &[u8], path: &[u8]) -> Part {
    let mut at = 0usize;
    while let (Some(len), Some(kind)) = (u32_at(part, at), u16_at(part, at.saturating_add(4))) {
        let len = usize::try_from(len).unwrap_or(0);
        let Some(end) = at.checked_add(len).filter(|_| len >= NLMSG_HDR) else {
            return Part::More;
        };
        let Some(message) = part.get(at..end) else {
            return Part::More;
        };
        match kind {
            NLMSG_DONE => return Part::Done,
            NLMSG_ERROR => {
                let errno = u32_at(message, NLMSG_HDR).map_or(0, |e| e as i32);
                return Part::Error(errno.checked_neg().unwrap_or(0));
            }
            SOCK_DIAG_BY_FAMILY => {
                if let Some(queue) = listener_in(message.get(NLMSG_HDR..).unwrap_or_default(), path)
                {
                    return Part::Found(queue);
                }
            }
            _ => {}
        }
        match align4(len).and_then(|len| at.checked_add(len)) {
            Some(next) => at = next,
            None => return Part::More,
        }
    }
    Part::More
}

/// The queue of one `unix_diag_msg` and its attributes, if it is a listener bound to `path`.
fn listener_in(msg: &[u8], path: &[u8]) -> Option<Queue> {
    let state = *msg.get(2)?;
    if u32::from(state) != TCP_LISTEN {
        return None;
    }
    let mut at = UNIX_DIAG_MSG;
    let (mut name, mut queue) = (None, None);
    while let (Some(len), Some(kind)) = (u16_at(msg, at), u16_at(msg, at.saturating_add(2))) {
        let len = usize::from(len);
        let value = msg.get(at.checked_add(4)?..at.checked_add(len)?)?;
        match kind {
            UNIX_DIAG_NAME => name = Some(value),
            UNIX_DIAG_RQLEN => {
                queue = Some(Queue {
                    queued: u64::from(u32_at(value, 0)?),
                    backlog: u64::from(u32_at(value, 4)?),
                });
            }
            _ => {}
        }
        at = at.checked_add(align4(len)?.max(4))?;
    }
    // The kernel may count the bind's trailing NUL in the name.
    let name = name?;
    let name = name.strip_suffix(b"\0").unwrap_or(name);
    (name == path).then_some(queue).flatten()
}

/// Reads the queue of the Unix listener bound to `path` through NETLINK_SOCK_DIAG.
pub fn unix(path: &Path) -> View {
    use std::os::unix::ffi::OsStrExt;

    let given = path.as_os_str().as_bytes().to_vec();
    let mut candidates = vec![given.clone()];
    if let Ok(real) = std::fs::canonicalize(path) {
        let real = real.as_os_str().as_bytes().to_vec();
        if real != given {
            candidates.push(real);
        }
    }
    match unix_dump(&candidates) {
        Ok(Some(queue)) => View::Seen(queue),
        Ok(None) => View::Unavailable(format!(
            "no listening Unix socket bound to {} in this network namespace (sock_diag): php-fpm is in another one",
            path.display()
        )),
        Err(error) => View::Unavailable(format!(
            "cannot read the Unix listen queues (NETLINK_SOCK_DIAG): {error}"
        )),
    }
}

/// One dump of the listening Unix sockets; the queue of the first bound to one of `paths`.
fn unix_dump(paths: &[Vec<u8>]) -> std::io::Result<Option<Queue>> {
    use rustix::net::netlink::{SocketAddrNetlink, SOCK_DIAG};
    use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

    let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
    let socket = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        flags,
        Some(SOCK_DIAG),
    )?;
    rustix::net::sendto(
        &socket,
        &unix_request(),
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut buf = vec![0u8; NETLINK_BUFFER];
    for _ in 0..MAX_NETLINK_READS {
        let (_, len) = rustix::net::recv(&socket, buf.as_mut_slice(), RecvFlags::empty())?;
        let part = buf.get(..len).unwrap_or_default();
        if len == 0 {
            return Ok(None);
        }
        let mut more = false;
        for path in paths {
            match unix_listener(part, path) {
                Part::Found(queue) => return Ok(Some(queue)),
                Part::More => more = true,
                Part::Done => {}
                Part::Error(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
            }
        }
        if !more {
            return Ok(None);
        }
    }
    Err(std::io::Error::other(format!(
        "the dump did not end within {MAX_NETLINK_READS} reads"
    )))
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::arithmetic_side_effects,
    clippy::panic
)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F90 00000000:0000 0A 000001FF:0000000E 00:00000000 00000000     0        0 1 1 0000 100 0 0 10 0\n   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000 20 4 30 10 -1\n";

    #[test]
    fn finds_the_listener_of_a_port() {
        assert_eq!(
            tcp_listener(TCP.as_bytes(), 8080),
            Some(Queue {
                queued: 14,
                backlog: 511
            })
        );
        assert_eq!(tcp_listener(TCP.as_bytes(), 50000), None);
        assert_eq!(tcp_listener(TCP.as_bytes(), 80), None);
        let v6 = "sl local rem st q\n 0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000080:00000002 00:0 0 0\n";
        assert_eq!(
            tcp_listener(v6.as_bytes(), 9000),
            Some(Queue {
                queued: 2,
                backlog: 128
            })
        );
    }

    #[test]
    fn tcp_parser_is_total() {
        for text in [
            &b""[..],
            b"\n",
            b"x\n0: :: 0A :\n",
            b"h\n 0: a:zz b 0A 1:2\n",
            &[0xff; 64],
        ] {
            assert_eq!(tcp_listener(text, 0), None);
        }
        // Every prefix of a valid table parses without a panic.
        for end in 0..TCP.len() {
            let _ = tcp_listener(&TCP.as_bytes()[..end], 8080);
        }
    }

    /// A dump part with one listener bound to `name`, then DONE.
    fn dump(name: &[u8], state: u8, queued: u32, backlog: u32) -> Vec<u8> {
        let mut msg = vec![libc::AF_UNIX as u8, 1, state, 0];
        msg.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        let name_len = 4 + name.len();
        msg.extend_from_slice(&(name_len as u16).to_ne_bytes());
        msg.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        msg.extend_from_slice(name);
        msg.resize(msg.len() + (align4(name_len).unwrap() - name_len), 0);
        msg.extend_from_slice(&12u16.to_ne_bytes());
        msg.extend_from_slice(&UNIX_DIAG_RQLEN.to_ne_bytes());
        msg.extend_from_slice(&queued.to_ne_bytes());
        msg.extend_from_slice(&backlog.to_ne_bytes());
        let mut out = Vec::new();
        out.extend_from_slice(&((NLMSG_HDR + msg.len()) as u32).to_ne_bytes());
        out.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(&msg);
        out.extend_from_slice(&20u32.to_ne_bytes());
        out.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        out.extend_from_slice(&[0; 14]);
        out
    }

    #[test]
    fn finds_a_unix_listener_by_path() {
        let part = dump(b"/run/php/fpm.sock\0", 10, 3, 511);
        assert_eq!(
            unix_listener(&part, b"/run/php/fpm.sock"),
            Part::Found(Queue {
                queued: 3,
                backlog: 511
            })
        );
        assert_eq!(unix_listener(&part, b"/run/other.sock"), Part::Done);
        // Not a listener: skipped.
        let part = dump(b"/run/php/fpm.sock", 1, 3, 511);
        assert_eq!(unix_listener(&part, b"/run/php/fpm.sock"), Part::Done);
        let mut error = Vec::new();
        error.extend_from_slice(&36u32.to_ne_bytes());
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        error.extend_from_slice(&(-2i32).to_ne_bytes());
        error.extend_from_slice(&[0; 16]);
        assert_eq!(unix_listener(&error, b"/x"), Part::Error(2));
    }

    #[test]
    fn unix_parser_is_total() {
        let part = dump(b"/run/php/fpm.sock", 10, 3, 511);
        for end in 0..part.len() {
            let _ = unix_listener(&part[..end], b"/run/php/fpm.sock");
        }
        let mut broken = part.clone();
        for i in 0..broken.len() {
            broken[i] = 0xff;
            let _ = unix_listener(&broken, b"/run/php/fpm.sock");
        }
        assert_eq!(unix_listener(&[0; 16], b"/x"), Part::More);
    }

    #[test]
    fn reads_a_real_unix_listener() {
        let dir = std::env::temp_dir().join(format!("lq-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let _a = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let _b = std::os::unix::net::UnixStream::connect(&path).unwrap();
        match unix(&path) {
            View::Seen(queue) => assert_eq!(queue.queued, 2, "{queue:?}"),
            other => panic!("{other:?}"),
        }
        drop(listener);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(unix(&path), View::Unavailable(_)));
    }

    #[test]
    fn reads_a_real_tcp_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        match tcp(port) {
            View::Seen(queue) => assert_eq!(queue.queued, 1, "{queue:?}"),
            other => panic!("{other:?}"),
        }
    }
}
