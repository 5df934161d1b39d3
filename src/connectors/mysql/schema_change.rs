//! Noticing that a followed table changed under the binlog reader.
//!
//! The reader decodes row images with the columns it read from `information_schema` when
//! the job started (names, signedness, ENUM/SET members, charsets: the binlog's table map,
//! without `binlog_row_metadata=FULL`, has only types). Once a table's definition changes,
//! that is wrong in ways the row images cannot show: two DOUBLE columns swapped by
//! position decode "fine" into each other's fields, a DOUBLE turned DECIMAL dead-letters
//! every later row, and TRUNCATE removes rows without any row event. Until CDC can follow
//! schema changes, the reader stops at the first sign of one, before applying anything
//! after it, so the recorded position stays before the change:
//!
//! - a DDL statement naming a followed table ([`tables_changed`]): ALTER, RENAME, DROP,
//!   TRUNCATE, CREATE [OR REPLACE], CREATE/DROP INDEX, DROP DATABASE; names are matched
//!   case-insensitively, quoted or not, with or without the schema. Before reading any
//!   row, the reader also looks for one between its start position and the end of the
//!   binlog: a DDL made while no job ran means the definitions just read are already the
//!   new ones, wrong for every row before it;
//! - a table map that does not match the definition read at start ([`TableDefinition`]);
//! - a table map that differs from the first one seen in this run (types and metadata:
//!   widths, DECIMAL precision, fractional seconds), even where no statement was
//!   recognised.

use mysql_async::binlog::events::TableMapEvent;
use mysql_async::consts::ColumnType;

/// The end of every schema-change error: what the job did, and the way out.
pub(super) const REMEDY: &str = "CDC cannot follow schema changes yet. The job stopped before this change, and its recorded position is before it. Re-snapshot the table with `tsmig-job -c backfill+cdc --fresh` (after adjusting the mappings if the columns they read changed); points of rows the change removed (DROP, TRUNCATE) stay in the target until deleted there";

/// A table a statement changes: `db` is `None` when the statement does not qualify it
/// (it is then in the statement's default database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Changed {
    Table {
        db: Option<String>,
        name: String,
    },
    /// DROP DATABASE (and CREATE OR REPLACE DATABASE): every table in it.
    Database(String),
}

impl Changed {
    /// Whether this names `db`.`name`, with `default_db` for an unqualified name. MySQL
    /// compares table names case-sensitively on most systems; matching without case can
    /// only stop a job needlessly, never let a change through.
    pub(super) fn names(&self, default_db: &str, db: &str, name: &str) -> bool {
        match self {
            Changed::Table { db: d, name: n } => {
                d.as_deref().unwrap_or(default_db).eq_ignore_ascii_case(db)
                    && n.eq_ignore_ascii_case(name)
            }
            Changed::Database(d) => d.eq_ignore_ascii_case(db),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// An unquoted word (keyword or identifier).
    Word(String),
    /// A `backquoted` identifier, or a "double-quoted" or 'single-quoted' string (an
    /// identifier under ANSI_QUOTES).
    Quoted(String),
    Punct(char),
}

impl Token {
    fn is(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }
}

/// The statement's tokens, without comments; the body of a versioned comment
/// (`/*!40000 ... */`, `/*M!100000 ... */`) is part of the statement, as the server reads it.
fn tokens(statement: &str) -> Vec<Token> {
    let chars: Vec<char> = statement.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_versioned_comment = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('*') {
            let body = &chars[i + 2..];
            let versioned = match body {
                ['!', ..] => Some(1),
                ['M', '!', ..] => Some(2),
                _ => None,
            };
            if let Some(marker) = versioned {
                i += 2 + marker;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
                in_versioned_comment = true;
            } else {
                i += 2;
                while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                    i += 1;
                }
                i += 2;
            }
        } else if c == '*' && next == Some('/') && in_versioned_comment {
            in_versioned_comment = false;
            i += 2;
        } else if c == '#'
            || (c == '-' && next == Some('-') && chars.get(i + 2).is_none_or(|c| c.is_whitespace()))
        {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '`' || c == '"' || c == '\'' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() {
                if chars[i] == c {
                    if chars.get(i + 1) == Some(&c) {
                        text.push(c);
                        i += 2;
                        continue;
                    }
                    break;
                }
                if chars[i] == '\\' && c != '`' && i + 1 < chars.len() {
                    i += 1;
                }
                text.push(chars[i]);
                i += 1;
            }
            i += 1;
            out.push(Token::Quoted(text));
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            out.push(Token::Word(chars[start..i].iter().collect()));
        } else {
            out.push(Token::Punct(c));
            i += 1;
        }
    }
    out
}

