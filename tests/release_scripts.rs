//! Bad input to the build scripts of the release (`scripts/cross`, `scripts/debian/build-deb`,
//! `scripts/docker/build-image`, `scripts/test-systemd`): a usage line naming what is accepted
//! and exit 2, or one line naming what is missing and exit 1; and `scripts/release`'s
//! SHA256SUMS, over stand-ins for the builds. None of these builds anything.
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

/// Writes an executable shell script at `path`.
fn stub(path: &Path, body: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, format!("#!/bin/sh\nset -e\n{body}\n")).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path, base: &Path, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().display().to_string());
        }
    }
}

/// `scripts/release` with its builds replaced by stand-ins (a copy of the script in a scratch
/// tree): SHA256SUMS lists every file that lands in dist/ (the binaries, their
/// `php-fpm-healthcheck` hard links, the packages), and verifies.
#[test]
fn release_checksums_every_file_that_ships() {
    let tree = TempDir::new();
    let release = tree.join("scripts/release");
    fs::create_dir_all(release.parent().unwrap()).unwrap();
    fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/release"),
        &release,
    )
    .unwrap();
    let built = tree.join("built");
    stub(
        &tree.join("scripts/build-static"),
        &format!(
            "mkdir -p {0}; echo x86_64 >{0}/x86_64; echo {0}/x86_64",
            built.display()
        ),
    );
    stub(
        &tree.join("scripts/cross"),
        &format!(
            "mkdir -p {0}; echo \"$1\" >{0}/$1; echo {0}/$1",
            built.display()
        ),
    );
    stub(
        &tree.join("scripts/debian/build-deb"),
        "cat \"$2\" >\"$3/fastcgi-healthcheck_0.0.0_$1.deb\"; echo \"$3/fastcgi-healthcheck_0.0.0_$1.deb\"",
    );
    // The script runs on an x86_64 host only: say so, whatever runs the test.
    let bin = tree.join("bin");
    stub(&bin.join("uname"), "echo x86_64");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new(&release).env("PATH", path).output().unwrap();
    assert!(out.status.success(), "scripts/release: {}", stderr(&out));

    let dist = tree.join("dist");
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let mut listed: Vec<String> = sums
        .lines()
        .map(|line| line.split_once("  ").unwrap().1.to_owned())
        .collect();
    listed.sort();
    let mut shipped = Vec::new();
    files_under(&dist, &dist, &mut shipped);
    shipped.retain(|file| file != "SHA256SUMS");
    shipped.sort();
    assert_eq!(listed, shipped, "SHA256SUMS:\n{sums}");
    for arch in ["amd64", "arm64", "armv7"] {
        assert!(
            listed.contains(&format!("{arch}/php-fpm-healthcheck")),
            "{arch}'s hard link is not listed:\n{sums}"
        );
    }
    assert_eq!(listed.len(), 9, "{sums}");
    let check = Command::new("sha256sum")
        .args(["--quiet", "-c", "SHA256SUMS"])
        .current_dir(&dist)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", stderr(&check));
}
