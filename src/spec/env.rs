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

/// Whether a job-file line's key marks its value secret, or one that may carry a secret
/// (a URL with a password in it).
pub fn is_secret_key(line: &str) -> bool {
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

/// Query parameters whose values are secret (compared without case): tokens, passwords,
/// signatures, and InfluxDB 1.x's `u` and `p`.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "password",
    "passwd",
    "pwd",
    "pass",
    "p",
    "u",
    "secret",
    "api_key",
    "apikey",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
];

/// Keys whose literal values are secret wherever they are written.
const SECRET_KEYS: &[&str] = &["password", "token", "secret"];

/// The secrets of a job file: values substituted from the environment in secret keys, and
/// what the file itself writes in them (a password or token, a URL's userinfo password or
/// secret query parameter). [`Secrets::redact`] masks them, and every URL's secrets, in a
/// message.
#[derive(Clone, Debug, Default)]
pub struct Secrets {
    values: BTreeSet<String>,
}

impl Secrets {
    /// Replaces every secret value in `message` with `***`, and every URL's password and
    /// secret query parameters ([`mask_urls`]).
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        // Longest first, so a value that contains another is masked whole.
        let mut values: Vec<&String> = self.values.iter().collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        for value in values {
            out = out.replace(value.as_str(), "***");
        }
        mask_urls(&out)
    }

    /// Adds `value` (a token from the environment) as a secret, unless it is too short to
    /// mask safely.
    pub fn add(&mut self, value: &str) {
        if value.chars().count() >= MIN_SECRET_CHARS {
            self.values.insert(value.to_string());
        }
    }

    /// Adds every secret of `other` (the process configuration's to the job's).
    pub fn extend(&mut self, other: &Secrets) {
        self.values.extend(other.values.iter().cloned());
    }

    /// Adds the secrets `text` (a job file after substitution) writes literally: values of
    /// `password`/`token`/`secret` keys, and the passwords and secret query values of its
    /// URLs (percent-decoded too, as a client may show them).
    pub fn add_written(&mut self, text: &str) {
        let mut found: Vec<String> = Vec::new();
        for line in text.lines() {
            let code = &line[..comment_start(line)];
            let Some((key, value)) = code.split_once(':') else {
                continue;
            };
            let key = key.trim().trim_start_matches("- ").to_ascii_lowercase();
            let value = value.trim().trim_matches(['"', '\'']);
            if SECRET_KEYS.iter().any(|k| key.contains(k))
                && !value.starts_with(['{', '[', '|', '>', '&', '*'])
            {
                found.push(value.to_string());
            }
        }
        for span in secret_spans(text) {
            let value = &text[span];
            found.push(value.to_string());
            found.push(percent_decoded(value));
        }
        self.values.extend(
            found
                .into_iter()
                .filter(|v| v.chars().count() >= MIN_SECRET_CHARS),
        );
    }
}

/// `text` with the secrets of every URL in it masked: the userinfo password
/// (`http://user:***@host`) and the values of secret query parameters (`?token=***`,
/// `&p=***`).
pub fn mask_urls(text: &str) -> String {
    let spans = secret_spans(text);
    if spans.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for span in spans {
        out.push_str(&text[at..span.start]);
        out.push_str("***");
        at = span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where a URL's secrets are in `text`, in order, not overlapping.
fn secret_spans(text: &str) -> Vec<std::ops::Range<usize>> {
    let ends_url =
        |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>' | '/' | '?' | '#');
    let mut spans = Vec::new();
    for (i, _) in text.match_indices("://") {
        let start = i + 3;
        let end = text[start..]
            .find(ends_url)
            .map_or(text.len(), |e| start + e);
        let authority = &text[start..end];
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        if let Some(colon) = authority[..at].find(':') {
            if colon + 1 < at {
                spans.push(start + colon + 1..start + at);
            }
        }
    }
    for (i, _) in text.match_indices(['?', '&']) {
        let rest = &text[i + 1..];
        let Some(eq) = rest.find('=') else { continue };
        let name = &rest[..eq];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            || !SECRET_PARAMS.contains(&name.to_ascii_lowercase().as_str())
        {
            continue;
        }
        let start = i + 1 + eq + 1;
        let end = text[start..]
            .find(|c: char| {
                c.is_whitespace() || matches!(c, '&' | '#' | '"' | '\'' | '`' | '<' | '>' | ')')
            })
            .map_or(text.len(), |e| start + e);
        // Punctuation closing a sentence is the message's, not the value's.
        let end = match text[..end].strip_suffix([',', '.', ';', ':']) {
            Some(kept) if kept.len() > start => kept.len(),
            _ => end,
        };
        if start < end {
            spans.push(start..end);
        }
    }
    spans.sort_by_key(|s| s.start);
    let mut merged: Vec<std::ops::Range<usize>> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// `%XX` escapes decoded (invalid ones left as they are).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` with every line break a line feed. serde_yaml (libyaml) also ends a line at CR,
/// CR LF, NEL, LS and PS, while the rest of the loader reads lines split at LF: which
/// substituted values are secret (by their line's key), where comments are, error places.
/// A file with other breaks had its `${VAR}`s judged by the wrong line, and a password on
/// a line after a lone CR shown unmasked in an error (found by fuzzing:
/// `fuzz/corpus/job_file/crash-6992fa284b9f8692`). YAML reads the result alike (it
/// folds every kind of break in a scalar the same, LS and PS aside, which keep themselves:
/// no job file holds those).
pub fn line_feeds(text: &str) -> std::borrow::Cow<'_, str> {
    const BREAKS: [char; 4] = ['\r', '\u{85}', '\u{2028}', '\u{2029}'];
    if !text.contains(BREAKS) {
        return text.into();
    }
    text.replace("\r\n", "\n").replace(BREAKS, "\n").into()
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
    fn url_passwords_and_secret_parameters_are_masked_wherever_they_appear() {
        assert_eq!(
            mask_urls("for url (http://admin:Pw0rd@h:8086/write?db=x&u=admin&p=Pw0rd): refused"),
            "for url (http://admin:***@h:8086/write?db=x&u=***&p=***): refused"
        );
        assert_eq!(
            mask_urls("at http://h/?db=d&p=Pw0rd, database d; http://h/?token=T."),
            "at http://h/?db=d&p=***, database d; http://h/?token=***."
        );
        assert_eq!(
            mask_urls("mysql://u:p@ss@db/x and https://h/?token=abc#frag, mysql://u@h/db"),
            "mysql://u:***@db/x and https://h/?token=***#frag, mysql://u@h/db"
        );
        // Text that only looks a little like a URL is left alone.
        assert_eq!(
            mask_urls("a: b, p=1 ?x=2 http://h:8086/"),
            "a: b, p=1 ?x=2 http://h:8086/"
        );
    }

    #[test]
    fn secrets_written_in_the_file_are_masked_like_substituted_ones() {
        let text = "source:\n  url: mysql://reader:Lit3ral%40pw@h/db # ro\n  password: \"Tok3nHere\"\nsink:\n  url: http://h/?token=Tok3nInUrl\n  #token: Commented0ut\n";
        let mut s = substitute(text, env).unwrap().secrets;
        s.add_written(text);
        assert_eq!(
            s.redact("login Lit3ral%40pw / Lit3ral@pw failed; Tok3nHere; Tok3nInUrl; Commented0ut"),
            "login *** / *** failed; ***; ***; Commented0ut"
        );
    }

    #[test]
    fn malformed_reference_is_an_error() {
        assert!(substitute("a: ${PW\n", env).is_err());
        assert!(substitute("a: ${P-W}\n", env).is_err());
    }
}
