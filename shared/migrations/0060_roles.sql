-- Least privilege: group roles (NOLOGIN) that logins are made members of, so a leaked login can do no more than its
-- service needs.
--
--   vigil_web       the web dashboard and API (VIGIL_WEB_DATABASE_URL logs in as a member): reads what the pages, the
--                   API, the report downloads and the audit show, and writes only its own sessions and login attempts.
--                   Incident state changes go to the correlator as commands on RabbitMQ, never through this role.
--   vigil_readonly  people and tools that look (an operator's psql, a BI tool): SELECT on every table but the web's
--                   sessions (their CSRF tokens are live secrets).
--
-- Roles belong to the whole PostgreSQL cluster, grants to this database. Making a role needs CREATEROLE: a migration
-- run by a user without it stops here, naming what to do, unless an administrator has made the roles already (then
-- they are used as found, after checking they carry no power of their own). Two Vigil databases in one cluster share
-- the roles: give each its own cluster, or REVOKE CONNECT ON DATABASE from PUBLIC and grant it to each login.
--
-- THE RULE FOR LATER MIGRATIONS: nothing is granted by default (no ALTER DEFAULT PRIVILEGES). A migration that creates
-- a table grants, in the same file, what vigil_web needs of it (nothing, if the web does not read it) and SELECT to
-- vigil_readonly (unless it holds secrets). tests/test_web_limits.py lists every table's grants and fails on a table
-- nobody decided about.

DO $$
DECLARE
    wanted text;
    existing pg_roles%ROWTYPE;
BEGIN
    FOREACH wanted IN ARRAY ARRAY['vigil_web', 'vigil_readonly'] LOOP
        SELECT * INTO existing FROM pg_roles WHERE rolname = wanted;
        IF FOUND THEN
            -- Made by a DBA, or by this migration in another database of the cluster. Its powers would be every
            -- member login's: refuse one that has any.
            IF existing.rolsuper OR existing.rolcreaterole OR existing.rolcreatedb OR existing.rolbypassrls
               OR existing.rolreplication
               OR EXISTS (SELECT FROM pg_auth_members m WHERE m.member = existing.oid) THEN
                RAISE EXCEPTION 'role % exists but has powers of its own (a role attribute or a membership)', wanted
                    USING ERRCODE = 'insufficient_privilege',
                          HINT = format('ALTER ROLE %I NOSUPERUSER NOCREATEROLE NOCREATEDB NOBYPASSRLS NOREPLICATION, '
                                        'and revoke the roles it is a member of; or drop it', wanted);
            END IF;
            RAISE WARNING 'role % exists already; it is used as found, with this database''s grants', wanted;
            CONTINUE;
        END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = current_user AND (rolcreaterole OR rolsuper)) THEN
            RAISE EXCEPTION 'role % does not exist and % may not create roles (CREATEROLE)', wanted, current_user
                USING ERRCODE = 'insufficient_privilege',
                      HINT = 'apply the migrations once as a user with CREATEROLE, or have an administrator run '
                             '"CREATE ROLE vigil_web NOLOGIN; CREATE ROLE vigil_readonly NOLOGIN;" and start again';
        END IF;
        BEGIN
            EXECUTE format('CREATE ROLE %I NOLOGIN', wanted);
        EXCEPTION WHEN duplicate_object THEN
            -- Another database's migration made it between the look and here.
            RAISE WARNING 'role % was created meanwhile; it is used as found', wanted;
        END;
    END LOOP;
END
$$;

-- vigil_web reads: the incident list, pages and JSON (incidents, alerts, incident_timeline, enrichments), stored
-- reports (reports), and which migrations are applied (it waits for them, it never applies them).
GRANT SELECT ON incidents, alerts, incident_timeline, enrichments, reports, schema_migrations TO vigil_web;
-- vigil_web writes its own tables: sessions are made, read and deleted; login attempts added, counted and cleared.
GRANT SELECT, INSERT, DELETE ON web_sessions, web_login_attempts TO vigil_web;
-- Not granted to vigil_web: outbox and processed_messages (the services' messaging), report_sources (the reporter's
-- bookkeeping), and every UPDATE.

GRANT SELECT ON incidents, alerts, incident_timeline, enrichments, reports, report_sources, outbox, processed_messages,
    web_login_attempts, schema_migrations TO vigil_readonly;