/// A cursor over a statement's tokens.
struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    /// Consumes `keyword` if it is next.
    fn eat(&mut self, keyword: &str) -> bool {
        let found = self.peek().is_some_and(|t| t.is(keyword));
        if found {
            self.at += 1;
        }
        found
    }

    /// Consumes the keywords if they are next, all of them.
    fn eat_all(&mut self, keywords: &[&str]) -> bool {
        let ahead = keywords
            .iter()
            .enumerate()
            .all(|(k, w)| self.tokens.get(self.at + k).is_some_and(|t| t.is(w)));
        if ahead {
            self.at += keywords.len();
        }
        ahead
    }

    fn identifier(&mut self) -> Option<String> {
        let text = match self.peek()? {
            Token::Word(w) | Token::Quoted(w) => w.clone(),
            Token::Punct(_) => return None,
        };
        self.at += 1;
        Some(text)
    }

    /// `name` or `db.name`.
    fn table(&mut self) -> Option<Changed> {
        let first = self.identifier()?;
        if self.peek() == Some(&Token::Punct('.')) {
            self.at += 1;
            let name = self.identifier()?;
            return Some(Changed::Table {
                db: Some(first),
                name,
            });
        }
        Some(Changed::Table {
            db: None,
            name: first,
        })
    }

    /// `name [, name]...`.
    fn tables(&mut self) -> Vec<Changed> {
        let mut out = Vec::new();
        while let Some(t) = self.table() {
            out.push(t);
            if self.peek() != Some(&Token::Punct(',')) {
                break;
            }
            self.at += 1;
        }
        out
    }

    /// Moves past the next `keyword` (a reserved word, so never a bare name); false if
    /// there is none.
    fn skip_to(&mut self, keyword: &str) -> bool {
        while let Some(t) = self.tokens.get(self.at) {
            self.at += 1;
            if t.is(keyword) {
                return true;
            }
        }
        false
    }
}

/// The tables (or databases) whose rows or columns `statement` changes, if it is a DDL
/// statement that can; empty for anything else (DML logged as a statement, GRANT, ...).
pub(super) fn tables_changed(statement: &str) -> Vec<Changed> {
    let mut p = Parser {
        tokens: tokens(statement),
        at: 0,
    };
    let mut out = Vec::new();
    if p.eat("ALTER") {
        p.eat("ONLINE");
        p.eat("IGNORE");
        if !p.eat("TABLE") {
            return out;
        }
        p.eat_all(&["IF", "EXISTS"]);
        out.extend(p.table());
        // ALTER TABLE t ..., RENAME [TO|AS] other; ... EXCHANGE PARTITION p WITH TABLE other.
        while let Some(token) = p.peek().cloned() {
            p.at += 1;
            if token.is("RENAME") {
                let what = p.peek();
                if ["COLUMN", "INDEX", "KEY", "CONSTRAINT"]
                    .iter()
                    .any(|k| what.is_some_and(|t| t.is(k)))
                {
                    continue;
                }
                if !p.eat("TO") {
                    p.eat("AS");
                }
                out.extend(p.table());
            } else if token.is("WITH") && p.eat("TABLE") {
                out.extend(p.table());
            }
        }
    } else if p.eat("RENAME") {
        if !(p.eat("TABLE") || p.eat("TABLES")) {
            return out;
        }
        p.eat_all(&["IF", "EXISTS"]);
        // a TO b [, c TO d]...; MariaDB allows WAIT n / NOWAIT after a name.
        loop {
            out.extend(p.table());
            if !p.skip_to("TO") {
                break;
            }
            out.extend(p.table());
            if p.peek() != Some(&Token::Punct(',')) {
                break;
            }
            p.at += 1;
        }
    } else if p.eat("DROP") {
        if p.eat("TEMPORARY") {
            // A temporary table only shadows the real one.
            return out;
        }
        if p.eat("TABLE") || p.eat("TABLES") {
            p.eat_all(&["IF", "EXISTS"]);
            out.extend(p.tables());
        } else if p.eat("DATABASE") || p.eat("SCHEMA") {
            p.eat_all(&["IF", "EXISTS"]);
            out.extend(p.identifier().map(Changed::Database));
        } else if p.eat("INDEX") && p.skip_to("ON") {
            out.extend(p.table());
        }
    } else if p.eat("TRUNCATE") {
        p.eat("TABLE");
        out.extend(p.table());
    } else if p.eat("CREATE") {
        let replace = p.eat_all(&["OR", "REPLACE"]);
        if p.eat("TEMPORARY") {
            return out;
        }
        if p.eat("TABLE") {
            p.eat_all(&["IF", "NOT", "EXISTS"]);
            // CREATE TABLE x LIKE t / AS SELECT ... FROM t only reads t.
            out.extend(p.table());
        } else if p.eat("DATABASE") || p.eat("SCHEMA") {
            if replace {
                out.extend(p.identifier().map(Changed::Database));
            }
        } else {
            for kind in ["UNIQUE", "FULLTEXT", "SPATIAL", "ONLINE", "OFFLINE"] {
                p.eat(kind);
            }
            if p.eat("INDEX") && p.skip_to("ON") {
                out.extend(p.table());
            }
        }
    }
    out
}

