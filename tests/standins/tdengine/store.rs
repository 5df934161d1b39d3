//! The stand-in's databases in memory, and the evaluation of the SQL subset over them.
//!
//! A database has a precision (timestamps are kept as integers of it) and tables: super
//! tables (columns, tag columns and sub-tables with their tag values) and plain tables
//! (kept as a super table without tags whose one sub-table has the table's own name).
//! Rows are keyed by timestamp, the primary key: writing the same timestamp again
//! replaces the row, as TDengine does.

use super::sql::{Condition, Item, Literal, Select, Statement, TableRef};
use super::status::{self, TdError};
use std::collections::BTreeMap;

/// A TDengine data type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdType {
    Timestamp,
    Bool,
    TinyInt,
    SmallInt,
    Int,
    BigInt,
    UTinyInt,
    USmallInt,
    UInt,
    UBigInt,
    Float,
    Double,
    /// VARCHAR (BINARY) of a length in bytes.
    Varchar(u32),
    /// NCHAR of a length in characters.
    Nchar(u32),
    Json,
}

impl TdType {
    /// The name TDengine 3 shows in DESCRIBE and `column_meta`.
    pub fn name(self) -> &'static str {
        match self {
            TdType::Timestamp => "TIMESTAMP",
            TdType::Bool => "BOOL",
            TdType::TinyInt => "TINYINT",
            TdType::SmallInt => "SMALLINT",
            TdType::Int => "INT",
            TdType::BigInt => "BIGINT",
            TdType::UTinyInt => "TINYINT UNSIGNED",
            TdType::USmallInt => "SMALLINT UNSIGNED",
            TdType::UInt => "INT UNSIGNED",
            TdType::UBigInt => "BIGINT UNSIGNED",
            TdType::Float => "FLOAT",
            TdType::Double => "DOUBLE",
            TdType::Varchar(_) => "VARCHAR",
            TdType::Nchar(_) => "NCHAR",
            TdType::Json => "JSON",
        }
    }

    /// The length TDengine shows (bytes; characters for NCHAR).
    pub fn length(self) -> u32 {
        match self {
            TdType::Bool | TdType::TinyInt | TdType::UTinyInt => 1,
            TdType::SmallInt | TdType::USmallInt => 2,
            TdType::Int | TdType::UInt | TdType::Float => 4,
            TdType::Timestamp | TdType::BigInt | TdType::UBigInt | TdType::Double => 8,
            TdType::Varchar(n) | TdType::Nchar(n) => n,
            TdType::Json => 4095,
        }
    }
}

/// A stored value.
#[derive(Clone, Debug, PartialEq)]
pub enum TdValue {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f32),
    Double(f64),
    Text(String),
    /// A JSON tag's text.
    Json(String),
    /// A timestamp in the database's precision.
    Ts(i64),
}

/// A database's time precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    Ms,
    Us,
    Ns,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Ms => "ms",
            Precision::Us => "us",
            Precision::Ns => "ns",
        }
    }

    /// Units per second.
    pub fn per_second(self) -> i64 {
        match self {
            Precision::Ms => 1_000,
            Precision::Us => 1_000_000,
            Precision::Ns => 1_000_000_000,
        }
    }

    /// Nanoseconds per unit.
    pub fn nanos(self) -> i64 {
        1_000_000_000 / self.per_second()
    }

    /// RFC 3339 text with the precision's fraction digits, in UTC (`Z`) or at the
    /// stand-in's own zone (+08:00, when the request names no `tz`), as taosAdapter writes
    /// timestamps.
    pub fn format(self, units: i64, utc: bool) -> String {
        let per = self.per_second();
        let (secs, frac) = (units.div_euclid(per), units.rem_euclid(per));
        let digits = match self {
            Precision::Ms => 3,
            Precision::Us => 6,
            Precision::Ns => 9,
        };
        let offset = if utc { 0 } else { 8 * 3600 };
        let wall =
            chrono::DateTime::from_timestamp(secs + offset, 0).expect("a representable time");
        let zone = if utc {
            "Z".to_string()
        } else {
            "+08:00".to_string()
        };
        format!(
            "{}.{frac:0digits$}{zone}",
            wall.naive_utc().format("%Y-%m-%dT%H:%M:%S")
        )
    }
}

/// A column or tag definition.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    pub ty: TdType,
}

/// One sub-table: its tag values and rows (timestamp → the other columns' values).
#[derive(Clone, Debug, Default)]
pub struct SubTable {
    pub tags: Vec<TdValue>,
    pub rows: BTreeMap<i64, Vec<TdValue>>,
}

/// A super table, or a plain table (no tags, one sub-table of its own name).
#[derive(Clone, Debug)]
pub struct Table {
    pub plain: bool,
    /// Every column; the first is the TIMESTAMP primary key.
    pub columns: Vec<ColumnDef>,
    pub tags: Vec<ColumnDef>,
    pub subtables: BTreeMap<String, SubTable>,
}

#[derive(Clone, Debug)]
pub struct Database {
    pub precision: Precision,
    pub tables: BTreeMap<String, Table>,
}

