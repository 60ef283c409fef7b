//! The customer-service assistant: `sm.rpc.<tenant>.inference.assist` (the gateway's `Assist`).
//!
//! At start (in the background, so the other methods serve at once) the sentence encoder is
//! converted to ONNX in memory from `assistant.encoder_dir` and loaded into a session pool, the
//! FAQ of every configured tenant is embedded, and a fallback intent head is trained on the
//! built-in labelled messages (once per process). Each tenant's `intent_head` from the model
//! registry replaces the fallback as soon as it is active (followed like the other models). Until
//! the assistant is ready, requests are answered UNAVAILABLE.
//!
//! Escalations go to the notification service over `sm.rpc.<tenant>.notification.escalate`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shopmind_assistant::{
    Assistant, AssistantError, EscalationRequest, Escalator, HeadConfig, HeadModel, INTENTS, Message, Reply,
    encode_all, fit, parse_examples,
};
use shopmind_bus::{Bus, BusError};
use shopmind_config::Config;
use shopmind_domain::{ConversationId, TenantId, UnixMillis, UserId};
use shopmind_encoder::SentenceEncoder;
use shopmind_metrics::global as metrics;
use shopmind_proto::v1 as pb;
use shopmind_registry::ModelStore;
use shopmind_runtime::Shutdown;
use shopmind_runtime::rpc::{self, methods};
use shopmind_serving::{ModelError, PoolOptions};
use shopmind_store::FeatureStore;
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::InferenceError;
use crate::live::{LiveModels, Servable};
use crate::predict::observe;

/// The registry's name of a tenant's intent head.
pub const INTENT_HEAD: &str = "intent_head";
/// Longest customer message, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;
/// Requests one instance works on at the same time.
const MAX_CONCURRENT: usize = 256;
/// Version of the head trained at start from the built-in data.
const BUILTIN_VERSION: &str = "builtin";

/// An intent head served from the registry.
pub struct ServedHead(pub HeadModel);

#[async_trait::async_trait]
impl Servable for ServedHead {
    const MODEL: &'static str = INTENT_HEAD;

    fn load(bytes: &[u8], options: &PoolOptions) -> Result<Self, ModelError> {
        let head = HeadModel::load(bytes, options).map_err(|e| ModelError::InvalidModel(e.to_string()))?;
        if let Some(missing) = INTENTS.iter().find(|i| !head.labels().iter().any(|l| l == *i)) {
            return Err(ModelError::InvalidModel(format!("the head has no `{missing}` label")));
        }
        Ok(Self(head))
    }

    async fn warm_up(&self) -> Result<(), ModelError> {
        let probe = vec![1.0 / (self.0.dimension() as f32).sqrt(); self.0.dimension()];
        let out = self.0.probabilities(&[probe]).await.map_err(|e| ModelError::Runtime(e.to_string()))?;
        match out.first() {
            Some(p) if p.len() == self.0.labels().len() && p.iter().all(|v| v.is_finite()) => Ok(()),
            _ => Err(ModelError::Runtime("the warm-up run returned no usable row".into())),
        }
    }

    fn version(&self) -> &str {
        &self.0.manifest().version
    }

    fn tenant(&self) -> &str {
        &self.0.manifest().tenant
    }
}

/// The tenants' intent heads.
pub type IntentHeads = LiveModels<ServedHead>;

/// The fallback head, trained once per process.
static BUILTIN_HEAD: OnceCell<Arc<HeadModel>> = OnceCell::const_new();

/// The head trained on the built-in labelled messages (`crates/assistant/data/intents.jsonl`),
/// trained on first use and kept for the life of the process.
pub async fn builtin_head(
    encoder: &SentenceEncoder,
    options: &PoolOptions,
) -> Result<Arc<HeadModel>, AssistantError> {
    BUILTIN_HEAD
        .get_or_try_init(|| async {
            let started = Instant::now();
            let examples = parse_examples(shopmind_assistant::BUILTIN_DATA)?;
            let texts: Vec<&str> = examples.iter().map(|e| e.text.as_str()).collect();
            let embeddings = encode_all(encoder, &texts, 64).await?;
            let targets: Vec<usize> =
                examples.iter().filter_map(|e| INTENTS.iter().position(|i| *i == e.intent)).collect();
            let labels = INTENTS.iter().map(|s| (*s).to_owned()).collect();
            let head = tokio::task::spawn_blocking(move || {
                fit(&embeddings, &targets, labels, &HeadConfig::default())
            })
            .await
            .map_err(|e| AssistantError::Training(e.to_string()))??;
            let model = HeadModel::load(&head.to_onnx(BUILTIN_VERSION, UnixMillis::now().0, &[]), options)?;
            info!(
                messages = texts.len(),
                took_ms = started.elapsed().as_millis() as u64,
                "built-in intent head trained"
            );
            Ok(Arc::new(model))
        })
        .await
        .cloned()
}