/// A statement as an error message shows it: on one line, at most 300 characters.
pub(super) fn shown(statement: &str) -> String {
    let line: String = statement.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}

/// The binlog column types a column of this `DATA_TYPE` can have (old and new temporal
/// formats alike); `None` for types whose binlog form is not checked (MariaDB's UUID,
/// INET4/INET6 and other plugin types).
fn binlog_types(data_type: &str) -> Option<&'static [ColumnType]> {
    use ColumnType::*;
    Some(match data_type {
        "tinyint" => &[MYSQL_TYPE_TINY],
        "smallint" => &[MYSQL_TYPE_SHORT],
        "mediumint" => &[MYSQL_TYPE_INT24],
        "int" | "integer" => &[MYSQL_TYPE_LONG],
        "bigint" => &[MYSQL_TYPE_LONGLONG],
        "float" => &[MYSQL_TYPE_FLOAT],
        "double" | "real" => &[MYSQL_TYPE_DOUBLE],
        "decimal" | "numeric" => &[MYSQL_TYPE_NEWDECIMAL, MYSQL_TYPE_DECIMAL],
        "bit" => &[MYSQL_TYPE_BIT],
        "year" => &[MYSQL_TYPE_YEAR],
        "date" => &[MYSQL_TYPE_NEWDATE, MYSQL_TYPE_DATE],
        "time" => &[MYSQL_TYPE_TIME2, MYSQL_TYPE_TIME],
        "datetime" => &[MYSQL_TYPE_DATETIME2, MYSQL_TYPE_DATETIME],
        "timestamp" => &[MYSQL_TYPE_TIMESTAMP2, MYSQL_TYPE_TIMESTAMP],
        "char" | "binary" => &[MYSQL_TYPE_STRING],
        "varchar" | "varbinary" => &[MYSQL_TYPE_VARCHAR, MYSQL_TYPE_VAR_STRING],
        "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob"
        | "longblob" => &[
            MYSQL_TYPE_BLOB,
            MYSQL_TYPE_TINY_BLOB,
            MYSQL_TYPE_MEDIUM_BLOB,
            MYSQL_TYPE_LONG_BLOB,
        ],
        // MySQL's binary JSON; MariaDB's JSON is LONGTEXT (DATA_TYPE says so).
        "json" => &[MYSQL_TYPE_JSON, MYSQL_TYPE_BLOB],
        "enum" => &[MYSQL_TYPE_ENUM],
        "set" => &[MYSQL_TYPE_SET],
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" => &[MYSQL_TYPE_GEOMETRY],
        _ => return None,
    })
}

