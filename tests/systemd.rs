//! systemd: socket activation for real with `systemd-socket-activate` (Debian's systemd package),
//! `IDLE_EXIT`, `sd_notify` readiness, and clear errors for a wrong `LISTEN_FDS`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tool::{argv, TOOL_VARS};
use common::{free_port, get, wait_until, Behavior, FakePeer, TempDir, Tool};

const ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

/// `systemd-socket-activate` listening on `listen`, starting the tool on the first connection.
fn activate(listen: &str, env: &[(&str, &str)]) -> Child {
    assert!(
        Path::new(ACTIVATE).exists(),
        "{ACTIVATE} not found: install it with \"apt-get install systemd\""
    );
    let mut command = Command::new(ACTIVATE);
    command.args(["-l", listen]);
    for var in TOOL_VARS {
        command.env_remove(var);
    }
    for (name, value) in env {
        command.arg("-E").arg(format!("{name}={value}"));
    }
    command
        .args(argv())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn systemd-socket-activate")
}

/// The pid listening on 127.0.0.1:`port`, from `ss`.
fn listener_pid(port: u16) -> Option<u32> {
    let out = Command::new("ss")
        .args(["-ltnpH", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("pid=")?;
    text[at + 4..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn healthy_peer_env(peer: &FakePeer) -> String {
    peer.port().to_string()
}

#[test]
fn socket_activation_serves_then_idle_exit_then_a_fresh_process_serves() {
    let peer = FakePeer::start(Behavior::healthy());
    let port = free_port(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listen = format!("127.0.0.1:{port}");
    let addr: SocketAddr = listen.parse().unwrap();
    let fcgi_port = healthy_peer_env(&peer);
    let env = [
        ("DESTINATION_PORT", fcgi_port.as_str()),
        ("IDLE_EXIT", "1s"),
    ];

    let mut first = activate(&listen, &env);
    wait_until(
        Duration::from_secs(5),
        "systemd-socket-activate to listen",
        || listener_pid(port).map(|_| ()),
    );
    // The first request starts the tool on the inherited socket.
    get(addr, "/fcgi-ping").assert_ok();
    let first_pid = listener_pid(port).expect("the tool holds the socket");
    // Without connections it exits by itself, with status 0.
    let status = wait_until(Duration::from_secs(5), "IDLE_EXIT", || {
        first.try_wait().unwrap()
    });
    assert_eq!(status.code(), Some(0));

    // systemd starts the service again on the next connection (here: a new activator).
    let mut second = activate(&listen, &env);
    wait_until(
        Duration::from_secs(5),
        "the activator to listen again",
        || listener_pid(port).map(|_| ()),
    );
    get(addr, "/fcgi-ping").assert_ok();
    let second_pid = listener_pid(port).expect("the tool holds the socket");
    assert_ne!(first_pid, second_pid, "a fresh process");
    let _ = second.kill();
    let _ = second.wait();
    assert_eq!(peer.requests().len(), 2);
}

#[test]
fn socket_activation_on_a_unix_socket() {
    let peer = FakePeer::start(Behavior::healthy());
    let dir = TempDir::new();
    let path = dir.join("http.sock");
    let fcgi_port = healthy_peer_env(&peer);
    let mut activator = activate(
        path.to_str().unwrap(),
        &[("DESTINATION_PORT", fcgi_port.as_str())],
    );
    let mut stream = wait_until(Duration::from_secs(5), "the Unix socket", || {
        UnixStream::connect(&path).ok()
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /fcgi-ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    let _ = activator.kill();
    let _ = activator.wait();
}

#[test]
fn sd_notify_ready_then_stopping() {
    let dir = TempDir::new();
    let path = dir.join("notify.sock");
    let notify = UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let tool = Tool::start(&[("NOTIFY_SOCKET", path.to_str().unwrap())]);
    let mut buf = [0u8; 64];
    let n = notify.recv(&mut buf).expect("READY=1 within 10 s");
    assert_eq!(&buf[..n], b"READY=1");
    // Ready means serving.
    get(tool.addr(), "/health").assert_ok();
    tool.signal("TERM");
    let n = notify.recv(&mut buf).expect("STOPPING=1 after SIGTERM");
    assert_eq!(&buf[..n], b"STOPPING=1");
}

/// Runs the tool with `LISTEN_PID` set to its own pid (through `sh`'s `exec`), `LISTEN_FDS` and
/// descriptor 3 as `redirect` sets it up.
fn run_activated(listen_fds: &str, redirect: &str) -> (Option<i32>, String) {
    let script = format!("{redirect} LISTEN_PID=$$ LISTEN_FDS={listen_fds} exec \"$@\"");
    let mut command = Command::new("sh");
    for var in TOOL_VARS {
        command.env_remove(var);
    }
    let out = command
        .args(["-c", &script, "sh"])
        .args(argv())
        .env("SERVER", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("run sh");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_wrong_listen_fds_is_a_clear_error() {
    let started = Instant::now();
    let (code, stderr) = run_activated("two", "");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("LISTEN_FDS=\"two\""), "{stderr}");
    // Descriptor 3 is a file, not a listening socket.
    let (code, stderr) = run_activated("1", "exec 3</dev/null;");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("LISTEN_FDS") && stderr.contains("descriptor 3"),
        "{stderr}"
    );
    // Descriptor 3 is not open at all.
    let (code, stderr) = run_activated("1", "exec 3<&-;");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("LISTEN_FDS"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Not for us (another pid): ignored, the tool binds SERVER as usual.
    let tool = Tool::start(&[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")]);
    get(tool.addr(), "/health").assert_ok();
    drop(TcpStream::connect(tool.addr()));
}

/// systemd passes two sockets (two `ListenStream=`): this program serves one, so it says so and
/// exits 2 instead of silently ignoring descriptor 4.
#[test]
fn two_inherited_sockets_are_a_clear_error() {
    assert!(
        Path::new(ACTIVATE).exists(),
        "{ACTIVATE} not found: install it with \"apt-get install systemd\""
    );
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (a, b) = (free_port(localhost), free_port(localhost));
    let mut command = Command::new(ACTIVATE);
    for var in TOOL_VARS {
        command.env_remove(var);
    }
    let mut child = command
        .args([
            "-l",
            &format!("127.0.0.1:{a}"),
            "-l",
            &format!("127.0.0.1:{b}"),
        ])
        .args(argv())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn systemd-socket-activate");
    let addr = SocketAddr::new(localhost, a);
    let mut client = wait_until(Duration::from_secs(10), "the activation socket", || {
        TcpStream::connect(addr).ok()
    });
    let _ = client.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n");
    let status = common::sys::poll(Duration::from_secs(10), || child.try_wait().unwrap());
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the tool still serves 10 s after systemd passed two sockets");
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("LISTEN_FDS=\"2\""), "{stderr}");
}

/// The shipped unit files are valid for systemd (`systemd-analyze verify`), with `ExecStart`
/// pointing at the binary under test.
#[test]
fn shipped_unit_files_verify() {
    let dir = TempDir::new();
    let units = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/systemd");
    for name in ["fastcgi-healthcheck.socket", "fastcgi-healthcheck.service"] {
        let text = std::fs::read_to_string(units.join(name)).unwrap();
        let text = text.replace(
            "ExecStart=/usr/local/bin/fastcgi-healthcheck",
            &format!("ExecStart={}", argv().join(" ")),
        );
        std::fs::write(dir.join(name), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("fastcgi-healthcheck.socket"))
        .arg(dir.join("fastcgi-healthcheck.service"))
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
