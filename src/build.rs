//! Build script: links the unwinder (`libgcc_eh.a`) into the binary on GNU/Linux instead of
//! loading `libgcc_s.so.1` at start. std needs the unwinder only to print a backtrace; this
//! binary aborts on a panic. Linked statically, the few routines it uses cost 24 KB of file,
//! and the process maps one shared library fewer: 0.13 MB less idle RSS, and one less library
//! for the dynamic loader to find at each start of `check` (docs/performance.md, 2026-12-07).
//! Static builds (`crt-static`) already link it so and are left alone.

fn main() {
    println!("cargo:rerun-if-changed=src/build.rs");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let static_crt = var("CARGO_CFG_TARGET_FEATURE")
        .split(',')
        .any(|feature| feature == "crt-static");
    if var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu" && !static_crt
    {
        // Named before std's own `-lgcc_s`, the archive resolves the unwinder's symbols, and
        // the linker (`--as-needed`) then records no need for libgcc_s.
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
