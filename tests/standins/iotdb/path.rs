//! IoTDB 1.x's tree-model path syntax, as the stand-in reads, checks and stores paths.
//!
//! A path is nodes joined by `.`, the first one `root`. A node is written either plain
//! or in backquotes, where a backquote is doubled (`` `a``b` `` is the node a`b) and
//! anything else, dots included, stands for itself. Sources, apache/iotdb:
//! - the grammar (`iotdb-core/antlr/.../PathParser.g4`, `IdentifierParser.g4`,
//!   `SqlLexer.g4`: `QUOTED_ID : '`' ( '``' | ~'`' )* '`'`; ROOT, TIME and TIMESTAMP are
//!   tokens that are not identifiers, and a bare integer or exponent is a number);
//! - the User Guide's "Syntax Conventions / Identifier" (1.0–1.3): unquoted, only
//!   `[0-9 a-z A-Z _]` and the CJK range `\u2E80..\u9FFF`, and not a real number;
//! - tsfile's `TsFileConstant.IDENTIFIER_PATTERN` `[a-zA-Z0-9_\u2E80-\u9FFF]+` with
//!   `PathVisitor.parseNodeName`/`PathUtils.removeBackQuotesIfNecessary`: a quoted node
//!   that would be legal unquoted loses its quotes, any other keeps them, so the stored
//!   and displayed path quotes exactly the nodes that need it;
//! - `PathUtils.checkAndReturnSingleMeasurement`: a measurement of an insert is one
//!   node, unquoted it may not be TIME, TIMESTAMP or ROOT (any case) or a real number.
//!
//! The stand-in keeps every path in that display form (nodes quoted only where needed),
//! so two spellings of one path (`root.sg.d1` and ``root.sg.`d1` ``) are one string.
//! One deliberate difference: IoTDB unquotes a quoted TIME/TIMESTAMP/ROOT node when it
//! stores it (it matches the identifier pattern); the stand-in keeps those quoted, so
//! that what it shows can be written back.

use super::status::{self, Status};

/// Whether a path may hold the wildcards `*` (one node) and `**` (one or more).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    /// A path that names one thing: a database, device or series being created/written.
    Path,
    /// A pattern (SHOW/COUNT/DELETE, deleteData, deleteTimeseries...).
    Pattern,
}

/// Words that are tokens of IoTDB's SQL but not identifiers, so never a plain node.
const RESERVED: [&str; 3] = ["root", "time", "timestamp"];

/// One node as the request wrote it.
struct Written {
    name: String,
    quoted: bool,
}

/// Whether `name` may be written without backquotes: IoTDB's identifier characters and
/// not a number.
pub(crate) fn is_plain(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric() || c == '_' || ('\u{2E80}'..='\u{9FFF}').contains(&c)
        })
        && !is_real_number(name)
        && !RESERVED.iter().any(|r| name.eq_ignore_ascii_case(r))
}

/// Among names made of identifier characters, the ones IoTDB reads as a number: digits,
/// optionally with an exponent (`123`, `0011`, `1e5`, `2E10`).
fn is_real_number(name: &str) -> bool {
    let (mantissa, exponent) = match name.find(['e', 'E']) {
        Some(i) => (&name[..i], Some(&name[i + 1..])),
        None => (name, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    digits(mantissa) && exponent.is_none_or(digits)
}

/// A node name as IoTDB displays it: as is when plain, otherwise in backquotes with
/// its backquotes doubled.
pub(crate) fn display_node(name: &str) -> String {
    if is_plain(name) {
        name.to_string()
    } else {
        format!("`{}`", name.replace('`', "``"))
    }
}

/// Splits a path as written into nodes, unescaping quoted ones; None if a backquote is
/// out of place or unclosed.
fn split_written(path: &str) -> Option<Vec<Written>> {
    let mut nodes = Vec::new();
    let mut chars = path.chars().peekable();
    loop {
        let mut name = String::new();
        let quoted = chars.peek() == Some(&'`');
        if quoted {
            chars.next();
            loop {
                match chars.next()? {
                    '`' if chars.peek() == Some(&'`') => {
                        chars.next();
                        name.push('`');
                    }
                    '`' => break,
                    c => name.push(c),
                }
            }
            nodes.push(Written { name, quoted });
            match chars.next() {
                None => return Some(nodes),
                Some('.') => {}
                Some(_) => return None, // text glued to a closing backquote
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        nodes.push(Written { name, quoted });
                        return Some(nodes);
                    }
                    Some('.') => break,
                    Some('`') => return None,
                    Some(c) => name.push(c),
                }
            }
            nodes.push(Written { name, quoted });
        }
    }
}

fn illegal(path: &str) -> Status {
    Status::error(status::ILLEGAL_PATH, format!("{path} is not a legal path"))
}

