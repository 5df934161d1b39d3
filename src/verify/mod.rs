//! Verification: does the target hold what the source says it should?
//!
//! Both sides are summarised per series and time bucket — count of points, first and last
//! time, and an order-independent checksum of every (time, field, value) as the target
//! stores it — so memory grows with the number of series and buckets, never with rows.
//! The two summaries are then diffed with differential dataflow
//! (the engine's verify dataflow): what consolidates away matches; what is left is
//! missing in the target, extra in the target, or differing. This module holds the pure
//! parts: the summaries, the canonical form of values, and the report.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};

/// A value as the target stores it, so source and target hash alike.
#[derive(Debug, Clone, PartialEq)]
pub enum Canonical {
    /// Integers of any width.
    Int(i64),
    /// Floats, compared by their bits (single precision widened).
    Float(f64),
    /// Booleans.
    Bool(bool),
    /// Text.
    Text(String),
}

impl Canonical {
    fn hash_into(&self, h: &mut xxhash_rust::xxh3::Xxh3) {
        match self {
            Canonical::Int(i) => {
                h.update(b"i");
                h.update(&i.to_le_bytes());
            }
            Canonical::Float(f) => {
                h.update(b"f");
                // -0.0 and 0.0 are one value to a user.
                h.update(
                    &(if *f == 0.0 { 0.0f64 } else { *f })
                        .to_bits()
                        .to_le_bytes(),
                );
            }
            Canonical::Bool(b) => h.update(if *b { b"t" } else { b"F" }),
            Canonical::Text(s) => {
                h.update(b"s");
                h.update(s.as_bytes());
            }
        }
    }
}

/// One series' points in one time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Summary {
    /// Points (rows at distinct times).
    pub count: u64,
    /// First time, ns.
    pub first: i64,
    /// Last time, ns.
    pub last: i64,
    /// Wrapping sum of the hashes of every (time, field, value).
    pub checksum: u64,
}

/// (series, bucket start in ns).
pub type Key = (String, i64);

/// Summaries being accumulated.
#[derive(Debug, Default)]
pub struct Summaries {
    by_key: HashMap<Key, Summary>,
    bucket: i64,
}

impl Summaries {
    /// Empty summaries over buckets of `bucket_ns`.
    pub fn new(bucket_ns: i64) -> Self {
        Self {
            by_key: HashMap::new(),
            bucket: bucket_ns.max(1),
        }
    }

    /// Adds one point of `series` at `time` with its fields in canonical form.
    pub fn add(
        &mut self,
        series: &str,
        time: i64,
        fields: impl IntoIterator<Item = (impl AsRef<str>, Canonical)>,
    ) {
        let bucket = time.div_euclid(self.bucket) * self.bucket;
        let mut checksum = 0u64;
        for (field, value) in fields {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            h.update(&time.to_le_bytes());
            h.update(field.as_ref().as_bytes());
            h.update(b"=");
            value.hash_into(&mut h);
            checksum = checksum.wrapping_add(h.digest());
        }
        let entry = self
            .by_key
            .entry((series.to_string(), bucket))
            .or_insert(Summary {
                count: 0,
                first: time,
                last: time,
                checksum: 0,
            });
        entry.count += 1;
        entry.first = entry.first.min(time);
        entry.last = entry.last.max(time);
        entry.checksum = entry.checksum.wrapping_add(checksum);
    }

    /// Merges another set (from another task) into this one.
    pub fn merge(&mut self, other: Summaries) {
        for (key, s) in other.by_key {
            match self.by_key.get_mut(&key) {
                None => {
                    self.by_key.insert(key, s);
                }
                Some(e) => {
                    e.count += s.count;
                    e.first = e.first.min(s.first);
                    e.last = e.last.max(s.last);
                    e.checksum = e.checksum.wrapping_add(s.checksum);
                }
            }
        }
    }

    /// The summaries, by key.
    pub fn into_vec(self) -> Vec<(Key, Summary)> {
        self.by_key.into_iter().collect()
    }
}

pub use crate::model::{series_key, Series};

/// What the diff found, per kind, with the keys.
#[derive(Debug, Default, PartialEq)]
pub struct Report {
    /// Series seen on either side.
    pub series: usize,
    /// (series, bucket) keys seen on either side.
    pub buckets: usize,
    /// Keys whose summaries are equal.
    pub matching: usize,
    /// Keys only the source has.
    pub missing: Vec<(Key, Summary)>,
    /// Keys only the target has.
    pub extra: Vec<(Key, Summary)>,
    /// Keys both have, with different summaries: (key, source, target).
    pub differing: Vec<(Key, Summary, Summary)>,
}

