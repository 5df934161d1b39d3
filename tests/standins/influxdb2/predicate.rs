//! The predicate of `POST /api/v2/delete`, read as InfluxDB 2 reads it.
//!
//! InfluxDB 2 (influxdata/influxdb, branch main-2.x) reads it twice (`http/delete_handler.go`):
//! `predicate.Parse` (`predicate/parser.go`) turns it into tag rules joined by `AND`, and
//! `influxql.ParseExpr` must read it as an InfluxQL expression too. Both scan it with
//! InfluxQL's scanner (influxdata/influxql `scanner.go`): a bare identifier is ASCII
//! letters, digits and `_`, not starting with a digit, and not a keyword (`token.go`: `name`,
//! `key`, `tag`, `field`, `from`, ... read as keywords); anything else is an identifier only
//! in double quotes, where `\\`, `\"`, `\'` and `\n` are the only escapes. So:
//! - a key is an identifier, or the keyword `name`, which `predicate.Parse` takes as the key
//!   `name` but InfluxQL's `parseUnaryExpr` refuses ("found NAME, expected identifier,
//!   string, number, bool"); any other keyword or token is "bad tag key". A key with `-`
//!   or a space, unquoted, is an identifier followed by something that is no operator:
//!   "invalid operator";
//! - the operator is `=` or `!=`; `=~` and `!~` are "not supported yet";
//! - a value is an identifier (`"v"` quoted), a number, a duration, `true` or `false`; a
//!   single-quoted string is "bad tag value";
//! - rules are joined by `AND`, with parentheses; `OR` is "not supported yet";
//! - a rule on `_field` is refused with 501 ("delete by field is not supported").
//!
//! Errors of `predicate.Parse` come back as `error decoding json body: <reason>` (400),
//! those of `ParseExpr` as `invalid request; error parsing predicate: <reason>` (400).

/// One `key = value` (or `!=`) of the predicate.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

/// Why a predicate is refused: the HTTP status, InfluxDB's error code and message.
pub type Refusal = (u16, &'static str, String);

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    /// A keyword, upper case (NAME, AND, OR, TRUE, FALSE, TAG, ...).
    Keyword(String),
    Number(String),
    Duration(String),
    Str(String),
    Eq,
    Neq,
    EqRegex,
    NeqRegex,
    LParen,
    RParen,
    Sub,
    BadString,
    BadEscape,
    Illegal(char),
    Eof,
}

impl Token {
    /// InfluxQL's name of the token, as its messages show it.
    fn name(&self) -> String {
        match self {
            Token::Ident(_) => "IDENT".into(),
            Token::Keyword(k) => k.clone(),
            Token::Number(_) => "NUMBER".into(),
            Token::Duration(_) => "DURATIONVAL".into(),
            Token::Str(_) => "STRING".into(),
            Token::Eq => "=".into(),
            Token::Neq => "!=".into(),
            Token::EqRegex => "=~".into(),
            Token::NeqRegex => "!~".into(),
            Token::LParen => "(".into(),
            Token::RParen => ")".into(),
            Token::Sub => "-".into(),
            Token::BadString => "BADSTRING".into(),
            Token::BadEscape => "BADESCAPE".into(),
            Token::Illegal(_) => "ILLEGAL".into(),
            Token::Eof => "EOF".into(),
        }
    }

    fn literal(&self) -> String {
        match self {
            Token::Ident(s) | Token::Number(s) | Token::Duration(s) | Token::Str(s) => s.clone(),
            Token::Illegal(c) => c.to_string(),
            _ => String::new(),
        }
    }
}

/// influxql's keywords (`token.go`), lower case.
const KEYWORDS: &[&str] = &[
    "all",
    "alter",
    "analyze",
    "any",
    "as",
    "asc",
    "begin",
    "by",
    "cardinality",
    "create",
    "continuous",
    "database",
    "databases",
    "default",
    "delete",
    "desc",
    "destinations",
    "diagnostics",
    "distinct",
    "drop",
    "duration",
    "end",
    "every",
    "exact",
    "explain",
    "field",
    "for",
    "from",
    "future",
    "grant",
    "grants",
    "group",
    "groups",
    "in",
    "inf",
    "insert",
    "into",
    "key",
    "keys",
    "kill",
    "limit",
    "measurement",
    "measurements",
    "name",
    "offset",
    "on",
    "order",
    "password",
    "past",
    "policy",
    "policies",
    "privileges",
    "queries",
    "query",
    "read",
    "replication",
    "resample",
    "retention",
    "revoke",
    "select",
    "series",
    "set",
    "show",
    "shard",
    "shards",
    "slimit",
    "soffset",
    "stats",
    "subscription",
    "subscriptions",
    "tag",
    "to",
    "user",
    "users",
    "values",
    "verbose",
    "where",
    "with",
    "write",
    "and",
    "or",
    "true",
    "false",
];

