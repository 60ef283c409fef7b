//! API keys: who is calling, and which tenant they may name.
//!
//! Authentication happens in one place, the [`Authenticate`] interceptor in front of every
//! service of the gateway: it reads `authorization: Bearer <key>`, finds the key in the
//! [`Keyring`] and puts the [`Caller`] into the request's extensions (UNAUTHENTICATED without a
//! known key). Authorization is [`authorize`]: the tenant a request names must be the key's
//! (PERMISSION_DENIED otherwise). The `Admin` service is wrapped with [`Authenticate::admin`],
//! which admits admin keys only.
//!
//! Keys are kept as SHA-256 digests, compared in constant time against every entry, and never
//! logged (neither the key nor its digest). With no keys configured the gateway is open: every
//! caller may name any tenant ([`Caller::Open`]).

use std::sync::Arc;

use shopmind_config::GatewayConfig;
use shopmind_domain::TenantId;
use shopmind_metrics::global as metrics;
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::GatewayError;

type Digest = [u8; 32];

/// Why the keys could not be loaded (names the setting, never a key).
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct KeyError {
    key: &'static str,
    reason: String,
}

/// The caller of a request, as authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No keys are configured: anyone may name any tenant.
    Open,
    /// A tenant's API key.
    Tenant(TenantId),
    /// An admin key: the `Admin` service only.
    Admin,
}

/// The configured API keys, hashed.
#[derive(Default)]
pub struct Keyring {
    tenants: Vec<(Digest, TenantId)>,
    admins: Vec<Digest>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("tenant_keys", &self.tenants.len())
            .field("admin_keys", &self.admins.len())
            .finish()
    }
}

fn digest(key: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, key).as_ref());
    out
}

/// Whether two digests are equal, in time independent of where they differ.
fn same(a: &Digest, b: &Digest) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The meaningful lines of a keys file: without comments (`#`) and blank lines, numbered from 1.
fn lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split('#').next().unwrap_or("").trim()))
        .filter(|(_, l)| !l.is_empty())
}

fn read(file_key: &'static str, path: &str) -> Result<String, KeyError> {
    std::fs::read_to_string(path)
        .map_err(|e| KeyError { key: file_key, reason: format!("reading {path}: {e}") })
}

impl Keyring {
    /// The keys of `gateway.api_keys`, `gateway.api_keys_file`, `gateway.admin_keys` and
    /// `gateway.admin_keys_file`.
    pub fn from_config(config: &GatewayConfig) -> Result<Self, KeyError> {
        let mut ring = Self::default();
        for (key, tenant) in &config.api_keys {
            let tenant = TenantId::parse(tenant.clone())
                .map_err(|e| KeyError { key: "gateway.api_keys", reason: e.to_string() })?;
            ring.tenants.push((digest(key.as_bytes()), tenant));
        }
        if !config.api_keys_file.is_empty() {
            let text = read("gateway.api_keys_file", &config.api_keys_file)?;
            for (n, line) in lines(&text) {
                let bad = |reason: &str| KeyError {
                    key: "gateway.api_keys_file",
                    reason: format!("{} line {n}: {reason}", config.api_keys_file),
                };
                let (key, tenant) = line.split_once('=').ok_or_else(|| bad("expected `key = tenant`"))?;
                let key = key.trim();
                if key.len() < 16 {
                    return Err(bad("keys must be at least 16 characters"));
                }
                let tenant = TenantId::parse(tenant.trim().to_string()).map_err(|e| bad(&e.to_string()))?;
                ring.tenants.push((digest(key.as_bytes()), tenant));
            }
        }
        ring.admins.extend(config.admin_keys.iter().map(|k| digest(k.as_bytes())));
        if !config.admin_keys_file.is_empty() {
            let text = read("gateway.admin_keys_file", &config.admin_keys_file)?;
            for (n, key) in lines(&text) {
                if key.len() < 16 {
                    return Err(KeyError {
                        key: "gateway.admin_keys_file",
                        reason: format!(
                            "{} line {n}: keys must be at least 16 characters",
                            config.admin_keys_file
                        ),
                    });
                }
                ring.admins.push(digest(key.as_bytes()));
            }
        }
        Ok(ring)
    }

