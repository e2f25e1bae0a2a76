//! The Kubernetes manifests in `scripts/k8s/` validate against the Kubernetes API's schema (strict:
//! an unknown or misplaced field is an error), with `kubernetes-validate` from PyPI run by
//! `scripts/k8s/validate`; and the validator does reject a manifest with a misplaced field.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::sys::output_text;
use common::TempDir;

fn validate(files: &[&Path]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s/validate");
    Command::new(&script)
        .args(files)
        .output()
        .unwrap_or_else(|error| panic!("run {}: {error}", script.display()))
}

#[test]
fn shipped_manifests_validate_and_a_misplaced_field_does_not() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/k8s");
    let sidecar = dir.join("sidecar.yaml");
    let out = validate(&[&sidecar, &dir.join("exec-probe.yaml")]);
    let report = output_text(&out);
    assert!(out.status.success(), "{report}");
    for resource in [
        "pod/php-exec-probe",
        "configmap/php-fpm-healthcheck",
        "deployment/php",
    ] {
        assert!(
            report.contains(&format!("passed for resource {resource}")),
            "{resource} not validated:\n{report}"
        );
    }

    // The sidecar with a field its probe does not have: the validator must name it.
    let original = std::fs::read_to_string(&sidecar).unwrap();
    let probe = "            httpGet: {";
    assert!(
        original.contains(probe),
        "sidecar.yaml has no `{probe}` line"
    );
    let broken = original.replacen(probe, &format!("            bogusField: 1\n{probe}"), 1);
    let tmp = TempDir::new();
    let broken_path = tmp.join("broken.yaml");
    std::fs::write(&broken_path, broken).unwrap();
    let out = validate(&[&broken_path]);
    let report = output_text(&out);
    assert!(!out.status.success(), "a misplaced field passed:\n{report}");
    assert!(report.contains("bogusField"), "{report}");
}
