//! The kernel's view of a listener's accept queue, read without asking php-fpm (whose status page
//! is rendered by a worker, and so goes blind exactly when every worker is busy).
//!
//! - TCP: a NETLINK_SOCK_DIAG dump of listening TCP sockets (inet_diag, IPv4 and IPv6); for a
//!   listener `idiag_rqueue` is the accept queue and `idiag_wqueue` the backlog. Where netlink is
//!   refused, the LISTEN line (state `0A`) of the port in `/proc/net/tcp{,6}`, whose `rx_queue` is
//!   the accept queue (its `tx_queue` is not the backlog: the kernel prints the send queue there,
//!   0 for a listener; `ss` reads the backlog through inet_diag).
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
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

/// What the kernel shows of a listener's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Connections waiting to be accepted.
    pub queued: u64,
    /// The most that may wait (the `listen()` backlog as the kernel capped it); `None` when only
    /// `/proc/net/tcp` could be read (it shows no backlog).
    pub backlog: Option<u64>,
}

/// The kernel's view of the destination's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// The listener's queue.
    Seen(Queue),
    /// Not readable from here; why, on one line.
    Unavailable(String),
}

impl View {
    /// The connections queued, or why they cannot be read (a `queued-connections` threshold's
    /// figure).
    pub fn queued(self) -> Result<u64, String> {
        match self {
            View::Seen(queue) => Ok(queue.queued),
            View::Unavailable(why) => Err(why),
        }
    }
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

/// Reads the queue of the TCP listener on `port` (IPv4 and IPv6) that takes connections to `ip`
/// (bound to it or to the wildcard address; `None`, for a host name: any address): through
/// inet_diag, or `/proc/net/tcp{,6}` (by port only) when netlink is refused.
pub fn tcp(port: u16, ip: Option<IpAddr>) -> View {
    let mut found = None;
    let mut failed = None;
    for family in [libc::AF_INET, libc::AF_INET6] {
        let request = inet_request(family);
        match dump(&request, |part| inet_listener(part, port, ip)) {
            Ok(Some(queue)) => {
                found = Some(queue);
                break;
            }
            Ok(None) => {}
            Err(error) => failed = Some(error),
        }
    }
    match (found, failed) {
        (Some(queue), _) => View::Seen(queue),
        (None, None) => View::Unavailable(format!(
            "no listener on TCP port {port} in this network namespace (sock_diag): php-fpm is in another one, or on another host"
        )),
        (None, Some(_)) => tcp_from_proc(port),
    }
}

/// [`tcp`] from `/proc/net/tcp{,6}` (the queue, not the backlog).
fn tcp_from_proc(port: u16) -> View {
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
/// accept queue. Malformed lines are skipped.
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
        let _send_queue = u64::from_str_radix(tx, 16).ok()?;
        Some(Queue {
            queued: u64::from_str_radix(rx, 16).ok()?,
            backlog: None,
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

/// The dump request for listening TCP sockets of `family` (`AF_INET`, `AF_INET6`): an
/// `nlmsghdr` and an `inet_diag_req_v2`.
pub fn inet_request(family: i32) -> Vec<u8> {
    let mut req = Vec::with_capacity(72);
    req.extend_from_slice(&72u32.to_ne_bytes()); // nlmsg_len
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&1u32.to_ne_bytes()); // nlmsg_seq
    req.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid
    let family = u8::try_from(family).unwrap_or_default();
    req.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]); // family, protocol, ext, pad
    req.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes()); // idiag_states
    req.extend_from_slice(&[0; 40]); // inet_diag_sockid: any ports, addresses, interface
    req.extend_from_slice(&[0xff; 8]); // idiag_cookie: INET_DIAG_NOCOOKIE
    req
}

const IPPROTO_TCP: u8 = 6;

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
    walk(part, |msg| listener_in(msg, path))
}

/// Looks for the listener on local `port` in one read of an inet_diag dump (pure and total, as
/// [`unix_listener`]).
pub fn inet_listener(part: &[u8], port: u16, ip: Option<IpAddr>) -> Part {
    walk(part, |msg| inet_in(msg, port, ip))
}

/// The queue of one `inet_diag_msg`, if it is a listener on local `port` taking connections to
/// `ip`: `idiag_family` at 0, `idiag_sport` (big endian) at 4, `idiag_src` at 8 (4 or 16 bytes),
/// `idiag_rqueue` at 56, `idiag_wqueue` at 60.
fn inet_in(msg: &[u8], port: u16, ip: Option<IpAddr>) -> Option<Queue> {
    let state = *msg.get(1)?;
    let sport = u16::from_be_bytes([*msg.get(4)?, *msg.get(5)?]);
    if u32::from(state) != TCP_LISTEN || sport != port {
        return None;
    }
    if let Some(ip) = ip {
        let bound = match i32::from(*msg.first()?) {
            libc::AF_INET => {
                let b: [u8; 4] = msg.get(8..12)?.try_into().ok()?;
                IpAddr::V4(Ipv4Addr::from(b))
            }
            _ => {
                let b: [u8; 16] = msg.get(8..24)?.try_into().ok()?;
                IpAddr::V6(Ipv6Addr::from(b))
            }
        };
        if !bound.is_unspecified() && bound.to_canonical() != ip.to_canonical() {
            return None;
        }
    }
    Some(Queue {
        queued: u64::from(u32_at(msg, 56)?),
        backlog: Some(u64::from(u32_at(msg, 60)?)),
    })
}

