//! `shopmind models`: the model registry for operators — list versions, promote one, roll back —
//! and `import-encoder`, which converts the sentence encoder to ONNX.

use anyhow::Context as _;
use clap::Subcommand;
use shopmind_config::Config;
use shopmind_domain::TenantId;
use shopmind_registry::{Active, ModelKey, RECOMMENDER, Version, VersionInfo};
use shopmind_runtime::connect::{self, Embedded};

#[derive(Subcommand)]
pub enum ModelsAction {
    /// Every version in the registry (of one tenant), with what it was trained on and which one
    /// is active.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Print a JSON array of the versions (the table's fields) instead of the table; an active
        /// version missing from the registry is reported on stderr.
        #[arg(long)]
        json: bool,
    },
    /// Makes VERSION the active version; inference instances swap it in.
    Promote {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = RECOMMENDER)]
        model: String,
        version: String,
    },
    /// Makes the version that was active before the current one active again.
    Rollback {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = RECOMMENDER)]
        model: String,
    },
    /// Converts a sentence-transformers BERT encoder (config.json, model.safetensors,
    /// tokenizer.json; all-MiniLM-L6-v2 is fetched by scripts/setup.sh) to ONNX, written with its
    /// tokenizer to OUT. Needs no NATS.
    ImportEncoder {
        /// The model directory (default: .cache/models/all-MiniLM-L6-v2).
        dir: Option<std::path::PathBuf>,
        /// Where encoder.onnx and tokenizer.json go.
        #[arg(long, default_value = ".cache/models/encoder")]
        out: std::path::PathBuf,
    },
}

pub async fn run(action: ModelsAction, config: Config) -> anyhow::Result<()> {
    if let ModelsAction::ImportEncoder { dir, out } = action {
        return import_encoder(dir, &out);
    }
    let (_bus, models) = connect::bus_and_models(&config, "models", Embedded::Forbidden).await?;
    match action {
        ModelsAction::List { tenant, json } => {
            let tenant = tenant
                .map(|t| TenantId::parse(t.clone()).with_context(|| format!("--tenant {t:?}")))
                .transpose()?;
            let versions = models.versions(tenant.as_ref()).await?;
            let actives = models.actives(tenant.as_ref()).await?;
            if json {
                println!("{}", list_json(&versions, &actives));
                eprint!("{}", missing_actives(&versions, &actives));
            } else {
                print!("{}", render_list(&versions, &actives));
            }
        }
        ModelsAction::Promote { tenant, model, version } => {
            let key = ModelKey::parse(&tenant, &model)?;
            let version = Version::parse(version)?;
            let before = models.active(&key).await?;
            let after = models.promote(&key, &version).await?;
            match before {
                Some(b) if b.version == after.version => {
                    println!("{key}: {} is already active", after.version)
                }
                Some(b) => println!("{key}: {} is active (was {})", after.version, b.version),
                None => println!("{key}: {} is active (nothing was before)", after.version),
            }
        }
        ModelsAction::ImportEncoder { .. } => {}
        ModelsAction::Rollback { tenant, model } => {
            let key = ModelKey::parse(&tenant, &model)?;
            let before = models.active(&key).await?;
            let after = models.rollback(&key).await?;
            println!(
                "{key}: rolled back to {} (was {})",
                after.version,
                before.map_or_else(|| "?".to_string(), |b| b.version.to_string())
            );
        }
    }
    Ok(())
}

