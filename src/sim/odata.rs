//! The OData `$filter` subset the machines list accepts, parsed once and evaluated against entity JSON.
//!
//! Grammar (keywords and field names case-insensitive):
//! `expr := and ("or" and)*`, `and := term ("and" term)*`,
//! `term := "(" expr ")" | "not" term | "startswith(" field "," 'text' ")" | field op literal`,
//! `op := eq | ne | gt | ge | lt | le`, literal: `'text'` (`''` escapes a quote), a number, `true`, `false`,
//! `null`, or a bare date-time such as `2024-01-01Z` or `2024-01-01T10:00:00.5+02:00`.
//! String comparisons ignore ASCII case; `eq` on an array field (`machineTags`) matches any element.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

/// Fields a filter may name: the keys of the machine entity.
#[rustfmt::skip]
const FIELDS: &[&str] = &[
    "id", "mergedIntoMachineId", "isPotentialDuplication", "isExcluded", "exclusionReason",
    "computerDnsName", "firstSeen", "lastSeen", "osPlatform", "osVersion", "osProcessor", "version",
    "lastIpAddress", "lastExternalIpAddress", "agentVersion", "osBuild", "healthStatus", "deviceValue",
    "rbacGroupId", "rbacGroupName", "riskScore", "exposureLevel", "isAadJoined", "aadDeviceId",
    "machineTags", "defenderAvStatus", "onboardingStatus", "osArchitecture", "managedBy",
    "managedByStatus",
];

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
    Time(DateTime<Utc>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A parsed `$filter`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    StartsWith(&'static str, String),
    Compare(&'static str, Op, Literal),
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Open,
    Close,
    Comma,
    Quoted(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            _ if c.is_whitespace() => {
                chars.next();
            }
            '(' | ')' | ',' => {
                chars.next();
                out.push(match c {
                    '(' => Token::Open,
                    ')' => Token::Close,
                    _ => Token::Comma,
                });
            }
            '\'' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            text.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => text.push(c),
                        None => return Err("unterminated string literal".into()),
                    }
                }
                out.push(Token::Quoted(text));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | ',' | '\'') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn keyword(&mut self, kw: &str) -> bool {
        match self.tokens.get(self.pos) {
            Some(Token::Word(w)) if w.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn expect(&mut self, t: Token) -> Result<(), String> {
        match self.next() {
            Some(got) if got == t => Ok(()),
            got => Err(format!("expected {t:?}, found {got:?}")),
        }
    }

    fn expr(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.and()?];
        while self.keyword("or") {
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::Or(parts) })
    }

    fn and(&mut self) -> Result<Filter, String> {
        let mut parts = vec![self.term()?];
        while self.keyword("and") {
            parts.push(self.term()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Filter::And(parts) })
    }

    fn term(&mut self) -> Result<Filter, String> {
        if self.tokens.get(self.pos) == Some(&Token::Open) {
            self.pos += 1;
            let inner = self.expr()?;
            self.expect(Token::Close)?;
            return Ok(inner);
        }
        if self.keyword("not") {
            return Ok(Filter::Not(Box::new(self.term()?)));
        }
        if self.keyword("startswith") {
            self.expect(Token::Open)?;
            let field = self.field()?;
            self.expect(Token::Comma)?;
            let Some(Token::Quoted(prefix)) = self.next() else {
                return Err("startswith needs a quoted string".into());
            };
            self.expect(Token::Close)?;
            return Ok(Filter::StartsWith(field, prefix));
        }
        let field = self.field()?;
        let op = match self.next() {
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "eq" => Op::Eq,
                "ne" => Op::Ne,
                "gt" => Op::Gt,
                "ge" => Op::Ge,
                "lt" => Op::Lt,
                "le" => Op::Le,
                _ => return Err(format!("unknown operator '{w}'")),
            },
            got => return Err(format!("expected an operator, found {got:?}")),
        };
        Ok(Filter::Compare(field, op, self.literal()?))
    }

    fn field(&mut self) -> Result<&'static str, String> {
        match self.next() {
            Some(Token::Word(w)) => {
                FIELDS.iter().find(|f| f.eq_ignore_ascii_case(&w)).copied().ok_or_else(|| {
                    format!("Could not find a property named '{w}' on type 'Machine'")
                })
            }
            got => Err(format!("expected a property name, found {got:?}")),
        }
    }

    fn literal(&mut self) -> Result<Literal, String> {
        match self.next() {
            Some(Token::Quoted(s)) => Ok(Literal::Text(s)),
            Some(Token::Word(w)) => match w.to_ascii_lowercase().as_str() {
                "null" => Ok(Literal::Null),
                "true" => Ok(Literal::Bool(true)),
                "false" => Ok(Literal::Bool(false)),
                _ => parse_time(&w)
                    .map(Literal::Time)
                    .or_else(|| w.parse().ok().map(Literal::Number))
                    .ok_or_else(|| format!("unrecognised literal '{w}'")),
            },
            got => Err(format!("expected a literal, found {got:?}")),
        }
    }
}

/// A full RFC 3339 date-time, or a bare date with an optional `Z` (midnight UTC).
fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    let date = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc())
}

