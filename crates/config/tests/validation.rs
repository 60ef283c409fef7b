//! Every check of `Config::validate`, one problem at a time: the key it names and the reason it
//! gives (documentation and operators rely on both), and the edges of its range.

#![allow(clippy::unwrap_used)]

use shopmind_config::{
    Config, ConfigError, TenantAssistant, TenantNotifications, TenantPrivacy, TenantRateLimit,
    WebhookEndpoint,
};

type Change = fn(&mut Config);

fn hook(name: &str, url: &str) -> WebhookEndpoint {
    WebhookEndpoint { name: name.into(), url: url.into(), secret: "s".into(), ..Default::default() }
}

/// Changes of the defaults, each with the problem it makes (None: still valid). One a line.
#[rustfmt::skip]
fn cases() -> Vec<(Change, Option<(&'static str, &'static str)>)> {
    vec![
        (|_c| {}, None),
        (|c| c.nats.url = "http://x".into(), Some(("nats.url", "must start with nats:// or tls://, or be empty for the in-process bus"))),
        (|c| c.nats.url = "tls://x".into(), None),
        (|c| c.redis.url = "http://x".into(), Some(("redis.url", "must start with redis:// or rediss://, or be empty for the in-memory store"))),
        (|c| c.redis.url = "rediss://x".into(), None),
        (|c| c.metrics.listen = "localhost".into(), Some(("metrics.listen", "must be an IP address and port such as 127.0.0.1:9090, or empty for no endpoint"))),
        (|c| c.telemetry.otlp_endpoint = "grpc://x".into(), Some(("telemetry.otlp_endpoint", "must be an http:// or https:// URL, or empty for no export"))),
        (|c| c.telemetry.otlp_endpoint = "https://x".into(), None),
        (|c| c.gateway.request_timeout_ms = 0, Some(("gateway.request_timeout_ms", "must be 1..=60000"))),
        (|c| c.gateway.request_timeout_ms = 60_001, Some(("gateway.request_timeout_ms", "must be 1..=60000"))),
        (|c| c.gateway.request_timeout_ms = 60_000, None),
        (|c| c.gateway.max_batch = 0, Some(("gateway.max_batch", "must be 1..=10000"))),
        (|c| c.gateway.max_batch = 10_001, Some(("gateway.max_batch", "must be 1..=10000"))),
        (|c| { c.gateway.api_keys.insert("short".into(), "acme".into()); }, Some(("gateway.api_keys", "every key must be at least 16 characters"))),
        (|c| { c.gateway.api_keys.insert("0123456789abcdef".into(), "Bad T".into()); }, Some(("gateway.api_keys", "\"Bad T\" is not a tenant id"))),
        (|c| { c.gateway.api_keys.insert("0123456789abcdef".into(), "acme".into()); }, None),
        (|c| c.gateway.admin_keys = vec!["x".into()], Some(("gateway.admin_keys", "every key must be at least 16 characters"))),
        (|c| c.gateway.rate_limit.requests_per_second = f64::NAN, Some(("gateway.rate_limit.requests_per_second", "must be 0..=1000000 (0: no limit)"))),
        (|c| c.gateway.rate_limit.requests_per_second = -1.0, Some(("gateway.rate_limit.requests_per_second", "must be 0..=1000000 (0: no limit)"))),
        (|c| c.gateway.rate_limit.requests_per_second = 1_000_001.0, Some(("gateway.rate_limit.requests_per_second", "must be 0..=1000000 (0: no limit)"))),
        (|c| c.gateway.rate_limit.burst = 0, Some(("gateway.rate_limit.burst", "must be at least 1"))),
        (|c| { c.gateway.rate_limit.tenants.insert("acme".into(), TenantRateLimit { requests_per_second: -2.0, burst: 1 }); }, Some(("gateway.rate_limit.tenants.acme.requests_per_second", "must be 0..=1000000 (0: no limit)"))),
        (|c| { c.gateway.rate_limit.tenants.insert("acme".into(), TenantRateLimit { requests_per_second: 2.0, burst: 0 }); }, Some(("gateway.rate_limit.tenants.acme.burst", "must be at least 1"))),
        (|c| { c.gateway.rate_limit.tenants.insert("Bad T".into(), TenantRateLimit { requests_per_second: 2.0, burst: 1 }); }, Some(("gateway.rate_limit.tenants", "\"Bad T\" is not a tenant id"))),
        (|c| c.gateway.tls.cert_file = "a".into(), Some(("gateway.tls", "cert_file and key_file go together"))),
        (|c| c.gateway.tls.key_file = "a".into(), Some(("gateway.tls", "cert_file and key_file go together"))),
        (|c| c.gateway.tls.client_ca_file = "a".into(), Some(("gateway.tls.client_ca_file", "needs cert_file and key_file"))),
        (|c| { c.nats.user = "u".into(); c.nats.password = "p".into(); c.nats.password_file = "f".into(); }, Some(("nats.password_file", "set nats.password or nats.password_file, not both"))),
        (|c| { c.nats.token = "p".into(); c.nats.token_file = "f".into(); }, Some(("nats.token_file", "set nats.token or nats.token_file, not both"))),
        (|c| c.nats.user = "u".into(), Some(("nats.user", "user and password (or password_file) go together"))),
        (|c| c.nats.password = "p".into(), Some(("nats.user", "user and password (or password_file) go together"))),
        (|c| { c.nats.user = "u".into(); c.nats.password = "p".into(); c.nats.token = "t".into(); }, Some(("nats.token", "choose user/password or a token, not both"))),
        (|c| c.nats.tls_cert_file = "c".into(), Some(("nats.tls_cert_file", "tls_cert_file and tls_key_file go together"))),
        (|c| { c.redis.password = "p".into(); c.redis.password_file = "f".into(); }, Some(("redis.password_file", "set redis.password or redis.password_file, not both"))),
        (|c| { c.redis.url = "redis://x".into(); c.redis.tls_ca_file = "f".into(); }, Some(("redis.tls_ca_file", "applies to rediss:// URLs only"))),
        (|c| { c.redis.tls_ca_file = "f".into(); }, None),
        (|c| c.ingest.concurrency = 0, Some(("ingest.concurrency", "must be 1..=1024"))),
        (|c| c.ingest.concurrency = 1025, Some(("ingest.concurrency", "must be 1..=1024"))),
        (|c| c.ingest.max_event_bytes = 1023, Some(("ingest.max_event_bytes", "must be 1024..=1000000 (NATS' default message limit is 1 MiB)"))),
        (|c| c.ingest.max_event_bytes = 1_000_001, Some(("ingest.max_event_bytes", "must be 1024..=1000000 (NATS' default message limit is 1 MiB)"))),
        (|c| c.ingest.ack_wait_s = 0, Some(("ingest.ack_wait_s", "must be at least 1"))),
        (|c| c.ingest.max_deliver = 0, Some(("ingest.max_deliver", "must be positive, or -1 for unlimited"))),
        (|c| c.ingest.max_deliver = -2, Some(("ingest.max_deliver", "must be positive, or -1 for unlimited"))),
        (|c| c.ingest.max_deliver = -1, None),
        (|c| c.feature.ack_wait_s = 0, Some(("feature.ack_wait_s", "must be at least 1"))),
        (|c| c.feature.max_deliver = -5, Some(("feature.max_deliver", "must be positive, or -1 for unlimited"))),
        (|c| c.feature.concurrency = 0, Some(("feature.concurrency", "must be 1..=1024"))),
        (|c| c.feature.concurrency = 1025, Some(("feature.concurrency", "must be 1..=1024"))),
        (|c| c.feature.batch_size = 0, Some(("feature.batch_size", "must be 1..=1024"))),
        (|c| c.feature.batch_size = 1025, Some(("feature.batch_size", "must be 1..=1024"))),
        (|c| c.feature.session_ttl_hours = 0, Some(("feature.session_ttl_hours", "must be at least 1"))),
        (|c| c.feature.bought_cap = 0, Some(("feature.bought_cap", "must be at least 1"))),
        (|c| c.feature.cart_log_cap = 0, Some(("feature.cart_log_cap", "must be at least 1"))),
        (|c| c.feature.covisit_window_s = 0, Some(("feature.covisit_window_s", "must be at least 1"))),
        (|c| c.feature.copurchase_window_days = 0, Some(("feature.copurchase_window_days", "must be at least 1"))),
        (|c| c.feature.neighbours_keep = 0, Some(("feature.neighbours_keep", "must be at least 1"))),
        (|c| c.feature.window_cap = 0, Some(("feature.window_cap", "must be at least 1"))),
        (|c| c.feature.pairs_cap = 0, Some(("feature.pairs_cap", "must be at least 1"))),
        (|c| c.feature.demand_days = 0, Some(("feature.demand_days", "must be at least 1"))),
        (|c| c.feature.affinity_half_life_days = 0, Some(("feature.affinity_half_life_days", "must be at least 1"))),
        (|c| c.feature.conversation_messages_cap = 0, Some(("feature.conversation_messages_cap", "must be at least 1"))),
        (|c| c.feature.conversation_ttl_days = 0, Some(("feature.conversation_ttl_days", "must be at least 1"))),
        (|c| c.feature.recent_items_cap = 0, Some(("feature.recent_items_cap", "must be 1..=10000"))),
        (|c| c.feature.recent_items_cap = 10_001, Some(("feature.recent_items_cap", "must be 1..=10000"))),
        (|c| c.feature.popular_items_cap = 0, Some(("feature.popular_items_cap", "must be at least 1"))),
        (|c| c.feature.user_ttl_days = 0, Some(("feature.user_ttl_days", "must be at least 1"))),
        (|c| c.feature.dedup_ttl_hours = 0, Some(("feature.dedup_ttl_hours", "must be at least 1 (it is what keeps redeliveries from counting twice)"))),
        (|c| c.inference.sessions = 65, Some(("inference.sessions", "must be 1..=64"))),
        (|c| c.inference.intra_threads = 0, Some(("inference.intra_threads", "must be 1..=64"))),
        (|c| c.inference.history_len = 201, Some(("inference.history_len", "must be 1..=200"))),
        (|c| c.inference.max_batch = 0, Some(("inference.max_batch", "must be 1..=4096"))),
        (|c| c.inference.max_queue_delay_us = 1_000_001, Some(("inference.max_queue_delay_us", "must be 0..=1000000 (at most one second)"))),
        (|c| c.inference.max_queue_delay_us = 1_000_000, None),
        (|c| c.inference.queue_capacity = 1_000_001, Some(("inference.queue_capacity", "must be 1..=1000000"))),
        (|c| c.inference.resolution_idle_s = 0, Some(("inference.resolution_idle_s", "must be at least 1"))),
        (|c| c.inference.agent_report_max_days = 3661, Some(("inference.agent_report_max_days", "must be 1..=3660"))),
        (|c| c.inference.agent_report_max_conversations = 0, Some(("inference.agent_report_max_conversations", "must be 1..=1000000"))),
        (|c| c.inference.ann_min_items = 1, Some(("inference.ann_min_items", "must be at least 2"))),
        (|c| c.inference.ann_min_items = 2, None),
        (|c| c.inference.ann_candidates = 0, Some(("inference.ann_candidates", "must be 1..=10000"))),
        (|c| c.inference.ann_ef_construction = 10_001, Some(("inference.ann_ef_construction", "must be 1..=10000"))),
        (|c| c.inference.ann_ef_search = 0, Some(("inference.ann_ef_search", "must be 1..=10000"))),
        (|c| c.inference.candidate_pool = 99, Some(("inference.candidate_pool", "must be 100..=10000 (at least one full page)"))),
        (|c| c.inference.candidate_pool = 10_001, Some(("inference.candidate_pool", "must be 100..=10000 (at least one full page)"))),
        (|c| c.inference.neighbour_seeds = 101, Some(("inference.neighbour_seeds", "must be 0..=100"))),
        (|c| c.inference.neighbour_seeds = 0, None),
        (|c| c.inference.neighbours_per_seed = 1001, Some(("inference.neighbours_per_seed", "must be 1..=1000"))),
        (|c| c.inference.trending_pool = 0, Some(("inference.trending_pool", "must be 1..=10000"))),
        (|c| c.inference.profile.active_days = 0, Some(("inference.profile.active_days", "must be at least 1"))),
        (|c| c.inference.profile.lapsed_days = 30, Some(("inference.profile.lapsed_days", "must be more than inference.profile.active_days"))),
        (|c| c.inference.profile.frequent_orders = 1, Some(("inference.profile.frequent_orders", "must be at least 2"))),
        (|c| c.inference.profile.high_value_minor = -1, Some(("inference.profile.high_value_minor", "must not be negative"))),
        (|c| c.inference.profile.default_order_gap_days = 0, Some(("inference.profile.default_order_gap_days", "must be at least 1"))),
        (|c| c.notification.ack_wait_s = 0, Some(("notification.ack_wait_s", "must be at least 1"))),
        (|c| c.notification.max_deliver = 0, Some(("notification.max_deliver", "must be positive, or -1 for unlimited"))),
        (|c| c.notification.timer_poll_ms = 9, Some(("notification.timer_poll_ms", "must be at least 10"))),
        (|c| c.notification.timer_lease_s = 0, Some(("notification.timer_lease_s", "must be at least 1"))),
        (|c| c.notification.webhook.timeout_ms = 0, Some(("notification.webhook.timeout_ms", "must be at least 1"))),
        (|c| c.notification.webhook.max_attempts = 0, Some(("notification.webhook.max_attempts", "must be at least 1"))),
        (|c| c.notification.webhook.backoff_base_ms = 0, Some(("notification.webhook.backoff_base_ms", "must be at least 1 and at most backoff_max_ms"))),
        (|c| c.notification.webhook.backoff_max_ms = 10, Some(("notification.webhook.backoff_base_ms", "must be at least 1 and at most backoff_max_ms"))),
        (|c| c.notification.webhook.concurrency = 1025, Some(("notification.webhook.concurrency", "must be 1..=1024"))),
        (|c| { c.notification.tenants.insert("Bad T".into(), TenantNotifications::default()); }, Some(("notification.tenants.Bad T", "not a valid tenant id"))),
        (|c| { c.notification.tenants.insert("Bad T".into(), TenantNotifications::default()); c.notification.defaults.rules.cart_abandonment.idle_s = 0; }, Some(("notification.tenants.Bad T", "not a valid tenant id"))),
        (|c| c.notification.defaults.rules.cart_abandonment.idle_s = 0, Some(("notification.defaults.rules.cart_abandonment.idle_s", "must be at least 1"))),
        (|c| c.notification.defaults.rules.cart_abandonment.min_intent = 1.5, Some(("notification.defaults.rules.cart_abandonment.min_intent", "must be within 0..=1"))),
        (|c| c.notification.defaults.rules.cart_abandonment.min_intent = f64::NAN, Some(("notification.defaults.rules.cart_abandonment.min_intent", "must be within 0..=1"))),
        (|c| c.notification.defaults.rules.cart_abandonment.complements = 51, Some(("notification.defaults.rules.cart_abandonment.complements", "must be at most 50"))),
        (|c| c.notification.defaults.rules.back_in_stock.watch_days = 0, Some(("notification.defaults.rules.back_in_stock.watch_days", "must be at least 1"))),
        (|c| c.notification.defaults.rules.price_drop.min_drop_pct = 0.0, Some(("notification.defaults.rules.price_drop.min_drop_pct", "must be within (0, 100)"))),
        (|c| c.notification.defaults.rules.price_drop.min_drop_pct = 100.0, Some(("notification.defaults.rules.price_drop.min_drop_pct", "must be within (0, 100)"))),
        (|c| c.notification.defaults.rules.price_drop.min_drop_pct = f64::NAN, Some(("notification.defaults.rules.price_drop.min_drop_pct", "must be within (0, 100)"))),
        (|c| c.notification.defaults.rules.price_drop.viewed_within_days = 0, Some(("notification.defaults.rules.price_drop.viewed_within_days", "it and max_viewers must be at least 1"))),
        (|c| c.notification.defaults.rules.price_drop.max_viewers = 0, Some(("notification.defaults.rules.price_drop.viewed_within_days", "it and max_viewers must be at least 1"))),
        (|c| c.notification.defaults.rules.order_status.statuses.push("lost".into()), Some(("notification.defaults.rules.order_status.statuses", "unknown status \"lost\""))),
        (|c| c.notification.defaults.rules.low_stock.lead_time_days = 0, Some(("notification.defaults.rules.low_stock.lead_time_days", "it and history_days must be at least 1"))),
        (|c| c.notification.defaults.rules.low_stock.history_days = 0, Some(("notification.defaults.rules.low_stock.lead_time_days", "it and history_days must be at least 1"))),
        (|c| c.notification.defaults.rules.churn_risk.drift_ratio = f64::INFINITY, Some(("notification.defaults.rules.churn_risk.drift_ratio", "must be a positive number"))),
        (|c| c.notification.defaults.rules.churn_risk.drift_ratio = 0.0, Some(("notification.defaults.rules.churn_risk.drift_ratio", "must be a positive number"))),
        (|c| c.notification.defaults.rules.churn_risk.min_orders = 1, Some(("notification.defaults.rules.churn_risk.min_orders", "must be at least 2 (a mean gap needs two orders)"))),
        (|c| c.notification.defaults.policy.dedup_window_s = 0, Some(("notification.defaults.policy.dedup_window_s", "it and frequency_window_s must be at least 1"))),
        (|c| c.notification.defaults.policy.frequency_window_s = 0, Some(("notification.defaults.policy.dedup_window_s", "it and frequency_window_s must be at least 1"))),
        (|c| c.notification.defaults.policy.quiet_start_hour = 24, Some(("notification.defaults.policy.quiet_start_hour", "quiet hours must be 0..=23"))),
        (|c| c.notification.defaults.policy.quiet_end_hour = 24, Some(("notification.defaults.policy.quiet_start_hour", "quiet hours must be 0..=23"))),
        (|c| c.notification.defaults.policy.default_utc_offset = "CET".into(), Some(("notification.defaults.policy.default_utc_offset", "must be +HH:MM or -HH:MM (or UTC)"))),
        (|c| c.notification.defaults.policy.default_time_zone = "Europe/Atlantis".into(), Some(("notification.defaults.policy.default_time_zone", "unknown time zone \"Europe/Atlantis\": an IANA name such as Europe/Berlin"))),
        (|c| c.notification.defaults.policy.default_time_zone = "Europe/Berlin".into(), None),
        (|c| c.notification.defaults.policy.capped_kinds.push("spam".into()), Some(("notification.defaults.policy.capped_kinds", "unknown kind \"spam\""))),
        (|c| c.notification.defaults.policy.quiet_kinds.push("spam".into()), Some(("notification.defaults.policy.quiet_kinds", "unknown kind \"spam\""))),
        (|c| c.notification.defaults.webhooks.push(hook("Bad", "http://x")), Some(("notification.defaults.webhooks[0].name", "must be unique and 1-64 of a-z 0-9 - _"))),
        (|c| { let w = hook("a", "http://x"); c.notification.defaults.webhooks = vec![w.clone(), w]; }, Some(("notification.defaults.webhooks[1].name", "must be unique and 1-64 of a-z 0-9 - _"))),
        (|c| c.notification.defaults.webhooks.push(hook("a", "ftp://x")), Some(("notification.defaults.webhooks[0].url", "must be an http:// or https:// URL"))),
        (|c| c.notification.defaults.webhooks.push(WebhookEndpoint { secret: String::new(), ..hook("a", "https://x") }), Some(("notification.defaults.webhooks[0].secret", "must not be empty"))),
        (|c| c.notification.defaults.webhooks.push(WebhookEndpoint { audiences: vec!["x".into()], ..hook("a", "https://x") }), Some(("notification.defaults.webhooks[0].audiences", "unknown audience \"x\""))),
        (|c| c.notification.defaults.webhooks.push(WebhookEndpoint { kinds: vec!["x".into()], ..hook("a", "https://x") }), Some(("notification.defaults.webhooks[0].kinds", "unknown kind \"x\""))),
        (|c| { let mut t = TenantNotifications::default(); t.rules.cart_abandonment.idle_s = 0; c.notification.tenants.insert("acme".into(), t); }, Some(("notification.tenants.acme.rules.cart_abandonment.idle_s", "must be at least 1"))),
        (|c| { let mut t = TenantNotifications::default(); t.webhooks.push(hook("a", "ftp://x")); c.notification.tenants.insert("acme".into(), t); }, Some(("notification.tenants.acme.webhooks[0].url", "must be an http:// or https:// URL"))),
        (|c| c.trainer.max_items = 1, Some(("trainer.max_items", "must be 2..=100000 (the model is a dense item-item matrix)"))),
        (|c| c.trainer.max_items = 100_001, Some(("trainer.max_items", "must be 2..=100000 (the model is a dense item-item matrix)"))),
        (|c| c.trainer.embedding_dim = 513, Some(("trainer.embedding_dim", "must be 2..=512"))),
        (|c| c.trainer.embedding_epochs = 0, Some(("trainer.embedding_epochs", "must be 1..=1000"))),
        (|c| c.trainer.window = 1, Some(("trainer.window", "must be at least 2"))),
        (|c| { c.trainer.assistant.enabled = true; c.trainer.assistant.encoder_dir = "  ".into(); }, Some(("trainer.assistant.encoder_dir", "must name the sentence encoder's directory when trainer.assistant.enabled is true"))),
        (|c| { c.trainer.assistant.encoder_dir = "".into(); }, None),
        (|c| c.trainer.intent_min_ordered_sessions = 0, Some(("trainer.intent_min_ordered_sessions", "must be at least 1"))),
        (|c| c.trainer.demand_min_days = 70, Some(("trainer.demand_min_days", "must be at least 71 (56 days of history, 14 of horizon and one more for calibration)"))),
        (|c| c.trainer.demand_min_days = 71, None),
        (|c| c.notification.model_timeout_ms = 0, Some(("notification.model_timeout_ms", "must be at least 1"))),
        (|c| c.models.keep_versions = 0, Some(("models.keep_versions", "must be 1..=1000"))),
        (|c| c.models.keep_versions = 1001, Some(("models.keep_versions", "must be 1..=1000"))),
        (|c| { c.privacy.tenants.insert("Bad T".into(), TenantPrivacy::default()); }, Some(("privacy.tenants.Bad T", "not a valid tenant id"))),
        (|c| { c.privacy.tenants.insert("acme".into(), TenantPrivacy { pseudonymize: true, ..Default::default() }); }, Some(("privacy.secret_file", "must be set: tenant \"acme\" pseudonymises customer ids"))),
        (|c| { c.privacy.secret_file = "/nonexistent/secret".into(); }, None),
        (|c| c.assistant.max_tokens = 7, Some(("assistant.max_tokens", "must be 8..=256"))),
        (|c| c.assistant.max_tokens = 257, Some(("assistant.max_tokens", "must be 8..=256"))),
        (|c| c.assistant.confidence_threshold = 1.0, Some(("assistant.confidence_threshold", "must be within [0, 1)"))),
        (|c| c.assistant.confidence_threshold = -0.1, Some(("assistant.confidence_threshold", "must be within [0, 1)"))),
        (|c| c.assistant.confidence_threshold = 0.0, None),
        (|c| c.assistant.conversation_ttl_s = 0, Some(("assistant.conversation_ttl_s", "must be at least 1"))),
        (|c| c.assistant.max_turns = 1, Some(("assistant.max_turns", "must be 2..=200"))),
        (|c| c.assistant.max_turns = 201, Some(("assistant.max_turns", "must be 2..=200"))),
        (|c| c.assistant.max_failures = 0, Some(("assistant.max_failures", "must be 1..=20"))),
        (|c| c.assistant.max_failures = 21, Some(("assistant.max_failures", "must be 1..=20"))),
        (|c| c.assistant.escalation_timeout_ms = 0, Some(("assistant.escalation_timeout_ms", "must be at least 1"))),
        (|c| { c.assistant.tenants.insert("Bad T".into(), TenantAssistant::default()); }, Some(("assistant.tenants.Bad T", "not a valid tenant id"))),
        (|c| c.assistant.defaults.faq_dir = "".into(), Some(("assistant.defaults.faq_dir", "must name a directory"))),
        (|c| c.assistant.defaults.faq_min_score = 1.0, Some(("assistant.defaults.faq_min_score", "must be within [0, 1)"))),
        (|c| c.assistant.defaults.cancellable_statuses.push("x".into()), Some(("assistant.defaults.cancellable_statuses", "unknown status \"x\""))),
        (|c| c.assistant.defaults.returnable_statuses.push("x".into()), Some(("assistant.defaults.returnable_statuses", "unknown status \"x\""))),
        (|c| c.assistant.defaults.return_window_days = 0, Some(("assistant.defaults.return_window_days", "must be 1..=365"))),
        (|c| c.assistant.defaults.return_window_days = 366, Some(("assistant.defaults.return_window_days", "must be 1..=365"))),
        (|c| c.assistant.defaults.delivery_days = 61, Some(("assistant.defaults.delivery_days", "must be 1..=60"))),
        (|c| { let t = TenantAssistant { delivery_days: 0, ..Default::default() }; c.assistant.tenants.insert("acme".into(), t); }, Some(("assistant.tenants.acme.delivery_days", "must be 1..=60"))),
        (|c| c.streams.duplicate_window_s = 0, Some(("streams.duplicate_window_s", "must be at least 1"))),
        // Several problems: the first in the order of the sections, and of the keys in one.
        (|c| { c.nats.url = "x".into(); c.nats.user = "u".into(); }, Some(("nats.url", "must start with nats:// or tls://, or be empty for the in-process bus"))),
        (|c| { c.notification.defaults.rules.cart_abandonment.idle_s = 0; c.notification.defaults.rules.cart_abandonment.min_intent = 2.0; }, Some(("notification.defaults.rules.cart_abandonment.idle_s", "must be at least 1"))),
    ]
}

