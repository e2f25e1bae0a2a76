//! The kernel's view of a listener's accept queue, read without asking php-fpm (whose status page
//! is rendered by a worker, and so goes blind exactly when every worker is busy).
//!
//! - TCP: a NETLINK_SOCK_DIAG dump of listening TCP sockets (inet_diag, IPv4 and IPv6); for a
//!   listener `idiag_rqueue` is the accept queue and `idiag_wqueue` the backlog. Where netlink is
//!   refused, the LISTEN line (state `0A`) of the port in `/proc/net/tcp{,6}`, whose `rx_queue` is
//!   the accept queue (its `tx_queue` is not the backlog: the kernel prints the send queue there,
//!   0 for a listener; `ss` reads the backlog through inet_diag).
//! - Unix: a NETLINK_SOCK_DIAG dump of listening Unix sockets (unix_diag) with
//!   `UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN`; the listener is the one whose socket
//!   file is the destination's (its device and inode, as `stat` shows them), or else the one
//!   bound to the destination's path, or else the only one with the file's inode; its
//!   `udiag_rqueue` is the pending connections and `udiag_wqueue` the backlog. The file, not the
//!   path: a Kubernetes sidecar mounts the socket's volume at another path than php-fpm's, and
//!   `listen = /var/run/...` may be probed as `/run/...`; the name php-fpm bound is then not
//!   ours, the file is. The inode alone (when unique) covers a file system that shows `stat`
//!   another device than the one the socket was bound on (overlayfs may).
//!
//! Both are readable unprivileged, in our own network namespace only: a php-fpm in another one
//! (two containers without a shared network) is not found, and the view is [`View::Unavailable`]
//! with the cause ([`Unseen`]).
//!
//! Invariants: the parsers ([`tcp_listener`], [`unix_listener`]) are pure and total over any bytes;
//! every read is bounded ([`MAX_PROC_BYTES`], [`MAX_NETLINK_READS`] of [`NETLINK_BUFFER`] bytes)
//! and never blocks (`/proc` files are generated in memory; the netlink socket is non-blocking, and
//! the kernel builds a dump's parts during the `sendto` and each `recv`). This is read only when a
//! probe failed, `/metrics` is asked or a `queued-connections` threshold needs it, never on a
//! healthy ping.

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
    /// Not readable from here, and why.
    Unavailable(Unseen),
}

/// Why the kernel's view of a listener is unavailable: the cause, with its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unseen {
    /// The kernel would not show its queues (a sandbox's seccomp filter, a kernel without
    /// sock_diag and an unreadable `/proc/net/tcp`).
    Refused(String),
    /// The destination's socket file does not exist (php-fpm has not made it, or removed it).
    NoSocketFile(String),
    /// No listener of this network namespace is the destination's: php-fpm listens in another
    /// one (another container or pod sharing the socket's volume), on another host, or not at all.
    Elsewhere(String),
}

impl std::fmt::Display for Unseen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unseen::Refused(line) | Unseen::NoSocketFile(line) | Unseen::Elsewhere(line) => {
                f.write_str(line)
            }
        }
    }
}