/// Walks the netlink messages of one read, applying `find` to each sock_diag message's payload.
fn walk(part: &[u8], find: impl Fn(&[u8]) -> Option<Queue>) -> Part {
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
                if let Some(queue) = find(message.get(NLMSG_HDR..).unwrap_or_default()) {
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
                    backlog: Some(u64::from(u32_at(value, 4)?)),
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
    let request = unix_request();
    let found = dump(&request, |part| {
        let mut outcome = Part::Done;
        for path in &candidates {
            match unix_listener(part, path) {
                Part::Done => {}
                other => outcome = other,
            }
            if matches!(outcome, Part::Found(_) | Part::Error(_)) {
                break;
            }
        }
        outcome
    });
    match found {
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

/// Sends one sock_diag dump `request` and reads its parts (at most [`MAX_NETLINK_READS`]), asking
/// `find` about each, until it finds the listener or the dump ends.
fn dump(request: &[u8], find: impl Fn(&[u8]) -> Part) -> std::io::Result<Option<Queue>> {
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
        request,
        SendFlags::empty(),
        &SocketAddrNetlink::new(0, 0),
    )?;
    let mut buf = vec![0u8; NETLINK_BUFFER];
    for _ in 0..MAX_NETLINK_READS {
        let (_, len) = rustix::net::recv(&socket, buf.as_mut_slice(), RecvFlags::empty())?;
        if len == 0 {
            return Ok(None);
        }
        match find(buf.get(..len).unwrap_or_default()) {
            Part::Found(queue) => return Ok(Some(queue)),
            Part::More => {}
            Part::Done => return Ok(None),
            Part::Error(errno) => return Err(std::io::Error::from_raw_os_error(errno)),
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
                backlog: None
            })
        );
        assert_eq!(tcp_listener(TCP.as_bytes(), 50000), None);
        assert_eq!(tcp_listener(TCP.as_bytes(), 80), None);
        let v6 = "sl local rem st q\n 0: 00000000000000000000000000000000:2328 00000000000000000000000000000000:0000 0A 00000080:00000002 00:0 0 0\n";
        assert_eq!(
            tcp_listener(v6.as_bytes(), 9000),
            Some(Queue {
                queued: 2,
                backlog: None
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
                backlog: Some(511)
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
    fn inet_parser_finds_a_listener_and_is_total() {
        let mut msg = vec![libc::AF_INET as u8, 10, 0, 0];
        msg.extend_from_slice(&9000u16.to_be_bytes());
        msg.resize(56, 0);
        msg.extend_from_slice(&3u32.to_ne_bytes());
        msg.extend_from_slice(&511u32.to_ne_bytes());
        msg.resize(72, 0);
        let mut part = ((NLMSG_HDR + msg.len()) as u32).to_ne_bytes().to_vec();
        part.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        part.extend_from_slice(&[0; 10]);
        part.extend_from_slice(&msg);
        let queue = Queue {
            queued: 3,
            backlog: Some(511),
        };
        // Bound to the wildcard address: it takes connections to any address.
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(inet_listener(&part, 9000, None), Part::Found(queue));
        assert_eq!(inet_listener(&part, 9000, Some(local)), Part::Found(queue));
        assert_eq!(inet_listener(&part, 9001, None), Part::More);
        // Bound to 127.0.0.1: not the listener of 10.0.0.5:9000.
        let mut bound = part.clone();
        bound[NLMSG_HDR + 8..NLMSG_HDR + 12].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(inet_listener(&bound, 9000, Some(local)), Part::Found(queue));
        let remote: IpAddr = "10.0.0.5".parse().unwrap();
        assert_eq!(inet_listener(&bound, 9000, Some(remote)), Part::More);
        for end in 0..part.len() {
            let _ = inet_listener(&part[..end], 9000, Some(local));
        }
        assert_eq!(tcp_from_proc_is_a_fallback(), ());
    }

    fn tcp_from_proc_is_a_fallback() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let View::Seen(queue) = tcp_from_proc(port) else {
            panic!("no listener on {port} in /proc/net/tcp");
        };
        assert_eq!(queue.backlog, None);
    }

    #[test]
    fn reads_a_real_tcp_listener() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        match tcp(port, Some("127.0.0.1".parse().unwrap())) {
            View::Seen(queue) => {
                assert_eq!(queue.queued, 1, "{queue:?}");
                assert_eq!(queue.backlog, Some(128), "{queue:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
