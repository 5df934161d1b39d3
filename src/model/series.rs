//! A series and its key: the one definition every part of tsmig names a series by (the
//! exchange routes on its hash, verify summarises by it, `verify --repair` deletes by it).
//!
//! The key is the measurement (or IoTDB device path) and the tags sorted by key,
//! `measurement,key=value,...`, empty tags left out (InfluxDB has none). A `,`, `=` or `\`
//! inside a name or value gets a backslash before it, so that [`Series::parse`] gives back
//! exactly the measurement and tags. Names without those characters read as they are.
//! [`series_hash`] hashes the same bytes without building the text.

use super::{Name, Text};

/// Where the key's bytes go: a `String`, or a hasher.
trait KeyBytes {
    fn put(&mut self, bytes: &[u8]);

    /// Puts `text` with a backslash before each `,`, `=` and `\`.
    fn put_escaped(&mut self, text: &str)
    where
        Self: Sized,
    {
        escaped_in_pieces(self, text);
    }
}

/// `text` with a backslash before each `,`, `=` and `\`, put piece by piece.
fn escaped_in_pieces(out: &mut impl KeyBytes, text: &str) {
    let mut start = 0;
    for (at, b) in text.bytes().enumerate() {
        if matches!(b, b',' | b'=' | b'\\') {
            out.put(&text.as_bytes()[start..at]);
            out.put(b"\\");
            start = at;
        }
    }
    out.put(&text.as_bytes()[start..]);
}

impl KeyBytes for String {
    fn put(&mut self, bytes: &[u8]) {
        // Only whole UTF-8 text and ASCII punctuation are ever put.
        self.push_str(std::str::from_utf8(bytes).unwrap_or_default());
    }
}

/// A key's bytes on their way to xxh3: gathered on the stack and hashed in one call (the
/// streaming hasher costs more than the hashing for a key's many small pieces), streamed
/// only past the buffer. The hash is xxh3 of the bytes either way.
struct KeyHasher {
    buffer: [u8; 192],
    len: usize,
    stream: Option<Box<xxhash_rust::xxh3::Xxh3>>,
}

impl KeyHasher {
    fn new() -> Self {
        Self {
            buffer: [0; 192],
            len: 0,
            stream: None,
        }
    }

    fn digest(&self) -> u64 {
        match &self.stream {
            None => xxhash_rust::xxh3::xxh3_64(&self.buffer[..self.len]),
            Some(stream) => {
                let mut stream = stream.clone();
                stream.update(&self.buffer[..self.len]);
                stream.digest()
            }
        }
    }
}

