#!/bin/sh
# The web's own PostgreSQL login, vigil_web_login, a member of the group role vigil_web, with the password
# WEB_DB_PASSWORD from .env (VIGIL_WEB_DB_PASSWORD in the postgres container).
#
# The postgres image runs this once, when it creates the database (an empty postgres-data volume), as
# /docker-entrypoint-initdb.d/10-vigil-web-login.sh. Run it by hand, any time, for a volume made before it existed or
# after changing WEB_DB_PASSWORD (the login is made if missing, its password set either way):
#   docker-compose up -d postgres && docker-compose exec postgres sh /docker-entrypoint-initdb.d/10-vigil-web-login.sh
#
# vigil_web (NOLOGIN) is made here when missing so that the login can join it; migration 0060_roles, applied when the
# services start, grants it what the web reads and writes, and nothing else.
set -eu

if [ -z "${VIGIL_WEB_DB_PASSWORD:-}" ]; then
    echo "vigil: VIGIL_WEB_DB_PASSWORD is empty: set WEB_DB_PASSWORD in .env" >&2
    exit 1
fi

# psql quotes :'password' as a literal; \gexec runs each statement a query returns (none when the role exists).
psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "${POSTGRES_USER}" --dbname "${POSTGRES_DB}" \
    -v password="${VIGIL_WEB_DB_PASSWORD}" <<'SQL'
SELECT 'CREATE ROLE vigil_web NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigil_web') \gexec
SELECT 'CREATE ROLE vigil_web_login LOGIN'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'vigil_web_login') \gexec
SELECT format('ALTER ROLE vigil_web_login LOGIN PASSWORD %L', :'password') \gexec
GRANT vigil_web TO vigil_web_login;
SQL
echo "vigil: login vigil_web_login (role vigil_web) is ready"
