//! `${VAR}` references in a job file: secrets and per-machine settings come from the
//! environment, never from the file itself.
//!
//! Syntax (as in Vector and Docker Compose): `${VAR}`, `${VAR:-default}` (default when
//! unset or empty), and `$${` for a literal `${`. References inside YAML comments are left
//! alone, so a commented-out key does not demand its variable. Every substituted value is
//! remembered so that error messages can be redacted before they are shown.

use std::collections::BTreeSet;

/// Values shorter than this are not masked: a short value ("root", IoTDB's default
/// password) would mask every occurrence of a common word and make messages unreadable,
/// and is no secret anyway.
const MIN_SECRET_CHARS: usize = 5;

/// Keys whose values are secret, or may carry one (a URL with a password in it).
fn is_secret_key(line: &str) -> bool {
    let key = line
        .trim_start()
        .trim_start_matches("- ")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    [
        "password",
        "token",
        "secret",
        "key",
        "url",
        "dsn",
        "credential",
    ]
    .iter()
    .any(|k| key.contains(k))
}

/// The text with every reference replaced, and the values that were substituted.
#[derive(Debug)]
pub struct Substituted {
    /// The job file text after substitution.
    pub text: String,
    /// Substituted values, to be masked in anything printed.
    pub secrets: Secrets,
}

/// Values that came from the environment; [`Secrets::redact`] masks them in a message.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: BTreeSet<String>,
}

impl Secrets {
    /// Replaces every substituted value in `message` with `***`.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        // Longest first, so a value that contains another is masked whole.
        let mut values: Vec<&String> = self.values.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in values {
            out = out.replace(value.as_str(), "***");
        }
        out
    }
}

/// A reference that could not be resolved.
#[derive(Debug, PartialEq, Eq)]
pub struct EnvError {
    /// 1-based line of the reference.
    pub line: usize,
    /// 1-based column of the `$`.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Substitutes `${VAR}` references using `lookup` (the process environment in production).
pub fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Substituted, EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut secrets = Secrets::default();
    for (line_index, line) in text.split_inclusive('\n').enumerate() {
        let comment_at = comment_start(line);
        let (code, comment) = line.split_at(comment_at);
        let mut rest = code;
        let mut column = 1;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            column += rest[..at].chars().count();
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("$${") {
                out.push_str("${");
                rest = after;
                column += 3;
                continue;
            }
            let Some(body_start) = tail.strip_prefix("${") else {
                out.push('$');
                rest = &tail[1..];
                column += 1;
                continue;
            };
            let Some(end) = body_start.find('}') else {
                return Err(EnvError {
                    line: line_index + 1,
                    column,
                    message: "`${` without a closing `}`".into(),
                });
            };
            let body = &body_start[..end];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if name.is_empty()
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || name.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(EnvError {
                    line: line_index + 1,
                    column,
                    message: format!("`${{{body}}}` is not a valid variable reference"),
                });
            }
            let value = match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(v), _) => {
                    if is_secret_key(line) && v.chars().count() >= MIN_SECRET_CHARS {
                        secrets.values.insert(v.clone());
                    }
                    v
                }
                (None, Some(d)) => d.to_string(),
                (None, None) => {
                    return Err(EnvError {
                        line: line_index + 1,
                        column,
                        message: format!("environment variable {name} is not set"),
                    })
                }
            };
            out.push_str(&value);
            column += body.chars().count() + 3;
            rest = &body_start[end + 1..];
        }
        out.push_str(rest);
        out.push_str(comment);
    }
    Ok(Substituted { text: out, secrets })
}

/// Byte offset where a YAML comment starts on this line (the line's length if none): a `#`
/// at the start or after white space, outside quotes.
fn comment_start(line: &str) -> usize {
    let mut quote: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == '#' && previous.is_whitespace() => return i,
            None => {}
        }
        previous = c;
    }
    line.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PW" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_references_and_remembers_values() {
        let s = substitute("url: mysql://u:${PW}@h/db\n", env).unwrap();
        assert_eq!(s.text, "url: mysql://u:s3cret@h/db\n");
        assert_eq!(
            s.secrets.redact("failed for u:s3cret@h"),
            "failed for u:***@h"
        );
    }

    #[test]
    fn defaults_and_escapes() {
        let s = substitute("a: ${NOPE:-xyz}\nb: ${EMPTY:-y}\nc: $${PW}\nd: $5\n", env).unwrap();
        assert_eq!(s.text, "a: xyz\nb: y\nc: ${PW}\nd: $5\n");
        // Defaults are written in the file: they are no secret.
        assert_eq!(s.secrets.redact("xyz"), "xyz");
    }

    #[test]
    fn unset_variable_names_it_and_its_place() {
        let err = substitute("name: x\n  token: ${INFLUX_TOKEN}\n", env).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.column, 10);
        assert_eq!(err.message, "environment variable INFLUX_TOKEN is not set");
    }

    #[test]
    fn comments_are_not_substituted() {
        let text = "  # token: ${INFLUX_TOKEN}\nurl: \"a#${PW}\" # ${NOPE}\n";
        let s = substitute(text, env).unwrap();
        assert_eq!(
            s.text,
            "  # token: ${INFLUX_TOKEN}\nurl: \"a#s3cret\" # ${NOPE}\n"
        );
    }

    #[test]
    fn malformed_reference_is_an_error() {
        assert!(substitute("a: ${PW\n", env).is_err());
        assert!(substitute("a: ${P-W}\n", env).is_err());
    }
}