/// A table's definition as the reader read it at start: per column, its name and
/// `DATA_TYPE`.
pub(super) struct TableDefinition<'a> {
    pub columns: Vec<(&'a str, &'a str)>,
}

impl TableDefinition<'_> {
    /// How `tme` differs from this definition, in words; `None` if it matches as far as
    /// a table map can tell (count and type of every column; with
    /// `binlog_row_metadata=FULL`, also the names).
    pub(super) fn difference(&self, tme: &TableMapEvent<'_>) -> Option<String> {
        let count = tme.columns_count() as usize;
        if count != self.columns.len() {
            return Some(format!(
                "{count} columns in the binlog, {} when the job started",
                self.columns.len()
            ));
        }
        for (i, (name, data_type)) in self.columns.iter().enumerate() {
            let Some(expected) = binlog_types(data_type) else {
                continue;
            };
            let actual = tme.get_column_type(i);
            if !matches!(actual, Ok(Some(t)) if expected.contains(&t)) {
                return Some(format!(
                    "column {} (`{name}`, {data_type} when the job started) is {} in the binlog",
                    i + 1,
                    match actual {
                        Ok(Some(t)) => format!("{t:?}"),
                        _ => format!("of type {:?}", tme.get_raw_column_type(i)),
                    }
                ));
            }
        }
        let names = tme.iter_optional_meta().find_map(|field| match field {
            Ok(mysql_async::binlog::events::OptionalMetadataField::ColumnName(names)) => {
                Some(names)
            }
            _ => None,
        });
        if let Some(names) = names {
            for (i, ((name, _), found)) in self.columns.iter().zip(names.iter_names()).enumerate() {
                let found = found.map(|n| n.name().into_owned()).unwrap_or_default();
                if !found.eq_ignore_ascii_case(name) {
                    return Some(format!(
                        "column {} is `{found}` in the binlog, `{name}` when the job started",
                        i + 1
                    ));
                }
            }
        }
        None
    }
}

/// The layout of a table map: every column's binlog type and metadata. Two table maps of
/// one table with the same signature decode alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Signature(Vec<(u8, Vec<u8>)>);

impl Signature {
    pub(super) fn of(tme: &TableMapEvent<'_>) -> Self {
        Signature(
            (0..tme.columns_count() as usize)
                .map(|i| {
                    let column_type = tme
                        .get_raw_column_type(i)
                        .ok()
                        .flatten()
                        .map_or(u8::MAX, |t| t as u8);
                    let meta = tme.get_column_metadata(i).unwrap_or(&[]).to_vec();
                    (column_type, meta)
                })
                .collect(),
        )
    }

