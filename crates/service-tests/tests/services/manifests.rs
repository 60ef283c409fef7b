//! No service crate depends on another (see the crate docs): what services
//! share lives in `crates/*`, and a test that needs several services lives in this crate.

use std::collections::BTreeSet;
use std::path::Path;

/// The dependency tables of a manifest: `[dependencies]`, `[dev-dependencies]`,
/// `[build-dependencies]`, and those of every `[target.<cfg>]`.
const TABLES: [&str; 3] = ["dependencies", "dev-dependencies", "build-dependencies"];

struct Manifest {
    /// `services/<name>/Cargo.toml`.
    path: String,
    package: String,
    toml: toml::Table,
}

fn service_manifests() -> Vec<Manifest> {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../services");
    let mut manifests: Vec<Manifest> = std::fs::read_dir(&services)
        .unwrap_or_else(|e| panic!("{}: {e}", services.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy();
            let path = format!("services/{name}/Cargo.toml");
            let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
            let toml: toml::Table = text.parse().unwrap_or_else(|e| panic!("{path}: {e}"));
            let package = toml["package"]["name"].as_str().unwrap().to_string();
            Manifest { path, package, toml }
        })
        .collect();
    manifests.sort_by(|a, b| a.path.cmp(&b.path));
    manifests
}

/// The packages a manifest depends on, with the table naming each (`dev-dependencies`, ...).
fn dependencies(manifest: &toml::Table) -> Vec<(String, String)> {
    let mut tables: Vec<(String, &toml::Table)> = Vec::new();
    for name in TABLES {
        if let Some(t) = manifest.get(name).and_then(toml::Value::as_table) {
            tables.push((name.to_string(), t));
        }
    }
    for (cfg, target) in manifest.get("target").and_then(toml::Value::as_table).into_iter().flatten() {
        for name in TABLES {
            if let Some(t) = target.get(name).and_then(toml::Value::as_table) {
                tables.push((format!("target.{cfg}.{name}"), t));
            }
        }
    }
    let mut out = Vec::new();
    for (table, deps) in tables {
        for (key, spec) in deps {
            // `alias = { package = "real-name", ... }` depends on `real-name`.
            let package = spec.get("package").and_then(toml::Value::as_str).unwrap_or(key);
            out.push((table.clone(), package.to_string()));
        }
    }
    out
}

#[test]
fn no_service_crate_names_another_service() {
    let manifests = service_manifests();
    assert!(manifests.len() >= 6, "the services were not found: {}", manifests.len());
    let services: BTreeSet<&str> = manifests.iter().map(|m| m.package.as_str()).collect();
    let mut violations = Vec::new();
    for m in &manifests {
        for (table, package) in dependencies(&m.toml) {
            if package != m.package && services.contains(package.as_str()) {
                violations.push(format!("{} names {package} in [{table}]", m.path));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "a service crate depends on another service:\n  {}\nMove what they share into a crate under \
         crates/ (a library below the services), and a test that needs several services into \
         crates/service-tests.",
        violations.join("\n  ")
    );
}

/// The check itself sees every kind of dependency table.
#[test]
fn every_dependency_table_is_read() {
    let manifest: toml::Table = r#"
        [dependencies]
        a = "1"
        [dev-dependencies]
        b = { workspace = true }
        [build-dependencies]
        c = "1"
        [target.'cfg(unix)'.dev-dependencies]
        renamed = { package = "d", version = "1" }
    "#
    .parse()
    .unwrap();
    let found: Vec<String> = dependencies(&manifest).into_iter().map(|(_, p)| p).collect();
    assert_eq!(found, ["a", "b", "c", "d"]);
}