/// A stored row as a test reads it back: sub-table, time, column values (without the
/// timestamp), tag values.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRow {
    pub tbname: String,
    pub ts: i64,
    pub values: Vec<TdValue>,
    pub tags: Vec<TdValue>,
}

/// A result: `column_meta` (name, type) and rows.
pub struct ResultSet {
    pub columns: Vec<(String, TdType)>,
    pub rows: Vec<Vec<TdValue>>,
}

/// One sub-table's rows that pass a WHERE clause: name, sub-table, (time, values).
type Group<'a> = (&'a String, &'a SubTable, Vec<(i64, &'a Vec<TdValue>)>);

/// What a name in a statement refers to, for one table.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Ref {
    Ts,
    Column(usize),
    Tag(usize),
    Tbname,
}

/// Every database.
#[derive(Default)]
pub struct Store {
    pub databases: BTreeMap<String, Database>,
}

impl Store {
    /// Runs one statement against database `default_db` (from the URL path, if any).
    pub fn execute(
        &self,
        statement: &Statement,
        default_db: Option<&str>,
    ) -> Result<ResultSet, TdError> {
        match statement {
            Statement::Describe(from) => {
                let (_, table, _) = self.resolve(from, default_db)?;
                let mut rows = Vec::new();
                for (c, note) in table
                    .columns
                    .iter()
                    .map(|c| (c, ""))
                    .chain(table.tags.iter().map(|c| (c, "TAG")))
                {
                    rows.push(vec![
                        TdValue::Text(c.name.clone()),
                        TdValue::Text(c.ty.name().into()),
                        TdValue::Int(c.ty.length() as i64),
                        TdValue::Text(note.into()),
                    ]);
                }
                Ok(ResultSet {
                    columns: vec![
                        ("field".into(), TdType::Varchar(64)),
                        ("type".into(), TdType::Varchar(32)),
                        ("length".into(), TdType::Int),
                        ("note".into(), TdType::Varchar(8)),
                    ],
                    rows,
                })
            }
            Statement::Select(select) => {
                if select
                    .from
                    .database
                    .as_deref()
                    .is_some_and(|d| d.eq_ignore_ascii_case("information_schema"))
                {
                    return self.ins_databases(select);
                }
                self.select(select, default_db)
            }
        }
    }

