//! Where a key sits in a job file, so every error can name the file, line and key.
//!
//! serde reports the key path of an error (`source.tables[0].chunk_rows`) but loses the
//! line inside tagged enums; this index maps each key path to the line and column of the
//! key, built once from the YAML event stream.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Key path (`a.b[2].c`) → (1-based line, 1-based column).
#[derive(Debug, Default, Clone)]
pub struct Locations {
    places: HashMap<String, (usize, usize)>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index (serde then
    /// reports the syntax error with its own position).
    pub fn index(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return Self::default();
        }
        Self {
            places: builder.places,
        }
    }

    /// The place of `path` itself, if the file writes that key: whether it was set at all.
    pub fn get(&self, path: &str) -> Option<(usize, usize)> {
        self.places.get(path).copied()
    }

    /// The place of `path`, or of its nearest ancestor that is known.
    pub fn find(&self, path: &str) -> Option<(usize, usize)> {
        let mut path = path;
        loop {
            if let Some(place) = self.places.get(path) {
                return Some(*place);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        keys_seen: usize,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    places: HashMap<String, (usize, usize)>,
}

impl Builder {
    /// The path of the value that starts now, and records it if it is a sequence item.
    fn value_path(&mut self, mark: Marker) -> Option<String> {
        match self.stack.last_mut()? {
            Frame::Map { key, .. } => key.take(),
            Frame::Seq { path, next } => {
                let item = format!("{path}[{next}]");
                *next += 1;
                self.places
                    .insert(item.clone(), (mark.line(), mark.col() + 1));
                Some(item)
            }
        }
    }

    fn join(parent: &str, key: &str) -> String {
        if parent.is_empty() {
            key.to_string()
        } else {
            format!("{parent}.{key}")
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map {
                    path,
                    key: key @ None,
                    keys_seen,
                }) = self.stack.last_mut()
                {
                    let full = Self::join(path, &value);
                    let place = (mark.line(), mark.col() + 1);
                    self.places.insert(full.clone(), place);
                    // A list item's place is its first key (the parser marks a mapping's start oddly).
                    if *keys_seen == 0 && path.ends_with(']') {
                        self.places.insert(path.clone(), place);
                    }
                    *keys_seen += 1;
                    *key = Some(full);
                } else {
                    self.value_path(mark);
                }
            }
            Event::MappingStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Map {
                    path,
                    key: None,
                    keys_seen: 0,
                });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(mark).unwrap_or_default();
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.value_path(mark);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name: x\nsource:\n  type: mysql\n  tables:\n    - name: t\n      split_by: id\n    - name: u\nmappings:\n  - fields: [a, b]\n";

    #[test]
    fn finds_nested_keys_and_items() {
        let l = Locations::index(TEXT);
        assert_eq!(l.find("name"), Some((1, 1)));
        assert_eq!(l.find("source.type"), Some((3, 3)));
        assert_eq!(l.find("source.tables[0].split_by"), Some((6, 7)));
        assert_eq!(l.find("source.tables[1].name"), Some((7, 7)));
        assert_eq!(l.find("mappings[0].fields[1]"), Some((9, 17)));
    }

    #[test]
    fn get_knows_only_keys_the_file_writes() {
        let l = Locations::index("restart: {strategy: none}\nflow:\n  epoch: 5ms\n");
        assert_eq!(l.get("restart.strategy"), Some((1, 11)));
        assert_eq!(l.get("flow.epoch"), Some((3, 3)));
        assert_eq!(l.get("restart.initial"), None);
        assert_eq!(l.get("flow.max_in_flight_rows"), None);
    }

    #[test]
    fn unknown_path_falls_back_to_its_parent() {
        let l = Locations::index(TEXT);
        assert_eq!(l.find("source.tables[0].nope"), Some((5, 7)));
        assert_eq!(l.find("nothing.at.all"), None);
    }
}
