//! File names: the final name of a closed file, the temp name of an open one, and both
//! read back — recovery finds the temp files a crashed run left, and a new run numbers its
//! files on from the last final one.
//!
//! ```text
//!  open:    .<prefix>-<pid>-<n>.lp.tmp          hidden, and not `*.lp`: no reader takes it
//!  closed:  <prefix>-<first time>-<seq>.lp      e.g. points-20260101T000000Z-000042.lp
//! ```
//!
//! `<first time>` is the earliest point time in the file (UTC, to the second), so a listing
//! sorts roughly by the data's time; `<seq>` counts the files closed in the directory under
//! this prefix, zero-padded to six digits, and makes the name unique.

/// The extension of a final file: line protocol.
pub const EXTENSION: &str = "lp";

/// The extension a temp file has after [`EXTENSION`].
const TEMP: &str = "tmp";

/// `<prefix>-<first time>-<seq>.lp` for a file whose earliest point is at `first_time` (ns).
pub fn final_name(prefix: &str, first_time: i64, seq: u64) -> String {
    let secs = first_time.div_euclid(1_000_000_000);
    let time = chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y%m%dT%H%M%SZ").to_string())
        // Outside chrono's range (not a time any source produces): the seconds themselves.
        .unwrap_or_else(|| format!("{secs}s"));
    format!("{prefix}-{time}-{seq:06}.{EXTENSION}")
}

/// The sequence number of `name` if it is a final file of `prefix`.
pub fn final_seq(prefix: &str, name: &str) -> Option<u64> {
    let rest = name
        .strip_prefix(prefix)?
        .strip_prefix('-')?
        .strip_suffix(EXTENSION)?
        .strip_suffix('.')?;
    let (time, seq) = rest.rsplit_once('-')?;
    let time_ok = time.len() == 16
        && time.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        });
    if !time_ok || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}

/// `.<prefix>-<pid>-<n>.lp.tmp`: the `n`th file process `pid` opened under `prefix`.
pub fn temp_name(prefix: &str, pid: u32, n: u64) -> String {
    format!(".{prefix}-{pid}-{n}.{EXTENSION}.{TEMP}")
}

/// Whether `name` is a temp file of `prefix` (of any process).
pub fn is_temp(prefix: &str, name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_prefix(prefix))
        .and_then(|n| n.strip_prefix('-'))
        .and_then(|n| n.strip_suffix(TEMP))
        .and_then(|n| n.strip_suffix('.'))
        .and_then(|n| n.strip_suffix(EXTENSION))
        .and_then(|n| n.strip_suffix('.'))
    else {
        return false;
    };
    let mut parts = rest.split('-');
    let numbers =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    numbers(parts.next()) && numbers(parts.next()) && parts.next().is_none()
}

/// Whether `prefix` can start a file name: letters, digits, `_`, `-` and `.`, not starting
/// with `.` (a hidden file) — nothing a shell or another system would read differently.
pub fn valid_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && !prefix.starts_with('.')
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_name_carries_the_first_time_and_the_sequence_and_reads_back() {
        // 2026-01-01T00:00:00.999Z: to the second.
        let t = 1_767_225_600_999_000_000;
        let name = final_name("points", t, 42);
        assert_eq!(name, "points-20260101T000000Z-000042.lp");
        assert_eq!(final_seq("points", &name), Some(42));
        assert_eq!(
            final_name("p", -1, 1_234_567),
            "p-19691231T235959Z-1234567.lp"
        );
        assert_eq!(
            final_seq("p", "p-19691231T235959Z-1234567.lp"),
            Some(1_234_567)
        );
    }

    #[test]
    fn only_this_prefixs_files_are_its_own() {
        let name = final_name("a", 0, 3);
        assert_eq!(final_seq("a", &name), Some(3));
        // Another prefix that starts the same way is another job's.
        let other = final_name("a-b", 0, 9);
        assert_eq!(final_seq("a", &other), None);
        for not_final in [
            "a-19700101T000000Z-.lp",
            "a-19700101T000000Z-7.csv",
            "a-1970010T000000Z-7.lp",
            "a-19700101T000000Z-7.lp.tmp",
            "a-19700101X000000Z-7.lp",
        ] {
            assert_eq!(final_seq("a", not_final), None, "{not_final}");
        }

        let temp = temp_name("a", 4242, 7);
        assert_eq!(temp, ".a-4242-7.lp.tmp");
        assert!(is_temp("a", &temp));
        assert!(!is_temp("a", &temp_name("a-b", 1, 2)));
        assert!(!is_temp("a-b", &temp));
        assert!(!is_temp("a", ".a-4242.lp.tmp"));
        assert!(!is_temp("a", ".a-4242-7.lp"));
        assert!(!is_temp("a", "a-4242-7.lp.tmp"));
    }

    #[test]
    fn a_prefix_is_a_plain_name() {
        for good in ["points", "sensors-2026", "a.b_c"] {
            assert!(valid_prefix(good), "{good}");
        }
        for bad in ["", ".hidden", "a/b", "a b", "é", "a*"] {
            assert!(!valid_prefix(bad), "{bad}");
        }
    }
}
