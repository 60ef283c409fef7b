//! Loading ONNX Runtime from a bad path fails loudly and leaves the process able to load the
//! right one. In its own test binary: the runtime is process-wide, and other binaries load it.
#![allow(clippy::unwrap_used)]

mod common;

use shopmind_serving::{ModelError, init_runtime};

#[test]
fn bad_libraries_fail_and_do_not_poison_the_good_one() {
    let missing = std::path::Path::new("/nonexistent/dir/libonnxruntime.so");
    match init_runtime(missing) {
        Err(ModelError::Runtime(msg)) => {
            assert!(msg.contains("/nonexistent/dir/libonnxruntime.so"), "{msg}");
            assert!(msg.contains("scripts/setup.sh"), "{msg}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }

    // A file that exists but is not a shared library: dlopen fails, no environment is created.
    let fake = std::env::temp_dir().join(format!("shopmind-serving-fake-ort-{}.so", std::process::id()));
    std::fs::write(&fake, b"not a shared object").unwrap();
    let result = init_runtime(&fake);
    std::fs::remove_file(&fake).unwrap();
    match result {
        Err(ModelError::Runtime(msg)) => assert!(msg.contains(&*fake.to_string_lossy()), "{msg}"),
        other => panic!("expected a runtime error, got {other:?}"),
    }
    assert!(!shopmind_serving::runtime_ready());

    let good = common::onnxruntime_library();
    init_runtime(&good).unwrap();
    init_runtime(&good).unwrap();
    assert!(shopmind_serving::runtime_ready());
    // A missing path stays an error after the runtime is up.
    assert!(matches!(init_runtime(missing), Err(ModelError::Runtime(_))));
}