impl View {
    /// The connections queued, or why they cannot be read (a `queued-connections` threshold's
    /// figure).
    pub fn queued(self) -> Result<u64, String> {
        match self {
            View::Seen(queue) => Ok(queue.queued),
            View::Unavailable(why) => Err(why.to_string()),
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
        (None, None) => View::Unavailable(Unseen::Elsewhere(format!(
            "no listener on TCP port {port} in this network namespace (sock_diag): php-fpm is on another host, in another network namespace, or not listening"
        ))),
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
        return View::Unavailable(Unseen::Refused(format!(
            "NETLINK_SOCK_DIAG refused, and cannot read {}",
            errors.join("; ")
        )));
    }
    View::Unavailable(Unseen::Elsewhere(format!(
        "no listener on TCP port {port} in /proc/net/tcp{{,6}}: php-fpm is on another host, in another network namespace, or not listening"
    )))
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
const UDIAG_SHOW_VFS: u32 = 0x2;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_MSG: usize = 16;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_RQLEN: u16 = 4;

/// The dump request: an `nlmsghdr` and a `unix_diag_req` for listening sockets, with their
/// names, socket files and queue lengths.
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
    put(&(UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_RQLEN).to_ne_bytes()); // udiag_show
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

/// What one read of a sock_diag dump held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// The listener looked for (for a Unix socket: the one whose socket file it is).
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

/// The Unix socket looked for: the path as given, the path with its links resolved, and the
/// socket file's device and inode (as `stat` shows them), when it could be read.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The destination's path.
    pub path: &'a [u8],
    /// The path with its links resolved, if it differs.
    pub real: Option<&'a [u8]>,
    /// `st_dev` and `st_ino` of the socket file.
    pub file: Option<(u64, u64)>,
}

/// The listeners of a unix_diag dump that may be the one looked for, by how they match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Matches {
    /// Bound to the path (as given or resolved).
    by_name: Option<Queue>,
    /// With the socket file's inode, on another device.
    by_inode: Option<Queue>,
    /// How many listeners have that inode (the inode alone is trusted when only one has it).
    inode_matches: u32,
}

impl Matches {
    /// The listener found when no socket file's device and inode matched: the one bound to the
    /// path, or else the only one with the file's inode.
    pub fn best(&self) -> Option<Queue> {
        self.by_name
            .or(self.by_inode.filter(|_| self.inode_matches == 1))
    }
}

/// Looks for the listener of `wanted` in one read of a unix_diag dump: [`Part::Found`] for the
/// one with the socket file's device and inode; the others that may be it go in `matches`
/// (see [`Matches::best`]). Pure and total: malformed messages end the part (as [`Part::More`]:
/// the caller's read bound ends the dump).
pub fn unix_listener(part: &[u8], wanted: &Wanted<'_>, matches: &mut Matches) -> Part {
    walk(part, |msg| {
        let listener = listener_in(msg)?;
        let queue = listener.queue?;
        let named = listener.name.is_some_and(|name| {
            name == wanted.path || wanted.real.is_some_and(|real| name == real)
        });
        match (listener.file, wanted.file) {
            (Some((ino, dev)), Some((file_dev, file_ino)))
                if u64::from(ino) == file_ino & 0xffff_ffff =>
            {
                if user_dev(dev) == file_dev {
                    return Some(queue);
                }
                matches.inode_matches = matches.inode_matches.saturating_add(1);
                matches.by_inode = Some(queue);
            }
            _ => {}
        }
        if named && matches.by_name.is_none() {
            matches.by_name = Some(queue);
        }
        None
    })
}

/// A device number as unix_diag gives it (the kernel's own: major in the top 12 bits, minor in
/// the low 20) as `stat` shows it.
fn user_dev(kernel: u32) -> u64 {
    rustix::fs::makedev(kernel >> 20, kernel & 0xf_ffff)
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
fn walk(part: &[u8], mut find: impl FnMut(&[u8]) -> Option<Queue>) -> Part {
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

/// What a `unix_diag_msg` and its attributes say of a listener.
struct Listener<'a> {
    name: Option<&'a [u8]>,
    /// `udiag_vfs_ino` and `udiag_vfs_dev` of the socket file it was bound to.
    file: Option<(u32, u32)>,
    queue: Option<Queue>,
}

/// A listener's name, socket file and queue, if `msg` is a listener's `unix_diag_msg`.
fn listener_in(msg: &[u8]) -> Option<Listener<'_>> {
    let state = *msg.get(2)?;
    if u32::from(state) != TCP_LISTEN {
        return None;
    }
    let mut at = UNIX_DIAG_MSG;
    let mut listener = Listener {
        name: None,
        file: None,
        queue: None,
    };
    while let (Some(len), Some(kind)) = (u16_at(msg, at), u16_at(msg, at.saturating_add(2))) {
        let len = usize::from(len);
        let value = msg.get(at.checked_add(4)?..at.checked_add(len)?)?;
        match kind {
            // The kernel may count the bind's trailing NUL in the name.
            UNIX_DIAG_NAME => listener.name = Some(value.strip_suffix(b"\0").unwrap_or(value)),
            UNIX_DIAG_VFS => listener.file = Some((u32_at(value, 0)?, u32_at(value, 4)?)),
            UNIX_DIAG_RQLEN => {
                listener.queue = Some(Queue {
                    queued: u64::from(u32_at(value, 0)?),
                    backlog: Some(u64::from(u32_at(value, 4)?)),
                });
            }
            _ => {}
        }
        at = at.checked_add(align4(len)?.max(4))?;
    }
    Some(listener)
}

