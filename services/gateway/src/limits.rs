//! Per-tenant rate limits: a token bucket per tenant (`gateway.rate_limit`). Each call takes one
//! token of each tenant it names; an empty bucket answers RESOURCE_EXHAUSTED with a
//! `google.rpc.RetryInfo` detail saying when the next token will be there.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shopmind_config::RateLimitConfig;
use shopmind_domain::TenantId;
use shopmind_metrics::global as metrics;

use crate::GatewayError;

#[derive(Debug, Clone, Copy)]
struct Rate {
    per_second: f64,
    burst: f64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The token buckets of every tenant that has called.
#[derive(Debug)]
pub struct RateLimits {
    default: Option<Rate>,
    overrides: HashMap<String, Option<Rate>>,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

fn rate(per_second: f64, burst: u32) -> Option<Rate> {
    (per_second > 0.0).then_some(Rate { per_second, burst: f64::from(burst.max(1)) })
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            default: rate(config.requests_per_second, config.burst),
            overrides: config
                .tenants
                .iter()
                .map(|(t, l)| (t.clone(), rate(l.requests_per_second, l.burst)))
                .collect(),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn rate_of(&self, tenant: &TenantId) -> Option<Rate> {
        self.overrides.get(tenant.as_str()).copied().unwrap_or(self.default)
    }

    /// Takes a token of `tenant` at `now`; `Err(wait)`: none is left, the next one comes after
    /// `wait`.
    fn take_at(&self, tenant: &TenantId, now: Instant) -> Result<(), Duration> {
        let Some(rate) = self.rate_of(tenant) else { return Ok(()) };
        // A poisoned lock only means another call panicked mid-update; the buckets stay usable.
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(tenant.clone()).or_insert(Bucket { tokens: rate.burst, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(rate.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate.per_second))
        }
    }

    /// Takes a token of `tenant`, or answers RESOURCE_EXHAUSTED.
    pub fn take(&self, tenant: &TenantId) -> Result<(), GatewayError> {
        self.take_at(tenant, Instant::now()).map_err(|retry_after| {
            metrics().gateway_refused("rate_limited");
            GatewayError::RateLimited { tenant: tenant.to_string(), retry_after }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use shopmind_config::TenantRateLimit;

    use super::*;

    #[test]
    fn buckets_hold_a_burst_and_refill_at_the_rate() {
        let mut config = RateLimitConfig { requests_per_second: 2.0, burst: 3, ..Default::default() };
        config.tenants.insert("big".into(), TenantRateLimit { requests_per_second: 100.0, burst: 10 });
        config.tenants.insert("free".into(), TenantRateLimit { requests_per_second: 0.0, burst: 1 });
        let limits = RateLimits::new(&config);
        let (acme, other) = (TenantId::parse("acme").unwrap(), TenantId::parse("other").unwrap());
        let t0 = Instant::now();
        for _ in 0..3 {
            limits.take_at(&acme, t0).unwrap();
        }
        let wait = limits.take_at(&acme, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500), "one token every 500 ms");
        limits.take_at(&other, t0).unwrap();
        limits.take_at(&acme, t0 + Duration::from_millis(500)).unwrap();
        assert!(limits.take_at(&acme, t0 + Duration::from_millis(500)).is_err());
        // After a long idle time the bucket holds `burst` tokens, not more.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            limits.take_at(&acme, later).unwrap();
        }
        assert!(limits.take_at(&acme, later).is_err());

        let big = TenantId::parse("big").unwrap();
        for _ in 0..10 {
            limits.take_at(&big, t0).unwrap();
        }
        assert!(limits.take_at(&big, t0).is_err());
        let free = TenantId::parse("free").unwrap();
        for _ in 0..1000 {
            limits.take_at(&free, t0).unwrap();
        }
    }

    #[test]
    fn no_rate_means_no_limit() {
        let limits = RateLimits::new(&RateLimitConfig::default());
        let acme = TenantId::parse("acme").unwrap();
        for _ in 0..10_000 {
            limits.take(&acme).unwrap();
        }
    }
}
