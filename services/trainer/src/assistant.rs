//! The customer-service assistant's intent classifier head of a training round
//! (`trainer.assistant.enabled`): per tenant, a softmax head ([`shopmind_assistant::fit`]) on the
//! sentence embeddings of the bundled labelled messages (`crates/assistant/data/intents.jsonl`)
//! plus the tenant's own (`<trainer.assistant.examples_dir>/<tenant>.jsonl`), published as a new
//! version of the tenant's [`INTENT_HEAD`], promoted with `trainer.auto_promote` and pruned to
//! `models.keep_versions` like the other models.
//!
//! Before the published head is trained on every message, one is trained on a stratified 75% and
//! scored on the other 25% ([`shopmind_assistant::evaluate_embedded`]); its held-out accuracy,
//! next to the nearest-centroid and majority baselines of the same split, goes into the
//! manifest, and the whole report (per-intent precision and recall, the confusion matrix) into
//! [`TrainedModel::report`].
//!
//! A tenant's head is trained again only when its training messages change (a fingerprint of
//! them is remembered per tenant). Without the encoder or ONNX Runtime, with a tenant file that
//! does not load, or when training fails, the head is skipped, logged at warn, and the round
//! goes on; only a failing registry fails the round.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use shopmind_assistant::{BUILTIN_DATA, Example, HeadConfig, INTENTS, IntentHead, Report};
use shopmind_config::Config;
use shopmind_domain::{TenantId, UnixMillis};
use shopmind_encoder::SentenceEncoder;
use shopmind_onnx::Manifest;
use shopmind_registry::{INTENT_HEAD, ModelStore};
use shopmind_serving::PoolOptions;
use tracing::{Instrument, info, warn};

use crate::predictors::publish;
use crate::{TrainedModel, TrainerError};

/// Messages embedded per encoder run.
const ENCODE_BATCH: usize = 64;

/// The sentence encoder, ready, with the embeddings of the bundled messages.
struct Encoded {
    encoder: SentenceEncoder,
    builtin: Vec<Example>,
    builtin_embeddings: Vec<Vec<f32>>,
    /// Holds a converted encoder while it is in use.
    _converted: Option<tempfile::TempDir>,
}

/// Per tenant, the fingerprint of the messages its published head was trained on.
pub(crate) type TrainedOn = BTreeMap<TenantId, u64>;

/// A fingerprint of the bundled messages and the tenant's own.
fn fingerprint(own: &[Example]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    BUILTIN_DATA.hash(&mut h);
    for e in own {
        e.text.hash(&mut h);
        e.intent.hash(&mut h);
    }
    h.finish()
}

/// The tenant's own labelled messages, if `examples_dir` has a file for it.
fn tenant_examples(config: &Config, tenant: &TenantId) -> Result<Vec<Example>, String> {
    let dir = &config.trainer.assistant.examples_dir;
    if dir.is_empty() {
        return Ok(Vec::new());
    }
    let path = Path::new(dir).join(format!("{tenant}.jsonl"));
    if !path.is_file() {
        return Ok(Vec::new());
    }
    shopmind_assistant::load_examples(&path).map_err(|e| e.to_string())
}

/// Loads ONNX Runtime and the encoder (converting a sentence-transformers directory first) and
/// embeds the bundled messages.
async fn load_encoder(config: &Config) -> Result<Encoded, String> {
    let library =
        shopmind_serving::library_path(&config.inference.onnxruntime_library).map_err(|e| e.to_string())?;
    shopmind_serving::init_runtime(&library).map_err(|e| e.to_string())?;
    let dir = PathBuf::from(&config.trainer.assistant.encoder_dir);
    let (dir, converted) = if dir.join(shopmind_encoder::ENCODER_FILE).is_file() {
        (dir, None)
    } else if dir.join("model.safetensors").is_file() {
        let out = tempfile::tempdir().map_err(|e| format!("a directory for the converted encoder: {e}"))?;
        let src = dir.clone();
        let target = out.path().to_path_buf();
        tokio::task::spawn_blocking(move || shopmind_encoder::import(&src, &target, "trainer", 0))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("converting the encoder in {}: {e}", dir.display()))?;
        (out.path().to_path_buf(), Some(out))
    } else {
        return Err(format!(
            "no sentence encoder in {:?} (neither {} nor model.safetensors); see trainer.assistant.encoder_dir",
            config.trainer.assistant.encoder_dir,
            shopmind_encoder::ENCODER_FILE
        ));
    };
    let max_tokens = shopmind_assistant::ClassifierConfig::default().max_tokens;
    let encoder =
        SentenceEncoder::load_dir(&dir, max_tokens, &PoolOptions::default()).map_err(|e| e.to_string())?;
    let builtin = shopmind_assistant::parse_examples(BUILTIN_DATA).map_err(|e| e.to_string())?;
    let texts: Vec<&str> = builtin.iter().map(|e| e.text.as_str()).collect();
    let builtin_embeddings =
        shopmind_assistant::encode_all(&encoder, &texts, ENCODE_BATCH).await.map_err(|e| e.to_string())?;
    Ok(Encoded { encoder, builtin, builtin_embeddings, _converted: converted })
}