    /// Whether no key is configured (every caller is [`Caller::Open`]).
    pub fn is_open(&self) -> bool {
        self.tenants.is_empty() && self.admins.is_empty()
    }

    /// The caller a key belongs to. Every entry is compared, so the time taken does not tell
    /// which (or whether one) matched.
    fn find(&self, key: &str) -> Option<Caller> {
        let d = digest(key.as_bytes());
        let mut found = None;
        for (entry, tenant) in &self.tenants {
            if same(entry, &d) && found.is_none() {
                found = Some(Caller::Tenant(tenant.clone()));
            }
        }
        let mut admin = false;
        for entry in &self.admins {
            admin |= same(entry, &d);
        }
        found.or(admin.then_some(Caller::Admin))
    }

    /// The caller of a request with these headers: [`Caller::Open`] when no keys are
    /// configured; otherwise the owner of its bearer key, or UNAUTHENTICATED.
    pub fn authenticate(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, GatewayError> {
        if self.is_open() {
            return Ok(Caller::Open);
        }
        let refuse = |why: &'static str| {
            metrics().gateway_refused("unauthenticated");
            GatewayError::Unauthenticated(why)
        };
        let value = metadata
            .get("authorization")
            .ok_or_else(|| refuse("an API key is required: `authorization: Bearer <key>`"))?;
        let key = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| refuse("the authorization header must be `Bearer <key>`"))?;
        self.find(key).ok_or_else(|| refuse("unknown API key"))
    }
}

/// Whether `caller` may make a request for `tenant`: open gateways and the tenant's own keys may.
pub fn authorize(caller: &Caller, tenant: &TenantId) -> Result<(), GatewayError> {
    match caller {
        Caller::Open => Ok(()),
        Caller::Tenant(own) if own == tenant => Ok(()),
        Caller::Tenant(_) => {
            metrics().gateway_refused("permission_denied");
            Err(GatewayError::PermissionDenied(format!("this API key may not act for tenant {tenant}")))
        }
        Caller::Admin => {
            metrics().gateway_refused("permission_denied");
            Err(GatewayError::PermissionDenied("an admin key may only call the Admin service".into()))
        }
    }
}

/// The caller the interceptor found for a request (`None` for a request that did not pass it,
/// which [`authorize`] callers treat as unauthenticated).
pub fn caller<T>(request: &Request<T>) -> Result<Caller, GatewayError> {
    request.extensions().get::<Caller>().cloned().ok_or(GatewayError::Unauthenticated("not authenticated"))
}

/// The interceptor in front of a service: authenticates every call and leaves its [`Caller`]
/// in the request's extensions.
#[derive(Debug, Clone)]
pub struct Authenticate {
    keys: Arc<Keyring>,
    admin_only: bool,
}

impl Authenticate {
    /// For the `Gateway` service: any known key (or anyone, when open); tenants are checked per
    /// request with [`authorize`].
    pub fn tenants(keys: Arc<Keyring>) -> Self {
        Self { keys, admin_only: false }
    }

