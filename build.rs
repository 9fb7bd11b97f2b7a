//! Records the source revision the binary is built from, for `--version`, the
//! `spark_admission_build_info` metric and the startup log: `SPARK_ADMISSION_REVISION` when set
//! (image and release builds: the Docker build context has no `.git`), else `git rev-parse HEAD`
//! of this repository's checkout, else `unknown` (a source archive).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SPARK_ADMISSION_REVISION");
    let revision = match std::env::var("SPARK_ADMISSION_REVISION") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_string(),
        _ => git_revision().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=SPARK_ADMISSION_REVISION={revision}");
}

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn git_revision() -> Option<String> {
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // Only this repository's own checkout: the crate unpacked inside another repository
    // (vendored, say) must not report that repository's commit.
    let top = git(&dir, &["rev-parse", "--show-toplevel"])?;
    if Path::new(&top).canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    // Build again when HEAD moves: a commit changes the branch's ref (loose or packed), a
    // checkout changes HEAD. Only files that exist are watched; cargo re-runs the script on
    // every build for a missing one.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    git(&dir, &["rev-parse", "HEAD"])
}
