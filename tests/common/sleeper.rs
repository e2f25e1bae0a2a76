//! A pool saturated by real PHP: a docroot with `sleep.php` (`?ms=N`) and clients that run it
//! over FastCGI from threads of the test. More clients than the pool has workers keep every
//! worker busy and queue the rest on php-fpm's listener, so that a ping behind them times out.

use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::thread::{self, JoinHandle};

use super::fcgi::fcgi_get_query;
use super::fpm::Listen;
use super::sys::TempDir;

/// A docroot with `sleep.php` (`?ms=N`), removed on drop.
pub struct Docroot {
    dir: TempDir,
}

impl Docroot {
    pub fn new() -> Self {
        let dir = TempDir::new();
        std::fs::write(
            dir.join("sleep.php"),
            "<?php usleep((int)$_GET['ms'] * 1000); echo 'slept';\n",
        )
        .expect("write sleep.php");
        Self { dir }
    }

    /// The script's path, for `SCRIPT_FILENAME`.
    pub fn script(&self) -> String {
        self.dir.join("sleep.php").display().to_string()
    }
}

/// `n` clients, each running `sleep.php?ms=ms` over FastCGI at `listen` (from threads of this
/// test); each thread ends with whether its request was answered.
pub fn sleepers(listen: &Listen, docroot: &Docroot, n: usize, ms: u64) -> Vec<JoinHandle<bool>> {
    (0..n)
        .map(|_| {
            let (listen, script) = (listen.clone(), docroot.script());
            let query = format!("ms={ms}");
            thread::spawn(move || {
                let answer = match &listen {
                    Listen::Tcp(addr) => TcpStream::connect(addr)
                        .and_then(|stream| fcgi_get_query(stream, &script, &query)),
                    Listen::Unix(path) => UnixStream::connect(path)
                        .and_then(|stream| fcgi_get_query(stream, &script, &query)),
                };
                answer.is_ok_and(|a| a.stdout.contains("slept"))
            })
        })
        .collect()
}
