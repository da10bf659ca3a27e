//! The batched writes' column descriptions (`src/store/columns.rs`) match the tables they write:
//! a column added to a description, or changed by a migration, without the other is caught here.

use crate::kit::fixture_store;

#[tokio::test]
async fn every_batched_write_matches_its_table() {
    let (store, _) = fixture_store("t1").await;
    assert_eq!(store.write_column_mismatches().await.unwrap(), Vec::<String>::new());

    // And a drift is reported, column by column.
    for ddl in [
        "ALTER TABLE kbwatch.kb ALTER COLUMN machine_missed_on TYPE integer",
        "ALTER TABLE kbwatch.kb RENAME COLUMN url TO link",
    ] {
        sqlx::query(ddl).execute(store.pool()).await.unwrap();
    }
    assert_eq!(
        store.write_column_mismatches().await.unwrap(),
        [
            "kbwatch.kb has no column url",
            "kbwatch.kb.machine_missed_on is INT4 but is written as INT8",
        ]
    );
}
