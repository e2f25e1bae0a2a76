//! The kernel formats of the listen-queue reader: `listen_queue::tcp_listener` (the text of
//! `/proc/net/tcp{,6}`), `unix_listener` and `inet_listener` (one read of a NETLINK_SOCK_DIAG
//! dump). None may panic, and a found queue must come from a listener of the asked port/path.
//!
//! Input layout: bytes 0-1: the port (big endian); then the bytes given to all three parsers
//! (the path asked of `unix_listener` is the input's first 16 bytes after the port, the socket
//! file's device and inode the port).
#![no_main]

use fastcgi_healthcheck::os::listen_queue::{self, Part};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((port, rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let port = u16::from_be_bytes(*port);
    let _ = listen_queue::tcp_listener(rest, port);
    let path = rest.get(..16).unwrap_or(rest);
    let wanted = listen_queue::Wanted {
        path,
        real: None,
        file: Some((u64::from(port), u64::from(port))),
    };
    let mut matches = listen_queue::Matches::default();
    match listen_queue::unix_listener(rest, &wanted, &mut matches) {
        Part::Found(queue) => assert!(queue.backlog.is_some()),
        Part::More | Part::Done | Part::Error(_) => {}
    }
    if let Some(queue) = matches.best() {
        assert!(queue.backlog.is_some());
    }
    match listen_queue::inet_listener(rest, port, Some(std::net::IpAddr::from([127, 0, 0, 1]))) {
        Part::Found(queue) => assert!(queue.backlog.is_some()),
        Part::More | Part::Done | Part::Error(_) => {}
    }
});