/// The encoder directory of `assistant.encoder_dir` (or the setup's default).
fn encoder_dir(config: &Config) -> Option<PathBuf> {
    if config.assistant.encoder_dir.is_empty() {
        shopmind_encoder::default_model_dir()
    } else {
        Some(PathBuf::from(&config.assistant.encoder_dir))
    }
}

/// Converts the encoder to ONNX in memory and loads it.
pub fn load_encoder(config: &Config, options: &PoolOptions) -> Result<SentenceEncoder, String> {
    let dir = encoder_dir(config).ok_or_else(|| {
        "no sentence encoder: set assistant.encoder_dir or run scripts/setup.sh (.cache/models/all-MiniLM-L6-v2)"
            .to_string()
    })?;
    let (model, tokenizer) = shopmind_encoder::convert(&dir, "all-MiniLM-L6-v2", 0)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    SentenceEncoder::load(&model, &tokenizer, config.assistant.max_tokens, options).map_err(|e| e.to_string())
}

/// Escalates through the notification service.
pub struct BusEscalator {
    pub bus: Arc<dyn Bus>,
    pub timeout: Duration,
}

#[async_trait::async_trait]
impl Escalator for BusEscalator {
    async fn escalate(&self, r: EscalationRequest) -> Result<String, String> {
        let req = pb::EscalateRequest {
            tenant: r.tenant.to_string(),
            user_id: r.user.to_string(),
            conversation_id: r.conversation.to_string(),
            reason: r.reason,
            cause: r.cause,
            transcript: r.transcript,
            intents: r.intents,
            profile: r.profile.into_iter().collect(),
        };
        rpc::call(methods::Escalate, &*self.bus, &r.tenant, &req, self.timeout, None)
            .await
            .map(|ok| ok.outcome)
            .map_err(|e| e.to_string())
    }
}

/// What serves assist requests once it is ready.
pub struct AssistService {
    assistant: Assistant,
    heads: Arc<IntentHeads>,
    fallback: Arc<HeadModel>,
}

impl AssistService {
    /// Answers one request.
    pub async fn assist(&self, req: &pb::AssistRequest) -> Result<pb::AssistResponse, InferenceError> {
        let (tenant, conversation, user) = validate(req)?;
        let served = self.heads.get(&tenant);
        let head = served.as_ref().map_or(&*self.fallback, |h| &h.0);
        let message = Message {
            tenant: &tenant,
            conversation: &conversation,
            user: &user,
            text: &req.text,
            now: UnixMillis::now(),
        };
        let reply = self.assistant.respond(head, &message).await?;
        let intent = INTENTS.iter().find(|i| **i == reply.intent).copied().unwrap_or("out_of_scope");
        metrics().assistant_turn(intent, reply.outcome);
        Ok(to_proto(conversation, reply))
    }
}

fn to_proto(conversation: ConversationId, r: Reply) -> pb::AssistResponse {
    pb::AssistResponse {
        conversation_id: conversation.to_string(),
        intent: r.intent,
        confidence: r.confidence,
        answer: r.answer,
        citations: r
            .citations
            .into_iter()
            .map(|c| pb::Citation { source: c.source, id: c.id, title: c.title, snippet: c.snippet })
            .collect(),
        actions: r
            .actions
            .into_iter()
            .map(|a| pb::AssistAction { kind: a.kind, order_id: a.order_id, detail: a.detail })
            .collect(),
        escalated: r.escalated,
        needs_clarification: r.needs_clarification,
    }
}

/// Checks a request; every problem is named.
pub fn validate(req: &pb::AssistRequest) -> Result<(TenantId, ConversationId, UserId), InferenceError> {
    let mut violations = Vec::new();
    let tenant = TenantId::parse(req.tenant.clone())
        .map_err(|e| violations.push(("tenant".to_string(), e.to_string())))
        .ok();
    let conversation = ConversationId::parse(req.conversation_id.clone())
        .map_err(|e| violations.push(("conversation_id".into(), e.to_string())))
        .ok();
    let user = UserId::parse(req.user_id.clone())
        .map_err(|e| violations.push(("user_id".into(), e.to_string())))
        .ok();
    let chars = req.text.chars().count();
    if req.text.trim().is_empty() {
        violations.push(("text".into(), "must not be empty".into()));
    } else if chars > MAX_TEXT_CHARS {
        violations.push(("text".into(), format!("must be at most {MAX_TEXT_CHARS} characters, got {chars}")));
    }
    match (tenant, conversation, user) {
        (Some(t), Some(c), Some(u)) if violations.is_empty() => Ok((t, c, u)),
        _ => Err(InferenceError::InvalidArgument(violations)),
    }
}

