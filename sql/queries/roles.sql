-- name: login_rights
-- What the session's login role could do to the log, to decide which role the service logs in as
-- (app/store/roles.py). No parameters. One row:
--   login: the role; superuser, createrole: its attributes (CREATEROLE, on PostgreSQL 15 and older, lets
--   a role grant itself any non-superuser role, the log's owner included);
--   becomes_superuser: it can SET ROLE to a superuser (membership, direct or not);
--   becomes_owner: it can SET ROLE to the owner of bunsync.event_log (NULL: no log yet);
--   service_rights: it holds bunsync_service's privileges without a SET ROLE (NULL: no such role yet).
-- Roles and the table are looked up in the catalogs (readable by every role; to_regclass would need
-- USAGE on schema bunsync), so a missing role or table gives NULL, not an error.
SELECT r.rolname AS login,
       r.rolsuper AS superuser,
       r.rolcreaterole AS createrole,
       EXISTS (SELECT FROM pg_roles AS s
                WHERE s.rolsuper AND s.oid <> r.oid AND pg_has_role(r.oid, s.oid, 'MEMBER'))
           AS becomes_superuser,
       (SELECT pg_has_role(r.oid, c.relowner, 'MEMBER')
          FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = 'bunsync' AND c.relname = 'event_log') AS becomes_owner,
       (SELECT pg_has_role(r.oid, s.oid, 'USAGE')
          FROM pg_roles AS s WHERE s.rolname = 'bunsync_service') AS service_rights
FROM pg_roles AS r
WHERE r.rolname = current_user;

-- name: ensure_app_role
-- Create bunsync_app if missing, put back its safe attributes and its one membership (the function is
-- defined by migration 0005). No parameters.
SELECT bunsync.ensure_app_role();

-- name: set_app_password
-- Set bunsync_app's password from $1, a SCRAM-SHA-256 verifier (never the password itself).
SELECT bunsync.set_app_password($1);
