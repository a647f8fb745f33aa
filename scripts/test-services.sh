#!/usr/bin/env bash
# Usage: scripts/test-services.sh check|start|stop
#
# The integration tests talk to PostgreSQL on 15433, a Redis-protocol server
# (Dragonfly in docker-compose.test.yml) on 16380 and NATS JetStream on 14222.
# Where nothing listens on those ports (no Docker engine), start throwaway
# local stand-ins from the installed binaries; `stop` stops only what `start`
# started and removes its data. `check` (also run by `start`) names, one line each,
# what the machine lacks for the stand-ins it would have to start, and fails.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${TEST_SERVICES_DIR:-$ROOT/.test-services}
PG_PORT=${TEST_POSTGRES_PORT:-15433}
REDIS_PORT=${TEST_DRAGONFLY_PORT:-16380}
NATS_PORT=${TEST_NATS_PORT:-14222}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name port seconds
  local deadline=$((SECONDS + $3))
  until listening "$2"; do
    if ((SECONDS >= deadline)); then
      echo "test-services: $1 did not start listening on port $2 within $3s" >&2
      return 1
    fi
    sleep 0.2
  done
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() { # TEST_POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/*/bin, else PATH
  local bin=${TEST_POSTGRES_BIN:-}
  [ -z "$bin" ] && bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$bin" ] && [ -z "${TEST_POSTGRES_BIN:-}" ]; then
    bin=$(dirname "$(command -v initdb || command -v pg_ctl || echo /nonexistent/x)")
  fi
  [ -x "$bin/initdb" ] || { echo "test-services: PostgreSQL server binaries (initdb, pg_ctl) not found" >&2; return 1; }
  echo "$bin"
}

missing() { # what this machine lacks to start the stand-ins not already listening
  if ! listening "$PG_PORT"; then
    pg_bin >/dev/null 2>&1 || echo "PostgreSQL server binaries (initdb, pg_ctl in ${TEST_POSTGRES_BIN:-/usr/lib/postgresql/*/bin or on PATH}): apt-get install postgresql, or set TEST_POSTGRES_BIN to their directory, or TEST_POSTGRES_PORT to a running server (now $PG_PORT)"
    if [ "$(id -u)" = 0 ] && ! id -u postgres >/dev/null 2>&1; then
      echo "the 'postgres' user (as root the test server runs as postgres): apt-get install postgresql creates it, or: useradd --system postgres"
    fi
    if [ "$(id -u)" = 0 ] && ! command -v runuser >/dev/null; then
      echo "runuser (util-linux), to run PostgreSQL as the postgres user"
    fi
  fi
  if ! listening "$REDIS_PORT" && ! command -v redis-server >/dev/null; then
    echo "redis-server: apt-get install redis-server, or set TEST_DRAGONFLY_PORT to a running Redis-protocol server (now $REDIS_PORT)"
  fi
  if ! listening "$NATS_PORT" && ! command -v nats-server >/dev/null; then
    echo "nats-server (with JetStream): install it from https://github.com/nats-io/nats-server/releases, or set TEST_NATS_PORT to a running server (now $NATS_PORT)"
  fi
}

check() {
  local lacks
  lacks=$(missing)
  [ -z "$lacks" ] && return 0
  echo "test-services: this machine lacks what the integration tests need:" >&2
  while IFS= read -r line; do echo "  missing: $line" >&2; done <<<"$lacks"
  return 1
}

start_postgres() {
  if listening "$PG_PORT"; then echo "test-services: PostgreSQL already on $PG_PORT"; return; fi
  local bin dir=$STATE/postgres
  bin=$(pg_bin)
  rm -rf "$dir" && mkdir -p "$dir"
  if [ "$(id -u)" = 0 ]; then
    chmod 755 "$STATE" # mktemp makes it 0700; the server runs as postgres
    chown -R postgres "$dir"
  fi
  as_postgres "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  as_postgres "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start >/dev/null || { cat "$dir/server.log" >&2; return 1; }
  echo postgres >>"$STATE/started"
  echo "test-services: started PostgreSQL on $PG_PORT"
}

start_redis() {
  if listening "$REDIS_PORT"; then echo "test-services: Redis protocol server already on $REDIS_PORT"; return; fi
  command -v redis-server >/dev/null || { echo "test-services: redis-server not found" >&2; return 1; }
  mkdir -p "$STATE/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --dir "$STATE/redis" --pidfile "$STATE/redis/redis.pid" --logfile "$STATE/redis/redis.log"
  wait_for redis "$REDIS_PORT" 20
  echo redis >>"$STATE/started"
  echo "test-services: started redis-server (standing in for Dragonfly) on $REDIS_PORT"
}

start_nats() {
  if listening "$NATS_PORT"; then echo "test-services: NATS already on $NATS_PORT"; return; fi
  command -v nats-server >/dev/null || { echo "test-services: nats-server not found" >&2; return 1; }
  mkdir -p "$STATE/nats"
  nohup nats-server -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$STATE/nats/js" \
    -P "$STATE/nats/nats.pid" -l "$STATE/nats/nats.log" >/dev/null 2>&1 &
  wait_for nats "$NATS_PORT" 20
  echo nats >>"$STATE/started"
  echo "test-services: started nats-server -js on $NATS_PORT"
}

stop_all() {
  [ -f "$STATE/started" ] || { rm -rf "$STATE"; return 0; }
  while read -r name; do
    case $name in
      postgres) as_postgres "$(pg_bin)/pg_ctl" -D "$STATE/postgres/data" -m immediate -w stop >/dev/null 2>&1 || true ;;
      redis) kill "$(cat "$STATE/redis/redis.pid" 2>/dev/null)" 2>/dev/null || true ;;
      nats) kill "$(cat "$STATE/nats/nats.pid" 2>/dev/null)" 2>/dev/null || true ;;
    esac
  done <"$STATE/started"
  rm -rf "$STATE"
  echo "test-services: stopped the stand-ins it started"
}

case ${1:-} in
  check) check ;;
  start)
    check
    mkdir -p "$STATE"
    start_postgres
    start_redis
    start_nats
    ;;
  stop) stop_all ;;
  *) echo "usage: $0 check|start|stop" >&2; exit 2 ;;
esac