/// Reads the queue of the Unix listener of the socket file at `path` through
/// NETLINK_SOCK_DIAG (see the module's doc for how it is matched).
pub fn unix(path: &Path) -> View {
    use std::os::unix::ffi::OsStrExt;

    let file = match rustix::fs::stat(path) {
        Ok(stat) => Some((stat.st_dev, stat.st_ino)),
        Err(rustix::io::Errno::NOENT) => {
            return View::Unavailable(Unseen::NoSocketFile(format!(
                "the socket file {} does not exist: php-fpm has not made it (not started, or listening elsewhere)",
                path.display()
            )))
        }
        Err(_) => None,
    };
    let given = path.as_os_str().as_bytes();
    let real = std::fs::canonicalize(path).ok();
    let real = real
        .as_ref()
        .map(|real| real.as_os_str().as_bytes())
        .filter(|real| *real != given);
    let wanted = Wanted {
        path: given,
        real,
        file,
    };
    let mut matches = Matches::default();
    let found = dump(&unix_request(), |part| {
        unix_listener(part, &wanted, &mut matches)
    });
    match found {
        Ok(Some(queue)) => View::Seen(queue),
        Ok(None) => match matches.best() {
            Some(queue) => View::Seen(queue),
            None => View::Unavailable(Unseen::Elsewhere(format!(
                "no listening Unix socket of this network namespace has the socket file {} (sock_diag): php-fpm listens in another network namespace (another container sharing the socket's volume), or has stopped and left the file",
                path.display()
            ))),
        },
        Err(error) => View::Unavailable(Unseen::Refused(format!(
            "cannot read the Unix listen queues (NETLINK_SOCK_DIAG): {error}"
        ))),
    }
}

