//! `[gateway]`: the gRPC listener, its API and admin keys, rate limits and TLS.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::check::{Checks, is_tenant_id};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    /// Deadline of calls to other services when the client sets none.
    pub request_timeout_ms: u64,
    /// Most events in one PublishEvents call.
    pub max_batch: usize,
    /// API keys and their tenants (`key = "tenant"`). With no keys here nor in
    /// `api_keys_file`, the gateway is open (every caller may name any tenant).
    pub api_keys: BTreeMap<String, String>,
    /// A file of `key = tenant` lines (a mounted secret); `#` starts a comment.
    pub api_keys_file: String,
    /// Keys of the `Admin` service (operators, not tenants).
    pub admin_keys: Vec<String>,
    /// A file of admin keys, one a line (a mounted secret); `#` starts a comment.
    pub admin_keys_file: String,
    pub rate_limit: RateLimitConfig,
    pub tls: GatewayTlsConfig,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout_ms: 2000,
            max_batch: 1000,
            api_keys: BTreeMap::new(),
            api_keys_file: String::new(),
            admin_keys: Vec::new(),
            admin_keys_file: String::new(),
            rate_limit: RateLimitConfig::default(),
            tls: GatewayTlsConfig::default(),
        }
    }
}

/// Per-tenant token buckets of the gateway: each call takes one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Tokens added per second to each tenant's bucket; 0: no limit.
    pub requests_per_second: f64,
    /// The bucket's size: calls a tenant may make at once after being idle.
    pub burst: u32,
    /// Per-tenant overrides.
    pub tenants: BTreeMap<String, TenantRateLimit>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self { requests_per_second: 0.0, burst: 100, tenants: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantRateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
}

/// TLS of the gRPC listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayTlsConfig {
    /// PEM certificate chain and private key; both empty: plaintext gRPC.
    pub cert_file: String,
    pub key_file: String,
    /// PEM CA certificates of clients: when set, clients must present a certificate it signed
    /// (mutual TLS).
    pub client_ca_file: String,
}

/// The shortest API or admin key accepted.
const MIN_KEY_LEN: usize = 16;

impl GatewayConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range("gateway.request_timeout_ms", self.request_timeout_ms, 1..=60_000);
        c.range("gateway.max_batch", self.max_batch, 1..=10_000);
        for (key, tenant) in &self.api_keys {
            if key.len() < MIN_KEY_LEN {
                c.fail("gateway.api_keys", "every key must be at least 16 characters");
            }
            if !is_tenant_id(tenant) {
                c.fail("gateway.api_keys", format!("{tenant:?} is not a tenant id"));
            }
        }
        c.ensure(
            self.admin_keys.iter().all(|k| k.len() >= MIN_KEY_LEN),
            "gateway.admin_keys",
            "every key must be at least 16 characters",
        );
        self.rate_limit.validate(c);
        self.tls.validate(c);
    }
}

impl RateLimitConfig {
    fn validate(&self, c: &mut Checks) {
        c.scoped("gateway.rate_limit", |c| bucket(c, self.requests_per_second, self.burst));
        for (tenant, limit) in &self.tenants {
            c.scoped(&format!("gateway.rate_limit.tenants.{tenant}"), |c| {
                bucket(c, limit.requests_per_second, limit.burst);
            });
        }
        if let Some(t) = self.tenants.keys().find(|t| !is_tenant_id(t)) {
            c.fail("gateway.rate_limit.tenants", format!("{t:?} is not a tenant id"));
        }
    }
}

/// One token bucket's rate and size, under the scope of its table.
fn bucket(c: &mut Checks, requests_per_second: f64, burst: u32) {
    c.ensure(
        requests_per_second.is_finite() && (0.0..=1_000_000.0).contains(&requests_per_second),
        "requests_per_second",
        "must be 0..=1000000 (0: no limit)",
    );
    c.at_least("burst", burst, 1);
}

impl GatewayTlsConfig {
    fn validate(&self, c: &mut Checks) {
        c.ensure(
            self.cert_file.is_empty() == self.key_file.is_empty(),
            "gateway.tls",
            "cert_file and key_file go together",
        );
        c.ensure(
            self.client_ca_file.is_empty() || !self.cert_file.is_empty(),
            "gateway.tls.client_ca_file",
            "needs cert_file and key_file",
        );
    }
}
