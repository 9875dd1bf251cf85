//! Migrations are embedded by `sqlx::migrate!`, which cannot see new files by itself: rerun on
//! changes there.
//!
//! Bundles the browser code: `static/src/*.js` (with its npm dependencies from
//! `static/package.json`) → `static/dist/` by esbuild, which the binary then embeds. Node and npm
//! are needed to build Arno, never to run it. Rebuilds only when the sources or the lockfile change.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The entry points (each becomes `static/dist/{name}`).
const ENTRIES: &[&str] = &["workflow.js"];

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=static/src");
    println!("cargo:rerun-if-changed=static/package.json");
    println!("cargo:rerun-if-changed=static/package-lock.json");
    println!("cargo:rerun-if-changed=build.rs");
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let dir = root.join("static");
    if let Err(message) = bundle(&dir) {
        panic!(
            "\n\nbuilding Arno's browser code failed: {message}\n\
             Node.js 18+ and npm are needed at build time (static/package.json).\n\n"
        );
    }
}

fn bundle(dir: &Path) -> Result<(), String> {
    let lock = std::fs::read(dir.join("package-lock.json")).map_err(|e| format!("static/package-lock.json: {e}"))?;
    let stamp = dir.join("node_modules/.arno-installed");
    let wanted = format!("{:016x}", fnv1a(&lock));
    if std::fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) {
        run(
            Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]).current_dir(dir),
            "npm ci",
        )?;
        std::fs::write(&stamp, &wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    }
    let esbuild = dir.join("node_modules/.bin/esbuild");
    for entry in ENTRIES {
        run(
            Command::new(&esbuild)
                .arg(format!("src/{entry}"))
                .args(["--bundle", "--format=iife", "--minify", "--target=es2020", "--legal-comments=eof"])
                .arg(format!("--outfile=dist/{entry}"))
                .current_dir(dir),
            "esbuild",
        )?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let out = command.output().map_err(|e| format!("{what} could not start: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// A stable hash for the install stamp (no dependencies in a build script).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
