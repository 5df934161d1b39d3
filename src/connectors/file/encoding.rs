//! A file's lines read back: what recovery keeps of a file a crash left open.
//!
//! The lines are InfluxDB line protocol, one point a line, written by the shared batch
//! ([`crate::sink::line_protocol::LineBatch`], keeping each line's point time for the
//! file's name), so this connector needs no other connector's feature. Reading back uses
//! InfluxData's own parser ([`influxdb_line_protocol`]), the one the ingest endpoint reads
//! clients with: a file recovery keeps is a file InfluxDB, Telegraf or the ingest endpoint
//! reads whole.

use crate::job::TimeUnit;

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
    use crate::model::{Name, Point, Value};
    use crate::sink::line_protocol::{Encoding, LineBatch};
    use crate::sink::Batch;

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

    fn lines(points: &[Point]) -> LineBatch {
        let mut lines = LineBatch::with_times(MS, 10);
        for p in points {
            lines.push(p).unwrap();
        }
        lines
    }

    #[test]
    fn whole_lines_are_kept_and_a_torn_tail_is_cut() {
        let batch = lines(&[point(30, "x"), point(10, "two\nlines"), point(20, "z")]);
        let body = batch.body();
        let whole = whole_lines(body, TimeUnit::Millis);
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
