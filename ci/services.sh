#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis are reachable for the tests, starting (and, as root, installing)
# them when they are not. Meant to be sourced by ci/test: it exports
#   ATLAS_TEST_DATABASE_URL  (server URL without a database name; tests create their own)
#   ATLAS_TEST_REDIS_URL
#   ATLAS_REQUIRE_CHROMIUM  (Chromium is at /usr/bin/chromium, or $CHROMIUM, for the report test)
# Order of preference: servers already running on the standard ports; the machine's own
# PostgreSQL cluster or Redis started in place; else a private PostgreSQL cluster with trust auth
# on a spare port under /tmp (never touching the system's configuration).

pg_url=${ATLAS_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432}
redis_url=${ATLAS_TEST_REDIS_URL:-redis://127.0.0.1:6379}
PRIVATE_PG_PORT=${ATLAS_PRIVATE_PG_PORT:-55432}
PRIVATE_PG_DIR=/tmp/atlas-ci-pgdata

say() { echo "ci/services: $*" >&2; }

apt_install() {
    if [ "$(id -u)" != 0 ]; then
        say "missing $*, and not root to install it; install it or point ATLAS_TEST_* at running servers"
        return 1
    fi
    say "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null
}

pg_ok() { psql "$1/postgres" -w -Atqc 'select 1' >/dev/null 2>&1; }

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

ensure_postgres() {
    command -v psql >/dev/null && [ -n "$(pg_bin_dir)" ] || apt_install postgresql postgresql-client || return 1
    pg_ok "$pg_url" && return 0
    # The machine's own cluster, stopped: start it in place.
    if command -v pg_ctlcluster >/dev/null; then
        for conf in /etc/postgresql/*/main; do
            [ -d "$conf" ] || continue
            version=$(basename "$(dirname "$conf")")
            say "starting PostgreSQL cluster $version/main"
            pg_ctlcluster --skip-systemctl-redirect "$version" main start >/dev/null 2>&1 || true
        done
        for _ in $(seq 1 30); do pg_ok "$pg_url" && return 0; sleep 0.5; done
    fi
    # A private cluster with trust auth (initdb refuses root: run it as postgres).
    local bin; bin=$(pg_bin_dir)
    local private="postgres://postgres@127.0.0.1:$PRIVATE_PG_PORT"
    local as_pg=(); [ "$(id -u)" = 0 ] && as_pg=(su postgres -s /bin/sh -c)
    run_pg() { if [ ${#as_pg[@]} -gt 0 ]; then "${as_pg[@]}" "$*"; else sh -c "$*"; fi; }
    if ! pg_ok "$private"; then
        if [ ! -f "$PRIVATE_PG_DIR/PG_VERSION" ]; then
            say "creating a private PostgreSQL cluster in $PRIVATE_PG_DIR"
            mkdir -p "$PRIVATE_PG_DIR"
            [ "$(id -u)" = 0 ] && chown postgres:postgres "$PRIVATE_PG_DIR"
            run_pg "$bin/initdb -D $PRIVATE_PG_DIR -U postgres -A trust -E UTF8 >/dev/null" || return 1
        fi
        say "starting the private PostgreSQL cluster on port $PRIVATE_PG_PORT"
        run_pg "$bin/pg_ctl -D $PRIVATE_PG_DIR -l $PRIVATE_PG_DIR/server.log -w -o '-p $PRIVATE_PG_PORT -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=300' start >/dev/null" || return 1
    fi
    pg_ok "$private" || return 1
    pg_url=$private
}

redis_ok() { [ "$(redis-cli -u "$1" ping 2>/dev/null)" = PONG ]; }

ensure_redis() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null || apt_install redis-server redis-tools || return 1
    redis_ok "$redis_url" && return 0
    say "starting Redis on 127.0.0.1:6379"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /tmp --logfile /tmp/atlas-ci-redis.log >/dev/null || return 1
    for _ in $(seq 1 30); do redis_ok "$redis_url" && return 0; sleep 0.2; done
    return 1
}

# The TLS test makes its own CA and certificates.
command -v openssl >/dev/null || apt_install openssl || true

ensure_postgres || { say "PostgreSQL is not reachable and could not be started"; return 1 2>/dev/null || exit 1; }
ensure_redis || { say "Redis is not reachable and could not be started"; return 1 2>/dev/null || exit 1; }
export ATLAS_TEST_DATABASE_URL=$pg_url ATLAS_TEST_REDIS_URL=$redis_url

# The report test renders a run's HTML page in headless Chromium (Debian's package).
ensure_chromium() {
    [ -x "${CHROMIUM:-/usr/bin/chromium}" ] || apt_install chromium
}
if ensure_chromium; then
    export ATLAS_REQUIRE_CHROMIUM=1
else
    say "Chromium is not installed and could not be: the report test checks the page without rendering it"
fi
say "PostgreSQL at $ATLAS_TEST_DATABASE_URL, Redis at $ATLAS_TEST_REDIS_URL"
