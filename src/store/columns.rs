//! One typed description per batched write: the columns a statement sends as parallel arrays and
//! unnests, from which the arrays, the SQL text that unnests them and the binds are all made.
//!
//! [`columns!`] takes, per column, the name of the table's column it is stored in, its Rust type
//! (which decides, through sqlx, the PostgreSQL type of its array) and, where what is stored is not
//! the value as sent, the SQL expression that makes it from `u.<name>`, or `filter` for a column
//! the statement reads but does not store. It generates
//! - a row struct with one field per column: every place that builds a row names every column, so
//!   a new column does not compile until each of them sets it;
//! - a struct of one `Vec` per column, filled with `push` or `from_rows`;
//! - an implementation of [`Columns`]: `UNNEST($n::TEXT[], …) AS u(name, …)` with the parameters
//!   numbered from `n`, the stored columns and the values that store them (in the same order), the
//!   `col = EXCLUDED.col` list of an upsert, and the binds of every array in order.
//!
//! `catalog` checks each description against the database (a test runs it on a fresh one): every
//! stored column exists in its table and gets a value of the column's type.

use sqlx::postgres::{PgArguments, PgHasArrayType, PgTypeInfo};
use sqlx::query::{Query, QueryAs};
use sqlx::{Encode, Postgres, Type, TypeInfo as _};

/// One column of a description.
pub(super) struct Column {
    /// As in the table, and as the column of `u`.
    pub name: &'static str,
    /// What the statement stores in the column (`u.<name>` unless the description says otherwise);
    /// `None` for a column the statement only reads.
    pub stored: Option<&'static str>,
    /// The PostgreSQL type of the array that carries it.
    pub array_type: fn() -> PgTypeInfo,
}

/// The PostgreSQL type of an array of `T`, as sqlx binds it.
pub(super) fn array_type<T: PgHasArrayType>() -> PgTypeInfo {
    T::array_type_info()
}

/// A description made by [`columns!`]: its table, its columns, and its arrays' binds.
pub(super) trait Columns {
    /// `schema.table`.
    const TABLE: &'static str;
    const COLUMNS: &'static [Column];

