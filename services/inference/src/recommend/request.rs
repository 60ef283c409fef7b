//! A `RecommendRequest` checked into a [`Query`] (`Query::try_from`): every bad field is reported
//! at once as an INVALID_ARGUMENT field violation; the page token is opaque to clients and bound
//! to the request.

use std::collections::HashSet;

use prost::Message as _;
use shopmind_domain::{ItemId, SessionId, TenantId, UserId};
use shopmind_proto::v1 as pb;

use crate::InferenceError;

/// Largest page of recommendations.
pub const MAX_LIMIT: u32 = 100;
/// Page size when the request says 0.
pub const DEFAULT_LIMIT: u32 = 10;
/// Most anchor items of SIMILAR_ITEMS and BOUGHT_TOGETHER.
pub const MAX_ANCHORS: usize = 20;
/// The last page a token can name (the candidate pool holds at most 10000 items).
const MAX_PAGE: usize = 10_000;
/// Most category filters.
const MAX_CATEGORIES: usize = 50;

/// What a recommendation is for (docs/RECOMMEND.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    ForYou,
    SimilarItems,
    BoughtTogether,
    Trending,
    CartComplement,
}

impl Scenario {
    /// The scenario of a request's `scenario` field (UNSPECIFIED is FOR_YOU).
    fn from_proto(value: i32) -> Option<Self> {
        match pb::Scenario::try_from(value).ok()? {
            pb::Scenario::Unspecified | pb::Scenario::ForYou => Some(Self::ForYou),
            pb::Scenario::SimilarItems => Some(Self::SimilarItems),
            pb::Scenario::BoughtTogether => Some(Self::BoughtTogether),
            pb::Scenario::Trending => Some(Self::Trending),
            pb::Scenario::CartComplement => Some(Self::CartComplement),
        }
    }

    pub fn to_proto(self) -> pb::Scenario {
        match self {
            Self::ForYou => pb::Scenario::ForYou,
            Self::SimilarItems => pb::Scenario::SimilarItems,
            Self::BoughtTogether => pb::Scenario::BoughtTogether,
            Self::Trending => pb::Scenario::Trending,
            Self::CartComplement => pb::Scenario::CartComplement,
        }
    }

    /// The scenario's name in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ForYou => "for_you",
            Self::SimilarItems => "similar_items",
            Self::BoughtTogether => "bought_together",
            Self::Trending => "trending",
            Self::CartComplement => "cart_complement",
        }
    }
}

/// A checked recommend request.
#[derive(Debug, Clone)]
pub struct Query {
    pub tenant: TenantId,
    pub user: Option<UserId>,
    pub session: Option<SessionId>,
    pub scenario: Scenario,
    pub limit: usize,
    /// The request's anchor items, each once, in the request's order.
    pub anchors: Vec<ItemId>,
    /// Where each anchor is in the request's `item_ids`.
    pub anchor_fields: Vec<usize>,
    /// TRENDING's category (and the context of a cold start).
    pub category: Option<String>,
    pub categories: Vec<String>,
    pub min_price: Option<i64>,
    pub max_price: Option<i64>,
    pub in_stock_only: bool,
    pub include_purchased: bool,
    pub exclude_seen: bool,
    pub exclude: HashSet<String>,
    pub max_per_category: usize,
    pub explain: bool,
    /// The page asked for, 0 first.
    pub page: usize,
    /// What a page token of this request carries (the request without its page token, hashed).
    pub fingerprint: u64,
}

impl Query {
    /// The category whose popular items are read: TRENDING's, or the first category filter as the
    /// context of a user without history (else the session's, see `recommend`).
    pub fn context_category(&self) -> Option<&str> {
        self.category.as_deref().or(self.categories.first().map(String::as_str))
    }

    /// Whether nothing but exclusions can drop a candidate: no catalog filter, no diversity cap.
    pub fn is_unfiltered(&self) -> bool {
        self.categories.is_empty()
            && self.min_price.is_none()
            && self.max_price.is_none()
            && !self.in_stock_only
            && self.max_per_category == 0
    }

    /// The field of the `k`-th anchor, e.g. `item_ids[2]`.
    pub fn anchor_field(&self, k: usize) -> String {
        format!("item_ids[{}]", self.anchor_fields.get(k).copied().unwrap_or_default())
    }
}

