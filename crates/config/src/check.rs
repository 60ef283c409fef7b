//! The helper every section validates itself with: each check that fails records a
//! [`ConfigError::Invalid`] naming the key and the problem, in the order the checks ran.
//!
//! Keys are absolute (`inference.ann_ef_search`) except inside [`Checks::scoped`], where they are
//! relative to the scope (the tables repeated per tenant: `notification.tenants.<t>`, ...).

use std::fmt::Display;
use std::ops::RangeInclusive;

use shopmind_domain::TenantId;

use crate::ConfigError;

/// The problems found so far.
#[derive(Debug, Default)]
pub(crate) struct Checks {
    /// The key prefix of [`Checks::scoped`]; empty at the top.
    scope: String,
    problems: Vec<ConfigError>,
}

impl Checks {
    /// The first problem found, if any.
    pub(crate) fn into_result(self) -> Result<(), ConfigError> {
        self.problems.into_iter().next().map_or(Ok(()), Err)
    }

    /// Runs `checks` with keys relative to `prefix`.
    pub(crate) fn scoped(&mut self, prefix: &str, checks: impl FnOnce(&mut Self)) {
        let inner = self.key(prefix);
        let outer = std::mem::replace(&mut self.scope, inner);
        checks(self);
        self.scope = outer;
    }

    /// Records that `key` is invalid for `reason`.
    pub(crate) fn fail(&mut self, key: &str, reason: impl Into<String>) {
        let key = self.key(key);
        self.problems.push(ConfigError::Invalid { key, reason: reason.into() });
    }

    /// Records a problem found by other means (reading a file the configuration names).
    pub(crate) fn report(&mut self, problem: ConfigError) {
        self.problems.push(problem);
    }

    /// `key` is invalid for `reason` unless `ok`.
    pub(crate) fn ensure(&mut self, ok: bool, key: &str, reason: &str) {
        if !ok {
            self.fail(key, reason);
        }
    }

    /// `value` within `range`: "must be 1..=64".
    pub(crate) fn range<T: PartialOrd + Display>(&mut self, key: &str, value: T, range: RangeInclusive<T>) {
        if !range.contains(&value) {
            self.fail(key, format!("must be {}..={}", range.start(), range.end()));
        }
    }

    /// [`Checks::range`] with the reason for the bounds: "must be 0..=100 (`why`)".
    pub(crate) fn range_because<T: PartialOrd + Display>(
        &mut self,
        key: &str,
        value: T,
        range: RangeInclusive<T>,
        why: &str,
    ) {
        if !range.contains(&value) {
            self.fail(key, format!("must be {}..={} ({why})", range.start(), range.end()));
        }
    }

    /// `value` at least `min`: "must be at least 1".
    pub(crate) fn at_least<T: PartialOrd + Display>(&mut self, key: &str, value: T, min: T) {
        if value < min {
            self.fail(key, format!("must be at least {min}"));
        }
    }

    /// [`Checks::at_least`] with the reason for the bound: "must be at least 2 (`why`)".
    pub(crate) fn at_least_because<T: PartialOrd + Display>(
        &mut self,
        key: &str,
        value: T,
        min: T,
        why: &str,
    ) {
        if value < min {
            self.fail(key, format!("must be at least {min} ({why})"));
        }
    }

    /// `value` at most `max`: "must be at most 50".
    pub(crate) fn at_most<T: PartialOrd + Display>(&mut self, key: &str, value: T, max: T) {
        if value > max {
            self.fail(key, format!("must be at most {max}"));
        }
    }

    /// Every one of `values` is one of `known`; else "unknown `what` "x"" for the first that is not.
    pub(crate) fn known(&mut self, key: &str, values: &[String], known: &[&str], what: &str) {
        if let Some(unknown) = values.iter().find(|v| !known.contains(&v.as_str())) {
            self.fail(key, format!("unknown {what} {unknown:?}"));
        }
    }