impl KeyBytes for KeyHasher {
    /// Byte by byte into the buffer while it has room for the worst case (every byte
    /// escaped): a key's pieces are short, a copy call each cost more than the loop.
    #[inline]
    fn put_escaped(&mut self, text: &str) {
        if self.len + 2 * text.len() > self.buffer.len() {
            return escaped_in_pieces(self, text);
        }
        // Names and values rarely need an escape: checked first, then copied at once.
        let bytes = text.as_bytes();
        if !bytes.iter().any(|&b| matches!(b, b',' | b'=' | b'\\')) {
            self.buffer[self.len..self.len + bytes.len()].copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        for b in text.bytes() {
            if matches!(b, b',' | b'=' | b'\\') {
                self.buffer[self.len] = b'\\';
                self.len += 1;
            }
            self.buffer[self.len] = b;
            self.len += 1;
        }
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let (at, n) = (self.len, bytes.len());
        if (4..=16).contains(&n) && at + 16 <= self.buffer.len() {
            // Short pieces (most) as two fixed-size copies that overlap, in registers: a
            // copy call for a few bytes cost more than the hashing.
            if n >= 8 {
                self.buffer[at..at + 8].copy_from_slice(&bytes[..8]);
                self.buffer[at + n - 8..at + n].copy_from_slice(&bytes[n - 8..]);
            } else {
                self.buffer[at..at + 4].copy_from_slice(&bytes[..4]);
                self.buffer[at + n - 4..at + n].copy_from_slice(&bytes[n - 4..]);
            }
            self.len += n;
            return;
        }
        if at + n <= self.buffer.len() {
            self.buffer[at..at + n].copy_from_slice(bytes);
            self.len += n;
            return;
        }
        let stream = self
            .stream
            .get_or_insert_with(|| Box::new(xxhash_rust::xxh3::Xxh3::new()));
        stream.update(&self.buffer[..self.len]);
        self.len = 0;
        if bytes.len() > self.buffer.len() {
            stream.update(bytes);
        } else {
            self.buffer[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }
}

/// Writes the key of a series whose tags are already sorted by key.
fn write_key<'a>(
    out: &mut impl KeyBytes,
    measurement: &str,
    sorted_tags: impl Iterator<Item = (&'a str, &'a str)>,
) {
    out.put_escaped(measurement);
    for (k, v) in sorted_tags.filter(|(_, v)| !v.is_empty()) {
        out.put(b",");
        out.put_escaped(k);
        out.put(b"=");
        out.put_escaped(v);
    }
}

/// The key of the series `measurement` with `tags` (in any order).
pub fn series_key<'a>(measurement: &str, tags: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut tags: Vec<(&str, &str)> = tags.collect();
    tags.sort();
    let mut key = String::with_capacity(measurement.len() + 16 * tags.len());
    write_key(&mut key, measurement, tags.into_iter());
    key
}

/// The hash of [`series_key`] (xxh3, as every device key), computed from tags sorted by
/// key without building the text: what the exchange routes a series by when it has no
/// device column.
pub fn series_hash(measurement: &str, sorted_tags: &[(Name, Text)]) -> u64 {
    let mut h = KeyHasher::new();
    write_key(
        &mut h,
        measurement,
        sorted_tags.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    h.digest()
}

/// The hash of a point's identity in the target: its series (measurement, and tags sorted
/// by key, none empty) and its time. Not the series key's text: each name and value goes
/// with its length before it, as unambiguous as the key's escaping without looking at
/// every byte; the hash is only ever compared within one process.
pub(super) fn point_hash(measurement: &str, sorted_tags: &[(Name, Text)], time: i64) -> u64 {
    let mut h = KeyHasher::new();
    let mut sized = |text: &str| {
        h.put(&(text.len() as u32).to_le_bytes());
        h.put(text.as_bytes());
    };
    sized(measurement);
    for (k, v) in sorted_tags.iter().filter(|(_, v)| !v.is_empty()) {
        sized(k.as_str());
        sized(v.as_str());
    }
    h.put(&time.to_le_bytes());
    h.digest()
}

/// A series as [`series_key`] names it: measurement (or device path) and tags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Series {
    /// InfluxDB measurement; IoTDB device path.
    pub measurement: String,
    /// Tags sorted by key, none empty.
    pub tags: Vec<(String, String)>,
}

impl Series {
    /// The series a [`series_key`] names.
    pub fn parse(key: &str) -> Result<Series, String> {
        let mut parts = split_unescaped(key, ',').into_iter();
        let measurement = unescape(parts.next().unwrap_or_default());
        let tags = parts
            .map(|tag| match split_unescaped(tag, '=').as_slice() {
                [k, v] => Ok((unescape(k), unescape(v))),
                _ => Err(format!(
                    "series key {key:?} has a tag that is not key=value"
                )),
            })
            .collect::<Result<_, _>>()?;
        let lone_backslash = key.chars().fold(false, |escaped, c| !escaped && c == '\\');
        if lone_backslash {
            return Err(format!("series key {key:?} ends in a lone backslash"));
        }
        Ok(Series { measurement, tags })
    }
}

/// `text` cut at each `separator` without a backslash before it; the parts keep their
/// escapes.
fn split_unescaped(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == separator {
            parts.push(&text[start..at]);
            start = at + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `text` without the backslash of each escape.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_the_hash_of_the_key_text() {
        let tags = vec![
            (Name::from("a,b"), Text::from("x=y")),
            (Name::from("site"), Text::default()),
            (Name::from("z"), Text::from("back\\slash")),
        ];
        let key = series_key("m 1", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(key, "m 1,a\\,b=x\\=y,z=back\\\\slash");
        assert_eq!(
            series_hash("m 1", &tags),
            xxhash_rust::xxh3::xxh3_64(key.as_bytes())
        );
        assert_ne!(point_hash("m 1", &tags, 1), point_hash("m 1", &tags, 2));
    }

    #[test]
    fn long_keys_hash_as_their_text_too() {
        // Past the stack buffer the bytes are streamed: the hash stays xxh3 of the text.
        for len in [0, 1, 150, 191, 192, 193, 400, 5000] {
            let value = "v".repeat(len);
            let tags = vec![
                (Name::from("k"), Text::from(value.as_str())),
                (Name::from("z"), Text::from("=".repeat(len / 3))),
            ];
            let key = series_key("m", tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            assert_eq!(
                series_hash("m", &tags),
                xxhash_rust::xxh3::xxh3_64(key.as_bytes()),
                "{len}"
            );
            assert_eq!(
                point_hash("m", &tags, 7),
                xxhash_rust::xxh3::xxh3_64(&sized_pieces("m", &tags, 7)),
                "{len}"
            );
        }
    }

    /// What `point_hash` hashes, written out plainly.
    fn sized_pieces(measurement: &str, tags: &[(Name, Text)], time: i64) -> Vec<u8> {
        let mut bytes = Vec::new();
        let pieces = tags
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .flat_map(|(k, v)| [k.as_str(), v.as_str()]);
        for piece in std::iter::once(measurement).chain(pieces) {
            bytes.extend_from_slice(&(piece.len() as u32).to_le_bytes());
            bytes.extend_from_slice(piece.as_bytes());
        }
        bytes.extend_from_slice(&time.to_le_bytes());
        bytes
    }

    #[test]
    fn a_point_hash_is_its_sized_pieces_and_tells_apart_what_escaping_did() {
        // Pieces of every length around the short copies' bounds (4, 8, 16) and the
        // buffer's, with and without an empty tag.
        for len in [0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 40, 180, 200, 1000] {
            let tags = vec![
                (Name::from("a"), Text::from("x".repeat(len).as_str())),
                (Name::from("e"), Text::default()),
                (Name::from("k".repeat(len % 19).as_str()), Text::from("v=,")),
            ];
            let mut sorted = tags.clone();
            sorted.sort();
            assert_eq!(
                point_hash("m", &sorted, -3),
                xxhash_rust::xxh3::xxh3_64(&sized_pieces("m", &sorted, -3)),
                "{len}"
            );
        }
        // Where names and values run together, the lengths keep them apart.
        let one = [(Name::from("a,b"), Text::from("c"))];
        let two = [(Name::from("a"), Text::from("b,c"))];
        assert_ne!(point_hash("m", &one, 1), point_hash("m", &two, 1));
        let empty = [(Name::from("a"), Text::default())];
        assert_eq!(point_hash("m", &empty, 1), point_hash("m", &[], 1));
    }

    #[test]
    fn a_key_parses_back_into_its_series() {
        let key = series_key("m,1", [("k=", "v\\"), ("a", "b")].into_iter());
        assert_eq!(
            Series::parse(&key).unwrap(),
            Series {
                measurement: "m,1".into(),
                tags: vec![("a".into(), "b".into()), ("k=".into(), "v\\".into())],
            }
        );
        assert!(Series::parse("m,broken").is_err());
    }
}
