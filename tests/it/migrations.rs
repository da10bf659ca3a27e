//! Landed migrations never change: operators upgrade in place, and sqlx refuses to start on a
//! database that holds a migration whose checksum differs from the binary's. Their checksums are
//! pinned here; `upgrade.rs` upgrades a database built by the previous release's migrations.
//!
//! About the migrations themselves: the test reads and edits sqlx's `_sqlx_migrations` table.

use kbwatch::store::{MIGRATOR, Store};
use secrecy::SecretString;

use crate::kit::{ConfigBuilder, Kbwatch, fresh_database};

/// (version, description, SHA-384 of the file as sqlx computes it) of every migration that has
/// landed on main. Never change a row: restore the file instead. Add a row when a migration lands.
const LANDED: &[(i64, &str, &str)] = &[
    (
        1,
        "tables",
        "35a0120e3c14bc1d06ad29373e437a369fc371fcb081e15d1e0baf45115bddab01dfbf150714ad549f31a3dce3488c14",
    ),
    (
        2,
        "reporting",
        "a80020a58947cd6ca2c50f24366c77d0d489990a2454053ab409ba8badcc07d6f61b4a738f06875059b6b4d11745eb49",
    ),
    (
        3,
        "fleet daily one sort",
        "a5aa00ebefe8dd127d6429dc414940646d41b32a33d383f89581f78e2190cf3d2603af7150d5aae312ad6dfe54d167cf",
    ),
    (
        4,
        "references per statement",
        "bb5fb52616d055fb5b64d1da71261a30f5be1aaed0dced68590efa40dbc4a721c32f6bb99378392cb45fdb7538498363",
    ),
    (
        5,
        "scan state from device scan",
        "8df3e517bc882f15b9a0a3c8aa17a3b9da8f2cc79d2571276826da3d1f13d508dea68a6a9e5ae879db6223863093402d",
    ),
    (
        6,
        "raw as listed",
        "b55142abd5f7c7af3b8ed87235fe290311170012c6a230915e78c2eefa3fa627222ba518254cbb66388e111f5bc63472",
    ),
    (
        7,
        "storage for updates and appends",
        "164afae27ef1a1299ca978d7503b2bd5d5ab3084f6be8d43a7511507724dac7fa0dfc7088a815968cba2953b29d6de43",
    ),
    (
        8,
        "fleet days rolled up",
        "ac735274c507fd8512436745e197bf0f14f1c37c91e755798c21efa3fd5c4540d5985b4c4903cd241cc8ed704ea85123",
    ),
    (
        9,
        "interval times",
        "adda4a171befc3a920a3e9c7c25bf404a71150dc178a50a0f878cc2e96832ff7bded5674199c85a0d55207a7dea940ce",
    ),
    (
        10,
        "roll up past orphans",
        "8fb5e3581c8ffbbc5cbde3c167facd68a9d164a5bea2b6ee672b14644a7d20b0786de12b0728b525ff742691a1059d57",
    ),
    (
        11,
        "device state",
        "80c605c73bb6f42bffc72ba4c94bf6b7e8e58aafac43e0970fa53ee18d3d71ca5776a76610a0719e0e7315662b6f83ea",
    ),
    (
        12,
        "retention",
        "1dfab021a01ae4c2f546373916f62bb95defed9ce41b13242c7be38ed9aae9ef0bc720fd88da27ec106a4e5d462d8c86",
    ),
    (
        13,
        "kb fixes rolled up",
        "8a3f16e99ed2910da0d6826580c5f9cfe9b93d4c149946cc18f348093a66b14cefe9ce80c473c0cc995a098675ebbba9",
    ),
    (
        14,
        "scan packs",
        "dc81609cc972415192e4e10ffc129a8ace2914e49727feb91aeee340613f77bc5b410902f5a48d204f768caa15b6cc58",
    ),
    (
        15,
        "fleet states",
        "b4d50c01ec96618bcf205b4fb1ec57b8cb321b89d0dc5b9f63478af4e377c20beab706dc71f407172b41f50dbfa70db0",
    ),
    (
        16,
        "export states",
        "1462802ae4ca88131b04d800c1bbe67474a533d882e5a9f4a590096356dc0e2ca51f40e9f364e0ce42a7e8f7006fba9b",
    ),
    (
        17,
        "devices state source",
        "a6254844090ebd697d2146714631f26fd798c9168cb04e5981a0d8e6281be8fbbd3292139d8c513342d608467ac1810d",
    ),
    (
        18,
        "scan reads indexes",
        "c8841477927b06a83a211633311c1fbcbfe8cafa125e5973c81bcc2257d76ea2f9469f9e7cb0609721aa7f3de3b99dd4",
    ),
    (
        19,
        "device state references per statement",
        "a37a48c9719c35fe70dfc62ddeebdccf0523c379643fc1b527c1b595b2b2c7f147bc1d0507c73e436bfd2e8b6320ef6c",
    ),
    (
        20,
        "day roll ups when due",
        "16b6c0c4e2aa9b6c205300b6a250f3ab38889cf7fd1df82a6db9138ae9a4c06fbfdc8f5c7d8071251ffb41c0a6fb841d",
    ),
    (
        21,
        "interval packs",
        "48af735e63143af50951d9d2e718a1d2ecd1986e2299363242f5366b7c9c3e595268cc541a3ff42377ab699ec8c26fcf",
    ),
    (
        22,
        "scan pack device deltas",
        "12e4dfcd4d6b3d2abf7fa57117d71ca18c10515825a3e54783e51d8f753a0032eb4358375456f1aa91d071081e679b77",
    ),
    (
        23,
        "snapshots by device bounds",
        "985645674060fbb7cde7b7a57abaf185aaaefde917790adc48b791e1aadb8d1666f87f52bbd5e3074c645bae5282196a",
    ),
    (
        24,
        "scan pack membership",
        "6c12640342999c5a481e320f5bead8bf186c0d4162dc8609cc01cdcb8089ad2576eaaaeca082717118186fac770f0162",
    ),
];

