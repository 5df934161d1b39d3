//! Points → the lines one append writes, and a file's lines read back: what recovery keeps
//! of a file a crash left open.
//!
//! The lines are InfluxDB line protocol from the shared encoder
//! ([`crate::sink::line_protocol`]), one point a line, so this connector needs no other
//! connector's feature. Reading back uses InfluxData's own parser
//! ([`influxdb_line_protocol`]), the one the ingest endpoint reads clients with: a file
//! recovery keeps is a file InfluxDB, Telegraf or the ingest endpoint reads whole.

use crate::job::TimeUnit;
use crate::model::Point;
use crate::sink::line_protocol::{encode_point, Encoding};
use crate::sink::Batch;
use std::sync::Arc;

/// Lines of line protocol for one append, and each one's point time.
///
/// The body is shared with the blocking task that writes it rather than copied; once the
/// write is done the batch is the only owner again, and the buffer is reused.
pub struct Lines {
    encoding: Encoding,
    pub(super) body: Arc<Vec<u8>>,
    /// Offset just past each line's newline.
    ends: Vec<usize>,
    /// Each line's point time, ns (the earliest names the file).
    times: Vec<i64>,
}

impl Lines {
    /// An empty batch of lines written with `encoding`.
    pub fn new(encoding: Encoding, capacity: usize) -> Self {
        Self {
            encoding,
            body: Arc::new(Vec::with_capacity(capacity.min(100_000) * 96)),
            ends: Vec::with_capacity(capacity.min(100_000)),
            times: Vec::with_capacity(capacity.min(100_000)),
        }
    }

    /// The earliest point time in the batch, ns.
    pub fn first_time(&self) -> Option<i64> {
        self.times.iter().copied().min()
    }

    fn body_mut(&mut self) -> &mut Vec<u8> {
        // Unique except while a write is out, when nothing is pushed or cut.
        Arc::make_mut(&mut self.body)
    }
}

impl Batch for Lines {
    fn push(&mut self, point: &Point) -> Result<(), String> {
        let encoding = self.encoding;
        let body = self.body_mut();
        encode_point(body, point, encoding)?;
        let end = body.len();
        self.ends.push(end);
        self.times.push(point.time);
        Ok(())
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    fn bytes(&self) -> usize {
        self.body.len()
    }

    fn split(mut self) -> Option<(Self, Self)> {
        if self.ends.len() < 2 {
            return None;
        }
        let half = self.ends.len() / 2;
        let cut = self.ends[half - 1];
        let right = Lines {
            encoding: self.encoding,
            body: Arc::new(self.body[cut..].to_vec()),
            ends: self.ends[half..].iter().map(|e| e - cut).collect(),
            times: self.times.split_off(half),
        };
        self.body_mut().truncate(cut);
        self.ends.truncate(half);
        Some((self, right))
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let line = String::from_utf8_lossy(&self.body[start..end - 1]).into_owned();
                start = end;
                serde_json::Value::String(line)
            })
            .collect()
    }

    fn clear(&mut self) {
        self.body_mut().clear();
        self.ends.clear();
        self.times.clear();
    }
}

/// What a file's bytes hold: the longest prefix of whole lines that each parse as one point
/// with a time (in `precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeLines {
    /// Bytes of that prefix: where the file is cut.
    pub len: usize,
    /// Lines in it.
    pub lines: usize,
    /// The earliest point time among them, ns.
    pub first_time: Option<i64>,
}

