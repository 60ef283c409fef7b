//! Identifier newtypes. Construction validates; a value of these types is always well-formed.

use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} bytes, got {len}")]
    TooLong { max: usize, len: usize },
    #[error("contains {0:?}; allowed: {1}")]
    BadChar(char, &'static str),
}

/// Longest accepted id (user, item, event, order, session, conversation), in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted tenant id, in bytes.
pub const MAX_TENANT_LEN: usize = 64;

const ID_ALLOWED: &str = "printable ASCII except whitespace, '{' and '}'";
const TENANT_ALLOWED: &str = "lowercase ASCII letters, digits, '-' and '_'";

fn check_id(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { max: MAX_ID_LEN, len: s.len() });
    }
    // Braces are excluded so that ids never disturb the `{...}` hash tags of store keys.
    match s.chars().find(|c| !c.is_ascii_graphic() || *c == '{' || *c == '}') {
        Some(c) => Err(IdError::BadChar(c, ID_ALLOWED)),
        None => Ok(()),
    }
}

fn check_tenant(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_TENANT_LEN {
        return Err(IdError::TooLong { max: MAX_TENANT_LEN, len: s.len() });
    }
    // Tenants appear as a token in NATS subjects and in store keys: no dots, wildcards or spaces.
    match s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_')) {
        Some(c) => Err(IdError::BadChar(c, TENANT_ALLOWED)),
        None => Ok(()),
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                $check(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A shop using shopmind. Part of every subject, key and API call.
    TenantId,
    check_tenant
);
id_type!(
    /// The shop's own customer id.
    UserId,
    check_id
);
id_type!(
    /// A catalog item (product, SKU).
    ItemId,
    check_id
);
id_type!(
    /// The idempotency key of an event.
    EventId,
    check_id
);
id_type!(OrderId, check_id);
id_type!(SessionId, check_id);
id_type!(ConversationId, check_id);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_rules() {
        assert!(TenantId::parse("acme-shop_2").is_ok());
        assert_eq!(TenantId::parse(""), Err(IdError::Empty));
        assert!(matches!(TenantId::parse("Acme"), Err(IdError::BadChar('A', _))));
        assert!(matches!(TenantId::parse("a.b"), Err(IdError::BadChar('.', _))));
        assert!(matches!(TenantId::parse("a*"), Err(IdError::BadChar('*', _))));
        assert!(matches!(TenantId::parse("x".repeat(65)), Err(IdError::TooLong { .. })));
    }

    #[test]
    fn id_rules() {
        assert!(ItemId::parse("sku:123/red-XL").is_ok());
        assert!(matches!(ItemId::parse("a b"), Err(IdError::BadChar(' ', _))));
        assert!(matches!(UserId::parse("u{1}"), Err(IdError::BadChar('{', _))));
        assert!(matches!(UserId::parse("é"), Err(IdError::BadChar('é', _))));
        assert!(EventId::parse("e".repeat(128)).is_ok());
        assert!(matches!(EventId::parse("e".repeat(129)), Err(IdError::TooLong { .. })));
    }

    #[test]
    fn deserialize_validates() {
        #[derive(serde::Deserialize)]
        struct T {
            #[allow(dead_code)]
            t: TenantId,
        }
        let err = toml_like_json(r#"{"t":"Bad Tenant"}"#);
        assert!(err.contains("allowed"), "{err}");
        fn toml_like_json(s: &str) -> String {
            match serde::Deserialize::deserialize(&mut JsonStr(s)) {
                Ok(T { .. }) => String::new(),
                Err(e) => e.0,
            }
        }
        // Minimal deserializer over a single-field JSON object, enough for this test.
        struct JsonStr<'a>(&'a str);
        #[derive(Debug)]
        struct E(String);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl std::error::Error for E {}
        impl serde::de::Error for E {
            fn custom<M: std::fmt::Display>(m: M) -> Self {
                E(m.to_string())
            }
        }
        impl<'de> serde::Deserializer<'de> for &mut JsonStr<'_> {
            type Error = E;
            fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
                let inner = self.0.trim_matches(|c| c == '{' || c == '}');
                let (k, val) = inner.split_once(':').ok_or(E("bad".into()))?;
                let map = [(k.trim_matches('"').to_string(), val.trim_matches('"').to_string())];
                v.visit_map(serde::de::value::MapDeserializer::new(map.into_iter()))
            }
            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
                bytes byte_buf option unit unit_struct newtype_struct seq tuple
                tuple_struct map struct enum identifier ignored_any
            }
        }
    }
}