impl Filter {
    /// Parses a `$filter` value; the error says what is wrong, for the 400 body.
    pub(crate) fn parse(s: &str) -> Result<Filter, String> {
        let mut p = Parser { tokens: tokenize(s)?, pos: 0 };
        let f = p.expr()?;
        if p.pos < p.tokens.len() {
            return Err(format!("unexpected {:?} at the end of the filter", p.tokens[p.pos]));
        }
        Ok(f)
    }

    /// Whether the entity `m` (a JSON object) matches.
    pub(crate) fn matches<E: Entity + ?Sized>(&self, m: &E) -> bool {
        match self {
            Filter::And(v) => v.iter().all(|f| f.matches(m)),
            Filter::Or(v) => v.iter().any(|f| f.matches(m)),
            Filter::Not(f) => !f.matches(m),
            Filter::StartsWith(field, prefix) => match m.field(field) {
                Field::Str(s) => s.to_ascii_lowercase().starts_with(&prefix.to_ascii_lowercase()),
                _ => false,
            },
            Filter::Compare(field, op, lit) => compare(&m.field(field), *op, lit),
        }
    }
}

/// A field value as a filter sees it.
pub(crate) enum Field<'a> {
    Null,
    Str(&'a str),
    Num(f64),
    Bool(bool),
    List(Vec<Field<'a>>),
}

/// Something a filter can be evaluated against; `name` is the canonical spelling from the field list.
pub(crate) trait Entity {
    fn field(&self, name: &'static str) -> Field<'_>;
}

impl Entity for Value {
    fn field(&self, name: &'static str) -> Field<'_> {
        let found =
            self.as_object().and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)));
        found.map_or(Field::Null, |(_, v)| to_field(v))
    }
}

fn to_field(v: &Value) -> Field<'_> {
    match v {
        Value::String(s) => Field::Str(s),
        Value::Number(n) => n.as_f64().map_or(Field::Null, Field::Num),
        Value::Bool(b) => Field::Bool(*b),
        Value::Array(items) => Field::List(items.iter().map(to_field).collect()),
        Value::Null | Value::Object(_) => Field::Null,
    }
}

fn compare(v: &Field<'_>, op: Op, lit: &Literal) -> bool {
    if let Field::List(items) = v {
        return match op {
            Op::Ne => !items.iter().any(|i| compare(i, Op::Eq, lit)),
            _ => items.iter().any(|i| compare(i, op, lit)),
        };
    }
    let ord = match (v, lit) {
        (Field::Null, Literal::Null) => Some(std::cmp::Ordering::Equal),
        (Field::Null, _) | (_, Literal::Null) => None,
        (Field::Str(s), Literal::Time(t)) => parse_time(s).map(|st| st.cmp(t)),
        (Field::Str(s), Literal::Text(t)) => match (parse_time(s), parse_time(t)) {
            (Some(a), Some(b)) if matches!(op, Op::Gt | Op::Ge | Op::Lt | Op::Le) => {
                Some(a.cmp(&b))
            }
            _ => Some(s.to_ascii_lowercase().cmp(&t.to_ascii_lowercase())),
        },
        (Field::Num(n), Literal::Number(x)) => n.partial_cmp(x),
        (Field::Num(n), Literal::Text(t)) => Some(n.to_string().cmp(t)),
        (Field::Bool(b), Literal::Bool(x)) => Some(b.cmp(x)),
        _ => None,
    };
    match ord {
        None => op == Op::Ne,
        Some(o) => match op {
            Op::Eq => o.is_eq(),
            Op::Ne => o.is_ne(),
            Op::Gt => o.is_gt(),
            Op::Ge => o.is_ge(),
            Op::Lt => o.is_lt(),
            Op::Le => o.is_le(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_and_evaluates_the_documented_forms() {
        let m = json!({"riskScore":"High","healthStatus":"Active","computerDnsName":"ws-00001.corp",
            "lastSeen":"2024-03-01T10:00:00.123456Z","rbacGroupId":140,"machineTags":["VIP"],"aadDeviceId":null});
        let yes = [
            "riskScore eq 'High'",
            "RISKSCORE EQ 'high'",
            "healthStatus ne 'Inactive' and startswith(computerDnsName,'ws-')",
            "lastSeen gt 2024-01-01Z",
            "lastSeen gt 2024-03-01T09:59:59Z AND lastSeen lt 2024-03-02",
            "rbacGroupId eq 140",
            "machineTags eq 'vip'",
            "aadDeviceId eq null",
            "(riskScore eq 'Low' or riskScore eq 'High')",
        ];
        for f in yes {
            assert!(Filter::parse(f).unwrap().matches(&m), "{f}");
        }
        let no =
            ["riskScore eq 'Low'", "lastSeen gt 2024-03-02Z", "startswith(computerDnsName,'srv')"];
        for f in no {
            assert!(!Filter::parse(f).unwrap().matches(&m), "{f}");
        }
        for bad in [
            "riskScore eq",
            "nosuchfield eq 'x'",
            "riskScore like 'x'",
            "startswith(id,'x'",
            "a 'b",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
