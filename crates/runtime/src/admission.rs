//! What events are let in: the validation every intake (gateway, ingest) applies, as configured.

use std::time::Duration;

use shopmind_config::IngestConfig;
use shopmind_domain::{Event, RejectCode, TenantId, UnixMillis, ValidationPolicy, Violation, Violations};
use shopmind_proto::v1 as pb;

/// The admission rules of `[ingest]`: known tenants, event size, clock skew, and the domain's
/// validation of every field.
#[derive(Debug, Clone)]
pub struct Admission {
    max_future_skew: Duration,
    max_event_bytes: usize,
    tenants: Vec<TenantId>,
}

impl Admission {
    pub fn new(config: &IngestConfig) -> Self {
        Self {
            max_future_skew: Duration::from_secs(config.max_future_skew_s),
            max_event_bytes: config.max_event_bytes,
            tenants: config.tenants.clone(),
        }
    }

    /// Whether the tenant may send events (`ingest.tenants` empty, or listing it).
    pub fn check_tenant(&self, tenant: &TenantId) -> Result<(), Violation> {
        if self.tenants.is_empty() || self.tenants.contains(tenant) {
            Ok(())
        } else {
            Err(Violation {
                code: RejectCode::UnknownTenant,
                field: "tenant".into(),
                description: format!("tenant {tenant:?} is not configured (ingest.tenants)"),
            })
        }
    }

    /// Validates a wire event carried by a call or subject of `tenant`.
    pub fn check(&self, wire: &pb::Event, tenant: &TenantId) -> Result<Event, Violations> {
        self.check_tenant(tenant).map_err(|v| Violations(vec![v]))?;
        let policy = ValidationPolicy {
            max_future_skew: Some(self.max_future_skew),
            max_event_bytes: Some(self.max_event_bytes),
            ..ValidationPolicy::ingest(UnixMillis::now())
        };
        Event::from_proto(wire, Some(tenant), &policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(tenant: &str) -> pb::Event {
        pb::Event {
            event_id: "e".into(),
            tenant: tenant.into(),
            occurred_at: Some(UnixMillis::now().to_proto()),
            user_id: "u".into(),
            session_id: String::new(),
            payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
                item_id: "i".into(),
                source: "x".repeat(3000),
            })),
        }
    }

    #[test]
    fn tenants_size_and_fields_are_checked() {
        let acme = TenantId::parse("acme").expect("valid");
        let globex = TenantId::parse("globex").expect("valid");
        let open = Admission::new(&IngestConfig::default());
        assert!(open.check(&view(""), &globex).is_ok());

        let config =
            IngestConfig { tenants: vec![acme.clone()], max_event_bytes: 2048, ..IngestConfig::default() };
        let strict = Admission::new(&config);
        let err = strict.check(&view(""), &globex).expect_err("unknown tenant");
        assert_eq!(err.first().code, RejectCode::UnknownTenant);
        let err = strict.check(&view(""), &acme).expect_err("too large");
        assert_eq!(err.first().code, RejectCode::PayloadTooLarge);
        let mut small = view("");
        small.payload = Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
            item_id: "i".into(),
            source: String::new(),
        }));
        assert!(strict.check(&small, &acme).is_ok());
    }
}
