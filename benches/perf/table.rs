//! The one table the benchmark prints: each measured figure beside its DESIGN §9 target.

use std::fmt::Write as _;

/// One line of the table.
pub struct Row {
    pub what: String,
    pub measured: String,
    pub target: String,
    /// `None` for a line that only gives context (a comparison, a component of a ratio).
    pub pass: Option<bool>,
}

impl Row {
    /// A line judged against its target.
    pub fn judged(what: &str, measured: String, target: &str, pass: bool) -> Row {
        Row { what: what.into(), measured, target: target.into(), pass: Some(pass) }
    }

    /// A line that gives context and has no target of its own.
    pub fn context(what: &str, measured: String) -> Row {
        Row { what: what.into(), measured, target: "—".into(), pass: None }
    }
}

/// A Markdown table, readable on a terminal and pasted as is into the README.
pub fn render(rows: &[Row]) -> String {
    let cells: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            let verdict = match r.pass {
                Some(true) => "pass",
                Some(false) => "**miss**",
                None => "",
            };
            [r.what.clone(), r.measured.clone(), r.target.clone(), verdict.to_owned()]
        })
        .collect();
    let header = ["what", "measured", "target (DESIGN §9)", "result"].map(String::from);
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, row: &[String; 4]| {
        out.push('|');
        for (cell, w) in row.iter().zip(widths) {
            let pad = w - cell.chars().count();
            let _ = write!(out, " {cell}{} |", " ".repeat(pad));
        }
        out.push('\n');
    };
    line(&mut out, &header);
    line(&mut out, &widths.map(|w| "-".repeat(w)));
    for row in &cells {
        line(&mut out, row);
    }
    out
}

/// `12,345` style grouping for counts.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes as MB (10^6), one decimal.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
