//! Real chaincode modules for the tests, built from Rust with the `wasm` profile.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Builds a chaincode crate of the workspace for `wasm32-unknown-unknown` and returns the module.
/// It builds into its own target directory, so it never waits on the build running these tests.
pub fn build(package: &str) -> Vec<u8> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let target = root.join("target").join("chaincode");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "-q",
            "-p",
            package,
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "wasm",
            "--target-dir",
        ])
        .arg(&target)
        .current_dir(&root)
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let file = target
        .join("wasm32-unknown-unknown/wasm")
        .join(format!("{}.wasm", package.replace('-', "_")));
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The test chaincode (`chaincode/testcc`).
pub fn testcc() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| build("mercato-testcc"))
}

/// A valid module that imports a function the peer does not provide.
pub fn unknown_import() -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    // Type section: one type, () -> ().
    m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]);
    // Import section: env.evil, a function of type 0.
    m.extend_from_slice(&[
        0x02, 0x0c, 0x01, 0x03, b'e', b'n', b'v', 0x04, b'e', b'v', b'i', b'l', 0x00, 0x00,
    ]);
    m
}