impl Report {
    /// Classifies what consolidation left over (`+1`: the source's summary, `-1`: the
    /// target's), given every key either side had.
    pub fn classify(all_keys: &[Key], leftovers: Vec<(Key, Summary, i64)>) -> Report {
        let mut by_key: BTreeMap<Key, (Option<Summary>, Option<Summary>)> = BTreeMap::new();
        for (key, summary, diff) in leftovers {
            let e = by_key.entry(key).or_default();
            if diff > 0 {
                e.0 = Some(summary);
            } else {
                e.1 = Some(summary);
            }
        }
        let mut report = Report::default();
        let mut series: Vec<&String> = all_keys.iter().map(|(s, _)| s).collect();
        series.sort();
        series.dedup();
        report.series = series.len();
        report.buckets = all_keys.len();
        report.matching = all_keys.len() - by_key.len();
        for (key, sides) in by_key {
            match sides {
                (Some(s), Some(t)) => report.differing.push((key, s, t)),
                (Some(s), None) => report.missing.push((key, s)),
                (None, Some(t)) => report.extra.push((key, t)),
                (None, None) => {}
            }
        }
        report
    }

    /// Whether source and target agree.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.differing.is_empty()
    }

    /// The report as text, with up to `examples` keys of each kind.
    pub fn render(&self, examples: usize) -> String {
        let bucket = |k: &Key| crate::model::format_time(k.1);
        let mut out = format!(
            "verify: {} series, {} buckets compared: {} matching, {} missing in target, {} extra in target, {} differing\n",
            self.series,
            self.buckets,
            self.matching,
            self.missing.len(),
            self.extra.len(),
            self.differing.len()
        );
        for (key, s) in self.missing.iter().take(examples) {
            out.push_str(&format!(
                "  missing in target: {} from {} ({} points)\n",
                key.0,
                bucket(key),
                s.count
            ));
        }
        for (key, t) in self.extra.iter().take(examples) {
            out.push_str(&format!(
                "  extra in target:   {} from {} ({} points)\n",
                key.0,
                bucket(key),
                t.count
            ));
        }
        for (key, s, t) in self.differing.iter().take(examples) {
            let what = if s.count != t.count {
                format!(
                    "{} points in the source, {} in the target",
                    s.count, t.count
                )
            } else if (s.first, s.last) != (t.first, t.last) {
                "the same number of points at other times".to_string()
            } else {
                "the same points with other values".to_string()
            };
            out.push_str(&format!(
                "  differing:         {} from {}: {what}\n",
                key.0,
                bucket(key)
            ));
        }
        out
    }
}

