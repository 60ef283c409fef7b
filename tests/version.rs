//! `shopmind --version`: the package version and the commit the binary was built from.

use std::process::Command;

#[test]
fn version_prints_the_package_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_shopmind")).arg("--version").output().expect("runs shopmind");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).expect("UTF-8");
    let prefix = format!("shopmind {} (commit ", env!("CARGO_PKG_VERSION"));
    let commit = printed.trim_end().strip_prefix(&prefix).and_then(|rest| rest.strip_suffix(')'));
    let Some(commit) = commit else { panic!("{printed:?}") };
    assert!(!commit.is_empty() && !commit.contains(char::is_whitespace), "{printed:?}");
}