fn import_encoder(dir: Option<std::path::PathBuf>, out: &std::path::Path) -> anyhow::Result<()> {
    let dir = dir.or_else(shopmind_encoder::default_model_dir).context(
        "no model directory given and .cache/models/all-MiniLM-L6-v2 is missing (run scripts/setup.sh)",
    )?;
    let started = std::time::Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let version = format!("minilm-{now}");
    let imported = shopmind_encoder::import(&dir, out, &version, now)
        .with_context(|| format!("importing the encoder from {}", dir.display()))?;
    println!(
        "{} ({} MB, version {}) and {} written in {:.1} s",
        imported.model.display(),
        imported.bytes / 1_000_000,
        imported.manifest.version,
        imported.tokenizer.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The table of `models list`.
fn render_list(versions: &[VersionInfo], actives: &[(ModelKey, Active)]) -> String {
    if versions.is_empty() {
        return "no model versions in the registry\n".into();
    }
    let status = |info: &VersionInfo| status(info, actives);
    let mut rows = vec![[
        "TENANT".to_string(),
        "MODEL".into(),
        "VERSION".into(),
        "STATUS".into(),
        "CREATED (UTC)".into(),
        "ITEMS".into(),
        "USERS".into(),
        "INTERACTIONS".into(),
        "BYTES".into(),
    ]];
    for v in versions {
        rows.push([
            v.key.tenant.to_string(),
            v.key.model.to_string(),
            v.version.to_string(),
            status(v).into(),
            utc(v.created_at_ms),
            v.items.to_string(),
            v.users.to_string(),
            v.interactions.to_string(),
            v.size.to_string(),
        ]);
    }
    let mut widths = [0usize; 9];
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row.iter().zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(&missing_actives(versions, actives));
    out
}

/// A line for each active pointer whose version is not in the registry.
fn missing_actives(versions: &[VersionInfo], actives: &[(ModelKey, Active)]) -> String {
    actives
        .iter()
        .filter(|(k, a)| !versions.iter().any(|v| &v.key == k && v.version == a.version))
        .map(|(k, a)| format!("{k}: the active version {} is not in the registry\n", a.version))
        .collect()
}

/// A version's part now: `active`, `rollback` (what `models rollback` returns to) or "".
fn status(info: &VersionInfo, actives: &[(ModelKey, Active)]) -> &'static str {
    let Some((_, active)) = actives.iter().find(|(k, _)| k == &info.key) else { return "" };
    if active.version == info.version {
        "active"
    } else if active.previous.first() == Some(&info.version) {
        "rollback"
    } else {
        ""
    }
}

/// `models list --json`: an array of the versions, each with its status.
fn list_json(versions: &[VersionInfo], actives: &[(ModelKey, Active)]) -> serde_json::Value {
    versions
        .iter()
        .map(|v| {
            serde_json::json!({
                "tenant": v.key.tenant.as_str(),
                "model": v.key.model.as_str(),
                "version": v.version.as_str(),
                "status": status(v, actives),
                "kind": v.kind,
                "created_at_ms": v.created_at_ms,
                "created_utc": utc(v.created_at_ms),
                "items": v.items,
                "users": v.users,
                "interactions": v.interactions,
                "bytes": v.size,
            })
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` of milliseconds since the Unix epoch, in UTC.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn utc_formats_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20");
        assert_eq!(utc(-1000), "1969-12-31 23:59:59");
    }

    fn info(tenant: &str, version: &str) -> VersionInfo {
        VersionInfo {
            key: ModelKey::parse(tenant, "recommender").unwrap(),
            version: Version::parse(version).unwrap(),
            kind: "covisit".into(),
            created_at_ms: 0,
            items: 12,
            users: 3,
            interactions: 40,
            size: 999,
        }
    }

    #[test]
    fn the_list_marks_the_active_version_and_the_rollback_target() {
        let versions = [info("acme", "v1"), info("acme", "v2"), info("acme", "v3"), info("beta", "b1")];
        let active = Active {
            version: Version::parse("v2").unwrap(),
            previous: vec![Version::parse("v1").unwrap()],
            since_ms: 0,
        };
        let text = render_list(&versions, &[(versions[0].key.clone(), active)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].starts_with("TENANT") && lines[0].contains("INTERACTIONS"), "{text}");
        assert!(lines[1].contains("v1") && lines[1].contains("rollback"), "{text}");
        assert!(lines[2].contains("v2") && lines[2].contains("active"), "{text}");
        assert!(lines[2].contains("1970-01-01 00:00:00") && lines[2].contains(" 40 "), "{text}");
        assert!(!lines[3].contains("active") && !lines[4].contains("active"), "{text}");
        assert_eq!(render_list(&[], &[]), "no model versions in the registry\n");
    }

    #[test]
    fn the_json_list_parses_and_carries_the_status_and_the_active_pointers() {
        let versions = [info("acme", "v1"), info("acme", "v2"), info("beta", "b1")];
        let active = Active {
            version: Version::parse("v2").unwrap(),
            previous: vec![Version::parse("v1").unwrap()],
            since_ms: 7,
        };
        let text = list_json(&versions, &[(versions[0].key.clone(), active)]).to_string();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        let listed = parsed.as_array().unwrap();
        assert_eq!(listed.len(), 3, "{text}");
        assert_eq!(listed[0]["version"], "v1");
        assert_eq!(listed[0]["status"], "rollback");
        assert_eq!(listed[1]["status"], "active");
        assert_eq!(listed[1]["tenant"], "acme");
        assert_eq!(listed[1]["model"], "recommender");
        assert_eq!(listed[1]["kind"], "covisit");
        assert_eq!(listed[1]["interactions"], 40);
        assert_eq!(listed[1]["bytes"], 999);
        assert_eq!(listed[1]["created_utc"], "1970-01-01 00:00:00");
        assert_eq!(listed[2]["status"], "");
        assert_eq!(listed[2]["tenant"], "beta");
        let empty: serde_json::Value = serde_json::from_str(&list_json(&[], &[]).to_string()).unwrap();
        assert_eq!(empty.as_array().map(Vec::len), Some(0));
    }
}
