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
# (default 26379), IMGPROC_DEV_REDIS_START_TIMEOUT (seconds, default 30).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/lib.sh
source "$here/lib.sh"
repo="$(cd "$here/../.." && pwd)"
services_dir="${IMGPROC_DEV_SERVICES_DIR:-$repo/var/services}"
base="$services_dir/redis"
data="$base/data"
pid_file="$base/redis.pid"
log_file="$base/redis.log"
host="127.0.0.1"
port="${IMGPROC_DEV_REDIS_PORT:-26379}"
start_timeout="${IMGPROC_DEV_REDIS_START_TIMEOUT:-30}"
stop_timeout=15

install_redis() {
    if [[ "$(id -u)" -ne 0 ]]; then
        die "redis-server is not installed and installing it needs root: apt-get install redis-server"
    fi
    command -v apt-get >/dev/null || die "redis-server is not installed and apt-get is not available"
    apt_get_install redis-server
    command -v redis-server >/dev/null || die "redis-server is still not on PATH after the install"
}

ensure_installed() {
    command -v redis-server >/dev/null || install_redis
}

running_pid() {
    pid_from_file "$pid_file" redis-server
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
    local started="$1" outcome=0
    await_ready "$started" "$start_timeout" 0.1 running_pid answers_ping || outcome=$?
    case "$outcome" in
    0)
        say "ready at $(cmd_url) (pid $(running_pid), $(seconds_since "$started"))"
        return 0
        ;;
    1)
        show_log_tail "$log_file"
        say "error: redis-server exited during start-up (log: $log_file)"
        ;;
    *)
        show_log_tail "$log_file"
        say "error: no PONG from $host:$port within ${start_timeout}s (log: $log_file)"
        ;;
    esac
    return 1
}

launch() {
    rm -f "$pid_file"
    rotate_logs "$log_file"
    # fd 9 holds the start lock: a server that inherited it would block every later start.
    redis-server --port "$port" --bind "$host" --protected-mode yes --daemonize yes \
        --pidfile "$pid_file" --logfile "$log_file" --dir "$data" --save '' --appendonly no \
        </dev/null >&2 9>&- || { show_log_tail "$log_file"; die "redis-server did not start"; }
    if ! await_pid_file running_pid; then
        show_log_tail "$log_file"
        die "redis-server did not come up (is port $port taken? log: $log_file)"
    fi
}

cmd_start() {
    ensure_installed
    mkdir -p "$data"
    # Two starts at once (parallel test runs) must not both launch a server.
    take_start_lock "$base/.lock"
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
    release_start_lock
}

cmd_stop() {
    stop_running "$pid_file" "$stop_timeout"
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
