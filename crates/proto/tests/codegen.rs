//! Regenerates the committed code from the .proto files and fails when it differs.

use std::path::{Path, PathBuf};

use prost::Message;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn proto_files(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("proto/shopmind/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "proto"))
        .collect();
    files.sort();
    files
}

/// Compiles the contract into `out`: `shopmind.v1.rs` and `shopmind.v1.bin`.
fn generate(out: &Path) {
    let root = repo_root();
    let files = proto_files(&root);
    let fds = protox::compile(&files, [root.join("proto")]).expect("the .proto files compile");
    std::fs::write(out.join("shopmind.v1.bin"), fds.encode_to_vec()).expect("write descriptor set");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .out_dir(out)
        .compile_fds(fds)
        .expect("code generation");
}

#[test]
fn committed_code_matches_the_proto_files() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/gen");
    if std::env::var_os("SHOPMIND_REGENERATE").is_some() {
        generate(&committed);
        return;
    }
    let fresh = tempfile::tempdir().expect("tempdir");
    generate(fresh.path());
    for name in ["shopmind.v1.rs", "shopmind.v1.bin"] {
        let want = std::fs::read(fresh.path().join(name)).expect("generated file");
        let have = std::fs::read(committed.join(name)).unwrap_or_default();
        assert!(
            want == have,
            "crates/proto/src/gen/{name} is out of date with proto/; regenerate it with\n  \
             SHOPMIND_REGENERATE=1 cargo test -p shopmind-proto --test codegen\nand commit the result"
        );
    }
}
