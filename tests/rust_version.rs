//! `rust-version` in Cargo.toml is true: no locked dependency built for this machine declares a
//! newer minimum Rust than ours (read from `cargo metadata`, offline, for the host platform).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use std::process::Command;

/// `1.85` or `1.85.0` as (major, minor, patch).
fn version(text: &str) -> (u32, u32, u32) {
    let mut parts = text.split('.').map(|p| p.parse::<u32>().unwrap());
    (
        parts.next().unwrap(),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    )
}

/// The host's target triple (`rustc -vV`).
fn host() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(&rustc).arg("-vV").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no host line in {rustc} -vV:\n{text}"))
        .to_owned()
}

/// Every package's `(manifest_path, rust_version)` in the JSON of `cargo metadata` (each
/// package object carries `manifest_path` before `rust_version`).
fn declared(json: &str) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    let mut rest = json;
    while let Some(at) = rest.find("\"rust_version\":") {
        let before = &rest[..at];
        let manifest = before
            .rfind("\"manifest_path\":\"")
            .map(|m| {
                let path = &before[m + "\"manifest_path\":\"".len()..];
                path[..path.find('"').unwrap()].to_owned()
            })
            .unwrap_or_default();
        let value = &rest[at + "\"rust_version\":".len()..];
        let version = value
            .strip_prefix('"')
            .map(|v| v[..v.find('"').unwrap()].to_owned());
        found.push((manifest, version));
        rest = value;
    }
    found
}

#[test]
fn rust_version_covers_every_locked_dependency() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--offline", "--locked"])
        .args(["--filter-platform", &host()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = String::from_utf8(out.stdout).unwrap();
    let ours = env!("CARGO_PKG_RUST_VERSION");
    assert!(!ours.is_empty(), "Cargo.toml declares no rust-version");
    let packages = declared(&json);
    assert!(packages.len() > 10, "too few packages read: {packages:?}");
    let own = format!("{}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
    let needs: Vec<(String, String)> = packages
        .into_iter()
        .filter(|(manifest, _)| *manifest != own)
        .filter_map(|(manifest, v)| v.map(|v| (manifest, v)))
        .collect();
    let newest = needs
        .iter()
        .max_by_key(|(_, v)| version(v))
        .expect("some dependency declares a rust-version");
    let too_new: Vec<&(String, String)> = needs
        .iter()
        .filter(|(_, v)| version(v) > version(ours))
        .collect();
    assert!(
        too_new.is_empty(),
        "Cargo.toml says rust-version = {ours:?}, but these locked dependencies need more: {too_new:?}"
    );
    assert_eq!(
        version(ours),
        version(&newest.1),
        "rust-version = {ours:?} claims more than the dependencies need (the newest is {newest:?}); \
         lower it unless our own code needs it, and say why in Cargo.toml"
    );
}
