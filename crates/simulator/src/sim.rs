//! The simulation: a discrete-event loop over an agenda ordered by time.
//!
//! Every state change (a session step, an order status, a support message, a restock, the start
//! of a day) is an agenda entry at a time. Entries are handled in (time, insertion) order and
//! each emits its events at its own time, so the stream is in time order without sorting, and
//! stock is always decided on the state at that moment. Handling an entry only schedules
//! entries at the same time or later. The agenda holds one day's session starts plus what is in
//! flight (open sessions, order flows, conversations, restocks), so memory does not grow with
//! the length of the simulation.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;

use crate::catalog::{Catalog, SimItem, user_id};
use crate::config::{DAY_MS, SimConfig, SimError};
use crate::rng::Rand;
use crate::text::{self, Topic};

const SECOND: i64 = 1_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Relative session starts per hour of the day (UTC): quiet nights, busy evenings.
const HOURLY: [f64; 24] = [
    0.3, 0.2, 0.15, 0.1, 0.1, 0.15, 0.3, 0.6, 0.9, 1.0, 1.0, 1.1, 1.2, 1.1, 1.0, 1.0, 1.1, 1.2, 1.4, 1.6,
    1.7, 1.5, 1.0, 0.6,
];

/// Where a view not driven by a search came from, and how often.
const VIEW_SOURCES: [(&str, f64); 4] =
    [("browse", 0.4), ("category", 0.25), ("recommendation", 0.25), ("home", 0.1)];

/// Counters of what the simulation has produced so far (only events already returned by the
/// iterator, except `sessions`, counted when a session starts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    pub events: u64,
    pub catalog_items: u64,
    pub sessions: u64,
    pub searches: u64,
    pub views: u64,
    /// `AddedToCart` events.
    pub carts: u64,
    pub cart_removals: u64,
    pub orders: u64,
    /// Sessions that ended with a non-empty cart and no order.
    pub abandoned_carts: u64,
    /// Times an item's stock fell to zero through an order.
    pub stockouts: u64,
    pub restocks: u64,
    pub status_changes: u64,
    pub cancellations: u64,
    pub returns: u64,
    pub refunds: u64,
    pub support_conversations: u64,
    pub support_messages: u64,
}

/// What a session does next.
#[derive(Debug, Clone, Copy)]
enum Step {
    Search,
    View,
    Cart(u32),
    Remove,
    Checkout,
}

struct Session {
    user: u32,
    id: String,
    next: Step,
    started: bool,
    views_left: u32,
    /// Items returned by the session's search, best first.
    results: Vec<u32>,
    /// (item, quantity).
    cart: Vec<(u32, u32)>,
}

enum Entry {
    Day(u32),
    Session(Box<Session>),
    Status { user: u32, order: String, status: pb::OrderStatus, restore: Vec<(u32, u32)> },
    Message { user: u32, conversation: String, agent: Option<u32>, text: String, first: bool },
    Restock { item: u32 },
}

struct Scheduled {
    at: i64,
    seq: u64,
    entry: Entry,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that the max-heap pops the earliest entry first (ties: first scheduled).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A seeded synthetic store; iterate it for its events in non-decreasing `occurred_at` order.
///
/// The catalog (`ItemUpserted`, then `InventoryChanged` with the initial stock, at `start_ms`)
/// comes first, then day by day the customers' sessions, orders and their status changes,
/// support conversations, stockouts and restocks. Iteration ends at the end of the last day;
/// what would happen later (a delivery still under way) is not emitted.
pub struct Simulator {
    cfg: SimConfig,
    rng: Rand,
    catalog: Catalog,
    /// `users * categories` taste weights, one row per user.
    tastes: Vec<f32>,
    /// Per user: mean-one activity multiplier and price sensitivity exponent.
    activity: Vec<f32>,
    price_sensitivity: Vec<f32>,
    user_ids: Vec<String>,
    /// Per category: weekly log growth rate of its demand share.
    category_drift: Vec<f64>,
    /// Per category: today's demand multiplier.
    drift_today: Vec<f64>,
    stock: Vec<i64>,
    restock_pending: Vec<bool>,
    agenda: BinaryHeap<Scheduled>,
    out: VecDeque<pb::Event>,
    catalog_cursor: usize,
    now: i64,
    end_ms: i64,
    seq: u64,
    event_seq: u64,
    session_seq: u64,
    order_seq: u64,
    conversation_seq: u64,
    stats: SimStats,
    hourly_cum: Vec<f64>,
    /// Weekly seasonality normaliser: the mean of the day factors over a week.
    week_mean: f64,
}

impl Simulator {
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        cfg.validate()?;
        let mut rng = Rand::new(cfg.seed);
        let catalog = Catalog::build(&cfg, &mut rng);
        let n_cat = cfg.categories;

