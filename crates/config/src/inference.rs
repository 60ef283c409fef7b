//! `[inference]`: ONNX Runtime sessions, batching, retrieval and ranking of recommendations,
//! the agent report, and customer profiles (`[inference.profile]`).

use serde::{Deserialize, Serialize};

use crate::check::Checks;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Path of libonnxruntime.so; empty: `ORT_DYLIB_PATH`, else `.cache/onnxruntime/` (scripts/setup.sh).
    pub onnxruntime_library: String,
    /// ONNX Runtime sessions per model (requests run in parallel up to this many).
    pub sessions: usize,
    /// Threads inside one session run.
    pub intra_threads: usize,
    pub device: Device,
    pub cuda_device_id: i32,
    /// Recent interactions of a user that the model sees.
    pub history_len: usize,
    /// Most rows (one per scored user) that one model run batches together.
    pub max_batch: usize,
    /// Longest a request waits for others to join its batch, in microseconds; 0: never wait (a
    /// batch takes what is queued, and what arrives while every session is busy).
    pub max_queue_delay_us: u64,
    /// Most requests waiting for one model; beyond it requests are refused at once (UNAVAILABLE).
    pub queue_capacity: usize,
    /// Agent report: a support conversation is resolved by an agent message after which nobody
    /// writes for this many seconds; a customer message after that reopens it.
    pub resolution_idle_s: u64,
    /// Agent report: the longest period one request may ask for, in days.
    pub agent_report_max_days: u32,
    /// Agent report: the most conversations one report reads (beyond: INVALID_ARGUMENT, asking
    /// for a shorter period).
    pub agent_report_max_conversations: usize,
    /// Recommend: an embedding model of at least this many items gets an approximate-nearest-
    /// neighbour (HNSW) index over its item embeddings, built when the version loads; below it,
    /// every item is a candidate (brute force).
    pub ann_min_items: usize,
    /// Candidates the ANN index returns for one user vector (and up to a tenth as many more: the
    /// items of the largest norm, when the search missed them; docs/RECOMMEND.md).
    pub ann_candidates: usize,
    /// HNSW build breadth (`ef_construction`): larger is a better graph, built slower.
    pub ann_ef_construction: usize,
    /// HNSW search breadth (`ef_search`, at least `ann_candidates` is used): larger finds more of
    /// the true nearest items, slower.
    pub ann_ef_search: usize,
    /// Most candidates ranked for one request (what all its pages are cut from).
    pub candidate_pool: usize,
    /// The user's most recent items (or cart items) whose co-visitation and co-purchase
    /// neighbours become candidates.
    pub neighbour_seeds: usize,
    /// Neighbours read per seed item, and newest items read per category.
    pub neighbours_per_seed: usize,
    /// Most popular items (of the shop, or of a category) considered for trending.
    pub trending_pool: usize,
    /// Customer profiles (`GetCustomerProfile`): RFM segment thresholds and the churn estimate.
    pub profile: ProfileConfig,
}

/// The rules of a customer profile's RFM segment (docs/PROFILES.md). Churn risk takes the drift
/// ratio and minimum orders of the tenant's `notification` churn-risk rule, so a profile and the
/// rule agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// A customer whose last order is at most this many days old is active.
    pub active_days: u32,
    /// A customer whose last order is more than this many days old is hibernating; between
    /// `active_days` and this, at risk.
    pub lapsed_days: u32,
    /// An active customer with at least this many orders is loyal (or a champion).
    pub frequent_orders: u32,
    /// A loyal customer who spent at least this much (minor units of their main currency) is a
    /// champion.
    pub high_value_minor: i64,
    /// The expected time between orders of a customer without a rhythm (fewer orders than the
    /// churn rule's `min_orders`), in days.
    pub default_order_gap_days: u32,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            active_days: 30,
            lapsed_days: 90,
            frequent_orders: 5,
            high_value_minor: 50_000,
            default_order_gap_days: 30,
        }
    }
}

impl Default for InferenceConfig {
    fn default() -> Self {
        Self {
            onnxruntime_library: String::new(),
            sessions: 2,
            intra_threads: 1,
            device: Device::Cpu,
            cuda_device_id: 0,
            history_len: 20,
            max_batch: 32,
            max_queue_delay_us: 0,
            queue_capacity: 1024,
            resolution_idle_s: 86_400,
            agent_report_max_days: 366,
            agent_report_max_conversations: 20_000,
            ann_min_items: 5000,
            ann_candidates: 100,
            ann_ef_construction: 100,
            ann_ef_search: 100,
            candidate_pool: 500,
            neighbour_seeds: 5,
            neighbours_per_seed: 20,
            trending_pool: 200,
            profile: ProfileConfig::default(),
        }
    }
}

impl InferenceConfig {
    pub(crate) fn validate(&self, c: &mut Checks) {
        c.range("inference.sessions", self.sessions, 1..=64);
        c.range("inference.intra_threads", self.intra_threads, 1..=64);
        c.range("inference.history_len", self.history_len, 1..=200);
        c.range("inference.max_batch", self.max_batch, 1..=4096);
        c.range_because(
            "inference.max_queue_delay_us",
            self.max_queue_delay_us,
            0..=1_000_000,
            "at most one second",
        );
        c.range("inference.queue_capacity", self.queue_capacity, 1..=1_000_000);
        c.at_least("inference.resolution_idle_s", self.resolution_idle_s, 1);
        c.range("inference.agent_report_max_days", self.agent_report_max_days, 1..=3660);
        c.range(
            "inference.agent_report_max_conversations",
            self.agent_report_max_conversations,
            1..=1_000_000,
        );
        c.at_least("inference.ann_min_items", self.ann_min_items, 2);
        c.range("inference.ann_candidates", self.ann_candidates, 1..=10_000);
        c.range("inference.ann_ef_construction", self.ann_ef_construction, 1..=10_000);
        c.range("inference.ann_ef_search", self.ann_ef_search, 1..=10_000);
        c.range_because(
            "inference.candidate_pool",
            self.candidate_pool,
            100..=10_000,
            "at least one full page",
        );
        c.range("inference.neighbour_seeds", self.neighbour_seeds, 0..=100);
        c.range("inference.neighbours_per_seed", self.neighbours_per_seed, 1..=1000);
        c.range("inference.trending_pool", self.trending_pool, 1..=10_000);
        self.profile.validate(c);
    }
}

impl ProfileConfig {
    fn validate(&self, c: &mut Checks) {
        c.at_least("inference.profile.active_days", self.active_days, 1);
        c.ensure(
            self.lapsed_days > self.active_days,
            "inference.profile.lapsed_days",
            "must be more than inference.profile.active_days",
        );
        c.at_least("inference.profile.frequent_orders", self.frequent_orders, 2);
        c.ensure(self.high_value_minor >= 0, "inference.profile.high_value_minor", "must not be negative");
        c.at_least("inference.profile.default_order_gap_days", self.default_order_gap_days, 1);
    }
}
