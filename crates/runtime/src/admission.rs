//! What events are let in: the validation every intake (gateway, ingest) applies, as configured,
//! and what privacy asks of an event before anything keeps it: its free text masked
//! (`privacy.redact`) and, for tenants with `privacy.tenants.<t>.pseudonymize`, the customer id
//! replaced by its pseudonym (docs/PRIVACY.md).

use std::collections::BTreeSet;
use std::time::Duration;

use shopmind_config::{Config, IngestConfig};
use shopmind_domain::{Event, RejectCode, TenantId, UnixMillis, ValidationPolicy, Violation, Violations};
use shopmind_privacy::Pseudonymizer;
use shopmind_proto::v1 as pb;

/// The admission rules of `[ingest]`: known tenants, event size, clock skew, and the domain's
/// validation of every field.
#[derive(Debug, Clone)]
pub struct Admission {
    max_future_skew: Duration,
    max_event_bytes: usize,
    tenants: Vec<TenantId>,
    redact: bool,
    /// Tenants whose customer ids are pseudonymised.
    pseudonymized: BTreeSet<String>,
    /// The key of pseudonyms; None when no secret is configured or it could not be read: the
    /// events of pseudonymising tenants are then refused (never stored with raw ids).
    pseudonymizer: Option<Pseudonymizer>,
}

impl Admission {
    /// The rules of `[ingest]` and `[privacy]`. The pseudonymisation secret is read here
    /// (`Config::load` has checked it is readable).
    pub fn new(config: &Config) -> Self {
        let pseudonymized: BTreeSet<String> =
            config.privacy.tenants.iter().filter(|(_, p)| p.pseudonymize).map(|(t, _)| t.clone()).collect();
        let pseudonymizer = match config.privacy.read_secret() {
            Ok(secret) => secret.map(|s| Pseudonymizer::new(&s)),
            Err(e) => {
                tracing::error!(error = %e, "pseudonymisation secret unavailable: events of pseudonymising tenants are refused");
                None
            }
        };
        Self {
            redact: config.privacy.redact,
            pseudonymized,
            pseudonymizer,
            ..Self::validation(&config.ingest)
        }
    }