        let mut tastes = Vec::with_capacity(cfg.users * n_cat);
        let mut activity = Vec::with_capacity(cfg.users);
        let mut price_sensitivity = Vec::with_capacity(cfg.users);
        let mut row = vec![0.0f64; n_cat];
        for _ in 0..cfg.users {
            // Dirichlet(alpha): normalised Gamma(alpha) draws.
            for w in row.iter_mut() {
                *w = rng.gamma(cfg.taste_concentration);
            }
            let sum: f64 = row.iter().sum();
            if sum > 0.0 && sum.is_finite() {
                tastes.extend(row.iter().map(|w| (w / sum) as f32));
            } else {
                let only = rng.below(n_cat);
                tastes.extend((0..n_cat).map(|c| if c == only { 1.0 } else { 0.0 }));
            }
            // Log-normal with mean one: some users shop far more often than others.
            let sigma = 0.6;
            activity.push((sigma * rng.normal() - sigma * sigma / 2.0).exp() as f32);
            price_sensitivity.push((rng.unit() * 1.5) as f32);
        }
        let category_drift = (0..n_cat).map(|_| cfg.category_drift_per_week * rng.normal()).collect();
        let mut acc = 0.0;
        let hourly_cum = HOURLY
            .iter()
            .map(|w| {
                acc += w;
                acc
            })
            .collect();
        let week_mean = 1.0 + cfg.weekend_amplitude * 2.0 / 7.0;
        let stock = catalog.items.iter().map(|i| i64::from(i.initial_stock)).collect();
        let mut sim = Self {
            rng,
            tastes,
            activity,
            price_sensitivity,
            user_ids: (0..cfg.users).map(user_id).collect(),
            category_drift,
            drift_today: vec![1.0; n_cat],
            stock,
            restock_pending: vec![false; catalog.items.len()],
            catalog,
            agenda: BinaryHeap::new(),
            out: VecDeque::new(),
            catalog_cursor: 0,
            now: cfg.start_ms,
            end_ms: cfg.end_ms(),
            seq: 0,
            event_seq: 0,
            session_seq: 0,
            order_seq: 0,
            conversation_seq: 0,
            stats: SimStats::default(),
            hourly_cum,
            week_mean,
            cfg,
        };
        sim.schedule(sim.cfg.start_ms, Entry::Day(0));
        // Items that start sold out are on order from the start.
        for item in 0..sim.stock.len() {
            if sim.stock.get(item).is_some_and(|s| *s == 0) {
                sim.order_restock(item as u32);
            }
        }
        Ok(sim)
    }

    pub fn config(&self) -> &SimConfig {
        &self.cfg
    }

    /// The catalog, indexed like the `sim-i<index>` ids.
    pub fn catalog(&self) -> &[SimItem] {
        &self.catalog.items
    }

    /// Category paths, indexed like [`SimItem::category`] and the taste vectors.
    pub fn categories(&self) -> &[Vec<String>] {
        &self.catalog.paths
    }

    /// User `user`'s latent taste: a distribution over categories (sums to one); empty for an
    /// unknown user.
    pub fn user_taste(&self, user: usize) -> &[f32] {
        let n = self.cfg.categories;
        self.tastes.get(user * n..(user + 1) * n).unwrap_or(&[])
    }

    /// User `user`'s activity multiplier (mean one over users); 0 for an unknown user.
    pub fn user_activity(&self, user: usize) -> f32 {
        self.activity.get(user).copied().unwrap_or(0.0)
    }

