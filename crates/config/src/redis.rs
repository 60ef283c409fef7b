//! `[redis]`: the Redis server, its credentials and TLS.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://host:port/db` or `rediss://` (TLS). Empty: the in-memory store (only `all-in-one`
    /// can use it).
    pub url: String,
    /// ACL user name (Redis 6+); empty: the default user.
    pub username: String,
    /// Password (`requirepass` or the ACL user's); prefer `password_file` (a mounted secret).
    pub password: String,
    /// A file holding the password (trailing whitespace ignored).
    pub password_file: String,
    /// PEM file of the certificate authorities a `rediss://` server's certificate is checked
    /// against (instead of the platform's roots).
    pub tls_ca_file: String,
}

impl RedisConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        if !self.url.is_empty() {
            c.scheme(
                "redis.url",
                &self.url,
                &["redis://", "rediss://"],
                "must start with redis:// or rediss://, or be empty for the in-memory store",
            );
        }
        c.ensure(
            self.password.is_empty() || self.password_file.is_empty(),
            "redis.password_file",
            "set redis.password or redis.password_file, not both",
        );
        c.ensure(
            self.tls_ca_file.is_empty() || self.url.is_empty() || self.url.starts_with("rediss://"),
            "redis.tls_ca_file",
            "applies to rediss:// URLs only",
        );
    }
}