/// The longest prefix of `bytes` made of whole lines that each parse as one point with a
/// time. A crash can leave a line half written at the end of a file (an append cut short);
/// everything before it was written whole. The first line that does not parse ends the
/// prefix, whatever follows: what a reader gets is only ever whole points.
///
/// Lines are split as InfluxDB splits them, so a newline inside a quoted string field does
/// not end a line.
pub fn whole_lines(bytes: &[u8], precision: TimeUnit) -> WholeLines {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        // A write cut inside a character; what precedes it is text.
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    };
    let mut whole = WholeLines {
        len: 0,
        lines: 0,
        first_time: None,
    };
    let base = text.as_ptr() as usize;
    for line in influxdb_line_protocol::split_lines(text) {
        let end = line.as_ptr() as usize - base + line.len();
        if end >= text.len() {
            // The last piece has no newline after it: an unfinished line, or nothing.
            break;
        }
        let mut parsed = influxdb_line_protocol::parse_lines(line);
        let time = match (parsed.next(), parsed.next()) {
            (Some(Ok(point)), None) => point
                .timestamp
                .and_then(|t| t.checked_mul(precision.nanos())),
            _ => None,
        };
        let Some(time) = time else { break };
        whole.len = end + 1;
        whole.lines += 1;
        whole.first_time = Some(whole.first_time.map_or(time, |t| t.min(time)));
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, Value};

    const MS: Encoding = Encoding {
        precision: TimeUnit::Millis,
        unsigned: true,
    };

    fn point(time_ms: i64, text: &str) -> Point {
        Point {
            measurement: Name::from("m"),
            tags: vec![(Name::from("d"), "a b".into())],
            fields: vec![
                (Name::from("v"), Value::UInt(time_ms as u64)),
                (Name::from("s"), Value::String(text.into())),
            ],
            time: time_ms * 1_000_000,
            device_hash: 0,
        }
    }

    fn lines(points: &[Point]) -> Lines {
        let mut lines = Lines::new(MS, 10);
        for p in points {
            lines.push(p).unwrap();
        }
        lines
    }

    #[test]
    fn a_batch_knows_its_earliest_time_and_splits_at_line_boundaries() {
        let batch = lines(&[point(30, "x"), point(10, "y"), point(20, "z")]);
        assert_eq!(batch.first_time(), Some(10_000_000));
        assert_eq!(
            String::from_utf8(batch.body.to_vec()).unwrap(),
            "m,d=a\\ b v=30u,s=\"x\" 30\nm,d=a\\ b v=10u,s=\"y\" 10\nm,d=a\\ b v=20u,s=\"z\" 20\n"
        );
        let (left, right) = batch.split().unwrap();
        assert_eq!(left.records(), vec!["m,d=a\\ b v=30u,s=\"x\" 30"]);
        assert_eq!(left.first_time(), Some(30_000_000));
        assert_eq!(right.len(), 2);
        assert_eq!(right.first_time(), Some(10_000_000));
        assert!(right.body.starts_with(b"m,d=a\\ b v=10u"));
    }

    #[test]
    fn whole_lines_are_kept_and_a_torn_tail_is_cut() {
        let body = lines(&[point(30, "x"), point(10, "two\nlines"), point(20, "z")]).body;
        let whole = whole_lines(&body, TimeUnit::Millis);
        assert_eq!(
            whole,
            WholeLines {
                len: body.len(),
                lines: 3,
                first_time: Some(10_000_000)
            },
            "a newline inside a string field does not end its line"
        );
        // A line cut anywhere is dropped with what follows, never kept in part.
        let second_end = body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(2)
            .unwrap()
            .0
            + 1;
        for cut in 0..body.len() {
            let whole = whole_lines(&body[..cut], TimeUnit::Millis);
            let first_end = body.iter().position(|b| *b == b'\n').unwrap() + 1;
            let expected = if cut >= second_end {
                (second_end, 2)
            } else if cut >= first_end {
                (first_end, 1)
            } else {
                (0, 0)
            };
            assert_eq!((whole.len, whole.lines), expected, "cut at {cut}");
        }
    }

    #[test]
    fn the_first_line_that_does_not_parse_ends_what_is_kept() {
        let good = "m v=1i 5\n";
        for (text, kept) in [
            (format!("{good}{good}"), 2),
            (format!("{good}\0\0\0\0\n{good}"), 1),
            (format!("{good}m v=1i\n{good}"), 1),
            (format!("{good}\n{good}"), 1),
            (format!("{good}m v=1i 5 6\n"), 1),
            (format!("{good}m v=1i 5"), 1),
        ] {
            let whole = whole_lines(text.as_bytes(), TimeUnit::Seconds);
            assert_eq!(whole.lines, kept, "{text:?}");
            assert_eq!(whole.len, kept * good.len(), "{text:?}");
            assert_eq!(whole.first_time, Some(5_000_000_000));
        }
        let mut torn = good.as_bytes().to_vec();
        torn.extend_from_slice("m s=\"é".as_bytes());
        torn.pop();
        assert_eq!(whole_lines(&torn, TimeUnit::Seconds).lines, 1);
        assert_eq!(whole_lines(b"", TimeUnit::Seconds).first_time, None);
    }
}