    /// The id of user `index` (`sim-u<index>`).
    pub fn user_id(index: usize) -> String {
        user_id(index)
    }

    /// The id of item `index` (`sim-i<index>`).
    pub fn item_id(index: usize) -> String {
        crate::catalog::item_id(index)
    }

    /// What has been produced so far; iterate with `by_ref()` to read it along the way.
    pub fn stats(&self) -> &SimStats {
        &self.stats
    }

    /// Current stock of item `item` in the simulation (as of the last event returned, plus
    /// events already buffered).
    pub fn stock(&self, item: usize) -> Option<i64> {
        self.stock.get(item).copied()
    }

    fn schedule(&mut self, at: i64, entry: Entry) {
        if at >= self.end_ms {
            return;
        }
        self.seq += 1;
        self.agenda.push(Scheduled { at: at.max(self.now), seq: self.seq, entry });
    }

    fn emit(&mut self, user: Option<u32>, session: Option<&str>, payload: pb::event::Payload) {
        self.event_seq += 1;
        self.out.push_back(pb::Event {
            event_id: format!("sim-e{}-{}", self.cfg.seed, self.event_seq),
            tenant: self.cfg.tenant.clone(),
            occurred_at: Some(UnixMillis(self.now).to_proto()),
            user_id: user.and_then(|u| self.user_ids.get(u as usize)).cloned().unwrap_or_default(),
            session_id: session.map(str::to_string).unwrap_or_default(),
            payload: Some(payload),
        });
    }

    fn item(&self, item: u32) -> Option<&SimItem> {
        self.catalog.items.get(item as usize)
    }

    fn money(&self, item: u32) -> Option<pb::Money> {
        self.item(item).map(|i| pb::Money { amount_minor: i.price_minor, currency: i.currency.clone() })
    }

    fn item_id_of(&self, item: u32) -> String {
        self.item(item).map(|i| i.id.clone()).unwrap_or_default()
    }

    /// The catalog events, one per call: all `ItemUpserted`, then all initial stock levels.
    fn emit_catalog(&mut self) -> bool {
        let n = self.catalog.items.len();
        let k = self.catalog_cursor;
        if k >= 2 * n {
            return false;
        }
        self.catalog_cursor += 1;
        let payload = if k < n {
            let Some(it) = self.catalog.items.get(k) else { return true };
            self.stats.catalog_items += 1;
            pb::event::Payload::ItemUpserted(pb::ItemUpserted {
                item_id: it.id.clone(),
                title: it.title.clone(),
                category_path: it.category_path.clone(),
                price: Some(pb::Money { amount_minor: it.price_minor, currency: it.currency.clone() }),
                // One attribute only: the generated type is a HashMap, whose encoding order
                // would vary between runs with more.
                attributes: [("brand".to_string(), it.brand.clone())].into_iter().collect(),
            })
        } else {
            let Some(it) = self.catalog.items.get(k - n) else { return true };
            pb::event::Payload::InventoryChanged(pb::InventoryChanged {
                item_id: it.id.clone(),
                quantity_available: i64::from(it.initial_stock),
            })
        };
        self.emit(None, None, payload);
        true
    }