    /// `information_schema.ins_databases`: columns `name` and `precision`.
    fn ins_databases(&self, select: &Select) -> Result<ResultSet, TdError> {
        if !select.from.name.eq_ignore_ascii_case("ins_databases") {
            return Err(status::not_in_standin(&format!(
                "information_schema.{}",
                select.from.name
            )));
        }
        let value = |name: &str, db: &str, d: &Database| match name {
            "name" => Ok(TdValue::Text(db.to_string())),
            "precision" => Ok(TdValue::Text(d.precision.name().into())),
            other => Err(status::invalid_column(other)),
        };
        let mut columns = Vec::new();
        for item in &select.items {
            match item {
                Item::Column(c) if c == "name" || c == "precision" => {
                    columns.push((c.clone(), TdType::Varchar(64)))
                }
                Item::Column(c) => return Err(status::invalid_column(c)),
                _ => return Err(status::not_in_standin("aggregates on ins_databases")),
            }
        }
        let mut rows = Vec::new();
        'dbs: for (name, db) in &self.databases {
            for cond in &select.conditions {
                let (Literal::Str(want), TdValue::Text(have)) =
                    (&cond.value, value(&cond.column, name, db)?)
                else {
                    return Err(status::not_in_standin(
                        "non-text conditions on ins_databases",
                    ));
                };
                if !cond.op.holds(&have, want) {
                    continue 'dbs;
                }
            }
            let mut row = Vec::new();
            for (c, _) in &columns {
                row.push(value(c, name, db)?);
            }
            rows.push(row);
        }
        Ok(ResultSet { columns, rows })
    }

    /// The database, table and (for a sub-table) the one sub-table `from` names.
    fn resolve<'a>(
        &'a self,
        from: &TableRef,
        default_db: Option<&str>,
    ) -> Result<(&'a Database, &'a Table, Option<String>), TdError> {
        let db_name = from
            .database
            .as_deref()
            .or(default_db)
            .ok_or_else(status::db_not_specified)?;
        let db = self
            .databases
            .get(db_name)
            .ok_or_else(|| status::db_not_exist(db_name))?;
        if let Some(table) = db.tables.get(&from.name) {
            return Ok((db, table, None));
        }
        for table in db.tables.values() {
            if !table.plain && table.subtables.contains_key(&from.name) {
                return Ok((db, table, Some(from.name.clone())));
            }
        }
        Err(status::table_not_exist(&from.name))
    }

    fn select(&self, select: &Select, default_db: Option<&str>) -> Result<ResultSet, TdError> {
        let (_, table, only) = self.resolve(&select.from, default_db)?;
        let lookup = |name: &str| -> Result<(Ref, TdType), TdError> {
            if name.eq_ignore_ascii_case("tbname") {
                return Ok((Ref::Tbname, TdType::Varchar(192)));
            }
            if let Some(i) = table.columns.iter().position(|c| c.name == name) {
                return Ok((
                    if i == 0 { Ref::Ts } else { Ref::Column(i - 1) },
                    table.columns[i].ty,
                ));
            }
            if let Some(i) = table.tags.iter().position(|c| c.name == name) {
                return Ok((Ref::Tag(i), table.tags[i].ty));
            }
            Err(status::invalid_column(name))
        };
        // Rows that pass the WHERE clause, by sub-table.
        let mut conditions = Vec::new();
        for Condition { column, op, value } in &select.conditions {
            let (r, _) = lookup(column)?;
            conditions.push((r, *op, value.clone()));
        }
        let mut groups: Vec<Group> = Vec::new();
        for (name, sub) in &table.subtables {
            if only.as_ref().is_some_and(|o| o != name) {
                continue;
            }
            let mut rows = Vec::new();
            'rows: for (ts, values) in &sub.rows {
                for (r, op, value) in &conditions {
                    let have = value_of(*r, name, *ts, values, sub);
                    let holds = match (&have, value) {
                        (TdValue::Ts(a), Literal::Int(b)) | (TdValue::Int(a), Literal::Int(b)) => {
                            op.holds(a, b)
                        }
                        (TdValue::Text(a), Literal::Str(b)) => op.holds(a, b),
                        (TdValue::Null, _) => false,
                        _ => return Err(status::not_in_standin("this comparison")),
                    };
                    if !holds {
                        continue 'rows;
                    }
                }
                rows.push((*ts, values));
            }
            groups.push((name, sub, rows));
        }

        let mut columns = Vec::new();
        let mut refs = Vec::new();
        for item in &select.items {
            let (r, ty) = match item {
                Item::Column(c) | Item::First(c) | Item::Last(c) => lookup(c)?,
                Item::CountStar => (Ref::Ts, TdType::BigInt),
            };
            if matches!(item, Item::First(_) | Item::Last(_))
                && matches!(r, Ref::Tag(_) | Ref::Tbname)
            {
                return Err(status::not_in_standin("FIRST/LAST of a tag"));
            }
            columns.push((item.display(), ty));
            refs.push(r);
        }

        let aggregate = select.items.iter().any(Item::is_aggregate);
        let mut out = Vec::new();
        if aggregate {
            if !select.partition_by_tbname {
                // One group: the whole table. Only COUNT(*) is answered there.
                if select.items.iter().any(|i| *i != Item::CountStar) {
                    return Err(status::not_in_standin(
                        "aggregates other than COUNT(*) without PARTITION BY tbname",
                    ));
                }
                let total = groups.iter().map(|g| g.2.len() as i64).sum();
                out.push(vec![TdValue::Int(total); select.items.len()]);
            }
            for (name, sub, rows) in groups.iter().filter(|_| select.partition_by_tbname) {
                if rows.is_empty() {
                    continue;
                }
                let mut row = Vec::new();
                for (item, r) in select.items.iter().zip(&refs) {
                    let mut non_null = rows
                        .iter()
                        .map(|(ts, values)| value_of(*r, name, *ts, values, sub))
                        .filter(|v| *v != TdValue::Null);
                    row.push(match item {
                        Item::Column(_) if *r == Ref::Tbname => TdValue::Text((*name).clone()),
                        Item::Column(c) => {
                            return Err(status::not_in_standin(&format!(
                                "column {c} beside aggregates"
                            )))
                        }
                        Item::First(_) => non_null.clone().next().unwrap_or(TdValue::Null),
                        Item::Last(_) => non_null.next_back().unwrap_or(TdValue::Null),
                        Item::CountStar => TdValue::Int(rows.len() as i64),
                    });
                }
                out.push(row);
            }
        } else {
            let mut all: Vec<(i64, &String, &Vec<TdValue>, &SubTable)> = groups
                .iter()
                .flat_map(|(name, sub, rows)| {
                    rows.iter().map(move |(ts, v)| (*ts, *name, *v, *sub))
                })
                .collect();
            match &select.order_by {
                None => {}
                Some((column, ascending)) => {
                    if lookup(column)?.0 != Ref::Ts {
                        return Err(status::not_in_standin("ORDER BY other than the timestamp"));
                    }
                    all.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
                    if !ascending {
                        all.reverse();
                    }
                }
            }
            let limit = select.limit.unwrap_or(u64::MAX);
            for (ts, name, values, sub) in all
                .into_iter()
                .skip(select.offset as usize)
                .take(limit.min(usize::MAX as u64) as usize)
            {
                out.push(
                    refs.iter()
                        .map(|r| value_of(*r, name, ts, values, sub))
                        .collect(),
                );
            }
        }
        Ok(ResultSet { columns, rows: out })
    }
}

fn value_of(r: Ref, name: &str, ts: i64, values: &[TdValue], sub: &SubTable) -> TdValue {
    match r {
        Ref::Ts => TdValue::Ts(ts),
        Ref::Column(i) => values[i].clone(),
        Ref::Tag(i) => sub.tags[i].clone(),
        Ref::Tbname => TdValue::Text(name.to_string()),
    }
}
