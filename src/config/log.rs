//! The log on stderr, as text lines or JSON lines (`log.format`), every line masked with
//! the secrets read so far: the job file's, the process configuration's, the status token,
//! and every URL's password and tokens (a library may log a URL or an error holding one).

use crate::job::{mask_urls, Secrets};
use serde::{Deserialize, Deserializer};
use std::io::Write;
use std::sync::{LazyLock, RwLock};

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `<time> <LEVEL> <target>: <message>`, a line per event.
    #[default]
    Text,
    /// A JSON object per line: `timestamp`, `level`, `message` and the event's other
    /// fields, `target`.
    Json,
}

impl LogFormat {
    /// The format's name in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(serde::de::Error::custom(format!(
                "`{other}` is not one of text, json"
            ))),
        }
    }
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Checks `log.level`: a level, or comma-separated `target=level` directives with at most
/// one bare level (`info,tsmig::runner=debug`). A bare word that is no level is refused
/// (tracing would take `inof` for a module name and log nothing of the job).
pub fn check_level(level: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`{level}` is not a log level ({}) or a list of module=level directives: {why}",
            LEVELS.join(", ")
        ))
    };
    for directive in level.split(',').map(str::trim) {
        let level_part = match directive.split_once('=') {
            Some((target, level)) if !target.is_empty() => level,
            Some(_) => return bad("a directive without a module"),
            None => directive,
        };
        if !LEVELS.contains(&level_part.to_ascii_lowercase().as_str()) {
            return bad(&format!("`{level_part}` is no level"));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .or_else(|e| bad(&e.to_string()))
}

/// The secrets every log line is masked with.
static SECRETS: LazyLock<RwLock<Secrets>> = LazyLock::new(Default::default);

/// Masks `secrets` in every log line from now on (they add to those already given).
pub fn add_secrets(secrets: &Secrets) {
    if let Ok(mut all) = SECRETS.write() {
        all.extend(secrets);
    }
}

/// Installs the log: events at `filter` (a level or directives) written to stderr in
/// `format`, masked.
pub fn init(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder
            .with_writer(|| MaskedLine::new(LogFormat::Text))
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_writer(|| MaskedLine::new(LogFormat::Json))
            .init(),
    }
}

/// A log line's way to stderr: gathered whole (the formatter writes one event per
/// writer), then masked ([`mask_line`]) and written at once.
struct MaskedLine {
    format: LogFormat,
    line: Vec<u8>,
}

impl MaskedLine {
    fn new(format: LogFormat) -> Self {
        Self {
            format,
            line: Vec::new(),
        }
    }
}

impl Write for MaskedLine {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for MaskedLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let masked = match SECRETS.read() {
            Ok(secrets) => mask_line(&text, self.format, &secrets),
            Err(_) => mask_urls(&text),
        };
        let _ = std::io::stderr().write_all(masked.as_bytes());
    }
}

/// `line` with every secret and URL secret masked. Text: in the message only — the
/// `<time> <LEVEL> <target>: ` prefix holds no secret, and masking a value in it would mask
/// a module path (`tsmig::runner`) that happens to hold it. JSON: in every string value
/// but `timestamp`, `level` and `target`, so the line stays one valid JSON object however
/// the secret was escaped in it.
pub fn mask_line(line: &str, format: LogFormat, secrets: &Secrets) -> String {
    match format {
        LogFormat::Text => {
            let (prefix, message) = line.split_at(line.find(": ").unwrap_or(0));
            format!("{prefix}{}", secrets.redact(message))
        }
        LogFormat::Json => match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(mut event)) => {
                for (key, value) in event.iter_mut() {
                    if !matches!(key.as_str(), "timestamp" | "level" | "target") {
                        mask_json(value, secrets);
                    }
                }
                let mut out = serde_json::Value::Object(event).to_string();
                out.push('\n');
                out
            }
            // Not an event the formatter wrote: masked as text, whole.
            _ => secrets.redact(line),
        },
    }
}

fn mask_json(value: &mut serde_json::Value, secrets: &Secrets) {
    match value {
        serde_json::Value::String(s) => *s = secrets.redact(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_json(v, secrets)),
        serde_json::Value::Object(fields) => {
            fields.values_mut().for_each(|v| mask_json(v, secrets))
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Secrets {
        let mut s = Secrets::default();
        for v in values {
            s.add(v);
        }
        s
    }

    #[test]
    fn a_json_line_stays_valid_json_with_the_secret_masked() {
        let s = secrets(&["pa\"ss-word", "runner"]);
        // The formatter escapes the quote: the masking must find the secret anyway.
        let line = r#"{"timestamp":"2026-01-01T00:00:00Z","level":"WARN","message":"login pa\"ss-word refused for http://u:pw@h/?p=x","attempt":2,"span":{"who":"pa\"ss-word"},"target":"tsmig::runner"}"#;
        let masked = mask_line(line, LogFormat::Json, &s);
        assert!(masked.ends_with('\n'));
        let event: serde_json::Value = serde_json::from_str(&masked).unwrap();
        assert_eq!(
            event["message"],
            "login *** refused for http://u:***@h/?p=***"
        );
        assert_eq!(event["span"]["who"], "***");
        assert_eq!(event["attempt"], 2);
        // The target holds a "secret" too, and is left alone.
        assert_eq!(event["target"], "tsmig::runner");
        assert!(!masked.contains("ss-word"), "{masked}");
        // Keys keep their order.
        assert!(masked.starts_with(r#"{"timestamp":"#), "{masked}");
    }

    #[test]
    fn a_text_line_is_masked_after_its_prefix() {
        let s = secrets(&["runner", "s3cret-value"]);
        let line = "2026-01-01T00:00:00Z  WARN tsmig::runner: retry with s3cret-value at runner\n";
        assert_eq!(
            mask_line(line, LogFormat::Text, &s),
            "2026-01-01T00:00:00Z  WARN tsmig::runner: retry with *** at ***\n"
        );
    }

    #[test]
    fn a_level_is_a_level_word_or_module_directives() {
        for ok in [
            "info",
            "DEBUG",
            "off",
            "info,tsmig::runner=debug",
            "warn,hyper=error",
        ] {
            check_level(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in ["loud", "inof", "info,tsmig=loud", "=debug", ""] {
            assert!(check_level(bad).is_err(), "{bad}");
        }
    }
}