    /// `value` starts with one of `schemes` (`nats://`, ...); else `reason`.
    pub(crate) fn scheme(&mut self, key: &str, value: &str, schemes: &[&str], reason: &str) {
        self.ensure(schemes.iter().any(|s| value.starts_with(s)), key, reason);
    }

    /// A JetStream `max_deliver`: positive, or -1 for unlimited.
    pub(crate) fn max_deliver(&mut self, key: &str, value: i64) {
        self.ensure(value > 0 || value == -1, key, "must be positive, or -1 for unlimited");
    }

    /// Every key of a `[<section>.tenants]` table is a tenant id; else the tenant's key
    /// (`<section>.tenants.<t>`) is "not a valid tenant id".
    pub(crate) fn tenant_tables<'a>(&mut self, section: &str, tenants: impl IntoIterator<Item = &'a String>) {
        for tenant in tenants {
            if !is_tenant_id(tenant) {
                self.fail(&format!("{section}.tenants.{tenant}"), "not a valid tenant id");
            }
        }
    }

    fn key(&self, key: &str) -> String {
        if self.scope.is_empty() { key.to_string() } else { format!("{}.{key}", self.scope) }
    }
}

/// Whether `s` is a valid tenant id (the syntax webhook names share).
pub(crate) fn is_tenant_id(s: &str) -> bool {
    TenantId::parse(s.to_string()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(checks: impl FnOnce(&mut Checks)) -> Vec<(String, String)> {
        let mut c = Checks::default();
        checks(&mut c);
        c.problems
            .into_iter()
            .map(|p| match p {
                ConfigError::Invalid { key, reason } => (key, reason),
                other => (String::new(), other.to_string()),
            })
            .collect()
    }

    fn one(key: &str, reason: &str) -> Vec<(String, String)> {
        vec![(key.to_string(), reason.to_string())]
    }

    #[test]
    fn ranges_name_their_bounds() {
        assert_eq!(problems(|c| c.range("a.b", 0usize, 1..=64)), one("a.b", "must be 1..=64"));
        assert_eq!(problems(|c| c.range("a.b", 64usize, 1..=64)), []);
        assert_eq!(
            problems(|c| c.range_because("a.b", 10_001u64, 100..=10_000, "at least one full page")),
            one("a.b", "must be 100..=10000 (at least one full page)")
        );
        assert_eq!(problems(|c| c.at_least("a.b", 1u32, 2)), one("a.b", "must be at least 2"));
        assert_eq!(problems(|c| c.at_least("a.b", 2u32, 2)), []);
        assert_eq!(problems(|c| c.at_most("a.b", 51usize, 50)), one("a.b", "must be at most 50"));
        assert_eq!(
            problems(|c| c.at_least_because("a.b", 0u32, 1, "why")),
            one("a.b", "must be at least 1 (why)")
        );
    }

    #[test]
    fn scopes_prefix_keys_and_every_problem_is_kept_in_order() {
        let found = problems(|c| {
            c.max_deliver("x.max_deliver", 0);
            c.max_deliver("x.max_deliver", -1);
            c.scoped("n.tenants.acme", |c| {
                c.known("kinds", &["spam".into()], &["price_drop"], "kind");
                c.scheme("url", "ftp://h", &["http://", "https://"], "must be an http:// or https:// URL");
            });
            c.tenant_tables("n", &["Bad Tenant".to_string(), "acme".to_string()]);
        });
        assert_eq!(
            found,
            [
                ("x.max_deliver", "must be positive, or -1 for unlimited"),
                ("n.tenants.acme.kinds", "unknown kind \"spam\""),
                ("n.tenants.acme.url", "must be an http:// or https:// URL"),
                ("n.tenants.Bad Tenant", "not a valid tenant id"),
            ]
            .map(|(k, r)| (k.to_string(), r.to_string()))
        );
    }
}