    fn handle(&mut self, entry: Entry) {
        match entry {
            Entry::Day(d) => self.start_day(d),
            Entry::Session(s) => self.session_step(s),
            Entry::Status { user, order, status, restore } => {
                self.stats.status_changes += 1;
                match status {
                    pb::OrderStatus::Cancelled => self.stats.cancellations += 1,
                    pb::OrderStatus::Returned => self.stats.returns += 1,
                    pb::OrderStatus::Refunded => self.stats.refunds += 1,
                    _ => {}
                }
                self.emit(
                    Some(user),
                    None,
                    pb::event::Payload::OrderStatusChanged(pb::OrderStatusChanged {
                        order_id: order,
                        status: status as i32,
                    }),
                );
                // A cancelled order's units go back on the shelf.
                for (item, qty) in restore {
                    if let Some(s) = self.stock.get_mut(item as usize) {
                        *s += i64::from(qty);
                        let available = *s;
                        let item_id = self.item_id_of(item);
                        self.emit(
                            None,
                            None,
                            pb::event::Payload::InventoryChanged(pb::InventoryChanged {
                                item_id,
                                quantity_available: available,
                            }),
                        );
                    }
                }
            }
            Entry::Message { user, conversation, agent, text, first } => {
                if first {
                    self.stats.support_conversations += 1;
                }
                self.stats.support_messages += 1;
                let (role, author_id) = match agent {
                    Some(a) => (pb::AuthorRole::Agent, format!("sim-agent-{a}")),
                    None => (pb::AuthorRole::Customer, String::new()),
                };
                self.emit(
                    Some(user),
                    None,
                    pb::event::Payload::SupportMessage(pb::SupportMessage {
                        conversation_id: conversation,
                        author_role: role as i32,
                        author_id,
                        text,
                    }),
                );
            }
            Entry::Restock { item } => {
                let mean = f64::from(self.cfg.mean_initial_stock.max(1));
                let qty = self.rng.between((mean * 0.5).round().max(1.0) as i64, (mean * 1.5).round() as i64);
                if let Some(s) = self.stock.get_mut(item as usize) {
                    *s += qty.max(1);
                    let available = *s;
                    if let Some(p) = self.restock_pending.get_mut(item as usize) {
                        *p = false;
                    }
                    self.stats.restocks += 1;
                    let item_id = self.item_id_of(item);
                    self.emit(
                        None,
                        None,
                        pb::event::Payload::InventoryChanged(pb::InventoryChanged {
                            item_id,
                            quantity_available: available,
                        }),
                    );
                }
            }
        }
    }

    /// Demand multiplier of day `d`: weekly seasonality (normalised to a weekly mean of one)
    /// times the compounding trend.
    fn demand(&self, d: u32) -> f64 {
        let day_start = self.cfg.start_ms + i64::from(d) * DAY_MS;
        // 1970-01-01 was a Thursday; 0 = Monday.
        let weekday = (day_start.div_euclid(DAY_MS) + 3).rem_euclid(7);
        let season = if weekday >= 5 { 1.0 + self.cfg.weekend_amplitude } else { 1.0 };
        let trend = (1.0 + self.cfg.trend_per_week).powf(f64::from(d) / 7.0);
        season / self.week_mean * trend
    }

    fn start_day(&mut self, d: u32) {
        let day_start = self.cfg.start_ms + i64::from(d) * DAY_MS;
        if d + 1 < self.cfg.days {
            self.schedule(day_start + DAY_MS, Entry::Day(d + 1));
        }
        let weeks = f64::from(d) / 7.0;
        for (today, rate) in self.drift_today.iter_mut().zip(&self.category_drift) {
            *today = (rate * weeks).exp();
        }
        let base = self.cfg.sessions_per_user_per_week / 7.0 * self.demand(d);
        for u in 0..self.cfg.users {
            let lambda = base * f64::from(self.activity.get(u).copied().unwrap_or(1.0));
            let n = self.rng.poisson(lambda);
            for _ in 0..n {
                let hour = self.rng.cumulative(&self.hourly_cum) as i64;
                let at = day_start + hour * HOUR + self.rng.between(0, HOUR - 1);
                let views = 1 + self.rng.geometric(self.cfg.mean_views_per_session - 1.0, 200);
                self.session_seq += 1;
                let next = if self.rng.chance(self.cfg.search_prob) { Step::Search } else { Step::View };
                let session = Session {
                    user: u as u32,
                    id: format!("sim-s{}", self.session_seq),
                    next,
                    started: false,
                    views_left: views,
                    results: Vec::new(),
                    cart: Vec::new(),
                };
                self.schedule(at, Entry::Session(Box::new(session)));
            }
        }
    }

    /// An item for `user` to look at: a category from their taste (times today's category
    /// demand), or any category when exploring; then an item of it by popularity.
    fn pick_item(&mut self, user: u32) -> u32 {
        let n = self.cfg.categories;
        let c = if self.rng.chance(self.cfg.explore_prob) {
            self.rng.below(n)
        } else {
            let start = user as usize * n;
            let taste = self.tastes.get(start..start + n).unwrap_or(&[]);
            let weights = taste.iter().zip(&self.drift_today).map(|(t, d)| f64::from(*t) * d);
            self.rng.weighted(weights)
        };
        self.catalog.sample_in(c, &mut self.rng).unwrap_or(0)
    }

