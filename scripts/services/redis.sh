#!/usr/bin/env bash
# A private Redis for development and tests: 127.0.0.1 only, its own port, nothing saved to disk
# (every start begins empty).
#
#   redis.sh start    install Debian's redis-server if needed, start it, wait for PONG
#   redis.sh stop     stop it (SIGTERM, SIGKILL after 15 s); stopping a stopped server is fine
#   redis.sh status   say whether it runs and answers (exit 0) or not (exit 3)
#   redis.sh url      print the URL of database 0
#
# Settings: IMGPROC_DEV_SERVICES_DIR (default <repo>/var/services), IMGPROC_DEV_REDIS_PORT
# (default 56379), IMGPROC_DEV_REDIS_START_TIMEOUT (seconds, default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
base="$services_dir/redis"
data="$base/data"
pid_file="$base/redis.pid"
log_file="$base/redis.log"
host="127.0.0.1"
port="${IMGPROC_DEV_REDIS_PORT:-56379}"
start_timeout="${IMGPROC_DEV_REDIS_START_TIMEOUT:-30}"
stop_timeout=15

say() { echo "redis.sh: $*" >&2; }
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

install_redis() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "redis-server is not installed and installing it needs root: apt-get install redis-server"
    fi
    command -v apt-get >/dev/null || die "redis-server is not installed and apt-get is not available"
    say "installing redis-server with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends redis-server >&2; then
        say "install failed; refreshing the package lists and trying again"
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends redis-server >&2 \
            || die "apt-get could not install redis-server"
    fi
    command -v redis-server >/dev/null || die "redis-server is still not on PATH after the install"
}

ensure_installed() {
    command -v redis-server >/dev/null || install_redis
}

# A process that died but was not reaped yet (a zombie) still answers kill -0.
alive() {
    local state
    state="$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# A pid file can outlive its server and name a recycled pid: trust it only for a redis-server.
running_pid() {
    local pid
    [[ -s "$pid_file" ]] || return 1
    pid="$(<"$pid_file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" || return 1
    grep -qa redis-server "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

# A subshell, so that the connection opened without redis-cli is closed on every way out.
answers_ping() (
    local reply=""
    if command -v redis-cli >/dev/null; then
        reply="$(timeout 3 redis-cli -h "$host" -p "$port" ping)" || return 1
    else
        exec 3<>"/dev/tcp/$host/$port" || return 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 3 reply <&3 || return 1
    fi
    [[ "$reply" == *PONG* ]]
) 2>/dev/null

wait_until_ready() {
    local started="$1"
    local deadline=$((started + start_timeout * 1000))
    until answers_ping; do
        if ! running_pid >/dev/null; then
            show_log_tail
            say "error: redis-server exited during start-up (log: $log_file)"
            return 1
        fi
        if (($(now_ms) >= deadline)); then
            show_log_tail
            say "error: no PONG from $host:$port within ${start_timeout}s (log: $log_file)"
            return 1
        fi
        sleep 0.1
    done
    say "ready at $(cmd_url) (pid $(running_pid), $(seconds_since "$started"))"
}

launch() {
    rm -f "$pid_file"
    # One run per log, so that a failure shows its own lines; the run before stays in .1.
    if [[ -f "$log_file" ]]; then
        mv -f "$log_file" "$log_file.1"
    fi
    # fd 9 holds the start lock: a server that inherited it would block every later start.
    redis-server --port "$port" --bind "$host" --protected-mode yes --daemonize yes \
        --pidfile "$pid_file" --logfile "$log_file" --dir "$data" --save '' --appendonly no \
        </dev/null >&2 9>&- || { show_log_tail; die "redis-server did not start"; }
    # The daemon writes its pid file a moment after the launcher returns, or dies without one.
    local tries=0
    until running_pid >/dev/null; do
        tries=$((tries + 1))
        if ((tries >= 50)); then
            show_log_tail
            die "redis-server did not come up (is port $port taken? log: $log_file)"
        fi
        sleep 0.1
    done
}

cmd_start() {
    ensure_installed
    mkdir -p "$data"
    # Two starts at once (parallel test runs) must not both launch a server.
    exec 9>"$base/.lock"
    if command -v flock >/dev/null; then
        flock 9
    fi
    local started
    started="$(now_ms)"
    if running_pid >/dev/null; then
        say "already running on $host:$port"
        wait_until_ready "$started" || exit 1
    else
        if answers_ping; then
            die "$host:$port already answers, but not from $pid_file: stop that server or set IMGPROC_DEV_REDIS_PORT"
        fi
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
        if answers_ping; then
            echo "running at $(cmd_url) (pid $pid)"
            return 0
        fi
        echo "pid $pid is up but does not answer PING on $host:$port"
        return 1
    fi
    echo "not running"
    return 3
}

cmd_url() {
    echo "redis://$host:$port/0"
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
