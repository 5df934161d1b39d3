//! The stand-in's SQL: a tokenizer and a parser for exactly the statement shapes tsmig's
//! TDengine source sends (and a few neighbours, so tests can ask for data too):
//!
//! ```text
//! DESCRIBE [db.]table
//! SELECT item [, item ...] FROM [db.]table
//!     [WHERE column op literal [AND ...]] [PARTITION BY tbname]
//!     [ORDER BY column [ASC|DESC]] [LIMIT n [OFFSET m]]
//! item:    column | tbname | FIRST(column) | LAST(column) | COUNT(*)
//! op:      = | != | < | <= | > | >=        literal: integer | 'string'
//! names:   bare or in backquotes; keywords in any case
//! ```
//!
//! Anything else is a syntax error (TDengine's 0x2600 `syntax error near "..."`).

use super::status::{self, TdError};

#[derive(Clone, Debug, PartialEq)]
enum Token {
    /// A bare word (keyword or name).
    Word(String),
    /// A name in backquotes.
    Quoted(String),
    /// A string in single or double quotes.
    Str(String),
    Int(i64),
    /// Punctuation and operators.
    Sym(&'static str),
}

/// A literal compared against a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    Int(i64),
    Str(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Op {
    pub fn holds<T: PartialOrd>(self, a: &T, b: &T) -> bool {
        match self {
            Op::Eq => a == b,
            Op::Ne => a != b,
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
        }
    }
}

/// `column op literal`.
#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub column: String,
    pub op: Op,
    pub value: Literal,
}

/// One item of a select list.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A column, a tag or `tbname`.
    Column(String),
    First(String),
    Last(String),
    CountStar,
}

impl Item {
    /// The name TDengine gives the result column.
    pub fn display(&self) -> String {
        match self {
            Item::Column(c) => c.clone(),
            Item::First(c) => format!("first({c})"),
            Item::Last(c) => format!("last({c})"),
            Item::CountStar => "count(*)".into(),
        }
    }

    pub fn is_aggregate(&self) -> bool {
        !matches!(self, Item::Column(_))
    }
}

