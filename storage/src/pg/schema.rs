//! The schema, as numbered migrations applied at start: in one transaction, under
//! an advisory lock so nodes starting together apply it once, recorded in
//! `schema_migrations`. A database newer than this build is refused rather than written.
//!
//! Records are kept whole (the JSON the embedded index keeps, in `bytea`); the searchable
//! attributes are columns beside them with a B-tree index each. Text columns use the "C"
//! collation so ordering and prefix matching are by bytes, as in the embedded index, and a
//! `LIKE 'PREFIX%'` can use the index.

use super::conn::{pg_error, PgPool};
use crate::error::StorageError;

/// Advisory lock key taken while migrating (arbitrary, fixed).
const MIGRATION_LOCK: i64 = 0x7061_6373_0001;

const MIGRATIONS: &[&str] = &[
    // 1: the image index, the outbox and the records beside it.
    r#"
    CREATE TABLE patients (
        key text COLLATE "C" PRIMARY KEY,
        name_norm text COLLATE "C" NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX patients_by_name ON patients (name_norm, key);

    CREATE TABLE studies (
        uid text COLLATE "C" PRIMARY KEY,
        patient_key text COLLATE "C" NOT NULL,
        patient_id text COLLATE "C" NOT NULL,
        name_norm text COLLATE "C" NOT NULL,
        accession text COLLATE "C",
        study_date text COLLATE "C" NOT NULL,
        modalities text[] COLLATE "C" NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX studies_by_patient ON studies (patient_key, uid);
    CREATE INDEX studies_by_patient_id ON studies (patient_id, uid);
    CREATE INDEX studies_by_name ON studies (name_norm, uid);
    CREATE INDEX studies_by_accession ON studies (accession, uid);
    CREATE INDEX studies_by_date ON studies (study_date, uid);
    CREATE INDEX studies_by_modality ON studies USING gin (modalities);

    CREATE TABLE series (
        uid text COLLATE "C" PRIMARY KEY,
        study_uid text COLLATE "C" NOT NULL,
        modality text COLLATE "C" NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX series_of_study ON series (study_uid, uid);
    CREATE INDEX series_by_modality ON series (modality, uid);

    CREATE TABLE instances (
        uid text COLLATE "C" PRIMARY KEY,
        series_uid text COLLATE "C" NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX instances_of_series ON instances (series_uid, uid);

    CREATE TABLE rejected (
        uid text COLLATE "C" PRIMARY KEY,
        record bytea NOT NULL
    );

    -- Statistics as deltas, one row per write, summed on read and folded now and then:
    -- a single counter row would make every ingest on every node wait for the last one.
    CREATE TABLE statistics_deltas (
        id bigserial PRIMARY KEY,
        patients bigint NOT NULL,
        studies bigint NOT NULL,
        series bigint NOT NULL,
        instances bigint NOT NULL,
        bytes bigint NOT NULL
    );

    CREATE TABLE events (
        seq bigint PRIMARY KEY,
        record bytea NOT NULL
    );
    CREATE SEQUENCE event_seq AS bigint;

    CREATE TABLE unstable (
        study_uid text COLLATE "C" PRIMARY KEY,
        patient_key text COLLATE "C" NOT NULL,
        last_update_ms bigint NOT NULL,
        series text[] COLLATE "C" NOT NULL
    );

    CREATE TABLE cursors (
        worker text COLLATE "C" PRIMARY KEY,
        seq bigint NOT NULL
    );
    CREATE TABLE deliveries (
        worker text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (worker, seq)
    );
    CREATE TABLE delivered_studies (
        worker text COLLATE "C" NOT NULL,
        study_uid text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (worker, study_uid)
    );
    CREATE TABLE retries (
        worker text COLLATE "C" NOT NULL,
        seq bigint NOT NULL,
        PRIMARY KEY (worker, seq)
    );

    CREATE TABLE flags (
        study_uid text COLLATE "C" NOT NULL,
        id text COLLATE "C" NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (study_uid, id)
    );
    CREATE TABLE read_marks (
        study_uid text COLLATE "C" PRIMARY KEY
    );

    CREATE TABLE orders (
        accession text COLLATE "C" PRIMARY KEY,
        active boolean NOT NULL,
        start_key text COLLATE "C" NOT NULL,
        updated_ms bigint NOT NULL,
        record bytea NOT NULL
    );
    CREATE INDEX worklist ON orders (start_key, accession) WHERE active;

    CREATE TABLE performed_steps (
        uid text COLLATE "C" PRIMARY KEY,
        updated_ms bigint NOT NULL,
        record bytea NOT NULL
    );
    CREATE TABLE commitments (
        transaction_uid text COLLATE "C" PRIMARY KEY,
        received_ms bigint NOT NULL,
        record bytea NOT NULL
    );
    CREATE TABLE pseudonyms (
        project text COLLATE "C" NOT NULL,
        replacement text COLLATE "C" NOT NULL,
        kind text COLLATE "C" NOT NULL,
        record bytea NOT NULL,
        PRIMARY KEY (project, replacement, kind)
    );
    "#,
    // 2: events numbered after they commit. Numbering at insert time needed a lock held
    // through every writer's commit (and its WAL flush): all ingest on all nodes waited for
    // one another. Now writers insert unnumbered events; one numbering pass at a time gives
    // the committed ones their sequence numbers (see `super::numbering`).
    r#"
    ALTER TABLE events DROP CONSTRAINT events_pkey;
    ALTER TABLE events ALTER COLUMN seq DROP NOT NULL;
    ALTER TABLE events ADD COLUMN id bigserial;
    ALTER TABLE events ADD PRIMARY KEY (id);
    CREATE UNIQUE INDEX events_by_seq ON events (seq);
    CREATE INDEX events_unnumbered ON events (id) WHERE seq IS NULL;
    "#,
    // 3: secrets every node signs and checks with (share and research links).
    r#"
    CREATE TABLE secrets (
        name text COLLATE "C" PRIMARY KEY,
        value bytea NOT NULL
    );
    "#,
];

/// Bring the database to this build's schema.
pub(crate) fn migrate(pool: &PgPool) -> Result<(), StorageError> {
    pool.with_client("migrating the schema", |mut client| async move {
        let txn = client
            .transaction()
            .await
            .map_err(pg_error("starting a migration"))?;
        txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(pg_error("waiting for the migration lock"))?;
        txn.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
        .map_err(pg_error("creating schema_migrations"))?;
        let row = txn
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await
            .map_err(pg_error("reading the schema version"))?;
        let have: i32 = row.get(0);
        let known = MIGRATIONS.len() as i32;
        if have > known {
            return Err(StorageError::IndexConfig(format!(
                "the database schema is version {have}, newer than this build knows ({known}); \
                 upgrade pacs before starting it on this database"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(have as usize) {
            let version = i as i32 + 1;
            tracing::info!(version, "applying PostgreSQL schema migration");
            txn.batch_execute(sql)
                .await
                .map_err(pg_error("applying a schema migration"))?;
            txn.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(pg_error("recording a schema migration"))?;
        }
        txn.commit()
            .await
            .map_err(pg_error("committing the schema migrations"))
    })
}
