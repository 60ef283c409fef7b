//! The synthetic catalog: categories with typical prices, items with titles, prices, stock and a
//! Zipf-like popularity within their category.

use crate::config::SimConfig;
use crate::rng::Rand;

/// One leaf category template: its path, the median price in major units, and the words that
/// item titles and search queries are made of.
struct CategoryTemplate {
    top: &'static str,
    leaf: &'static str,
    median_price: f64,
    nouns: &'static [&'static str],
    adjectives: &'static [&'static str],
}

const fn cat(
    top: &'static str,
    leaf: &'static str,
    median_price: f64,
    nouns: &'static [&'static str],
    adjectives: &'static [&'static str],
) -> CategoryTemplate {
    CategoryTemplate { top, leaf, median_price, nouns, adjectives }
}

/// Ordered so that the first dozen span different departments.
const TEMPLATES: &[CategoryTemplate] = &[
    cat(
        "Electronics",
        "Audio",
        80.0,
        &["Headphones", "Earbuds", "Speaker", "Soundbar", "Turntable"],
        &["Wireless", "Noise-Cancelling", "Portable", "Studio", "Bluetooth"],
    ),
    cat(
        "Home",
        "Kitchen",
        40.0,
        &["Skillet", "Knife Set", "Blender", "Kettle", "Coffee Grinder"],
        &["Cast Iron", "Stainless", "Electric", "Ceramic", "Nonstick"],
    ),
    cat(
        "Fashion",
        "Women",
        45.0,
        &["Dress", "Blouse", "Cardigan", "Skirt", "Jeans"],
        &["Linen", "Floral", "Wool", "High-Waist", "Cropped"],
    ),
    cat(
        "Books",
        "Fiction",
        14.0,
        &["Novel", "Thriller", "Short Stories", "Fantasy Saga", "Mystery"],
        &["Bestselling", "Award-Winning", "Illustrated", "Paperback", "Collector's"],
    ),
    cat(
        "Sports",
        "Fitness",
        35.0,
        &["Yoga Mat", "Dumbbells", "Resistance Bands", "Kettlebell", "Jump Rope"],
        &["Non-Slip", "Adjustable", "Pro", "Compact", "Eco"],
    ),
    cat(
        "Beauty",
        "Skincare",
        20.0,
        &["Moisturizer", "Serum", "Sunscreen", "Cleanser", "Face Mask"],
        &["Hydrating", "Vitamin C", "Fragrance-Free", "Organic", "Night"],
    ),
    cat(
        "Electronics",
        "Computers",
        600.0,
        &["Laptop", "Monitor", "Keyboard", "Mouse", "Webcam"],
        &["Ultralight", "Gaming", "Ergonomic", "4K", "Mechanical"],
    ),
    cat(
        "Home",
        "Furniture",
        220.0,
        &["Desk", "Bookshelf", "Armchair", "Side Table", "Bed Frame"],
        &["Oak", "Minimalist", "Folding", "Upholstered", "Industrial"],
    ),
    cat(
        "Fashion",
        "Men",
        45.0,
        &["Shirt", "Chinos", "Hoodie", "Blazer", "Jacket"],
        &["Oxford", "Slim-Fit", "Fleece", "Tailored", "Denim"],
    ),
    cat(
        "Toys",
        "Games",
        30.0,
        &["Board Game", "Puzzle", "Card Game", "Building Set", "Plush Toy"],
        &["Family", "Strategy", "1000-Piece", "Party", "Classic"],
    ),
    cat(
        "Grocery",
        "Coffee & Tea",
        12.0,
        &["Coffee Beans", "Green Tea", "Espresso Pods", "Herbal Tea", "Cold Brew"],
        &["Single-Origin", "Organic", "Dark Roast", "Decaf", "Fair-Trade"],
    ),
    cat(
        "Pets",
        "Supplies",
        25.0,
        &["Dog Bed", "Cat Tree", "Leash", "Pet Bowl", "Chew Toy"],
        &["Orthopedic", "Reflective", "Durable", "Washable", "Cozy"],
    ),
    cat(
        "Electronics",
        "Phones",
        350.0,
        &["Smartphone", "Phone Case", "Charger", "Screen Protector", "Power Bank"],
        &["5G", "Rugged", "Slim", "Fast", "Magnetic"],
    ),
    cat(
        "Home",
        "Decor",
        30.0,
        &["Lamp", "Vase", "Rug", "Wall Clock", "Mirror"],
        &["Rattan", "Vintage", "Handmade", "Scandinavian", "Brass"],
    ),
    cat(
        "Fashion",
        "Shoes",
        70.0,
        &["Sneakers", "Boots", "Sandals", "Loafers", "Running Shoes"],
        &["Leather", "Suede", "Waterproof", "Lightweight", "Classic"],
    ),
    cat(
        "Books",
        "Non-Fiction",
        18.0,
        &["Cookbook", "Biography", "History Book", "Travel Guide", "Self-Help Book"],
        &["Bestselling", "Illustrated", "Hardcover", "Updated", "Pocket"],
    ),
    cat(
        "Sports",
        "Outdoor",
        90.0,
        &["Tent", "Sleeping Bag", "Hiking Poles", "Headlamp", "Camping Stove"],
        &["Ultralight", "4-Season", "Waterproof", "Compact", "Trail"],
    ),
    cat(
        "Beauty",
        "Haircare",
        15.0,
        &["Shampoo", "Conditioner", "Hair Dryer", "Hair Oil", "Straightener"],
        &["Repairing", "Volumizing", "Ionic", "Argan", "Sulfate-Free"],
    ),
    cat(
        "Electronics",
        "Cameras",
        450.0,
        &["Camera", "Lens", "Tripod", "Action Cam", "Drone"],
        &["Mirrorless", "Compact", "Waterproof", "Zoom", "Travel"],
    ),
    cat(
        "Home",
        "Garden",
        35.0,
        &["Planter", "Garden Hose", "Pruning Shears", "Bird Feeder", "Garden Chair"],
        &["Terracotta", "Expandable", "Steel", "Cedar", "Weatherproof"],
    ),
    cat(
        "Fashion",
        "Accessories",
        25.0,
        &["Backpack", "Wallet", "Sunglasses", "Scarf", "Watch"],
        &["Leather", "Polarized", "Cashmere", "Minimal", "Canvas"],
    ),
    cat(
        "Books",
        "Children",
        10.0,
        &["Picture Book", "Activity Book", "Bedtime Stories", "Comic", "Puzzle Book"],
        &["Illustrated", "Interactive", "Rhyming", "Sticker", "Board"],
    ),
    cat(
        "Sports",
        "Cycling",
        60.0,
        &["Bike Helmet", "Bike Light", "Cycling Gloves", "Bike Lock", "Saddle"],
        &["Aero", "USB-Rechargeable", "Padded", "Heavy-Duty", "Gel"],
    ),
    cat(
        "Grocery",
        "Snacks",
        6.0,
        &["Dark Chocolate", "Trail Mix", "Granola", "Protein Bar", "Crackers"],
        &["Salted", "Gluten-Free", "Honey", "Crunchy", "Vegan"],
    ),
];

