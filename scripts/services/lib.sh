# shellcheck shell=bash
# Process management shared by the development-service scripts of this folder (postgres.sh,
# redis.sh, kafka.sh, gcs.sh). A script sources it right after `set -euo pipefail`; everything that
# belongs to one service (its settings, install steps, readiness probe, launch command, messages and
# subcommands) stays in that script.
#
# Messages
#   say MESSAGE...              print "<script>: MESSAGE" on stderr
#   die MESSAGE...              say "error: MESSAGE", then exit 1
#   show_log_tail FILE...       print on stderr the last 20 lines of each FILE that is not empty
#
# Time
#   now_ms                      print the milliseconds since the epoch
#   seconds_since START_MS      print the time since START_MS (a now_ms value), as "1.234s"
#
# Installing
#   apt_get_install PACKAGE...  install Debian packages, refreshing the package lists once if the
#                               first attempt fails; the caller checks first for root and apt-get,
#                               so that its own message can say what the packages are for
#
# Starting
#   take_start_lock LOCK_FILE   hold LOCK_FILE on fd 9, so that two starts at once (parallel test
#                               runs) take turns; a server launched meanwhile must not inherit fd 9
#                               (`9>&-`), or it would hold the lock for as long as it runs
#   release_start_lock          let the next start in
#   rotate_logs FILE...         move each FILE that exists to FILE.1
#   port_in_use PORT            succeed if a TCP socket listens on PORT, on any address
#   spawn_detached PID_FILE OUT_FILE COMMAND...
#                               run COMMAND in the background, in a session of its own when setsid
#                               exists, with its pid in PID_FILE and its output in OUT_FILE
#   await_pid_file CHECK...     run CHECK every 0.1 s until it succeeds; fail after 50 tries
#   await_ready START_MS TIMEOUT_S INTERVAL_S RUNNING_CHECK PROBE
#                               run PROBE every INTERVAL_S until it succeeds; return 1 as soon as
#                               RUNNING_CHECK fails (the server died), 2 once TIMEOUT_S have passed
#                               since START_MS
#
# Processes
#   is_alive PID                succeed if PID runs; a zombie does not count
#   pid_from_file PID_FILE WORD print the pid in PID_FILE if that process runs and its command line
#                               contains WORD; fail otherwise
#   terminate PID TIMEOUT_S     send SIGTERM, then SIGKILL if PID still runs after TIMEOUT_S
#   stop_running PID_FILE TIMEOUT_S
#                               stop the server the caller's `running_pid` names (terminate), remove
#                               PID_FILE and say how long it took; a server not running is no error

# Ports
#   Every service's default port is below 32768, outside Linux's ephemeral range (32768-60999, see
#   /proc/sys/net/ipv4/ip_local_port_range), from which the kernel picks the source port of every
#   outgoing connection: a port in that range can be taken by a client when the server starts, and
#   a connection to it can be given that very port as its source and reach itself.

# The name that prefixes every message: that of the script that sourced this file.
service_script="${BASH_SOURCE[1]##*/}"

say() { echo "$service_script: $*" >&2; }

die() {
    say "error: $*"
    exit 1
}

show_log_tail() {
    local file
    for file in "$@"; do
        if [[ -s "$file" ]]; then
            say "last lines of $file:"
            tail -n 20 "$file" >&2
        fi
    done
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

seconds_since() {
    local elapsed=$(($(now_ms) - $1))
    printf '%d.%03ds' $((elapsed / 1000)) $((elapsed % 1000))
}

apt_get_install() {
    say "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "$@" >&2; then
        say "install failed; refreshing the package lists and trying again"
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y --no-install-recommends "$@" >&2 || die "apt-get could not install $*"
    fi
}

take_start_lock() {
    exec 9>"$1"
    if command -v flock >/dev/null; then
        flock 9
    fi
}

release_start_lock() { exec 9>&-; }

# One run per log, so that a failure shows its own lines; the run before stays in .1.
rotate_logs() {
    local file
    for file in "$@"; do
        if [[ -f "$file" ]]; then
            mv -f "$file" "$file.1"
        fi
    done
}

# Read from the kernel's socket tables, not probed with a connection: a connection to a port in the
# ephemeral range can reach itself, which looks like a server (kafka.sh once refused to start so).
# In /proc/net/tcp{,6} the local address ends with the port in 4 hex digits; state 0A is LISTEN.
port_in_use() {
    local port table tables=()
    port="$(printf '%04X' "$1")"
    for table in /proc/net/tcp /proc/net/tcp6; do
        if [[ -r "$table" ]]; then
            tables+=("$table")
        fi
    done
    ((${#tables[@]} > 0)) || die "cannot read /proc/net/tcp to see whether port $1 is taken"
    awk -v port="$port" '$4 == "0A" && substr($2, length($2) - 3) == port { found = 1 }
        END { exit !found }' "${tables[@]}"
}

# The command writes its own pid (bash execs into it) and leaves the caller's session and
# descriptors behind: fd 9 holds the start lock, and a caller may be reading our output.
spawn_detached() {
    local pid_target="$1" out_target="$2"
    shift 2
    local detach=()
    if command -v setsid >/dev/null; then
        detach=(setsid)
    fi
    # shellcheck disable=SC2016 # $$ and $@ belong to the inner bash
    "${detach[@]}" bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pid_target" "$@" \
        </dev/null >"$out_target" 2>&1 9>&- &
}

# A server writes its pid file a moment after its launcher returns, or dies without one.
await_pid_file() {
    local tries=0
    until "$@" >/dev/null; do
        tries=$((tries + 1))
        if ((tries >= 50)); then
            return 1
        fi
        sleep 0.1
    done
}

await_ready() {
    local started="$1" timeout="$2" interval="$3" running_check="$4" probe="$5"
    local deadline=$((started + timeout * 1000))
    until "$probe"; do
        "$running_check" >/dev/null || return 1
        if (($(now_ms) >= deadline)); then
            return 2
        fi
        sleep "$interval"
    done
}

# A process that died but was not reaped yet (a zombie) still answers kill -0.
is_alive() {
    local state
    state="$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != Z ]]
}

# A pid file can outlive its server and name a recycled pid: it is trusted only for a process whose
# command line names the server.
pid_from_file() {
    local file="$1" word="$2" pid
    [[ -s "$file" ]] || return 1
    pid="$(<"$file")"
    [[ "$pid" =~ ^[0-9]+$ ]] && is_alive "$pid" || return 1
    grep -qa "$word" "/proc/$pid/cmdline" 2>/dev/null || return 1
    echo "$pid"
}

terminate() {
    local pid="$1" timeout="$2" waited=0
    kill -TERM "$pid" 2>/dev/null || true
    while is_alive "$pid"; do
        if ((waited >= timeout * 10)); then
            say "pid $pid still running after ${timeout}s: killing it"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

stop_running() {
    local pid_file="$1" timeout="$2" pid started
    if ! pid="$(running_pid)"; then
        rm -f "$pid_file"
        say "not running"
        return 0
    fi
    started="$(now_ms)"
    terminate "$pid" "$timeout"
    rm -f "$pid_file"
    say "stopped ($(seconds_since "$started"))"
}
