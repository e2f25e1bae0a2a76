//! `fastcgi-healthcheck`: answers HTTP health probes by pinging a FastCGI server (php-fpm).
//!
//! An HTTP request to `/fcgi-ping` becomes one FastCGI request to the configured ping path, and
//! the answer becomes `200 ok` or a failure status with a one-line reason. Everything runs on one
//! thread: a [`smol::LocalExecutor`] driven by [`smol::block_on`].
//!
//! The house, one room per job:
//! - [`config`]: the one table of settings; flags and variables become a validated `Config`.
//! - [`proto`]: pure parsing and rendering over byte slices (HTTP heads, FastCGI records, CGI,
//!   php-fpm's status page, the metrics text); no I/O, no logging, no clock; fuzzed.
//! - [`probe`]: a target (name resolution, connect), one FastCGI exchange under one deadline, a
//!   pure judge, single-flight; the log of its outcomes belongs to the caller.
//! - `liveness`: healthy, busy, stuck or dead: one pure state machine with an injected clock,
//!   fed by probe verdicts, the kernel's queue, the kept connection and php-fpm's own page.
//! - [`server`]: the listener, the connection cap, each connection as read, respond, send, and
//!   the pools (one, `POOLS`, or a directory of sockets), each with its probes and counters.
//! - [`os`]: the edges to the operating system: systemd, sockets, the non-blocking log writer,
//!   and the one audited `unsafe`.
//! - [`check`]: the one-shot `check` mode.
//! - [`fpm_healthcheck`]: the `php-fpm-healthcheck` mode (that script's interface, with a deadline).
//!
//! The pure parts have no I/O and no logging, so tests and fuzz targets call them directly:
//!
//! ```
//! use fastcgi_healthcheck::cgi;
//!
//! let answer = cgi::check(b"Content-type: text/plain\r\n\r\npong", b"pong");
//! assert!(answer.is_ok());
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod check;
pub mod config;
pub(crate) mod deadline;
pub mod fpm_healthcheck;
pub(crate) mod join;
pub mod limits;
pub(crate) mod liveness;
pub mod os;
pub mod probe;
pub mod proto;
pub mod server;
pub(crate) mod throttle;

pub use proto::{cgi, fcgi, http, metrics, status};
