#!/bin/sh
# PostgreSQL container init (docker-compose.yml mounts it into /docker-entrypoint-initdb.d/):
# runs once, on an empty data directory. Creates the `axiomatic` login role, not a superuser and
# unable to create roles or databases, owning the `axiomatic` database, which the app and its
# migrations use; the `postgres` superuser is only for administration.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$AXIOMATIC_DB_PASSWORD" <<'SQL'
CREATE ROLE axiomatic LOGIN PASSWORD :'app_password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
-- Row-level security (README): the app's queries run as this role (DB_APP_ROLE), which owns no
-- table; `axiomatic` may switch to it, and its migrations grant it the tables.
CREATE ROLE axiomatic_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT;
GRANT axiomatic_app TO axiomatic;
CREATE DATABASE axiomatic OWNER axiomatic;
REVOKE ALL ON DATABASE axiomatic FROM PUBLIC;
SQL
