//! The edges to the operating system: systemd (socket activation, readiness), the sockets the
//! server listens on and serves, the kernel's view of php-fpm's listen queue, the non-blocking
//! log writer, the names of users and groups (for a permission error), and the one audited
//! `unsafe`.

pub(crate) mod alarm;
pub mod discover;
pub(crate) mod ids;
pub mod listen_queue;
pub mod log;
pub(crate) mod socket;
#[allow(unsafe_code)]
pub(crate) mod sys;
pub mod systemd;

pub(crate) use sys::release_free_memory;
