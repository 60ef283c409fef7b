//! Privacy at the edge: PII redaction of free text ([`redact`]) and pseudonymous customer ids
//! ([`Pseudonymizer`]).
//!
//! Events are admitted in one place (`shopmind_runtime::admission`), for the gateway and ingest
//! alike; that is where [`redact_event`] masks the free text of an event (support messages,
//! search queries) and, for tenants that enable it, [`Pseudonymizer::pseudonymize`] replaces the
//! shop's customer id, before anything is published to `SM_EVENTS`. Everything downstream
//! (streams, Redis, training, logs) only ever sees masked text and, for those tenants, hashed ids.
//! docs/PRIVACY.md describes what is kept where.

mod redact;

use std::collections::BTreeMap;

use ring::{digest, hmac};
use shopmind_domain::{Event, Payload, TenantId, UserId};
use shopmind_proto::v1 as pb;

pub use redact::{PiiKind, Redacted, redact};

/// The prefix of a pseudonymous customer id.
pub const PSEUDONYM_PREFIX: &str = "p_";

/// Masks the free text of an event in place: a support message's text and a search query.
/// Returns how many pieces of each kind were masked.
pub fn redact_event(event: &mut Event) -> BTreeMap<PiiKind, usize> {
    let text = match &mut event.payload {
        Payload::SupportMessage { text, .. } => text,
        Payload::SearchPerformed { query, .. } => query,
        _ => return BTreeMap::new(),
    };
    let redacted = redact(text);
    if redacted.count() > 0 {
        *text = redacted.text;
    }
    redacted.found
}

/// Masks the free text of a wire event in place (support message text, search query, the
/// optional view source). Returns how many pieces of PII were masked.
pub fn redact_wire_event(event: &mut pb::Event) -> usize {
    use pb::event::Payload as P;
    let text = match &mut event.payload {
        Some(P::SupportMessage(m)) => &mut m.text,
        Some(P::SearchPerformed(s)) => &mut s.query,
        Some(P::ProductViewed(v)) => &mut v.source,
        _ => return 0,
    };
    let redacted = redact(text);
    let found = redacted.count();
    if found > 0 {
        *text = redacted.text;
    }
    found
}

/// The payload of a message about to be kept as a dead letter, with PII masked: a protobuf
/// `shopmind.v1.Event` has its free text masked ([`redact_wire_event`]); other UTF-8 text is
/// masked as a whole ([`redact`]); anything else is returned as it is.
pub fn redact_payload(payload: &[u8]) -> Vec<u8> {
    use prost::Message as _;
    if let Ok(mut event) = pb::Event::decode(payload)
        && event.payload.is_some()
    {
        if redact_wire_event(&mut event) == 0 {
            return payload.to_vec();
        }
        return event.encode_to_vec();
    }
    match std::str::from_utf8(payload) {
        Ok(text) => redact(text).text.into_bytes(),
        Err(_) => payload.to_vec(),
    }
}

/// Replaces customer ids by keyed hashes: `p_` and the first 16 bytes of
/// HMAC-SHA256(secret, `<tenant>` 0x00 `<user id>`) in hex. The same secret, tenant and id give
/// the same pseudonym on every replica and every run; without the secret an id cannot be
/// recovered or confirmed. The secret is never logged (`Debug` prints no key).
#[derive(Clone)]
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<secret>)")
    }
}

impl Pseudonymizer {
    pub fn new(secret: &[u8]) -> Self {
        Self { key: hmac::Key::new(hmac::HMAC_SHA256, secret) }
    }

    /// The pseudonym of `user` in `tenant`.
    pub fn pseudonymize(&self, tenant: &TenantId, user: &UserId) -> UserId {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(tenant.as_str().as_bytes());
        ctx.update(&[0]);
        ctx.update(user.as_str().as_bytes());
        let tag = ctx.sign();
        let id = format!("{PSEUDONYM_PREFIX}{}", hex(&tag.as_ref()[..16]));
        // 34 characters of [a-z0-9_]: always a valid id.
        UserId::parse(id).unwrap_or_else(|_| user.clone())
    }

    /// Replaces the customer id of a customer event by its pseudonym. Agents' ids (support
    /// messages written by staff) are the shop's staff, not customers, and stay as they are.
    pub fn apply(&self, event: &mut Event) {
        if let Some(user) = &event.user {
            event.user = Some(self.pseudonymize(&event.tenant, user));
        }
    }
}

/// The pseudonym of `user` in `tenant` under `secret` (see [`Pseudonymizer`]).
pub fn pseudonymize(secret: &[u8], tenant: &TenantId, user: &UserId) -> UserId {
    Pseudonymizer::new(secret).pseudonymize(tenant, user)
}