    fn cart_probability(&self, user: u32, item: u32) -> f64 {
        let Some(it) = self.item(item) else { return 0.0 };
        let median = self.catalog.median_minor.get(it.category).copied().unwrap_or(1.0);
        let sens = f64::from(self.price_sensitivity.get(user as usize).copied().unwrap_or(0.0));
        let factor = (median / (it.price_minor.max(1) as f64)).powf(sens).clamp(0.3, 2.0);
        (self.cfg.cart_prob * factor).min(1.0)
    }

    fn session_step(&mut self, mut s: Box<Session>) {
        if !s.started {
            s.started = true;
            self.stats.sessions += 1;
        }
        match s.next {
            Step::Search => {
                let target = self.pick_item(s.user);
                let (query, results) = self.catalog.search(target, &mut self.rng);
                let result_item_ids = results.iter().map(|&i| self.item_id_of(i)).collect();
                self.stats.searches += 1;
                self.emit(
                    Some(s.user),
                    Some(&s.id),
                    pb::event::Payload::SearchPerformed(pb::SearchPerformed { query, result_item_ids }),
                );
                s.results = results;
                s.next = Step::View;
                let gap = self.rng.between(4 * SECOND, 40 * SECOND);
                self.schedule(self.now + gap, Entry::Session(s));
            }
            Step::View => {
                let from_search = !s.results.is_empty() && self.rng.chance(0.7);
                let (item, source) = if from_search {
                    // Higher results are clicked more.
                    let k = self.rng.weighted((0..s.results.len()).map(|r| 1.0 / (r as f64 + 1.0)));
                    (s.results.get(k).copied().unwrap_or(0), "search")
                } else {
                    let k = self.rng.weighted(VIEW_SOURCES.iter().map(|(_, w)| *w));
                    (self.pick_item(s.user), VIEW_SOURCES.get(k).map_or("browse", |(name, _)| *name))
                };
                s.views_left = s.views_left.saturating_sub(1);
                self.stats.views += 1;
                let item_id = self.item_id_of(item);
                self.emit(
                    Some(s.user),
                    Some(&s.id),
                    pb::event::Payload::ProductViewed(pb::ProductViewed { item_id, source: source.into() }),
                );
                let in_cart = s.cart.iter().any(|(i, _)| *i == item);
                if !in_cart && self.rng.chance(self.cart_probability(s.user, item)) {
                    s.next = Step::Cart(item);
                    let gap = self.rng.between(8 * SECOND, 90 * SECOND);
                    self.schedule(self.now + gap, Entry::Session(s));
                } else {
                    self.advance(s);
                }
            }
            Step::Cart(item) => {
                let available = self.stock.get(item as usize).copied().unwrap_or(0);
                if available > 0 {
                    let wanted: u32 = match self.rng.below(100) {
                        0..85 => 1,
                        85..97 => 2,
                        _ => 3,
                    };
                    let quantity = wanted.min(u32::try_from(available).unwrap_or(u32::MAX));
                    s.cart.push((item, quantity));
                    self.stats.carts += 1;
                    let (item_id, unit_price) = (self.item_id_of(item), self.money(item));
                    self.emit(
                        Some(s.user),
                        Some(&s.id),
                        pb::event::Payload::AddedToCart(pb::AddedToCart { item_id, quantity, unit_price }),
                    );
                    if self.rng.chance(self.cfg.remove_prob) {
                        s.next = Step::Remove;
                        let gap = self.rng.between(20 * SECOND, 5 * MINUTE);
                        self.schedule(self.now + gap, Entry::Session(s));
                        return;
                    }
                }
                // Sold out: the shopper sees it and moves on.
                self.advance(s);
            }
            Step::Remove => {
                let k = self.rng.below(s.cart.len());
                if k < s.cart.len() {
                    let (item, quantity) = s.cart.remove(k);
                    self.stats.cart_removals += 1;
                    let item_id = self.item_id_of(item);
                    self.emit(
                        Some(s.user),
                        Some(&s.id),
                        pb::event::Payload::RemovedFromCart(pb::RemovedFromCart { item_id, quantity }),
                    );
                }
                self.advance(s);
            }
            Step::Checkout => self.checkout(*s),
        }
    }

