//! Real data sets as shopmind events.
//!
//! MovieLens-100k (943 users, 1682 movies, 100,000 ratings) ships in the `recbole` wheel on PyPI;
//! `scripts/setup.sh` unpacks it to `.cache/data/ml-100k/`. As events: every movie becomes an
//! `ItemUpserted` (category `Movies > <first genre>`), every rating a `ProductViewed`, and every
//! rating of 4 or 5 also an `OrderPlaced`, in time order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shopmind_domain::UnixMillis;
use shopmind_proto::v1 as pb;

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("reading {path}: {source} (run scripts/setup.sh to fetch the data)")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path} line {line}: {reason}")]
    Parse { path: PathBuf, line: usize, reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Movie {
    pub id: u32,
    pub title: String,
    pub year: Option<u16>,
    pub genres: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rating {
    pub user: u32,
    pub item: u32,
    pub rating: f32,
    /// Unix seconds.
    pub timestamp: i64,
}

/// A rating at or above this counts as a purchase.
pub const PURCHASE_RATING: f32 = 4.0;

#[derive(Debug, Clone)]
pub struct MovieLens {
    pub movies: BTreeMap<u32, Movie>,
    /// Sorted by (timestamp, user, item).
    pub ratings: Vec<Rating>,
}

/// The unpacked data, if `scripts/setup.sh` has run: `.cache/data/ml-100k` in the current
/// directory or an ancestor of it or of the executable.
pub fn default_ml100k_dir() -> Option<PathBuf> {
    let rel = Path::new(".cache/data/ml-100k");
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.into_iter().map(|r| r.join(rel)).find(|p| p.join("ml-100k.inter").is_file())
}

fn read(path: &Path) -> Result<String, DatasetError> {
    std::fs::read_to_string(path).map_err(|source| DatasetError::Io { path: path.to_path_buf(), source })
}

impl MovieLens {
    /// Loads `ml-100k.inter` and `ml-100k.item` (recbole's tab-separated format) from `dir`.
    pub fn load(dir: &Path) -> Result<Self, DatasetError> {
        let item_path = dir.join("ml-100k.item");
        let mut movies = BTreeMap::new();
        for (n, line) in read(&item_path)?.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let err = |reason: &str| DatasetError::Parse {
                path: item_path.clone(),
                line: n + 1,
                reason: reason.into(),
            };
            let id: u32 = cols.first().and_then(|c| c.parse().ok()).ok_or_else(|| err("bad item_id"))?;
            let title = cols.get(1).map(|t| t.trim().to_string()).unwrap_or_default();
            let year = cols.get(2).and_then(|y| y.trim().parse().ok());
            let genres =
                cols.get(3).map(|g| g.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
            movies.insert(id, Movie { id, title, year, genres });
        }
        let inter_path = dir.join("ml-100k.inter");
        let mut ratings = Vec::new();
        for (n, line) in read(&inter_path)?.lines().enumerate().skip(1) {
            let cols: Vec<&str> = line.split('\t').collect();
            let err = |reason: &str| DatasetError::Parse {
                path: inter_path.clone(),
                line: n + 1,
                reason: reason.into(),
            };
            if cols.len() < 4 {
                return Err(err("expected user_id, item_id, rating, timestamp"));
            }
            ratings.push(Rating {
                user: cols[0].parse().map_err(|_| err("bad user_id"))?,
                item: cols[1].parse().map_err(|_| err("bad item_id"))?,
                rating: cols[2].parse().map_err(|_| err("bad rating"))?,
                timestamp: cols[3].parse::<f64>().map_err(|_| err("bad timestamp"))? as i64,
            });
        }
        ratings.sort_by_key(|r| (r.timestamp, r.user, r.item));
        Ok(Self { movies, ratings })
    }

    pub fn item_id(movie: u32) -> String {
        format!("movie-{movie}")
    }

    pub fn user_id(user: u32) -> String {
        format!("user-{user}")
    }

    /// The catalog, then the ratings in time order, as events of `tenant`.
    pub fn events(&self, tenant: &str) -> Vec<pb::Event> {
        let first_ts = self.ratings.first().map_or(0, |r| r.timestamp);
        let mut out = Vec::with_capacity(self.movies.len() + self.ratings.len() * 2);
        for m in self.movies.values() {
            let mut category = vec!["Movies".to_string()];
            category.extend(m.genres.first().cloned());
            let mut attributes = std::collections::HashMap::new();
            attributes.insert("genres".to_string(), m.genres.join(","));
            if let Some(y) = m.year {
                attributes.insert("year".to_string(), y.to_string());
            }
            out.push(pb::Event {
                event_id: format!("ml100k-item-{}", m.id),
                tenant: tenant.into(),
                occurred_at: Some(UnixMillis(first_ts * 1000).to_proto()),
                user_id: String::new(),
                session_id: String::new(),
                payload: Some(pb::event::Payload::ItemUpserted(pb::ItemUpserted {
                    item_id: Self::item_id(m.id),
                    title: m.title.clone(),
                    category_path: category,
                    price: None,
                    attributes,
                })),
            });
        }
        for r in &self.ratings {
            let at = UnixMillis(r.timestamp * 1000);
            let (user, item) = (Self::user_id(r.user), Self::item_id(r.item));
            out.push(pb::Event {
                event_id: format!("ml100k-view-{}-{}", r.user, r.item),
                tenant: tenant.into(),
                occurred_at: Some(at.to_proto()),
                user_id: user.clone(),
                session_id: String::new(),
                payload: Some(pb::event::Payload::ProductViewed(pb::ProductViewed {
                    item_id: item.clone(),
                    source: "movielens".into(),
                })),
            });
            if r.rating >= PURCHASE_RATING {
                out.push(pb::Event {
                    event_id: format!("ml100k-order-{}-{}", r.user, r.item),
                    tenant: tenant.into(),
                    occurred_at: Some(UnixMillis(at.0 + 1).to_proto()),
                    user_id: user,
                    session_id: String::new(),
                    payload: Some(pb::event::Payload::OrderPlaced(pb::OrderPlaced {
                        order_id: format!("ml100k-{}-{}", r.user, r.item),
                        lines: vec![pb::OrderLine { item_id: item, quantity: 1, unit_price: None }],
                    })),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> (tempfile::TempDir, MovieLens) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ml-100k.item"),
            "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n\
             1\tToy Story\t1995\tAnimation Children's Comedy\n2\tGoldenEye\t1995\tAction Adventure Thriller\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("ml-100k.inter"),
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n7\t2\t5\t900000002\n7\t1\t3\t900000001\n",
        )
        .unwrap();
        let ml = MovieLens::load(dir.path()).unwrap();
        (dir, ml)
    }

    #[test]
    fn parses_recbole_format_and_sorts_by_time() {
        let (_d, ml) = sample();
        assert_eq!(ml.movies[&1].title, "Toy Story");
        assert_eq!(ml.movies[&1].genres, vec!["Animation", "Children's", "Comedy"]);
        assert_eq!(ml.ratings.iter().map(|r| r.item).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn events_are_valid_and_high_ratings_become_orders() {
        let (_d, ml) = sample();
        let events = ml.events("ml");
        // 2 items + 2 views + 1 order (rating 5).
        assert_eq!(events.len(), 5);
        let policy = shopmind_domain::ValidationPolicy::ingest(UnixMillis::now());
        for e in &events {
            shopmind_domain::Event::from_proto(e, None, &policy).unwrap();
        }
        assert!(matches!(events[4].payload, Some(pb::event::Payload::OrderPlaced(_))));
    }

    #[test]
    fn a_missing_directory_says_how_to_fetch_the_data() {
        let err = MovieLens::load(Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    }

    #[test]
    fn the_real_data_set_has_the_published_counts() {
        let dir = default_ml100k_dir().expect("ml-100k not found: run scripts/setup.sh");
        let ml = MovieLens::load(&dir).unwrap();
        assert_eq!(ml.movies.len(), 1682);
        assert_eq!(ml.ratings.len(), 100_000);
        let users: std::collections::BTreeSet<u32> = ml.ratings.iter().map(|r| r.user).collect();
        assert_eq!(users.len(), 943);
    }
}