    /// Binds every array, in the order of [`Columns::COLUMNS`].
    fn bind<'q, Q: BindArray<'q>>(&'q self, query: Q) -> Q;

    /// `UNNEST($first::TYPE[], …) AS u(name, …)`: the arrays are parameters `first` onwards.
    fn unnest(first: usize) -> String {
        let arrays: Vec<String> = Self::COLUMNS
            .iter()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", first + i, (c.array_type)().name()))
            .collect();
        let names: Vec<&str> = Self::COLUMNS.iter().map(|c| c.name).collect();
        format!("UNNEST({}) AS u({})", arrays.join(", "), names.join(", "))
    }

    /// The stored columns, for an `INSERT`'s column list.
    fn insert_columns() -> String {
        stored(Self::COLUMNS).map(|(name, _)| name).collect::<Vec<_>>().join(", ")
    }

    /// What stores each of [`Columns::insert_columns`], for the `SELECT` that feeds the `INSERT`.
    fn select_list() -> String {
        stored(Self::COLUMNS).map(|(_, value)| value).collect::<Vec<_>>().join(", ")
    }

    /// `col = EXCLUDED.col, …` of the stored columns but `except` (the conflict's key, columns an
    /// upsert keeps).
    fn set_excluded(except: &[&str]) -> String {
        for name in except {
            assert!(
                Self::COLUMNS.iter().any(|c| c.name == *name),
                "{name} is not a column of the description for {}",
                Self::TABLE
            );
        }
        stored(Self::COLUMNS)
            .filter(|(name, _)| !except.contains(name))
            .map(|(name, _)| format!("{name} = EXCLUDED.{name}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn stored(columns: &[Column]) -> impl Iterator<Item = (&'static str, &'static str)> + '_ {
    columns.iter().filter_map(|c| c.stored.map(|value| (c.name, value)))
}

/// A statement that takes one more array parameter: sqlx's `Query` and `QueryAs` alike.
pub(super) trait BindArray<'q>: Sized {
    fn bind_array<T>(self, values: &'q [T]) -> Self
    where
        T: 'q + Encode<'q, Postgres> + Type<Postgres> + PgHasArrayType;
}

impl<'q> BindArray<'q> for Query<'q, Postgres, PgArguments> {
    fn bind_array<T>(self, values: &'q [T]) -> Self
    where
        T: 'q + Encode<'q, Postgres> + Type<Postgres> + PgHasArrayType,
    {
        self.bind(values)
    }
}

impl<'q, O> BindArray<'q> for QueryAs<'q, Postgres, O, PgArguments> {
    fn bind_array<T>(self, values: &'q [T]) -> Self
    where
        T: 'q + Encode<'q, Postgres> + Type<Postgres> + PgHasArrayType,
    {
        self.bind(values)
    }
}

/// Declares a description: see the module docs. Each column is `name: Type`, optionally followed
/// by `= "SQL expression of u.name"` or `= filter`.
macro_rules! columns {
    (@stored $col:ident) => { Some(concat!("u.", stringify!($col))) };
    (@stored $col:ident filter) => { None };
    (@stored $col:ident $value:literal) => { Some($value) };
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? of $row:ident in $table:literal {
            $( $(#[$column_meta:meta])* $col:ident : $ty:ty $(= $how:tt)? ),+ $(,)?
        }
    ) => {
        /// One row of
        #[doc = concat!("[`", stringify!($name), "`].")]
        $vis struct $row $(<$lt>)? {
            $( $(#[$column_meta])* $vis $col: $ty, )+
        }

        $(#[$meta])*
        #[derive(Default)]
        $vis struct $name $(<$lt>)? {
            $( $vis $col: Vec<$ty>, )+
        }

        // Not every description is filled both ways.
        #[allow(dead_code)]
        impl $(<$lt>)? $name $(<$lt>)? {
            $vis fn push(&mut self, row: $row $(<$lt>)?) {
                $( self.$col.push(row.$col); )+
            }

            $vis fn from_rows(rows: impl ExactSizeIterator<Item = $row $(<$lt>)?>) -> Self {
                let n = rows.len();
                let mut columns = Self { $( $col: Vec::with_capacity(n), )+ };
                rows.for_each(|row| columns.push(row));
                columns
            }
        }

        impl $(<$lt>)? $crate::store::columns::Columns for $name $(<$lt>)? {
            const TABLE: &'static str = $table;
            const COLUMNS: &'static [$crate::store::columns::Column] = &[
                $( $crate::store::columns::Column {
                    name: stringify!($col),
                    stored: columns!(@stored $col $($how)?),
                    array_type: $crate::store::columns::array_type::<$ty>,
                }, )+
            ];

            fn bind<'q, Q: $crate::store::columns::BindArray<'q>>(&'q self, query: Q) -> Q {
                $( let query = query.bind_array(self.$col.as_slice()); )+
                query
            }
        }
    };
}

pub(super) use columns;

#[cfg(test)]
mod tests {
    use sqlx::{Arguments as _, Execute as _};

    use super::*;

    columns! {
        /// A description to test with.
        struct Example<'a> of ExampleRow in "kbwatch.example" {
            id: i64,
            name: Option<&'a str>,
            tags: String = "ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb))",
            first: bool = filter,
        }
    }

    #[test]
    fn the_sql_text_follows_the_description() {
        assert_eq!(
            Example::unnest(3),
            "UNNEST($3::INT8[], $4::TEXT[], $5::TEXT[], $6::BOOL[]) AS u(id, name, tags, first)"
        );
        assert_eq!(Example::insert_columns(), "id, name, tags");
        assert_eq!(
            Example::select_list(),
            "u.id, u.name, ARRAY(SELECT jsonb_array_elements_text(u.tags::jsonb))"
        );
        assert_eq!(Example::set_excluded(&["id"]), "name = EXCLUDED.name, tags = EXCLUDED.tags");
    }

    #[test]
    fn rows_become_columns_in_order() {
        let rows = [("a", true), ("b", false)].map(|(name, first)| ExampleRow {
            id: 7,
            name: Some(name),
            tags: "[]".into(),
            first,
        });
        let columns = Example::from_rows(rows.into_iter());
        assert_eq!(columns.name, [Some("a"), Some("b")]);
        assert_eq!(columns.first, [true, false]);
        let mut query = columns.bind(sqlx::query("SELECT 1"));
        let arguments = query.take_arguments().expect("binds encode").expect("four binds");
        assert_eq!(arguments.len(), 4, "one array per column");
    }

    #[test]
    #[should_panic(expected = "nope is not a column")]
    fn an_unknown_column_kept_out_of_an_upsert_is_refused() {
        Example::set_excluded(&["nope"]);
    }
}
