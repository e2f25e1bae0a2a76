//! Bad input to the build scripts of the release (`scripts/cross`, `scripts/debian/build-deb`,
//! `scripts/docker/build-image`, `scripts/test-systemd`): a usage line naming what is accepted
//! and exit 2, or one line naming what is missing and exit 1. None of these builds anything.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::TempDir;

fn script(name: &str) -> Command {
    Command::new(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("scripts")
            .join(name),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn cross_names_the_accepted_targets_for_an_unknown_one() {
    for args in [&["x86"][..], &[], &["aarch64", "--dynamic"]] {
        let out = script("cross").args(args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        let usage = err.lines().last().unwrap_or_default();
        assert!(
            usage.starts_with("usage: scripts/cross TARGET")
                && usage.contains("aarch64")
                && usage.contains("armv7"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn cross_says_which_package_it_cannot_install() {
    // apt-get that always fails and a dpkg-query that finds nothing installed: the first thing
    // cross needs, Debian's rustc-web, cannot be installed.
    let bin = TempDir::new();
    for (name, body) in [
        ("apt-get", "exit 100"),
        ("dpkg-query", "exit 1"),
        ("sudo", "exec \"$@\""),
    ] {
        let path = bin.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    let out = script("cross")
        .arg("aarch64")
        .env("PATH", path)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cross: cannot install rustc-web"),
        "the last line does not name the package: {err}"
    );
}

#[test]
fn build_deb_names_the_architectures_for_an_unknown_one() {
    let out = script("debian/build-deb")
        .args(["riscv64", "/bin/true"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("amd64, arm64 or armhf"), "{err}");
}

#[test]
fn build_image_says_in_one_line_that_no_daemon_answers() {
    let dir = TempDir::new();
    let host = format!("unix://{}", dir.join("no-docker.sock").display());
    let out = script("docker/build-image")
        .env("DOCKER_HOST", &host)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("no Docker daemon answers") && err.contains(&host),
        "{err}"
    );
}

#[test]
fn test_systemd_names_the_architectures_for_an_unknown_one() {
    for args in [&["armhf"][..], &[]] {
        let out = script("test-systemd").args(args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err.lines().last(),
            Some("usage: scripts/test-systemd amd64|arm64"),
            "{args:?}: {err}"
        );
    }
}
