#!/usr/bin/env bash
# Apply migrations/*.sql to PostgreSQL, in file-name order, with psql only.
#
#   POSTGRES_HOST, POSTGRES_PORT (5432), POSTGRES_DB, POSTGRES_USER,
#   POSTGRES_PASSWORD, POSTGRES_SCHEMA (public)   where and as whom
#   MIGRATIONS_WAIT_SECONDS (60)                  how long to wait for the server
#   MIGRATIONS_DIR (../../migrations from here)   the *.sql files
#
# Each file runs in one transaction with search_path set to POSTGRES_SCHEMA
# (created if missing) and ON_ERROR_STOP, and is recorded with its sha256 in
# schema_migrations: a second run applies nothing, and a recorded file whose
# content changed stops the run. Runners started at once (one init container
# per replica) serialise on an advisory lock and each file is applied once.
# Exits non-zero, saying why, on any failure. Files must not hold BEGIN/COMMIT.
set -euo pipefail

log() { echo "run-migrations: $*" >&2; }
die() { log "$*"; exit 1; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${MIGRATIONS_DIR:-$HERE/../../migrations}
WAIT=${MIGRATIONS_WAIT_SECONDS:-60}
SCHEMA=${POSTGRES_SCHEMA:-public}

missing=()
for name in POSTGRES_HOST POSTGRES_DB POSTGRES_USER; do
  [ -n "${!name:-}" ] || missing+=("$name")
done
((${#missing[@]} == 0)) || die "missing environment: ${missing[*]} (not set)"
[[ $WAIT =~ ^[0-9]+$ ]] || die "MIGRATIONS_WAIT_SECONDS=$WAIT: must be a whole number of seconds"
[ -d "$DIR" ] || die "migrations directory $DIR does not exist (set MIGRATIONS_DIR)"
command -v psql >/dev/null || die "psql not found on PATH"
command -v sha256sum >/dev/null || die "sha256sum not found on PATH"

export PGHOST=$POSTGRES_HOST PGPORT=${POSTGRES_PORT:-5432} PGDATABASE=$POSTGRES_DB
export PGUSER=$POSTGRES_USER PGPASSWORD=${POSTGRES_PASSWORD:-}
export PGAPPNAME=agent-executor-migrations
[[ $PGPORT =~ ^[0-9]+$ ]] || die "POSTGRES_PORT=$PGPORT: must be a port number"
[ -n "$PGPASSWORD" ] || unset PGPASSWORD
TARGET="$PGHOST:$PGPORT/$PGDATABASE as $PGUSER"

shopt -s nullglob
files=("$DIR"/*.sql)
((${#files[@]} > 0)) || die "no *.sql files in $DIR"
for file in "${files[@]}"; do
  [[ $(basename "$file") =~ ^[A-Za-z0-9_.-]+$ ]] \
    || die "$(basename "$file"): file names may hold only letters, digits, '_', '.', '-'"
done

# psql with the run's fixed options; the schema is a psql variable (:"schema").
run_psql() { psql -X -q -v ON_ERROR_STOP=1 -v schema="$SCHEMA" "$@"; }

# --- wait for the server (and the database) within $WAIT seconds -----------
deadline=$((SECONDS + WAIT))
attempt_error=""
until attempt_error=$(PGCONNECT_TIMEOUT=$((WAIT < 5 ? 2 : 5)) \
                      psql -X -q -At -c 'SELECT 1' 2>&1 >/dev/null); do
  if ((SECONDS >= deadline)); then
    die "PostgreSQL at $TARGET not usable within ${WAIT}s (MIGRATIONS_WAIT_SECONDS):" \
        "$(echo "$attempt_error" | tr '\n\t' '  ' | sed 's/  */ /g; s/ $//')"
  fi
  sleep 1
done

# --- the schema and the table of applied files --------------------------------
LOCK="SET client_min_messages = warning;
SELECT pg_advisory_xact_lock(hashtext('agent-executor migrations')) AS locked \\gset"
run_psql --single-transaction -f - <<SQL || die "could not prepare schema $SCHEMA on $TARGET"
$LOCK
SELECT NOT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = :'schema') AS need_schema \gset
\if :need_schema
CREATE SCHEMA :"schema";
\endif
CREATE TABLE IF NOT EXISTS :"schema".schema_migrations (
    filename   text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
SQL

applied=$(run_psql -At -F ' ' -f - <<'SQL'
SELECT filename, checksum FROM :"schema".schema_migrations ORDER BY filename;
SQL
) || die "could not read schema_migrations on $TARGET"
declare -A recorded=()
while read -r name sum; do
  [ -n "$name" ] && recorded[$name]=$sum
done <<<"$applied"

# --- refuse edited history, then apply what is new -------------------------------
changed=()
for file in "${files[@]}"; do
  name=$(basename "$file")
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  if [ -n "${recorded[$name]:-}" ] && [ "${recorded[$name]}" != "$sum" ]; then
    changed+=("$name")
  fi
done
((${#changed[@]} == 0)) || die "applied migration(s) changed since they ran: ${changed[*]}" \
  "(checksum differs from schema_migrations); add a new file instead of editing one"

count=0
for file in "${files[@]}"; do
  name=$(basename "$file")
  [ -z "${recorded[$name]:-}" ] || continue
  sum=$(sha256sum "$file" | cut -d' ' -f1)
  # Applied only if no concurrent runner recorded it while this one waited for the lock.
  outcome=$(cd "$DIR" && run_psql --single-transaction -At -v file="$name" -v name="$name" \
            -v sum="$sum" -f - <<SQL
$LOCK
SET search_path TO :"schema";
SELECT NOT EXISTS (SELECT 1 FROM schema_migrations WHERE filename = :'name') AS pending \gset
\if :pending
\i :file
SET search_path TO :"schema";
INSERT INTO schema_migrations (filename, checksum) VALUES (:'name', :'sum');
\echo applied
\endif
SQL
  ) || die "$name failed on $TARGET (see the psql error above); nothing of it was applied"
  if [[ $outcome == *applied ]]; then
    log "applied $name"
    count=$((count + 1))
  fi
done

if ((count == 0)); then
  log "nothing to apply on $TARGET (schema $SCHEMA): ${#files[@]} file(s) already applied"
else
  log "applied $count file(s) on $TARGET (schema $SCHEMA)"
fi
