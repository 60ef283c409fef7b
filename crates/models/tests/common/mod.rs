//! Shared by the integration tests: where the ONNX Runtime library is.

use std::path::PathBuf;

/// `ORT_DYLIB_PATH` if set, else `<workspace>/.cache/onnxruntime/libonnxruntime.so`. Panics if
/// the file is missing: these tests need the real runtime and must not be skipped silently.
pub fn onnxruntime_library() -> PathBuf {
    let path = match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache/onnxruntime/libonnxruntime.so"),
    };
    assert!(path.is_file(), "ONNX Runtime library not found at {}; run scripts/setup.sh", path.display());
    path
}
