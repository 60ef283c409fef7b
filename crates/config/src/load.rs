//! Loading: built-in defaults, then the file, then `SHOPMIND__*` environment variables; the
//! result is deserialized (unknown keys and wrong types name their path) and validated.

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Config, ConfigError, ENV_PREFIX};

impl Config {
    /// Defaults, then the file (if any), then `SHOPMIND__*` variables from `env`; validated.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut table = toml::Table::try_from(Config::default())
            .map_err(|e| ConfigError::Invalid { key: String::new(), reason: e.to_string() })?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::File { path: path.to_path_buf(), reason: e.to_string() })?;
            let from_file: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            merge(&mut table, from_file);
        }
        let overrides: BTreeMap<String, String> =
            env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
        for (var, raw) in overrides {
            let path: Vec<String> =
                var[ENV_PREFIX.len()..].split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Env { var, reason: "expected SHOPMIND__<SECTION>__<KEY>".into() });
            }
            set_path(&mut table, &path, env_value(&raw))
                .map_err(|reason| ConfigError::Env { var, reason })?;
        }
        overlay_tenants(&mut table, "notification");
        overlay_tenants(&mut table, "assistant");
        let config = Self::from_table(table)?;
        config.validate()?;
        Ok(config)
    }

    fn from_table(table: toml::Table) -> Result<Self, ConfigError> {
        let text = table.to_string();
        let de = toml::Deserializer::parse(&text)
            .map_err(|e| ConfigError::Invalid { key: String::new(), reason: e.to_string() })?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let reason = e.into_inner().message().to_string();
            ConfigError::Invalid { key, reason }
        })
    }
}

/// Makes each `[<section>.tenants.<t>]` table (`notification`, `assistant`) `[<section>.defaults]`
/// with the tenant's keys over it, so a tenant names only what differs.
fn overlay_tenants(table: &mut toml::Table, section: &str) {
    let Some(toml::Value::Table(n)) = table.get_mut(section) else { return };
    let defaults = match n.get("defaults") {
        Some(toml::Value::Table(d)) => d.clone(),
        _ => toml::Table::new(),
    };
    if let Some(toml::Value::Table(tenants)) = n.get_mut("tenants") {
        for (_, t) in tenants.iter_mut() {
            if let toml::Value::Table(own) = t {
                let mut merged = defaults.clone();
                merge(&mut merged, std::mem::take(own));
                *own = merged;
            }
        }
    }
}

/// An environment value as TOML when it parses as a scalar (number, bool), else as a string.
fn env_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => match t.remove("v") {
            Some(v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_))) => v,
            _ => toml::Value::String(raw.to_string()),
        },
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    match path {
        [] => Err("empty key".into()),
        [last] => {
            table.insert(last.clone(), value);
            Ok(())
        }
        [first, rest @ ..] => {
            match table.entry(first.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new())) {
                toml::Value::Table(t) => set_path(t, rest, value),
                _ => Err(format!("`{first}` is not a section")),
            }
        }
    }
}