    /// Only the validation rules of `[ingest]`: no redaction, no pseudonyms.
    pub fn validation(config: &IngestConfig) -> Self {
        Self {
            max_future_skew: Duration::from_secs(config.max_future_skew_s),
            max_event_bytes: config.max_event_bytes,
            tenants: config.tenants.clone(),
            redact: false,
            pseudonymized: BTreeSet::new(),
            pseudonymizer: None,
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

    /// Validates a wire event carried by a call or subject of `tenant`, and returns it as it
    /// may be kept: free text masked, the customer id pseudonymised where the tenant asks for it.
    pub fn check(&self, wire: &pb::Event, tenant: &TenantId) -> Result<Event, Violations> {
        self.check_tenant(tenant).map_err(|v| Violations(vec![v]))?;
        let policy = ValidationPolicy {
            max_future_skew: Some(self.max_future_skew),
            max_event_bytes: Some(self.max_event_bytes),
            ..ValidationPolicy::ingest(UnixMillis::now())
        };
        let mut event = Event::from_proto(wire, Some(tenant), &policy)?;
        if self.redact {
            for (kind, n) in shopmind_privacy::redact_event(&mut event) {
                shopmind_metrics::global().pii_masked(kind.as_str(), n as u64);
            }
        }
        if self.pseudonymized.contains(tenant.as_str()) {
            match &self.pseudonymizer {
                Some(p) => p.apply(&mut event),
                None => {
                    return Err(Violations(vec![Violation {
                        code: RejectCode::UnknownTenant,
                        field: "tenant".into(),
                        description: format!(
                            "tenant {tenant:?} pseudonymises customer ids and the secret is unavailable (privacy.secret_file)"
                        ),
                    }]));
                }
            }
        }
        Ok(event)
    }

    /// The customer id as the system stores it: the pseudonym of `user` for a tenant that
    /// pseudonymises customer ids, `user` itself otherwise (and when it is empty or not a valid
    /// id, which the service answering the call reports). Calls that look a customer up by the
    /// shop's id go through this, so callers never need to know pseudonyms.
    pub fn stored_user_id(&self, tenant: &TenantId, user: &str) -> Result<String, Violation> {
        if user.is_empty() || !self.pseudonymized.contains(tenant.as_str()) {
            return Ok(user.to_owned());
        }
        let Ok(id) = shopmind_domain::UserId::parse(user.to_owned()) else {
            return Ok(user.to_owned());
        };
        match &self.pseudonymizer {
            Some(p) => Ok(p.pseudonymize(tenant, &id).to_string()),
            None => Err(Violation {
                code: RejectCode::UnknownTenant,
                field: "tenant".into(),
                description: format!(
                    "tenant {tenant:?} pseudonymises customer ids and the secret is unavailable (privacy.secret_file)"
                ),
            }),
        }
    }

    /// Whether dead letters get their free text masked (`privacy.redact`).
    pub fn redacts(&self) -> bool {
        self.redact
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
        let open = Admission::validation(&IngestConfig::default());
        assert!(open.check(&view(""), &globex).is_ok());

        let config =
            IngestConfig { tenants: vec![acme.clone()], max_event_bytes: 2048, ..IngestConfig::default() };
        let strict = Admission::validation(&config);
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

    fn support(text: &str, user: &str) -> pb::Event {
        pb::Event {
            event_id: "e".into(),
            tenant: String::new(),
            occurred_at: Some(UnixMillis::now().to_proto()),
            user_id: user.into(),
            session_id: String::new(),
            payload: Some(pb::event::Payload::SupportMessage(pb::SupportMessage {
                conversation_id: "c".into(),
                author_role: pb::AuthorRole::Customer as i32,
                author_id: String::new(),
                text: text.into(),
            })),
        }
    }

    fn text_of(e: &Event) -> &str {
        match &e.payload {
            shopmind_domain::Payload::SupportMessage { text, .. } => text,
            _ => "",
        }
    }

    #[test]
    fn admitted_events_are_masked_and_pseudonymised_where_configured() {
        let acme = TenantId::parse("acme").expect("valid");
        let globex = TenantId::parse("globex").expect("valid");
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "0123456789abcdef-secret\n").expect("write");
        let mut config = Config::default();
        config.privacy.secret_file = secret.display().to_string();
        config.privacy.tenants.insert(
            "acme".into(),
            shopmind_config::TenantPrivacy { pseudonymize: true, ..Default::default() },
        );
        let admission = Admission::new(&config);
        let wire = support("I am alice@example.com, call +49 30 1234567 about ord-1042", "alice");

        let e = admission.check(&wire, &acme).expect("valid");
        assert_eq!(text_of(&e), "I am [email], call [phone] about ord-1042");
        let pseudonym = shopmind_privacy::pseudonymize(
            b"0123456789abcdef-secret",
            &acme,
            &shopmind_domain::UserId::parse("alice").expect("valid"),
        );
        assert_eq!(e.user.as_ref(), Some(&pseudonym));
        let exposed = shopmind_metrics::global().encode().expect("encodes");
        assert!(exposed.contains("shopmind_pii_masked_total{kind=\"email\"}"), "{exposed}");

        // Another tenant keeps its ids; its text is masked all the same.
        let e = admission.check(&wire, &globex).expect("valid");
        assert_eq!(e.user.as_ref().map(|u| u.as_str()), Some("alice"));
        assert_eq!(text_of(&e), "I am [email], call [phone] about ord-1042");

        // Without redaction the text stays; without a readable secret the tenant's events are
        // refused rather than stored with the shop's ids.
        config.privacy.redact = false;
        config.privacy.secret_file = dir.path().join("missing").display().to_string();
        let admission = Admission::new(&config);
        let e = admission.check(&wire, &globex).expect("valid");
        assert!(text_of(&e).contains("alice@example.com"));
        let err = admission.check(&wire, &acme).expect_err("no secret");
        assert!(err.to_string().contains("secret"), "{err}");
    }
}