/// `[db.]name`.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRef {
    pub database: Option<String>,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Select {
    pub items: Vec<Item>,
    pub from: TableRef,
    pub conditions: Vec<Condition>,
    pub partition_by_tbname: bool,
    /// (column, ascending).
    pub order_by: Option<(String, bool)>,
    pub limit: Option<u64>,
    pub offset: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Statement {
    Describe(TableRef),
    Select(Select),
}

fn tokenize(sql: &str) -> Result<Vec<(usize, Token)>, TdError> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() || c == b';' {
            i += 1;
            continue;
        }
        let token = if c == b'`' {
            let end = sql[i + 1..]
                .find('`')
                .ok_or_else(|| status::syntax_error(&sql[start..]))?;
            i += end + 2;
            Token::Quoted(sql[start + 1..start + 1 + end].to_string())
        } else if c == b'\'' || c == b'"' {
            let mut text = String::new();
            let mut j = i + 1;
            let mut chars = sql[j..].char_indices();
            loop {
                let Some((k, ch)) = chars.next() else {
                    return Err(status::syntax_error(&sql[start..]));
                };
                if ch == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        text.push(escaped);
                    }
                } else if ch as u32 == c as u32 {
                    j += k + 1;
                    break;
                } else {
                    text.push(ch);
                }
            }
            i = j;
            Token::Str(text)
        } else if c.is_ascii_digit()
            || (c == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            Token::Int(
                sql[start..i]
                    .parse()
                    .map_err(|_| status::syntax_error(&sql[start..]))?,
            )
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            Token::Word(sql[start..i].to_string())
        } else {
            let two = sql.get(i..i + 2).unwrap_or_default();
            let sym = match two {
                ">=" => Some(">="),
                "<=" => Some("<="),
                "!=" => Some("!="),
                "<>" => Some("!="),
                _ => None,
            };
            if let Some(sym) = sym {
                i += 2;
                Token::Sym(sym)
            } else {
                i += 1;
                Token::Sym(match c {
                    b',' => ",",
                    b'.' => ".",
                    b'(' => "(",
                    b')' => ")",
                    b'*' => "*",
                    b'=' => "=",
                    b'<' => "<",
                    b'>' => ">",
                    _ => return Err(status::syntax_error(&sql[start..])),
                })
            }
        };
        tokens.push((start, token));
    }
    Ok(tokens)
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<(usize, Token)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    /// TDengine's error for the token at the cursor.
    fn error(&self) -> TdError {
        let from = self
            .tokens
            .get(self.at)
            .map(|(p, _)| *p)
            .unwrap_or(self.sql.len());
        status::syntax_error(&self.sql[from..])
    }

    fn keyword(&mut self, word: &str) -> bool {
        if matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_keyword(&mut self, word: &str) -> Result<(), TdError> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn sym(&mut self, sym: &str) -> bool {
        if matches!(self.peek(), Some(Token::Sym(s)) if *s == sym) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect_sym(&mut self, sym: &str) -> Result<(), TdError> {
        if self.sym(sym) {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    fn name(&mut self) -> Result<String, TdError> {
        const RESERVED: &[&str] = &[
            "select",
            "from",
            "where",
            "and",
            "partition",
            "by",
            "order",
            "limit",
            "offset",
            "describe",
        ];
        match self.peek().cloned() {
            Some(Token::Quoted(n)) => {
                self.at += 1;
                Ok(n)
            }
            Some(Token::Word(w)) if !RESERVED.contains(&w.to_ascii_lowercase().as_str()) => {
                self.at += 1;
                Ok(w)
            }
            _ => Err(self.error()),
        }
    }

    fn table_ref(&mut self) -> Result<TableRef, TdError> {
        let first = self.name()?;
        if self.sym(".") {
            Ok(TableRef {
                database: Some(first),
                name: self.name()?,
            })
        } else {
            Ok(TableRef {
                database: None,
                name: first,
            })
        }
    }

    fn item(&mut self) -> Result<Item, TdError> {
        for (function, make) in [
            ("first", Item::First as fn(String) -> Item),
            ("last", Item::Last as fn(String) -> Item),
        ] {
            if matches!(self.tokens.get(self.at + 1), Some((_, Token::Sym("("))))
                && self.keyword(function)
            {
                self.expect_sym("(")?;
                let column = self.name()?;
                self.expect_sym(")")?;
                return Ok(make(column));
            }
        }
        if matches!(self.tokens.get(self.at + 1), Some((_, Token::Sym("("))))
            && self.keyword("count")
        {
            self.expect_sym("(")?;
            self.expect_sym("*")?;
            self.expect_sym(")")?;
            return Ok(Item::CountStar);
        }
        Ok(Item::Column(self.name()?))
    }

    fn condition(&mut self) -> Result<Condition, TdError> {
        let column = self.name()?;
        let op = match self.peek() {
            Some(Token::Sym("=")) => Op::Eq,
            Some(Token::Sym("!=")) => Op::Ne,
            Some(Token::Sym("<")) => Op::Lt,
            Some(Token::Sym("<=")) => Op::Le,
            Some(Token::Sym(">")) => Op::Gt,
            Some(Token::Sym(">=")) => Op::Ge,
            _ => return Err(self.error()),
        };
        self.at += 1;
        let value = match self.peek().cloned() {
            Some(Token::Int(i)) => Literal::Int(i),
            Some(Token::Str(s)) => Literal::Str(s),
            _ => return Err(self.error()),
        };
        self.at += 1;
        Ok(Condition { column, op, value })
    }

    fn number(&mut self) -> Result<u64, TdError> {
        match self.peek() {
            Some(Token::Int(i)) if *i >= 0 => {
                let n = *i as u64;
                self.at += 1;
                Ok(n)
            }
            _ => Err(self.error()),
        }
    }

    fn select(&mut self) -> Result<Select, TdError> {
        let mut items = vec![self.item()?];
        while self.sym(",") {
            items.push(self.item()?);
        }
        self.expect_keyword("from")?;
        let from = self.table_ref()?;
        let mut conditions = Vec::new();
        if self.keyword("where") {
            conditions.push(self.condition()?);
            while self.keyword("and") {
                conditions.push(self.condition()?);
            }
        }
        let mut partition_by_tbname = false;
        if self.keyword("partition") {
            self.expect_keyword("by")?;
            if !self.keyword("tbname") {
                return Err(self.error());
            }
            partition_by_tbname = true;
        }
        let mut order_by = None;
        if self.keyword("order") {
            self.expect_keyword("by")?;
            let column = self.name()?;
            let ascending = !self.keyword("desc");
            if ascending {
                self.keyword("asc");
            }
            order_by = Some((column, ascending));
        }
        let (mut limit, mut offset) = (None, 0);
        if self.keyword("limit") {
            limit = Some(self.number()?);
            if self.keyword("offset") {
                offset = self.number()?;
            }
        }
        Ok(Select {
            items,
            from,
            conditions,
            partition_by_tbname,
            order_by,
            limit,
            offset,
        })
    }
}

/// Parses one statement of the subset.
pub fn parse(sql: &str) -> Result<Statement, TdError> {
    let mut p = Parser {
        sql,
        tokens: tokenize(sql)?,
        at: 0,
    };
    let statement = if p.keyword("describe") {
        Statement::Describe(p.table_ref()?)
    } else if p.keyword("select") {
        Statement::Select(p.select()?)
    } else {
        return Err(p.error());
    };
    if p.at != p.tokens.len() {
        return Err(p.error());
    }
    Ok(statement)
}