    /// For the `Admin` service: admin keys only (PERMISSION_DENIED for a tenant's key;
    /// anyone when no keys at all are configured). Wrap it with
    /// `AdminServer::with_interceptor(service, Authenticate::admin(keys))`.
    pub fn admin(keys: Arc<Keyring>) -> Self {
        Self { keys, admin_only: true }
    }
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.keys.authenticate(request.metadata())?;
        if self.admin_only && matches!(caller, Caller::Tenant(_)) {
            metrics().gateway_refused("permission_denied");
            return Err(GatewayError::PermissionDenied("the Admin service needs an admin key".into()).into());
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tonic::metadata::MetadataMap;

    use super::*;

    const KEY: &str = "acme-key-0123456789";

    fn ring() -> Keyring {
        let mut config = GatewayConfig::default();
        config.api_keys.insert(KEY.into(), "acme".into());
        config.admin_keys.push("admin-key-0123456789".into());
        Keyring::from_config(&config).unwrap()
    }

    fn bearer(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn keys_map_to_their_callers() {
        let ring = ring();
        let acme = TenantId::parse("acme").unwrap();
        assert_eq!(ring.authenticate(&bearer(&format!("Bearer {KEY}"))).unwrap(), Caller::Tenant(acme));
        assert_eq!(ring.authenticate(&bearer("Bearer admin-key-0123456789")).unwrap(), Caller::Admin);
        for bad in [bearer("Bearer nope-0123456789abcdef"), bearer(KEY), MetadataMap::new()] {
            assert!(matches!(ring.authenticate(&bad), Err(GatewayError::Unauthenticated(_))));
        }
        assert_eq!(Keyring::default().authenticate(&MetadataMap::new()).unwrap(), Caller::Open);
    }

    #[test]
    fn a_key_acts_only_for_its_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        let other = TenantId::parse("other").unwrap();
        assert!(authorize(&Caller::Tenant(acme.clone()), &acme).is_ok());
        assert!(matches!(authorize(&Caller::Tenant(acme), &other), Err(GatewayError::PermissionDenied(_))));
        assert!(matches!(authorize(&Caller::Admin, &other), Err(GatewayError::PermissionDenied(_))));
        assert!(authorize(&Caller::Open, &other).is_ok());
    }

    #[test]
    fn the_admin_interceptor_admits_admin_keys_only() {
        let keys = Arc::new(ring());
        let call = |value: Option<&str>| {
            let mut request = Request::new(());
            if let Some(v) = value {
                request.metadata_mut().insert("authorization", v.parse().unwrap());
            }
            Authenticate::admin(keys.clone()).call(request)
        };
        let admitted = call(Some("Bearer admin-key-0123456789")).unwrap();
        assert_eq!(admitted.extensions().get::<Caller>(), Some(&Caller::Admin));
        assert_eq!(call(Some(&format!("Bearer {KEY}"))).unwrap_err().code(), tonic::Code::PermissionDenied);
        assert_eq!(call(None).unwrap_err().code(), tonic::Code::Unauthenticated);
        // An open gateway (no keys at all) is open for Admin too.
        let open = Authenticate::admin(Arc::new(Keyring::default())).call(Request::new(())).unwrap();
        assert_eq!(open.extensions().get::<Caller>(), Some(&Caller::Open));
        // The tenant interceptor admits tenant keys and leaves the tenant check to `authorize`.
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {KEY}").parse().unwrap());
        let admitted = Authenticate::tenants(keys.clone()).call(request).unwrap();
        assert!(matches!(caller(&admitted), Ok(Caller::Tenant(_))));
        assert!(matches!(caller(&Request::new(())), Err(GatewayError::Unauthenticated(_))));
    }

    #[test]
    fn keys_files_are_read_and_their_errors_name_the_setting_not_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# tenants\nfile-key-0123456789 = globex  # comment\n\n").unwrap();
        let mut config = GatewayConfig { api_keys_file: path.to_str().unwrap().into(), ..Default::default() };
        let ring = Keyring::from_config(&config).unwrap();
        let globex = TenantId::parse("globex").unwrap();
        assert_eq!(ring.authenticate(&bearer("Bearer file-key-0123456789")).unwrap(), Caller::Tenant(globex));

        std::fs::write(&path, "secret-key-0123456789 = Not A Tenant\n").unwrap();
        let err = Keyring::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("gateway.api_keys_file") && err.contains("line 1"), "{err}");
        assert!(!err.contains("secret-key"), "{err}");
        config.api_keys_file = "/nonexistent/keys".into();
        let err = Keyring::from_config(&config).unwrap_err().to_string();
        assert!(err.contains("gateway.api_keys_file"), "{err}");
        assert!(!format!("{ring:?}").contains("file-key"));
    }
}
