//! The batched writes' column descriptions checked against the database's catalog: each column a
//! statement stores exists in its table and gets a value of the column's type. A test runs it on a
//! freshly migrated database, so a description and a migration cannot drift apart unnoticed.

use std::collections::HashMap;

use anyhow::Context as _;
use sqlx::{AssertSqlSafe, Column as _, Executor as _, SqlSafeStr as _, TypeInfo as _};

use super::Store;
use super::columns::Columns;
use super::devices::DeviceColumns;
use super::result_rows::{KbColumns, MissingColumns, ScanColumns};

impl Store {
    /// What the batched writes store that their tables cannot hold: one line per stored column
    /// missing from its table or of another type than the value written to it. Empty when every
    /// description matches the database (run `migrate` first).
    pub async fn write_column_mismatches(&self) -> anyhow::Result<Vec<String>> {
        let mut found = self.mismatches::<DeviceColumns>().await?;
        found.extend(self.mismatches::<KbColumns>().await?);
        found.extend(self.mismatches::<MissingColumns>().await?);
        found.extend(self.mismatches::<ScanColumns>().await?);
        Ok(found)
    }

    async fn mismatches<C: Columns>(&self) -> anyhow::Result<Vec<String>> {
        let (schema, table) = C::TABLE.split_once('.').expect("a description names schema.table");
        let catalog: HashMap<String, String> = sqlx::query_as(
            "SELECT column_name::text, udt_name::text FROM information_schema.columns
             WHERE table_schema = $1 AND table_name = $2",
        )
        .bind(schema)
        .bind(table)
        .fetch_all(&self.pool)
        .await
        .with_context(|| format!("reading the columns of {}", C::TABLE))?
        .into_iter()
        .collect();
        // What PostgreSQL makes of the values the statement stores: the types they have.
        // (Built from the description's constants only; nothing here comes from outside.)
        let select = format!("SELECT {} FROM {}", C::select_list(), C::unnest(1));
        let described = (&self.pool)
            .describe(AssertSqlSafe(select).into_sql_str())
            .await
            .with_context(|| format!("describing the values written to {}", C::TABLE))?;
        let names = C::COLUMNS.iter().filter(|c| c.stored.is_some()).map(|c| c.name);
        let written: Vec<(&str, String)> = names
            .zip(described.columns().iter().map(|c| c.type_info().name().to_owned()))
            .collect();
        Ok(compare(C::TABLE, &written, &catalog))
    }
}

/// The stored columns (name, type as sqlx names it) that `catalog` (name → `udt_name`) does not
/// hold with that type, described.
fn compare(
    table: &str,
    written: &[(&str, String)],
    catalog: &HashMap<String, String>,
) -> Vec<String> {
    written
        .iter()
        .filter_map(|(name, written)| match catalog.get(*name) {
            None => Some(format!("{table} has no column {name}")),
            Some(udt) if sqlx_name(udt) != *written => {
                Some(format!("{table}.{name} is {} but is written as {written}", sqlx_name(udt)))
            }
            Some(_) => None,
        })
        .collect()
}

/// information_schema's `udt_name` ("int8", "_text") as sqlx names the type ("INT8", "TEXT[]").
fn sqlx_name(udt: &str) -> String {
    match udt.strip_prefix('_') {
        Some(element) => format!("{}[]", element.to_uppercase()),
        None => udt.to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_column_and_a_wrong_type_are_reported() {
        let catalog: HashMap<String, String> =
            [("id", "int8"), ("tags", "_text"), ("count", "int4")]
                .map(|(n, t)| (n.to_owned(), t.to_owned()))
                .into();
        let written = [
            ("id", "INT8".to_owned()),
            ("tags", "TEXT[]".to_owned()),
            ("count", "INT8".to_owned()),
            ("gone", "TEXT".to_owned()),
        ];
        assert_eq!(
            compare("kbwatch.t", &written, &catalog),
            ["kbwatch.t.count is INT4 but is written as INT8", "kbwatch.t has no column gone"]
        );
    }
}