#[test]
fn each_problem_names_its_key_and_reason() {
    for (line, (change, expected)) in cases().into_iter().enumerate() {
        let mut config = Config::default();
        change(&mut config);
        let expected =
            expected.map(|(key, reason)| ConfigError::Invalid { key: key.into(), reason: reason.into() });
        assert_eq!(config.validate().err(), expected, "case {line} of cases()");
    }
}

#[test]
fn a_pseudonymising_tenant_needs_a_readable_secret() {
    let mut config = Config::default();
    config.privacy.secret_file = "/nonexistent/secret".into();
    config.privacy.tenants.insert("acme".into(), TenantPrivacy { pseudonymize: true, ..Default::default() });
    let err = config.validate().unwrap_err();
    assert!(
        matches!(&err, ConfigError::Invalid { key, reason } if key == "privacy.secret_file" && reason.starts_with("cannot read /nonexistent/secret")),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "short\n").unwrap();
    config.privacy.secret_file = secret.to_str().unwrap().into();
    assert_eq!(
        config.validate(),
        Err(ConfigError::Invalid {
            key: "privacy.secret_file".into(),
            reason: "the secret must be at least 16 bytes".into()
        })
    );
    std::fs::write(&secret, "0123456789abcdef\n").unwrap();
    assert_eq!(config.validate(), Ok(()));
}