/// Sends one sock_diag dump `request` and reads its parts (at most [`MAX_NETLINK_READS`]), asking
/// `find` about each, until it finds the listener or the dump ends.
fn dump(request: &[u8], mut find: impl FnMut(&[u8]) -> Part) -> std::io::Result<Option<Queue>> {
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

    /// A dump part with one listener bound to `name` on the socket file `file` (inode, device
    /// as the kernel encodes it), then DONE.
    fn dump(name: &[u8], file: (u32, u32), state: u8, queued: u32, backlog: u32) -> Vec<u8> {
        let mut msg = vec![libc::AF_UNIX as u8, 1, state, 0];
        msg.extend_from_slice(&7u32.to_ne_bytes());
        msg.extend_from_slice(&[0; 8]);
        let name_len = 4 + name.len();
        msg.extend_from_slice(&(name_len as u16).to_ne_bytes());
        msg.extend_from_slice(&UNIX_DIAG_NAME.to_ne_bytes());
        msg.extend_from_slice(name);
        msg.resize(msg.len() + (align4(name_len).unwrap() - name_len), 0);
        msg.extend_from_slice(&12u16.to_ne_bytes());
        msg.extend_from_slice(&UNIX_DIAG_VFS.to_ne_bytes());
        msg.extend_from_slice(&file.0.to_ne_bytes());
        msg.extend_from_slice(&file.1.to_ne_bytes());
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

    const PATH: &[u8] = b"/run/php/fpm.sock";

    /// Device 254:3 as unix_diag gives it, and as `stat` does.
    const KERNEL_DEV: u32 = (254 << 20) | 3;
    const STAT_DEV: u64 = (254 << 8) | 3;

    fn wanted(path: &[u8], file: Option<(u64, u64)>) -> Wanted<'_> {
        Wanted {
            path,
            real: None,
            file,
        }
    }

    fn find(part: &[u8], wanted: &Wanted<'_>) -> (Part, Option<Queue>) {
        let mut matches = Matches::default();
        let part = unix_listener(part, wanted, &mut matches);
        (part, matches.best())
    }

    #[test]
    fn finds_a_unix_listener_by_its_file_then_by_path() {
        let queue = Queue {
            queued: 3,
            backlog: Some(511),
        };
        let part = dump(b"/var/run/php/fpm.sock\0", (77, KERNEL_DEV), 10, 3, 511);
        // The socket file's device and inode: found, whatever path it was bound at.
        let by_file = wanted(PATH, Some((STAT_DEV, 77)));
        assert_eq!(find(&part, &by_file), (Part::Found(queue), None));
        // Another file at the bound path: the name decides.
        let by_name = wanted(b"/var/run/php/fpm.sock", Some((STAT_DEV, 78)));
        assert_eq!(find(&part, &by_name), (Part::Done, Some(queue)));
        // The inode on another device (overlayfs): the only listener with it.
        let by_inode = wanted(PATH, Some((1, 77)));
        assert_eq!(find(&part, &by_inode), (Part::Done, Some(queue)));
        // Neither.
        let other = wanted(PATH, Some((STAT_DEV, 78)));
        assert_eq!(find(&part, &other), (Part::Done, None));
        assert_eq!(find(&part, &wanted(PATH, None)), (Part::Done, None));
        // Not a listener: skipped.
        let part = dump(PATH, (77, KERNEL_DEV), 1, 3, 511);
        assert_eq!(find(&part, &by_file), (Part::Done, None));
        // Two listeners with the inode (on two other devices): the inode alone is not trusted.
        let mut two = dump(b"/a", (77, 1 << 20), 10, 3, 511);
        two.truncate(two.len() - 20);
        two.extend_from_slice(&dump(b"/b", (77, 2 << 20), 10, 3, 511));
        assert_eq!(find(&two, &by_inode), (Part::Done, None));
        let mut error = Vec::new();
        error.extend_from_slice(&36u32.to_ne_bytes());
        error.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        error.extend_from_slice(&[0; 10]);
        error.extend_from_slice(&(-2i32).to_ne_bytes());
        error.extend_from_slice(&[0; 16]);
        assert_eq!(find(&error, &by_file).0, Part::Error(2));
    }

    #[test]
    fn unix_parser_is_total() {
        let part = dump(PATH, (77, KERNEL_DEV), 10, 3, 511);
        let by_file = wanted(PATH, Some((STAT_DEV, 77)));
        for end in 0..part.len() {
            let _ = find(&part[..end], &by_file);
        }
        let mut broken = part.clone();
        for i in 0..broken.len() {
            broken[i] = 0xff;
            let _ = find(&broken, &by_file);
        }
        assert_eq!(find(&[0; 16], &by_file).0, Part::More);
    }

    #[test]
    fn reads_a_real_unix_listener_by_its_file() {
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
        // The same socket file at another path (a hard link: the bound name is not ours).
        let other = dir.join("other.sock");
        let _ = std::fs::remove_file(&other);
        std::fs::hard_link(&path, &other).unwrap();
        match unix(&other) {
            View::Seen(queue) => assert_eq!(queue.queued, 2, "{queue:?}"),
            other => panic!("{other:?}"),
        }
        drop(listener);
        assert!(
            matches!(unix(&path), View::Unavailable(Unseen::Elsewhere(_))),
            "{:?}",
            unix(&path)
        );
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(unix(&path), View::Unavailable(Unseen::NoSocketFile(_))),
            "{:?}",
            unix(&path)
        );
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