/// Tokens with their character positions, whitespace left out.
fn scan(text: &str) -> Vec<(Token, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let token = if c.is_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_alphabetic() || c == '_' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) {
                Token::Keyword(word.to_ascii_uppercase())
            } else {
                Token::Ident(word)
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                i += 1;
            }
            let number: String = chars[start..i].iter().collect();
            let unit_start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i > unit_start {
                Token::Duration(chars[start..i].iter().collect())
            } else {
                Token::Number(number)
            }
        } else if c == '"' || c == '\'' {
            i += 1;
            let mut value = String::new();
            let mut token = None;
            loop {
                match chars.get(i) {
                    None | Some('\n') => {
                        token = Some(Token::BadString);
                        break;
                    }
                    Some(&q) if q == c => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => value.push('\n'),
                            Some('\\') => value.push('\\'),
                            Some('"') => value.push('"'),
                            Some('\'') => value.push('\''),
                            _ => {
                                token = Some(Token::BadEscape);
                                break;
                            }
                        }
                        i += 2;
                    }
                    Some(&other) => {
                        value.push(other);
                        i += 1;
                    }
                }
            }
            match token {
                Some(bad) => {
                    tokens.push((bad, start));
                    return tokens;
                }
                None if c == '"' => Token::Ident(value),
                None => Token::Str(value),
            }
        } else {
            i += 1;
            let next = chars.get(i).copied();
            match (c, next) {
                ('=', Some('~')) => {
                    i += 1;
                    Token::EqRegex
                }
                ('=', _) => Token::Eq,
                ('!', Some('=')) => {
                    i += 1;
                    Token::Neq
                }
                ('!', Some('~')) => {
                    i += 1;
                    Token::NeqRegex
                }
                ('<', Some('>')) => {
                    i += 1;
                    Token::Neq
                }
                ('(', _) => Token::LParen,
                (')', _) => Token::RParen,
                ('-', _) => Token::Sub,
                (other, _) => Token::Illegal(other),
            }
        };
        tokens.push((token, start));
    }
    tokens.push((Token::Eof, chars.len()));
    tokens
}

/// The rules of `predicate` (all joined by AND), or InfluxDB's refusal.
pub fn parse(predicate: &str) -> Result<Vec<Rule>, Refusal> {
    if predicate.is_empty() {
        return Ok(Vec::new());
    }
    let tokens = scan(predicate);
    let mut parser = Parser {
        tokens: &tokens,
        at: 0,
        open: 0,
        rules: Vec::new(),
        name_keys: Vec::new(),
    };
    let invalid = |message: String| {
        (
            400,
            "invalid",
            format!("error decoding json body: {message}"),
        )
    };
    parser.logical().map_err(invalid)?;
    // influxql.ParseExpr: the keyword NAME is no operand.
    if let Some(position) = parser.name_keys.first() {
        return Err((
            400,
            "invalid",
            format!(
                "invalid request; error parsing predicate: found NAME, expected identifier, \
                 string, number, bool at line 1, char {}",
                position + 1
            ),
        ));
    }
    if parser.rules.iter().any(|r| r.key == "_field" && r.equal) {
        return Err((
            501,
            "not implemented",
            "delete by field is not supported".into(),
        ));
    }
    Ok(parser.rules)
}

struct Parser<'a> {
    tokens: &'a [(Token, usize)],
    at: usize,
    open: i32,
    rules: Vec<Rule>,
    /// Positions of keys written as the keyword `name`.
    name_keys: Vec<usize>,
}

impl Parser<'_> {
    fn next(&mut self) -> (Token, usize) {
        let token = self.tokens[self.at.min(self.tokens.len() - 1)].clone();
        self.at += 1;
        token
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)].0
    }

    /// `predicate/parser.go` parseLogicalNode: rules and parenthesised groups joined by AND.
    fn logical(&mut self) -> Result<(), String> {
        let mut children = 0;
        loop {
            let (token, position) = self.next();
            match token {
                Token::Number(_) | Token::Ident(_) => {
                    self.at -= 1;
                    self.rule()?;
                    children += 1;
                }
                Token::Keyword(k) if k == "NAME" => {
                    self.at -= 1;
                    self.rule()?;
                    children += 1;
                }
                Token::Keyword(k) if k == "AND" => {
                    if children < 2 {
                        continue;
                    }
                    if *self.peek() == Token::LParen {
                        self.logical()?;
                    } else {
                        self.rule()?;
                    }
                }
                Token::Keyword(k) if k == "OR" => {
                    return Err(format!(
                        "the logical operator OR is not supported yet at position {position}"
                    ))
                }
                Token::LParen => {
                    self.open += 1;
                    let current = self.open;
                    self.logical()?;
                    if self.open != current - 1 {
                        return Err("extra ( seen".into());
                    }
                    children += 1;
                }
                Token::RParen | Token::Eof => {
                    if token == Token::RParen {
                        self.open -= 1;
                    }
                    if self.open < 0 {
                        return Err("extra ) seen".into());
                    }
                    return Ok(());
                }
                _ => return Err(format!("bad logical expression, at position {position}")),
            }
        }
    }

    /// `predicate/parser.go` parseTagRuleNode.
    fn rule(&mut self) -> Result<(), String> {
        let (token, position) = self.next();
        let key = match token {
            Token::Ident(key) => key,
            Token::Keyword(k) if k == "NAME" => {
                self.name_keys.push(position);
                "name".to_string()
            }
            _ => return Err(format!("bad tag key, at position {position}")),
        };
        let (token, position) = self.next();
        let equal = match token {
            Token::Eq => true,
            Token::Neq => false,
            Token::EqRegex | Token::NeqRegex => {
                return Err(format!(
                    "operator: {:?} at position: {position} is not supported yet",
                    token.name()
                ))
            }
            other => {
                return Err(format!(
                    "invalid operator {:?} at position: {position}",
                    other.name()
                ))
            }
        };
        let mut value = String::new();
        loop {
            let (token, position) = self.next();
            match token {
                Token::Sub => value = "-".into(),
                Token::Ident(v) | Token::Duration(v) | Token::Number(v) => {
                    value.push_str(&v);
                    break;
                }
                Token::Keyword(k) if k == "TRUE" || k == "FALSE" => {
                    value = k.to_ascii_lowercase();
                    break;
                }
                other => {
                    return Err(format!(
                        "bad tag value: {:?}, at position {position}",
                        other.literal()
                    ))
                }
            }
        }
        self.rules.push(Rule { key, equal, value });
        Ok(())
    }
}