/// The assist method of a running inference service.
pub(crate) struct Serving {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<Result<(), BusError>>,
}

impl Serving {
    /// Serves assist requests until `shutdown`; the assistant gets ready in the background.
    pub(crate) fn start(
        config: &Config,
        options: PoolOptions,
        bus: Arc<dyn Bus>,
        store: Arc<dyn FeatureStore>,
        registry: Arc<dyn ModelStore>,
        shutdown: &Shutdown,
    ) -> Self {
        let heads = Arc::new(IntentHeads::new(options.clone()));
        let ready: Arc<OnceCell<AssistService>> = Arc::new(OnceCell::new());
        let follower = tokio::spawn(heads.clone().follow(registry, shutdown.clone()));
        let loader = {
            let (config, bus, store, ready) = (config.clone(), bus.clone(), store.clone(), ready.clone());
            tokio::spawn(async move {
                match prepare(&config, &options, bus, store, heads).await {
                    Ok(service) => {
                        let _ = ready.set(service);
                        info!("the assistant is ready");
                    }
                    Err(e) => warn!(error = %e, "the assistant is not available"),
                }
            })
        };
        let server = tokio::spawn(rpc::Server::new(bus, shutdown.clone()).serve(
            methods::Assist,
            MAX_CONCURRENT,
            ready,
            |ready, req, _| async move {
                let Some(service) = ready.get() else {
                    validate(&req)?;
                    return Err(InferenceError::Unavailable(
                        "the assistant is starting (or has no sentence encoder: see the inference log)"
                            .into(),
                    ));
                };
                service.assist(&req).await
            },
            observe::<methods::Assist>,
        ));
        Self { tasks: vec![follower, loader], server }
    }

    pub(crate) async fn stopped(self) -> Result<(), BusError> {
        let result = match self.server.await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "the assist server ended abnormally");
                Ok(())
            }
        };
        for task in self.tasks {
            task.abort();
        }
        result
    }
}

async fn prepare(
    config: &Config,
    options: &PoolOptions,
    bus: Arc<dyn Bus>,
    store: Arc<dyn FeatureStore>,
    heads: Arc<IntentHeads>,
) -> Result<AssistService, String> {
    let started = Instant::now();
    let encoder = {
        let (config, options) = (config.clone(), options.clone());
        tokio::task::spawn_blocking(move || load_encoder(&config, &options))
            .await
            .map_err(|e| e.to_string())??
    };
    let encoder = Arc::new(encoder);
    let fallback = builtin_head(&encoder, options).await.map_err(|e| e.to_string())?;
    let escalator = Arc::new(BusEscalator {
        bus,
        timeout: Duration::from_millis(config.assistant.escalation_timeout_ms),
    });
    let settings = shopmind_features::FeatureSettings::from_config(&config.feature);
    let assistant = Assistant::new(encoder, store, escalator, config.assistant.clone(), settings);
    let entries = assistant.load_knowledge().await.map_err(|e| e.to_string())?;
    info!(faq_entries = entries, took_ms = started.elapsed().as_millis() as u64, "assistant loaded");
    Ok(AssistService { assistant, heads, fallback })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(text: &str) -> pb::AssistRequest {
        pb::AssistRequest {
            tenant: "acme".into(),
            conversation_id: "c1".into(),
            user_id: "u1".into(),
            text: text.into(),
        }
    }

    fn fields(e: InferenceError) -> Vec<String> {
        let e = shopmind_runtime::rpc::WireError::into_wire(e);
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
        e.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn requests_need_ids_and_a_text_of_1_to_2000_characters() {
        assert!(validate(&request("where is my order?")).is_ok());
        assert!(validate(&request(&"é".repeat(MAX_TEXT_CHARS))).is_ok(), "characters, not bytes");
        assert_eq!(fields(validate(&request("  ")).unwrap_err()), ["text"]);
        assert_eq!(fields(validate(&request(&"a".repeat(MAX_TEXT_CHARS + 1))).unwrap_err()), ["text"]);
        let bad = pb::AssistRequest {
            tenant: "A!".into(),
            conversation_id: String::new(),
            user_id: "u 1".into(),
            text: String::new(),
        };
        assert_eq!(fields(validate(&bad).unwrap_err()), ["tenant", "conversation_id", "user_id", "text"]);
    }
}
