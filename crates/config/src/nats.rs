//! `[nats]`: the NATS server, its credentials and TLS.

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct NatsConfig {
    /// `nats://host:port`. Empty: the in-process bus (only `all-in-one` can use it).
    pub url: String,
    /// User name of user/password authentication (with `password` or `password_file`).
    pub user: String,
    /// Password of `user`; prefer `password_file` (a mounted secret).
    pub password: String,
    /// A file holding the password of `user` (trailing whitespace ignored).
    pub password_file: String,
    /// Token authentication; prefer `token_file`.
    pub token: String,
    /// A file holding the token (trailing whitespace ignored).
    pub token_file: String,
    /// Require TLS even for `nats://` URLs (`tls://` URLs always use it).
    pub tls_required: bool,
    /// PEM file of the certificate authorities the server's certificate is checked against
    /// (added to the platform's roots).
    pub tls_ca_file: String,
    /// PEM client certificate and key, for servers that verify clients (mutual TLS).
    pub tls_cert_file: String,
    pub tls_key_file: String,
}

impl NatsConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        if !self.url.is_empty() {
            c.scheme(
                "nats.url",
                &self.url,
                &["nats://", "tls://"],
                "must start with nats:// or tls://, or be empty for the in-process bus",
            );
        }
        c.ensure(
            self.password.is_empty() || self.password_file.is_empty(),
            "nats.password_file",
            "set nats.password or nats.password_file, not both",
        );
        c.ensure(
            self.token.is_empty() || self.token_file.is_empty(),
            "nats.token_file",
            "set nats.token or nats.token_file, not both",
        );
        let has_password = !self.password.is_empty() || !self.password_file.is_empty();
        c.ensure(
            self.user.is_empty() != has_password,
            "nats.user",
            "user and password (or password_file) go together",
        );
        c.ensure(
            self.user.is_empty() || (self.token.is_empty() && self.token_file.is_empty()),
            "nats.token",
            "choose user/password or a token, not both",
        );
        c.ensure(
            self.tls_cert_file.is_empty() == self.tls_key_file.is_empty(),
            "nats.tls_cert_file",
            "tls_cert_file and tls_key_file go together",
        );
    }
}
