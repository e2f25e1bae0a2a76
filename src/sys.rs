//! The one place with `unsafe`: calls into the C library that have no safe wrapper, and the
//! adoption of the socket systemd passes as descriptor 3.
//!
//! Each call states why it is sound. Everything else in the crate denies `unsafe`.

/// Gives the memory freed after a connection storm back to the operating system.
///
/// glibc's allocator returns freed memory only from the top of its heap; a storm's connections
/// free megabytes in the middle of it that stay in the process's RSS until `malloc_trim` releases
/// those pages. A no-op where the C library is not glibc.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` has no preconditions: it takes the allocator's own lock, only
    // releases pages of free chunks, and is safe to call at any time from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Takes ownership of descriptor 3, the first socket systemd passes (`sd_listen_fds(3)`), and
/// marks it close-on-exec. Only the first call adopts it; later calls fail.
pub fn adopt_listen_fd() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicBool, Ordering};

    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(std::io::Error::other("descriptor 3 was already taken"));
    }
    let fd = crate::systemd::LISTEN_FDS_START;
    // SAFETY: `fcntl(F_GETFD)` is sound on any integer; it only reports whether it is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the descriptor is open (checked above), and systemd passed it for this process to
    // own (the caller checked `LISTEN_PID` against our pid). Nothing else in the process refers
    // to it: the program adopts it once (guarded above), at start, before it opens any file.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    rustix::io::fcntl_setfd(&owned, rustix::io::FdFlags::CLOEXEC)?;
    Ok(owned)
}
