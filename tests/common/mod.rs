//! Shared harness for the black-box integration tests.
//!
//! Each test file does `mod common;` and uses only what it needs, hence unused items are allowed here.
#![allow(dead_code, unused_imports)]

pub mod fcgi;
pub mod fpm;
pub mod http;
pub mod pools;
pub mod promtool;
pub mod sleeper;
pub mod sys;
pub mod tool;

pub use fcgi::{Behavior, FakePeer};
pub use fpm::{Listen, PhpFpm};
pub use http::{get, request_text, timed_get, Client, Response};
pub use sys::{free_port, ipv6_loopback_available, server_read_everything, wait_until, TempDir};
pub use tool::{run_to_exit, Tool};
