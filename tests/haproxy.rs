//! Debian's HAProxy health-checks php-fpm through the tool (`option httpchk GET /fcgi-ping`):
//! the server goes DOWN within the check interval when php-fpm stops, and UP when it returns.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, wait_until, Listen, PhpFpm, TempDir, Tool};

const HAPROXY: &str = "/usr/sbin/haproxy";

struct Haproxy {
    child: Child,
    stats: PathBuf,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Haproxy {
    /// HAProxy with one server, php-fpm at `fpm_port`, checked every 200 ms through the tool's
    /// `/fcgi-ping` at `tool_port`: two failures make it DOWN, two successes UP.
    fn start(dir: &TempDir, fpm_port: u16, tool_port: u16) -> Self {
        assert!(
            Path::new(HAPROXY).exists(),
            "{HAPROXY} not found: install it with \"apt-get install haproxy\""
        );
        let stats = dir.join("haproxy.sock");
        let listen = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let config = format!(
            "global\n\
             \x20   stats socket {stats} mode 600 level admin\n\
             defaults\n\
             \x20   mode tcp\n\
             \x20   timeout connect 1s\n\
             \x20   timeout client 5s\n\
             \x20   timeout server 5s\n\
             \x20   timeout check 1s\n\
             listen php\n\
             \x20   bind 127.0.0.1:{listen}\n\
             \x20   option httpchk GET /fcgi-ping\n\
             \x20   http-check expect status 200\n\
             \x20   server fpm 127.0.0.1:{fpm_port} check port {tool_port} inter 200ms fall 2 rise 2\n",
            stats = stats.display(),
        );
        let path = dir.join("haproxy.cfg");
        fs::write(&path, config).unwrap();
        let child = Command::new(HAPROXY)
            .arg("-f")
            .arg(&path)
            .arg("-db")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let haproxy = Self { child, stats };
        wait_until(Duration::from_secs(10), "haproxy's stats socket", || {
            haproxy.status()
        });
        haproxy
    }

    /// The server's status from `show stat` (`UP`, `DOWN`, `UP 1/2`, ...).
    fn status(&self) -> Option<String> {
        let mut socket = UnixStream::connect(&self.stats).ok()?;
        socket.write_all(b"show stat\n").ok()?;
        let mut csv = String::new();
        socket.read_to_string(&mut csv).ok()?;
        let header: Vec<&str> = csv
            .lines()
            .next()?
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let column = header.iter().position(|name| *name == "status")?;
        let row = csv.lines().find(|line| line.starts_with("php,fpm,"))?;
        row.split(',').nth(column).map(str::to_owned)
    }

    fn wait_for(&self, wanted: &str, within: Duration) -> Duration {
        let started = Instant::now();
        wait_until(
            within,
            &format!("HAProxy to see the server {wanted}"),
            || (self.status().as_deref() == Some(wanted)).then_some(()),
        );
        started.elapsed()
    }
}

#[test]
fn haproxy_marks_php_fpm_down_and_up_through_the_tool() {
    let dir = TempDir::new();
    let mut fpm = PhpFpm::tcp();
    let addr = fpm.addr();
    let tool = Tool::probing("127.0.0.1", addr.port(), &[("TIMEOUT", "500ms")]);
    let haproxy = Haproxy::start(&dir, addr.port(), tool.addr().port());
    haproxy.wait_for("UP", Duration::from_secs(10));

    // php-fpm stops: two failed checks 200 ms apart, well within 2 s.
    fpm.kill();
    let took = haproxy.wait_for("DOWN", Duration::from_secs(5));
    assert!(took < Duration::from_secs(2), "DOWN after {took:?}");

    // php-fpm returns on the same port: UP after two good checks.
    let fpm = PhpFpm::start(Listen::Tcp(addr));
    let took = haproxy.wait_for("UP", Duration::from_secs(5));
    assert!(took < Duration::from_secs(2), "UP after {took:?}");
    drop(fpm);
}
