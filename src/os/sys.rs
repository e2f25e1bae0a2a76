//! The one place with `unsafe`: calls into the C library that have no safe wrapper, and the
//! adoption of the socket systemd passes as descriptor 3.
//!
//! Each call states why it is sound. Everything else in the crate denies `unsafe`.

/// Gives free memory back to the operating system (after a connection storm, and when idle).
///
/// glibc's allocator returns freed memory on its own only from the top of its heap, and only above
/// 128 KiB; a storm's connections free megabytes in the middle of it that stay in the process's
/// RSS until `malloc_trim` releases those pages. A no-op where the C library is not glibc.
pub(crate) fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions: it takes the allocator's own lock, only
    // releases pages of free chunks, and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes ownership of descriptor 3 when systemd passed it to this very process
/// (`sd_listen_fds(3)`: `LISTEN_PID` is our pid, read by [`crate::os::systemd::activation`], the
/// one parser of the activation variables) and it is a listening stream socket; marks it
/// close-on-exec. Only the first call can adopt it. Nothing is taken (or closed) on failure.
pub(crate) fn adopt_listen_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::io::{Error, ErrorKind};
    use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};

    use crate::os::systemd::{self, Activation};

    let activation = systemd::activation(|name| std::env::var_os(name), std::process::id());
    if !matches!(activation, Ok(Activation::Sockets(_))) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "LISTEN_PID and LISTEN_FDS pass no socket to this process",
        ));
    }
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(Error::other("descriptor 3 was already taken"));
    }
    let fd = systemd::LISTEN_FDS_START;
    // SAFETY: `fcntl(F_GETFD)` is sound on any integer; it only reports whether it is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above) and stays open while borrowed: nothing in
    // this function closes it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let stream = rustix::net::sockopt::socket_type(borrowed)? == rustix::net::SocketType::STREAM;
    if !stream || !rustix::net::sockopt::socket_acceptconn(borrowed)? {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "it is not a listening stream socket",
        ));
    }
    // SAFETY: it is an open listening socket that systemd passed to this process (`LISTEN_PID`
    // checked above) for the process to own; it is adopted once (guarded above), and nothing else
    // in the program refers to descriptor 3.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(owned)
}
