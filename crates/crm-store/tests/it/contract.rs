//! The source-contract check at open.

use crm_store::{MissingItem, Store, StoreConfig, StoreError, contract};

use crate::helpers::{TempCrm, raw};

#[test]
fn missing_file_is_named() {
    let t = TempCrm::new();
    let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
    assert!(matches!(err, StoreError::DatabaseMissing { .. }));
    assert!(err.to_string().contains(&t.path.display().to_string()));
    assert!(
        !t.path.exists(),
        "open without create_if_missing must not create the file"
    );
}

#[test]
fn each_missing_table_is_named_with_the_file() {
    for (table, _) in contract::REQUIRED {
        let t = TempCrm::new();
        {
            let c = raw(&t.path);
            c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
            c.execute_batch(&format!("DROP TABLE {table}")).unwrap();
        }
        let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
        let StoreError::Contract { path, missing } = &err else {
            panic!("expected a contract error, got {err}");
        };
        assert_eq!(path, &t.path);
        assert_eq!(missing, &vec![MissingItem::Table(table)]);
        let msg = err.to_string();
        assert!(msg.contains(&format!("missing table `{table}`")), "{msg}");
        assert!(msg.contains(&t.path.display().to_string()), "{msg}");
    }
}

#[test]
fn each_missing_column_is_named_with_the_file() {
    for (table, columns) in contract::REQUIRED {
        for column in *columns {
            let t = TempCrm::new();
            {
                let c = raw(&t.path);
                c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
                // Rebuild the table without the column (DROP COLUMN refuses primary keys).
                let keep: Vec<&str> = columns.iter().copied().filter(|c| c != column).collect();
                let list = keep.join(", ");
                c.execute_batch(&format!(
                    "DROP TABLE {table}; CREATE TABLE {table} ({list}, extra_crm_column TEXT);"
                ))
                .unwrap();
            }
            let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
            let StoreError::Contract { missing, .. } = &err else {
                panic!("expected a contract error, got {err}");
            };
            assert_eq!(missing, &vec![MissingItem::Column { table, column }]);
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("missing column `{table}.{column}`")),
                "{msg}"
            );
            assert!(msg.contains(&t.path.display().to_string()), "{msg}");
        }
    }
}

#[test]
fn several_missing_items_are_all_listed() {
    let t = TempCrm::new();
    {
        let c = raw(&t.path);
        c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
        c.execute_batch(
            "DROP TABLE deals; ALTER TABLE people DROP COLUMN bio; \
             ALTER TABLE people DROP COLUMN linkedin_url;",
        )
        .unwrap();
    }
    let msg = Store::open(StoreConfig::new(&t.path))
        .unwrap_err()
        .to_string();
    for needle in [
        "missing column `people.linkedin_url`",
        "missing column `people.bio`",
        "missing table `deals`",
    ] {
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
}

#[test]
fn extra_tables_and_columns_are_accepted() {
    let t = TempCrm::new();
    {
        let c = raw(&t.path);
        c.execute_batch(contract::CRM_SCHEMA_SQL).unwrap();
        c.execute_batch(
            "ALTER TABLE people ADD COLUMN twitter TEXT; CREATE TABLE tasks (id INTEGER PRIMARY KEY);",
        )
        .unwrap();
    }
    Store::open(StoreConfig::new(&t.path)).unwrap();
}

#[test]
fn an_empty_file_is_created_when_allowed() {
    let (t, store) = TempCrm::created();
    assert!(t.path.exists());
    let conn = store.reader().unwrap();
    assert!(contract::missing_items(&conn).unwrap().is_empty());
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn a_file_that_is_not_a_database_is_named() {
    let t = TempCrm::new();
    std::fs::write(
        &t.path,
        b"this is not SQLite, just a text file that happens to be here",
    )
    .unwrap();
    let err = Store::open(StoreConfig::new(&t.path)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&t.path.display().to_string()), "{msg}");
    assert!(msg.contains("not a database"), "{msg}");
}

#[test]
fn zero_pool_sizes_are_refused() {
    let (t, store) = TempCrm::created();
    drop(store);
    let mut config = StoreConfig::new(&t.path);
    config.read_pool_size = 0;
    assert!(matches!(
        Store::open(config).unwrap_err(),
        StoreError::InvalidConfig(_)
    ));
}
