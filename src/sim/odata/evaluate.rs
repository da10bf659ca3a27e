//! A parsed [`Filter`] evaluated against an entity: a machine's JSON, or a typed machine.

use serde_json::Value;

use super::parse::{Filter, Literal, Op, parse_time};

impl Filter {
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
