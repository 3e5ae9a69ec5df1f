-- 0005: bunsync_app, the login role of the running service, so that no session of the service can
-- lift the log's protection.
--
-- Before this, the service logged in as the migrating role (the owner of every table; a superuser in
-- the embedded cluster) and only set role=bunsync_service at start: `SET ROLE <owner>` or `RESET ROLE`
-- gave the owner's rights back, and from there `ALTER TABLE ... DISABLE TRIGGER event_log_append_only`.
-- bunsync_app is a LOGIN role with no attribute that lifts a check (not a superuser, cannot create
-- roles or databases, no replication, no RLS bypass), and a member of bunsync_service only: the one role
-- it can SET ROLE to has no more than the service's grants, so what it logs in with is all it can have.
--
-- Roles are cluster-wide and this file runs once per database, so the work is in a function that
-- `bunsync migrate` calls again on every run (app/store/migrations.py): a role dropped, or altered to hold
-- more, is put back. Its password is never here (a migration is static text kept for ever): `migrate`
-- sets it from BUNSYNC_APP_PASSWORD through bunsync.set_app_password, as a SCRAM verifier.

CREATE FUNCTION bunsync.ensure_app_role() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- Existence first: CREATE ROLE checks the caller's right to create roles before it looks for a
    -- duplicate, and a DBA may have created the role for a migrating role that cannot.
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bunsync_app') THEN
        BEGIN
            CREATE ROLE bunsync_app LOGIN INHERIT
                NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
        EXCEPTION WHEN duplicate_object THEN
            NULL;  -- another database of this cluster migrating at the same moment created it
        END;
    END IF;
    IF EXISTS (SELECT FROM pg_roles
                WHERE rolname = 'bunsync_app'
                  AND (rolsuper OR rolcreaterole OR rolcreatedb OR rolreplication OR rolbypassrls
                       OR NOT rolcanlogin OR NOT rolinherit)) THEN
        ALTER ROLE bunsync_app LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    -- INHERIT: the service's grants apply without a SET ROLE, so no session state has to survive
    -- asyncpg's RESET ALL on pool release. Granted only when missing: GRANT checks the caller's right
    -- to grant even when there is nothing to do, and a role a DBA set up must not need it.
    IF NOT pg_has_role('bunsync_app', 'bunsync_service', 'MEMBER') THEN
        GRANT bunsync_service TO bunsync_app;
    END IF;
    -- PUBLIC has CONNECT by default; a DBA who revoked it still lets the service in.
    IF NOT has_database_privilege('bunsync_app', current_database(), 'CONNECT') THEN
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO bunsync_app', current_database());
    END IF;
END $$;

-- Set bunsync_app's password from a SCRAM-SHA-256 verifier computed by bunsync (app/store/roles.py), so the
-- password itself never reaches the server, its statement log or pg_stat_activity: the server stores a
-- verifier given in this form as is. Anything else is refused rather than stored as a clear password.
CREATE FUNCTION bunsync.set_app_password(verifier text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF verifier !~ '^SCRAM-SHA-256\$[0-9]+:[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*:[A-Za-z0-9+/]+=*$' THEN
        RAISE EXCEPTION 'bunsync.set_app_password takes a SCRAM-SHA-256 verifier, never a password'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ALTER ROLE bunsync_app PASSWORD %L', verifier);
END $$;

-- Functions are executable by PUBLIC unless revoked: these are for the migrating role only.
REVOKE ALL ON FUNCTION bunsync.ensure_app_role() FROM PUBLIC;
REVOKE ALL ON FUNCTION bunsync.set_app_password(text) FROM PUBLIC;

SELECT bunsync.ensure_app_role();