    /// After a step: another view, the checkout, or the end of the session.
    fn advance(&mut self, mut s: Box<Session>) {
        if s.views_left > 0 {
            s.next = Step::View;
            let gap = 5 * SECOND + self.rng.exponential(45.0 * SECOND as f64) as i64;
            self.schedule(self.now + gap.min(30 * MINUTE), Entry::Session(s));
        } else if !s.cart.is_empty() {
            s.next = Step::Checkout;
            let gap = self.rng.between(30 * SECOND, 6 * MINUTE);
            self.schedule(self.now + gap, Entry::Session(s));
        }
    }

    fn checkout(&mut self, s: Session) {
        if s.cart.is_empty() {
            return;
        }
        if !self.rng.chance(self.cfg.purchase_prob) {
            self.stats.abandoned_carts += 1;
            return;
        }
        // What is still in stock now; other shoppers may have taken the rest.
        let mut lines = Vec::new();
        for &(item, qty) in &s.cart {
            let available = self.stock.get(item as usize).copied().unwrap_or(0);
            let take = i64::from(qty).min(available);
            if take > 0 {
                lines.push((item, take as u32));
            }
        }
        if lines.is_empty() {
            self.stats.abandoned_carts += 1;
            return;
        }
        self.order_seq += 1;
        let order_id = format!("sim-o{}", self.order_seq);
        self.stats.orders += 1;
        let pb_lines = lines
            .iter()
            .map(|&(item, quantity)| pb::OrderLine {
                item_id: self.item_id_of(item),
                quantity,
                unit_price: self.money(item),
            })
            .collect();
        self.emit(
            Some(s.user),
            Some(&s.id),
            pb::event::Payload::OrderPlaced(pb::OrderPlaced { order_id: order_id.clone(), lines: pb_lines }),
        );
        for &(item, qty) in &lines {
            let Some(st) = self.stock.get_mut(item as usize) else { continue };
            *st -= i64::from(qty);
            if *st <= 0 {
                *st = 0;
                self.stats.stockouts += 1;
                let item_id = self.item_id_of(item);
                self.emit(
                    None,
                    None,
                    pb::event::Payload::InventoryChanged(pb::InventoryChanged {
                        item_id,
                        quantity_available: 0,
                    }),
                );
                self.order_restock(item);
            }
        }
        self.plan_order(s.user, order_id, lines);
    }

    /// Orders more of a sold-out item, unless an order is already under way; it arrives after
    /// a lead time of 0.5 to 1.5 times `restock_lead_days` (at least an hour).
    fn order_restock(&mut self, item: u32) {
        let Some(pending) = self.restock_pending.get_mut(item as usize) else { return };
        if *pending {
            return;
        }
        *pending = true;
        let lead = self.cfg.restock_lead_days * (0.5 + self.rng.unit()) * DAY_MS as f64;
        self.schedule(self.now + (lead as i64).max(HOUR), Entry::Restock { item });
    }