const BRANDS: &[&str] = &[
    "Auralis",
    "Nordvik",
    "Kestrel",
    "Lumen & Co",
    "Vantage",
    "Brightwell",
    "Oakhaven",
    "Solenne",
    "Tidewater",
    "Marlowe",
    "Fenwick",
    "Zephyra",
    "Halden",
    "Corvid",
    "Pinecrest",
    "Alder",
    "Quillon",
    "Brisa",
    "Montclair",
    "Ravello",
];

/// One simulated catalog item: the ground truth behind its `ItemUpserted` event.
#[derive(Debug, Clone, PartialEq)]
pub struct SimItem {
    /// `sim-i<index>`.
    pub id: String,
    pub title: String,
    pub brand: String,
    /// Index into [`crate::Simulator::categories`] and the users' taste vectors.
    pub category: usize,
    /// From the root down, e.g. `["Electronics", "Audio"]`.
    pub category_path: Vec<String>,
    /// Price in the currency's minor unit (cents).
    pub price_minor: i64,
    pub currency: String,
    pub initial_stock: u32,
    /// Relative popularity within its category (a Zipf weight: 1 for the most popular item).
    pub popularity: f64,
}

/// The catalog plus the tables that make sampling from it cheap.
pub(crate) struct Catalog {
    pub(crate) items: Vec<SimItem>,
    pub(crate) paths: Vec<Vec<String>>,
    /// Median price per category, in minor units.
    pub(crate) median_minor: Vec<f64>,
    /// Items of each category and their cumulative popularity.
    pub(crate) members: Vec<Vec<u32>>,
    pub(crate) cumulative: Vec<Vec<f64>>,
    /// Title words per item: (noun, adjective) indices into its template.
    words: Vec<(u8, u8)>,
    /// Per category and noun, the most popular items with that noun (search results).
    by_noun: Vec<Vec<Vec<u32>>>,
}

