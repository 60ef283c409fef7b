//! Tests across services (see the crate docs): a module per service whose tests start others
//! next to it, the feature settings every service reads with, and the rule that no service crate
//! depends on another.

#![allow(clippy::unwrap_used)]

mod feature_settings;
mod layers;
mod manifests;

mod gateway {
    mod predictions;
}

mod inference {
    mod agents;
    mod assist;
    mod profile;
    mod recommend_api;
}

mod notification {
    mod common;
    mod models;
    mod policies;
    mod rules;
    mod webhooks;
}
