//! The static binary alone in an empty root filesystem (what `FROM scratch` gives): it serves and
//! runs `check` under `chroot` against a real php-fpm over TCP by address, over a Unix socket
//! inside that root, and by host name through `/etc/hosts` and then through a DNS server on
//! loopback (dnsmasq) named in `/etc/resolv.conf`, as Docker and Kubernetes inject them. Without
//! those files a name fails with a clear message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::tool::{run_program_to_exit, static_binary};
use common::{get, wait_until, Listen, PhpFpm, TempDir, Tool};

/// An empty root with only the binary in it.
fn empty_root(binary: &Path) -> TempDir {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test runs the binary under chroot, which needs root (CI runs as root)"
    );
    let root = TempDir::new();
    fs::copy(binary, root.join("fastcgi-healthcheck")).unwrap();
    root
}

fn chrooted(root: &TempDir) -> Vec<String> {
    vec![
        "chroot".into(),
        root.path().display().to_string(),
        "/fastcgi-healthcheck".into(),
    ]
}

fn check_in(root: &TempDir, destination: &str, port: u16) -> common::tool::Finished {
    let argv = chrooted(root);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let port = port.to_string();
    run_program_to_exit(
        &argv,
        &[
            ("DESTINATION", destination),
            ("DESTINATION_PORT", port.as_str()),
        ],
        &["check"],
    )
}

fn serve_in(root: &TempDir, destination: &str, port: u16) -> Tool {
    let argv = chrooted(root);
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let port = port.to_string();
    Tool::start_program(
        &argv,
        &[
            ("DESTINATION", destination),
            ("DESTINATION_PORT", port.as_str()),
        ],
    )
}

fn assert_healthy(root: &TempDir, destination: &str, port: u16) {
    let finished = check_in(root, destination, port);
    assert_eq!(
        finished.status.code(),
        Some(0),
        "check {destination}: {}",
        finished.stderr
    );
    assert_eq!(finished.stdout.trim(), "ok");
    let tool = serve_in(root, destination, port);
    get(tool.addr(), "/fcgi-ping").assert_ok();
}

/// dnsmasq answering `name` with 127.0.0.1 on 127.0.0.77:53, and nothing else.
fn dns_server(name: &str) -> Child {
    let dnsmasq = ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or_else(|| {
            panic!("dnsmasq not found: install it with \"apt-get install dnsmasq-base\"")
        });
    Command::new(dnsmasq)
        .args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--listen-address=127.0.0.77",
            "--bind-interfaces",
        ])
        .args([
            "--port=53",
            "--no-resolv",
            "--no-hosts",
            "--user=root",
            "--pid-file=",
        ])
        .arg(format!("--address=/{name}/127.0.0.1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dnsmasq")
}

#[test]
fn the_static_binary_alone_serves_and_checks_in_an_empty_root() {
    let binary = static_binary();
    let root = empty_root(&binary);

    // TCP by address.
    let fpm = PhpFpm::tcp();
    assert_healthy(&root, "127.0.0.1", fpm.port());

    // A Unix socket placed in that root.
    let socket = root.join("php-fpm.sock");
    let unix_fpm = PhpFpm::start(Listen::Unix(socket));
    assert_healthy(&root, "/php-fpm.sock", 9000);
    drop(unix_fpm);

    // A name, with no /etc at all: a clear failure, not a crash.
    let finished = check_in(&root, "php-fpm.internal", fpm.port());
    assert_eq!(finished.status.code(), Some(1), "{}", finished.stderr);
    assert!(
        finished
            .stderr
            .starts_with("resolve_failed: cannot resolve php-fpm.internal"),
        "{}",
        finished.stderr
    );

    // A name through /etc/hosts.
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(root.join("etc/hosts"), "127.0.0.1 php-fpm.internal\n").unwrap();
    assert_healthy(&root, "php-fpm.internal", fpm.port());
    fs::remove_file(root.join("etc/hosts")).unwrap();

    // A name through a DNS server named in /etc/resolv.conf.
    let mut dns = dns_server("php-fpm.test");
    fs::write(
        root.join("etc/resolv.conf"),
        "nameserver 127.0.0.77\noptions timeout:1 attempts:1\n",
    )
    .unwrap();
    let finished = wait_until(Duration::from_secs(10), "dnsmasq to answer", || {
        let finished = check_in(&root, "php-fpm.test", fpm.port());
        (finished.status.code() == Some(0)).then_some(finished)
    });
    assert_eq!(finished.stdout.trim(), "ok");
    assert_healthy(&root, "php-fpm.test", fpm.port());
    let _ = dns.kill();
    let _ = dns.wait();
}
