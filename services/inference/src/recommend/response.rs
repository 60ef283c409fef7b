//! What recommend answers ([`Recommendations`]) and its wire form, `RecommendResponse`.

use shopmind_domain::ItemId;
use shopmind_proto::v1 as pb;

use super::request::Scenario;

// The answer is built once, in these types, and moved into its wire form: each type has the
// layout of its wire message, so that the vectors are converted in place (no copy, no
// allocation at the edge; tested below).

/// Why an item is recommended: a reason code (docs/RECOMMEND.md) and what it refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub code: String,
    /// The item the reason names (e.g. the one viewed); empty if none.
    pub item: String,
    /// The category the reason names; empty if none.
    pub category: String,
    /// The reason for people, e.g. "similar to i-42".
    pub text: String,
}

impl Reason {
    /// A reason code with what it refers to, rendered.
    pub fn new(code: &str, item: Option<&str>, category: Option<&str>) -> Self {
        let text = match (code, item, category) {
            ("similar_to", Some(i), _) => format!("similar to {i}"),
            ("bought_with", Some(i), _) => format!("bought with {i}"),
            ("trending_in_category", _, Some(c)) => format!("trending in {c}"),
            ("new_in_category", _, Some(c)) => format!("new in {c}"),
            (code, Some(i), _) => format!("{code} {i}"),
            (code, None, Some(c)) => format!("{code} {c}"),
            (code, None, None) => code.to_string(),
        };
        Self {
            code: code.into(),
            item: item.unwrap_or_default().into(),
            category: category.unwrap_or_default().into(),
            text,
        }
    }
}

/// One recommended item.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub item: ItemId,
    pub score: f32,
    /// The main reason code.
    pub reason: String,
    /// Every reason, most important first; only when the request asks for an explanation.
    pub reasons: Vec<Reason>,
    /// The item's leaf category; empty if the catalog has none.
    pub category: String,
}

/// A page of recommendations.
#[derive(Debug, Clone)]
pub struct Recommendations {
    pub items: Vec<Recommendation>,
    /// The version of the model that ranked the page; empty when no model did.
    pub model_version: String,
    /// The token of the next page, if one follows.
    pub next_page_token: Option<String>,
    pub scenario: Scenario,
    /// Whether the user has no history for the scenario (popular and trending items answer).
    pub cold_start: bool,
}

impl From<Reason> for pb::Reason {
    fn from(r: Reason) -> Self {
        Self { code: r.code, item_id: r.item, category: r.category, text: r.text }
    }
}

impl From<Recommendations> for pb::RecommendResponse {
    fn from(r: Recommendations) -> Self {
        Self {
            items: r
                .items
                .into_iter()
                .map(|i| pb::ScoredItem {
                    item_id: i.item.into_string(),
                    score: i.score,
                    reason: i.reason,
                    reasons: i.reasons.into_iter().map(pb::Reason::from).collect(),
                    category: i.category,
                })
                .collect(),
            model_version: r.model_version,
            next_page_token: r.next_page_token.unwrap_or_default(),
            scenario: r.scenario.to_proto() as i32,
            cold_start: r.cold_start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_reuses_the_answer_s_vectors() {
        let reasons = vec![Reason::new("popular", None, None)];
        let reasons_at = reasons.as_ptr() as usize;
        let items = vec![Recommendation {
            item: ItemId::parse("i1").expect("valid"),
            score: 1.0,
            reason: "popular".into(),
            reasons,
            category: String::new(),
        }];
        let items_at = items.as_ptr() as usize;
        let r = Recommendations {
            items,
            model_version: String::new(),
            next_page_token: None,
            scenario: Scenario::ForYou,
            cold_start: true,
        };
        let wire = pb::RecommendResponse::from(r);
        assert_eq!(wire.items.as_ptr() as usize, items_at, "the items are converted in place");
        assert_eq!(wire.items[0].reasons.as_ptr() as usize, reasons_at, "and so are their reasons");
        assert_eq!(wire.scenario, pb::Scenario::ForYou as i32);
    }

    #[test]
    fn a_reason_travels_with_what_it_refers_to() {
        let wire = pb::Reason::from(Reason::new("new_in_category", None, Some("Shoes")));
        assert_eq!(
            wire,
            pb::Reason {
                code: "new_in_category".into(),
                item_id: String::new(),
                category: "Shoes".into(),
                text: "new in Shoes".into()
            }
        );
    }
}
