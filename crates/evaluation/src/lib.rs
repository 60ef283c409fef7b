//! Offline evaluation of shopmind's models: how good a trained model is, measured on held-out
//! data next to simple baselines. Nothing here runs online.
//!
//! - [`metrics`]: the measures themselves: ROC-AUC, the ROC curve and log-loss (purchase intent);
//!   MASE, interval coverage and the seasonal-naive forecast (demand); top-k, Recall@k and NDCG@k
//!   (recommenders).
//! - [`recommender_protocol`]: the offline protocol of the recommenders on a per-user temporal
//!   split, with its baselines (popularity, item-kNN, ALS, co-visitation) and the tuning of every
//!   family on a validation split.
//! - [`demand_backtest`]: the demand forecaster backtested from given origins.

pub mod demand_backtest;
pub mod metrics;
pub mod recommender_protocol;
