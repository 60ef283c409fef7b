//! Sets `SHOPMIND_GIT_COMMIT` for `shopmind --version`: the commit this checkout is at (12 hex
//! digits), `SHOPMIND_GIT_COMMIT` from the environment when set (packagers of a tarball who know
//! it), else `unknown` (no git, or no repository of this crate's own: a tarball, a vendored copy).
//!
//! It reruns only when the commit can change: the repository's `HEAD`, the ref it points to and
//! `packed-refs` are watched (`cargo:rerun-if-changed`), never the sources.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=SHOPMIND_GIT_COMMIT");
    let commit = match std::env::var("SHOPMIND_GIT_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git_commit().unwrap_or_else(|| "unknown".to_string()),
    };
    println!("cargo:rustc-env=SHOPMIND_GIT_COMMIT={commit}");
}

/// The commit of HEAD, when this crate's directory is the top of a git work tree.
fn git_commit() -> Option<String> {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    // A tarball unpacked inside some other repository must not take that repository's commit.
    let top = git(&root, &["rev-parse", "--show-toplevel"])?;
    if std::fs::canonicalize(&top).ok()? != std::fs::canonicalize(&root).ok()? {
        return None;
    }
    // HEAD lives in the work tree's git directory, branches in the common one (worktrees differ).
    watch(&git_path(&root, "HEAD")?);
    watch(&git_path(&root, "packed-refs")?);
    if let Some(branch) = git(&root, &["symbolic-ref", "-q", "HEAD"]) {
        let reference = git_path(&root, &branch)?;
        if reference.exists() {
            watch(&reference);
        } else if let Some(dir) = reference.parent() {
            // Packed for now: the next commit writes the file, in this directory.
            watch(dir);
        }
    }
    let commit = git(&root, &["rev-parse", "--short=12", "HEAD"])?;
    commit.chars().all(|c| c.is_ascii_hexdigit()).then_some(commit)
}

/// A path inside the git directory (`git rev-parse --git-path`), absolute.
fn git_path(root: &Path, name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(git(root, &["rev-parse", "--git-path", name])?);
    Some(if path.is_absolute() { path } else { root.join(path) })
}

/// Watches `path` when it exists (a missing one would make cargo rerun the script every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// The trimmed stdout of a successful `git` command in `dir`.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(dir).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}
