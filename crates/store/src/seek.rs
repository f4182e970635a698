//! Where the pages of a list ended, so that the next page is read from there
//! (keyset, or seek, pagination) under Make's offsets.
//!
//! Make's clients page with `pg[offset]` and `pg[limit]`, which gives a
//! database nothing to seek from: `OFFSET 900` steps over 900 index entries
//! (and on PostgreSQL visits their rows) before it reads the page. But a
//! client that pages goes on from the page it just read, so each full page
//! leaves here the sort key of its last row, under its query and the offset
//! the next page starts at; a page asked at that offset is read after the key
//! instead (`(sort, id) < (key)`, from the list index), whatever its limit.
//! An offset no page ended at — a jump, another instance's pager, a key
//! older than [`KEEP`] — is read with `OFFSET`, as before.
//!
//! The lists' totals (`pg.total`) are kept here too: each page of a pager
//! would otherwise count the same rows again (`COUNT(*)`, for every full page).
//!
//! A continued page (or a kept total) is `OFFSET`'s (or `COUNT`'s) as long as no request
//! changed in between: every write to requests through this store (created,
//! deleted, its status, recipient or tracking changed) makes the ends kept
//! before it stale, counted once it committed. A write through another
//! instance on the same database is not seen here: for up to [`KEEP`] after
//! it, a page this instance continues goes on after the last row its pager
//! saw where `OFFSET` would shift by the rows created or deleted ahead of it
//! (the next page neither repeats a row nor skips one).

use crate::Bind;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a page's end is kept: a pager reads its next page within it.
pub const KEEP: Duration = Duration::from_secs(60);

/// At most this many ends are kept (each about 200 bytes); when full, the
/// expired ones go, and if none has expired, all.
const MOST: usize = 4096;

/// The sort value and id of a page's last row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SeekKey {
    pub sort: SortValue,
    pub id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SortValue {
    Text(String),
    Time(DateTime<Utc>),
}

impl SeekKey {
    /// The two binds the seek clause compares with.
    pub fn binds(&self) -> [Bind; 2] {
        let sort = match &self.sort {
            SortValue::Text(text) => Bind::Text(text.clone()),
            SortValue::Time(time) => Bind::Time(*time),
        };
        [sort, Bind::Text(self.id.clone())]
    }
}

/// The pages' ends of one store (one instance), and the lists' totals.
#[derive(Default)]
pub(crate) struct Seeks {
    /// Under a list's query and the offset its next page starts at.
    ends: Kept<(String, i64), SeekKey>,
    /// A list's total (`pg.total`), counted or told by its last page, kept
    /// under the same rule as the ends: a `COUNT(*)` for each page of a
    /// pager would count the same rows again.
    totals: Kept<String, i64>,
    /// Counts the writes to requests that committed.
    changes: AtomicU64,
}

impl Seeks {
    /// Where requests stand now: taken before a page is read, and given
    /// back with what it found to [`Seeks::remember`].
    pub fn now(&self) -> u64 {
        self.changes.load(Ordering::Acquire)
    }

    /// A write to requests committed: everything kept until now is stale.
    /// Called after the commit, and [`Seeks::now`] before the read, so a
    /// page read from a snapshot without the write is never continued
    /// after it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }

    /// The key the page of `query` at `offset` is read after, if a page
    /// ended there within [`KEEP`] and no request changed since.
    pub fn find(&self, query: &str, offset: i64) -> Option<SeekKey> {
        self.ends.get(&(query.to_string(), offset), self.now())
    }

    /// A page of `query`, read when requests stood at `changes`, ended
    /// with `key`; the next one starts at `offset`.
    pub fn remember(&self, query: String, offset: i64, key: SeekKey, changes: u64) {
        self.ends.put((query, offset), key, changes, self.now());
    }

    /// The total of `query`, if one was kept within [`KEEP`] and no
    /// request changed since.
    pub fn total(&self, query: &str) -> Option<i64> {
        self.totals.get(&query.to_string(), self.now())
    }

    /// `query` had `total` rows when requests stood at `changes`.
    pub fn remember_total(&self, query: String, total: i64, changes: u64) {
        self.totals.put(query, total, changes, self.now());
    }
}

/// Values kept for [`KEEP`], each with where requests stood when it was
/// read; at most [`MOST`] of them.
struct Kept<K, V> {
    values: Mutex<HashMap<K, (V, Instant, u64)>>,
}

impl<K, V> Default for Kept<K, V> {
    fn default() -> Self {
        Kept {
            values: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> Kept<K, V> {
    /// The value under `key`, if it is younger than [`KEEP`] and was read
    /// when requests stood where they stand `now`.
    fn get(&self, key: &K, now: u64) -> Option<V> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        let (value, at, changes) = values.get(key)?;
        (at.elapsed() < KEEP && *changes == now).then(|| value.clone())
    }

    /// Keeps `value`, read when requests stood at `changes`; when full, the
    /// stale ones go, and if none is, all.
    fn put(&self, key: K, value: V, changes: u64, now: u64) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if values.len() >= MOST {
            values.retain(|_, (_, at, kept)| at.elapsed() < KEEP && *kept == now);
            if values.len() >= MOST {
                values.clear();
            }
        }
        values.insert(key, (value, Instant::now(), changes));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.values.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> SeekKey {
        SeekKey {
            sort: SortValue::Text("a".into()),
            id: id.into(),
        }
    }

    #[test]
    fn a_page_end_is_found_only_under_its_query_and_offset() {
        let seeks = Seeks::default();
        seeks.remember("q".into(), 50, key("x"), seeks.now());
        assert_eq!(seeks.find("q", 50), Some(key("x")));
        assert_eq!(seeks.find("q", 100), None);
        assert_eq!(seeks.find("other", 50), None);
    }

    #[test]
    fn a_change_to_requests_makes_the_ends_before_it_stale() {
        let seeks = Seeks::default();
        let before = seeks.now();
        seeks.remember("q".into(), 50, key("x"), before);
        seeks.changed();
        assert_eq!(seeks.find("q", 50), None);
        // A page read while the write was still uncommitted, remembered
        // after it: stale too.
        seeks.remember("q".into(), 50, key("y"), before);
        assert_eq!(seeks.find("q", 50), None);
        seeks.remember("q".into(), 50, key("z"), seeks.now());
        assert_eq!(seeks.find("q", 50), Some(key("z")));
    }

    #[test]
    fn a_total_is_kept_until_requests_change() {
        let seeks = Seeks::default();
        seeks.remember_total("q".into(), 7, seeks.now());
        assert_eq!(seeks.total("q"), Some(7));
        assert_eq!(seeks.total("other"), None);
        seeks.changed();
        assert_eq!(seeks.total("q"), None);
    }

    #[test]
    fn a_full_cache_makes_room() {
        let seeks = Seeks::default();
        for offset in 0..MOST as i64 + 10 {
            seeks.remember("q".into(), offset, key("x"), 0);
        }
        let kept = seeks.ends.len();
        assert!(kept <= MOST, "{kept} ends kept");
        assert_eq!(seeks.find("q", MOST as i64 + 9), Some(key("x")));
    }
}