/// The keys `verify --repair` re-copies: every key `report` found different; and where the
/// target's range deletes also take the series of the measurement that have more tags
/// (`tag_supersets`: InfluxDB 2), every key of such a series in the same bucket (`keys`
/// holds every key either side had), since deleting the window removes its points too.
/// One pass is enough: a series with more tags than one of those has more than the
/// damaged one too.
pub fn repair_keys(
    report: &Report,
    keys: &[Key],
    tag_supersets: bool,
) -> Result<HashSet<Key>, String> {
    let mut repair: HashSet<Key> = report
        .missing
        .iter()
        .map(|(k, _)| k)
        .chain(report.extra.iter().map(|(k, _)| k))
        .chain(report.differing.iter().map(|(k, _, _)| k))
        .cloned()
        .collect();
    if !tag_supersets || repair.is_empty() {
        return Ok(repair);
    }
    let buckets: HashSet<i64> = repair.iter().map(|(_, b)| *b).collect();
    let mut in_bucket: HashMap<i64, Vec<(Series, &Key)>> = HashMap::new();
    for key in keys.iter().filter(|(_, b)| buckets.contains(b)) {
        in_bucket
            .entry(key.1)
            .or_default()
            .push((Series::parse(&key.0)?, key));
    }
    let damaged: Vec<Key> = repair.iter().cloned().collect();
    for (series, bucket) in damaged {
        let series = Series::parse(&series)?;
        for (other, key) in in_bucket.get(&bucket).into_iter().flatten() {
            let more_tags = other.measurement == series.measurement
                && other.tags.len() > series.tags.len()
                && series.tags.iter().all(|t| other.tags.contains(t));
            if more_tags {
                repair.insert((*key).clone());
            }
        }
    }
    Ok(repair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summaries(points: &[(&str, i64, f64)]) -> Vec<(Key, Summary)> {
        let mut s = Summaries::new(3_600_000_000_000);
        for (series, time, v) in points {
            s.add(series, *time, [("f", Canonical::Float(*v))]);
        }
        let mut v = s.into_vec();
        v.sort();
        v
    }

    #[test]
    fn summaries_do_not_depend_on_order_and_see_any_change() {
        let a = summaries(&[("s", 1, 1.0), ("s", 2, 2.0), ("t", 1, 3.0)]);
        let b = summaries(&[("t", 1, 3.0), ("s", 2, 2.0), ("s", 1, 1.0)]);
        assert_eq!(a, b);
        assert_ne!(a, summaries(&[("s", 1, 1.0), ("s", 2, 2.5), ("t", 1, 3.0)]));
        assert_ne!(a, summaries(&[("s", 1, 1.0), ("s", 3, 2.0), ("t", 1, 3.0)]));
        assert_eq!(a[0].1.count, 2);
        assert_eq!((a[0].1.first, a[0].1.last), (1, 2));
    }

    #[test]
    fn a_series_key_parses_back_into_its_measurement_and_tags() {
        let key = series_key(
            "root.sg.`a,b=c`",
            [("z", "1"), ("k,=\\", "v=,\\w"), ("empty", "")].into_iter(),
        );
        assert_eq!(key, r"root.sg.`a\,b\=c`,k\,\=\\=v\=\,\\w,z=1");
        assert_eq!(
            Series::parse(&key).unwrap(),
            Series {
                measurement: "root.sg.`a,b=c`".into(),
                tags: vec![("k,=\\".into(), "v=,\\w".into()), ("z".into(), "1".into())],
            }
        );
        let plain = series_key(
            "sensors",
            [("site", "s-1"), ("device_id", "d-1")].into_iter(),
        );
        assert_eq!(plain, "sensors,device_id=d-1,site=s-1");
        assert_eq!(Series::parse("m").unwrap().tags, vec![]);
        assert!(Series::parse("m,k").is_err());
        assert!(Series::parse("m\\").is_err());
    }

    #[test]
    fn repair_takes_the_damaged_keys_and_where_deletes_take_more_tags_those_series_too() {
        let s = Summary {
            count: 1,
            first: 0,
            last: 0,
            checksum: 7,
        };
        let key = |series: &str, bucket: i64| (series.to_string(), bucket);
        let keys = vec![
            key("m,a=1", 0),
            key("m,a=1", 10),
            key("m,a=1,b=2", 0),
            key("m,a=1,b=2", 10),
            key("m,a=2,b=2", 0),
            key("n,a=1,b=2", 0),
            key("m,b=2", 0),
        ];
        let report = Report {
            missing: vec![(key("m,a=1", 0), s)],
            extra: vec![(key("m,b=2", 0), s)],
            ..Report::default()
        };
        let mut exact: Vec<Key> = repair_keys(&report, &keys, false)
            .unwrap()
            .into_iter()
            .collect();
        exact.sort();
        assert_eq!(exact, vec![key("m,a=1", 0), key("m,b=2", 0)]);
        let mut wider: Vec<Key> = repair_keys(&report, &keys, true)
            .unwrap()
            .into_iter()
            .collect();
        wider.sort();
        assert_eq!(
            wider,
            vec![
                key("m,a=1", 0),
                key("m,a=1,b=2", 0),
                key("m,a=2,b=2", 0),
                key("m,b=2", 0)
            ]
        );
    }

    #[test]
    fn leftovers_are_classified_by_side() {
        let s = Summary {
            count: 1,
            first: 0,
            last: 0,
            checksum: 7,
        };
        let t = Summary { checksum: 8, ..s };
        let keys: Vec<Key> = vec![
            ("a".into(), 0),
            ("b".into(), 0),
            ("c".into(), 0),
            ("d".into(), 0),
        ];
        let report = Report::classify(
            &keys,
            vec![
                (("b".into(), 0), s, 1),
                (("c".into(), 0), t, -1),
                (("d".into(), 0), s, 1),
                (("d".into(), 0), t, -1),
            ],
        );
        assert_eq!(report.matching, 1);
        assert_eq!(report.missing, vec![(("b".into(), 0), s)]);
        assert_eq!(report.extra, vec![(("c".into(), 0), t)]);
        assert_eq!(report.differing, vec![(("d".into(), 0), s, t)]);
        assert!(!report.is_clean());
        assert!(report
            .render(5)
            .contains("1 matching, 1 missing in target, 1 extra in target, 1 differing"));
    }
}
