//! Rendering rows as a terminal table, CSV or JSON.
//!
//! The text in a row may be hostile (names from the API): a table shows control characters
//! escaped, CSV neutralises cells a spreadsheet would evaluate, JSON keeps every value exact.

use anyhow::Context as _;
use comfy_table::{CellAlignment, ContentArrangement, Table, presets};
use serde::Serialize;
use serde_json::Value;

use crate::cli::escape;

/// Output format of `kbwatch report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// Aligned columns for a terminal; control characters in a cell are shown escaped (`\x1b`).
    Table,
    /// RFC 4180 CSV with a header of the view's column names. A text cell that starts with `=`,
    /// `+`, `-`, `@`, tab or CR gets a leading `'` so that a spreadsheet does not run it as a
    /// formula (OWASP); numbers are written as they are.
    Csv,
    /// A JSON array of objects keyed by the view's column names, every value exact.
    Json,
}

/// A row type of a report.
pub trait Tabular: Serialize {
    /// Column names, in the order the row serializes its fields: the view's names.
    const COLUMNS: &'static [&'static str];
    /// The row's cells for a terminal, one per column (`-` for null).
    fn cells(&self) -> Vec<String>;
}

impl ReportFormat {
    /// `rows` in this format; the output ends with a newline.
    pub fn render<T: Tabular>(self, rows: &[T]) -> anyhow::Result<String> {
        match self {
            Self::Table => Ok(table(rows)),
            Self::Csv => csv(rows),
            Self::Json => {
                let mut text = serde_json::to_string_pretty(rows).context("rendering JSON")?;
                text.push('\n');
                Ok(text)
            }
        }
    }
}

/// CSV with the header written even when there are no rows.
fn csv<T: Tabular>(rows: &[T]) -> anyhow::Result<String> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(T::COLUMNS).context("writing the CSV header")?;
    for row in rows {
        writer.write_record(csv_record(row)?).context("writing a CSV row")?;
    }
    let bytes = writer.into_inner().context("flushing CSV")?;
    String::from_utf8(bytes).context("CSV is UTF-8")
}

/// A row's CSV cells in column order: null empty, numbers as they are, text through
/// [`escape::csv_text`]. Going through JSON values tells text from numbers, so a negative count
/// stays a number; timestamps and dates are text there, and start with a digit.
fn csv_record<T: Tabular>(row: &T) -> anyhow::Result<Vec<String>> {
    let Value::Object(fields) = serde_json::to_value(row).context("serializing a CSV row")? else {
        anyhow::bail!("a report row serializes as an object");
    };
    let cell = |column: &str| match fields.get(column) {
        None => anyhow::bail!("column {column} is not a field of the row"),
        Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(escape::csv_text(text).into_owned()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(nested) => Ok(escape::csv_text(&nested.to_string()).into_owned()),
    };
    T::COLUMNS.iter().map(|c| cell(c)).collect()
}

/// Columns whose every cell is a number are right-aligned; an empty result says so. Cells show
/// control characters escaped.
fn table<T: Tabular>(rows: &[T]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.cells().iter().map(|c| escape::terminal(c).into_owned()).collect())
        .collect();
    let mut table = Table::new();
    table
        .load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(T::COLUMNS.iter().copied());
    for row in &cells {
        table.add_row(row.iter().map(String::as_str));
    }
    for (i, column) in table.column_iter_mut().enumerate() {
        let mut values = cells.iter().filter_map(|r| r.get(i)).filter(|c| c.as_str() != "-");
        let numeric = values.clone().next().is_some() && values.all(|c| c.parse::<f64>().is_ok());
        if numeric {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut text = table.to_string();
    text.push('\n');
    if rows.is_empty() {
        text.push_str("(no rows)\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Row {
        name: String,
        count: Option<i64>,
    }

    impl Tabular for Row {
        const COLUMNS: &'static [&'static str] = &["name", "count"];
        fn cells(&self) -> Vec<String> {
            vec![self.name.clone(), self.count.map_or("-".into(), |c| c.to_string())]
        }
    }

    fn rows() -> Vec<Row> {
        vec![Row { name: "a, \"b\"".into(), count: Some(3) }, Row { name: "c".into(), count: None }]
    }

    #[test]
    fn csv_quotes_fields_and_leaves_nulls_empty() {
        let text = ReportFormat::Csv.render(&rows()).unwrap();
        assert_eq!(text, "name,count\n\"a, \"\"b\"\"\",3\nc,\n");
        assert_eq!(ReportFormat::Csv.render::<Row>(&[]).unwrap(), "name,count\n");
    }

    #[test]
    fn json_is_an_array_of_objects_with_nulls() {
        let text = ReportFormat::Json.render(&rows()).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!([{"name": "a, \"b\"", "count": 3}, {"name": "c", "count": null}])
        );
    }

    #[test]
    fn table_has_the_header_the_cells_and_says_when_empty() {
        let text = ReportFormat::Table.render(&rows()).unwrap();
        for expected in ["name", "count", "a, \"b\"", " 3 ", " - "] {
            assert!(text.contains(expected), "{expected:?} missing from\n{text}");
        }
        assert!(ReportFormat::Table.render::<Row>(&[]).unwrap().contains("(no rows)"));
    }

    fn hostile() -> Vec<Row> {
        let names =
            ["=HYPERLINK(\"http://x\",\"a, b\")", "@cmd", "\t=1", "-1", "\x1b]0;t\x07\u{202e}"];
        names.iter().map(|n| Row { name: (*n).into(), count: Some(-3) }).collect()
    }

    #[test]
    fn csv_neutralises_formula_text_and_keeps_numbers() {
        let text = ReportFormat::Csv.render(&hostile()).unwrap();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        let names: Vec<&str> = records.iter().map(|r| &r[0]).collect();
        assert_eq!(
            names,
            ["'=HYPERLINK(\"http://x\",\"a, b\")", "'@cmd", "'\t=1", "'-1", "\x1b]0;t\x07\u{202e}"]
        );
        assert!(records.iter().all(|r| &r[1] == "-3"), "numbers unchanged:\n{text}");
        assert!(
            text.starts_with("name,count\n\"'=HYPERLINK(\"\"http://x\"\",\"\"a, b\"\")\",-3\n")
        );
    }

    #[test]
    fn json_keeps_hostile_text_exact() {
        let text = ReportFormat::Json.render(&hostile()).unwrap();
        let value: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        let names: Vec<&str> = value.iter().map(|o| o["name"].as_str().unwrap()).collect();
        let expected: Vec<String> = hostile().into_iter().map(|r| r.name).collect();
        assert_eq!(names, expected);
    }

    #[test]
    fn table_shows_control_characters_escaped() {
        let text = ReportFormat::Table.render(&hostile()).unwrap();
        assert!(!text.contains(['\x1b', '\x07', '\t', '\u{202e}']), "{text:?}");
        assert!(text.contains("\\x1b]0;t\\x07\\u{202e}"), "{text}");
        assert!(text.contains("\\x09=1"), "{text}");
    }
}
