//! `fastcgi-healthcheck`: answers HTTP health probes by pinging a FastCGI server (php-fpm).
//!
//! An HTTP request to `/fcgi-ping` becomes one FastCGI request to the configured ping path, and
//! the answer becomes `200 ok` or a failure status with a one-line reason. Everything runs on one
//! thread: a [`async_executor::LocalExecutor`] driven by [`async_io::block_on`].
//!
//! The pure parts (configuration values, HTTP request heads, FastCGI records, CGI responses) have
//! no I/O and no logging, so tests and fuzz targets call them directly:
//!
//! ```
//! use fastcgi_healthcheck::cgi;
//!
//! let answer = cgi::check(b"Content-type: text/plain\r\n\r\npong", b"pong");
//! assert!(answer.is_ok());
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod cgi;
pub mod check;
pub mod coalesce;
pub mod config;
pub mod deadline;
pub mod fcgi;
pub mod http;
pub mod limits;
pub mod logger;
pub mod metrics;
pub mod probe;
pub mod server;
pub mod socket;
pub mod status;
#[allow(unsafe_code)]
mod sys;
pub mod systemd;
pub mod throttle;
