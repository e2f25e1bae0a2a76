//! Build script: links the unwinder (`libgcc_eh.a`) into the binary on GNU/Linux instead of
//! loading `libgcc_s.so.1` at start. std needs the unwinder only to print a backtrace; this
//! binary aborts on a panic. Linked statically, the few routines it uses cost 24 KB of file,
//! and the process maps one shared library fewer: 0.1 MB less idle RSS, and one less library
//! for the dynamic loader to find at each start of `check` (docs/performance.md, 2026-12-07).
//! Static builds (`crt-static`) already link it so and are left alone, and so is a toolchain
//! whose linker does not find the archive (libgcc_s is then loaded as before). A packager whose
//! link still fails sets `FASTCGI_HEALTHCHECK_SHARED_UNWINDER=1` to keep libgcc_s.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    println!("cargo:rerun-if-env-changed=FASTCGI_HEALTHCHECK_SHARED_UNWINDER");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|feature| feature == "crt-static");
    let shared = !var("FASTCGI_HEALTHCHECK_SHARED_UNWINDER").is_empty();
    if var("CARGO_CFG_TARGET_OS") != "linux"
        || var("CARGO_CFG_TARGET_ENV") != "gnu"
        || static_crt
        || shared
    {
        return;
    }
    // The linker rustc will call (Cargo's `RUSTC_LINKER` when one is configured, as for the
    // ARM builds; else `cc`) says where the archive is, or echoes its bare name if it has none.
    let linker = std::env::var("RUSTC_LINKER").unwrap_or_else(|_| "cc".to_owned());
    let found = Command::new(&linker)
        .arg("-print-file-name=libgcc_eh.a")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|path| Path::new(path).is_absolute() && Path::new(path).is_file());
    match found {
        // Named before std's own `-lgcc_s`, the archive resolves the unwinder's symbols, and
        // the linker (`--as-needed`) then records no need for libgcc_s.
        Some(_) => println!("cargo:rustc-link-lib=static:-bundle=gcc_eh"),
        None => println!(
            "cargo:warning={linker} does not find libgcc_eh.a: the binary loads libgcc_s.so.1 \
             at start (install gcc to link the unwinder in)"
        ),
    }
}
