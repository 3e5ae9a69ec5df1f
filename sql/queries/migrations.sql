-- name: bootstrap
-- Create the table that records applied migrations (the one thing that must exist before 0001).
CREATE SCHEMA IF NOT EXISTS bunsync;
CREATE TABLE IF NOT EXISTS bunsync.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- name: lock
-- Serialise migrations across replicas starting together. Session-level advisory lock; key = hashtext.
SELECT pg_advisory_lock(hashtext('bunsync.migrate'));

-- name: unlock
-- Release the migration lock taken by `lock`.
SELECT pg_advisory_unlock(hashtext('bunsync.migrate'));

-- name: applied
-- Every applied migration: version, name, checksum.
SELECT version, name, checksum FROM bunsync.schema_migrations ORDER BY version;

-- name: record
-- Record migration $1 (version) named $2 with checksum $3 as applied.
INSERT INTO bunsync.schema_migrations (version, name, checksum) VALUES ($1, $2, $3);

-- name: table_exists
-- Whether bunsync.schema_migrations exists (it does not on an empty database).
SELECT to_regclass('bunsync.schema_migrations') IS NOT NULL AS present;