/// FNV-1a over the request's encoding with the page token cleared: the same request (prost
/// encodes deterministically) has the same fingerprint.
pub fn fingerprint(req: &pb::RecommendRequest) -> u64 {
    let mut plain = req.clone();
    plain.page_token.clear();
    plain
        .encode_to_vec()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// The token of page `page` of the request of `fingerprint`.
pub fn page_token(page: usize, fingerprint: u64) -> String {
    format!("p{page}.{fingerprint:016x}")
}

/// The page a token names, if it is one of this request's.
fn parse_page_token(token: &str, fingerprint: u64) -> Result<usize, String> {
    let bad = || "not a page token of this API".to_string();
    let (page, hash) = token.strip_prefix('p').and_then(|t| t.split_once('.')).ok_or_else(bad)?;
    let page: usize = page.parse().map_err(|_| bad())?;
    let hash = u64::from_str_radix(hash, 16).map_err(|_| bad())?;
    if hash != fingerprint {
        return Err("belongs to a different request: every field but page_token must stay the same".into());
    }
    // Tokens name pages 1.. of at most `inference.candidate_pool` (<= 10000) candidates.
    if page == 0 || page > MAX_PAGE {
        return Err(bad());
    }
    Ok(page)
}

impl TryFrom<&pb::RecommendRequest> for Query {
    type Error = InferenceError;

    fn try_from(req: &pb::RecommendRequest) -> Result<Self, InferenceError> {
        let mut violations: Vec<(String, String)> = Vec::new();
        let mut bad = |field: &str, why: String| violations.push((field.to_string(), why));
        let tenant = TenantId::parse(req.tenant.clone()).map_err(|e| bad("tenant", e.to_string())).ok();
        let scenario = Scenario::from_proto(req.scenario);
        if scenario.is_none() {
            bad("scenario", format!("unknown scenario {}", req.scenario));
        }
        let needs_user = matches!(scenario, Some(Scenario::ForYou | Scenario::CartComplement));
        let user = if req.user_id.is_empty() {
            if needs_user {
                bad("user_id", "required for FOR_YOU and CART_COMPLEMENT".into());
            }
            None
        } else {
            UserId::parse(req.user_id.clone()).map_err(|e| bad("user_id", e.to_string())).ok()
        };
        if req.limit > MAX_LIMIT {
            bad("limit", format!("must be at most {MAX_LIMIT}, got {}", req.limit));
        }
        let needs_anchors = matches!(scenario, Some(Scenario::SimilarItems | Scenario::BoughtTogether));
        if needs_anchors && req.item_ids.is_empty() {
            bad("item_ids", "required for SIMILAR_ITEMS and BOUGHT_TOGETHER (1 to 20 items)".into());
        }
        if req.item_ids.len() > MAX_ANCHORS {
            bad("item_ids", format!("at most {MAX_ANCHORS} items, got {}", req.item_ids.len()));
        }
        let mut anchors = Vec::new();
        let mut anchor_fields = Vec::new();
        for (i, id) in req.item_ids.iter().enumerate() {
            match ItemId::parse(id.clone()) {
                Ok(item) if !anchors.contains(&item) => {
                    anchors.push(item);
                    anchor_fields.push(i);
                }
                Ok(_) => {}
                Err(e) => bad(&format!("item_ids[{i}]"), e.to_string()),
            }
        }
        for (i, id) in req.exclude_item_ids.iter().enumerate() {
            if let Err(e) = ItemId::parse(id.clone()) {
                bad(&format!("exclude_item_ids[{i}]"), e.to_string());
            }
        }
        if req.categories.len() > MAX_CATEGORIES {
            bad("categories", format!("at most {MAX_CATEGORIES}, got {}", req.categories.len()));
        }
        for (i, c) in req.categories.iter().enumerate() {
            if c.trim().is_empty() {
                bad(&format!("categories[{i}]"), "empty".into());
            }
        }
        for (field, price) in
            [("min_price_minor", req.min_price_minor), ("max_price_minor", req.max_price_minor)]
        {
            if price.is_some_and(|p| p < 0) {
                bad(field, "must not be negative".into());
            }
        }
        if let (Some(min), Some(max)) = (req.min_price_minor, req.max_price_minor)
            && min > max
        {
            bad("max_price_minor", format!("{max} is below min_price_minor {min}"));
        }
        let session = if req.session_id.is_empty() {
            None
        } else {
            SessionId::parse(req.session_id.clone()).map_err(|e| bad("session_id", e.to_string())).ok()
        };
        let fingerprint = fingerprint(req);
        let page = if req.page_token.is_empty() {
            0
        } else {
            match parse_page_token(&req.page_token, fingerprint) {
                Ok(page) => page,
                Err(why) => {
                    bad("page_token", why);
                    0
                }
            }
        };
        match (tenant, scenario) {
            (Some(tenant), Some(scenario)) if violations.is_empty() => Ok(Query {
                tenant,
                user,
                session,
                scenario,
                limit: if req.limit == 0 { DEFAULT_LIMIT } else { req.limit } as usize,
                anchors,
                anchor_fields,
                category: Some(req.category.trim().to_string()).filter(|c| !c.is_empty()),
                categories: req.categories.iter().map(|c| c.trim().to_string()).collect(),
                min_price: req.min_price_minor,
                max_price: req.max_price_minor,
                in_stock_only: req.in_stock_only,
                include_purchased: req.include_purchased,
                exclude_seen: req.exclude_seen,
                exclude: req.exclude_item_ids.iter().cloned().collect(),
                max_per_category: req.max_per_category as usize,
                explain: req.explain,
                page,
                fingerprint,
            }),
            _ => Err(InferenceError::InvalidArgument(violations)),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn request(user: &str, scenario: pb::Scenario) -> pb::RecommendRequest {
        pb::RecommendRequest {
            tenant: "acme".into(),
            user_id: user.into(),
            scenario: scenario as i32,
            ..Default::default()
        }
    }

    fn validate(req: &pb::RecommendRequest) -> Result<Query, InferenceError> {
        Query::try_from(req)
    }

    fn fields(req: &pb::RecommendRequest) -> Vec<String> {
        let e = shopmind_runtime::rpc::WireError::into_wire(validate(req).unwrap_err());
        assert_eq!(e.code, pb::ServiceErrorCode::InvalidArgument as i32, "{e:?}");
        e.violations.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn defaults_and_scenarios() {
        let q = validate(&request("u1", pb::Scenario::Unspecified)).unwrap();
        assert_eq!((q.scenario, q.limit, q.page), (Scenario::ForYou, DEFAULT_LIMIT as usize, 0));
        let q = validate(&request("", pb::Scenario::Trending)).unwrap();
        assert!(q.user.is_none());
        assert_eq!(fields(&request("", pb::Scenario::ForYou)), ["user_id"]);
        assert_eq!(fields(&request("", pb::Scenario::CartComplement)), ["user_id"]);
        assert_eq!(fields(&request("", pb::Scenario::SimilarItems)), ["item_ids"]);
        let mut unknown = request("u1", pb::Scenario::ForYou);
        unknown.scenario = 99;
        assert_eq!(fields(&unknown), ["scenario"]);
    }

    #[test]
    fn every_bad_field_is_named() {
        let mut r = request("u 1", pb::Scenario::SimilarItems);
        r.tenant = "Acme!".into();
        r.limit = 101;
        r.item_ids = vec!["ok".into(), "bad id".into()];
        r.exclude_item_ids = vec!["".into()];
        r.categories = vec![" ".into()];
        r.min_price_minor = Some(500);
        r.max_price_minor = Some(100);
        r.session_id = "s 1".into();
        r.page_token = "garbage".into();
        assert_eq!(
            fields(&r),
            [
                "tenant",
                "user_id",
                "limit",
                "item_ids[1]",
                "exclude_item_ids[0]",
                "categories[0]",
                "max_price_minor",
                "session_id",
                "page_token"
            ]
        );
        let mut many = request("u1", pb::Scenario::BoughtTogether);
        many.item_ids = (0..21).map(|i| format!("i{i}")).collect();
        assert_eq!(fields(&many), ["item_ids"]);
    }

    #[test]
    fn a_page_token_is_bound_to_its_request() {
        let r = request("u1", pb::Scenario::ForYou);
        let q = validate(&r).unwrap();
        let mut next = r.clone();
        next.page_token = page_token(2, q.fingerprint);
        assert_eq!(validate(&next).unwrap().page, 2);
        next.limit = 5;
        assert_eq!(fields(&next), ["page_token"]);
        let mut zero = r.clone();
        zero.page_token = page_token(0, q.fingerprint);
        assert_eq!(fields(&zero), ["page_token"]);
        let mut huge = r.clone();
        huge.page_token = format!("p{}.{:016x}", usize::MAX, q.fingerprint);
        assert_eq!(fields(&huge), ["page_token"]);
    }
}
