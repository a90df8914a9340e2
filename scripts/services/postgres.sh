#!/usr/bin/env bash
# A private PostgreSQL for the tests: its own data folder, 127.0.0.1 only, its own port.
#
#   postgres.sh start    install PostgreSQL if needed, start it, create the test database
#   postgres.sh stop     stop it (fast shutdown); stopping a stopped server is fine
#   postgres.sh status   say whether it runs (exit 0) or not (exit 3)
#   postgres.sh url      print the SQLAlchemy URL of the test database
#
# Settings: IMGPROC_DEV_SERVICES_DIR (default <repo>/var/services),
# IMGPROC_DEV_POSTGRES_PORT (default 25432),
# IMGPROC_DEV_POSTGRES_START_TIMEOUT (seconds, default 60).
#
# The cluster trusts every connection from 127.0.0.1 and trades durability for speed: it is for
# tests on one machine, never for data anyone wants to keep.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$here/lib.sh"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
base="$services_dir/postgres"
data="$base/data"
socket_dir="$base/run"
# A Unix socket's path is limited to about 100 bytes; a deep checkout falls back to /tmp.
if ((${#socket_dir} > 80)); then
    socket_dir="/tmp/imgproc-postgres-$(id -u)-${IMGPROC_DEV_POSTGRES_PORT:-25432}"
fi
log_file="$base/postgres.log"
port="${IMGPROC_DEV_POSTGRES_PORT:-25432}"
host="127.0.0.1"
database="imgproc_test"
superuser="postgres"
start_timeout="${IMGPROC_DEV_POSTGRES_START_TIMEOUT:-60}"

bin_dir=""

find_binaries() {
    local candidate
    bin_dir=""
    # The newest installed major version wins.
    while IFS= read -r candidate; do
        if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" && -x "$candidate/pg_isready" ]]; then
            bin_dir="$candidate"
        fi
    done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V)
    [[ -n "$bin_dir" ]]
}

install_postgres() {
    local packages=(postgresql postgresql-contrib)
    if [[ "$(id -u)" -ne 0 ]]; then
        die "PostgreSQL is not installed and installing it needs root: apt-get install ${packages[*]}"
    fi
    command -v apt-get >/dev/null || die "PostgreSQL is not installed and apt-get is not available"
    apt_get_install "${packages[@]}"
}

ensure_binaries() {
    if ! find_binaries; then
        install_postgres
        find_binaries || die "PostgreSQL was installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
    fi
}

# initdb refuses to run as root, and the server must own its files: as root, run them as the
# postgres account; as anyone else, as oneself.
as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || die "the postgres account is missing (is the package installed?)"
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

prepare_directories() {
    mkdir -p "$data" "$socket_dir"
    chmod 700 "$data"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown -R postgres:postgres "$base" "$socket_dir"
        runuser -u postgres -- test -w "$base" \
            || die "the postgres account cannot reach $base: every folder above it must be searchable (o+x)"
    fi
}

init_cluster() {
    [[ -f "$data/PG_VERSION" ]] && return 0
    say "creating a cluster in $data"
    as_owner "$bin_dir/initdb" -D "$data" -U "$superuser" --auth=trust --encoding=UTF8 \
        --no-locale >"$base/initdb.log" 2>&1 \
        || { cat "$base/initdb.log" >&2; die "initdb failed"; }
    as_owner tee -a "$data/postgresql.conf" >/dev/null <<EOF

# Written by postgres.sh: a private test server. The address, port and socket folder are
# also given on the command line at each start, so that the settings of that moment win.
listen_addresses = '$host'
port = $port
unix_socket_directories = '$socket_dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    as_owner tee "$data/pg_hba.conf" >/dev/null <<EOF
# Written by postgres.sh: the socket and 127.0.0.1 only, without passwords.
local   all   all                  trust
host    all   all   127.0.0.1/32   trust
EOF
}

is_running() {
    as_owner "$bin_dir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

wait_until_ready() {
    local waited=0
    until "$bin_dir/pg_isready" -q -h "$host" -p "$port" -U "$superuser" -d postgres; do
        if ((waited >= start_timeout)); then
            tail -n 20 "$log_file" >&2 || true
            die "PostgreSQL did not answer on $host:$port within ${start_timeout}s (log: $log_file)"
        fi
        sleep 1
        waited=$((waited + 1))
    done
}

ensure_database() {
    local psql=("$bin_dir/psql" -X -q -h "$host" -p "$port" -U "$superuser" -d postgres -v ON_ERROR_STOP=1)
    if [[ -z "$("${psql[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'")" ]]; then
        "${psql[@]}" -c "CREATE DATABASE $database" >/dev/null || die "could not create database $database"
        say "created database $database"
    fi
}

cmd_start() {
    ensure_binaries
    prepare_directories
    # Two starts at once (parallel test runs) must not both initdb or both start the server.
    take_start_lock "$base/.lock"
    init_cluster
    if is_running; then
        say "already running on $host:$port"
    else
        say "starting on $host:$port"
        # The server must not inherit the lock: it would hold it for as long as it runs.
        if ! as_owner "$bin_dir/pg_ctl" start -D "$data" -l "$log_file" -w -t "$start_timeout" \
            -o "-c listen_addresses=$host -p $port -k '$socket_dir'" >&2 9>&-; then
            tail -n 20 "$log_file" >&2 || true
            die "pg_ctl could not start the server (is port $port taken? log: $log_file)"
        fi
    fi
    wait_until_ready
    ensure_database
    release_start_lock
}

cmd_stop() {
    if ! find_binaries || [[ ! -f "$data/PG_VERSION" ]]; then
        say "not running"
        return 0
    fi
    if is_running; then
        as_owner "$bin_dir/pg_ctl" stop -D "$data" -m fast -w >&2
    else
        say "not running"
    fi
}

cmd_status() {
    if find_binaries && [[ -f "$data/PG_VERSION" ]] && is_running; then
        echo "running on $host:$port (data: $data)"
        return 0
    fi
    echo "not running"
    return 3
}

cmd_url() {
    echo "postgresql+psycopg://$superuser@$host:$port/$database"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
url) cmd_url ;;
*)
    echo "usage: $0 start|stop|status|url" >&2
    exit 2
    ;;
esac
