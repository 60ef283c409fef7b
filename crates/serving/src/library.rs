//! Loading ONNX Runtime: once per process, dynamically, from a path.
//!
//! `ort` allows one environment per process, so it lives in a process-wide `OnceLock`, created by
//! [`init_runtime`] from the library at a path ([`default_library_path`] finds the one
//! `scripts/setup.sh` fetches). Sessions ([`crate::SessionPool`]) are built in it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use ort::environment::Environment;

use crate::error::{ModelError, Result};

const FIX: &str = "run scripts/setup.sh or set inference.onnxruntime_library";

struct Runtime {
    env: Environment,
    library: PathBuf,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Checks that `library` names an existing file, without touching ONNX Runtime.
pub fn check_library(library: &Path) -> Result<()> {
    if library.is_file() {
        Ok(())
    } else {
        Err(ModelError::Runtime(format!("ONNX Runtime library not found at {}; {FIX}", library.display())))
    }
}

/// Loads ONNX Runtime from `library` and creates the process-wide environment.
///
/// Idempotent: once the runtime is up, later calls return `Ok` (a different path is logged and
/// ignored, as a process can load only one). A path that does not name a file is always an error,
/// checked before ONNX Runtime is touched; a file that is not a usable ONNX Runtime library is an
/// error too, and leaves the process free to try another path.
pub fn init_runtime(library: &Path) -> Result<()> {
    check_library(library)?;
    if let Some(rt) = RUNTIME.get() {
        warn_if_other(rt, library);
        return Ok(());
    }
    let _init = INIT.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(rt) = RUNTIME.get() {
        warn_if_other(rt, library);
        return Ok(());
    }
    let builder = ort::init_from(library).map_err(|e| {
        ModelError::Runtime(format!("cannot load ONNX Runtime from {}: {e}; {FIX}", library.display()))
    })?;
    let env = builder.with_name("shopmind").with_telemetry(false).build().map_err(|e| {
        ModelError::Runtime(format!("cannot start ONNX Runtime loaded from {}: {e}", library.display()))
    })?;
    tracing::info!(library = %library.display(), "ONNX Runtime loaded");
    // Only this thread (holding INIT) sets it, so it is empty here.
    let _ = RUNTIME.set(Runtime { env, library: library.to_path_buf() });
    Ok(())
}

fn warn_if_other(rt: &Runtime, library: &Path) {
    if rt.library != library {
        tracing::warn!(
            loaded = %rt.library.display(),
            requested = %library.display(),
            "ONNX Runtime is already loaded from another path; keeping it"
        );
    }
}

/// Whether [`init_runtime`] has succeeded in this process.
pub fn runtime_ready() -> bool {
    RUNTIME.get().is_some()
}

/// The process-wide environment sessions are built in; an error before [`init_runtime`].
pub(crate) fn environment() -> Result<&'static Environment> {
    RUNTIME
        .get()
        .map(|rt| &rt.env)
        .ok_or_else(|| ModelError::Runtime("ONNX Runtime is not initialised; call init_runtime first".into()))
}

/// The ONNX Runtime library to load: `configured` (`inference.onnxruntime_library`) when it is
/// set, else [`default_library_path`]; an error naming the fixes when neither gives one.
pub fn library_path(configured: &str) -> Result<PathBuf> {
    if configured.is_empty() {
        default_library_path().ok_or_else(|| {
            ModelError::Runtime(format!("libonnxruntime.so not found: set ORT_DYLIB_PATH, {FIX}"))
        })
    } else {
        Ok(PathBuf::from(configured))
    }
}

/// The ONNX Runtime library to use when none is configured: `ORT_DYLIB_PATH` if set (even if it
/// does not exist, so that [`init_runtime`] reports it); else the first existing
/// `.cache/onnxruntime/libonnxruntime.so` under the current directory or under the directory of
/// the running executable or any of its ancestors (so `target/debug/shopmind` finds
/// `<repo>/.cache/...`).
pub fn default_library_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let relative = Path::new(".cache").join("onnxruntime").join(format!(
        "{}onnxruntime{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    let mut roots = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Some(exe_dir) = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf)) {
        roots.extend(exe_dir.ancestors().map(Path::to_path_buf));
    }
    roots.into_iter().map(|root| root.join(&relative)).find(|p| p.is_file())
}