fn file_name(version: i64, description: &str) -> String {
    format!("migrations/{version:04}_{}.sql", description.replace(' ', "_"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn landed_migrations_keep_their_checksums() {
    for m in MIGRATOR.iter() {
        let file = file_name(m.version, &m.description);
        let checksum = hex(&m.checksum);
        let Some((_, description, pinned)) = LANDED.iter().find(|(v, ..)| *v == m.version) else {
            panic!(
                "{file} is not pinned. Once it has landed on main it must never change: add \
                 ({}, {:?}, {checksum:?}) to LANDED in tests/it/migrations.rs",
                m.version, m.description
            );
        };
        assert_eq!(
            (m.description.as_ref(), checksum.as_str()),
            (*description, *pinned),
            "{file} changed after it landed: databases that applied it hold its old checksum, and \
             kbwatch would refuse to start on them. Restore the file as it was (git checkout of the \
             commit that landed it) and put the change in a new migration."
        );
    }
    for (version, description, _) in LANDED {
        assert!(
            MIGRATOR.iter().any(|m| m.version == *version),
            "{} landed but is no longer embedded: databases that applied it would refuse to start. \
             Restore it.",
            file_name(*version, description)
        );
    }
}

/// A database that applied a migration whose file then changed: `migrate` (and so `kbwatch run`
/// and `kbwatch migrate`) names the version and says what to do.
#[tokio::test]
async fn an_edited_migration_is_refused_with_a_message_that_says_what_to_do() {
    let store = Store::connect(&SecretString::from(fresh_database().await), 2).await.unwrap();
    store.migrate().await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = sha384('edited') WHERE version = 4")
        .execute(store.pool())
        .await
        .unwrap();
    let error =
        format!("{:#}", store.migrate().await.expect_err("the edited migration is refused"));
    assert!(error.contains("migration 4"), "{error}");
    assert!(error.contains("0004_references_per_statement.sql"), "{error}");
    assert!(error.contains("release"), "the message says what to do: {error}");
}

/// `kbwatch migrate` needs only the database: a configuration without a `[[tenant]]` (a
/// migration job's, holding no tenant's credentials) migrates, and `kbwatch scan` with it names
/// what is missing.
#[tokio::test]
async fn kbwatch_migrate_needs_no_tenant() {
    let url = fresh_database().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("migrate.toml");
    ConfigBuilder::new(url.clone()).write(&config);

    let out = Kbwatch::new(["migrate"]).config(&config).output().await;
    assert!(out.success(), "kbwatch migrate failed:\n{}", out.stderr);
    let store = Store::connect(&SecretString::from(url), 2).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    let embedded: Vec<i64> = MIGRATOR.iter().map(|m| m.version).collect();
    assert_eq!(applied, embedded);

    let out = Kbwatch::new(["scan"]).config(&config).output().await;
    assert!(!out.success(), "a scan without a tenant fails");
    assert!(out.stderr.contains("at least one [[tenant]] is required"), "{}", out.stderr);
}