    /// Schedules an order's status changes and, sometimes, a support conversation about it.
    fn plan_order(&mut self, user: u32, order: String, lines: Vec<(u32, u32)>) {
        let placed = self.now;
        let paid = placed + self.rng.between(MINUTE, 20 * MINUTE);
        let mut flow: Vec<(i64, pb::OrderStatus)> = Vec::new();
        let mut restore = Vec::new();
        let topic;
        let window;
        if self.rng.chance(self.cfg.cancel_prob) {
            // Cancelled before payment went through, or after it but before shipping.
            let cancel = if self.rng.chance(0.3) {
                placed + self.rng.between(5 * MINUTE, HOUR)
            } else {
                flow.push((paid, pb::OrderStatus::Paid));
                paid + self.rng.between(HOUR, 20 * HOUR)
            };
            flow.push((cancel, pb::OrderStatus::Cancelled));
            restore = lines.clone();
            topic = Topic::Cancel;
            window = (placed, cancel);
        } else {
            let shipped = paid + self.rng.between(6 * HOUR, 48 * HOUR);
            let delivered = shipped + self.rng.between(DAY_MS, 5 * DAY_MS);
            flow.push((paid, pb::OrderStatus::Paid));
            flow.push((shipped, pb::OrderStatus::Shipped));
            flow.push((delivered, pb::OrderStatus::Delivered));
            if self.rng.chance(self.cfg.return_prob) {
                let returned = delivered + self.rng.between(2 * DAY_MS, 14 * DAY_MS);
                let refunded = returned + self.rng.between(DAY_MS, 4 * DAY_MS);
                flow.push((returned, pb::OrderStatus::Returned));
                flow.push((refunded, pb::OrderStatus::Refunded));
                topic = Topic::Return;
                window = (delivered, returned);
            } else {
                (topic, window) = match self.rng.below(3) {
                    0 => (Topic::WhereIsMyOrder, (shipped, delivered)),
                    1 => (Topic::ProductQuestion, (placed, delivered)),
                    _ => (Topic::DeliveryProblem, (delivered, delivered + 5 * DAY_MS)),
                };
            }
        }
        let support_p = if matches!(topic, Topic::Cancel | Topic::Return) {
            (self.cfg.support_prob * 5.0).min(1.0)
        } else {
            self.cfg.support_prob
        };
        let wants_support = self.rng.chance(support_p);
        let last = flow.len().saturating_sub(1);
        for (k, (at, status)) in flow.into_iter().enumerate() {
            let restore = if k == last { std::mem::take(&mut restore) } else { Vec::new() };
            self.schedule(at, Entry::Status { user, order: order.clone(), status, restore });
        }
        if wants_support {
            self.plan_conversation(user, &order, &lines, topic, window);
        }
    }

    /// Schedules a conversation about an order: the customer writes in the first half of
    /// `window` (exclusive end), the agent answers within it, after minutes to hours; follow-ups
    /// come later.
    fn plan_conversation(
        &mut self,
        user: u32,
        order: &str,
        lines: &[(u32, u32)],
        topic: Topic,
        window: (i64, i64),
    ) {
        let (from, to) = (window.0 + 1, window.1 - 1);
        if to <= from {
            return;
        }
        let agent = self.rng.below(self.cfg.agents) as u32;
        let title =
            lines.first().and_then(|(i, _)| self.item(*i)).map(|i| i.title.clone()).unwrap_or_default();
        let cx = text::Context {
            order,
            title: &title,
            agent_name: text::agent_name(agent as usize),
            lines: lines.len(),
        };
        let messages = text::conversation(topic, &cx, &mut self.rng);
        self.conversation_seq += 1;
        let conversation = format!("sim-c{}", self.conversation_seq);
        let mut at = from + self.rng.between(0, (to - from) / 2);
        for (k, text) in messages.into_iter().enumerate() {
            if k > 0 {
                let mean = if k % 2 == 1 { 50.0 * MINUTE as f64 } else { 20.0 * MINUTE as f64 };
                let gap = MINUTE + self.rng.exponential(mean) as i64;
                // The answer comes within the window; follow-ups may come later.
                at = if k == 1 { (at + gap).min(to) } else { at + gap };
            }
            let agent = (k % 2 == 1).then_some(agent);
            self.schedule(
                at,
                Entry::Message { user, conversation: conversation.clone(), agent, text, first: k == 0 },
            );
        }
    }
}

impl Iterator for Simulator {
    type Item = pb::Event;

    fn next(&mut self) -> Option<pb::Event> {
        loop {
            if let Some(e) = self.out.pop_front() {
                self.stats.events += 1;
                return Some(e);
            }
            if self.emit_catalog() {
                continue;
            }
            let next = self.agenda.pop()?;
            if next.at >= self.end_ms {
                self.agenda.clear();
                return None;
            }
            self.now = next.at;
            self.handle(next.entry);
        }
    }
}

impl std::iter::FusedIterator for Simulator {}
