//! The job file's primitives: errors that name the file, line and key, durations, `${ENV}`
//! references and the secrets they bring, where each key sits, and the `type:`-tagged
//! sections (`source:`, `sink:`) that each connector parses itself.
//!
//! A leaf: it imports nothing of the project, so the job, the connectors and the runner
//! can all build on it.

pub mod env;
pub mod locate;

pub use env::{mask_urls, Secrets};
pub use locate::Locations;

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// An error in a job file, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// The job file.
    pub file: PathBuf,
    /// 1-based line and column, when known.
    pub place: Option<(usize, usize)>,
    /// The key path, e.g. `source.tables[0].chunk_rows`.
    pub key: Option<String>,
    /// What is wrong (secrets already masked).
    pub message: String,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, column)) = self.place {
            write!(f, ":{line}:{column}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for JobError {}

/// A YAML file parsed by [`parse_yaml`], with what later checks need to place their
/// errors and mask their messages.
#[derive(Debug)]
pub struct Parsed<T> {
    /// The file's content.
    pub value: T,
    /// Key path → line, for errors found after parsing.
    pub locations: Locations,
    /// Values substituted from the environment, and secrets written in the file.
    pub secrets: Secrets,
}

/// Parses a file of `${ENV}`-referencing YAML (the job file, `config/tsmig.yaml`):
/// substitutes the references (`lookup` resolves them), indexes where each key sits and
/// deserialises `T`. Every error names the file, line and key, with secrets masked.
pub fn parse_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Parsed<T>, JobError> {
    let substituted = env::substitute(text, lookup).map_err(|e| JobError {
        file: path.to_path_buf(),
        place: Some((e.line, e.column)),
        key: None,
        message: e.message,
    })?;
    let locations = Locations::index(&substituted.text);
    let mut secrets = substituted.secrets;
    secrets.add_written(&substituted.text);
    let deserializer = serde_yaml::Deserializer::from_str(&substituted.text);
    let value = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (key, message) = describe_serde_error(&key, &inner.to_string());
        let place = key
            .as_deref()
            .and_then(|k| locations.find(k))
            .or_else(|| inner.location().map(|l| (l.line(), l.column())));
        JobError {
            file: path.to_path_buf(),
            place,
            key,
            message: secrets.redact(&message),
        }
    })?;
    Ok(Parsed {
        value,
        locations,
        secrets,
    })
}

/// What can turn a key path and a message into a [`JobError`] placed in its file: the
/// loaded job.
pub trait ErrorAt {
    /// An error about the key at `key` (a path such as `mappings[0].fields[2]`).
    fn error_at(&self, key: &str, message: String) -> JobError;
}

/// Deserialises `"1s"`, `"250ms"`, `"2m"` into a [`Duration`].
pub fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text)
        .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e})")))
}

/// Deserialises an optional duration (`"90d"`).
pub fn duration_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A `type:`-tagged section of a job file (`source:`, `sink:`): its type, and the rest of
/// its keys, which the connector of that type parses and checks itself
/// ([`Section::parse`]), with errors that name the key and its line as if the section had
/// been parsed with the file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Section {
    /// Where it sits in the file: `source`, `sink`.
    pub at: String,
    /// Its `type:`.
    pub kind: String,
    /// Every other key.
    pub body: serde_yaml::Mapping,
}

impl<'de> Deserialize<'de> for Section {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut body = serde_yaml::Mapping::deserialize(d)?;
        let kind = match body.remove("type") {
            Some(serde_yaml::Value::String(kind)) => kind,
            Some(_) => return Err(D::Error::custom("`type` must be text")),
            None => return Err(D::Error::custom("missing field `type`")),
        };
        Ok(Section {
            at: String::new(),
            kind,
            body,
        })
    }
}

impl Section {
    /// The section's keys as `T` (a connector's `deny_unknown_fields` struct). An error
    /// names the key inside the section, e.g. `source.tables[0].chunk_size`.
    pub fn parse<T: serde::de::DeserializeOwned>(&self, job: &dyn ErrorAt) -> Result<T, JobError> {
        let body = serde_yaml::Value::Mapping(self.body.clone());
        serde_path_to_error::deserialize(body).map_err(|e| {
            let path = e.path().to_string();
            let (inner, message) = describe_serde_error(&path, &e.into_inner().to_string());
            let key = match inner {
                Some(inner) if inner.starts_with('[') => format!("{}{inner}", self.at),
                Some(inner) => format!("{}.{inner}", self.at),
                None => self.at.clone(),
            };
            job.error_at(&key, message)
        })
    }

    /// The section split in two: the keys named in `keys` (settings several connectors
    /// share, such as batching) and the rest (the connector's own).
    pub fn split(&self, keys: &[&str]) -> (Section, Section) {
        let (shared, own): (serde_yaml::Mapping, serde_yaml::Mapping) = self
            .body
            .clone()
            .into_iter()
            .partition(|(k, _)| k.as_str().is_some_and(|k| keys.contains(&k)));
        let part = |body| Section {
            at: self.at.clone(),
            kind: self.kind.clone(),
            body,
        };
        (part(own), part(shared))
    }
}

/// serde's message (without its `at line` suffix) and the key it is about, if any: the
/// path serde reports, with the key of an unknown field appended so the error points at
/// the unknown key itself.
pub fn describe_serde_error(path: &str, message: &str) -> (Option<String>, String) {
    let message = message
        .split(" at line ")
        .next()
        .unwrap_or(message)
        .to_string();
    let path = if path == "." {
        String::new()
    } else {
        path.to_string()
    };
    let join = |name: &str| {
        if path.is_empty() {
            name.to_string()
        } else if name.starts_with('[') {
            format!("{path}{name}")
        } else {
            format!("{path}.{name}")
        }
    };
    // serde_yaml puts the path of the map it was in before a custom error's message
    // (`restart: ...`); the key already says where.
    let message = match message.split_once(": ") {
        Some((head, rest))
            if !head.is_empty()
                && !head.contains(' ')
                && path
                    .strip_prefix(head)
                    .is_some_and(|after| after.is_empty() || after.starts_with(['.', '['])) =>
        {
            rest.to_string()
        }
        _ => message,
    };
    let key = if let Some(rest) = message.strip_prefix("unknown field `") {
        // Some deserializers put the unknown key in the path already, some do not.
        let name = rest.split('`').next().unwrap_or_default();
        let already = path == name || path.ends_with(&format!(".{name}"));
        Some(if already { path.clone() } else { join(name) })
    } else if path.is_empty() {
        None
    } else {
        Some(path)
    };
    (key, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_loses_the_path_serde_yaml_put_before_it() {
        assert_eq!(
            describe_serde_error("restart.attempts", "restart: `many` is not a number"),
            (
                Some("restart.attempts".to_string()),
                "`many` is not a number".to_string()
            )
        );
        assert_eq!(
            describe_serde_error(
                "mappings[0].on_update",
                "mappings[0]: `x` is not one of a, b"
            ),
            (
                Some("mappings[0].on_update".to_string()),
                "`x` is not one of a, b".to_string()
            )
        );
        // serde's own words stay.
        assert_eq!(
            describe_serde_error(
                "workers",
                "invalid type: string \"two\", expected usize at line 1 column 10"
            )
            .1,
            "invalid type: string \"two\", expected usize"
        );
        assert_eq!(
            describe_serde_error("restarts", "restart: x").1,
            "restart: x"
        );
    }
}