/// The display form of a path, or IoTDB's 509 "<path> is not a legal path": it must
/// start with `root`, every other node be plain or back-quoted (and not empty), and
/// wildcards appear only in a pattern. A partial wildcard (`d*`) in a pattern is
/// answered 300: the stand-in matches whole-node wildcards only.
pub(crate) fn canonical(path: &str, kind: Kind) -> Result<String, Status> {
    let written = split_written(path).ok_or_else(|| illegal(path))?;
    let (first, rest) = written.split_first().ok_or_else(|| illegal(path))?;
    if first.quoted || first.name != "root" {
        return Err(illegal(path));
    }
    let mut display = String::from("root");
    for node in rest {
        display.push('.');
        if node.quoted {
            if node.name.is_empty() {
                return Err(illegal(path));
            }
            display.push_str(&display_node(&node.name));
        } else if node.name == "*" || node.name == "**" {
            if kind == Kind::Path {
                return Err(illegal(path));
            }
            display.push_str(&node.name);
        } else if node.name.contains('*') && kind == Kind::Pattern {
            return Err(Status::not_implemented(format!(
                "wildcards inside a node ({path}); only whole-node * and ** are matched"
            )));
        } else if is_plain(&node.name) {
            display.push_str(&node.name);
        } else {
            return Err(illegal(path));
        }
    }
    Ok(display)
}

/// The display form of one measurement of an insert or createAlignedTimeseries (one
/// node, plain or back-quoted), or 509 "<measurement> is not a legal path" as IoTDB's
/// PathUtils.checkAndReturnSingleMeasurement answers.
pub(crate) fn canonical_measurement(measurement: &str) -> Result<String, Status> {
    match split_written(measurement).as_deref() {
        Some([node]) if node.quoted && !node.name.is_empty() => Ok(display_node(&node.name)),
        Some([node]) if !node.quoted && is_plain(&node.name) => Ok(node.name.clone()),
        _ => Err(illegal(measurement)),
    }
}

/// For the inspection API: the display form of a path in any spelling a test may use,
/// strict or not — unquoted nodes that IoTDB would refuse (`root.sg.dev-1.s`) are read
/// as the node names they spell (a dot always separates nodes there).
pub(crate) fn lenient(path: &str) -> Option<String> {
    if let Ok(display) = canonical(path, Kind::Pattern) {
        return Some(display);
    }
    let written = split_written(path)?;
    let (first, rest) = written.split_first()?;
    if first.name != "root" {
        return None;
    }
    let mut display = String::from("root");
    for node in rest {
        if node.name.is_empty() {
            return None;
        }
        display.push('.');
        if !node.quoted && (node.name == "*" || node.name == "**") {
            display.push_str(&node.name);
        } else {
            display.push_str(&display_node(&node.name));
        }
    }
    Some(display)
}

/// The nodes of a path in display form, each as displayed (quoted ones with quotes).
pub(crate) fn nodes(display: &str) -> Vec<&str> {
    let mut nodes = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in display.char_indices() {
        match c {
            // A doubled backquote inside quotes toggles twice: still inside.
            '`' => quoted = !quoted,
            '.' if !quoted => {
                nodes.push(&display[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    nodes.push(&display[start..]);
    nodes
}

/// The path above the last node ("" for a single node).
pub(crate) fn parent(display: &str) -> &str {
    let nodes = nodes(display);
    match nodes.len() {
        0 | 1 => "",
        n => &display[..display.len() - nodes[n - 1].len() - 1],
    }
}

/// Whether `path` lies strictly below `ancestor` (both in display form).
pub(crate) fn is_under(path: &str, ancestor: &str) -> bool {
    let (path, ancestor) = (nodes(path), nodes(ancestor));
    path.len() > ancestor.len() && path.starts_with(&ancestor)
}

/// IoTDB path patterns over display nodes: `*` is one whole node, `**` one or more.
pub(crate) fn matches(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((&"**", rest)), _) => (1..=path.len()).any(|k| matches(rest, &path[k..])),
        (Some((p, rest)), Some((n, path_rest))) => {
            (*p == "*" || p == n) && matches(rest, path_rest)
        }
        _ => false,
    }
}

/// Whether a pattern matches `path` or some path below it: how IoTDB 1.x finds the
/// databases a statement such as SET TTL "belongs to" (ConfigMTree
/// getBelongedDatabases: `root.sg.d1` → root.sg, `root.**` → every database).
pub(crate) fn matches_at_or_below(pattern: &[&str], path: &[&str]) -> bool {
    match (pattern.split_first(), path.split_first()) {
        (None, None) => true,
        (None, Some(_)) => false,
        (Some(_), None) => true, // the rest of the pattern can match deeper nodes
        // `**` can swallow all of `path` and the rest match below it.
        (Some((&"**", _)), Some(_)) => true,
        (Some((p, rest)), Some((n, path_rest))) => {
            (*p == "*" || p == n) && matches_at_or_below(rest, path_rest)
        }
    }
}

/// IoTDB 1.x's check on a database name (IoTDBConfig.STORAGE_GROUP_PATTERN
/// `[a-zA-Z0-9`_.\-\u2E80-\u9FFF]+` over the displayed name, MetaFormatUtils
/// checkStorageGroup): quoted nodes may hold `-` but not, say, a space.
pub(crate) fn check_database_name(display: &str) -> Result<(), Status> {
    let legal = display.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(c, '`' | '_' | '.' | '-')
            || ('\u{2E80}'..='\u{9FFF}').contains(&c)
    });
    if legal {
        Ok(())
    } else {
        Err(Status::error(
            status::ILLEGAL_PATH,
            format!(
                "The database name can only be characters, numbers and underscores. \
                 {display} is not a legal path"
            ),
        ))
    }
}