    /// The first column where `self` (now) differs from `before`, in words.
    pub(super) fn difference(&self, before: &Signature) -> Option<String> {
        if self.0.len() != before.0.len() {
            return Some(format!(
                "{} columns in this table map, {} in the first one",
                self.0.len(),
                before.0.len()
            ));
        }
        let describe = |(t, meta): &(u8, Vec<u8>)| {
            let name = ColumnType::try_from(*t)
                .map(|t| format!("{t:?}"))
                .unwrap_or_else(|_| format!("type {t}"));
            format!("{name} {meta:?}")
        };
        let i = self.0.iter().zip(&before.0).position(|(a, b)| a != b)?;
        Some(format!(
            "column {} is {} in this table map, {} in the first one",
            i + 1,
            describe(&self.0[i]),
            describe(&before.0[i])
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(db: Option<&str>, name: &str) -> Changed {
        Changed::Table {
            db: db.map(str::to_string),
            name: name.to_string(),
        }
    }

    #[test]
    fn ddl_statements_name_the_tables_they_change() {
        let t = |name| table(None, name);
        let cases: Vec<(&str, Vec<Changed>)> = vec![
            ("ALTER TABLE sensor ADD COLUMN x INT", vec![t("sensor")]),
            (
                "alter online ignore table `factory`.`Sensor` drop column y",
                vec![table(Some("factory"), "Sensor")],
            ),
            (
                "ALTER TABLE IF EXISTS factory . sensor MODIFY a DOUBLE AFTER b",
                vec![table(Some("factory"), "sensor")],
            ),
            ("ALTER TABLE a RENAME COLUMN x TO y", vec![t("a")]),
            (
                "ALTER TABLE a RENAME INDEX x TO y, RENAME TO b",
                vec![t("a"), t("b")],
            ),
            ("ALTER TABLE a RENAME b", vec![t("a"), t("b")]),
            (
                "ALTER TABLE a EXCHANGE PARTITION p0 WITH TABLE other.b",
                vec![t("a"), table(Some("other"), "b")],
            ),
            (
                "RENAME TABLE a TO b, b TO a",
                vec![t("a"), t("b"), t("b"), t("a")],
            ),
            (
                "RENAME TABLES `x``y` WAIT 5 TO db.z",
                vec![t("x`y"), table(Some("db"), "z")],
            ),
            (
                "DROP TABLE IF EXISTS `a`,b /* generated by server */",
                vec![t("a"), t("b")],
            ),
            ("DROP TEMPORARY TABLE a", vec![]),
            (
                "DROP DATABASE IF EXISTS factory",
                vec![Changed::Database("factory".into())],
            ),
            (
                "DROP INDEX i ON factory.a",
                vec![table(Some("factory"), "a")],
            ),
            ("TRUNCATE TABLE a", vec![t("a")]),
            ("truncate a", vec![t("a")]),
            ("CREATE OR REPLACE TABLE a (x INT)", vec![t("a")]),
            ("CREATE TABLE IF NOT EXISTS a LIKE b", vec![t("a")]),
            ("CREATE TEMPORARY TABLE a (x INT)", vec![]),
            ("CREATE UNIQUE INDEX i USING BTREE ON a (x)", vec![t("a")]),
            ("CREATE DATABASE factory", vec![]),
            (
                "CREATE OR REPLACE DATABASE factory",
                vec![Changed::Database("factory".into())],
            ),
            // Comments, versioned comments (mysqldump's), odd spacing.
            (
                "/* a comment naming b */ ALTER /*!32312 IGNORE*/ TABLE\n\ta -- to b\n ADD x INT",
                vec![t("a")],
            ),
            ("/*!40000 ALTER TABLE `a` DISABLE KEYS */", vec![t("a")]),
            ("# DROP TABLE b\nTRUNCATE a", vec![t("a")]),
            // Not DDL that changes a table: nothing.
            ("BEGIN", vec![]),
            ("COMMIT", vec![]),
            ("INSERT INTO a VALUES (1)", vec![]),
            ("ALTER DATABASE factory CHARACTER SET utf8mb4", vec![]),
            ("ANALYZE TABLE a", vec![]),
            ("GRANT SELECT ON a TO 'u'", vec![]),
            ("", vec![]),
        ];
        for (statement, expected) in cases {
            assert_eq!(tables_changed(statement), expected, "{statement}");
        }
    }

    #[test]
    fn a_changed_table_is_matched_without_case_and_in_the_default_database() {
        let changed = tables_changed("ALTER TABLE Sensor ADD x INT");
        assert!(changed[0].names("factory", "factory", "sensor"));
        assert!(!changed[0].names("other", "factory", "sensor"));
        let qualified = tables_changed("ALTER TABLE `FACTORY`.sensor ADD x INT");
        assert!(qualified[0].names("other", "factory", "sensor"));
        // Another table whose column is named like the followed table is not it.
        let other = tables_changed("ALTER TABLE readings ADD COLUMN sensor INT");
        assert_eq!(other, vec![table(None, "readings")]);
        assert!(!other[0].names("factory", "factory", "sensor"));
    }

    #[test]
    fn statements_are_shown_on_one_line_and_cut() {
        assert_eq!(
            shown("ALTER TABLE a\n   ADD x INT"),
            "ALTER TABLE a ADD x INT"
        );
        let long = format!("ALTER TABLE a ADD COLUMN {} INT", "x".repeat(400));
        assert_eq!(shown(&long).chars().count(), 301);
        assert!(shown(&long).ends_with('…'));
    }
}