/// Trains and publishes the intent head of every tenant in `tenants` whose training messages
/// differ from those its head was last trained on (`trained_on`, updated).
pub(crate) async fn train_intent_heads(
    config: &Config,
    models: &dyn ModelStore,
    tenants: Vec<TenantId>,
    trained_on: &mut TrainedOn,
) -> Result<Vec<TrainedModel>, TrainerError> {
    if !config.trainer.assistant.enabled || tenants.is_empty() {
        return Ok(Vec::new());
    }
    // The tenants' data first: the encoder is loaded only when some head is due.
    let mut due = Vec::new();
    for tenant in tenants {
        match tenant_examples(config, &tenant) {
            Ok(own) => {
                let print = fingerprint(&own);
                if trained_on.get(&tenant) != Some(&print) {
                    due.push((tenant, own, print));
                }
            }
            Err(e) => {
                warn!(tenant = %tenant, model = INTENT_HEAD, error = %e, "the tenant's labelled messages do not load; its intent head is not trained")
            }
        }
    }
    if due.is_empty() {
        return Ok(Vec::new());
    }
    let span = tracing::info_span!("load_sentence_encoder", tenants_due = due.len());
    let encoded = match load_encoder(config).instrument(span).await {
        Ok(e) => e,
        Err(why) => {
            warn!(model = INTENT_HEAD, reason = %why, "the sentence encoder is not available; intent heads skipped this round");
            return Ok(Vec::new());
        }
    };
    let mut published = Vec::new();
    for (tenant, own, print) in due {
        let span = tracing::info_span!("train_intent_head", tenant = %tenant);
        let (head, manifest, report) = match train_one(config, &encoded, &tenant, own).instrument(span).await
        {
            Ok(trained) => trained,
            Err(why) => {
                warn!(tenant = %tenant, model = INTENT_HEAD, reason = %why, "intent head not trained; the round goes on");
                continue;
            }
        };
        let bytes = head.to_onnx_with(&manifest);
        let mut model = publish(config, models, &tenant, &manifest, bytes, 0).await?;
        model.report = Some(report.to_string());
        info!(
            tenant = %tenant,
            version = %model.version,
            messages = head.rows,
            holdout_accuracy = report.accuracy,
            nearest_centroid = report.nearest_centroid_accuracy,
            "intent head published"
        );
        trained_on.insert(tenant, print);
        published.push(model);
    }
    Ok(published)
}

/// Embeds the tenant's own messages, measures the held-out accuracy on the bundled and own
/// messages, and trains the head to publish on all of them, with its manifest.
async fn train_one(
    config: &Config,
    encoded: &Encoded,
    tenant: &TenantId,
    own: Vec<Example>,
) -> Result<(IntentHead, Manifest, Report), String> {
    let own_texts: Vec<&str> = own.iter().map(|e| e.text.as_str()).collect();
    let own_embeddings = shopmind_assistant::encode_all(&encoded.encoder, &own_texts, ENCODE_BATCH)
        .await
        .map_err(|e| format!("embedding the tenant's messages: {e}"))?;
    let mut examples = encoded.builtin.clone();
    examples.extend(own);
    let mut embeddings = encoded.builtin_embeddings.clone();
    embeddings.extend(own_embeddings);
    let report = shopmind_assistant::evaluate_embedded(&embeddings, &examples, config.trainer.assistant.seed)
        .await
        .map_err(|e| format!("held-out evaluation: {e}"))?;
    let tenant_s = tenant.to_string();
    let (head, mut manifest) = tokio::task::spawn_blocking(move || {
        let targets: Vec<usize> = examples
            .iter()
            .map(|e| shopmind_assistant::data::intent_index(&e.intent).unwrap_or(INTENTS.len() - 1))
            .collect();
        let labels = INTENTS.iter().map(|s| (*s).to_owned()).collect();
        let head = shopmind_assistant::fit(&embeddings, &targets, labels, &HeadConfig::default())?;
        let created = UnixMillis::now().0;
        let mut manifest = head.manifest(&format!("intent-head-{created}"), created);
        manifest.name = INTENT_HEAD.into();
        manifest.tenant = tenant_s;
        Ok::<_, shopmind_assistant::AssistantError>((head, manifest))
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("training: {e}"))?;
    manifest.metrics = BTreeMap::from([
        ("holdout_messages".to_string(), report.held_out_rows as f64),
        ("holdout_accuracy".to_string(), report.accuracy),
        ("holdout_accuracy_nearest_centroid".to_string(), report.nearest_centroid_accuracy),
        ("holdout_accuracy_majority".to_string(), report.majority_accuracy),
    ]);
    Ok((head, manifest, report))
}
