//! The one place with `unsafe`: calls into the C library that have no safe wrapper.
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