/// What the tombstone set of erased customers holds for a customer id (as the system stores it:
/// the pseudonym for tenants that pseudonymise): the first 16 bytes of SHA-256(`<tenant>` 0x00
/// `<id>`) in hex, so the set itself names no customer.
pub fn tombstone_of(tenant: &TenantId, user: &UserId) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(tenant.as_str().as_bytes());
    ctx.update(&[0]);
    ctx.update(user.as_str().as_bytes());
    hex(&ctx.finish().as_ref()[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use shopmind_domain::{ConversationId, EventId, UnixMillis};

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }
    fn u(s: &str) -> UserId {
        UserId::parse(s).unwrap()
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_per_tenant() {
        let p = Pseudonymizer::new(b"secret-1");
        let a = p.pseudonymize(&t("acme"), &u("alice@example.com"));
        assert_eq!(a, p.pseudonymize(&t("acme"), &u("alice@example.com")), "stable");
        assert_eq!(a, pseudonymize(b"secret-1", &t("acme"), &u("alice@example.com")));
        assert!(a.as_str().starts_with(PSEUDONYM_PREFIX));
        assert_eq!(a.as_str().len(), 34);
        assert!(!a.as_str().contains("alice"));
        assert_ne!(a, p.pseudonymize(&t("globex"), &u("alice@example.com")), "per tenant");
        assert_ne!(a, p.pseudonymize(&t("acme"), &u("bob")), "per user");
        assert_ne!(a, pseudonymize(b"secret-2", &t("acme"), &u("alice@example.com")), "keyed");
        // Tenant and id are separated: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(p.pseudonymize(&t("ab"), &u("c")), p.pseudonymize(&t("a"), &u("bc")));
        assert_eq!(format!("{p:?}"), "Pseudonymizer(<secret>)");
        // A known answer, so that the derivation never changes silently (ids in Redis and in
        // models would no longer match).
        assert_eq!(pseudonymize(b"k", &t("acme"), &u("u1")).as_str(), known_answer());
    }

    fn known_answer() -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"k");
        let tag = hmac::sign(&key, b"acme\0u1");
        format!("p_{}", hex(&tag.as_ref()[..16]))
    }

    #[test]
    fn tombstones_hash_tenant_and_id() {
        let a = tombstone_of(&t("acme"), &u("alice"));
        assert_eq!(a.len(), 32);
        assert_eq!(a, tombstone_of(&t("acme"), &u("alice")));
        assert_ne!(a, tombstone_of(&t("globex"), &u("alice")));
        assert!(!a.contains("alice"));
    }

    fn support(text: &str) -> Event {
        Event {
            id: EventId::parse("e1").unwrap(),
            tenant: t("acme"),
            occurred_at: UnixMillis(0),
            user: Some(u("alice")),
            session: None,
            payload: Payload::SupportMessage {
                conversation: ConversationId::parse("c1").unwrap(),
                author: shopmind_domain::Author::Customer,
                text: text.into(),
            },
        }
    }

    #[test]
    fn events_and_wire_events_are_masked() {
        let mut e = support("mail me at alice@example.com about ord-1042");
        assert_eq!(redact_event(&mut e), BTreeMap::from([(PiiKind::Email, 1)]));
        let Payload::SupportMessage { text, .. } = &e.payload else { panic!() };
        assert_eq!(text, "mail me at [email] about ord-1042");

        Pseudonymizer::new(b"s").apply(&mut e);
        assert!(e.user.as_ref().unwrap().as_str().starts_with("p_"));

        let mut wire = support("card 4111 1111 1111 1111 please").to_proto();
        use prost::Message as _;
        let bytes = wire.encode_to_vec();
        let masked = redact_payload(&bytes);
        let back = pb::Event::decode(masked.as_slice()).unwrap();
        let Some(pb::event::Payload::SupportMessage(m)) = back.payload else { panic!() };
        assert_eq!(m.text, "card [card] please");
        assert_eq!(redact_wire_event(&mut wire), 1);

        // Clean events come back byte for byte; text that is not an event is masked as text.
        let clean = support("where is ord-1042?").to_proto().encode_to_vec();
        assert_eq!(redact_payload(&clean), clean);
        assert_eq!(redact_payload(b"{\"email\":\"bob@shop.example\"}"), b"{\"email\":\"[email]\"}".to_vec());
        assert_eq!(redact_payload(&[0xff, 0xfe, 0x00]), vec![0xff, 0xfe, 0x00]);
    }
}
