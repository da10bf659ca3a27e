//! The `$filter` text to a [`Filter`]: tokens, then a recursive-descent parser over the grammar in
//! [`super`]. Field names are checked against the machine entity's keys.

use chrono::{DateTime, NaiveDate, Utc};

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
pub(super) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
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
}