/// Most results of one search.
const MAX_RESULTS: usize = 8;

impl Catalog {
    pub(crate) fn build(cfg: &SimConfig, rng: &mut Rand) -> Self {
        let n_cat = cfg.categories;
        let paths: Vec<Vec<String>> = (0..n_cat)
            .map(|c| {
                let t = template(c);
                let round = c / TEMPLATES.len();
                let leaf = if round == 0 { t.leaf.to_string() } else { format!("{} {}", t.leaf, round + 1) };
                vec![t.top.to_string(), leaf]
            })
            .collect();
        // Each category's typical price varies a little around its template's.
        let median_minor: Vec<f64> =
            (0..n_cat).map(|c| template(c).median_price * 100.0 * (0.25 * rng.normal()).exp()).collect();
        // Category sizes vary: the first `n_cat` items seed one category each, the rest go to
        // categories drawn with random weights.
        let size_weights: Vec<f64> = (0..n_cat).map(|_| 0.5 + rng.unit()).collect();
        let mut members: Vec<Vec<u32>> = vec![Vec::new(); n_cat];
        let mut item_cat = Vec::with_capacity(cfg.items);
        for i in 0..cfg.items {
            let c = if i < n_cat { i } else { rng.weighted(size_weights.iter().copied()) };
            item_cat.push(c);
            if let Some(m) = members.get_mut(c) {
                m.push(i as u32);
            }
        }
        // Popularity: a random rank within the category, weight 1 / (rank + 1)^skew.
        let mut popularity = vec![0.0; cfg.items];
        for m in &members {
            let mut order = m.clone();
            for k in (1..order.len()).rev() {
                order.swap(k, rng.below(k + 1));
            }
            for (rank, &item) in order.iter().enumerate() {
                if let Some(p) = popularity.get_mut(item as usize) {
                    *p = 1.0 / ((rank + 1) as f64).powf(cfg.popularity_skew);
                }
            }
        }
        let cumulative = members
            .iter()
            .map(|m| {
                let mut acc = 0.0;
                m.iter()
                    .map(|&i| {
                        acc += popularity.get(i as usize).copied().unwrap_or(0.0);
                        acc
                    })
                    .collect()
            })
            .collect();

        let mut items = Vec::with_capacity(cfg.items);
        let mut words = Vec::with_capacity(cfg.items);
        for (i, &c) in item_cat.iter().enumerate() {
            let t = template(c);
            let noun = rng.below(t.nouns.len());
            let adj = rng.below(t.adjectives.len());
            let brand = BRANDS.get(rng.below(BRANDS.len())).copied().unwrap_or("Generic");
            let model = match rng.below(4) {
                0 => String::new(),
                1 => format!(" {}", rng.between(2, 9)),
                2 => format!(
                    " {}{}",
                    ["X", "S", "Pro ", "Mini "].get(rng.below(4)).unwrap_or(&"X"),
                    rng.between(1, 5)
                ),
                _ => format!(
                    " ({})",
                    ["2025", "2026", "Gen 2", "Refresh"].get(rng.below(4)).unwrap_or(&"2026")
                ),
            };
            let noun_s = t.nouns.get(noun).copied().unwrap_or("Item");
            let adj_s = t.adjectives.get(adj).copied().unwrap_or("New");
            let title = format!("{brand} {adj_s} {noun_s}{model}");
            let median = median_minor.get(c).copied().unwrap_or(1000.0);
            // Log-normal around the category median, ending in 99 cents (at least 0.99).
            let raw = median * (0.6 * rng.normal()).exp();
            let price_minor = ((raw / 100.0).round().max(1.0) as i64) * 100 - 1;
            let mean_stock = f64::from(cfg.mean_initial_stock);
            let initial_stock = if cfg.mean_initial_stock == 0 {
                0
            } else {
                rng.between((mean_stock * 0.5).round() as i64, (mean_stock * 1.5).round() as i64).max(0)
                    as u32
            };
            items.push(SimItem {
                id: item_id(i),
                title,
                brand: brand.to_string(),
                category: c,
                category_path: paths.get(c).cloned().unwrap_or_default(),
                price_minor,
                currency: cfg.currency.clone(),
                initial_stock,
                popularity: popularity.get(i).copied().unwrap_or(0.0),
            });
            words.push((noun as u8, adj as u8));
        }

        let by_noun = members
            .iter()
            .enumerate()
            .map(|(c, m)| {
                let mut sorted = m.clone();
                sorted.sort_by(|&a, &b| {
                    let pa = items.get(a as usize).map_or(0.0, |x| x.popularity);
                    let pb = items.get(b as usize).map_or(0.0, |x| x.popularity);
                    pb.total_cmp(&pa).then(a.cmp(&b))
                });
                (0..template(c).nouns.len())
                    .map(|noun| {
                        sorted
                            .iter()
                            .copied()
                            .filter(|&i| words.get(i as usize).is_some_and(|w| usize::from(w.0) == noun))
                            .take(MAX_RESULTS)
                            .collect()
                    })
                    .collect()
            })
            .collect();

        Self { items, paths, median_minor, members, cumulative, words, by_noun }
    }

