//! The layers of ARCHITECTURE.md's code map, kept by reading every workspace manifest: a crate's
//! normal dependencies are crates of its own layer or a lower one, test support is only ever a
//! dev-dependency, and the model crates stay off the online store.

use std::path::{Path, PathBuf};

/// Each workspace package with its layer, lowest first (ARCHITECTURE.md, "Code map").
const LAYERS: &[(&str, u8)] = &[
    // The wire contract.
    ("shopmind-proto", 0),
    // Domain and configuration: no I/O.
    ("shopmind-domain", 1),
    ("shopmind-metrics", 1),
    ("shopmind-local-servers", 1),
    ("shopmind-config", 2),
    ("shopmind-privacy", 2),
    // Data sources (events from data sets, the simulator, files).
    ("shopmind-datasets", 2),
    ("shopmind-simulator", 2),
    ("shopmind-eventfile", 2),
    // Infrastructure adapters.
    ("shopmind-bus", 3),
    ("shopmind-store", 3),
    ("shopmind-registry", 3),
    // Contracts over the infrastructure.
    ("shopmind-features", 4),
    ("shopmind-runtime", 4),
    // Models.
    ("shopmind-onnx", 5),
    ("shopmind-serving", 5),
    ("shopmind-training", 5),
    ("shopmind-evaluation", 5),
    ("shopmind-encoder", 5),
    ("shopmind-assistant", 5),
    // Services.
    ("shopmind-gateway", 6),
    ("shopmind-ingest", 6),
    ("shopmind-feature", 6),
    ("shopmind-inference", 6),
    ("shopmind-notification", 6),
    ("shopmind-trainer", 6),
    // The binary and the tests across services.
    ("shopmind", 7),
    ("shopmind-service-tests", 7),
    // Test support: dev-dependencies only.
    ("shopmind-testkit", 8),
];

/// Crates that run models and must not reach for the online store: what they need of features
/// comes to them as rows and histories.
const OFF_THE_STORE: &[&str] =
    &["shopmind-onnx", "shopmind-serving", "shopmind-training", "shopmind-evaluation"];

const TEST_SUPPORT: &str = "shopmind-testkit";

fn layer(package: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == package).map(|(_, layer)| *layer)
}

struct Manifest {
    path: PathBuf,
    package: String,
    toml: toml::Table,
}

fn workspace_manifests() -> Vec<Manifest> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut paths = vec![root.join("Cargo.toml")];
    for group in ["crates", "services"] {
        for entry in std::fs::read_dir(root.join(group)).unwrap() {
            let manifest = entry.unwrap().path().join("Cargo.toml");
            if manifest.is_file() {
                paths.push(manifest);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let toml: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
            let package = toml["package"]["name"].as_str().unwrap().to_string();
            let path = path.strip_prefix(&root).unwrap_or(&path).to_path_buf();
            Manifest { path, package, toml }
        })
        .collect()
}

/// The workspace packages named in one dependency table.
fn named(manifest: &toml::Table, table: &str) -> Vec<String> {
    let Some(deps) = manifest.get(table).and_then(toml::Value::as_table) else { return Vec::new() };
    deps.iter()
        .map(|(key, spec)| spec.get("package").and_then(toml::Value::as_str).unwrap_or(key).to_string())
        .filter(|package| package.starts_with("shopmind"))
        .collect()
}

#[test]
fn every_workspace_crate_has_a_layer() {
    let unplaced: Vec<String> = workspace_manifests()
        .into_iter()
        .filter(|m| layer(&m.package).is_none())
        .map(|m| format!("{} ({})", m.package, m.path.display()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "place these crates in a layer of LAYERS and ARCHITECTURE.md's code map: {unplaced:?}"
    );
}

#[test]
fn crates_depend_only_on_their_own_layer_or_below() {
    let mut violations = Vec::new();
    for m in workspace_manifests() {
        let Some(own) = layer(&m.package) else { continue };
        for table in ["dependencies", "build-dependencies"] {
            for dep in named(&m.toml, table) {
                match layer(&dep) {
                    _ if dep == TEST_SUPPORT => violations.push(format!(
                        "{} names {dep} in [{table}]: test support is a dev-dependency",
                        m.path.display()
                    )),
                    Some(theirs) if theirs > own => violations.push(format!(
                        "{} (layer {own}) names {dep} (layer {theirs}) in [{table}]",
                        m.path.display()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(violations.is_empty(), "upward dependencies:\n  {}", violations.join("\n  "));
}

#[test]
fn the_model_crates_stay_off_the_online_store() {
    let mut violations = Vec::new();
    for m in workspace_manifests().into_iter().filter(|m| OFF_THE_STORE.contains(&m.package.as_str())) {
        for dep in named(&m.toml, "dependencies") {
            if dep == "shopmind-store" || dep == "shopmind-features" {
                violations.push(format!("{} names {dep}", m.path.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "model crates that reach for the online store:\n  {}",
        violations.join("\n  ")
    );
}
