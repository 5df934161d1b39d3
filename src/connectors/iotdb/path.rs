//! IoTDB paths: `root.factory.`dev-0001`.temperature`.
//!
//! A node that is not a plain identifier is written in backquotes, with a backquote inside
//! doubled — never rewritten into another name. Plain, as IoTDB's grammar has it: ASCII
//! letters, digits and `_`, not a number (`0042`, `1e5`) and not a reserved word (`root`,
//! `time`, `timestamp`). IoTDB also takes CJK letters unquoted; tsmig quotes them, which
//! IoTDB reads as the same node. The mapping uses [`quote_node`] to render a device path from a row; the sink uses
//! [`split`] to read a path template.

use std::borrow::Cow;

/// Whether `name` may stand in a path without backquotes.
pub fn is_plain_node(name: &str) -> bool {
    let looks_numeric = {
        let (mantissa, exponent) = match name.split_once(['e', 'E']) {
            Some((m, e)) => (m, Some(e)),
            None => (name, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        digits(mantissa) && exponent.is_none_or(digits)
    };
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !looks_numeric
        && !["root", "time", "timestamp"]
            .iter()
            .any(|w| name.eq_ignore_ascii_case(w))
}

/// `name` as a path node: as is when plain, else in backquotes with backquotes doubled.
pub fn quote_node(name: &str) -> Cow<'_, str> {
    if is_plain_node(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(format!("`{}`", name.replace('`', "``")))
    }
}

/// Splits a path (or a path template) into its nodes as written, backquotes kept; a dot
/// inside backquotes or braces does not separate nodes.
pub fn split(path: &str) -> Result<Vec<String>, String> {
    let mut nodes = Vec::new();
    let mut current = String::new();
    let mut chars = path.chars().peekable();
    let mut in_quotes = false;
    let mut in_braces = false;
    while let Some(c) = chars.next() {
        match c {
            '`' if in_quotes && chars.peek() == Some(&'`') => {
                current.push_str("``");
                chars.next();
            }
            '`' => {
                in_quotes = !in_quotes;
                current.push(c);
            }
            '{' if !in_quotes => {
                in_braces = true;
                current.push(c);
            }
            '}' if !in_quotes => {
                in_braces = false;
                current.push(c);
            }
            '.' if !in_quotes && !in_braces => nodes.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    if in_quotes {
        return Err(format!("`{path}` has an unclosed backquote"));
    }
    if in_braces {
        return Err(format!("`{path}` has an unclosed brace"));
    }
    nodes.push(current);
    if let Some(empty) = nodes.iter().position(|n| n.is_empty()) {
        return Err(format!(
            "`{path}` has an empty level (number {})",
            empty + 1
        ));
    }
    Ok(nodes)
}

/// How the mapping names the levels of a `path:` template: IoTDB's rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct IotdbPaths;

impl crate::mapping::PathNames for IotdbPaths {
    fn levels(&self, template: &str) -> Result<Vec<String>, String> {
        let nodes = split(template)?;
        if nodes[0] != "root" || nodes.len() < 3 {
            return Err(format!("`{template}` must start with root. and name a database and a device, e.g. root.factory.{{device_id}}"));
        }
        // `root` is a reserved word only IoTDB's root may be: the first level is not checked.
        for node in &nodes[1..] {
            let column = node.starts_with('{') || node.ends_with('}');
            if !column && !is_valid_node(node) {
                return Err(format!(
                    "level `{node}` is not a valid IoTDB node; write it in backquotes: {}",
                    quote_node(node)
                ));
            }
        }
        Ok(nodes)
    }

    fn quote(&self, value: &str) -> String {
        quote_node(value).into_owned()
    }
}

/// Whether `node` is a valid node as written: plain, or a well-formed backquoted name.
pub fn is_valid_node(node: &str) -> bool {
    if is_plain_node(node) {
        return true;
    }
    let Some(inner) = node.strip_prefix('`').and_then(|n| n.strip_suffix('`')) else {
        return false;
    };
    !inner.is_empty() && inner.replace("``", "").find('`').is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_quoted_only_when_needed() {
        assert_eq!(quote_node("dev_01"), "dev_01");
        assert_eq!(quote_node("dev-01"), "`dev-01`");
        assert_eq!(quote_node("123"), "`123`");
        assert_eq!(quote_node("a.b"), "`a.b`");
        assert_eq!(quote_node("a`b"), "`a``b`");
        assert_eq!(quote_node("温度"), "`温度`");
        assert_eq!(quote_node("1e5"), "`1e5`");
        assert_eq!(quote_node("e5"), "e5");
        assert_eq!(quote_node("Time"), "`Time`");
    }

    #[test]
    fn paths_split_on_dots_outside_quotes_and_braces() {
        assert_eq!(
            split("root.factory.{device_id}").unwrap(),
            vec!["root", "factory", "{device_id}"]
        );
        assert_eq!(
            split("root.`a.b`.`c``d`").unwrap(),
            vec!["root", "`a.b`", "`c``d`"]
        );
        assert!(split("root..x").is_err());
        assert!(split("root.`x").is_err());
        assert!(is_valid_node("`a``b`") && !is_valid_node("`a`b`") && !is_valid_node("a-b"));
    }
}
