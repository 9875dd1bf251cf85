//! `arno lint` and `arno backfill-ids`: offline tools over a checkout, for CI and developers.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use arno::specs::{backfill, lint};

/// Exit code when PATH cannot be read (1 is reserved for "the specs have errors").
const EXIT_IO: u8 = 2;

/// The files to work on: a whole checkout, or one file given directly.
fn checkout(path: &Path) -> Result<lint::Checkout, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {}: {e}", path.display());
        ExitCode::from(EXIT_IO)
    };
    if path.is_file() {
        let bytes = std::fs::read(path).map_err(|e| fail(&e))?;
        let text = String::from_utf8(bytes).map_err(|e| fail(&format!("not UTF-8: {}", e.utf8_error())))?;
        let name = path.to_string_lossy().into_owned();
        let root = path.parent().unwrap_or(Path::new(".")).to_owned();
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(name);
        return Ok(lint::Checkout { root, config: Default::default(), files: vec![(file, text)], problems: vec![] });
    }
    lint::read_checkout(path).map_err(|e| fail(&e))
}

/// Display a checkout-relative path the way the user named the checkout.
fn shown(root: &Path, file: &str) -> String {
    root.join(file).to_string_lossy().into_owned()
}

pub fn lint(path: &Path) -> ExitCode {
    let checkout = match checkout(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut problems = checkout.problems;
    problems.extend(lint::lint_files(&checkout.files));
    problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    let errors = problems.iter().filter(|p| p.severity == arno::specs::Severity::Error).count();
    let mut out = std::io::stdout().lock();
    for p in &problems {
        let _ = writeln!(out, "{}", lint::Problem { file: shown(&checkout.root, &p.file), ..p.clone() });
    }
    let warnings = problems.len() - errors;
    eprintln!("{} spec file(s): {errors} error(s), {warnings} warning(s)", checkout.files.len());
    if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

pub fn backfill_ids(path: &Path, dry_run: bool) -> ExitCode {
    let checkout = match checkout(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Some(p) = checkout.problems.iter().find(|p| p.file == arno::specs::config::PATH) {
        // Guessing the spec folder would write ids into the wrong files.
        eprintln!("error: {}: {}", shown(&checkout.root, &p.file), p.message);
        return ExitCode::FAILURE;
    }
    let mut total = 0;
    for (file, text) in &checkout.files {
        let result = backfill::backfill(text);
        if result.added == 0 {
            continue;
        }
        total += result.added;
        let target = checkout.root.join(file);
        if !dry_run && let Err(e) = write_atomically(&target, result.text.as_bytes()) {
            eprintln!("error: {}: {e}", target.display());
            return ExitCode::from(EXIT_IO);
        }
        let verb = if dry_run { "would add" } else { "added" };
        println!("{}: {verb} {} id(s)", target.display(), result.added);
    }
    eprintln!("{} spec file(s): {total} id(s) {}", checkout.files.len(), if dry_run { "missing" } else { "added" });
    ExitCode::SUCCESS
}

/// Write beside the file, fsync, then rename over it: an interrupted run leaves the old file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.arno-tmp"));
    let permissions = std::fs::metadata(path)?.permissions();
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.set_permissions(permissions)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}