    /// An item of category `c`, drawn by popularity.
    pub(crate) fn sample_in(&self, c: usize, rng: &mut Rand) -> Option<u32> {
        let cum = self.cumulative.get(c)?;
        self.members.get(c)?.get(rng.cumulative(cum)).copied()
    }

    /// A search query that leads to `item`, and the results it returns (the most popular items
    /// of the item's category with the same kind of product, padded with the category's best
    /// sellers).
    pub(crate) fn search(&self, item: u32, rng: &mut Rand) -> (String, Vec<u32>) {
        let Some(it) = self.items.get(item as usize) else { return ("gift ideas".into(), Vec::new()) };
        let (noun, adj) = self.words.get(item as usize).copied().unwrap_or((0, 0));
        let t = template(it.category);
        let noun_s = t.nouns.get(usize::from(noun)).copied().unwrap_or("gift").to_lowercase();
        let adj_s = t.adjectives.get(usize::from(adj)).copied().unwrap_or("new").to_lowercase();
        let query = match rng.below(8) {
            0 | 1 => noun_s.clone(),
            2 | 3 => format!("{adj_s} {noun_s}"),
            4 => format!("{} {noun_s}", it.brand.to_lowercase()),
            5 => {
                let budget = ((it.price_minor as f64 / 100.0 * 1.3 / 10.0).ceil() * 10.0).max(10.0);
                format!("{noun_s} under {budget}")
            }
            6 => format!("best {noun_s} {}", ["2026", "for gift", "reviews", "deal"][rng.below(4)]),
            _ => {
                // A typo: two adjacent letters swapped.
                let mut chars: Vec<char> = noun_s.chars().collect();
                if chars.len() > 3 {
                    let k = 1 + rng.below(chars.len() - 2);
                    chars.swap(k - 1, k);
                }
                chars.into_iter().collect()
            }
        };
        let mut results: Vec<u32> =
            self.by_noun.get(it.category).and_then(|n| n.get(usize::from(noun))).cloned().unwrap_or_default();
        if !results.contains(&item) {
            results.truncate(MAX_RESULTS - 1);
            let at = rng.below(results.len() + 1);
            results.insert(at, item);
        }
        if let Some(m) = self.members.get(it.category) {
            let mut k = 0;
            while results.len() < 4 && k < m.len() {
                if let Some(&cand) = m.get(rng.below(m.len()))
                    && !results.contains(&cand)
                {
                    results.push(cand);
                }
                k += 1;
            }
        }
        (query, results)
    }
}

fn template(c: usize) -> &'static CategoryTemplate {
    &TEMPLATES[c % TEMPLATES.len()]
}

/// The id of item `index`.
pub fn item_id(index: usize) -> String {
    format!("sim-i{index}")
}

/// The id of user `index`.
pub fn user_id(index: usize) -> String {
    format!("sim-u{index}")
}
